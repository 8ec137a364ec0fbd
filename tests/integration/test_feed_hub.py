"""The SSE fan-out (query_service/feed.py) against real Redis: shared readers, resume with no gap and
no duplicate while entries keep arriving, reset for a trimmed position, slow subscribers dropped."""
from __future__ import annotations

import asyncio
import uuid

import pytest
import redis.asyncio

from contracts import keys
from query_service.feed import StreamHub, seat_frame

pytestmark = pytest.mark.integration


@pytest.fixture
async def rds(settings):
    client = redis.asyncio.Redis.from_url(settings.redis_url, decode_responses=True)
    yield client
    await client.aclose()


def key() -> str:
    return f"feed:test-{uuid.uuid4()}"


async def append(rds, k: str, n: int, *, start: int = 0, pause: float = 0.0) -> list[str]:
    ids = []
    for i in range(start, start + n):
        ids.append(await rds.xadd(k, {"data": f'{{"n":{i}}}', "off": i}))
        if pause:
            await asyncio.sleep(pause)
    return ids


def frame_id(frame: bytes) -> str:
    return next(line[4:] for line in frame.decode().split("\r\n") if line.startswith("id: "))


async def take(stream, n: int, timeout: float = 10.0) -> list[bytes]:
    out = []

    async def run():
        async for chunk in stream:  # a chunk carries one or more frames (one XREAD's worth)
            out.extend(f + b"\r\n\r\n" for f in chunk.split(b"\r\n\r\n") if f)
            if len(out) >= n:
                return

    await asyncio.wait_for(run(), timeout)
    return out


async def test_resume_while_entries_arrive_has_no_gap_and_no_duplicate(rds):
    hub = StreamHub(rds, seat_frame, kind="test", block_ms=200)
    k = key()
    first = await append(rds, k, 5)
    # A writer keeps appending while the client resumes from the 2nd entry.
    writer = asyncio.create_task(append(rds, k, 200, start=5, pause=0.001))
    frames = await take(hub.stream(k, first[1]), 203)
    later = await writer
    assert [frame_id(f) for f in frames] == first[2:] + later
    await hub.close()


async def test_two_subscribers_share_one_reader(rds):
    hub = StreamHub(rds, seat_frame, kind="test", block_ms=200)
    k = key()
    start = await append(rds, k, 1)
    a, b = hub.stream(k, start[0]), hub.stream(k, start[0])
    got = asyncio.gather(take(a, 3), take(b, 3))
    await asyncio.sleep(0.2)
    ids = await append(rds, k, 3, start=1)
    fa, fb = await got
    assert [frame_id(f) for f in fa] == [frame_id(f) for f in fb] == ids
    assert len(hub.readers) == 1
    await hub.close()


async def test_trimmed_position_gets_reset(rds):
    hub = StreamHub(rds, seat_frame, kind="test")
    k = key()
    ids = await append(rds, k, 10)
    await rds.xtrim(k, maxlen=3, approximate=False)  # what the projector's MAXLEN ~ does over time
    frames = await take(hub.stream(k, ids[2]), 1)
    assert frames[0].startswith(b"event: reset")
    # still retained: resumes normally
    frames = await take(hub.stream(k, ids[7]), 2)
    assert [frame_id(f) for f in frames] == ids[8:]
    # a position the stream never reached (Redis lost the stream) or garbage: reset
    assert (await take(hub.stream(f"feed:missing-{uuid.uuid4()}", ids[5]), 1))[0].startswith(b"event: reset")
    assert (await take(hub.stream(k, "not-an-id"), 1))[0].startswith(b"event: reset")
    await hub.close()


