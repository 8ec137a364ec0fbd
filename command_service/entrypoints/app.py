"""Command service HTTP API (aiohttp): ``python -m command_service.entrypoints.app``.

Thin: each route builds a command from the request (domain/commands.py), hands it to the
service layer and renders the result. Errors become CONTRACT error bodies in one place
(``error_response``); idempotency keys are handled by a middleware.
Listens on EVENTLY_COMMAND_HOST:EVENTLY_COMMAND_PORT; EVENTLY_COMMAND_WORKERS > 1 starts that
many processes sharing the port (SO_REUSEPORT).
"""
from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import shutil
import signal
import tempfile
import time
import uuid
from typing import Any

import psycopg
import redis.asyncio
import redis.exceptions
import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest, multiprocess
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from common.auth import InvalidToken, Principal, bearer_token, decode_token
from common.logging import configure_logging
from common.settings import Settings, get_settings
from contracts.errors import CODE_FOR_STATUS, STATUS, error_body
from command_service import metrics
from command_service.adapters.idempotency import IdempotencyStore, fingerprint
from command_service.adapters.seat_locks import SeatLocks
from command_service.domain import commands, errors
from command_service.entrypoints import sweeper
from command_service.entrypoints.openapi import openapi_document
from command_service.service_layer import handlers
from command_service.service_layer.unit_of_work import TransientConflict, UnitOfWork

log = structlog.get_logger()
SETTINGS = web.AppKey("settings", Settings)
POOL = web.AppKey("pool", AsyncConnectionPool)
SERVICES = web.AppKey("services", handlers.Services)
ACTOR = web.RequestKey("actor", Principal)
IDEMPOTENCY = web.AppKey("idempotency", IdempotencyStore)
routes = web.RouteTableDef()


# --- request helpers ----------------------------------------------------------------------
def error_response(exc: BaseException) -> web.Response:
    """Every failure, as a CONTRACT error body with the matching status."""
    if isinstance(exc, errors.DomainError):
        status, body = STATUS[exc.code], error_body(exc.code, exc.message, exc.details)
    elif isinstance(exc, web.HTTPException):
        status = exc.status
        body = error_body(CODE_FOR_STATUS.get(status, "VALIDATION_ERROR" if status < 500 else "INTERNAL_ERROR"),
                          exc.reason)
    elif isinstance(exc, (psycopg.OperationalError, PoolTimeout, TransientConflict)):
        status, body = 503, error_body("DEPENDENCY_UNAVAILABLE", "database unavailable", {"dependency": "postgresql"})
    elif isinstance(exc, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)):
        status, body = 503, error_body("DEPENDENCY_UNAVAILABLE", "Redis unavailable", {"dependency": "redis"})
    else:
        log.exception("unhandled_error", exc_info=exc)
        status, body = 500, error_body("INTERNAL_ERROR", "internal error")
    metrics.REJECTIONS.labels(body["error"]["code"]).inc()
    headers = {}
    if status == 503:  # a dependency that is down or saturated (pool timeout) usually recovers
        headers["Retry-After"] = "1"
    if isinstance(exc, web.HTTPMethodNotAllowed):
        headers["Allow"] = ", ".join(sorted(exc.allowed_methods))
    return web.json_response(body, status=status, headers=headers or None)


def actor(request: web.Request) -> Principal:
    if ACTOR not in request:
        try:
            principal = decode_token(bearer_token(request.headers.get("Authorization")),
                                     request.app[SETTINGS].jwt_secret)
            uuid.UUID(principal.user_id)
        except (InvalidToken, ValueError) as exc:
            raise errors.Unauthenticated("a valid bearer token is required", {"reason": str(exc)[:200]}) from None
        request[ACTOR] = principal
    return request[ACTOR]


def path_id(request: web.Request, name: str) -> str:
    try:
        return str(uuid.UUID(request.match_info[name]))
    except ValueError:
        raise errors.NotFound(f"no such {name.removesuffix('_id')}") from None


async def json_body(request: web.Request) -> Any:
    raw = await request.read()  # over max_body_bytes: aiohttp raises 413
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):  # JSONDecodeError, UnicodeDecodeError, absurd nesting
        raise errors.ValidationError("malformed JSON body", {"body": "not valid UTF-8 JSON"}) from None


async def run(request: web.Request, command: type[commands.Command], *, body: bool = True, **context: Any) -> Any:
    """Build the command from body + context (path ids, actor) and dispatch it."""
    if issubclass(command, commands.Authenticated):
        context["actor"] = actor(request)
    cmd = commands.parse(command, await json_body(request) if body else None, **context)
    return await handlers.handle(cmd, request.app[SERVICES])


