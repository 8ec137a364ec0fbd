"""Query service entrypoint: ``python -m query_service.app`` (uvicorn on EVENTLY_QUERY_HOST:PORT).

Thin HTTP layer: parse and bound the query string, check the token, call a view
(query_service/views.py) or open a live stream (query_service/feed.py), add caching headers.
Reads only; everything comes from the MongoDB read models and the Redis feed streams.
"""
from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Awaitable, Callable

import redis.asyncio
import redis.exceptions
import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest, multiprocess
from pymongo import AsyncMongoClient
from pymongo.errors import PyMongoError
from sse_starlette import EventSourceResponse
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from common.auth import InvalidToken, Principal, bearer_token, decode_token
from common.logging import configure_logging
from common.settings import Settings, get_settings
from contracts import keys
from query_service import views
from query_service.feed import StreamHub, notification_frame, seat_frame
from query_service.metrics import LATENCY
from query_service.openapi import openapi_document

STATIC = Path(__file__).parent / "static"
UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
STATUSES = ("on_sale", "cancelled")


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, details: dict | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details or {}


def error(status: int, code: str, message: str, details: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message, "details": details or {}}}, status_code=status)


# --- input -------------------------------------------------------------------------------------
def _int(request: Request, name: str, default: int, lo: int, hi: int, bad: dict[str, str]) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        bad[name] = "must be an integer"
        return default
    if not lo <= value <= hi:
        bad[name] = f"must be between {lo} and {hi}"
    return value


def _text(request: Request, name: str, max_len: int, bad: dict[str, str]) -> str | None:
    raw = request.query_params.get(name)
    if raw is None or raw.strip() == "":
        return None
    if len(raw) > max_len:
        bad[name] = f"at most {max_len} characters"
    return raw.strip()


def _time(request: Request, name: str, bad: dict[str, str]) -> str | None:
    """An ISO 8601 instant, normalised to the read model's form (UTC, milliseconds, 'Z')."""
    raw = _text(request, name, 40, bad)
    if raw is None:
        return None
    try:
        t = datetime.fromisoformat(raw.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        bad[name] = "must be an ISO 8601 date-time"
        return None
    if t.tzinfo is None:
        t = t.replace(tzinfo=timezone.utc)
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def _paging(request: Request, bad: dict[str, str]) -> tuple[int, int]:
    return _int(request, "page", 1, 1, 10_000, bad), _int(request, "page_size", 20, 1, 100, bad)


def _check(bad: dict[str, str]) -> None:
    if bad:
        raise ApiError(400, "VALIDATION_ERROR", "invalid query parameters", bad)


def _event_id(request: Request) -> str:
    event_id = request.path_params["event_id"]
    if not UUID_RE.match(event_id):
        raise ApiError(404, "NOT_FOUND", "no such event")
    return event_id.lower()


def principal(request: Request, *, query_token: bool = False) -> Principal:
    header = request.headers.get("authorization")
    token = request.query_params.get("access_token") if query_token and not header else None
    try:
        return decode_token(token or bearer_token(header), request.app.state.settings.jwt_secret)
    except InvalidToken as exc:
        raise ApiError(401, "UNAUTHENTICATED", str(exc)) from None


def require(p: Principal, *roles: str) -> None:
    if p.role not in roles:
        raise ApiError(403, "FORBIDDEN", f"this endpoint is for {' or '.join(roles)} accounts")


# --- caching -----------------------------------------------------------------------------------
class MicroCache:
    """Rendered public responses, keyed by path and query string: fresh for ``ttl`` seconds, then served stale
    for up to ``stale`` more seconds while ONE task rebuilds it (single flight: a burst of requests on an
    expired entry costs one read-model query, not one each). The read models are eventually consistent
    anyway; the live seat stream carries every change in between."""

    def __init__(self, ttl: float, stale: float = 5.0, max_entries: int = 10_000) -> None:
        self.ttl, self.stale, self.max_entries = ttl, stale, max_entries
        self.entries: dict[str, tuple[float, bytes, str]] = {}
        self.inflight: dict[str, asyncio.Future] = {}

    @staticmethod
    def etag(body: bytes) -> str:
        return '"' + hashlib.blake2b(body, digest_size=12).hexdigest() + '"'

    async def get(self, key: str, build: Callable[[], Awaitable[Any | None]]) -> tuple[bytes, str] | None:
        now = time.monotonic()
        hit = self.entries.get(key)
        if hit is not None and now < hit[0]:
            return hit[1], hit[2]
        flight = self.inflight.get(key)
        if flight is None:
            flight = self.inflight[key] = asyncio.ensure_future(self._build(key, build))
            flight.add_done_callback(lambda f: f.cancelled() or f.exception())  # retrieved even if nobody awaits
        if hit is not None and now < hit[0] + self.stale:
            return hit[1], hit[2]  # stale while the flight refreshes it
        return await asyncio.shield(flight)

    async def _build(self, key: str, build: Callable[[], Awaitable[Any | None]]) -> tuple[bytes, str] | None:
        try:
            data = await build()
            if data is None:
                self.entries.pop(key, None)
                return None
            body = _dump(data)
            tag = self.etag(body)
            if self.ttl > 0:
                if len(self.entries) >= self.max_entries:
                    self.entries.clear()
                self.entries[key] = (time.monotonic() + self.ttl, body, tag)
            return body, tag
        finally:
            self.inflight.pop(key, None)


def _dump(data: Any) -> bytes:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()


async def cached_json(request: Request, build: Callable[[], Awaitable[Any | None]], not_found: str) -> Response:
    """A public GET: micro-cached, with a strong ETag over the exact body and 304 on If-None-Match."""
    cache: MicroCache = request.app.state.cache
    hit = await cache.get(request.url.path + "?" + request.url.query, build)
    if hit is None:
        raise ApiError(404, "NOT_FOUND", not_found)
    body, etag = hit
    headers = {"ETag": etag, "Cache-Control": "public, max-age=0, must-revalidate"}
    inm = request.headers.get("if-none-match")
    if inm and (inm.strip() == "*" or etag in [t.strip().removeprefix("W/") for t in inm.split(",")]):
        return Response(status_code=304, headers=headers)
    return Response(body, media_type="application/json", headers=headers)


def private_json(data: Any) -> Response:
    return Response(_dump(data), media_type="application/json", headers={"Cache-Control": "private, no-store"})


# --- endpoints ---------------------------------------------------------------------------------
async def index(request: Request) -> Response:
    return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8",
                        headers={"Cache-Control": "no-cache"})


