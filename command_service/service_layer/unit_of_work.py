"""Unit of work: one PostgreSQL transaction plus the domain events it emits.

    async with uow_factory() as uow:
        change, terms = await uow.repo.reserve(hold)
        uow.emit(SeatsHeld.of(hold, change))
        await uow.commit()      # outbox rows are written in this same transaction

Leaving the block without ``commit()`` rolls everything back, outbox rows included.
The connection runs in autocommit mode: ``BEGIN`` is queued in front of the first statement
and the outbox rows + ``COMMIT`` go in one batch (see adapters/repository.py), so a
transaction costs one round trip per read plus one for the commit. Hot statements are
``EXECUTE``s of statements PREPAREd once per connection; if the session lost them, the unit of
work raises ``TransientConflict`` and the next attempt prepares them again.
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
        if not self._conn.autocommit:
            await self._conn.set_autocommit(True)
        self.repo = Repository(self._conn)
        self.repo.queue("BEGIN")
        return self

    def emit(self, *events: DomainEvent) -> None:
        self.events.extend(events)

    async def commit(self) -> None:
        outbox.write(self.repo, self.events)
        self.repo.queue("COMMIT")
        await self.repo.run()

    async def __aexit__(self, exc_type, exc, tb) -> None:
        try:
            if not self._conn.closed and self._conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                await self._conn.execute("ROLLBACK")
        except psycopg.Error:
            pass  # a broken connection: the pool discards it
        finally:
            await self._stack.__aexit__(exc_type, exc, tb)
        if isinstance(exc, psycopg.errors.TransactionRollback):
            raise TransientConflict(str(exc)) from exc
        if isinstance(exc, psycopg.errors.InvalidSqlStatementName):
            # The session lost our prepared statements (e.g. psycopg sent DEALLOCATE ALL): PREPARE
            # them again on the next batch and run the handler again.
            Repository.forget_prepared(self._conn)
            raise TransientConflict(str(exc)) from exc
