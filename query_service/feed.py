"""Live streams for SSE: one shared Redis reader per stream per process, fanned out to subscribers.

The projector appends each applied batch of seat changes to the Redis Stream ``feed:<event_id>``
(and buyer notifications to ``notify:<buyer_id>``); the stream entry id is the SSE ``id``
(monotonic per stream). Here:

* ``StreamHub.stream(key, last_id)`` is an async iterator of pre-encoded SSE frames. The first subscriber of a key starts that key's reader task (``XREAD BLOCK``, one
  Redis connection), the last one to leave stops it after ``linger`` seconds. Never one backend
  reader per connection.
* Each subscriber has a bounded queue. The reader never awaits a subscriber: a full queue marks
  that subscriber dropped and removes it; its stream ends and the browser reconnects with
  ``Last-Event-ID``, which resumes it exactly (below). A slow client costs at most ``queue_size``
  references to shared frames.
* Resume (``last_id``): the subscriber registers with the reader first, then reads the backlog
  ``XRANGE (last_id +``, then drains its queue, skipping ids it has already sent. The reader's
  start position is fixed before the backlog read, so backlog ∪ queue covers every entry after
  ``last_id``: no gap, and the id check removes the overlap: no duplicate.
* ``reset``: when entries after ``last_id`` may be gone (the head was trimmed past it, or an entry
  after it was deleted: ``XINFO STREAM``), the stream is gone while the client has a position, the
  client's position is ahead of the stream (Redis lost data), the client is at "0-0" but the stream's first entry
  restarted it after a loss (``prev`` = FEED_PREV_LOST: its map may predate the lost entries), or the id is not a
  stream id, the
  first frame is ``event: reset`` and the client refetches ``/seats``. (A client exactly at the
  last trimmed entry also gets a reset: harmless, it refetches.)
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from dataclasses import dataclass
from typing import Any, AsyncIterator, Callable

import structlog
from prometheus_client import Counter, Gauge

from contracts import keys

log = structlog.get_logger("query.feed")

SUBSCRIBERS = Gauge("evently_sse_subscribers", "open SSE subscriptions", ["stream"], multiprocess_mode="livesum")
READERS = Gauge("evently_sse_readers", "shared Redis stream readers (one per stream with subscribers)",
                ["stream"], multiprocess_mode="livesum")
DROPPED = Counter("evently_sse_dropped_total", "subscribers dropped because their queue was full", ["stream"])
FRAMES = Counter("evently_sse_frames_total", "frames read from Redis and fanned out", ["stream"])
GAPS = Counter("evently_sse_feed_gaps_total", "feeds found to have lost entries (their subscribers were reset)",
               ["stream"])

STREAM_ID = re.compile(r"^\d{1,20}-\d{1,20}$")
ZERO = "0-0"


def parse_id(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def as_str(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


@dataclass(frozen=True)
class Batch:
    """The entries of one XREAD, encoded once and shared by every subscriber: one queue item and one socket
    write per subscriber per read, however many entries arrived (under load, reads naturally grow)."""
    ids: tuple[tuple[int, int], ...]
    frames: tuple[bytes, ...]
    blob: bytes

    def after(self, sent: tuple[int, int]) -> bytes:
        """What a subscriber that already sent up to ``sent`` still needs."""
        if self.ids[0] > sent:
            return self.blob
        return b"".join(f for i, f in zip(self.ids, self.frames) if i > sent)


# How a stream's entries become SSE frames: (entry id, fields) -> frame bytes (or None to skip).
Encoder = Callable[[str, dict[str, str]], bytes | None]


def sse_frame(event: str, entry_id: str | None, data: str) -> bytes:
    lines = [f"event: {event}"]
    if entry_id is not None:
        lines.append(f"id: {entry_id}")
    lines.extend(f"data: {line}" for line in data.splitlines() or [""])
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


HEARTBEAT = b": ping\r\n\r\n"  # a comment line: EventSource ignores it, proxies see traffic
RESET_FRAME_DATA = json.dumps({"reason": "position no longer retained; refetch the snapshot"})


# A subscriber is its bounded queue of Batch | HEARTBEAT | None (None = the end; the queue is cleared
# first, so None always fits).
Subscriber = asyncio.Queue


class _Reader:
    """The one reader of one Redis stream in this process."""

    def __init__(self, hub: "StreamHub", key: str, kind: str) -> None:
        self.hub, self.key, self.kind = hub, key, kind
        self.subscribers: set[Subscriber] = set()
        self.position = ZERO
        self.last_off: int | None = None  # the seat feed's chain: ``off`` of the last entry read
        self.ready = asyncio.Event()
        self.idle_since: float | None = None
        self.task = asyncio.create_task(self.run(), name=f"feed-reader {key}")
        self.error: BaseException | None = None

    async def run(self) -> None:
        redis = self.hub.redis
        READERS.labels(self.kind).inc()
        try:
            last = await redis.xrevrange(self.key, "+", "-", count=1)
            self.position = as_str(last[0][0]) if last else ZERO
            self.last_off = _off(last[0][1]) if last else None
            self.ready.set()
            while True:
                if not self.subscribers:
                    if self.idle_since is None:
                        self.idle_since = time.monotonic()
                    elif time.monotonic() - self.idle_since >= self.hub.linger:
                        return
                else:
                    self.idle_since = None
                try:
                    got = await redis.xread({self.key: self.position}, count=self.hub.batch, block=self.hub.block_ms)
                except Exception as exc:  # Redis down: keep the subscribers, retry with backoff
                    log.warning("feed read failed", stream=self.key, error=str(exc)[:200])
                    await asyncio.sleep(0.5)
                    continue
                ids, frames = [], []
                broken = False
                for _, entries in got or ():
                    for entry_id, fields in entries:
                        if self.breaks_chain(fields):
                            broken = True
                            break
                        self.position = as_str(entry_id)
                        frame = self.hub.frame(entry_id, fields)
                        if frame is not None:
                            ids.append(parse_id(self.position))
                            frames.append(frame)
                if frames:
                    FRAMES.labels(self.kind).inc(len(frames))
                    self.fan_out(Batch(tuple(ids), tuple(frames), b"".join(frames)))
                if broken:
                    # Entries between what was delivered and this one are gone (Redis lost data or was flushed):
                    # end every stream here. Each client resumes from its last id, which the stream no longer
                    # has, so it gets `event: reset` and refetches the map (must_reset).
                    log.warning("feed lost entries; resetting its subscribers", stream=self.key)
                    GAPS.labels(self.kind).inc()
                    return
        except BaseException as exc:
            self.error = exc
            self.ready.set()
            raise
        finally:
            READERS.labels(self.kind).dec()
            if self.hub.readers.get(self.key) is self:
                del self.hub.readers[self.key]
            for sub in list(self.subscribers):  # a dying reader ends its streams; clients resume
                self.drop(sub)

    def breaks_chain(self, fields: dict[Any, Any]) -> bool:
        """Seat-feed entries name the entry they follow (``prev``); notifications carry no chain. An entry that
        restarts a lost stream breaks it even for a reader that has delivered nothing yet: its subscribers joined
        an empty stream, and the maps they hold may be older than what was lost."""
        off = _off(fields)
        if off is None:
            return False
        prev = _prev(fields)
        broken = prev == keys.FEED_PREV_LOST or (prev is not None and self.last_off is not None
                                                  and prev != self.last_off)
        if not broken:
            self.last_off = off
        return broken

    def fan_out(self, batch: Batch | bytes) -> None:
        for sub in list(self.subscribers):
            try:
                sub.put_nowait(batch)
            except asyncio.QueueFull:
                DROPPED.labels(self.kind).inc()
                self.drop(sub)

    def drop(self, sub: Subscriber) -> None:
        """End a subscriber's stream (too slow, gone, or this reader stops)."""
        if sub in self.subscribers:
            self.subscribers.discard(sub)
            SUBSCRIBERS.labels(self.kind).dec()
        while not sub.empty():  # what it missed comes back through Last-Event-ID
            sub.get_nowait()
        sub.put_nowait(None)


