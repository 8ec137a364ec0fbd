"""Waitlist with exclusive offers on the live stack (CONTRACT.md "Waitlist"), through HTTP: FIFO positions, an
order cancellation becoming a hold for the first buyer in line that nobody else can take, checkout of the offer,
expiry passing the offer on, leaving, concurrent joins, GA quantities, and the read model under redelivery.

The offer TTL is 600 s on the stack; the expiry test moves time for one hold only (``holds.expires_at``), and the
command service's sweeper then expires it like any hold."""
from __future__ import annotations

import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from projectors.store import Store, ensure_indexes
from projectors.worker import parse
from tests.e2e.api import Api
from tests.e2e.conftest import consistent, eventually, kafka_messages
from tests.e2e.sse import SseClient

pytestmark = pytest.mark.e2e


def query(settings) -> str:
    return f"http://{settings.query_host}:{settings.query_port}"


def my_waitlist(settings, token: str) -> dict[str, dict]:
    """The buyer's entries from the query service, by id."""
    r = httpx.get(f"{query(settings)}/api/v1/me/waitlist", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert r.status_code == 200, r.text
    return {e["id"]: e for e in r.json()["items"]}


def entry_when(settings, token: str, entry_id: str, **want) -> dict:
    """Wait (bounded) until the read side shows the entry with these field values."""
    def probe():
        e = my_waitlist(settings, token).get(entry_id)
        return e if e and all(e.get(k) == v for k, v in want.items()) else None
    try:
        return eventually(probe, timeout=60)
    except AssertionError:
        raise AssertionError(f"entry {entry_id} never showed {want}; last: "
                             f"{my_waitlist(settings, token).get(entry_id)}") from None


def seat_status(settings, event_id: str, seat: str) -> str | None:
    r = httpx.get(f"{query(settings)}/api/v1/events/{event_id}/seats", timeout=10)
    return {s["id"]: s["status"] for s in r.json()["seats"]}.get(seat) if r.status_code == 200 else None


def pg_entry(pg, entry_id: str) -> dict:
    row = pg.execute("SELECT status, seq, offer_hold_id::text, version FROM waitlist_entries WHERE id = %s",
                     (entry_id,)).fetchone()
    return dict(zip(("status", "seq", "offer_hold_id", "version"), row))


def notifications(settings, token: str, until: str) -> list:
    """The buyer's notification frames from the start of their stream (Last-Event-ID 0-0: no subscribe race)
    up to the first ``until`` frame."""
    with SseClient(f"{query(settings)}/api/v1/me/notifications/stream?access_token={token}",
                   {"Last-Event-ID": "0-0"}) as sse:
        return sse.until(lambda f: f.event == until, timeout=60)


@pytest.fixture
def line(api, organizer):
    """A sold-out two-seat event (buyer X has one order per seat) with A then B waiting for one seat each."""
    since = int(time.time() * 1000) - 5000  # for kafka_messages: before the event exists
    ev = api.event(organizer[1], rows=1, seats_per_row=2, ga=0)
    (_, x), (a_id, a), (b_id, b) = api.user("buyer"), api.user("buyer"), api.user("buyer")
    err = api.join_waitlist(a, ev["id"], 1, expect=409)  # seats are on sale: hold them instead
    assert err["error"]["code"] == "SEATS_AVAILABLE"
    orders = [api.order(x, api.hold(x, ev["id"], [seat])["id"]) for seat in ("A-1-1", "A-1-2")]
    ja, jb = api.join_waitlist(a, ev["id"], 1), api.join_waitlist(b, ev["id"], 1)
    assert (ja["position"], jb["position"]) == (1, 2)
    return {"ev": ev, "x": x, "a": a, "b": b, "a_id": a_id, "b_id": b_id, "orders": orders, "ja": ja, "jb": jb,
            "since": since}


def offer_to_a(api, settings, line) -> dict:
    """X cancels the order of A-1-1: the seat becomes A's exclusive offer. Returns A's entry (read side)."""
    api.cancel_order(line["x"], line["orders"][0]["id"])
    ea = entry_when(settings, line["a"], line["ja"]["id"], status="offered")
    assert ea["position"] is None and ea["offer"]["hold_id"] and ea["offer"]["expires_at"]
    return ea


def test_a_cancelled_order_is_offered_to_the_first_in_line_who_checks_it_out(api, settings, pg, line):
    ev, a, b = line["ev"], line["a"], line["b"]
    entry_when(settings, a, line["ja"]["id"], status="waiting", position=1, quantity=1, event_id=ev["id"])
    entry_when(settings, b, line["jb"]["id"], status="waiting", position=2)
    ea = offer_to_a(api, settings, line)
    hold_id = ea["offer"]["hold_id"]
    assert pg.execute("SELECT seats, buyer_id::text FROM holds WHERE id = %s", (hold_id,)).fetchone() == \
        (["A-1-1"], line["a_id"])
    eventually(lambda: seat_status(settings, ev["id"], "A-1-1") == "held", timeout=60)  # never back on sale
    entry_when(settings, b, line["jb"]["id"], status="waiting", position=1)  # A is no longer waiting
    order = api.order(a, hold_id)
    assert order["status"] == "confirmed" and order["seats"] == ["A-1-1"]
    done = entry_when(settings, a, line["ja"]["id"], status="converted")
    assert done["position"] is None and "offer" not in done
    entry_when(settings, b, line["jb"]["id"], status="waiting", position=1)
    eventually(lambda: seat_status(settings, ev["id"], "A-1-1") == "sold", timeout=60)
    consistent(settings, [ev["id"]])  # the checker compares the waitlist read model with PostgreSQL too


def test_an_offered_hold_cannot_be_taken_by_anyone_else(api, settings, line):
    ev, a, b = line["ev"], line["a"], line["b"]
    hold_id = offer_to_a(api, settings, line)["offer"]["hold_id"]
    _, c = api.user("buyer")
    for other in (c, b):  # a stranger, and the next in line
        err = api.call("POST", f"/api/v1/events/{ev['id']}/holds", other, expect=409, json={"seats": ["A-1-1"]})
        assert err["error"]["code"] == "SEATS_UNAVAILABLE"
        api.call("POST", "/api/v1/orders", other, expect=(403, 404), json={"hold_id": hold_id})
    assert api.order(a, hold_id)["seats"] == ["A-1-1"]  # still A's, untouched


def test_an_expired_offer_passes_to_the_next_in_line(api, settings, pg, line):
    ev, a, b = line["ev"], line["a"], line["b"]
    first = offer_to_a(api, settings, line)["offer"]["hold_id"]
    pg.execute("UPDATE holds SET expires_at = now() WHERE id = %s", (first,))  # move time for this hold only
    eb = entry_when(settings, b, line["jb"]["id"], status="offered")
    second = eb["offer"]["hold_id"]
    assert second != first
    assert pg.execute("SELECT seats, buyer_id::text FROM holds WHERE id = %s", (second,)).fetchone() == \
        (["A-1-1"], line["b_id"])
    assert pg.execute("SELECT status, hold_id::text FROM seats WHERE event_id = %s AND seat_id = 'A-1-1'",
                      (ev["id"],)).fetchone() == ("held", second)
    ea = entry_when(settings, a, line["ja"]["id"], status="expired")
    assert ea["position"] is None and "offer" not in ea
    seen_a = notifications(settings, a, until="offer_expired")
    assert [f.event for f in seen_a] == ["waitlist_offer", "offer_expired"]
    offer, expired = (f.json() for f in seen_a)
    assert offer["offer"]["hold_id"] == first and offer["entry"]["id"] == line["ja"]["id"]
    assert offer["entry"]["event_id"] == ev["id"] and offer["offer"]["expires_at"]
    assert expired["reason"] == "expired" and expired["entry"]["status"] == "expired"
    seen_b = notifications(settings, b, until="waitlist_offer")
    assert [f.event for f in seen_b] == ["waitlist_offer"] and seen_b[0].json()["offer"]["hold_id"] == second
    eventually(lambda: seat_status(settings, ev["id"], "A-1-1") == "held", timeout=60)
    consistent(settings, [ev["id"]])


def test_concurrent_joins_get_unique_positions(api, organizer, settings, pg):
    ev = api.event(organizer[1], rows=1, seats_per_row=1, ga=0)
    _, x = api.user("buyer")
    api.order(x, api.hold(x, ev["id"], ["A-1-1"])["id"])
    buyers = [api.user("buyer")[1] for _ in range(20)]
    start = threading.Barrier(len(buyers))
    base_url = str(api.http.base_url)

    def join(token: str) -> dict:
        client = Api(base_url)  # one connection per thread
        start.wait(30)
        return client.join_waitlist(token, ev["id"], 1)

    with ThreadPoolExecutor(len(buyers)) as pool:
        joined = list(pool.map(join, buyers))
    assert sorted(j["position"] for j in joined) == list(range(1, 21))
    seqs = [pg_entry(pg, j["id"])["seq"] for j in joined]
    assert len(set(seqs)) == 20
    # positions follow the FIFO tickets
    assert [j["position"] for _, j in sorted(zip(seqs, joined), key=lambda p: p[0])] == list(range(1, 21))
    api.join_waitlist(buyers[0], ev["id"], 1, expect=409)  # one active entry per buyer per event
    for token, j in zip(buyers, joined):  # the read side ranks them the same way
        entry_when(settings, token, j["id"], status="waiting", position=j["position"])


def test_leaving_moves_everyone_behind_up_by_one(api, organizer, settings):
    ev = api.event(organizer[1], rows=1, seats_per_row=1, ga=0)
    _, x = api.user("buyer")
    api.order(x, api.hold(x, ev["id"], ["A-1-1"])["id"])
    tokens = [api.user("buyer")[1] for _ in range(3)]
    joined = [api.join_waitlist(t, ev["id"], 1) for t in tokens]
    assert [j["position"] for j in joined] == [1, 2, 3]
    for t, j in zip(tokens, joined):
        entry_when(settings, t, j["id"], status="waiting", position=j["position"])
    (a, b, c), (ja, jb, jc) = tokens, joined
    api.call("DELETE", f"/api/v1/waitlist/{jb['id']}", a, expect=404)  # not A's entry
    api.leave_waitlist(b, jb["id"])
    entry_when(settings, c, jc["id"], status="waiting", position=2)
    entry_when(settings, a, ja["id"], status="waiting", position=1)
    left = entry_when(settings, b, jb["id"], status="left")
    assert left["position"] is None
    api.leave_waitlist(b, jb["id"])  # leaving twice is harmless


def test_a_ga_entry_is_offered_its_whole_quantity(api, organizer, settings, pg):
    ev = api.event(organizer[1], rows=1, seats_per_row=1, ga=5)
    (_, x), (a_id, a) = api.user("buyer"), api.user("buyer")
    assert api.join_waitlist(a, ev["id"], 3, section="GA", expect=409)["error"]["code"] == "SEATS_AVAILABLE"
    three = api.order(x, api.hold(x, ev["id"], section="GA", quantity=3)["id"])
    two = api.order(x, api.hold(x, ev["id"], section="GA", quantity=2)["id"])
    ja = api.join_waitlist(a, ev["id"], 3, section="GA")
    assert ja["position"] == 1
    api.cancel_order(x, two["id"])  # 2 places back: not enough for A, who keeps waiting (they go on sale)
    assert pg_entry(pg, ja["id"])["status"] == "waiting"  # decided in the cancelling transaction
    api.cancel_order(x, three["id"])  # 5 places back: A gets 3 of them
    ea = entry_when(settings, a, ja["id"], status="offered", section="GA", quantity=3)
    hold = pg.execute("SELECT section, quantity, buyer_id::text FROM holds WHERE id = %s",
                      (ea["offer"]["hold_id"],)).fetchone()
    assert hold == ("GA", 3, a_id)

    def ga_counts():
        r = httpx.get(f"{query(settings)}/api/v1/events/{ev['id']}", timeout=10)
        ga = next(s for s in r.json()["sections"] if s["code"] == "GA")
        return ga if (ga["held"], ga["sold"], ga["available"]) == (3, 0, 2) else None
    eventually(ga_counts, timeout=60)
    order = api.order(a, ea["offer"]["hold_id"])
    assert (order["section"], order["quantity"]) == ("GA", 3)
    entry_when(settings, a, ja["id"], status="converted")


def test_waitlist_read_model_is_exact_under_redelivery(api, settings, pg, line, scratch_db):
    """The event's real messages (joins, offer, expiry, next offer) applied into a fresh database in overlapping,
    stale and repeated batches: the newest entry version always wins."""
    first = offer_to_a(api, settings, line)["offer"]["hold_id"]
    pg.execute("UPDATE holds SET expires_at = now() WHERE id = %s", (first,))
    entry_when(settings, line["b"], line["jb"]["id"], status="offered")
    msgs = [parse(m) for m in kafka_messages(settings, line["ev"]["id"], line["since"])]
    kinds = {m.type for m in msgs}
    assert {"WaitlistJoined", "WaitlistOffered", "OfferExpired"} <= kinds, kinds
    ensure_indexes(scratch_db)
    store = Store(scratch_db, None)
    rng = random.Random(6)
    frontier = 0
    while frontier < len(msgs):
        start, end = rng.randint(0, frontier), min(len(msgs), frontier + rng.randint(1, 4))
        store.apply(msgs[start:end])
        old = rng.randint(0, end - 1)
        store.apply(msgs[old:old + rng.randint(1, 3)])  # a stale redelivery after newer ones
        frontier = end
    store.apply(msgs)
    consistent(settings, [line["ev"]["id"]], db=scratch_db, timeout=10)
    assert scratch_db.waitlist.find_one({"_id": line["ja"]["id"]})["status"] == "expired"
    assert scratch_db.waitlist.find_one({"_id": line["jb"]["id"]})["offer"]["hold_id"] != first
