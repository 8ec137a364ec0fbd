"""Unit of work: one PostgreSQL transaction (in pipeline mode) plus the domain events it emits.

    async with uow_factory() as uow:
        change, terms = await uow.repo.reserve(hold)
        uow.emit(SeatsHeld.of(hold, change))
        await uow.commit()      # outbox rows are written in this same transaction

Leaving the block without ``commit()`` rolls everything back, outbox rows included.
A deadlock or serialization failure surfaces as ``TransientConflict``: the message bus runs the
handler again.
"""
from __future__ import annotations

import contextlib

import psycopg

from psycopg_pool import AsyncConnectionPool

from command_service.adapters import outbox
from command_service.adapters.repository import Repository
from command_service.domain.events import DomainEvent


class TransientConflict(Exception):
    """PostgreSQL aborted the transaction to break a deadlock (or a serialization conflict); retry it."""


class UnitOfWork:
    def __init__(self, pool: AsyncConnectionPool) -> None:
        self._pool = pool
        self._stack = contextlib.AsyncExitStack()
        self.events: list[DomainEvent] = []

    async def __aenter__(self) -> UnitOfWork:
        self._conn = await self._stack.enter_async_context(self._pool.connection())
        await self._stack.enter_async_context(self._conn.pipeline())
        self.repo = Repository(self._conn)
        self._committed = False
        return self

    def emit(self, *events: DomainEvent) -> None:
        self.events.extend(events)

    async def commit(self) -> None:
        await outbox.write(self._conn, self.events)
        await self._conn.commit()
        self._committed = True

    async def __aexit__(self, exc_type, exc, tb) -> None:
        try:
            if not self._committed and not self._conn.closed:
                await self._conn.rollback()
        except psycopg.Error:
            pass  # a broken connection: the pool discards it
        finally:
            await self._stack.__aexit__(exc_type, exc, tb)
        if isinstance(exc, psycopg.errors.TransactionRollback):
            raise TransientConflict(str(exc)) from exc
