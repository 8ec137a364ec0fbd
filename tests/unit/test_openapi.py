"""Both services' OpenAPI documents are generated from the code: valid OpenAPI 3.1, every served route documented
and nothing documented that is not served, the statuses fuzzing found missing are there, and /docs is local."""
import asyncio
import re

import pytest
from openapi_spec_validator import validate

from command_service.entrypoints import app as command_app
from query_service import app as query_app


def _command_routes() -> set[tuple[str, str]]:
    app = command_app.create_app()
    out = set()
    for r in app.router.routes():
        info = r.resource.get_info() if r.resource else {}
        path = info.get("path") or info.get("formatter")
        if path and r.method != "HEAD" and "prefix" not in info:
            out.add((r.method, path))
    return out


def _query_routes() -> set[tuple[str, str]]:
    from starlette.routing import Route
    return {(m, r.path) for r in query_app.ROUTES if isinstance(r, Route) for m in (r.methods or ()) if m != "HEAD"}


def _documented(doc) -> set[tuple[str, str]]:
    return {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops if m in ("get", "post", "put", "patch",
                                                                                      "delete")}


@pytest.mark.parametrize("doc,served", [
    (command_app.openapi_document, _command_routes),
    (query_app.openapi_document, _query_routes),
], ids=["command", "query"])
def test_document_is_valid_and_covers_exactly_the_served_routes(doc, served):
    document = doc()
    validate(document)  # raises on an invalid OpenAPI 3.1 document
    assert document["openapi"].startswith("3.1")
    served_routes, documented = served(), _documented(document)
    assert served_routes - documented == set(), "served but not documented"
    assert documented - served_routes == set(), "documented but not served"


@pytest.mark.parametrize("doc", [command_app.openapi_document, query_app.openapi_document], ids=["command", "query"])
def test_every_operation_documents_its_statuses(doc):
    document = doc()
    for path, ops in document["paths"].items():
        for method, op in ops.items():
            responses = op["responses"]
            assert {"405", "429", "503"} <= set(responses), (method, path)
            assert "500" not in responses, (method, path)
            if "security" in op:
                assert "401" in responses, (method, path)
            if "requestBody" in op or op.get("parameters") or document["info"]["title"].endswith("query service"):
                assert "400" in responses, (method, path)  # the query side refuses unknown parameters everywhere
            assert "Retry-After" in responses["429"]["headers"]


def test_command_document_states_the_rules_the_server_enforces():
    document = command_app.openapi_document()
    assert "401" in document["paths"]["/api/v1/auth/token"]["post"]["responses"]
    text = str(document)
    for rule in ("section code", "2000", "trimmed", "strict"):
        assert rule in text, rule
    # integers are strict in the schema, not only in prose: no number type where the model says int
    schemas = document["components"]["schemas"]
    assert all(p.get("type") != "number" for s in schemas.values() for p in s.get("properties", {}).values())


@pytest.mark.parametrize("which", ["command", "query"])
def test_docs_page_and_assets_are_served_locally(which):
    page = (command_app.DOCS if which == "command" else query_app.DOCS).html
    assert "/openapi.json" in page
    assert not re.search(r"https?://", page), "the docs page must not load anything from a CDN"
    assets = re.findall(r'(?:src|href)="(/docs/assets/[^"]+)"', page)
    assert assets, page
    from pathlib import Path
    root = Path((command_app.DOCS if which == "command" else query_app.DOCS).assets_dir)
    for url in assets:
        assert (root / url.removeprefix("/docs/assets/")).is_file(), url


def test_micro_cache_single_flight_and_stale_while_revalidate():
    from query_service.cache import MicroCache

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
