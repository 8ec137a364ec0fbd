"""The waiting room's live positions for SSE: one shared Redis reader per event per process (issue 16).

Every follower of a queue entry used to re-read its entry every 0.5 s: a Redis round trip and a rendered frame per
follower per tick, ~4,000 reads a second for 2,000 buyers in one waiting room. Here, as for the seat feed
(feed.py):

* ``QueueWatch.follow(event_id, entry_id, first)`` is an async iterator of SSE frames: ``first`` (the entry as the
  caller just read it, owner checked), then one frame whenever the entry's position or status changes, and a
  heartbeat every ``heartbeat`` s (one timer for all followers).
* The first follower of an event starts that event's reader; the last one to leave stops it. Each ``every`` s the
  reader asks Redis for the queue's sizes (common/waiting_room.py ``read_counts``: one round trip, whatever the
  queue's size), and only when they changed (a join, an admission, a loss or a rebuild), or ``refresh`` s have
  passed, reads every followed entry in one pipeline and hands each follower its new frame.
* A follower holds only its latest frame: a slow client skips positions it had no time to send, never the last.
* While the queue is not in Redis (lost, not rebuilt yet) nothing is sent; the next read after the rebuild is.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass, field
from typing import Any, AsyncIterator

import structlog

from common import waiting_room
from query_service.feed import HEARTBEAT, sse_frame

log = structlog.get_logger("query.queue")


def queue_frame(event_id: str, entry_id: str, state: dict[str, Any]) -> bytes:
    """An ``event: queue`` frame: the entry as GET .../queue/{entry_id} answers it."""
    return sse_frame("queue", None, json.dumps({"id": entry_id, "event_id": event_id, **state},
                                               separators=(",", ":")))


@dataclass(eq=False)
class _Follower:
    entry_id: str
    frame: bytes  # the last frame handed over (sent or about to be)
    pending: bytes | None = None  # what to send next: a new frame, or HEARTBEAT
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    def hand(self, frame: bytes) -> None:
        self.pending = frame
        self.wake.set()


class _Room:
    def __init__(self, watch: "QueueWatch", event_id: str) -> None:
        self.watch, self.event_id = watch, event_id
        self.followers: set[_Follower] = set()
        self.task = asyncio.create_task(self.run())

    async def run(self) -> None:
        seen: waiting_room.Counts | None = None
        since = 0.0
        loop = asyncio.get_running_loop()
        while self.followers:
            try:
                counts = await waiting_room.read_counts(self.watch.redis, self.event_id)
                if counts.built and (counts != seen or loop.time() - since >= self.watch.refresh):
                    await self.read()
                    since = loop.time()
                seen = counts
            except asyncio.CancelledError:
                raise
            except Exception as e:  # Redis away for a moment: keep the followers, read again next time
                log.warning("queue_watch_read_failed", event_id=self.event_id, error=repr(e))
                seen = None
            await asyncio.sleep(self.watch.every)

    async def read(self) -> None:
        followers = list(self.followers)
        ids = sorted({f.entry_id for f in followers})
        states = await waiting_room.read_states(self.watch.redis, self.event_id, ids)
        if states is None:
            return
        frames = {i: queue_frame(self.event_id, i, s) for i, s in states.items()}
        for f in followers:
            frame = frames[f.entry_id]
            if frame != f.frame:
                f.frame = frame
                f.hand(frame)


class QueueWatch:
    def __init__(self, redis: Any, *, every: float = 0.5, refresh: float = 5.0, heartbeat: float = 15.0) -> None:
        self.redis, self.every, self.refresh = redis, every, refresh
        self.rooms: dict[str, _Room] = {}
        self.heartbeat_task = asyncio.create_task(self._heartbeats(heartbeat)) if heartbeat else None

    async def _heartbeats(self, every: float) -> None:
        while True:
            await asyncio.sleep(every)
            for room in list(self.rooms.values()):
                for f in room.followers:
                    if f.pending is None:
                        f.hand(HEARTBEAT)

    async def follow(self, event_id: str, entry_id: str, first: bytes) -> AsyncIterator[bytes]:
        me = _Follower(entry_id, first)
        room = self.rooms.get(event_id)
        if room is None or room.task.done():
            room = self.rooms[event_id] = _Room(self, event_id)  # its reader starts after this add
        room.followers.add(me)
        try:
            yield first
            while True:
                await me.wake.wait()
                me.wake.clear()
                frame, me.pending = me.pending, None
                if frame is not None:
                    yield frame
        finally:
            room.followers.discard(me)
            if not room.followers and self.rooms.get(event_id) is room:
                del self.rooms[event_id]  # its reader ends at its next turn

    async def close(self) -> None:
        tasks = [r.task for r in self.rooms.values()] + ([self.heartbeat_task] if self.heartbeat_task else [])
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
