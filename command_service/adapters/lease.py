"""A process's liveness, as PostgreSQL sees it: a session-level advisory lock held on a connection of its own for
the process's lifetime. When the process dies (``kill -9``, OOM), its socket closes and PostgreSQL releases the
lock at once, so anyone can tell a dead owner from a slow one by looking at ``pg_locks``.

The idempotency claims use it (adapters/idempotency.py): a request still "in progress" under a key whose owner's
lock is gone was abandoned, and a retry takes it over at once instead of getting 409 IDEMPOTENCY_IN_PROGRESS for
a minute (found by the fault suite's kill of a command worker, issue 12).

The lock is ``pg_advisory_lock(LOCK_CLASS, key)`` with a random positive ``key`` per process (another is drawn if
a live process already has it). If the lease's own connection drops (PostgreSQL restarted), the lease reconnects
and locks again; meanwhile ``key`` is None and new claims fall back to the 60 s rule.
"""
from __future__ import annotations

import asyncio
import secrets

import psycopg
import structlog

log = structlog.get_logger("lease")

LOCK_CLASS = 0x45564E54  # "EVNT": the advisory-lock namespace of process leases
CHECK_EVERY_S = 5.0

# A claim whose owner no longer holds its lease (SQL over ``idempotency_keys AS k``).
OWNER_GONE = (f"(k.owner IS NOT NULL AND NOT EXISTS (SELECT 1 FROM pg_locks l WHERE l.locktype = 'advisory' "
              f"AND l.classid = {LOCK_CLASS} AND l.objid = k.owner AND l.objsubid = 2 AND l.granted))")


class ProcessLease:
    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self.key: int | None = None  # held now; None while the lease's connection is down
        self._last: int | None = None  # tried first on reconnect: the claims made under it are alive again
        self._conn: psycopg.AsyncConnection | None = None
        self._task: asyncio.Task | None = None

    async def _acquire(self) -> None:
        conn = await psycopg.AsyncConnection.connect(self.database_url, autocommit=True, connect_timeout=5)
        wanted = self._last
        for _ in range(20):
            key = wanted or secrets.randbelow(2**31 - 2) + 1
            cur = await conn.execute("SELECT pg_try_advisory_lock(%s, %s)", (LOCK_CLASS, key))
            if (await cur.fetchone())[0]:
                self._conn, self.key, self._last = conn, key, key
                return
            wanted = None  # taken by a live process: draw another
        await conn.close()
        raise RuntimeError("no free lease key")

    async def _run(self) -> None:
        while True:
            try:
                if self._conn is None or self._conn.closed:
                    await self._acquire()
                    log.info("process lease held", key=self.key)
                await self._conn.execute("SELECT 1")
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - PostgreSQL away: claims use the 60 s rule until it is back
                log.warning("process lease lost; retrying", error=repr(exc)[:200])
                if self._conn is not None:
                    await self._conn.close()
                    self._conn = None
                self.key = None
            await asyncio.sleep(CHECK_EVERY_S)

    def start(self) -> "ProcessLease":
        self._task = asyncio.create_task(self._run(), name="process-lease")
        return self

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._conn is not None:
            await self._conn.close()
        self.key = None
