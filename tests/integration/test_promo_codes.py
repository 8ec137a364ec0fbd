"""Promo codes (CONTRACT v2 "Promo codes"): created by the event's organizer, applied at checkout, ``max_uses``
held under concurrency, a cancelled order's use given back, dates and sections respected."""
from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from command_service.domain import errors
from command_service.domain.model import PromoCode
from tests.integration.conftest import ga, outbox, seated

pytestmark = pytest.mark.integration


def iso(dt: datetime) -> str:
    return dt.isoformat().replace("+00:00", "Z")


async def create(api, organizer: str, event_id: str, **body):
    return await api.call("POST", f"/api/v1/events/{event_id}/promo-codes", organizer,
                          json={"code": f"SAVE{uuid.uuid4().hex[:6]}", "max_uses": 10, **body})


async def buy(api, token: str, event_id: str, promo: str | None = None, **hold):
    h = await api.hold(token, event_id, **(hold or {"section": "GA", "quantity": 1}))
    assert h.status == 201, h.body
    return h, await api.call("POST", "/api/v1/orders", token,
                             json={"hold_id": h.body["id"], **({"promo_code": promo} if promo else {})})


def test_the_discount_arithmetic():
    pct = PromoCode("p", "e", "X", 15, None, 1)
    assert pct.discount(1999) == 299 and pct.discount(0) == 0  # rounded down to the minor unit
    amount = PromoCode("p", "e", "X", None, 500, 1)
    assert amount.discount(1200) == 500 and amount.discount(300) == 300  # never below 0
    assert PromoCode("p", "e", "X", 100, None, 1).discount(4200) == 4200
    with pytest.raises(errors.ValidationError):
        PromoCode("p", "e", "X", 10, 100, 1)
    with pytest.raises(errors.ValidationError):
        PromoCode("p", "e", "X", None, None, 1)


async def test_an_organizer_creates_a_code_and_a_buyer_pays_less(api, pg, organizer):
    event = await api.on_sale_event(organizer[1], [seated("A", seats=5), ga("GA", 20)], prices={"A": 5000, "GA": 2000})
    r = await create(api, organizer[1], event["id"], percent_off=25)
    assert r.status == 201, r.body
    promo = r.body
    assert (promo["percent_off"], promo["amount_off"], promo["uses"], promo["sections"]) == (25, None, 0, None)
    [row] = await outbox(pg, event["id"], "PromoCodeCreated")
    assert row["payload"]["data"]["code"] == promo["code"]
    _, order = await buy(api, api.buyer_token(), event["id"], promo["code"].lower(), seats=["A-1-1", "A-1-2"])
    assert order.status == 201, order.body
    assert (order.body["subtotal"], order.body["discount"], order.body["total"]) == (10000, 2500, 7500)
    cur = await pg.execute("SELECT subtotal, discount, total, promo_code_id FROM orders WHERE id = %s",
                           (order.body["id"],))
    assert await cur.fetchone() == {"subtotal": 10000, "discount": 2500, "total": 7500,
                                    "promo_code_id": uuid.UUID(promo["id"])}
    _, plain = await buy(api, api.buyer_token(), event["id"])
    assert (plain.body["subtotal"], plain.body["discount"], plain.body["total"]) == (2000, 0, 2000)
    again = await create(api, organizer[1], event["id"], code=promo["code"].lower(), amount_off=100)
    assert (again.status, again.code) == (409, "INVALID_STATE")  # codes compare case-insensitively


