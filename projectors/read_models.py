"""Read-model writers: one function per domain event type, each an idempotent MongoDB upsert.

Handlers receive the outbox envelope (``{"id", "type", "schema_version", "aggregate_id",
"occurred_at", "data"}``, see command_service/EVENTS.md). Debezium's JSON expansion drops null
fields and empty arrays from the payload, so handlers read optional fields with defaults.
"""
from __future__ import annotations

from typing import Any, Callable

from pymongo.database import Database

Handler = Callable[[Database, dict[str, Any]], None]
HANDLERS: dict[str, Handler] = {}


class PoisonMessage(ValueError):
    """The message can never be applied (malformed, unknown shape): it goes to the dead-letter topic."""


def handles(event_type: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        HANDLERS[event_type] = fn
        return fn
    return register


@handles("EventCreated")
def event_created(db: Database, env: dict[str, Any]) -> None:
    data = env.get("data")
    if not isinstance(data, dict):
        raise PoisonMessage("EventCreated without a data object")
    event_id = env.get("aggregate_id") or data.get("id")
    if not event_id:
        raise PoisonMessage("EventCreated without an event id")
    doc = {k: v for k, v in data.items() if k not in ("seats", "id")}
    doc.setdefault("status", "draft")
    # $setOnInsert + a guard on the envelope id keeps a redelivery from rewriting later state.
    db.events.update_one({"_id": event_id}, {"$setOnInsert": {**doc, "created_by_event": env.get("id")}},
                         upsert=True)


def apply(db: Database, env: Any) -> bool:
    """Apply one envelope; returns False when its type has no read-model effect yet."""
    if not isinstance(env, dict) or not isinstance(env.get("type"), str):
        raise PoisonMessage("payload is not an outbox envelope (no 'type')")
    handler = HANDLERS.get(env["type"])
    if handler is None:
        return False
    handler(db, env)
    return True
