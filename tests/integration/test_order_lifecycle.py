"""The order lifecycle with payments (issue 13; CONTRACT v2 "Orders, payments and refunds"), against the real
PostgreSQL, Redis and the stack's devpay, driven through devpay's API as a script would (capture, decline,
pause/resume webhooks). devpay delivers its webhooks to the stack's command service; the command service under test
here shares its PostgreSQL, so both see every order move.

Webhooks are paused only inside ``paused()``, which always resumes them.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from typing import Any

import httpx
import pytest

from command_service.entrypoints.app import create_app
from contracts import payments as P
from tests.integration.conftest import eventually, ga, make_api, outbox, seated, serve

pytestmark = pytest.mark.integration
WEBHOOK = "/api/v1/payments/devpay/webhook"


class Devpay:
    """The stack's devpay, through its REST API."""

    def __init__(self, settings) -> None:
        self.http = httpx.AsyncClient(base_url=settings.devpay_url, timeout=10,
                                      headers={"Authorization": f"Bearer {settings.devpay_api_key}"})

    async def _post(self, path: str) -> dict[str, Any]:
        r = await self.http.post(path)
        assert r.status_code == 200, r.text
        return r.json()

    async def capture(self, payment_id: str) -> dict[str, Any]:
        return await self._post(f"/v1/payments/{payment_id}/capture")

    async def decline(self, payment_id: str) -> dict[str, Any]:
        return await self._post(f"/v1/payments/{payment_id}/decline")

    async def payment(self, payment_id: str) -> dict[str, Any]:
        return (await self.http.get(f"/v1/payments/{payment_id}")).json()

    async def refunds(self, payment_id: str) -> list[dict[str, Any]]:
        return (await self.http.get("/v1/refunds", params={"payment_id": payment_id})).json()["items"]

    async def events_of(self, payment_id: str) -> list[dict[str, Any]]:
        """devpay's webhook events about the payment (its own and its refunds'), oldest first."""
        items = (await self.http.get("/v1/events")).json()["items"]
        mine = [e for e in items if payment_id in (e["data"]["object"]["id"], e["data"]["object"].get("payment_id"))]
        return list(reversed(mine))

    @contextlib.asynccontextmanager
    async def paused(self):
        await self._post("/v1/webhooks/pause")
        try:
            yield
        finally:
            await self._post("/v1/webhooks/resume")


@pytest.fixture
async def devpay(settings):
    d = Devpay(settings)
    yield d
    await d.http.aclose()


@contextlib.asynccontextmanager
async def command_service(settings, **overrides):
    """Another in-process command service with ``overrides`` (a short payment window, another provider URL)."""
    s = settings.model_copy(update=overrides)
    server = await serve(s)
    api = await make_api(str(server.make_url("")).rstrip("/"), s)
    try:
        yield api
    finally:
        await api.session.close()
        await server.close()


async def order_row(pg, order_id: str) -> dict[str, Any]:
    cur = await pg.execute("SELECT o.*, r.status AS refund_status, r.amount AS refund_amount, r.reason AS "
                           "refund_reason FROM orders o LEFT JOIN refunds r ON r.order_id = o.id WHERE o.id = %s",
                           (order_id,))
    return await cur.fetchone()


async def until_status(pg, order_id: str, *statuses: str, timeout: float = 30.0, refund: str | None = None):
    async def probe():
        row = await order_row(pg, order_id)
        return row if row["status"] in statuses and (refund is None or row["refund_status"] == refund) else None
    return await eventually(probe, timeout=timeout)


async def seat_states(pg, event_id: str, seats: list[str]) -> dict[str, str]:
    cur = await pg.execute("SELECT seat_id, status FROM seats WHERE event_id = %s AND seat_id = ANY(%s)",
                           (event_id, seats))
    return {r["seat_id"]: r["status"] for r in await cur.fetchall()}


async def types(pg, event_id: str, *ids: str) -> list[str]:
    """The outbox types about the event (or that name one of ``ids``), by transaction (rows of one transaction in
    any order)."""
    rows = await outbox(pg, event_id)
    return [r["type"] for r in rows if not ids or any(i in json.dumps(r["payload"]) for i in ids)]


