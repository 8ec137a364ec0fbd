"""A seat is never sold twice and no buyer is wrongly refused, under concurrency."""
from __future__ import annotations

import asyncio
import random
from collections import Counter

import pytest
from prometheus_client import REGISTRY

from tests.integration.conftest import Api, ga, outbox, seated

pytestmark = pytest.mark.integration


async def race_for_seats(api: Api, event_id: str, seat_ids: list[str], buyers: int,
                         midway: asyncio.Event | None = None) -> tuple[list[dict], Counter]:
    """Each buyer tries every seat once, in its own random order, until one hold checks out."""
    orders: list[dict] = []
    statuses: Counter = Counter()

    async def buyer() -> None:
        token = api.buyer_token()
        for seat in random.sample(seat_ids, len(seat_ids)):
            hold = await api.hold(token, event_id, seats=[seat])
            statuses[f"hold {hold.status} {hold.code or ''}".strip()] += 1
            if midway is not None and len(orders) >= 5:
                midway.set()
            if hold.status != 201:
                continue
            order = await api.checkout(token, hold.body["id"])
            statuses[f"order {order.status}"] += 1
            if order.status == 201:
                orders.append(order.body)
                return

    await asyncio.gather(*(buyer() for _ in range(buyers)))
    return orders, statuses


async def assert_sold_exactly_once(pg, event_id: str, orders: list[dict], seat_ids: list[str]) -> None:
    sold = [s for o in orders for s in o["seats"]]
    assert sorted(sold) == sorted(seat_ids)  # every seat sold, none twice over HTTP
    cur = await pg.execute("SELECT unnest(seats) AS seat, count(*) AS n FROM orders "
                           "WHERE event_id = %s AND status = 'confirmed' GROUP BY 1", (event_id,))
    in_pg = {r["seat"]: r["n"] for r in await cur.fetchall()}
    assert in_pg == {s: 1 for s in seat_ids}  # no seat in two orders, in PostgreSQL
    cur = await pg.execute("SELECT s.seat_id, s.status, s.order_id, o.seats FROM seats s "
                           "JOIN orders o ON o.id = s.order_id WHERE s.event_id = %s", (event_id,))
    rows = await cur.fetchall()
    assert len(rows) == len(seat_ids)
    assert all(r["status"] == "sold" and r["seat_id"] in r["seats"] for r in rows)


@pytest.mark.parametrize("flush_redis_midway", [False, True], ids=["plain", "redis-flushall-midway"])
async def test_200_buyers_race_for_20_seats(api, pg, redis_client, organizer, flush_redis_midway):
    event = await api.on_sale_event(organizer[1], [seated("A", rows=2, seats=10)])
    seat_ids = [f"A-{r}-{n}" for r in (1, 2) for n in range(1, 11)]
    midway = asyncio.Event() if flush_redis_midway else None

    async def flush_when_midway() -> None:
        await midway.wait()
        await redis_client.flushall()

    flusher = asyncio.create_task(flush_when_midway()) if midway else None
    orders, statuses = await race_for_seats(api, event["id"], seat_ids, buyers=200, midway=midway)
    if flusher:
        assert flusher.done()  # the flush really happened while buyers were racing
    assert len(orders) == 20
    await assert_sold_exactly_once(pg, event["id"], orders, seat_ids)
    # Losers were refused with the contract's code, never with a server error.
    assert set(statuses) <= {"hold 201", "hold 409 SEATS_UNAVAILABLE", "order 201"}, statuses
    assert statuses["order 201"] == 20


async def test_multi_seat_holds_are_all_or_nothing(api, pg, organizer):
    event = await api.on_sale_event(organizer[1], [seated("A", rows=1, seats=12)])
    # 60 buyers ask for overlapping pairs: each hold gets both seats or neither.
    pairs = [[f"A-1-{n}", f"A-1-{n + 1}"] for n in range(1, 12)]
    results = await asyncio.gather(*(api.hold(api.buyer_token(), event["id"], seats=random.choice(pairs))
                                     for _ in range(60)))
    held = [r.body for r in results if r.status == 201]
    assert all(r.status in (201, 409) for r in results)
    taken = [s for h in held for s in h["seats"]]
    assert len(taken) == len(set(taken))
    cur = await pg.execute("SELECT hold_id, array_agg(seat_id ORDER BY seat_id) AS seats FROM seats "
                           "WHERE event_id = %s AND status = 'held' GROUP BY hold_id", (event["id"],))
    in_pg = {str(r["hold_id"]): sorted(r["seats"]) for r in await cur.fetchall()}
    assert in_pg == {h["id"]: sorted(h["seats"]) for h in held}


