"""Hold sweeper: a background task in every command-service process.

Every ``interval`` seconds it releases holds whose ``expires_at`` has passed (PostgreSQL rows
and Redis locks, emitting SeatsReleased with reason "expired"). It does not rely on Redis
keyspace notifications. Several processes sweep safely: each claims a batch of expired holds
with FOR UPDATE SKIP LOCKED, and releasing a hold is a conditional update anyway.
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
from command_service.service_layer import handlers
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
