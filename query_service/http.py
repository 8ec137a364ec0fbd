"""HTTP glue of the query service: errors (the one CONTRACT envelope, contracts/errors.py), auth, rendering,
the metrics middleware. No read-model knowledge here (views.py) and no routes (app.py)."""
from __future__ import annotations

import time
from typing import Any

import redis.exceptions
import structlog
from pydantic import BaseModel
from pymongo.errors import PyMongoError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from common.auth import InvalidToken, Principal, bearer_token, decode_token
from contracts.errors import CODE_FOR_STATUS, STATUS, error_body
from query_service.metrics import LATENCY
from query_service.params import InvalidQuery
from query_service.responses import dump

log = structlog.get_logger("query.http")


class ApiError(Exception):
    """An error answer: its HTTP status is the CONTRACT status of ``code``."""

    def __init__(self, code: str, message: str, details: dict[str, Any] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.details, self.headers = code, message, details or {}, headers
        self.status = STATUS[code]


def error(code: str, message: str, details: dict[str, Any] | None = None, *, status: int | None = None,
          headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(code, message, details), status_code=status or STATUS[code], headers=headers)


# --- auth ----------------------------------------------------------------------------------------
def principal(request: Request, *, query_token: str | None = None) -> Principal:
    """The caller, from ``Authorization: Bearer`` (or, for SSE, the ``access_token`` query parameter)."""
    header = request.headers.get("authorization")
    try:
        token = query_token if query_token and not header else bearer_token(header)
        return request.app.state.revocations.check(decode_token(token, request.app.state.settings.jwt_secret))
    except InvalidToken as exc:
        raise ApiError("UNAUTHENTICATED", str(exc)) from None


def require(p: Principal, *roles: str) -> None:
    if p.role not in roles:
        raise ApiError("FORBIDDEN", f"this endpoint is for {' or '.join(roles)} accounts")


# --- rendering -------------------------------------------------------------------------------------
def private_json(body: BaseModel) -> Response:
    """A caller's own data: never stored by a shared cache."""
    return Response(dump(body), media_type="application/json", headers={"Cache-Control": "private, no-store"})


# --- exception handlers ----------------------------------------------------------------------------
async def api_error(request: Request, exc: ApiError) -> JSONResponse:
    return error(exc.code, exc.message, exc.details, headers=exc.headers)


async def invalid_query(request: Request, exc: InvalidQuery) -> JSONResponse:
    return error("VALIDATION_ERROR", "invalid query parameters", exc.details)


async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
    """Starlette's own: no route (404), a method the route does not serve (405, with ``Allow``)."""
    code = CODE_FOR_STATUS.get(exc.status_code, "INTERNAL_ERROR")
    message = {404: "no such resource", 405: f"{request.method} is not allowed here"}.get(exc.status_code,
                                                                                          str(exc.detail))
    return error(code, message, status=exc.status_code, headers=exc.headers)


async def store_unavailable(request: Request, exc: Exception) -> JSONResponse:
    """A read-model store or Redis outage: 503, naming the dependency but never echoing the driver's text
    (it names hosts and ports); the text goes to the log."""
    dependency = "redis" if isinstance(exc, redis.exceptions.RedisError) else "mongodb"
    log.warning("dependency unavailable", dependency=dependency, path=request.url.path,
                error=f"{type(exc).__name__}: {str(exc)[:300]}")
    return error("DEPENDENCY_UNAVAILABLE", f"{dependency} unavailable", {"dependency": dependency},
                 headers={"Retry-After": "1"})


async def unexpected(request: Request, exc: Exception) -> JSONResponse:
    """Anything else (a bug): the CONTRACT body, 500 INTERNAL_ERROR, nothing of the exception in it; the
    traceback goes to the log (and the exception on to the server, which logs it too)."""
    log.error("unhandled error", method=request.method, path=request.url.path, exc_info=exc)
    return error("INTERNAL_ERROR", "internal error")


EXCEPTION_HANDLERS = {ApiError: api_error, InvalidQuery: invalid_query, HTTPException: http_error,
                      PyMongoError: store_unavailable, redis.exceptions.RedisError: store_unavailable,
                      Exception: unexpected}


# --- metrics ---------------------------------------------------------------------------------------
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