async def test_general_admission_never_oversells(api, pg, organizer):
    event = await api.on_sale_event(organizer[1], [ga("GA", capacity=20)])

    async def buyer() -> int:
        token = api.buyer_token()
        hold = await api.hold(token, event["id"], section="GA", quantity=1)
        if hold.status != 201:
            assert hold.code == "SOLD_OUT", hold.body
            return 0
        order = await api.checkout(token, hold.body["id"])
        assert order.status == 201, order.body
        return 1

    assert sum(await asyncio.gather(*(buyer() for _ in range(60)))) == 20
    cur = await pg.execute("SELECT capacity, held, sold FROM ga_sections WHERE event_id = %s", (event["id"],))
    assert await cur.fetchone() == {"capacity": 20, "held": 0, "sold": 20}


async def test_two_concurrent_cancels_return_the_seats_once(api, pg, organizer):
    event = await api.on_sale_event(organizer[1], [seated("A", rows=1, seats=4)])
    buyer = api.buyer_token()
    hold = await api.hold(buyer, event["id"], seats=["A-1-1", "A-1-2"])
    order = await api.checkout(buyer, hold.body["id"])
    assert order.status == 201

    path = f"/api/v1/orders/{order.body['id']}/cancel"
    first, second = await asyncio.gather(api.call("POST", path, buyer), api.call("POST", path, buyer))
    assert (first.status, second.status) == (200, 200)
    assert first.body["status"] == second.body["status"] == "cancelled"
    again = await api.call("POST", path, organizer[1])  # the event's organizer may cancel too: harmless
    assert again.status == 200 and again.body["status"] == "cancelled"

    assert len(await outbox(pg, event["id"], "OrderCancelled")) == 1
    released = await outbox(pg, event["id"], "SeatsReleased")
    assert len(released) == 1
    data = released[0]["payload"]["data"]
    assert data["reason"] == "order_cancelled" and data["order_id"] == order.body["id"]
    # held (v2) -> sold (v3) -> available (v4): returned exactly once
    assert sorted(data["seats"], key=lambda c: c["seat_id"]) == [
        {"seat_id": "A-1-1", "status": "available", "version": 4},
        {"seat_id": "A-1-2", "status": "available", "version": 4}]
    cur = await pg.execute("SELECT status, version FROM seats WHERE event_id = %s AND seat_id = ANY(%s)",
                           (event["id"], ["A-1-1", "A-1-2"]))
    assert await cur.fetchall() == [{"status": "available", "version": 4}] * 2
    # ... and they are for sale again (Redis was told too).
    assert (await api.hold(api.buyer_token(), event["id"], seats=["A-1-1", "A-1-2"])).status == 201


async def test_cancelling_an_event_cancels_orders_and_releases_holds(api, pg, organizer):
    event = await api.on_sale_event(organizer[1], [seated("A", rows=1, seats=6), ga("GA", capacity=5)])
    buyer = api.buyer_token()
    sold = await api.hold(buyer, event["id"], seats=["A-1-1", "A-1-2"])
    order = await api.checkout(buyer, sold.body["id"])
    held = await api.hold(buyer, event["id"], seats=["A-1-3"])
    ga_hold = await api.hold(buyer, event["id"], section="GA", quantity=2)
    assert (order.status, held.status, ga_hold.status) == (201, 201, 201)

    r = await api.call("POST", f"/api/v1/events/{event['id']}/cancel", organizer[1])
    assert r.status == 200 and r.body["status"] == "cancelled"

    cur = await pg.execute("SELECT status FROM orders WHERE id = %s", (order.body["id"],))
    assert (await cur.fetchone())["status"] == "cancelled"
    cur = await pg.execute("SELECT status FROM holds WHERE id = ANY(%s)", ([held.body["id"], ga_hold.body["id"]],))
    assert [r["status"] for r in await cur.fetchall()] == ["released", "released"]
    cur = await pg.execute("SELECT count(*) AS n FROM seats WHERE event_id = %s AND status <> 'available'",
                           (event["id"],))
    assert (await cur.fetchone())["n"] == 0
    cur = await pg.execute("SELECT held, sold FROM ga_sections WHERE event_id = %s", (event["id"],))
    assert await cur.fetchone() == {"held": 0, "sold": 0}
    assert len(await outbox(pg, event["id"], "EventCancelled")) == 1
    assert len(await outbox(pg, event["id"], "OrderCancelled")) == 1
    released = [r["payload"]["data"] for r in await outbox(pg, event["id"], "SeatsReleased")]
    assert {r["reason"] for r in released} == {"event_cancelled"}
    assert {c["seat_id"] for r in released for c in r["seats"]} == {"A-1-1", "A-1-2", "A-1-3"}
    assert [g for r in released for g in r["ga_sections"]] == [
        {"section": "GA", "capacity": 5, "held": 0, "sold": 0, "version": 3}]

    late = await api.hold(api.buyer_token(), event["id"], seats=["A-1-4"])
    assert (late.status, late.code) == (409, "EVENT_NOT_ON_SALE")
    assert (await api.checkout(buyer, held.body["id"])).code == "HOLD_EXPIRED"
    again = await api.call("POST", f"/api/v1/events/{event['id']}/cancel", organizer[1])
    assert again.status == 200 and len(await outbox(pg, event["id"], "EventCancelled")) == 1


