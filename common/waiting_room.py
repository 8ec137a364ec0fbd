"""The waiting room's working queue in Redis, as both services see it (issue 16; keys in contracts/keys.py).

The command side writes it (command_service/service_layer/waiting_room.py: joins, admissions, rebuilds from
PostgreSQL, which is the record); the query service and the join's answer read an entry through
:func:`read_entry`, so the structures are interpreted in one place: a sorted set of waiting entries (the score is
the queue order), a hash entry -> buyer, a hash entry -> admission (JSON ``{token, expires_at}``), and a ``built``
marker that is present only while the three hold the whole queue.
"""
from __future__ import annotations

import json
from typing import Any, NamedTuple

from contracts import keys


class QueueUnavailable(Exception):
    """The event's queue is not in Redis (lost, and not rebuilt from PostgreSQL yet): try again in a moment."""


def score(pre_open: bool, draw: float, seq: int) -> float:
    """The queue order: early joiners by their random draw in [0, 1), then everyone else by arrival (1 + seq)."""
    return float(draw) if pre_open else 1.0 + float(seq)


def admission_value(token: str, expires_at: str) -> str:
    """An admission as the admitted hash keeps it."""
    return json.dumps({"token": token, "expires_at": expires_at})


async def read_entry(redis: Any, event_id: str, entry_id: str) -> dict[str, Any] | None:
    """``{buyer_id, position, status, admission?}`` of an entry (position: 1 = next in, 0 once admitted, None
    while not placed), None for an unknown entry; QueueUnavailable while the queue is not in Redis."""
    pipe = redis.pipeline(transaction=False)
    pipe.exists(keys.queue_built(event_id))
    pipe.hget(keys.queue_entries(event_id), entry_id)
    pipe.zrank(keys.queue_waiting(event_id), entry_id)
    pipe.hget(keys.queue_admitted(event_id), entry_id)
    built, owner, rank, admission = await pipe.execute()
    if not built:
        raise QueueUnavailable()
    if owner is None:
        return None
    buyer = owner.decode() if isinstance(owner, bytes) else owner
    return {"buyer_id": buyer, **_state(rank, admission)}


class Counts(NamedTuple):
    """The sizes of an event's queue structures: what changes whenever any entry's position or status does (a
    join adds to ``waiting`` and ``entries``, an admission moves entries from ``waiting`` to ``admitted``, a loss
    clears ``built``), and what the admitter compares with PostgreSQL's record to find writes Redis missed."""
    built: bool
    waiting: int
    admitted: int
    entries: int


async def read_counts(redis: Any, event_id: str) -> Counts:
    """One round trip, whatever the queue's size."""
    pipe = redis.pipeline(transaction=False)
    pipe.exists(keys.queue_built(event_id))
    pipe.zcard(keys.queue_waiting(event_id))
    pipe.hlen(keys.queue_admitted(event_id))
    pipe.hlen(keys.queue_entries(event_id))
    built, waiting, admitted, entries = await pipe.execute()
    return Counts(bool(built), int(waiting), int(admitted), int(entries))


async def read_states(redis: Any, event_id: str, entry_ids: list[str]) -> dict[str, dict[str, Any]] | None:
    """``{entry_id: {position, status, admission?}}`` of known entries (their owner checked by whoever took them
    from :func:`read_entry`), in one round trip; None while the queue is not in Redis."""
    pipe = redis.pipeline(transaction=False)
    pipe.exists(keys.queue_built(event_id))
    pipe.hmget(keys.queue_admitted(event_id), entry_ids)
    for entry_id in entry_ids:
        pipe.zrank(keys.queue_waiting(event_id), entry_id)
    built, admissions, *ranks = await pipe.execute()
    if not built:
        return None
    return {entry_id: _state(rank, admission) for entry_id, rank, admission in zip(entry_ids, ranks, admissions)}


def _state(rank: int | None, admission: Any) -> dict[str, Any]:
    if admission is not None:
        return {"position": 0, "status": "admitted", "admission": json.loads(admission)}
    return {"position": None if rank is None else rank + 1, "status": "waiting"}