async def paid_event(api, organizer, seats: int = 10, ga_places: int = 0) -> dict[str, Any]:
    sections = [seated("A", rows=1, seats=seats)] + ([ga("GA", ga_places)] if ga_places else [])
    return await api.on_sale_event(organizer[1], sections, prices={"A": 2500, **({"GA": 1000} if ga_places else {})})


async def place(api, token: str, event_id: str, **hold) -> dict[str, Any]:
    h = await api.hold(token, event_id, **hold)
    assert h.status == 201, h.body
    r = await api.checkout(token, h.body["id"], pay=False)
    assert r.status == 201 and r.body["status"] == "pending_payment", r.body
    return r.body


async def test_paying_confirms_the_order_once_and_a_repeated_checkout_answers_it(api, organizer, devpay, pg):
    ev = await paid_event(api, organizer, ga_places=5)
    _, buyer = await api.account("buyer")
    order = await place(api, buyer, ev["id"], seats=["A-1-1", "A-1-2"])
    pay = order["payment"]
    assert (order["total"], pay["provider"], pay["status"]) == (5000, "devpay", "pending")
    assert pay["checkout_url"].startswith("http://127.0.0.1:8004/checkout/")
    assert await seat_states(pg, ev["id"], ["A-1-1", "A-1-2"]) == {"A-1-1": "held", "A-1-2": "held"}
    assert (await devpay.payment(pay["id"]))["amount"] == 5000

    await devpay.capture(pay["id"])
    row = await until_status(pg, order["id"], "confirmed")
    assert row["payment_status"] == "succeeded" and row["confirmed_at"] is not None
    assert await seat_states(pg, ev["id"], ["A-1-1", "A-1-2"]) == {"A-1-1": "sold", "A-1-2": "sold"}
    again = await api.checkout(buyer, order["hold_id"], pay=False)
    assert again.status == 200 and again.body["id"] == order["id"] and again.body["status"] == "confirmed"
    kinds = await types(pg, ev["id"], order["id"])  # two transactions; the second confirms and issues the tickets
    assert kinds[0] == "OrderPlaced" and sorted(kinds[1:]) == ["OrderConfirmed", "TicketsIssued"], kinds
    cur = await pg.execute("SELECT seat, status FROM tickets WHERE order_id = %s ORDER BY seat", (order["id"],))
    assert await cur.fetchall() == [{"seat": "A-1-1", "status": "valid"}, {"seat": "A-1-2", "status": "valid"}]

    ga_order = await place(api, buyer, ev["id"], section="GA", quantity=3)
    await devpay.capture(ga_order["payment"]["id"])
    await until_status(pg, ga_order["id"], "confirmed")
    cur = await pg.execute("SELECT held, sold FROM ga_sections WHERE event_id = %s", (ev["id"],))
    assert await cur.fetchone() == {"held": 0, "sold": 3}


async def test_a_declined_payment_fails_the_order_and_puts_the_seats_back(api, organizer, devpay, pg):
    ev = await paid_event(api, organizer)
    _, buyer = await api.account("buyer")
    order = await place(api, buyer, ev["id"], seats=["A-1-3", "A-1-4"])
    await devpay.decline(order["payment"]["id"])
    row = await until_status(pg, order["id"], "payment_failed")
    assert row["payment_status"] == "failed"
    assert await seat_states(pg, ev["id"], ["A-1-3", "A-1-4"]) == {"A-1-3": "available", "A-1-4": "available"}
    released = [r["payload"]["data"] for r in await outbox(pg, ev["id"], "SeatsReleased")]
    assert [d["reason"] for d in released] == ["payment_failed"] and released[0]["order_id"] == order["id"]
    _, other = await api.account("buyer")
    assert (await api.hold(other, ev["id"], seats=["A-1-3", "A-1-4"])).status == 201  # back on sale
    cancel = await api.call("POST", f"/api/v1/orders/{order['id']}/cancel", buyer)
    assert cancel.status == 200 and cancel.body["status"] == "payment_failed" and "refund" not in cancel.body


