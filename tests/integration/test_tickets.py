"""Tickets and check-in on the command side (issue 14; CONTRACT v2 "Tickets and check-in"), against the real
PostgreSQL (and devpay for the paid order): issue and void, signatures verified offline with the published key,
the door race, offline uploads, and a scanner's scope."""
from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import pytest

from command_service.adapters.ticket_keys import TicketKeys
from contracts import tickets as codes
from tests.integration.conftest import ga, outbox, seated
from tests.integration.test_order_lifecycle import Devpay, until_status

pytestmark = pytest.mark.integration


async def tickets_of(pg, order_id: str) -> list[dict]:
    cur = await pg.execute("SELECT * FROM tickets WHERE order_id = %s ORDER BY seat, id", (order_id,))
    return await cur.fetchall()


async def free_order(api, organizer, buyer: str, event_id: str | None = None, **hold) -> tuple[str, dict]:
    if event_id is None:
        event_id = (await api.on_sale_event(organizer[1], [seated("A", rows=2, seats=10), ga("GA", 50)],
                                            prices={"A": 0, "GA": 0}))["id"]
    h = await api.hold(buyer, event_id, **(hold or {"seats": ["A-1-1", "A-1-2"]}))
    assert h.status == 201, h.body
    r = await api.checkout(buyer, h.body["id"])
    assert r.status == 201 and r.body["status"] == "confirmed", r.body
    return event_id, r.body


async def scanner(api, organizer, event_id: str, name: str = "door 1") -> str:
    r = await api.call("POST", f"/api/v1/events/{event_id}/scanners", organizer[1], json={"name": name})
    assert r.status == 201 and r.body["name"] == name and r.body["expires_at"], r.body
    return r.body["token"]


async def test_a_paid_order_gets_a_ticket_per_place_and_a_cancel_voids_them(api, organizer, pg, settings):
    event = await api.on_sale_event(organizer[1], [seated("A", seats=5), ga("GA", 10)])
    _, buyer = await api.account("buyer")
    devpay = Devpay(settings)
    try:
        orders = []
        for hold in ({"seats": ["A-1-1", "A-1-2"]}, {"section": "GA", "quantity": 3}):
            h = await api.hold(buyer, event["id"], **hold)
            o = (await api.checkout(buyer, h.body["id"], pay=False)).body
            assert o["status"] == "pending_payment" and await tickets_of(pg, o["id"]) == []  # none before paying
            await devpay.capture(o["payment"]["id"])
            await until_status(pg, o["id"], "confirmed")
            orders.append(o)
    finally:
        await devpay.http.aclose()
    seated_t, ga_t = [await tickets_of(pg, o["id"]) for o in orders]
    assert [(t["seat"], t["section"], t["status"]) for t in seated_t] == [("A-1-1", "A", "valid"),
                                                                          ("A-1-2", "A", "valid")]
    assert [(t["seat"], t["section"]) for t in ga_t] == [(None, "GA")] * 3
    assert all(len(t["code"]) <= 200 for t in seated_t + ga_t)
    issued = [r["payload"]["data"] for r in await outbox(pg, event["id"], "TicketsIssued")]
    assert sorted(len(d["tickets"]) for d in issued) == [2, 3]

    r = await api.call("POST", f"/api/v1/orders/{orders[0]['id']}/cancel", buyer)
    assert r.status == 200 and r.body["status"] == "cancelled"
    assert {t["status"] for t in await tickets_of(pg, orders[0]["id"])} == {"void"}
    [voided] = [r["payload"]["data"] for r in await outbox(pg, event["id"], "TicketsVoided")]
    assert voided["order_id"] == orders[0]["id"] and {t["status"] for t in voided["tickets"]} == {"void"}
    assert {t["status"] for t in await tickets_of(pg, orders[1]["id"])} == {"valid"}


