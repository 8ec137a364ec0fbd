"""The micro-cache of public GETs (list, detail, seat map): rendered bodies with a strong ETag, single flight,
stale-while-revalidate (query_service/README.md "Caching")."""
from __future__ import annotations

import asyncio
import hashlib
import time
from typing import Any, Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response

from query_service.responses import dump


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
            body = dump(data)
            tag = self.etag(body)
            if self.ttl > 0:
                if len(self.entries) >= self.max_entries:
                    self.entries.clear()
                self.entries[key] = (time.monotonic() + self.ttl, body, tag)
            return body, tag
        finally:
            self.inflight.pop(key, None)


def not_modified(request: Request, etag: str) -> bool:
    inm = request.headers.get("if-none-match")
    return bool(inm) and (inm.strip() == "*" or etag in [t.strip().removeprefix("W/") for t in inm.split(",")])


async def cached_json(request: Request, build: Callable[[], Awaitable[Any | None]]) -> Response | None:
    """A public GET: micro-cached, with a strong ETag over the exact body and 304 on If-None-Match.
    None when ``build`` found nothing (the caller answers 404)."""
    cache: MicroCache = request.app.state.cache
    hit = await cache.get(request.url.path + "?" + request.url.query, build)
    if hit is None:
        return None
    body, etag = hit
    headers = {"ETag": etag, "Cache-Control": "public, max-age=0, must-revalidate"}
    if not_modified(request, etag):
        return Response(status_code=304, headers=headers)
    return Response(body, media_type="application/json", headers=headers)