async def test_a_slow_subscriber_is_dropped_and_the_others_get_everything(rds):
    hub = StreamHub(rds, seat_frame, kind="test", queue_size=4, block_ms=200)
    k = key()
    start = await append(rds, k, 1)
    slow = hub.stream(k, start[0])
    fast = hub.stream(k, start[0])
    slow_first = asyncio.create_task(take(slow, 1))  # subscribes, then stops reading
    fast_all = asyncio.create_task(take(fast, 50))
    await asyncio.sleep(0.2)
    ids = []
    for i in range(1, 51):  # one entry per XREAD (wait for the reader each time): 50 batches, queue of 4
        ids += await append(rds, k, 1, start=i)
        while hub.readers[k].position != ids[-1]:
            await asyncio.sleep(0.001)
    fast_frames = await fast_all
    assert [frame_id(f) for f in fast_frames] == ids
    seen = [frame_id(f) for f in await slow_first]
    reader = hub.readers[k]
    assert len(reader.subscribers) == 1  # the slow one was dropped (the fast one is still attached)
    # The dropped stream ends (its queue is let go); resuming from its last id catches it up exactly.
    assert [f async for f in slow] == []
    resume_from = seen[-1]
    caught_up = await take(hub.stream(k, resume_from), len(ids) - ids.index(resume_from) - 1)
    assert [frame_id(f) for f in caught_up] == ids[ids.index(resume_from) + 1:]
    await hub.close()


async def test_disconnect_releases_the_subscription_and_the_reader(rds):
    hub = StreamHub(rds, seat_frame, kind="test", block_ms=100, linger=0.2)
    k = key()
    start = await append(rds, k, 1)
    stream = hub.stream(k, start[0])
    task = asyncio.create_task(take(stream, 1))
    await asyncio.sleep(0.1)
    assert len(hub.readers[k].subscribers) == 1
    task.cancel()  # what the server does when the client goes away
    await asyncio.gather(task, return_exceptions=True)
    await stream.aclose()
    assert k not in hub.readers or not hub.readers[k].subscribers
    for _ in range(50):
        if k not in hub.readers:
            break
        await asyncio.sleep(0.05)
    assert k not in hub.readers  # the reader stopped once nobody listened
    await hub.close()


async def chained(rds, k: str, offs: range, prev: int) -> list[str]:
    """Entries as the projector writes them: each names the ``off`` of the one before it (FEED_LUA)."""
    ids = []
    for off in offs:
        ids.append(await rds.xadd(k, {"data": f'{{"n":{off}}}', "off": off, "prev": prev}))
        prev = off
    return ids


async def test_a_recreated_stream_resets_its_subscribers_instead_of_a_silent_gap(rds):
    """Found by the fault suite (FLUSHALL mid-sale): a stream recreated after Redis lost it has newer ids than the
    client's position, so resuming from it looked clean while the lost entries were silently skipped."""
    hub = StreamHub(rds, seat_frame, kind="test", block_ms=200)
    k = key()
    ids = await chained(rds, k, range(0, 3), -1)
    got: list[bytes] = []

    async def follow():
        async for chunk in hub.stream(k, ids[-1]):
            got.extend(f for f in chunk.split(b"\r\n\r\n") if f)

    live = asyncio.create_task(follow())
    await asyncio.sleep(0.3)
    delivered = await chained(rds, k, range(3, 5), 2)   # delivered live
    await asyncio.sleep(0.5)
    await rds.delete(k)                                  # Redis loses the stream (FLUSHALL) ...
    await chained(rds, k, range(9, 10), -1)              # ... the projector starts it afresh; offs 5-8 are lost
    await asyncio.wait_for(live, 5)                      # the live stream ENDS instead of going on past the gap
    assert [frame_id(f) for f in got] == delivered
    # The client resumes from the last entry it got, which the stream no longer has: reset, not a clean resume.
    frames = await take(hub.stream(k, delivered[-1]), 1)
    assert frames[0].startswith(b"event: reset")
    await hub.close()


async def test_a_map_from_before_a_loss_cannot_resume_from_the_start(rds):
    """Found by the fault suite (FLUSHALL mid-sale): after the reset the page refetched /seats and got the micro-cache's
    stale-while-revalidate body, built before the event's first entry ("0-0"). Streaming from "0-0" on the restarted
    stream skipped every entry that was lost. The projector marks the restart (prev = FEED_PREV_LOST), and a client
    at "0-0" is reset on it."""
    hub = StreamHub(rds, seat_frame, kind="test", block_ms=200)
    k = key()
    ids = await chained(rds, k, range(0, 3), keys.FEED_PREV_FIRST)
    frames = await take(hub.stream(k, "0-0"), 3)  # before the loss, "0-0" is the whole stream
    assert [frame_id(f) for f in frames] == ids
    await rds.delete(k)
    await chained(rds, k, range(7, 9), keys.FEED_PREV_LOST)
    frames = await take(hub.stream(k, "0-0"), 1)
    assert frames[0].startswith(b"event: reset")
    await hub.close()


