"""Adapters to the outside world: PostgreSQL (repository, outbox, idempotency keys), Redis seat locks, argon2."""
