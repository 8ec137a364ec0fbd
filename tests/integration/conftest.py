"""Integration fixtures: real PostgreSQL + Redis (EVENTLY_DATABASE_URL / EVENTLY_REDIS_URL).

Migrations run once per session; the command service is served in-process on 127.0.0.1.
Every test creates its own users, venues and events, so the suite can run again and again
against a shared database without resets.
"""
from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, TypeVar

import aiohttp
import psycopg
import pytest
import redis.asyncio
from aiohttp.test_utils import TestServer
from psycopg.rows import dict_row

from common.auth import encode_token
from common.settings import Settings
from command_service import migrate
from command_service.entrypoints.app import create_app
from tests.paying import apay

T = TypeVar("T")


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings()


@pytest.fixture(scope="session")
def migrated(settings: Settings) -> None:
    migrate.upgrade()


async def serve(settings: Settings):
    server = TestServer(create_app(settings), host="127.0.0.1", port=0)
    await server.start_server()
    return server


@pytest.fixture(scope="session")
async def server(settings: Settings, migrated):
    s = await serve(settings)
    yield s
    await s.close()


@pytest.fixture(scope="session")
async def pg(settings: Settings, migrated):
    conn = await psycopg.AsyncConnection.connect(settings.database_url, autocommit=True, row_factory=dict_row)
    yield conn
    await conn.close()


@pytest.fixture(scope="session")
async def redis_client(settings: Settings):
    client = redis.asyncio.Redis.from_url(settings.redis_url)
    yield client
    await client.aclose()


async def eventually(probe: Callable[[], Awaitable[T]], *, timeout: float = 30.0, interval: float = 0.1) -> T:
    """Poll until ``probe`` returns something truthy. The timeout is a liveness bound, not a speed assertion."""
    deadline = time.monotonic() + timeout
    while True:
        result = await probe()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)


@dataclass
class Response:
    status: int
    body: Any
    headers: Any

    @property
    def code(self) -> str | None:
        return self.body["error"]["code"] if isinstance(self.body, dict) and "error" in self.body else None


class Api:
    """A small HTTP client for the command service under test."""

    def __init__(self, session: aiohttp.ClientSession, base: str, settings: Settings) -> None:
        self.session, self.base, self.settings = session, base, settings

    async def call(self, method: str, path: str, token: str | None = None, *, json: Any = None,
                   data: bytes | None = None, headers: dict[str, str] | None = None) -> Response:
        hdrs = dict(headers or {})
        if token:
            hdrs["Authorization"] = f"Bearer {token}"
        async with self.session.request(method, self.base + path, json=json, data=data, headers=hdrs) as r:
            text = await r.text()
            body = await r.json(content_type=None) if text else None
            return Response(r.status, body, r.headers)

    async def account(self, role: str) -> tuple[str, str]:
        """Register through the API and log in: (user id, token)."""
        email = f"{role}-{uuid.uuid4().hex}@example.com"
        r = await self.call("POST", "/api/v1/auth/register",
                            json={"email": email, "password": "correct horse", "name": role.title(), "role": role})
        assert r.status == 201, r.body
        t = await self.call("POST", "/api/v1/auth/token", json={"email": email, "password": "correct horse"})
        assert t.status == 200, t.body
        return r.body["id"], t.body["access_token"]

    def buyer_token(self) -> str:
        """A valid buyer token without the argon2 cost of registering (for races with many buyers)."""
        return encode_token(str(uuid.uuid4()), "buyer", self.settings.jwt_secret, 600)

    async def on_sale_event(self, organizer: str, sections: list[dict[str, Any]],
                            prices: dict[str, int] | None = None, publish: bool = True) -> dict[str, Any]:
        v = await self.call("POST", "/api/v1/venues", organizer,
                            json={"name": "Test Hall", "city": "Testville", "sections": sections})
        assert v.status == 201, v.body
        e = await self.call("POST", "/api/v1/events", organizer, json={
            "venue_id": v.body["id"], "title": f"Test {uuid.uuid4().hex[:6]}", "category": "music",
            "starts_at": "2030-06-01T19:00:00Z", "ends_at": "2030-06-01T22:00:00Z", "currency": "EUR",
            "prices": prices or {s["code"]: 1000 for s in sections}})
        assert e.status == 201, e.body
        if publish:
            p = await self.call("POST", f"/api/v1/events/{e.body['id']}/publish", organizer)
            assert p.status == 200 and p.body["status"] == "on_sale", p.body
        return e.body

    async def hold(self, token: str, event_id: str, **body: Any) -> Response:
        return await self.call("POST", f"/api/v1/events/{event_id}/holds", token, json=body)

    async def checkout(self, token: str, hold_id: str, *, pay: bool = True, promo_code: str | None = None) -> Response:
        """Check the hold out; ``pay``: and pay a paid order at devpay (tests/paying.py), answering the first
        response's status with the order as it is once paid (confirmed)."""
        body = {"hold_id": hold_id, **({"promo_code": promo_code} if promo_code else {})}
        r = await self.call("POST", "/api/v1/orders", token, json=body)
        if not pay or r.status != 201:
            return r

        async def current() -> dict[str, Any]:
            return (await self.call("POST", "/api/v1/orders", token, json={"hold_id": hold_id})).body
        return Response(r.status, await apay(self.settings, r.body, current), r.headers)


def seated(code: str = "A", rows: int = 1, seats: int = 10) -> dict[str, Any]:
    return {"code": code, "name": f"Section {code}", "kind": "seated",
            "rows": [{"label": str(r), "seats": seats} for r in range(1, rows + 1)]}


def ga(code: str = "GA", capacity: int = 10) -> dict[str, Any]:
    return {"code": code, "name": "Floor", "kind": "ga", "capacity": capacity}


async def make_api(base: str, settings: Settings):
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    return Api(session, base, settings)


@pytest.fixture(scope="session")
async def api(server: TestServer, settings: Settings):
    a = await make_api(str(server.make_url("")).rstrip("/"), settings)
    yield a
    await a.session.close()


@pytest.fixture(scope="session")
async def organizer(api: Api) -> tuple[str, str]:
    return await api.account("organizer")


async def outbox(pg: psycopg.AsyncConnection, aggregate_id: str, type_: str | None = None) -> list[dict[str, Any]]:
    cur = await pg.execute("SELECT * FROM outbox WHERE aggregateid = %s" + (" AND type = %s" if type_ else "")
                           + " ORDER BY created_at, id", (aggregate_id, type_) if type_ else (aggregate_id,))
    return await cur.fetchall()
