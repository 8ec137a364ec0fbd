"""Live streams on the live stack: the seat stream (hold -> held -> sold), resume by Last-Event-ID with no gap
and no duplicate, two query-service processes delivering the same frames, heartbeats, buyer notifications."""
from __future__ import annotations

import time

import httpx
import pytest

from tests.e2e.conftest import eventually, service_process
from tests.e2e.sse import SseClient, seat_changes

pytestmark = pytest.mark.e2e


def base(settings) -> str:
    return f"http://{settings.query_host}:{settings.query_port}"


def snapshot(settings, event_id: str) -> dict:
    url = f"{base(settings)}/api/v1/events/{event_id}/seats"
    return eventually(lambda: (r := httpx.get(url, timeout=10)).status_code == 200 and r.json(), timeout=60)


def stream_url(root: str, event_id: str) -> str:
    return f"{root}/api/v1/events/{event_id}/seats/stream"


def test_seat_stream_shows_a_hold_then_the_sale(api, organizer, buyer, settings):
    ev = api.event(organizer[1])
    snap = snapshot(settings, ev["id"])
    with SseClient(stream_url(base(settings), ev["id"]), {"Last-Event-ID": snap["last_event_id"]}) as sse:
        h = api.hold(buyer[1], ev["id"], ["A-1-7", "A-1-8"])
        frames = sse.until(lambda f: seat_changes([f]).get("A-1-7") == "held")
        assert frames[-1].event == "seats" and frames[-1].id
        assert frames[-1].json()["event_id"] == ev["id"]
        assert seat_changes(frames)["A-1-8"] == "held"
        api.order(buyer[1], h["id"])
        frames = sse.until(lambda f: seat_changes([f]).get("A-1-7") == "sold")
        api.hold(buyer[1], ev["id"], section="GA", quantity=4)
        frames = sse.until(lambda f: f.event == "seats" and any(c.get("section") == "GA" for c in f.json()["changes"]))
        assert {"section": "GA", "available": 46} in frames[-1].json()["changes"]


def test_resume_with_last_event_id_has_no_gap_and_no_duplicate(api, organizer, buyer, settings):
    ev = api.event(organizer[1])
    snap = snapshot(settings, ev["id"])
    url = stream_url(base(settings), ev["id"])
    seats = [f"A-2-{n}" for n in range(1, 9)]
    with SseClient(url, {"Last-Event-ID": snap["last_event_id"]}) as sse:
        everything: list = []
        for seat in seats:  # one hold at a time, each seen before the next: one feed entry each
            api.hold(buyer[1], ev["id"], [seat])
            everything += sse.until(lambda f: seat in seat_changes([f]))
    ids = [f.id for f in everything]
    assert len(ids) == len(set(ids)) and ids == sorted(ids, key=lambda i: tuple(map(int, i.split("-"))))
    # Reconnect from the first frame: exactly the frames after it, in order, none twice.
    with SseClient(url, {"Last-Event-ID": ids[0]}) as again:
        resumed = [again.next(30) for _ in ids[1:]]
        assert [f.id for f in resumed] == ids[1:]
        assert [f.data for f in resumed] == [f.data for f in everything[1:]]
        # ...and it is live afterwards
        api.hold(buyer[1], ev["id"], ["A-3-1"])
        assert seat_changes(again.until(lambda f: "A-3-1" in seat_changes([f])))["A-3-1"] == "held"
    # ?last_event_id= works like the header (EventSource cannot set headers on a first connection).
    with SseClient(f"{url}?last_event_id={ids[-2]}") as q:
        assert q.next(30).id == ids[-1]


