"""The query service's shared waiting-room reader (query_service/queue_watch.py) against the real Redis: many
followers of one event share one reader, each hears its own position change and its admission, nothing while the
queue is lost, and the reader stops when the last follower leaves."""
from __future__ import annotations

import asyncio
import json
import uuid

import pytest

from common import waiting_room
from contracts import keys
from query_service.feed import HEARTBEAT
from query_service.queue_watch import QueueWatch, queue_frame
from tests.integration.conftest import eventually

pytestmark = pytest.mark.integration


def payload(frame: bytes) -> dict:
    data = next(line for line in frame.decode().split("\r\n") if line.startswith("data: "))
    return json.loads(data[len("data: "):])


async def test_followers_share_one_reader_and_hear_their_own_changes(redis_client):
    event_id = str(uuid.uuid4())
    ids = [str(uuid.uuid4()) for _ in range(30)]
    waiting, admitted = keys.queue_waiting(event_id), keys.queue_admitted(event_id)
    await redis_client.zadd(waiting, {i: 1.0 + n for n, i in enumerate(ids)})
    await redis_client.hset(keys.queue_entries(event_id), mapping={i: "buyer-" + i for i in ids})
    await redis_client.set(keys.queue_built(event_id), "1")
    watch = QueueWatch(redis_client, every=0.05, refresh=60, heartbeat=0)
    got: dict[str, list[dict]] = {i: [] for i in ids}

    async def follow(entry_id: str) -> None:
        entry = await waiting_room.read_entry(redis_client, event_id, entry_id)
        entry.pop("buyer_id")
        frames = watch.follow(event_id, entry_id, queue_frame(event_id, entry_id, entry))
        try:
            async for frame in frames:
                got[entry_id].append(payload(frame))
                if got[entry_id][-1]["status"] == "admitted":
                    return
        finally:
            await frames.aclose()  # as the app's stream slots do when a client leaves
    try:
        tasks = [asyncio.create_task(follow(i)) for i in ids]
        await eventually(lambda: asyncio.sleep(0, all(got.values())), timeout=10)
        assert list(watch.rooms) == [event_id] and len(watch.rooms[event_id].followers) == 30  # one reader
        assert [got[i][0]["position"] for i in ids] == list(range(1, 31))
        # admit the first 10, then the rest: everyone behind moves up by 10, the admitted get their admission
        for batch in (ids[:10], ids[10:]):
            async with redis_client.pipeline(transaction=True) as pipe:
                pipe.zrem(waiting, *batch)
                pipe.hset(admitted, mapping={i: waiting_room.admission_value("tok-" + i, "2030-01-01T00:00:00.000Z")
                                             for i in batch})
                await pipe.execute()
            if batch == ids[:10]:  # everyone behind has heard of it before the next change
                await eventually(lambda: asyncio.sleep(0, all(got[i][-1]["position"] == n + 1 for n, i in
                                                              enumerate(ids[10:]))), timeout=10)
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=10)
        for n, i in enumerate(ids):
            frames = got[i]
            assert frames[0] == {"id": i, "event_id": event_id, "position": n + 1, "status": "waiting"}
            assert frames[-1]["admission"]["token"] == "tok-" + i and frames[-1]["position"] == 0
            positions = [f["position"] for f in frames[:-1]]
            assert positions == ([n + 1] if n < 10 else [n + 1, n - 9])  # each change once, no repeats
        await eventually(lambda: asyncio.sleep(0, not watch.rooms), timeout=5)  # the last one left: no reader
    finally:
        await watch.close()
        await redis_client.delete(waiting, admitted, keys.queue_entries(event_id), keys.queue_built(event_id))


async def test_a_lost_queue_sends_nothing_until_rebuilt_and_heartbeats_keep_flowing(redis_client):
    event_id, entry_id, other = str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())
    waiting = keys.queue_waiting(event_id)

    async def build(members: dict[str, float]) -> None:
        await redis_client.zadd(waiting, members)
        await redis_client.hset(keys.queue_entries(event_id), mapping={m: "b" for m in members})
        await redis_client.set(keys.queue_built(event_id), "1")
    await build({other: 1.0, entry_id: 2.0})
    watch = QueueWatch(redis_client, every=0.05, refresh=60, heartbeat=0.3)
    frames = watch.follow(event_id, entry_id, queue_frame(event_id, entry_id, {"position": 2, "status": "waiting"}))
    try:
        assert payload(await anext(frames))["position"] == 2
        await redis_client.delete(waiting, keys.queue_entries(event_id), keys.queue_built(event_id))  # lost
        assert await asyncio.wait_for(anext(frames), 5) == HEARTBEAT  # no frame from a lost queue, only pings
        await build({entry_id: 2.0})  # rebuilt without the one ahead: position 1
        while (frame := await asyncio.wait_for(anext(frames), 5)) == HEARTBEAT:
            pass
        assert payload(frame) == {"id": entry_id, "event_id": event_id, "position": 1, "status": "waiting"}
    finally:
        await frames.aclose()
        await watch.close()
        await redis_client.delete(waiting, keys.queue_entries(event_id), keys.queue_built(event_id))
