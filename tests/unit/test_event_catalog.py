"""The command service's in-process event catalog: single flight and stale-while-revalidate (pure logic; the
unit of work is a fake that counts the PostgreSQL lookups it would have made)."""
from __future__ import annotations

import asyncio

import pytest

from command_service.domain import errors
from command_service.domain.model import SaleInfo
from command_service.service_layer.catalog import EventCatalog


class FakeDB:
    def __init__(self, status: str = "on_sale") -> None:
        self.status = status
        self.lookups = 0
        self.gate = asyncio.Event()
        self.gate.set()

    def uow(self):
        db = self

        class Repo:
            async def sale_info(self, event_id):
                db.lookups += 1
                await db.gate.wait()
                return None if db.status == "missing" else SaleInfo(event_id, db.status, None)

        class Uow:
            repo = Repo()

            async def __aenter__(self):
                return self

            async def __aexit__(self, *exc):
                return False
        return Uow()


async def test_concurrent_misses_share_one_lookup():
    db = FakeDB()
    db.gate.clear()
    catalog = EventCatalog(db.uow, ttl=60)
    waiters = [asyncio.ensure_future(catalog.get("e1")) for _ in range(200)]
    await asyncio.sleep(0.01)
    db.gate.set()
    infos = await asyncio.gather(*waiters)
    assert db.lookups == 1
    assert {i.status for i in infos} == {"on_sale"}
    await catalog.get("e1")
    assert db.lookups == 1  # cached


async def test_an_expired_entry_is_served_while_one_refresh_runs():
    db = FakeDB()
    catalog = EventCatalog(db.uow, ttl=0.01)
    await catalog.get("e1")
    await asyncio.sleep(0.02)
    db.gate.clear()
    db.status = "cancelled"
    stale = await asyncio.gather(*(catalog.get("e1") for _ in range(50)))
    assert {i.status for i in stale} == {"on_sale"} and db.lookups == 2  # one refresh for all of them
    db.gate.set()
    await asyncio.sleep(0.01)
    assert (await catalog.get("e1")).status == "cancelled"  # not on sale: no longer cached
    assert db.lookups == 3


async def test_a_missing_event_is_not_found_for_every_waiter_and_not_cached():
    db = FakeDB("missing")
    catalog = EventCatalog(db.uow, ttl=60)
    results = await asyncio.gather(*(catalog.get("e1") for _ in range(10)), return_exceptions=True)
    assert all(isinstance(r, errors.NotFound) for r in results) and db.lookups == 1
    with pytest.raises(errors.NotFound):
        await catalog.get("e1")
    assert db.lookups == 2


async def test_a_lookup_that_started_before_forget_is_not_cached():
    db = FakeDB()
    db.gate.clear()
    catalog = EventCatalog(db.uow, ttl=60)
    first = asyncio.ensure_future(catalog.get("e1"))
    await asyncio.sleep(0.01)
    catalog.forget("e1")  # e.g. the event was cancelled by this process meanwhile
    db.gate.set()
    await first
    await catalog.get("e1")
    assert db.lookups == 2
