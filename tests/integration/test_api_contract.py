"""Service endpoints, the outbox conventions the CDC side relies on, and organizer edits."""
from __future__ import annotations

import uuid

import pytest

from command_service.entrypoints.app import routes
from tests.integration.conftest import ga, outbox, seated

pytestmark = pytest.mark.integration


async def test_health_metrics_openapi(api):
    health = await api.call("GET", "/health")
    assert health.status == 200
    assert health.body == {"status": "ok", "checks": {"postgresql": "ok", "redis": "ok"}}
    async with api.session.get(api.base + "/metrics") as r:
        text = await r.text()
    for name in ("evently_command_request_duration_seconds_bucket", "evently_holds_total",
                 "evently_orders_total", "evently_rejections_total", "evently_seat_lock_contention_total"):
        assert name in text
    doc = (await api.call("GET", "/openapi.json")).body
    assert doc["openapi"].startswith("3.")
    served = {(r.method.lower(), r.path) for r in routes}
    documented = {(m, p) for p, ops in doc["paths"].items() for m in ops}
    assert served == documented


async def test_outbox_rows_follow_the_cdc_conventions(api, pg, organizer):
    event = await api.on_sale_event(organizer[1], [seated("A", rows=2, seats=3), ga("GA", capacity=5)],
                                    prices={"A": 2500, "GA": 1000})
    buyer = api.buyer_token()
    seats = await api.hold(buyer, event["id"], seats=["A-1-1", "A-2-3"])
    places = await api.hold(buyer, event["id"], section="GA", quantity=3)
    assert (seats.body["total"], places.body["total"]) == (5000, 3000)
    assert (await api.checkout(buyer, seats.body["id"])).status == 201
    assert (await api.checkout(buyer, places.body["id"])).status == 201

    rows = await outbox(pg, event["id"])
    kinds = [r["type"] for r in rows]
    # both orders placed (pending payment), then paid: each confirmation issues its tickets in its transaction
    assert kinds[:4] == ["EventCreated", "EventPublished", "SeatsHeld", "SeatsHeld"], kinds
    assert sorted(kinds[4:]) == ["OrderConfirmed"] * 2 + ["OrderPlaced"] * 2 + ["TicketsIssued"] * 2, kinds
    for r in rows:
        env = r["payload"]
        assert r["aggregatetype"] == "event" and r["aggregateid"] == event["id"]
        assert env["id"] == str(r["id"]) and env["type"] == r["type"] and env["schema_version"] == 1
        assert env["aggregate_id"] == event["id"] and env["occurred_at"].endswith("Z")
    created = rows[0]["payload"]["data"]
    # the seats are the layout's rows, not a list of every seat id (issue 11 #3: the message stays small)
    assert "seats" not in created
    assert [(s["code"], s.get("rows")) for s in created["sections"]] == [
        ("A", [{"label": "1", "seats": 3}, {"label": "2", "seats": 3}]), ("GA", None)]
    assert created["venue"]["city"] == "Testville" and created["prices"] == {"A": 2500, "GA": 1000}
    assert [s["capacity"] for s in created["sections"]] == [6, 5]
    held = rows[2]["payload"]["data"]
    assert sorted(held["seats"], key=lambda c: c["seat_id"]) == [
        {"seat_id": "A-1-1", "status": "held", "version": 2}, {"seat_id": "A-2-3", "status": "held", "version": 2}]
    assert held["hold"]["id"] == seats.body["id"] and held["ga_sections"] == []
    assert rows[3]["payload"]["data"]["ga_sections"] == [
        {"section": "GA", "capacity": 5, "held": 3, "sold": 0, "version": 2}]
    confirmed = [r["payload"]["data"] for r in rows[4:] if r["type"] == "OrderConfirmed"]
    seat_order = next(c for c in confirmed if c["seats"])
    assert seat_order["order"]["status"] == "confirmed" and seat_order["order"]["buyer_id"]
    assert {c["status"] for c in seat_order["seats"]} == {"sold"} and {c["version"] for c in seat_order["seats"]} == {3}
    ga_order = next(c for c in confirmed if c["ga_sections"])
    assert ga_order["ga_sections"] == [{"section": "GA", "capacity": 5, "held": 0, "sold": 3, "version": 3}]
    assert ga_order["order"]["section"] == "GA" and ga_order["order"]["quantity"] == 3

    venue = await outbox(pg, created["venue"]["id"])
    assert [(r["aggregatetype"], r["type"]) for r in venue] == [("venue", "VenueCreated")]


async def test_organizer_edits_never_touch_inventory(api, pg, organizer):
    event = await api.on_sale_event(organizer[1], [seated("A", rows=1, seats=3)], prices={"A": 1000})
    buyer = api.buyer_token()
    hold = await api.hold(buyer, event["id"], seats=["A-1-1"])
    cur = await pg.execute("SELECT seat_id, status, version FROM seats WHERE event_id = %s ORDER BY seat_id",
                           (event["id"],))
    before = await cur.fetchall()
    r = await api.call("PATCH", f"/api/v1/events/{event['id']}", organizer[1],
                       json={"title": "Renamed", "prices": {"A": 1500}, "ends_at": None})
    assert r.status == 200 and r.body["title"] == "Renamed" and r.body["prices"] == {"A": 1500}
    assert r.body["ends_at"] is None
    cur = await pg.execute("SELECT seat_id, status, version FROM seats WHERE event_id = %s ORDER BY seat_id",
                           (event["id"],))
    assert await cur.fetchall() == before
    updated = (await outbox(pg, event["id"], "EventUpdated"))[0]["payload"]["data"]
    assert sorted(updated["changed"]) == ["ends_at", "prices", "title"] and updated["title"] == "Renamed"
    # The held price stands; new holds pay the new price.
    order = await api.checkout(buyer, hold.body["id"])
    assert order.body["total"] == 1000
    assert (await api.hold(buyer, event["id"], seats=["A-1-2"])).body["total"] == 1500
    bad = await api.call("PATCH", f"/api/v1/events/{event['id']}", organizer[1], json={"status": "draft"})
    assert bad.status == 400
    empty = await api.call("PATCH", f"/api/v1/events/{event['id']}", organizer[1], json={})
    assert empty.status == 400
    gone = await api.call("PATCH", f"/api/v1/events/{uuid.uuid4()}", organizer[1], json={"title": "x"})
    assert gone.status == 404
