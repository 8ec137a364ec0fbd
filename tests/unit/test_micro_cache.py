"""The query micro-cache (query_service/cache.py) is bounded: by bytes, and expired entries do not linger."""
from __future__ import annotations

import asyncio

from query_service.cache import MicroCache


def fill(cache: MicroCache, n: int, size: int) -> None:
    async def go():
        for i in range(n):
            await cache.get(f"/k?{i}", lambda i=i: asyncio.sleep(0, {"pad": "x" * size, "i": i}))
    asyncio.run(go())


def test_the_cache_never_holds_more_than_its_byte_budget():
    cache = MicroCache(ttl=60, stale=5, max_bytes=1_000_000)
    fill(cache, 200, 20_000)  # 4 MB of bodies offered
    assert cache.bytes <= 1_000_000 and cache.bytes == sum(len(e[1]) for e in cache.entries.values())
    assert "/k?199" in cache.entries and "/k?0" not in cache.entries  # the oldest went first


def test_a_body_larger_than_a_quarter_of_the_budget_is_served_not_kept():
    cache = MicroCache(ttl=60, stale=5, max_bytes=100_000)
    body, _ = asyncio.run(cache.get("/big", lambda: asyncio.sleep(0, {"pad": "x" * 50_000})))
    assert len(body) > 50_000 and cache.entries == {} and cache.bytes == 0


def test_expired_entries_are_evicted():
    cache = MicroCache(ttl=0.01, stale=0.01, max_bytes=10_000_000)
    fill(cache, 50, 100)
    asyncio.run(asyncio.sleep(0.05))
    assert cache.sweep() == 50 and cache.entries == {} and cache.bytes == 0
    fill(cache, 3, 100)  # a later insert sweeps by itself too
    asyncio.run(asyncio.sleep(0.05))
    asyncio.run(cache.get("/other", lambda: asyncio.sleep(0, {"a": 1})))
    assert list(cache.entries) == ["/other"]
