"""Waitlist on the command side (real PostgreSQL + Redis): FIFO tickets under concurrent joins, exclusive
offers created in the same transaction that returns the inventory, expiry passing the offer on, leaving."""
from __future__ import annotations

import asyncio

import pytest

from tests.integration.conftest import eventually, ga, seated

pytestmark = pytest.mark.integration


async def join(api, token, event_id, quantity=1, section=None):
    body = {"quantity": quantity, **({"section": section} if section else {})}
    return await api.call("POST", f"/api/v1/events/{event_id}/waitlist", token, json=body)


async def entries(pg, event_id):
    cur = await pg.execute("SELECT * FROM waitlist_entries WHERE event_id = %s ORDER BY seq", (event_id,))
    return await cur.fetchall()


async def sold_out(api, organizer, sections, buyer, **hold):
    ev = await api.on_sale_event(organizer[1], sections)
    h = await api.hold(buyer, ev["id"], **hold)
    assert h.status == 201, h.body
    o = await api.checkout(buyer, h.body["id"])
    assert o.status == 201, o.body
    return ev, o.body


async def test_concurrent_joins_get_unique_fifo_positions(api, organizer, pg):
    owner = api.buyer_token()
    ev, _ = await sold_out(api, organizer, [seated(seats=1)], owner, seats=["A-1-1"])
    buyers = [api.buyer_token() for _ in range(30)]
    results = await asyncio.gather(*(join(api, b, ev["id"]) for b in buyers))
    assert all(r.status == 201 for r in results), [r.body for r in results if r.status != 201]
    assert sorted(r.body["position"] for r in results) == list(range(1, 31))
    rows = await entries(pg, ev["id"])
    assert [r["seq"] for r in rows] == list(range(1, 31))
    # the same buyer again: 409, enforced by the partial unique index
    again = await join(api, buyers[0], ev["id"])
    assert again.status == 409 and again.code == "ALREADY_ON_WAITLIST"


async def test_joining_while_seats_are_free_is_refused(api, organizer):
    ev = await api.on_sale_event(organizer[1], [seated(seats=3), ga(capacity=5)])
    r = await join(api, api.buyer_token(), ev["id"], quantity=2)
    assert r.status == 409 and r.code == "SEATS_AVAILABLE" and r.body["error"]["details"]["available"] == 3
    r = await join(api, api.buyer_token(), ev["id"], quantity=6, section="GA")  # more than is left: may wait
    assert r.status == 201 and r.body["position"] == 1
    r = await join(api, api.buyer_token(), ev["id"], quantity=1, section="NOPE")
    assert r.status == 400 and "section" in r.body["error"]["details"]
    r = await join(api, api.buyer_token(), ev["id"], quantity=11)
    assert r.status == 400


async def test_cancelled_seats_become_an_exclusive_offer_for_the_head_of_the_line(api, organizer, pg):
    owner = api.buyer_token()
    ev, order = await sold_out(api, organizer, [seated(seats=2)], owner, seats=["A-1-1", "A-1-2"])
    first, second, stranger = api.buyer_token(), api.buyer_token(), api.buyer_token()
    assert (await join(api, first, ev["id"])).body["position"] == 1
    assert (await join(api, second, ev["id"])).body["position"] == 2
    r = await api.call("POST", f"/api/v1/orders/{order['id']}/cancel", owner)
    assert r.status == 200
    rows = await entries(pg, ev["id"])
    assert [r["status"] for r in rows] == ["offered", "offered"]  # two seats came back: one each, FIFO
    cur = await pg.execute("SELECT id, seats, buyer_id, waitlist_entry_id FROM holds WHERE id = ANY(%s)",
                           ([r["offer_hold_id"] for r in rows],))
    holds = {h["id"]: h for h in await cur.fetchall()}
    offer = holds[rows[0]["offer_hold_id"]]
    assert offer["waitlist_entry_id"] == rows[0]["id"] and len(offer["seats"]) == 1
    # nobody else can take the offered seats, through Redis or PostgreSQL
    taken = await api.hold(stranger, ev["id"], seats=offer["seats"])
    assert taken.status == 409 and taken.code == "SEATS_UNAVAILABLE"
    assert (await api.checkout(stranger, str(offer["id"]))).status in (403, 404)
    done = await api.checkout(first, str(offer["id"]))
    assert done.status == 201 and done.body["seats"] == offer["seats"]
    assert (await entries(pg, ev["id"]))[0]["status"] == "converted"
    types = [r["type"] for r in await (await pg.execute(
        "SELECT type FROM outbox WHERE aggregateid = %s AND type LIKE 'Waitlist%%' OR aggregateid = %s "
        "AND type = 'OfferExpired'", (ev["id"], ev["id"]))).fetchall()]
    assert sorted(types) == sorted(["WaitlistJoined", "WaitlistJoined", "WaitlistOffered", "WaitlistOffered",
                                    "WaitlistConverted"])


async def test_an_expired_offer_passes_to_the_next_buyer(api, organizer, pg):
    owner = api.buyer_token()
    ev, order = await sold_out(api, organizer, [seated(seats=1)], owner, seats=["A-1-1"])
    first, second = api.buyer_token(), api.buyer_token()
    await join(api, first, ev["id"])
    await join(api, second, ev["id"])
    await api.call("POST", f"/api/v1/orders/{order['id']}/cancel", owner)
    head = (await entries(pg, ev["id"]))[0]
    assert head["status"] == "offered"
    await pg.execute("UPDATE holds SET expires_at = now() WHERE id = %s", (head["offer_hold_id"],))

    async def passed():
        rows = await entries(pg, ev["id"])
        return rows if rows[0]["status"] == "expired" and rows[1]["status"] == "offered" else None

    rows = await eventually(passed, timeout=15)  # the sweeper runs every 0.5 s
    cur = await pg.execute("SELECT hold_id FROM seats WHERE event_id = %s AND seat_id = 'A-1-1'", (ev["id"],))
    assert (await cur.fetchone())["hold_id"] == rows[1]["offer_hold_id"]
    expired = await (await pg.execute("SELECT payload FROM outbox WHERE aggregateid = %s AND type = 'OfferExpired'",
                                      (ev["id"],))).fetchall()
    assert expired[0]["payload"]["data"]["reason"] == "expired"


