"""The query service's OpenAPI document covers every route it serves."""
from query_service.app import ROUTES
from query_service.openapi import openapi_document


def test_every_route_is_documented():
    paths = openapi_document()["paths"]
    served = {r.path for r in ROUTES}
    assert served <= set(paths), served - set(paths)
    assert set(paths) <= served, set(paths) - served  # and nothing documented that is not served


def test_every_operation_has_responses():
    for path, ops in openapi_document()["paths"].items():
        for method, op in ops.items():
            assert op.get("responses"), (path, method)


def test_micro_cache_single_flight_and_stale_while_revalidate():
    import asyncio

    from query_service.app import MicroCache

    async def scenario():
        cache = MicroCache(ttl=0.05, stale=5)
        calls = 0

        async def build():
            nonlocal calls
            calls += 1
            await asyncio.sleep(0.02)
            return {"n": calls}

        first = await asyncio.gather(*(cache.get("k", build) for _ in range(50)))
        assert calls == 1 and len({b for b, _ in first}) == 1  # 50 concurrent misses, one build
        await asyncio.sleep(0.06)  # expired: served stale at once while one refresh runs
        stale = await asyncio.gather(*(cache.get("k", build) for _ in range(20)))
        assert all(b == first[0][0] for b, _ in stale) and calls == 2
        await asyncio.sleep(0.03)
        body, etag = await cache.get("k", build)
        assert body == b'{"n":2}' and etag != first[0][1]

        async def missing():
            return None

        assert await cache.get("gone", missing) is None

    asyncio.run(scenario())