async def test_duplicate_and_reordered_webhooks_change_the_order_once(api, organizer, devpay, pg, settings):
    """The success and the refund of one payment, delivered newest first and then again by devpay itself."""
    ev = await paid_event(api, organizer)
    _, buyer = await api.account("buyer")
    order = await place(api, buyer, ev["id"], seats=["A-1-5"])
    pid = order["payment"]["id"]
    async with devpay.paused():
        await devpay.capture(pid)
        # The buyer cancels before any webhook arrived: the command side asks devpay, learns it was paid, refunds.
        cancel = await api.call("POST", f"/api/v1/orders/{order['id']}/cancel", buyer)
        assert cancel.status == 200 and cancel.body["status"] == "cancelled", cancel.body
        assert cancel.body["refund"]["amount"] == 2500
        events = await devpay.events_of(pid)
        assert [e["type"] for e in events] == [P.PAYMENT_SUCCEEDED, P.REFUND_SUCCEEDED]
        for e in reversed(events):  # out of order, each twice (a duplicate)
            body = json.dumps({k: v for k, v in e.items() if k not in ("attempts", "delivered", "last_error")}).encode()
            for duplicate in (False, True):
                r = await api.call("POST", WEBHOOK, data=body,
                                   headers={P.SIGNATURE_HEADER: P.sign(settings.devpay_webhook_secret, body)})
                assert r.status == 200 and r.body["duplicate"] is duplicate, r.body
    # devpay now delivers both itself: recorded once already, so duplicates
    async def delivered():
        cur = await pg.execute("SELECT count(*) AS n FROM payment_webhooks WHERE event_id = ANY(%s)",
                               ([e["id"] for e in events],))
        state = (await devpay.http.get("/v1/webhooks")).json()
        return (await cur.fetchone())["n"] == 2 and state["undelivered"] == 0
    await eventually(delivered, timeout=30)
    row = await until_status(pg, order["id"], "cancelled", refund="succeeded")
    assert (row["refund_amount"], row["refund_reason"], row["payment_status"]) == (2500, "cancelled_by_buyer",
                                                                                     "succeeded")
    assert len(await devpay.refunds(pid)) == 1
    # the refund was recorded pending (with the success learnt), then succeeded: once each, whatever came twice
    assert sorted(await types(pg, ev["id"], order["id"])) == ["OrderCancelled", "OrderPlaced", "RefundUpdated",
                                                              "RefundUpdated", "SeatsReleased"]
    refund_states = [r["payload"]["data"]["order"]["refund"]["status"] for r in await outbox(pg, ev["id"], "RefundUpdated")]
    assert sorted(refund_states) == ["pending", "succeeded"]
    assert await seat_states(pg, ev["id"], ["A-1-5"]) == {"A-1-5": "available"}


async def test_a_webhook_with_a_bad_or_old_signature_changes_nothing(api, organizer, pg, settings):
    ev = await paid_event(api, organizer)
    _, buyer = await api.account("buyer")
    order = await place(api, buyer, ev["id"], seats=["A-1-6"])
    body = json.dumps({"id": f"evt_{uuid.uuid4().hex}", "type": P.PAYMENT_SUCCEEDED, "created": time.time(),
                       "data": {"object": {"id": order["payment"]["id"], "object": "payment", "status": P.SUCCEEDED,
                                           "reference": order["id"], "amount": 2500}}}).encode()
    for header in (P.sign("not-the-secret-" + uuid.uuid4().hex, body),
                   P.sign(settings.devpay_webhook_secret, body, t=int(time.time()) - P.SIGNATURE_TOLERANCE_S - 60)):
        r = await api.call("POST", WEBHOOK, data=body, headers={P.SIGNATURE_HEADER: header})
        assert r.status == 400 and r.code == "VALIDATION_ERROR", r.body
    row = await order_row(pg, order["id"])
    assert (row["status"], row["payment_status"]) == ("pending_payment", "pending")
    assert await seat_states(pg, ev["id"], ["A-1-6"]) == {"A-1-6": "held"}


