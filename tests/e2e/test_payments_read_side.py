"""The read side of payments on the live stack (issue 13): a paid order as the buyer sees it on the query service
(GET /me/orders/{id}: pending_payment -> confirmed after devpay's capture -> cancelled with its refund succeeded), a
declined payment, the seat map while an order waits for its payment, the buyer's notifications, organizer stats
and admin analytics net of refunds per currency, and the checker agreeing with PostgreSQL.

Payments are made through devpay's API as a script would (``POST /v1/payments/{id}/capture`` | ``/decline``)."""
from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest
import redis

from common.auth import encode_token
from contracts import keys
from tests.e2e.conftest import consistent, eventually

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def devpay(settings):
    with httpx.Client(base_url=settings.devpay_url, timeout=10,
                      headers={"Authorization": f"Bearer {settings.devpay_api_key}"}) as client:
        yield client


@pytest.fixture(scope="module")
def rds(settings):
    client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    yield client
    client.close()


@pytest.fixture(scope="module")
def admin_token(settings) -> str:
    return encode_token(str(uuid.uuid4()), "admin", settings.jwt_secret, 600)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def capture(devpay: httpx.Client, payment_id: str, action: str = "capture") -> None:
    r = devpay.post(f"/v1/payments/{payment_id}/{action}")
    assert r.status_code == 200, r.text


def checkout(api, buyer: str, event_id: str, **hold: Any) -> dict[str, Any]:
    seats = hold.pop("seats", None)
    order = api.order(buyer, api.hold(buyer, event_id, seats, **hold)["id"], pay=False)
    assert order["status"] == "pending_payment" and order["payment"]["status"] == "pending", order
    return order


def paid(api, devpay, buyer: str, event_id: str, **hold: Any) -> dict[str, Any]:
    """A confirmed paid order: checked out, captured at devpay, confirmed by its webhook (the command side's answer
    to the same checkout again is the order as it stands)."""
    order = checkout(api, buyer, event_id, **hold)
    capture(devpay, order["payment"]["id"])
    return eventually(lambda: (o := api.order(buyer, order["hold_id"], pay=False)) and o["status"] == "confirmed" and o,
                      timeout=30)


def my_order(q, token: str, order_id: str, **want: Any):
    """A probe: the buyer's order from the query service once it has ``want`` (``payment_status``,
    ``refund_status`` or top-level fields)."""
    def probe():
        r = q.get(f"/api/v1/me/orders/{order_id}", headers=bearer(token))
        if r.status_code != 200:
            return None
        body = r.json()
        got = {"payment_status": (body.get("payment") or {}).get("status"),
               "refund_status": (body.get("refund") or {}).get("status"), **body}
        return body if all(got.get(k) == v for k, v in want.items()) else None
    return probe


def seat_statuses(q, event_id: str) -> dict[str, str]:
    r = q.get(f"/api/v1/events/{event_id}/seats")
    return {s["id"]: s["status"] for s in r.json()["seats"]} if r.status_code == 200 else {}


def notifications(rds, buyer_id: str, order_id: str) -> list[str]:
    """The kinds of the buyer's notifications about the order, oldest first."""
    entries = rds.xrange(keys.notifications(buyer_id))
    return [f["type"] for _, f in entries if json.loads(f["data"]).get("order", {}).get("id") == order_id]