def test_a_position_no_longer_retained_gets_reset(api, organizer, buyer, settings):
    import redis

    ev = api.event(organizer[1])
    snapshot(settings, ev["id"])
    r = redis.Redis.from_url(settings.redis_url)
    key = f"feed:{ev['id']}"
    for n in (1, 2, 3):  # one at a time: the projector coalesces a batch into one entry
        api.hold(buyer[1], ev["id"], [f"A-1-{n}"])
        entries = eventually(lambda: (e := r.xrange(key)) and len(e) >= n and e, timeout=60)
    r.xtrim(key, maxlen=1, approximate=False)  # what MAXLEN does to a long-idle client's position
    with SseClient(stream_url(base(settings), ev["id"]), {"Last-Event-ID": entries[0][0].decode()}) as sse:
        reset = sse.next(30)
        assert reset.event == "reset"  # entries[1] is gone
        # ...with the current tip as its id, and the stream goes on live from there: an EventSource that
        # reconnects resumes from that id instead of being reset again with the old one.
        assert reset.id == entries[2][0].decode()
        api.hold(buyer[1], ev["id"], ["A-1-5"])
        live = sse.next(30)
        assert seat_changes([live]) == {"A-1-5": "held"}
    with SseClient(stream_url(base(settings), ev["id"]), {"Last-Event-ID": live.id}) as sse:
        api.hold(buyer[1], ev["id"], ["A-1-4"])  # a retained position resumes normally
        frame = sse.next(30)
        assert frame.event == "seats" and seat_changes([frame]) == {"A-1-4": "held"}


@pytest.fixture(scope="module")
def second_query_service(settings):
    """Another query-service process (one worker, 1 s heartbeat) beside the stack's own."""
    with service_process("query_service.app", "EVENTLY_QUERY_PORT", EVENTLY_QUERY_WORKERS="1",
                         EVENTLY_SSE_PING_SECONDS="1") as root:
        yield root


def test_two_query_service_processes_deliver_the_same_frames(api, organizer, buyer, settings, second_query_service):
    ev = api.event(organizer[1])
    snap = snapshot(settings, ev["id"])
    seats = ["A-1-1", "A-1-2", "A-2-5"]
    clients = [SseClient(stream_url(root, ev["id"]), {"Last-Event-ID": snap["last_event_id"]})
               for root in (base(settings), second_query_service, base(settings), second_query_service)]
    try:
        h = api.hold(buyer[1], ev["id"], seats[:2])
        api.order(buyer[1], h["id"])
        api.hold(buyer[1], ev["id"], seats[2:])
        want = {"A-1-1": "sold", "A-1-2": "sold", "A-2-5": "held"}
        got = []
        for c in clients:
            frames: list = []
            while {s: seat_changes(frames).get(s) for s in seats} != want:
                frames.append(c.next(30))
            got.append([(f.id, f.data) for f in frames])
        assert got[0] == got[1] == got[2] == got[3]
        time.sleep(1.5)  # the second process pings every second: a comment heartbeat must have arrived
        assert clients[1].comments >= 1
    finally:
        for c in clients:
            c.close()


def test_buyer_notifications(api, organizer, settings, second_query_service):
    ev = api.event(organizer[1])
    _, me = api.user("buyer")
    assert httpx.get(f"{base(settings)}/api/v1/me/notifications/stream", timeout=10).status_code == 401
    assert httpx.get(f"{base(settings)}/api/v1/me/notifications/stream?access_token={organizer[1]}",
                     timeout=10).status_code == 403
    with SseClient(f"{second_query_service}/api/v1/me/notifications/stream?access_token={me}") as sse:
        time.sleep(0.3)  # subscribed before anything happens (no Last-Event-ID: from now on)
        order = api.order(me, api.hold(me, ev["id"], ["A-1-9"])["id"])
        first = sse.next(60)
        assert first.event == "order_confirmed" and first.id
        body = first.json()
        assert body["order"]["id"] == order["id"] and body["order"]["seats"] == ["A-1-9"]
        api.cancel_order(organizer[1], order["id"])
        second = sse.next(60)
        assert second.event == "order_cancelled" and second.json()["order"]["id"] == order["id"]
        assert second.json()["reason"] == "cancelled_by_organizer"
    # Resume: from the first notification, exactly the second comes back.
    with SseClient(f"{base(settings)}/api/v1/me/notifications/stream",
                   {"Authorization": f"Bearer {me}", "Last-Event-ID": first.id}) as again:
        assert again.next(30).id == second.id
