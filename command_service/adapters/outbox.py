"""Transactional outbox writer: domain events become ``outbox`` rows in the caller's transaction.

Debezium's outbox EventRouter turns each row into a Kafka message on ``evently.<aggregatetype>``,
keyed by ``aggregateid`` (see debezium/evently-outbox.json and EVENTS.md). Debezium reads the WAL, not the
table, so rows are only kept for a while (``purge``); the publication ships inserts and updates only, never
the purge's deletes (migration 0004).
"""
from __future__ import annotations

import json
from typing import Sequence

from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from command_service.adapters.repository import Repository
from command_service.domain import errors
from command_service.domain.events import DomainEvent
from command_service.domain.model import MAX_OUTBOX_PAYLOAD_BYTES


# Types whose payload grows with the request (a layout, a description, a chunk of seats): their size is checked.
# The others carry at most MAX_SEATS_PER_HOLD seats and bounded fields.
SIZED = frozenset({"VenueCreated", "EventCreated", "EventUpdated", "SeatsReleased"})


def write(repo: Repository, events: Sequence[DomainEvent]) -> None:
    """Queue one INSERT per event; they go to PostgreSQL in the same batch as the COMMIT.

    A payload over MAX_OUTBOX_PAYLOAD_BYTES is refused (400, the transaction rolls back): one record Kafka would
    not take stops the whole pipeline at that WAL position, so it must never be committed. The API's own bounds
    (MAX_LAYOUT_BYTES, 1,000-seat release chunks) keep every real payload far below this."""
    for e in events:
        envelope = e.envelope()
        if e.type in SIZED:
            size = len(json.dumps(envelope))
            if size > MAX_OUTBOX_PAYLOAD_BYTES:
                raise errors.ValidationError("the change is too large to publish",
                                             {"body": f"{e.type} would be {size} bytes; at most "
                                                      f"{MAX_OUTBOX_PAYLOAD_BYTES}"})
        repo.queue_prepared("ev_outbox", (e.id, e.aggregate_type, e.aggregate_id, e.type, Jsonb(envelope)))


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


# Copies of retained outbox rows, in their original order, as new rows (new row ids, the same payloads and so the
# same event ids). Debezium streams them like any insert; the projector's ``applied`` claims skip every event it
# already has, so republishing more than the gap is harmless. Rows of one transaction share created_at: ctid
# (physical order in an append-only table) keeps their insertion order.
REPUBLISH_SQL = """
INSERT INTO outbox (id, aggregatetype, aggregateid, type, payload)
SELECT gen_random_uuid(), aggregatetype, aggregateid, type, payload
FROM (SELECT * FROM outbox WHERE created_at >= %s AND created_at < %s ORDER BY created_at, ctid) AS gap
"""


def republish(conn, since, until) -> int:
    """Re-publishes the outbox rows written in [since, until) (a ``psycopg.Connection``; one transaction). For a
    gap the CDC stream never carried: an invalidated replication slot (infra/slot_recovery.py)."""
    with conn.transaction():
        return conn.execute(REPUBLISH_SQL, (since, until)).rowcount