async def test_subscribers_that_joined_an_empty_stream_are_reset_when_it_restarts_after_a_loss(rds):
    """A reader that started on the emptied stream has delivered nothing, so it has no chain to compare with; the
    restart entry still ends its streams: the maps its subscribers hold may be older than what was lost."""
    hub = StreamHub(rds, seat_frame, kind="test", block_ms=200)
    k = key()
    got: list[bytes] = []

    async def follow():
        async for chunk in hub.stream(k, "0-0"):
            got.extend(f for f in chunk.split(b"\r\n\r\n") if f and not f.startswith(b":"))

    live = asyncio.create_task(follow())
    await asyncio.sleep(0.3)
    await chained(rds, k, range(7, 9), keys.FEED_PREV_LOST)
    await asyncio.wait_for(live, 5)  # ended, not delivered past the loss
    assert got == []
    frames = await take(hub.stream(k, "0-0"), 1)  # the client comes back from where it was: reset
    assert frames[0].startswith(b"event: reset")
    # A client that joins after the restart, from the restart's own position, streams on normally.
    tip = (await rds.xrevrange(k, count=1))[0][0]
    follower = hub.stream(k, tip)
    more = await chained(rds, k, range(9, 10), 8)
    frames = await take(follower, 1)
    assert [frame_id(f) for f in frames] == more
    await hub.close()


async def test_a_restart_found_in_the_backlog_resets_the_client(rds):
    """Redis can lose the stream between the resume check and the backlog read: the backlog then starts with the
    restart entry, and the client is reset there instead of being handed the new stream as if it followed."""
    hub = StreamHub(rds, seat_frame, kind="test", block_ms=200)
    k = key()
    ids = await chained(rds, k, range(0, 3), keys.FEED_PREV_FIRST)
    await rds.xadd(k, {"data": '{"n":9}', "off": 9, "prev": keys.FEED_PREV_LOST})  # as if the race happened
    frames = await take(hub.stream(k, ids[0]), 3)
    assert [frame_id(f) for f in frames[:2]] == ids[1:]
    assert frames[2].startswith(b"event: reset")
    await hub.close()


def test_the_projector_marks_a_stream_it_restarts_after_a_loss(settings):
    """projectors/store.py append_feed: the event's first entry says FEED_PREV_FIRST, the next names its predecessor,
    and an entry written to an emptied stream of an event that had entries says FEED_PREV_LOST."""
    import redis as sync_redis

    from projectors.projection import Msg
    from projectors.store import Store

    client = sync_redis.Redis.from_url(settings.redis_url)
    store = Store(None, client)
    event_id = f"test-{uuid.uuid4()}"
    k = keys.seat_feed(event_id)

    def msg(offset: int) -> Msg:
        return Msg("inventory", 0, offset, {"type": "SeatsHeld", "id": str(uuid.uuid4()), "aggregate_id": event_id,
                                           "data": {"seats": [{"seat_id": f"A-1-{offset}", "status": "held"}]}})

    def prevs() -> list[int]:
        return [int(f[keys.FEED_PREV.encode()]) for _, f in client.xrange(k)]

    try:
        store.append_feed(event_id, [msg(5)], {}, False, 0.0)
        store.append_feed(event_id, [msg(6), msg(7)], {}, True, 0.0)
        store.append_feed(event_id, [msg(7)], {}, True, 0.0)  # a redelivery: not appended twice
        assert prevs() == [keys.FEED_PREV_FIRST, 5]
        client.delete(k)  # Redis loses it
        store.append_feed(event_id, [msg(9)], {}, True, 0.0)
        assert prevs() == [keys.FEED_PREV_LOST]
    finally:
        client.delete(k)
        store.pool.shutdown()
        store.stages.shutdown()
        client.close()
