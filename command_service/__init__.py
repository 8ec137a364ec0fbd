"""Evently command service: the write side (aiohttp + PostgreSQL + Redis seat locks + outbox)."""
