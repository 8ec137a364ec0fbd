"""The Kafka topics Evently owns (see debezium/README.md for the full topic table).

The Debezium outbox router writes ``evently.<aggregatetype>``, keyed by aggregate id; the stack
creates these topics up front (with auto-creation off on the broker) so that partitions and
retention are decided here, not by whichever producer writes first.
"""
from __future__ import annotations

from dataclasses import dataclass

from confluent_kafka.admin import AdminClient, NewTopic


@dataclass(frozen=True)
class Topic:
    name: str
    partitions: int
    retention_ms: int  # -1 = keep forever (the read models are rebuilt by replaying from offset 0)
    purpose: str


TOPICS = [
    Topic("evently.event", 3, -1,
          "everything about one event: lifecycle, holds, orders, seat changes; key = event id"),
    Topic("evently.venue", 1, -1, "venue definitions; key = venue id"),
    Topic("evently.user", 1, -1, "accounts (registered, role changed, disabled; never a password hash); key = user id"),
    Topic("evently.dlq", 1, 30 * 24 * 3600 * 1000,
          "dead letters: projector input that could not be applied, with the error in headers"),
]

SOURCE_TOPICS = [t.name for t in TOPICS if t.name != "evently.dlq"]
DLQ_TOPIC = "evently.dlq"


def ensure_topics(bootstrap: str) -> list[str]:
    """Create missing topics; returns the names created."""
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 3})
    existing = set(admin.list_topics(timeout=10).topics)
    missing = [t for t in TOPICS if t.name not in existing]
    if not missing:
        return []
    futures = admin.create_topics([
        NewTopic(t.name, num_partitions=t.partitions, replication_factor=1,
                 config={"retention.ms": str(t.retention_ms), "cleanup.policy": "delete"})
        for t in missing
    ])
    for fut in futures.values():
        fut.result(timeout=30)
    return [t.name for t in missing]