async def test_a_code_verifies_offline_and_a_forged_one_is_refused(api, organizer, pg, settings):
    _, buyer = await api.account("buyer")
    event_a, order_a = await free_order(api, organizer, buyer)
    event_b, order_b = await free_order(api, organizer, buyer)
    token_a = await scanner(api, organizer, event_a)
    key = await api.call("GET", f"/api/v1/events/{event_a}/checkin-key", token_a)
    assert key.status == 200 and key.body["algorithm"] == "Ed25519" and key.body["key_id"] == "1", key.body
    public = codes.load_public_key(key.body["public_key"])
    ticket = (await tickets_of(pg, order_a["id"]))[0]
    claim = codes.verify(ticket["code"], public)  # no network: the published key is enough
    assert (claim.ticket_id, claim.event_id) == (str(ticket["id"]), event_a)

    payload, signature = ticket["code"].split(".")
    flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]
    with pytest.raises(codes.BadCode):
        codes.verify(f"{payload}.{flipped}", public)
    # the same ticket and event, signed with event B's key (read from the store, as a thief of it would)
    cur = await pg.execute("SELECT key_id, private_key FROM event_keys WHERE event_id = %s AND active", (event_b,))
    row = await cur.fetchone()
    forged = codes.sign(TicketKeys(settings.ticket_key_secrets).open(row["private_key"]), "1", str(ticket["id"]),
                        event_a)
    with pytest.raises(codes.BadCode):
        codes.verify(forged, public)
    for bad in (f"{payload}.{flipped}", forged, "not-a-code", "x" * 201):
        r = await api.call("POST", f"/api/v1/events/{event_a}/checkins", token_a, json={"code": bad})
        assert (r.status, r.code) in {(400, "INVALID_TICKET"), (400, "VALIDATION_ERROR")}, (bad, r.body)
    assert (await tickets_of(pg, order_a["id"]))[0]["status"] == "valid"


async def test_the_door_race_admits_each_ticket_once(api, organizer, pg):
    _, buyer = await api.account("buyer")
    event_id, order = await free_order(api, organizer, buyer)
    first, second = await tickets_of(pg, order["id"])
    scanners = [await scanner(api, organizer, event_id, f"door {i}") for i in range(4)]
    answers = await asyncio.gather(*(api.call("POST", f"/api/v1/events/{event_id}/checkins", scanners[i % 4],
                                              json={"code": first["code"]}) for i in range(20)))
    ok = [a for a in answers if a.status == 200]
    assert len(ok) == 1 and ok[0].body["ticket_id"] == str(first["id"]) and ok[0].body["seat"] == first["seat"]
    refused = [a for a in answers if a.status != 200]
    assert {(a.status, a.code) for a in refused} == {(409, "ALREADY_CHECKED_IN")}
    assert {a.body["error"]["details"]["checked_in_at"] for a in refused} == {ok[0].body["checked_in_at"]}
    # the second ticket: scanned online and in two offline uploads at once, admitted once
    scanned_at = (datetime.now(timezone.utc) - timedelta(minutes=1)).isoformat()
    upload = {"scans": [{"code": second["code"], "scanned_at": scanned_at}]}
    online, batch1, batch2 = await asyncio.gather(
        api.call("POST", f"/api/v1/events/{event_id}/checkins", scanners[0], json={"code": second["code"]}),
        api.call("POST", f"/api/v1/events/{event_id}/checkins/batch", scanners[1], json=upload),
        api.call("POST", f"/api/v1/events/{event_id}/checkins/batch", scanners[2], json=upload))
    results = [batch1.body["results"][0]["result"], batch2.body["results"][0]["result"],
               "checked_in" if online.status == 200 else "already_checked_in"]
    assert sorted(results) == ["already_checked_in", "already_checked_in", "checked_in"], (online.body, results)
    checked = [r for r in await outbox(pg, event_id, "TicketCheckedIn")]
    assert sorted(r["payload"]["data"]["ticket"]["id"] for r in checked) == sorted([str(first["id"]),
                                                                                    str(second["id"])])


async def test_void_wrong_event_and_duplicates_in_one_upload(api, organizer, pg):
    _, buyer = await api.account("buyer")
    event_id, order = await free_order(api, organizer, buyer)
    other_event, other = await free_order(api, organizer, buyer)
    event_id2, keep = await free_order(api, organizer, buyer, event_id=event_id, seats=["A-2-1"])
    token = await scanner(api, organizer, event_id)
    void_code = (await tickets_of(pg, order["id"]))[0]["code"]
    assert (await api.call("POST", f"/api/v1/orders/{order['id']}/cancel", buyer)).status == 200
    r = await api.call("POST", f"/api/v1/events/{event_id}/checkins", token, json={"code": void_code})
    assert (r.status, r.code) == (409, "TICKET_VOID")
    wrong = (await tickets_of(pg, other["id"]))[0]["code"]
    r = await api.call("POST", f"/api/v1/events/{event_id}/checkins", token, json={"code": wrong})
    assert (r.status, r.code) == (409, "WRONG_EVENT")
    good = (await tickets_of(pg, keep["id"]))[0]
    t0 = datetime.now(timezone.utc) - timedelta(minutes=5)
    scans = [{"code": good["code"], "scanned_at": (t0 + timedelta(seconds=s)).isoformat()} for s in (30, 10)]
    scans += [{"code": void_code, "scanned_at": t0.isoformat()}, {"code": wrong, "scanned_at": t0.isoformat()},
              {"code": "garbage", "scanned_at": t0.isoformat()}]
    r = await api.call("POST", f"/api/v1/events/{event_id}/checkins/batch", token, json={"scans": scans})
    assert r.status == 200
    assert [x["result"] for x in r.body["results"]] == ["already_checked_in", "checked_in", "void", "wrong_event",
                                                        "invalid"]
    row = (await tickets_of(pg, keep["id"]))[0]
    assert row["status"] == "checked_in" and abs(row["checked_in_at"] - (t0 + timedelta(seconds=10))) < timedelta(
        milliseconds=1)  # the earliest scan's time


