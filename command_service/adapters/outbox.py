"""Transactional outbox writer: domain events become ``outbox`` rows in the caller's transaction.

Debezium's outbox EventRouter turns each row into a Kafka message on ``evently.<aggregatetype>``,
keyed by ``aggregateid`` (see debezium/evently-outbox.json and EVENTS.md).
"""
from __future__ import annotations

from typing import Sequence

from psycopg.types.json import Jsonb

from command_service.adapters.repository import Repository
from command_service.domain.events import DomainEvent


def write(repo: Repository, events: Sequence[DomainEvent]) -> None:
    """Queue one INSERT per event; they go to PostgreSQL in the same batch as the COMMIT."""
    for e in events:
        repo.queue_prepared("ev_outbox", (e.id, e.aggregate_type, e.aggregate_id, e.type, Jsonb(e.envelope())))