# --- routes -------------------------------------------------------------------------------
@routes.post("/api/v1/auth/register")
async def register(request: web.Request) -> web.Response:
    return web.json_response((await run(request, commands.Register)).to_json(), status=201)


@routes.post("/api/v1/auth/token")
async def token(request: web.Request) -> web.Response:
    return web.json_response(await run(request, commands.IssueToken))


@routes.post("/api/v1/venues")
async def create_venue(request: web.Request) -> web.Response:
    return web.json_response((await run(request, commands.CreateVenue)).to_json(), status=201)


@routes.post("/api/v1/events")
async def create_event(request: web.Request) -> web.Response:
    return web.json_response((await run(request, commands.CreateEvent)).document(), status=201)


@routes.patch("/api/v1/events/{event_id}")
async def update_event(request: web.Request) -> web.Response:
    event = await run(request, commands.UpdateEvent, event_id=path_id(request, "event_id"))
    return web.json_response(event.document())


@routes.post("/api/v1/events/{event_id}/publish")
async def publish_event(request: web.Request) -> web.Response:
    event = await run(request, commands.PublishEvent, body=False, event_id=path_id(request, "event_id"))
    return web.json_response(event.document())


@routes.post("/api/v1/events/{event_id}/cancel")
async def cancel_event(request: web.Request) -> web.Response:
    event = await run(request, commands.CancelEvent, body=False, event_id=path_id(request, "event_id"))
    return web.json_response(event.document())


@routes.post("/api/v1/events/{event_id}/holds")
async def create_hold(request: web.Request) -> web.Response:
    hold = await run(request, commands.CreateHold, event_id=path_id(request, "event_id"))
    return web.json_response(hold.to_json(), status=201)


@routes.delete("/api/v1/holds/{hold_id}")
async def release_hold(request: web.Request) -> web.Response:
    await run(request, commands.ReleaseHold, body=False, hold_id=path_id(request, "hold_id"))
    return web.Response(status=204)


@routes.post("/api/v1/orders")
async def checkout(request: web.Request) -> web.Response:
    return web.json_response((await run(request, commands.Checkout)).to_json(), status=201)


@routes.post("/api/v1/orders/{order_id}/cancel")
async def cancel_order(request: web.Request) -> web.Response:
    order = await run(request, commands.CancelOrder, body=False, order_id=path_id(request, "order_id"))
    return web.json_response(order.to_json())


@routes.post("/api/v1/events/{event_id}/waitlist")
async def join_waitlist(request: web.Request) -> web.Response:
    entry, position = await run(request, commands.JoinWaitlist, event_id=path_id(request, "event_id"))
    return web.json_response({"id": entry.id, "event_id": entry.event_id, "position": position,
                              "status": entry.status, "quantity": entry.quantity, "section": entry.section,
                              "created_at": entry.to_json()["created_at"]}, status=201)


@routes.delete("/api/v1/waitlist/{entry_id}")
async def leave_waitlist(request: web.Request) -> web.Response:
    await run(request, commands.LeaveWaitlist, body=False, entry_id=path_id(request, "entry_id"))
    return web.Response(status=204)


@routes.get("/health")
async def health(request: web.Request) -> web.Response:
    svc = request.app[SERVICES]

    async def check(probe) -> str:
        try:
            await asyncio.wait_for(probe(), timeout=2)
            return "ok"
        except Exception as exc:  # noqa: BLE001 - any failure means unavailable
            return f"unavailable: {exc!r}"[:200]

    async def pg() -> None:
        async with request.app[POOL].connection() as conn:
            await conn.execute("SELECT 1")

    checks = dict(zip(("postgresql", "redis"), await asyncio.gather(check(pg), check(svc.locks.ping)), strict=True))
    ok = all(v == "ok" for v in checks.values())
    return web.json_response({"status": "ok" if ok else "unavailable", "checks": checks}, status=200 if ok else 503)


@routes.get("/metrics")
async def metrics_endpoint(request: web.Request) -> web.Response:
    registry = REGISTRY
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:  # several worker processes: aggregate them
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    return web.Response(body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})


@routes.get("/openapi.json")
async def openapi(request: web.Request) -> web.Response:
    return web.json_response(openapi_document())


