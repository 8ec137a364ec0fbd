"""Evently query service: the read API from the MongoDB read models, and SSE seat streams."""
