"""Flash-sale controls on the read side (issue 16), through the whole stack: the event shows when its sale opens,
its seat stream says so at that instant, and a buyer follows their waiting-room entry on the query service (GET
and SSE) from a position counting down to the admission, then holds with it."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import httpx

from contracts import keys
from tests.e2e.conftest import eventually
from tests.e2e.sse import SseClient


def iso_in(seconds: float) -> str:
    return (datetime.now(timezone.utc) + timedelta(seconds=seconds)).isoformat(timespec="milliseconds") \
        .replace("+00:00", "Z")


def waiting_room_event(api, organizer: str, opens_in: float, per_minute: int) -> dict:
    venue = api.call("POST", "/api/v1/venues", organizer, json={
        "name": "Queue Hall", "city": "Lisbon", "sections": [{"code": "GA", "name": "Floor", "kind": "ga",
                                                             "capacity": 100}]})
    ev = api.call("POST", "/api/v1/events", organizer, json={
        "venue_id": venue["id"], "title": f"Drop {uuid.uuid4().hex[:6]}", "category": "music",
        "starts_at": "2027-03-01T20:00:00Z", "currency": "EUR", "prices": {"GA": 0}, "max_per_buyer": 2,
        "sale_starts_at": iso_in(opens_in), "waiting_room": {"admit_per_minute": per_minute,
                                                            "admission_seconds": 120}})
    return api.call("POST", f"/api/v1/events/{ev['id']}/publish", organizer)


def test_a_buyer_follows_the_queue_to_the_admission_and_holds_with_it(api, settings, q, organizer):
    ev = waiting_room_event(api, organizer[1], opens_in=8, per_minute=60)
    detail = eventually(lambda: (r := q.get(f"/api/v1/events/{ev['id']}")).status_code == 200 and r.json())
    seats = SseClient(f"{settings_query(settings)}/api/v1/events/{ev['id']}/seats/stream")  # before it opens
    assert detail["on_sale_at"] == ev["sale_starts_at"] and detail["max_per_buyer"] == 2
    assert detail["waiting_room"] == {"admit_per_minute": 60, "admission_seconds": 120}
    listed = q.get("/api/v1/events", params={"q": ev["title"]}).json()["items"]
    assert [(i["id"], i["on_sale_at"]) for i in listed] == [(ev["id"], ev["sale_starts_at"])]

    buyers = [api.user("buyer") for _ in range(3)]
    entries = [api.call("POST", f"/api/v1/events/{ev['id']}/queue", t) for _, t in buyers]
    assert {e["status"] for e in entries} == {"waiting"}
    now = [q.get(f"/api/v1/events/{ev['id']}/queue/{e['id']}", headers={"Authorization": f"Bearer {t}"}).json()
           for (_, t), e in zip(buyers, entries)]
    assert sorted(n["position"] for n in now) == [1, 2, 3]  # a draw among early joiners, shown as it stands
    assert {n["status"] for n in now} == {"waiting"}
    (buyer_id, token), entry = buyers[-1], entries[-1]
    other = {"Authorization": f"Bearer {buyers[0][1]}"}
    assert q.get(f"/api/v1/events/{ev['id']}/queue/{entry['id']}", headers=other).status_code == 404

    with SseClient(f"{settings_query(settings)}/api/v1/events/{ev['id']}/queue/{entry['id']}/stream"
                   f"?access_token={token}") as stream:
        frames = stream.until(lambda f: f.event == "queue" and f.json()["status"] == "admitted", timeout=60)
    with seats:
        opened = seats.until(lambda f: f.event == "sale_open", timeout=30)[-1].json()
    assert opened == {"event_id": ev["id"], "on_sale_at": ev["sale_starts_at"]}
    positions = [f.json()["position"] for f in frames]
    assert positions == sorted(positions, reverse=True) and positions[-1] == 0  # counting down to the admission
    admission = frames[-1].json()["admission"]
    assert datetime.fromisoformat(admission["expires_at"].replace("Z", "+00:00")) > datetime.now(timezone.utc)
    assert api.call("POST", f"/api/v1/events/{ev['id']}/holds", token, expect=403,
                    json={"section": "GA", "quantity": 1})["error"]["code"] == "ADMISSION_REQUIRED"
    hold = api.call("POST", f"/api/v1/events/{ev['id']}/holds", token,
                    json={"section": "GA", "quantity": 2, "admission": admission["token"]})
    assert hold["quantity"] == 2
    over = api.call("POST", f"/api/v1/events/{ev['id']}/holds", token, expect=409,
                    json={"section": "GA", "quantity": 1, "admission": admission["token"]})
    assert over["error"]["code"] == "LIMIT_EXCEEDED" and over["error"]["details"] == {"limit": 2, "current": 2}


def test_the_queue_answers_503_while_redis_has_lost_it_then_the_same_positions(api, settings, q, organizer):
    import redis

    ev = waiting_room_event(api, organizer[1], opens_in=3600, per_minute=10)
    buyers = [api.user("buyer") for _ in range(4)]
    entries = [api.call("POST", f"/api/v1/events/{ev['id']}/queue", t) for _, t in buyers]
    before = [q.get(f"/api/v1/events/{ev['id']}/queue/{e['id']}", headers={"Authorization": f"Bearer {t}"})
              .json()["position"] for (_, t), e in zip(buyers, entries)]
    assert sorted(before) == [1, 2, 3, 4]
    r = redis.Redis.from_url(settings.redis_url)
    r.delete(*[keys.queue_built(ev["id"]), keys.queue_waiting(ev["id"]), keys.queue_entries(ev["id"])])
    token = buyers[0][1]
    url = f"/api/v1/events/{ev['id']}/queue/{entries[0]['id']}"
    lost = q.get(url, headers={"Authorization": f"Bearer {token}"})
    assert lost.status_code in (503, 200)  # the sweeper (every 0.5 s) may have rebuilt it already
    if lost.status_code == 503:
        assert lost.json()["error"]["code"] == "DEPENDENCY_UNAVAILABLE" and lost.headers["Retry-After"]
    for (_, t), e, position in zip(buyers, entries, before):
        back = eventually(lambda: (x := q.get(f"/api/v1/events/{ev['id']}/queue/{e['id']}",
                                              headers={"Authorization": f"Bearer {t}"})).status_code == 200
                          and x.json(), timeout=30)
        assert back["position"] == position and back["status"] == "waiting"  # the record kept the order


def settings_query(settings) -> str:
    return f"http://{settings.query_host}:{settings.query_port}"
