"""Holds expire: the sweeper releases them in PostgreSQL and Redis and emits SeatsReleased."""
from __future__ import annotations

import pytest

from tests.integration.conftest import eventually, make_api, outbox, seated, serve

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def short_ttl_api(settings, migrated):
    server = await serve(settings.model_copy(update={"hold_ttl_seconds": 2.0, "sweep_interval_seconds": 0.2}))
    api = await make_api(str(server.make_url("")).rstrip("/"), settings)
    yield api
    await api.session.close()
    await server.close()


async def test_an_expired_hold_gives_its_seats_back(short_ttl_api, pg):
    api = short_ttl_api
    _, organizer = await api.account("organizer")
    event = await api.on_sale_event(organizer, [seated("A", rows=1, seats=3)])
    buyer = api.buyer_token()
    hold = await api.hold(buyer, event["id"], seats=["A-1-1", "A-1-2"])
    assert hold.status == 201
    taken = await api.hold(api.buyer_token(), event["id"], seats=["A-1-2"])
    assert (taken.status, taken.code) == (409, "SEATS_UNAVAILABLE")

    async def expired():
        cur = await pg.execute("SELECT status FROM holds WHERE id = %s", (hold.body["id"],))
        return (await cur.fetchone())["status"] == "expired"

    await eventually(expired)
    cur = await pg.execute("SELECT seat_id, status, hold_id FROM seats WHERE event_id = %s AND seat_id = ANY(%s)",
                           (event["id"], ["A-1-1", "A-1-2"]))
    assert {(r["status"], r["hold_id"]) for r in await cur.fetchall()} == {("available", None)}
    released = await outbox(pg, event["id"], "SeatsReleased")
    assert len(released) == 1
    data = released[0]["payload"]["data"]
    assert data["reason"] == "expired" and data["hold_id"] == hold.body["id"]
    assert {c["seat_id"]: c["status"] for c in data["seats"]} == {"A-1-1": "available", "A-1-2": "available"}

    late = await api.checkout(buyer, hold.body["id"])
    assert (late.status, late.code) == (410, "HOLD_EXPIRED")
    again = await api.hold(api.buyer_token(), event["id"], seats=["A-1-1", "A-1-2"])
    assert again.status == 201  # Redis locks went with the hold


async def test_releasing_a_hold_frees_its_seats_at_once(api, pg, organizer):
    event = await api.on_sale_event(organizer[1], [seated("A", rows=1, seats=3)])
    buyer = api.buyer_token()
    hold = await api.hold(buyer, event["id"], seats=["A-1-1"])
    r = await api.call("DELETE", f"/api/v1/holds/{hold.body['id']}", buyer)
    assert r.status == 204
    assert (await api.call("DELETE", f"/api/v1/holds/{hold.body['id']}", buyer)).status == 204  # repeatable
    assert (await api.hold(api.buyer_token(), event["id"], seats=["A-1-1"])).status == 201
    released = await outbox(pg, event["id"], "SeatsReleased")
    assert [e["payload"]["data"]["reason"] for e in released] == ["cancelled"]
    assert (await api.checkout(buyer, hold.body["id"])).code == "HOLD_EXPIRED"