async def health(request: Request) -> JSONResponse:
    checks, ok = {}, True
    try:
        await request.app.state.mongo.admin.command("ping")
        checks["mongodb"] = "ok"
    except PyMongoError as exc:
        checks["mongodb"], ok = str(exc)[:200], False
    try:
        await request.app.state.redis.ping()
        checks["redis"] = "ok"
    except redis.exceptions.RedisError as exc:
        checks["redis"], ok = str(exc)[:200], False
    return JSONResponse({"status": "ok" if ok else "unavailable", "checks": checks}, status_code=200 if ok else 503)


async def metrics_endpoint(request: Request) -> Response:
    registry = REGISTRY
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    return Response(generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def openapi(request: Request) -> JSONResponse:
    return JSONResponse(openapi_document())


async def list_events(request: Request) -> Response:
    bad: dict[str, str] = {}
    page, page_size = _paging(request, bad)
    status = _text(request, "status", 20, bad)
    if status and status not in STATUSES:
        bad["status"] = f"one of {', '.join(STATUSES)}"
    flt = views.list_filter(_text(request, "q", 200, bad), _text(request, "category", 100, bad),
                            _text(request, "city", 100, bad), _time(request, "starts_after", bad),
                            _time(request, "starts_before", bad), status)
    _check(bad)
    return await cached_json(request, lambda: views.event_list(request.app.state.db, flt, page, page_size), "")


async def event_detail(request: Request) -> Response:
    event_id = _event_id(request)
    return await cached_json(request, lambda: views.event_detail(request.app.state.db, event_id), "no such event")


async def event_seats(request: Request) -> Response:
    event_id = _event_id(request)
    state = request.app.state
    return await cached_json(request, lambda: views.seat_map(state.db, state.redis, event_id), "no such event")


def _last_event_id(request: Request) -> str | None:
    value = request.headers.get("last-event-id") or request.query_params.get("last_event_id")
    return value.strip()[:64] if value and value.strip() else None


def _sse(request: Request, hub: StreamHub, key: str) -> EventSourceResponse:
    s: Settings = request.app.state.settings
    # ping=0: the hub sends the heartbeats (one timer for all subscribers, see feed.py)
    return EventSourceResponse(hub.stream(key, _last_event_id(request)), ping=0,
                               send_timeout=s.sse_send_timeout_seconds,
                               headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


async def seat_stream(request: Request) -> Response:
    event_id = _event_id(request)
    exists = await request.app.state.db.events.find_one({"_id": event_id, "status": {"$in": list(STATUSES)}},
                                                        {"_id": 1})
    if exists is None:
        raise ApiError(404, "NOT_FOUND", "no such event")
    return _sse(request, request.app.state.seat_hub, keys.seat_feed(event_id))


async def notification_stream(request: Request) -> Response:
    p = principal(request, query_token=True)
    require(p, "buyer")
    return _sse(request, request.app.state.notify_hub, keys.notifications(p.user_id))


async def _buyers_page(request: Request, view: Callable[..., Awaitable[Any]]) -> Response:
    """One page of the calling buyer's own documents (orders, waitlist entries)."""
    p = principal(request)
    require(p, "buyer")
    bad: dict[str, str] = {}
    page, page_size = _paging(request, bad)
    _check(bad)
    return private_json(await view(request.app.state.db, p.user_id, page, page_size))


async def my_orders(request: Request) -> Response:
    return await _buyers_page(request, views.my_orders)


async def my_waitlist(request: Request) -> Response:
    return await _buyers_page(request, views.my_waitlist)


async def organizer_stats(request: Request) -> Response:
    p = principal(request)
    require(p, "organizer", "admin")
    event_id = _event_id(request)
    owner = await views.event_owner(request.app.state.db, event_id)
    if owner is False:
        raise ApiError(404, "NOT_FOUND", "no such event")
    if p.role != "admin" and owner != p.user_id:
        raise ApiError(403, "FORBIDDEN", "not your event")
    return private_json(await views.organizer_stats(request.app.state.db, event_id))


async def admin_analytics(request: Request) -> Response:
    p = principal(request)
    require(p, "admin")
    bad: dict[str, str] = {}
    days = _int(request, "days", 30, 1, 366, bad)
    top = _int(request, "top", 10, 1, 100, bad)
    _check(bad)
    return private_json(await views.admin_analytics(request.app.state.db, days, top))


# --- errors and metrics ------------------------------------------------------------------------
async def api_error(request: Request, exc: ApiError) -> JSONResponse:
    return error(exc.status, exc.code, exc.message, exc.details)


async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
    code = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}.get(exc.status_code, "ERROR")
    return error(exc.status_code, code, str(exc.detail))


async def store_unavailable(request: Request, exc: Exception) -> JSONResponse:
    dependency = "redis" if isinstance(exc, redis.exceptions.RedisError) else "mongodb"
    return error(503, "DEPENDENCY_UNAVAILABLE", f"{dependency} unavailable", {"dependency": dependency})


class MetricsMiddleware:
    """Request latency by route template (pure ASGI, so streaming responses pass through untouched)."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["path"].endswith("/stream"):
            return await self.app(scope, receive, send)  # long-lived streams: not latency samples
        started, status = time.perf_counter(), [500]

        async def send_status(message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            if status[0]:
                route = scope.get("route")
                LATENCY.labels(scope["method"], getattr(route, "path", "unmatched"), str(status[0])) \
                    .observe(time.perf_counter() - started)


@contextlib.asynccontextmanager
async def lifespan(app: Starlette):
    s: Settings = app.state.settings
    app.state.mongo = AsyncMongoClient(s.mongo_url, serverSelectionTimeoutMS=3000, maxPoolSize=s.query_mongo_pool_size)
    app.state.db = app.state.mongo[s.mongo_db]
    app.state.redis = redis.asyncio.Redis.from_url(s.redis_url, decode_responses=True,
                                                   max_connections=s.query_redis_pool_size)
    app.state.cache = MicroCache(s.query_cache_seconds, s.query_cache_stale_seconds)
    hub = dict(queue_size=s.sse_queue_size, heartbeat=s.sse_ping_seconds)
    app.state.seat_hub = StreamHub(app.state.redis, seat_frame, kind="seats", **hub)
    app.state.notify_hub = StreamHub(app.state.redis, notification_frame, kind="notifications", **hub)
    # No index creation here: the projector owns the read models and their indexes (contracts/readmodels.py).
    # Thousands of long-lived streams mean a big, stable heap: the default GC thresholds (700 allocations)
    # walk it over and over, pausing every stream (loadtests/RESULTS.md: query CPU -35%, fan-out p99 -65%).
    # Everything allocated so far is permanent; young collections run 70x less often.
    gc.freeze()
    gc.set_threshold(s.query_gc_threshold, 20, 100)
    yield
    await app.state.seat_hub.close()
    await app.state.notify_hub.close()
    await app.state.redis.aclose()
    await app.state.mongo.close()


ROUTES = [
    Route("/", index),
    Route("/health", health),
    Route("/metrics", metrics_endpoint),
    Route("/openapi.json", openapi),
    Route("/api/v1/events", list_events),
    Route("/api/v1/events/{event_id}", event_detail),
    Route("/api/v1/events/{event_id}/seats", event_seats),
    Route("/api/v1/events/{event_id}/seats/stream", seat_stream),
    Route("/api/v1/me/orders", my_orders),
    Route("/api/v1/me/waitlist", my_waitlist),
    Route("/api/v1/me/notifications/stream", notification_stream),
    Route("/api/v1/organizer/events/{event_id}/stats", organizer_stats),
    Route("/api/v1/admin/analytics", admin_analytics),
]


def create_app(settings: Settings | None = None) -> Starlette:
    app = Starlette(
        routes=ROUTES,
        exception_handlers={ApiError: api_error, HTTPException: http_error, PyMongoError: store_unavailable,
                            redis.exceptions.RedisError: store_unavailable},
        lifespan=lifespan,
    )
    app.state.settings = settings or get_settings()
    app.add_middleware(MetricsMiddleware)
    return app


def main() -> None:
    configure_logging()
    s = get_settings()
    own_dir = s.query_workers > 1 and "PROMETHEUS_MULTIPROC_DIR" not in os.environ
    if own_dir:  # worker processes aggregate their metrics through files
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="evently-query-metrics-")
    try:
        uvicorn.run("query_service.app:create_app", factory=True, host=s.query_host, port=s.query_port,
                    workers=s.query_workers, log_level="warning", access_log=False,
                    loop="uvloop" if s.query_uvloop else "asyncio", http="httptools",
                    timeout_graceful_shutdown=3)
    finally:
        if own_dir:
            shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)


if __name__ == "__main__":
    main()
