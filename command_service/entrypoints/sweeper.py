"""Hold sweeper: a background task in every command-service process.

Every ``interval`` seconds it releases holds whose ``expires_at`` has passed (PostgreSQL rows
and Redis locks, emitting SeatsReleased with reason "expired"). It does not rely on Redis
keyspace notifications. Several processes sweep safely: each claims a batch of expired holds
with FOR UPDATE SKIP LOCKED, and releasing a hold is a conditional update anyway.
It also runs the order lifecycle's steps (service_layer/orders.py): the seats of orders whose payment window
ended go back on sale, payments still pending after their window + grace (or of orders cancelled meanwhile) are
reconciled with the provider, refunds the provider has not answered are asked again, the ticket holders of
events due a reminder are reminded (service_layer/notices.py), and waiting rooms admit what the clock allows
(service_layer/waiting_room.py). Each claims its rows
with SKIP LOCKED and pushes their next time on, so several processes never do one twice at once.
It also purges, once a minute, idempotency keys older than 24 h, refresh tokens expired for a day, and outbox
rows older than ``EVENTLY_OUTBOX_RETENTION_SECONDS`` (Debezium streamed them long ago: it reads the WAL).
"""
from __future__ import annotations

import asyncio
import time

import structlog
from psycopg_pool import AsyncConnectionPool

from command_service.adapters import outbox
from command_service.adapters.idempotency import IdempotencyStore
from command_service.service_layer import handlers, notices, orders, waiting_room
from command_service.service_layer.services import Services

log = structlog.get_logger()
BATCH = 200
PURGE_EVERY = 60.0


async def run(svc: Services, pool: AsyncConnectionPool, idempotency: IdempotencyStore, interval: float) -> None:
    next_purge = time.monotonic() + PURGE_EVERY
    while True:
        try:
            expired = await handlers.expire_holds(svc, BATCH)
            if expired:
                log.info("holds_expired", count=expired)
            for step in (orders.release_ended_windows, orders.reconcile_payments, orders.retry_refunds,
                         notices.sweep_reminders, waiting_room.admit_due):
                try:  # one failing step (the provider down, a deadlock) does not hold the others back
                    done = await step(svc)
                    if done:
                        log.info(step.__name__, count=done)
                except Exception as exc:  # noqa: BLE001
                    log.warning("sweep_step_failed", step=step.__name__, error=repr(exc))
            if time.monotonic() >= next_purge:
                next_purge = time.monotonic() + PURGE_EVERY
                await idempotency.purge_expired()
                async with svc.uow() as uow:  # refresh tokens expired for over a day, revocations long past
                    await uow.repo.purge_revocations()
                    await uow.repo.purge_refresh_tokens()
                    await uow.commit()
                purged = await outbox.purge(pool, svc.settings.outbox_retention_seconds)
                if purged:
                    log.info("outbox_purged", count=purged)
            if expired == BATCH:
                continue  # a backlog: keep going
        except Exception as exc:  # noqa: BLE001 - a sweeper survives database or Redis outages
            log.warning("sweep_failed", error=repr(exc))
        await asyncio.sleep(interval)
