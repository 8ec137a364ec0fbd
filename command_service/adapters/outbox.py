"""Transactional outbox writer: domain events become ``outbox`` rows in the caller's transaction.

Debezium's outbox EventRouter turns each row into a Kafka message on ``evently.<aggregatetype>``,
keyed by ``aggregateid`` (see debezium/evently-outbox.json and EVENTS.md).
"""
from __future__ import annotations

from typing import Sequence

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from command_service.domain.events import DomainEvent


async def write(conn: AsyncConnection, events: Sequence[DomainEvent]) -> None:
    if not events:
        return
    async with conn.cursor() as cur:
        await cur.executemany(
            "INSERT INTO outbox (id, aggregatetype, aggregateid, type, payload) VALUES (%s, %s, %s, %s, %s)",
            [(e.id, e.aggregate_type, e.aggregate_id, e.type, Jsonb(e.envelope())) for e in events])