async def test_a_seated_entry_gathers_seats_until_its_quantity_came_back(api, organizer, pg):
    owner = api.buyer_token()
    ev, _ = await sold_out(api, organizer, [seated(seats=3)], owner, seats=["A-1-1", "A-1-2", "A-1-3"])
    cur = await pg.execute("SELECT id FROM orders WHERE event_id = %s", (ev["id"],))
    (order_id,), = [(r["id"],) for r in await cur.fetchall()]
    wants_two, wants_one = api.buyer_token(), api.buyer_token()
    await join(api, wants_two, ev["id"], quantity=2)
    await join(api, wants_one, ev["id"], quantity=1)
    # buyer releases... the whole order of 3 comes back at once: 2 for the head, 1 for the next
    await api.call("POST", f"/api/v1/orders/{order_id}/cancel", owner)
    rows = await entries(pg, ev["id"])
    assert [r["status"] for r in rows] == ["offered", "offered"]
    cur = await pg.execute("SELECT quantity FROM holds WHERE id = %s", (rows[0]["offer_hold_id"],))
    assert (await cur.fetchone())["quantity"] == 2


async def test_ga_offers_cover_the_quantity_and_keep_fifo(api, organizer, pg):
    owner = api.buyer_token()
    ev, order = await sold_out(api, organizer, [ga(capacity=4)], owner, section="GA", quantity=4)
    big, small = api.buyer_token(), api.buyer_token()
    await join(api, big, ev["id"], quantity=3, section="GA")
    await join(api, small, ev["id"], quantity=1, section="GA")
    await api.call("POST", f"/api/v1/orders/{order['id']}/cancel", owner)
    rows = await entries(pg, ev["id"])
    assert [r["status"] for r in rows] == ["offered", "offered"]
    cur = await pg.execute("SELECT section, quantity FROM holds WHERE id = %s", (rows[0]["offer_hold_id"],))
    assert await cur.fetchone() == {"section": "GA", "quantity": 3}


async def test_leaving_hands_an_offer_on_and_is_repeatable(api, organizer, pg):
    owner = api.buyer_token()
    ev, order = await sold_out(api, organizer, [seated(seats=1)], owner, seats=["A-1-1"])
    first, second = api.buyer_token(), api.buyer_token()
    e1 = (await join(api, first, ev["id"])).body["id"]
    await join(api, second, ev["id"])
    assert (await api.call("DELETE", f"/api/v1/waitlist/{e1}", second)).status == 404  # not theirs
    await api.call("POST", f"/api/v1/orders/{order['id']}/cancel", owner)
    assert (await entries(pg, ev["id"]))[0]["status"] == "offered"
    assert (await api.call("DELETE", f"/api/v1/waitlist/{e1}", first)).status == 204
    assert (await api.call("DELETE", f"/api/v1/waitlist/{e1}", first)).status == 204
    rows = await entries(pg, ev["id"])
    assert [r["status"] for r in rows] == ["left", "offered"]


async def test_returned_seats_wait_on_a_pending_offer_until_enough_came_back(api, organizer, pg):
    owner = api.buyer_token()
    ev = await api.on_sale_event(organizer[1], [seated(seats=2)])
    orders = []
    for seat in ("A-1-1", "A-1-2"):  # two separate orders of one seat
        h = await api.hold(owner, ev["id"], seats=[seat])
        orders.append((await api.checkout(owner, h.body["id"])).body)
    wants_two, stranger = api.buyer_token(), api.buyer_token()
    await join(api, wants_two, ev["id"], quantity=2)

    await api.call("POST", f"/api/v1/orders/{orders[0]['id']}/cancel", owner)
    entry = (await entries(pg, ev["id"]))[0]
    assert entry["status"] == "waiting" and entry["offer_hold_id"] is not None  # gathering, not offered yet
    cur = await pg.execute("SELECT status, hold_id FROM seats WHERE event_id = %s AND seat_id = 'A-1-1'", (ev["id"],))
    assert await cur.fetchone() == {"status": "held", "hold_id": entry["offer_hold_id"]}  # not back on sale
    assert (await api.hold(stranger, ev["id"], seats=["A-1-1"])).status == 409

    await api.call("POST", f"/api/v1/orders/{orders[1]['id']}/cancel", owner)
    entry = (await entries(pg, ev["id"]))[0]
    assert entry["status"] == "offered"
    cur = await pg.execute("SELECT seats, quantity, total, expires_at < now() + interval '1 hour' AS ticking "
                           "FROM holds WHERE id = %s", (entry["offer_hold_id"],))
    hold = await cur.fetchone()
    assert sorted(hold["seats"]) == ["A-1-1", "A-1-2"] and hold["quantity"] == 2 and hold["total"] == 2000
    assert hold["ticking"]  # the offer's clock started only now
    done = await api.checkout(wants_two, str(entry["offer_hold_id"]))
    assert done.status == 201 and sorted(done.body["seats"]) == ["A-1-1", "A-1-2"]