async def test_a_hold_checks_out_once_and_only_for_its_buyer(api, pg, organizer):
    event = await api.on_sale_event(organizer[1], [seated("A", rows=1, seats=4)])
    buyer, other = api.buyer_token(), api.buyer_token()
    hold = await api.hold(buyer, event["id"], seats=["A-1-1"])
    stranger = await api.checkout(other, hold.body["id"])
    assert (stranger.status, stranger.code) == (404, "NOT_FOUND")
    # the same checkout five times at once (a double-click, a retry): one order, placed once, answered to all
    # (CONTRACT: POST /orders again for the same hold returns the same order, 200), with one payment that works
    results = await asyncio.gather(*(api.checkout(buyer, hold.body["id"], pay=False) for _ in range(5)))
    assert sorted(r.status for r in results) == [200, 200, 200, 200, 201], [r.body for r in results]
    assert len({r.body["id"] for r in results}) == 1 and len({r.body["payment"]["id"] for r in results}) == 1
    cur = await pg.execute("SELECT count(*) AS n FROM orders WHERE hold_id = %s", (hold.body["id"],))
    assert (await cur.fetchone())["n"] == 1
    paid = await api.checkout(buyer, hold.body["id"])  # answered 200 now, and paid: the payment was not given up
    assert paid.body["status"] == "pending_payment" or paid.body["status"] == "confirmed"
    from tests.paying import apay

    async def current():
        return (await api.checkout(buyer, hold.body["id"], pay=False)).body
    assert (await apay(api.settings, results[0].body, current))["status"] == "confirmed"
    # a hold that expired or was released still refuses
    gone = await api.hold(buyer, event["id"], seats=["A-1-2"])
    await api.call("DELETE", f"/api/v1/holds/{gone.body['id']}", buyer)
    late = await api.checkout(buyer, gone.body["id"])
    assert (late.status, late.code) == (410, "HOLD_EXPIRED")


def contention(stage: str) -> float:
    return REGISTRY.get_sample_value("evently_seat_lock_contention_total", {"stage": stage}) or 0.0


async def test_sold_seats_are_refused_by_redis_alone_even_after_a_flush(api, redis_client, organizer):
    """Hammering a sold seat costs one Redis call per attempt, no PostgreSQL transaction.

    After a Redis flush the first attempt reaches PostgreSQL, which refuses it and tells Redis.
    """
    event = await api.on_sale_event(organizer[1], [seated("A", rows=1, seats=2)])
    buyer = api.buyer_token()
    hold = await api.hold(buyer, event["id"], seats=["A-1-1"])
    assert (await api.checkout(buyer, hold.body["id"])).status == 201

    async def hammer(times: int) -> None:
        for _ in range(times):
            r = await api.hold(api.buyer_token(), event["id"], seats=["A-1-1"])
            assert (r.status, r.body["error"]["details"]) == (409, {"seats": ["A-1-1"]})

    pg_before, redis_before = contention("postgres"), contention("redis")
    await hammer(20)
    assert (contention("postgres"), contention("redis")) == (pg_before, redis_before + 20)

    await redis_client.flushall()
    await hammer(1)
    assert contention("postgres") == pg_before + 1  # PostgreSQL arbitrated, and healed Redis ...
    await hammer(20)
    assert (contention("postgres"), contention("redis")) == (pg_before + 1, redis_before + 40)  # ... for good


async def test_cancelling_an_event_while_buyers_race_leaves_nothing_behind(api, pg, organizer):
    event = await api.on_sale_event(organizer[1], [seated("A", rows=2, seats=20), ga("GA", capacity=40)])
    seat_ids = [f"A-{r}-{n}" for r in (1, 2) for n in range(1, 21)]
    cancelled = asyncio.Event()

    async def buyer(i: int) -> None:
        token = api.buyer_token()
        body = {"seats": [seat_ids[i % 40]]} if i % 2 else {"section": "GA", "quantity": 1}
        hold = await api.hold(token, event["id"], **body)
        assert hold.status in (201, 409), hold.body
        if hold.status == 201:
            order = await api.checkout(token, hold.body["id"])
            assert order.status in (201, 410), order.body

    async def cancel_midway() -> None:
        await asyncio.sleep(0.05)
        r = await api.call("POST", f"/api/v1/events/{event['id']}/cancel", organizer[1])
        assert r.status == 200
        cancelled.set()

    await asyncio.gather(cancel_midway(), *(buyer(i) for i in range(120)))
    assert cancelled.is_set()
    cur = await pg.execute("SELECT count(*) AS n FROM orders WHERE event_id = %s AND status = 'confirmed'",
                           (event["id"],))
    assert (await cur.fetchone())["n"] == 0
    cur = await pg.execute("SELECT count(*) AS n FROM seats WHERE event_id = %s AND status <> 'available'",
                           (event["id"],))
    assert (await cur.fetchone())["n"] == 0
    cur = await pg.execute("SELECT held, sold FROM ga_sections WHERE event_id = %s", (event["id"],))
    assert await cur.fetchone() == {"held": 0, "sold": 0}