async def test_lost_webhooks_are_reconciled_after_the_window(api, organizer, devpay, pg, settings):
    """Webhooks paused past the window and its grace: the sweeper asks devpay. A paid order whose seats are still
    free is confirmed; an order nobody paid has its payment cancelled at devpay and fails."""
    ev = await paid_event(api, organizer)
    _, buyer = await api.account("buyer")
    async with command_service(settings, payment_window_seconds=1.0, payment_grace_seconds=1.0) as short:
        async with devpay.paused():
            paid = await place(short, buyer, ev["id"], seats=["A-1-7"])
            unpaid = await place(short, buyer, ev["id"], seats=["A-1-8"])
            await devpay.capture(paid["payment"]["id"])
            await until_status(pg, paid["id"], "confirmed", timeout=30)
            await until_status(pg, unpaid["id"], "payment_failed", timeout=30)
    assert (await devpay.payment(unpaid["payment"]["id"]))["status"] == P.CANCELED
    assert await seat_states(pg, ev["id"], ["A-1-7", "A-1-8"]) == {"A-1-7": "sold", "A-1-8": "available"}
    # the window put the paid order's seat back on sale, then the reconciliation took it again and sold it
    kinds = await types(pg, ev["id"], paid["id"], paid["hold_id"])
    assert kinds[:3] == ["SeatsHeld", "OrderPlaced", "SeatsReleased"], kinds
    assert sorted(kinds[3:]) == ["OrderConfirmed", "SeatsHeld", "TicketsIssued"], kinds
    reasons = [r["payload"]["data"]["reason"] for r in await outbox(pg, ev["id"], "SeatsReleased")]
    assert sorted(reasons) == ["payment_expired", "payment_expired"]
    assert len(await types(pg, ev["id"], unpaid["id"])) == 3  # placed, seats released, payment failed


async def test_a_success_after_the_window_with_the_seats_resold_is_refunded(api, organizer, devpay, pg, settings):
    ev = await paid_event(api, organizer)
    _, late, = await api.account("buyer")
    _, other = await api.account("buyer")
    async with command_service(settings, payment_window_seconds=1.0, payment_grace_seconds=300.0) as short:
        order = await place(short, late, ev["id"], seats=["A-1-9", "A-1-10"])

        async def released():
            return await seat_states(pg, ev["id"], ["A-1-9"]) == {"A-1-9": "available"}
        await eventually(released, timeout=30)
        taken = await api.hold(other, ev["id"], seats=["A-1-10"])
        assert taken.status == 201, taken.body
        await devpay.capture(order["payment"]["id"])
        row = await until_status(pg, order["id"], "cancelled", refund="succeeded")
    assert (row["cancel_reason"], row["refund_reason"], row["refund_amount"]) == ("seats_unavailable",
                                                                                   "seats_unavailable", 5000)
    [refund] = await devpay.refunds(order["payment"]["id"])
    assert refund["amount"] == 5000 and refund["status"] == "succeeded"
    # the other buyer's hold is untouched, and the free seat stayed on sale
    assert await seat_states(pg, ev["id"], ["A-1-9", "A-1-10"]) == {"A-1-9": "available", "A-1-10": "held"}


async def test_cancelling_a_paid_order_refunds_it_once_under_concurrent_cancels(api, organizer, devpay, pg):
    ev = await paid_event(api, organizer)
    _, buyer = await api.account("buyer")
    order = await place(api, buyer, ev["id"], seats=["A-1-1", "A-1-2", "A-1-3"])
    await devpay.capture(order["payment"]["id"])
    await until_status(pg, order["id"], "confirmed")
    answers = await asyncio.gather(*(api.call("POST", f"/api/v1/orders/{order['id']}/cancel", who)
                                     for who in [buyer] * 6 + [organizer[1]] * 2))
    assert all(a.status == 200 and a.body["status"] == "cancelled" for a in answers), [a.body for a in answers]
    assert {a.body["refund"]["reason"] for a in answers} <= {"cancelled_by_buyer", "cancelled_by_organizer"}
    row = await until_status(pg, order["id"], "cancelled", refund="succeeded")
    assert row["refund_amount"] == 7500
    assert len(await devpay.refunds(order["payment"]["id"])) == 1
    kinds = await types(pg, ev["id"], order["id"])
    assert kinds.count("OrderCancelled") == 1 and kinds.count("RefundUpdated") == 1
    assert kinds.count("SeatsReleased") == 1
    assert set((await seat_states(pg, ev["id"], ["A-1-1", "A-1-2", "A-1-3"])).values()) == {"available"}