def test_a_paid_order_goes_pending_then_confirmed_then_refunded(api, organizer, q, devpay, rds, settings):
    buyer_id, buyer = api.user("buyer")
    _, other = api.user("buyer")
    ev = api.event(organizer[1])
    order = checkout(api, buyer, ev["id"], seats=["A-1-1", "A-1-2"])
    payment = order["payment"]

    pending = eventually(my_order(q, buyer, order["id"], status="pending_payment"), timeout=60)
    assert pending["payment"] == {k: payment[k] for k in ("id", "provider", "status", "checkout_url", "expires_at")}
    assert pending["payment"]["provider"] == "devpay" and pending["total"] == 10000 and pending["currency"] == "EUR"
    assert pending["seats"] == ["A-1-1", "A-1-2"] and pending["event"]["id"] == ev["id"]
    assert "refund" not in pending and "confirmed_at" not in pending
    # the seats are held for the buyer while the order waits for its payment
    eventually(lambda: {s: st for s, st in seat_statuses(q, ev["id"]).items() if s in ("A-1-1", "A-1-2")}
               == {"A-1-1": "held", "A-1-2": "held"}, timeout=60)
    # the buyer's own order only: the same 404 for someone else's and an unknown one
    url = f"/api/v1/me/orders/{order['id']}"
    assert q.get(url, headers=bearer(other)).status_code == 404
    assert q.get(f"/api/v1/me/orders/{uuid.uuid4()}", headers=bearer(buyer)).status_code == 404
    assert q.get("/api/v1/me/orders/not-an-id", headers=bearer(buyer)).status_code == 404
    assert q.get(url, headers=bearer(organizer[1])).status_code == 403
    assert q.get(url).status_code == 401
    assert q.get(url, headers=bearer(buyer)).headers["cache-control"] == "private, no-store"

    capture(devpay, payment["id"])
    confirmed = eventually(my_order(q, buyer, order["id"], status="confirmed", payment_status="succeeded"),
                           timeout=60)
    assert confirmed["confirmed_at"] and "refund" not in confirmed
    eventually(lambda: {s: st for s, st in seat_statuses(q, ev["id"]).items() if s in ("A-1-1", "A-1-2")}
               == {"A-1-1": "sold", "A-1-2": "sold"}, timeout=60)
    listed = q.get("/api/v1/me/orders", headers=bearer(buyer)).json()["items"]
    assert [(o["id"], o["status"], o["payment"]["status"]) for o in listed] == [(order["id"], "confirmed", "succeeded")]

    cancelled = api.cancel_order(buyer, order["id"])
    assert cancelled["status"] == "cancelled" and cancelled["refund"]["amount"] == 10000
    refunded = eventually(my_order(q, buyer, order["id"], status="cancelled", refund_status="succeeded"), timeout=60)
    assert refunded["refund"] == {"status": "succeeded", "amount": 10000, "reason": "cancelled_by_buyer"}
    assert refunded["payment"]["status"] == "succeeded" and refunded["cancelled_at"] and refunded["confirmed_at"]

    stats_url = f"/api/v1/organizer/events/{ev['id']}/stats"
    stats = eventually(lambda: (b := q.get(stats_url, headers=bearer(organizer[1])).json()) and b.get("refunded")
                       == 10000 and b, timeout=60)
    assert (stats["gross_revenue"], stats["revenue"], stats["orders"], stats["cancellations"]) == (10000, 0, 1, 1)
    assert (stats["sold"], stats["held"], stats["cancellation_rate"]) == (0, 0, 1.0)

    kinds = eventually(lambda: (k := notifications(rds, buyer_id, order["id"])) and "refund_succeeded" in k and k,
                       timeout=30)
    assert kinds == ["order_confirmed", "order_cancelled", "refund_succeeded"]
    consistent(settings, [ev["id"]])


def test_a_declined_payment_fails_the_order_and_frees_its_seats(api, organizer, q, devpay, rds, settings):
    buyer_id, buyer = api.user("buyer")
    ev = api.event(organizer[1])
    order = checkout(api, buyer, ev["id"], seats=["A-2-1"])
    eventually(my_order(q, buyer, order["id"], status="pending_payment"), timeout=60)
    capture(devpay, order["payment"]["id"], "decline")
    failed = eventually(my_order(q, buyer, order["id"], status="payment_failed", payment_status="failed"), timeout=60)
    assert "refund" not in failed and "confirmed_at" not in failed
    eventually(lambda: seat_statuses(q, ev["id"]).get("A-2-1") == "available", timeout=60)
    stats = q.get(f"/api/v1/organizer/events/{ev['id']}/stats", headers=bearer(organizer[1])).json()
    assert (stats["orders"], stats["gross_revenue"], stats["cancellations"], stats["held"]) == (0, 0, 0, 0)
    assert eventually(lambda: notifications(rds, buyer_id, order["id"]), timeout=30) == ["payment_failed"]
    consistent(settings, [ev["id"]])


