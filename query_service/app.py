"""Query service entrypoint: ``python -m query_service.app`` (uvicorn on EVENTLY_QUERY_HOST:PORT).

Thin HTTP layer over the read-side views in query_service/views.py.
"""
from __future__ import annotations

import contextlib

import uvicorn
from pymongo import AsyncMongoClient
from pymongo.errors import PyMongoError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from common.logging import configure_logging
from common.settings import get_settings
from query_service import views


def error(status: int, code: str, message: str, details: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message, "details": details or {}}}, status_code=status)


async def health(request: Request) -> JSONResponse:
    try:
        await request.app.state.mongo.admin.command("ping")
    except PyMongoError as exc:
        return JSONResponse({"status": "unavailable", "checks": {"mongodb": str(exc)[:200]}}, status_code=503)
    return JSONResponse({"status": "ok", "checks": {"mongodb": "ok"}})


async def event_detail(request: Request) -> JSONResponse:
    doc = await views.event_detail(request.app.state.db, request.path_params["event_id"])
    if doc is None:
        return error(404, "NOT_FOUND", "no such event")
    return JSONResponse(doc)


async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
    code = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}.get(exc.status_code, "ERROR")
    return error(exc.status_code, code, str(exc.detail))


async def store_unavailable(request: Request, exc: PyMongoError) -> JSONResponse:
    return error(503, "DEPENDENCY_UNAVAILABLE", "read-model store unavailable", {"dependency": "mongodb"})


@contextlib.asynccontextmanager
async def lifespan(app: Starlette):
    s = get_settings()
    app.state.mongo = AsyncMongoClient(s.mongo_url, serverSelectionTimeoutMS=3000)
    app.state.db = app.state.mongo[s.mongo_db]
    yield
    await app.state.mongo.close()


def create_app() -> Starlette:
    return Starlette(
        routes=[
            Route("/health", health),
            Route("/api/v1/events/{event_id}", event_detail),
        ],
        exception_handlers={HTTPException: http_error, PyMongoError: store_unavailable},
        lifespan=lifespan,
    )


def main() -> None:
    configure_logging()
    s = get_settings()
    uvicorn.run(create_app(), host=s.query_host, port=s.query_port, log_level="warning")


if __name__ == "__main__":
    main()
