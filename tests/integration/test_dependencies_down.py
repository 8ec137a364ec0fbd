"""PostgreSQL or Redis down: 503 DEPENDENCY_UNAVAILABLE naming it, never a bare 500."""
from __future__ import annotations

import socket

import pytest

from tests.integration.conftest import make_api, seated, serve

pytestmark = pytest.mark.integration


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
async def api_without(settings, migrated, request):
    """The service with one dependency pointing at a port where nothing listens."""
    url = {"redis": f"redis://127.0.0.1:{closed_port()}/0",
           "postgresql": f"postgresql://evently:evently@127.0.0.1:{closed_port()}/evently"}[request.param]
    field = "redis_url" if request.param == "redis" else "database_url"
    server = await serve(settings.model_copy(update={field: url}))
    api = await make_api(str(server.make_url("")).rstrip("/"), settings)
    yield request.param, api
    await api.session.close()
    await server.close()


@pytest.mark.parametrize("api_without", ["redis", "postgresql"], indirect=True)
async def test_a_missing_dependency_is_a_503(api_without, api, organizer):
    missing, broken = api_without
    health = await broken.call("GET", "/health")
    assert health.status == 503 and health.body["status"] == "unavailable"
    assert health.body["checks"][missing] != "ok"
    assert [k for k, v in health.body["checks"].items() if v == "ok"] == [
        {"redis": "postgresql", "postgresql": "redis"}[missing]]

    event = await api.on_sale_event(organizer[1], [seated("A", rows=1, seats=2)])  # through the healthy service
    r = await broken.hold(broken.buyer_token(), event["id"], seats=["A-1-1"])
    assert r.status == 503, r.body
    assert r.body["error"]["code"] == "DEPENDENCY_UNAVAILABLE" and r.body["error"]["details"] == {"dependency": missing}
    assert r.headers["Retry-After"] == "1"
