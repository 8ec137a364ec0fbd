"""The waiting room (issue 16; CONTRACT v2 "Flash-sale controls"; docs/flash-sales.md).

An event with ``waiting_room = {admit_per_minute, admission_seconds}`` takes holds only from admitted buyers.

- **Join** (``POST /events/{id}/queue``): one entry per buyer and event, recorded in PostgreSQL
  (``queue_entries``). Before ``sale_starts_at`` an entry draws a random number: at opening, early joiners are
  let in in the order of their draws (a shuffle nobody can game by refreshing first); later joiners queue by
  arrival (``seq``).
- **Admit**: the sweeper of every command-service process runs :func:`admit_due`. It claims waiting-room events
  whose sale has opened with ``FOR UPDATE SKIP LOCKED`` (one admitter per event at a time, whichever process),
  and admits as many entries as the clock allows: ``floor(admit_per_minute * (seconds since opening + 1) / 60)``
  in all, at most a minute's worth at once. It depends on no timer: a sweep that comes late admits what is due.
- **Admission**: a token signed with the JWT secret (audience ``evently-admission``), bound to buyer and event,
  valid ``admission_seconds`` (common/auth.py). The hold path checks it without any lookup.
- **Redis** holds the working queue the query service reads (positions: a sorted set; admissions: a hash;
  contracts/keys.py). It is written after each commit. If Redis loses it (a flush, a restart without its data),
  the ``built`` marker is gone too, and the next sweep rebuilds all of it from PostgreSQL, order included; until
  then the query service answers 503 for positions. A write that failed after its commit (Redis unreachable for
  a moment) is found by the next sweep that compares the sizes with the record, and mended by the same rebuild.
  Nothing is lost: PostgreSQL is the record.
"""
from __future__ import annotations

import math
from datetime import datetime
from typing import Any

import structlog

from common import waiting_room as queue
from common.auth import encode_admission
from command_service.domain import commands, errors
from command_service.domain.events import QueueAdmitted, QueueJoined
from command_service.domain.model import iso, new_id, require_role, utcnow
from command_service.service_layer.services import Services
from command_service.service_layer.unit_of_work import UnitOfWork
from contracts import keys

log = structlog.get_logger()


def _score(row: dict[str, Any]) -> float:
    return queue.score(row["pre_open"], row["draw"], row["seq"])


def _admission(row: dict[str, Any], event_id: str, secret: str) -> dict[str, Any]:
    expires: datetime = row["admission_expires_at"]
    return {"token": encode_admission(str(row["id"]), str(row["buyer_id"]), event_id, expires.timestamp(), secret),
            "expires_at": iso(expires)}


def _admission_value(row: dict[str, Any], event_id: str, secret: str) -> str:
    return queue.admission_value(**_admission(row, event_id, secret))


async def join_queue(cmd: commands.JoinQueue, svc: Services) -> dict[str, Any]:
    require_role(cmd.actor, "buyer")
    async with svc.uow() as uow:
        event = await uow.repo.get_event(cmd.event_id)
        if event is None:
            raise errors.NotFound("no such event")
        if event.status != "on_sale":
            raise errors.EventNotOnSale(f"the event is {event.status}", {"status": event.status})
        if not event.waiting_room:
            raise errors.InvalidState("this event has no waiting room: hold seats directly")
        row, new = await uow.repo.join_queue(new_id(), event.id, cmd.actor.user_id)
        if new:
            uow.emit(QueueJoined.of(event.id, row))
        await uow.commit()
    entry_id = str(row["id"])
    out: dict[str, Any] = {"id": entry_id, "event_id": event.id}
    if row["admitted_at"] is not None:
        return {**out, "position": 0, "status": "admitted",
                "admission": _admission(row, event.id, svc.settings.jwt_secret)}
    if not await svc.redis.exists(keys.queue_built(event.id)):
        async with svc.uow() as uow:
            await _rebuild(svc, event.id, await uow.repo.queue_of(event.id))
    elif new or not await svc.redis.zscore(keys.queue_waiting(event.id), entry_id):
        pipe = svc.redis.pipeline(transaction=True)
        pipe.zadd(keys.queue_waiting(event.id), {entry_id: _score(row)})
        pipe.hset(keys.queue_entries(event.id), entry_id, str(row["buyer_id"]))
        await pipe.execute()
    try:
        seen = await queue.read_entry(svc.redis, event.id, entry_id)
    except queue.QueueUnavailable:  # lost again meanwhile: the next sweep places it
        seen = None
    return {**out, "position": seen["position"] if seen else None, "status": "waiting"}