async def test_only_the_events_organizer_creates_codes_and_bad_ones_are_refused(api, organizer):
    event = await api.on_sale_event(organizer[1], [ga("GA", 5)])
    _, stranger = await api.account("organizer")
    assert (await create(api, stranger, event["id"], percent_off=10)).status == 403
    assert (await create(api, api.buyer_token(), event["id"], percent_off=10)).status == 403
    for bad in ({"percent_off": 10, "amount_off": 5}, {}, {"percent_off": 0}, {"percent_off": 101},
                {"amount_off": 5, "max_uses": 0}, {"amount_off": 5, "code": "no spaces"},
                {"amount_off": 5, "sections": ["ZZ"]},
                {"amount_off": 5, "valid_from": "2030-01-02T00:00:00Z", "valid_until": "2030-01-01T00:00:00Z"}):
        r = await create(api, organizer[1], event["id"], **bad)
        assert (r.status, r.code) == (400, "VALIDATION_ERROR"), (bad, r.body)
    assert (await create(api, organizer[1], str(uuid.uuid4()), percent_off=10)).status == 404


async def test_50_buyers_race_for_a_10_use_code_and_exactly_10_get_it(api, pg, organizer):
    event = await api.on_sale_event(organizer[1], [ga("GA", 100)], prices={"GA": 1000})
    promo = (await create(api, organizer[1], event["id"], amount_off=300, max_uses=10)).body
    buyers = [api.buyer_token() for _ in range(50)]
    holds = [await api.hold(b, event["id"], section="GA", quantity=1) for b in buyers]
    answers = await asyncio.gather(*(api.call("POST", "/api/v1/orders", b, json={"hold_id": h.body["id"],
                                                                                 "promo_code": promo["code"]})
                                     for b, h in zip(buyers, holds)))
    won = [a for a in answers if a.status == 201]
    refused = [a for a in answers if a.status != 201]
    assert len(won) == 10 and all(a.body["total"] == 700 for a in won)
    assert {(a.status, a.code) for a in refused} == {(400, "INVALID_PROMO_CODE")}
    cur = await pg.execute("SELECT uses FROM promo_codes WHERE id = %s", (promo["id"],))
    assert (await cur.fetchone())["uses"] == 10
    # A refused checkout took nothing: its hold is still active and checks out without the code.
    late = holds[answers.index(refused[0])]
    r = await api.checkout(buyers[answers.index(refused[0])], late.body["id"])
    assert r.status == 201 and r.body["discount"] == 0
    # A cancelled order gives its use back, once, however often the cancel is repeated.
    first = won[0].body
    owner = buyers[answers.index(won[0])]
    cancels = await asyncio.gather(*(api.call("POST", f"/api/v1/orders/{first['id']}/cancel", owner)
                                     for _ in range(5)))
    assert all(c.status == 200 for c in cancels)
    cur = await pg.execute("SELECT uses FROM promo_codes WHERE id = %s", (promo["id"],))
    assert (await cur.fetchone())["uses"] == 9
    _, again = await buy(api, api.buyer_token(), event["id"], promo["code"])
    assert again.status == 201 and again.body["discount"] == 300
    _, none_left = await buy(api, api.buyer_token(), event["id"], promo["code"])
    assert (none_left.status, none_left.code) == (400, "INVALID_PROMO_CODE")


async def test_dates_and_sections_limit_a_code(api, organizer):
    event = await api.on_sale_event(organizer[1], [seated("A", seats=5), ga("GA", 20)])
    now = datetime.now(timezone.utc)
    later = (await create(api, organizer[1], event["id"], percent_off=10, valid_from=iso(now + timedelta(days=1)))).body
    past = (await create(api, organizer[1], event["id"], percent_off=10,
                         valid_until=iso(now - timedelta(seconds=1)))).body
    ga_only = (await create(api, organizer[1], event["id"], percent_off=50, sections=["GA"])).body
    for code in (later["code"], past["code"], "NOSUCHCODE"):
        _, r = await buy(api, api.buyer_token(), event["id"], code)
        assert (r.status, r.code) == (400, "INVALID_PROMO_CODE"), code
    _, seated_order = await buy(api, api.buyer_token(), event["id"], ga_only["code"], seats=["A-1-3"])
    assert (seated_order.status, seated_order.code) == (400, "INVALID_PROMO_CODE")
    _, ga_order = await buy(api, api.buyer_token(), event["id"], ga_only["code"])
    assert ga_order.status == 201 and ga_order.body["discount"] == 500