def test_stats_and_analytics_are_net_of_refunds_per_currency(api, organizer, q, devpay, admin_token, settings):
    _, buyer = api.user("buyer")
    eur = api.event(organizer[1])
    usd = api.event(organizer[1], currency="USD")
    # Admin analytics span the platform, where other tests sell in EUR and USD at the same time: their exact
    # movement is checked in a currency nobody else sells in.
    chf = api.event(organizer[1], currency="CHF")

    def analytics() -> dict[str, Any]:
        r = q.get("/api/v1/admin/analytics", headers=bearer(admin_token))
        assert r.status_code == 200, r.text
        return r.json()

    before = analytics()
    refunded_eur = paid(api, devpay, buyer, eur["id"], seats=["A-1-1", "A-1-2"])  # 10000
    paid(api, devpay, buyer, eur["id"], section="GA", quantity=2)                # 4000
    paid(api, devpay, buyer, usd["id"], section="GA", quantity=3)                # 6000
    checkout(api, buyer, usd["id"], seats=["A-1-1"])                             # never paid: no money, seat held
    refunded_chf = paid(api, devpay, buyer, chf["id"], seats=["A-3-1"])          # 5000
    paid(api, devpay, buyer, chf["id"], section="GA", quantity=1)                # 2000
    for o in (refunded_eur, refunded_chf):
        api.cancel_order(buyer, o["id"])
        eventually(my_order(q, buyer, o["id"], refund_status="succeeded"), timeout=60)

    def stats(event_id: str, **want: int):
        def probe():
            body = q.get(f"/api/v1/organizer/events/{event_id}/stats", headers=bearer(organizer[1])).json()
            return body if all(body.get(k) == v for k, v in want.items()) else None
        return eventually(probe, timeout=60)

    s = stats(eur["id"], orders=2, refunded=10000)
    assert (s["currency"], s["gross_revenue"], s["revenue"], s["cancellations"]) == ("EUR", 14000, 4000, 1)
    assert (s["sold"], s["held"], s["checked_in"]) == (2, 0, 0)
    assert s["sales_by_day"][0]["revenue"] == 14000 and s["sales_by_day"][0]["orders"] == 2
    assert sum(d["refunded"] for d in s["sales_by_day"]) == 10000
    s = stats(usd["id"], orders=1, held=1)
    assert (s["currency"], s["gross_revenue"], s["revenue"], s["refunded"], s["cancellations"]) == ("USD", 6000, 6000,
                                                                                                      0, 0)
    s = stats(chf["id"], orders=2, refunded=5000)
    assert (s["revenue"], s["gross_revenue"]) == (2000, 7000)

    def moved():
        body = analytics()
        delta = {k: body[k].get("CHF", 0) - before[k].get("CHF", 0) for k in ("revenue", "refunded")}
        return body if delta == {"revenue": 2000, "refunded": 5000} else None

    after = eventually(moved, timeout=60)
    assert {"EUR", "USD", "CHF"} <= set(after["revenue"]) and isinstance(after["refunds_failed"], int)
    assert after["total_orders"] >= before["total_orders"] + 5
    today = after["daily"][0]
    assert {"EUR", "CHF"} <= set(today["refunded"]) and today["revenue"]["CHF"] >= 7000
    consistent(settings, [eur["id"], usd["id"], chf["id"]])


def test_a_cancelled_unpaid_order_was_never_a_sale(api, organizer, q, settings):
    _, buyer = api.user("buyer")
    ev = api.event(organizer[1])
    order = checkout(api, buyer, ev["id"], seats=["A-3-3"])
    api.cancel_order(buyer, order["id"])
    cancelled = eventually(my_order(q, buyer, order["id"], status="cancelled"), timeout=60)
    assert "refund" not in cancelled and "confirmed_at" not in cancelled
    eventually(lambda: seat_statuses(q, ev["id"]).get("A-3-3") == "available", timeout=60)
    stats = q.get(f"/api/v1/organizer/events/{ev['id']}/stats", headers=bearer(organizer[1])).json()
    assert (stats["orders"], stats["cancellations"], stats["held"], stats["revenue"]) == (0, 0, 0, 0)
    # the reconciliation cancels its payment at devpay: OrderPaymentSettled tells the read model (a new version)
    eventually(my_order(q, buyer, order["id"], payment_status="canceled"), timeout=20)
    consistent(settings, [ev["id"]])