async def admit_due(svc: Services) -> int:
    """The sweeper's step: admit what the clock allows on every open waiting room; rebuild lost Redis queues."""
    admitted: list[tuple[str, list[dict[str, Any]]]] = []
    async with svc.uow() as uow:
        for ev in await uow.repo.claim_admitting_events():
            event_id, room = str(ev["id"]), ev["waiting_room"]
            if await _redis_missed_writes(svc, uow, event_id, ev["active"]):
                await _rebuild(svc, event_id, await uow.repo.queue_of(event_id))
            if ev["sale_starts_at"] is None or ev["sale_starts_at"] > utcnow():
                continue  # not open yet: nobody is admitted
            elapsed = (utcnow() - ev["sale_starts_at"]).total_seconds()
            due = math.floor(room["admit_per_minute"] * (elapsed + 1) / 60)
            spent = max(ev["admitted"], due - room["admit_per_minute"])  # at most a minute's worth at once
            if due - spent <= 0:
                continue
            rows = await uow.repo.admit(event_id, due - spent, room["admission_seconds"], spent)
            if rows:
                uow.emit(QueueAdmitted.of(event_id, rows))
                admitted.append((event_id, rows))
        await uow.commit()
    for event_id, rows in admitted:  # the working queue follows the record (one MULTI: no reader sees half)
        pipe = svc.redis.pipeline(transaction=True)
        pipe.zrem(keys.queue_waiting(event_id), *[str(r["id"]) for r in rows])
        pipe.hset(keys.queue_admitted(event_id), mapping={
            str(r["id"]): _admission_value(r, event_id, svc.settings.jwt_secret) for r in rows})
        await pipe.execute()
    return sum(len(rows) for _, rows in admitted)


SETTLED_S = 5.0  # a join's or an admission's Redis write follows its commit within this (or it was lost)


async def _redis_missed_writes(svc: Services, uow: UnitOfWork, event_id: str, active: bool) -> bool:
    """Whether the working queue needs a rebuild: lost (no ``built`` marker), or, while the room is ``active``
    (someone waiting, or admitted within the last minute), missing what the record has had for SETTLED_S (a Redis
    write that failed after its commit: an admission the buyer would never see, an entry the query service would
    not know), or holding an admitted entry in the waiting set too (a join's write that raced its admission). One
    Redis round trip per event and sweep, and one count query per active one."""
    redis = await queue.read_counts(svc.redis, event_id)
    if not redis.built:
        return True
    if not active:
        return False
    record = await uow.repo.queue_record_counts(event_id, SETTLED_S)
    missed = (redis.entries < record["settled"] or redis.admitted < record["settled_admitted"]
              or redis.waiting + redis.admitted < record["settled"])
    doubled = redis.waiting + redis.admitted > redis.entries
    if missed or doubled:
        log.warning("waiting_room_behind_record", event_id=event_id, redis=redis._asdict(), record=record)
    return missed or doubled


async def _rebuild(svc: Services, event_id: str, rows: list[dict[str, Any]]) -> None:
    """Redis lost the queue (or never had it): write it again from PostgreSQL, in the same order. A merge, never
    a delete: two rebuilds at once (or a rebuild and a join) can only add what the record has."""
    waiting = {str(r["id"]): _score(r) for r in rows if r["admitted_at"] is None}
    admitted = {str(r["id"]): _admission_value(r, event_id, svc.settings.jwt_secret)
                for r in rows if r["admitted_at"] is not None}
    pipe = svc.redis.pipeline(transaction=True)
    if admitted:
        pipe.zrem(keys.queue_waiting(event_id), *admitted)
    if waiting:
        pipe.zadd(keys.queue_waiting(event_id), waiting)
    if rows:
        pipe.hset(keys.queue_entries(event_id), mapping={str(r["id"]): str(r["buyer_id"]) for r in rows})
    if admitted:
        pipe.hset(keys.queue_admitted(event_id), mapping=admitted)
    pipe.set(keys.queue_built(event_id), "1")
    await pipe.execute()
    log.info("waiting_room_rebuilt", event_id=event_id, waiting=len(waiting), admitted=len(admitted))