# --- middlewares --------------------------------------------------------------------------
@web.middleware
async def errors_middleware(request: web.Request, handler) -> web.StreamResponse:
    """Outermost: nothing escapes as a bare 500; records latency per route."""
    started = time.perf_counter()
    try:
        response = await handler(request)
    except Exception as exc:  # noqa: BLE001 - mapped to a contract error body
        response = error_response(exc)
    resource = request.match_info.route.resource
    key = (request.method, resource.canonical if resource else "unmatched", response.status)
    child = _LATENCY.get(key)
    if child is None:  # one labelled child per method/route/status, looked up once
        child = _LATENCY[key] = metrics.REQUEST_LATENCY.labels(key[0], key[1], str(key[2]))
    child.observe(time.perf_counter() - started)
    return response


_LATENCY: dict[tuple[str, str, int], Any] = {}


@web.middleware
async def idempotency_middleware(request: web.Request, handler) -> web.StreamResponse:
    """CONTRACT "Idempotency": replay the first response of a POST per user + Idempotency-Key for 24 h."""
    key = request.headers.get("Idempotency-Key")
    if request.method != "POST" or key is None:
        return await handler(request)
    if not 1 <= len(key) <= 200:
        raise errors.ValidationError("bad Idempotency-Key", {"Idempotency-Key": "1 to 200 characters"})
    try:
        user = actor(request).user_id if "Authorization" in request.headers else "anonymous"
    except errors.Unauthenticated:
        return await handler(request)  # refused anyway; nothing to remember
    digest = fingerprint(request.method, str(request.rel_url), await request.read())
    store = request.app[IDEMPOTENCY]
    stored = await store.claim(user, key, digest)
    if stored is not None:
        replay = web.json_response(stored.body, status=stored.status) if stored.status != 204 \
            else web.Response(status=204)
        replay.headers["Idempotent-Replayed"] = "true"
        return replay
    try:
        response = await handler(request)
    except Exception as exc:  # noqa: BLE001 - the error response is what gets remembered
        response = error_response(exc)
    if response.status >= 500:
        await store.forget(user, key)
    else:
        body = json.loads(response.text) if response.status != 204 else None
        await store.complete(user, key, response.status, body)
    return response


# --- app ----------------------------------------------------------------------------------
async def services_ctx(app: web.Application):
    s = app[SETTINGS]
    # No psycopg auto-prepare: its cache reset sends DEALLOCATE ALL, which would drop the statements
    # the repository PREPAREs itself (recoverable, see unit_of_work.py, but a wasted attempt).
    pool = AsyncConnectionPool(s.database_url, min_size=s.pg_pool_size, max_size=s.pg_pool_size, timeout=5,
                               open=False, kwargs={"prepare_threshold": None})
    await pool.open(wait=False)
    redis_pool = redis.asyncio.BlockingConnectionPool.from_url(
        s.redis_url, max_connections=s.redis_pool_size, timeout=5, socket_timeout=5, socket_connect_timeout=2)
    client = redis.asyncio.Redis(connection_pool=redis_pool)
    svc = handlers.Services(uow=lambda: UnitOfWork(pool), locks=SeatLocks(client), settings=s)
    app[POOL], app[SERVICES] = pool, svc
    app[IDEMPOTENCY] = IdempotencyStore(pool)
    sweep = asyncio.create_task(sweeper.run(svc, pool, app[IDEMPOTENCY], s.sweep_interval_seconds))
    yield
    sweep.cancel()
    await asyncio.gather(sweep, return_exceptions=True)
    await client.aclose()
    await redis_pool.aclose()
    await pool.close()


def create_app(settings: Settings | None = None) -> web.Application:
    s = settings or get_settings()
    app = web.Application(client_max_size=s.max_body_bytes, middlewares=[errors_middleware, idempotency_middleware])
    app[SETTINGS] = s
    app.add_routes(routes)
    app.cleanup_ctx.append(services_ctx)
    return app


def serve(settings: Settings) -> None:
    configure_logging()
    web.run_app(create_app(settings), host=settings.command_host, port=settings.command_port,
                reuse_port=settings.command_workers > 1, access_log=None, print=None)


def main() -> None:
    s = get_settings()
    if s.command_workers <= 1:
        return serve(s)
    # Several processes share the port; Prometheus aggregates their metrics through files.
    own_dir = "PROMETHEUS_MULTIPROC_DIR" not in os.environ
    if own_dir:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="evently-metrics-")
    ctx = multiprocessing.get_context("spawn")
    workers = [ctx.Process(target=serve, args=(s,), name=f"command-{i}") for i in range(s.command_workers)]
    for w in workers:
        w.start()
    stop = lambda *_: [w.terminate() for w in workers if w.is_alive()]  # noqa: E731
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for w in workers:
        w.join()
    if own_dir:
        shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)


if __name__ == "__main__":
    main()
