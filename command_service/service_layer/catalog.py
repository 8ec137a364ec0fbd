"""The event catalog cache the hold path reads on-sale events' layouts from (no PostgreSQL work for a refusal)."""
from __future__ import annotations

import asyncio
import time
from typing import Callable

from command_service.domain import errors
from command_service.domain.model import SaleInfo
from command_service.service_layer.unit_of_work import UnitOfWork


class EventCatalog:
    """In-process cache of on-sale events' layouts, so a refused hold costs no PostgreSQL work.

    Only ``on_sale`` events are cached, for ``ttl`` seconds: a stale entry can at worst let a
    request reach PostgreSQL, which re-reads the status inside the hold transaction. That is also why
    an expired entry is still served while one refresh runs (stale-while-revalidate), and why
    concurrent misses share one lookup (single flight): in a flash sale every in-flight request sees
    the entry expire at once, and one PostgreSQL connection each would drain the pool.
    """

    def __init__(self, uow: Callable[[], UnitOfWork], ttl: float) -> None:
        self._uow, self._ttl = uow, ttl
        self._entries: dict[str, tuple[SaleInfo, float]] = {}
        self._loading: dict[str, asyncio.Future[SaleInfo]] = {}

    async def get(self, event_id: str) -> SaleInfo:
        hit = self._entries.get(event_id)
        if hit and hit[1] > time.monotonic():
            return hit[0]
        load = self._loading.get(event_id)
        if load is None:
            load = self._loading[event_id] = asyncio.ensure_future(self._load(event_id))
            load.add_done_callback(lambda f: self._loaded(event_id, f))
        if hit:
            return hit[0]
        return await asyncio.shield(load)  # a waiter that goes away does not cancel the others' lookup

    async def _load(self, event_id: str) -> SaleInfo:
        async with self._uow() as uow:
            info = await uow.repo.sale_info(event_id)
        if info is None:
            raise errors.NotFound("no such event")
        return info

    def _loaded(self, event_id: str, load: asyncio.Future[SaleInfo]) -> None:
        info = None if load.cancelled() or load.exception() else load.result()
        if self._loading.get(event_id) is not load:
            return  # forgotten while it ran: what it read may predate the change
        del self._loading[event_id]
        if info is not None and info.status == "on_sale":
            if len(self._entries) > 10_000:
                self._entries.clear()
            self._entries[event_id] = (info, time.monotonic() + self._ttl)
        else:  # gone, not on sale (any more), or the lookup failed: the next request asks PostgreSQL
            self._entries.pop(event_id, None)

    def forget(self, event_id: str) -> None:
        self._entries.pop(event_id, None)
        self._loading.pop(event_id, None)