async def test_event_cancellation_refunds_every_paid_order(api, organizer, devpay, pg):
    ev = await paid_event(api, organizer, ga_places=10)
    buyers = [(await api.account("buyer"))[1] for _ in range(3)]
    paid = [await place(api, buyers[0], ev["id"], seats=["A-1-1", "A-1-2"]),
            await place(api, buyers[1], ev["id"], section="GA", quantity=4),
            await place(api, buyers[2], ev["id"], seats=["A-1-3"])]
    for o in paid:
        await devpay.capture(o["payment"]["id"])
    for o in paid:
        await until_status(pg, o["id"], "confirmed")
    unpaid = await place(api, buyers[2], ev["id"], seats=["A-1-4"])
    r = await api.call("POST", f"/api/v1/events/{ev['id']}/cancel", organizer[1])
    assert r.status == 200 and r.body["status"] == "cancelled"
    for o in paid:
        row = await until_status(pg, o["id"], "cancelled", refund="succeeded")
        assert (row["refund_amount"], row["refund_reason"]) == (o["total"], "event_cancelled")
        assert len(await devpay.refunds(o["payment"]["id"])) == 1
    row = await until_status(pg, unpaid["id"], "cancelled")

    async def payment_cancelled():  # at devpay, then (the reconciliation's second step) on the order
        row = await order_row(pg, unpaid["id"])
        return row if row["payment_status"] == P.CANCELED else None
    row = await eventually(payment_cancelled, timeout=30)
    assert row["refund_status"] is None and (await devpay.payment(unpaid["payment"]["id"]))["status"] == P.CANCELED


async def test_the_provider_down_answers_503_and_the_hold_survives(api, organizer, pg, settings, tmp_path):
    """A private devpay, killed: checkout answers 503 DEPENDENCY_UNAVAILABLE, nothing is written and no seat
    leaks; started again (same database), the same hold checks out."""
    from tests.integration.test_devpay import API_KEY, SECRET, Devpay as DevpayProcess, free_port

    ev = await paid_event(api, organizer)
    _, buyer = await api.account("buyer")
    private = DevpayProcess(free_port(), tmp_path / "devpay.sqlite3", "http://127.0.0.1:9/unused")
    private.start()
    try:
        async with command_service(settings, devpay_url=private.url, devpay_api_key=API_KEY,
                                   devpay_webhook_secret=SECRET) as cs:
            h = await cs.hold(buyer, ev["id"], seats=["A-1-1", "A-1-2"])
            assert h.status == 201
            private.kill()
            down = await cs.checkout(buyer, h.body["id"], pay=False)
            assert down.status == 503 and down.code == "DEPENDENCY_UNAVAILABLE", down.body
            assert down.body["error"]["details"]["dependency"] == "payments" and down.headers["Retry-After"]
            cur = await pg.execute("SELECT status FROM holds WHERE id = %s", (h.body["id"],))
            assert (await cur.fetchone())["status"] == "active"
            cur = await pg.execute("SELECT count(*) AS n FROM orders WHERE hold_id = %s", (h.body["id"],))
            assert (await cur.fetchone())["n"] == 0
            assert await seat_states(pg, ev["id"], ["A-1-1", "A-1-2"]) == {"A-1-1": "held", "A-1-2": "held"}
            private.start()
            up = await cs.checkout(buyer, h.body["id"], pay=False)
            assert up.status == 201 and up.body["status"] == "pending_payment", up.body
            # leave nothing pending at a provider the rest of the stack does not know: cancel it while it is up
            gone = await cs.call("POST", f"/api/v1/orders/{up.body['id']}/cancel", buyer)
            assert gone.status == 200 and gone.body["payment"]["status"] == "canceled", gone.body
    finally:
        private.kill()


async def test_a_free_order_is_confirmed_at_once(api, organizer, pg):
    ev = await api.on_sale_event(organizer[1], [seated("A", rows=1, seats=2)], prices={"A": 0})
    _, buyer = await api.account("buyer")
    h = await api.hold(buyer, ev["id"], seats=["A-1-1"])
    r = await api.checkout(buyer, h.body["id"])
    assert r.status == 201 and r.body["status"] == "confirmed" and "payment" not in r.body, r.body
    assert await seat_states(pg, ev["id"], ["A-1-1"]) == {"A-1-1": "sold"}
