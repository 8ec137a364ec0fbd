"""Transactional outbox writer: domain events become ``outbox`` rows in the caller's transaction.

Debezium's outbox EventRouter turns each row into a Kafka message on ``evently.<aggregatetype>``,
keyed by ``aggregateid`` (see debezium/evently-outbox.json and EVENTS.md). Debezium reads the WAL, not the
table, so rows are only kept for a while (``purge``); the publication ships inserts and updates only, never
the purge's deletes (migration 0004).
"""
from __future__ import annotations

from typing import Sequence

from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from command_service.adapters.repository import Repository
from command_service.domain.events import DomainEvent


def write(repo: Repository, events: Sequence[DomainEvent]) -> None:
    """Queue one INSERT per event; they go to PostgreSQL in the same batch as the COMMIT."""
    for e in events:
        repo.queue_prepared("ev_outbox", (e.id, e.aggregate_type, e.aggregate_id, e.type, Jsonb(e.envelope())))


async def purge(pool: AsyncConnectionPool, older_than_seconds: float, batch: int = 5000) -> int:
    """Delete outbox rows older than ``older_than_seconds``, ``batch`` rows per statement (short transactions,
    several sweepers may run at once: SKIP LOCKED). Returns how many were deleted."""
    deleted = 0
    while True:
        async with pool.connection() as conn:
            cur = await conn.execute(
                "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox WHERE created_at < now() - make_interval(secs => %s)"
                " ORDER BY created_at LIMIT %s FOR UPDATE SKIP LOCKED)", (older_than_seconds, batch))
        deleted += cur.rowcount
        if cur.rowcount < batch:
            return deleted
