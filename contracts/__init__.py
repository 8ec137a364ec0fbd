"""Shapes that cross a service boundary, each defined once.

- ``errors``: the error envelope and every CONTRACT error code with its HTTP status;
- ``events``: the outbox envelope and every event payload (the command side builds them, the projectors parse them);
- ``readmodels``: read-model collection names, document fields, status codes, bookkeeping fields, indexes;
- ``keys``: Redis key names shared by the services;
- ``seats``: the seat-id grammar.
"""
