"""The seat-map page (served by the query service) writes to the command service from another origin: the
configured origins get CORS answers, others get none."""
from __future__ import annotations

import pytest

pytestmark = pytest.mark.integration
PAGE = "http://127.0.0.1:8002"


async def test_the_pages_origin_may_call_the_api_with_a_bearer_token(api):
    pre = await api.call("OPTIONS", "/api/v1/orders", headers={
        "Origin": PAGE, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type, idempotency-key"})
    assert pre.status == 204
    assert pre.headers["Access-Control-Allow-Origin"] == PAGE
    assert "POST" in pre.headers["Access-Control-Allow-Methods"]
    assert {"authorization", "content-type", "idempotency-key"} <= {
        h.strip().lower() for h in pre.headers["Access-Control-Allow-Headers"].split(",")}
    assert "Access-Control-Allow-Credentials" not in pre.headers
    r = await api.call("POST", "/api/v1/orders", json={"hold_id": "x"}, headers={"Origin": PAGE})
    assert r.status == 401 and r.headers["Access-Control-Allow-Origin"] == PAGE  # errors are readable too


async def test_another_origin_gets_no_cors_answer(api):
    pre = await api.call("OPTIONS", "/api/v1/orders", headers={
        "Origin": "http://evil.example", "Access-Control-Request-Method": "POST"})
    assert pre.status != 204 and "Access-Control-Allow-Origin" not in pre.headers
    r = await api.call("GET", "/health", headers={"Origin": "http://evil.example"})
    assert "Access-Control-Allow-Origin" not in r.headers