class StreamHub:
    def __init__(self, redis: Any, encoder: Encoder, *, kind: str, queue_size: int = 256, block_ms: int = 2000,
                 linger: float = 5.0, batch: int = 500, heartbeat: float | None = None) -> None:
        self.redis, self.encoder, self.kind = redis, encoder, kind
        self.queue_size, self.block_ms, self.linger, self.batch = queue_size, block_ms, linger, batch
        self.readers: dict[str, _Reader] = {}
        # One timer for every subscriber of the hub, not one task per connection.
        self.heartbeat_task = asyncio.create_task(self._heartbeats(heartbeat)) if heartbeat else None

    async def _heartbeats(self, every: float) -> None:
        while True:
            await asyncio.sleep(every)
            for reader in list(self.readers.values()):
                reader.fan_out(HEARTBEAT)

    async def _reader(self, key: str) -> _Reader:
        reader = self.readers.get(key)
        if reader is None or reader.task.done():
            reader = self.readers[key] = _Reader(self, key, self.kind)
        await reader.ready.wait()
        if reader.error is not None:
            raise reader.error
        return reader

    def frame(self, entry_id: Any, fields: dict[Any, Any]) -> bytes | None:
        eid = as_str(entry_id)
        return self.encoder(eid, {as_str(k): as_str(v) for k, v in fields.items()})

    async def stream(self, key: str, last_id: str | None, *, reset: bool = False) -> AsyncIterator[bytes]:
        """SSE frames for ``key`` after ``last_id`` (None: from now on). ``reset`` (the client's position was
        malformed), or a position no longer retained: the first frame is ``event: reset`` carrying the current
        tip as its ``id``, and the stream goes on live from there, so an EventSource that reconnects later
        resumes cleanly instead of being reset again with the same bad id."""
        sub: Subscriber = asyncio.Queue(self.queue_size)
        reader = await self._reader(key)
        reader.subscribers.add(sub)
        reader.idle_since = None
        SUBSCRIBERS.labels(self.kind).inc()
        try:
            if last_id is not None and await self.must_reset(key, last_id):
                last_id, reset = None, True
            if last_id is not None:
                sent = parse_id(last_id)
                # Backlog: everything after last_id that exists now, in pages.
                cursor = last_id
                while cursor is not None:
                    page = await self.redis.xrange(key, min=f"({cursor}", max="+", count=self.batch)
                    for entry_id, fields in page:
                        if _prev(fields) == keys.FEED_PREV_LOST:  # Redis lost the stream after must_reset looked
                            last_id, reset, cursor = None, True, None
                            break
                        frame = self.frame(entry_id, fields)
                        sent = parse_id(as_str(entry_id))
                        if frame is not None:
                            yield frame
                    else:
                        cursor = as_str(page[-1][0]) if len(page) == self.batch else None
            if last_id is None:
                tip = await self.redis.xrevrange(key, "+", "-", count=1)
                tip_id = as_str(tip[0][0]) if tip else ZERO
                sent = parse_id(tip_id)
                if reset:
                    yield sse_frame("reset", tip_id, RESET_FRAME_DATA)
            while True:
                batches = [await sub.get()]
                while not sub.empty():  # a client that fell behind gets what piled up in one write
                    batches.append(sub.get_nowait())
                chunks = []
                for batch in batches:
                    if batch is None:
                        break  # dropped (too slow) or the reader stopped: the client resumes from its last id
                    if batch is HEARTBEAT:
                        if not chunks:
                            chunks.append(HEARTBEAT)
                    elif batch.ids[-1] > sent:  # else already sent from the backlog
                        chunks.append(batch.after(sent))
                        sent = batch.ids[-1]
                if chunks:
                    yield chunks[0] if len(chunks) == 1 else b"".join(chunks)
                if None in batches:
                    return
        finally:
            reader.drop(sub)

    async def must_reset(self, key: str, last_id: str) -> bool:
        if not STREAM_ID.match(last_id):
            return True
        pos = parse_id(last_id)
        if pos != (0, 0) and not await self.redis.xrange(key, min=last_id, max=last_id, count=1):
            return True  # the client's own entry is gone: trimmed, or the stream was lost and recreated
        try:
            info = await self.redis.xinfo_stream(key)
        except Exception as exc:  # no such key
            if "no such key" not in str(exc).lower():
                raise
            return pos != (0, 0)  # the client saw entries that no longer exist
        info = {as_str(k): v for k, v in info.items()}
        first = info.get("first-entry")
        if pos == (0, 0) and first and _prev(first[1]) == keys.FEED_PREV_LOST:
            return True  # "from the start", but the stream restarted after losing entries: the map predates them
        last_generated = parse_id(as_str(info.get("last-generated-id") or ZERO))
        if pos > last_generated:
            return True  # ahead of the stream: the stream was recreated
        if parse_id(as_str(info.get("max-deleted-entry-id") or ZERO)) > pos:
            return True  # an entry after the client's position was deleted
        length, added = int(info.get("length", 0)), int(info.get("entries-added", 0))
        if added > length:  # the head was trimmed (MAXLEN): is the client's next entry still there?
            if length == 0:
                return pos < last_generated
            first_id = parse_id(as_str(first[0])) if first else last_generated
            return pos < first_id
        return False

    async def close(self) -> None:
        tasks = [r.task for r in self.readers.values()] + ([self.heartbeat_task] if self.heartbeat_task else [])
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(BaseException):
                await t


def _field_int(fields: dict[Any, Any], name: str) -> int | None:
    v = fields.get(name)
    if v is None:
        v = fields.get(name.encode())
    return int(v) if v is not None else None


def _off(fields: dict[Any, Any]) -> int | None:
    return _field_int(fields, keys.FEED_OFF)


def _prev(fields: dict[Any, Any]) -> int | None:
    return _field_int(fields, keys.FEED_PREV)


def seat_frame(entry_id: str, fields: dict[str, str]) -> bytes | None:
    data = fields.get("data")
    return sse_frame("seats", entry_id, data) if data else None


def notification_frame(entry_id: str, fields: dict[str, str]) -> bytes | None:
    kind, data = fields.get("type"), fields.get("data")
    return sse_frame(kind, entry_id, data) if kind and data else None
