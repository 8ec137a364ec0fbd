"""The micro-cache of public GETs (list, detail, seat map): rendered bodies with a strong ETag, single flight,
stale-while-revalidate (query_service/README.md "Caching")."""
from __future__ import annotations

import asyncio
import hashlib
import time
from typing import Any, Awaitable, Callable

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response

from query_service.responses import dump


class MicroCache:
    """Rendered public responses, keyed by path and the *validated* query (so ``?cb=1``, ``?cb=2``... cannot
    mint entries: unknown parameters are refused before, and equal queries spelled differently share one entry):
    fresh for ``ttl`` seconds, then served stale for up to ``stale`` more seconds while ONE task rebuilds it
    (single flight: a burst of requests on an expired entry costs one read-model query, not one each). The read
    models are eventually consistent anyway; the live seat stream carries every change in between.

    Bounded by bytes (``max_bytes`` of bodies per process): entries past their stale window are evicted first,
    then the oldest; a body larger than a quarter of the budget is served but not kept."""

    def __init__(self, ttl: float, stale: float = 5.0, max_bytes: int = 64 * 1024 * 1024) -> None:
        self.ttl, self.stale, self.max_bytes = ttl, stale, max_bytes
        self.entries: dict[str, tuple[float, bytes, str]] = {}  # insertion order = age
        self.bytes = 0
        self.swept = time.monotonic()
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

    def _drop(self, key: str) -> None:
        old = self.entries.pop(key, None)
        if old is not None:
            self.bytes -= len(old[1])

    def _put(self, key: str, body: bytes, tag: str) -> None:
        self._drop(key)
        if self.ttl <= 0 or len(body) > self.max_bytes // 4:
            return
        now = time.monotonic()
        if now - self.swept > self.ttl + self.stale:  # expired entries never linger past one window
            self.sweep()
        if self.bytes + len(body) > self.max_bytes:  # first what is past its stale window, then the oldest
            for k in [k for k, (expires, _, _) in self.entries.items() if expires + self.stale <= now]:
                self._drop(k)
            while self.entries and self.bytes + len(body) > self.max_bytes:
                self._drop(next(iter(self.entries)))
        self.entries[key] = (now + self.ttl, body, tag)
        self.bytes += len(body)

    def sweep(self) -> int:
        """Evict every entry past its stale window; returns how many."""
        now = self.swept = time.monotonic()
        dead = [k for k, (expires, _, _) in self.entries.items() if expires + self.stale <= now]
        for k in dead:
            self._drop(k)
        return len(dead)

    async def _build(self, key: str, build: Callable[[], Awaitable[Any | None]]) -> tuple[bytes, str] | None:
        try:
            data = await build()
            if data is None:
                self._drop(key)
                return None
            body = dump(data)
            tag = self.etag(body)
            self._put(key, body, tag)
            return body, tag
        finally:
            self.inflight.pop(key, None)


def not_modified(request: Request, etag: str) -> bool:
    inm = request.headers.get("if-none-match")
    return bool(inm) and (inm.strip() == "*" or etag in [t.strip().removeprefix("W/") for t in inm.split(",")])


async def cached_json(request: Request, query: BaseModel, build: Callable[[], Awaitable[Any | None]]) -> Response | None:
    """A public GET: micro-cached under its path and validated ``query``, with a strong ETag over the exact body
    and 304 on If-None-Match. None when ``build`` found nothing (the caller answers 404)."""
    cache: MicroCache = request.app.state.cache
    hit = await cache.get(request.url.path + "?" + query.model_dump_json(), build)
    if hit is None:
        return None
    body, etag = hit
    headers = {"ETag": etag, "Cache-Control": "public, max-age=0, must-revalidate"}
    if not_modified(request, etag):
        return Response(status_code=304, headers=headers)
    return Response(body, media_type="application/json", headers=headers)