async def test_a_scanner_works_its_own_events_doors_and_nothing_else(api, organizer, pg):
    _, buyer = await api.account("buyer")
    event_a, order_a = await free_order(api, organizer, buyer)
    event_b, order_b = await free_order(api, organizer, buyer)
    token_a = await scanner(api, organizer, event_a)
    code_b = (await tickets_of(pg, order_b["id"]))[0]["code"]
    r = await api.call("POST", f"/api/v1/events/{event_b}/checkins", token_a, json={"code": code_b})
    assert (r.status, r.code) == (403, "FORBIDDEN")
    r = await api.call("POST", f"/api/v1/events/{event_b}/checkins/batch", token_a,
                       json={"scans": [{"code": code_b, "scanned_at": datetime.now(timezone.utc).isoformat()}]})
    assert (r.status, r.code) == (403, "FORBIDDEN")
    assert (await api.call("GET", f"/api/v1/events/{event_b}/checkin-key", token_a)).status == 403
    for method, path, body in (("POST", f"/api/v1/events/{event_a}/holds", {"seats": ["A-1-5"]}),
                               ("POST", "/api/v1/orders", {"hold_id": order_a["hold_id"]}),
                               ("POST", f"/api/v1/orders/{order_a['id']}/cancel", None),
                               ("POST", "/api/v1/venues", {"name": "x", "city": "y", "sections": [ga("G", 1)]}),
                               ("POST", f"/api/v1/events/{event_a}/publish", None),
                               ("POST", f"/api/v1/events/{event_a}/cancel", None),
                               ("POST", f"/api/v1/events/{event_a}/scanners", {"name": "another"}),
                               ("POST", f"/api/v1/events/{event_a}/promo-codes", {"code": "ABC", "percent_off": 5,
                                                                                  "max_uses": 1}),
                               ("POST", f"/api/v1/events/{event_a}/waitlist", {"quantity": 1})):
        r = await api.call(method, path, token_a, json=body)
        assert r.status in (403, 404), (path, r.status, r.body)
    # another organizer cannot make scanners for, or check in at, this organizer's event
    _, stranger = await api.account("organizer")
    r = await api.call("POST", f"/api/v1/events/{event_a}/scanners", stranger, json={"name": "mine now"})
    assert r.status == 403
    code_a = (await tickets_of(pg, order_a["id"]))[0]["code"]
    assert (await api.call("POST", f"/api/v1/events/{event_a}/checkins", stranger, json={"code": code_a})).status == 403
    # the event's organizer may scan at its doors too
    r = await api.call("POST", f"/api/v1/events/{event_a}/checkins", organizer[1], json={"code": code_a})
    assert r.status == 200 and r.body["status"] == "checked_in"


async def test_a_rotated_event_key_signs_new_tickets_and_old_ones_still_check_in(api, organizer, pg, settings):
    from command_service.entrypoints.cli import rotate_event_key

    _, buyer = await api.account("buyer")
    event_id, before = await free_order(api, organizer, buyer)
    assert await rotate_event_key(event_id) == 2
    # the command service picks the new key within its cache's minute; a fresh process does at once
    token = await scanner(api, organizer, event_id)
    key = await api.call("GET", f"/api/v1/events/{event_id}/checkin-key", token)
    old_code = (await tickets_of(pg, before["id"]))[0]["code"]
    assert codes.read(old_code).key_id == "1"
    r = await api.call("POST", f"/api/v1/events/{event_id}/checkins", token, json={"code": old_code})
    assert r.status == 200, r.body  # signed with key 1, still verified (the code names its key)
    cur = await pg.execute("SELECT key_id, active FROM event_keys WHERE event_id = %s ORDER BY key_id", (event_id,))
    assert await cur.fetchall() == [{"key_id": 1, "active": False}, {"key_id": 2, "active": True}]
    assert key.body["key_id"] in ("1", "2")
