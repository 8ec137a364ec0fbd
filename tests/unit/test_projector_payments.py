"""The read side of payments (issue 13), with synthetic outbox messages: the orders read model keeps each order's
newest state (version; status rank for orders written before payments), stats and rollups count revenue net of
refunds per currency, the counters treat a pending order's seats as held, the buyer is told about failed payments
and refunds that succeeded, and the query side renders it all through its response models."""
from __future__ import annotations

import asyncio
import itertools
import json
from types import SimpleNamespace
from typing import Any

import pytest

from projectors import notifications as N
from projectors import projection as P
from projectors.store import Store
from query_service import responses as R
from query_service import views

EV = "e1"
CREATED = {"title": "T", "sections": [{"code": "A", "kind": "seated", "capacity": 4, "price": 100},
                                       {"code": "GA", "kind": "ga", "capacity": 10, "price": 50}],
           "prices": {"A": 100, "GA": 50}, "seats": ["A-1-1", "A-1-2", "A-2-1", "A-2-2"]}
PAYMENT = {"id": "pay_1", "provider": "devpay", "status": "pending", "checkout_url": "http://127.0.0.1:8004/pay/pay_1",
           "expires_at": "2026-12-05T10:10:00Z", "client_secret": "not for the read model"}


def msg(offset: int, type_: str, data: dict, *, partition: int = 0, occurred_at: str = "2026-12-05T10:00:00Z") -> P.Msg:
    env = {"id": f"id-{partition}-{offset}", "type": type_, "schema_version": 1, "aggregate_id": EV,
           "occurred_at": occurred_at, "data": data}
    return P.Msg("evently.event", partition, offset, P.validate(env))


def seats(*changes: tuple[str, str, int]) -> list[dict]:
    return [{"seat_id": s, "status": st, "version": v} for s, st, v in changes]


def paid(oid: str = "o1", *, version: int, status: str, payment: str = "pending", refund: str | None = None,
         seats_: tuple[str, ...] = ("A-1-1", "A-1-2"), total: int = 200, currency: str = "EUR",
         confirmed: bool = False, cancelled: bool = False, reason: str = "cancelled_by_buyer") -> dict:
    """A paid order's state as the command side writes it (Debezium drops null fields, so absent ones are absent)."""
    o = {"id": oid, "event_id": EV, "buyer_id": "b1", "hold_id": "h1", "status": status, "seats": list(seats_),
         "subtotal": total, "discount": 0, "total": total, "currency": currency, "created_at": "2026-12-05T10:00:00Z",
         "version": version, "payment": {**PAYMENT, "status": payment}}
    if confirmed:
        o["confirmed_at"] = "2026-12-05T10:01:00Z"
    if cancelled:
        o["cancelled_at"] = "2026-12-06T09:00:00Z"
    if refund:
        o["refund"] = {"status": refund, "amount": total, "reason": reason}
    return o


def lifecycle(oid: str = "o1", **kw: Any) -> list[P.Msg]:
    """placed (v1) -> confirmed (v2) -> cancelled with a refund pending (v3) -> refund succeeded (v4)."""
    return [
        msg(1, "OrderPlaced", {"order": paid(oid, version=1, status="pending_payment", **kw)}),
        msg(2, "OrderConfirmed", {"order": paid(oid, version=2, status="confirmed", payment="succeeded",
                                                confirmed=True, **kw), "seats": seats(("A-1-1", "sold", 3),
                                                                                      ("A-1-2", "sold", 3))}),
        msg(3, "OrderCancelled", {"order": paid(oid, version=3, status="cancelled", payment="succeeded",
                                                confirmed=True, cancelled=True, refund="pending", **kw),
                                  "reason": "cancelled_by_buyer"}),
        msg(4, "RefundUpdated", {"order": paid(oid, version=4, status="cancelled", payment="succeeded",
                                               confirmed=True, cancelled=True, refund="succeeded", **kw)}),
    ]


# --- the orders read model ----------------------------------------------------------------------------------
def test_every_order_state_validates():
    for m in lifecycle():
        assert m.type in P.ORDER_TYPES
    msg(5, "OrderPaymentFailed", {"order": paid(version=2, status="payment_failed", payment="failed")})


@pytest.mark.parametrize("perm", list(itertools.permutations(range(4))))
def test_the_newest_order_version_wins_whatever_the_order_of_messages(perm):
    ms = lifecycle()
    doc = P.fold_orders([ms[i] for i in perm])["o1"]
    assert doc["status"] == "cancelled" and doc["rank"] == 4 and doc["version"] == 4
    assert doc["payment"] == {k: v for k, v in PAYMENT.items() if k != "client_secret"} | {"status": "succeeded"}
    assert doc["refund"] == {"status": "succeeded", "amount": 200, "reason": "cancelled_by_buyer"}
    assert doc["confirmed_at"] == "2026-12-05T10:01:00Z" and doc["cancelled_at"] == "2026-12-06T09:00:00Z"
    assert doc["quantity"] == 2 and "id" not in doc


def test_order_versions_agree_with_the_status_rank_of_orders_written_before_payments():
    legacy_confirmed = {"id": "o1", "event_id": EV, "buyer_id": "b", "status": "confirmed", "seats": ["A-1-1"],
                        "total": 100, "currency": "EUR", "created_at": "2026-11-21T10:00:00Z"}
    legacy_cancelled = {**legacy_confirmed, "status": "cancelled", "cancelled_at": "2026-11-22T10:00:00Z"}
    free_confirmed = {**legacy_confirmed, "total": 0, "version": 1, "confirmed_at": "2026-11-21T10:00:00Z"}
    free_cancelled = {**free_confirmed, "status": "cancelled", "version": 2, "cancelled_at": "2026-11-22T10:00:00Z"}
    ranks = [P.order_rank(o) for o in (legacy_confirmed, legacy_cancelled, free_confirmed, free_cancelled)]
    assert ranks == [1, 2, 1, 2]
    # a legacy confirmed order (rank 1 in the read model) cancelled after the migration (version 2) moves on
    assert P.fold_orders([msg(1, "OrderConfirmed", {"order": legacy_confirmed}),
                          msg(2, "OrderCancelled", {"order": free_cancelled})])["o1"]["status"] == "cancelled"


def test_a_failed_payment_is_the_orders_last_state():
    ms = [msg(1, "OrderPlaced", {"order": paid(version=1, status="pending_payment")}),
          msg(2, "OrderPaymentFailed", {"order": paid(version=2, status="payment_failed", payment="failed")})]
    for batch in (ms, ms[::-1]):
        doc = P.fold_orders(batch)["o1"]
        assert (doc["status"], doc["payment"]["status"], doc["rank"]) == ("payment_failed", "failed", 2)
        assert "refund" not in doc and "confirmed_at" not in doc


class FakeOrders:
    """The orders collection as Store.apply_orders uses it: find by ids, insert_many, a rank-guarded update_one."""

    def __init__(self) -> None:
        self.docs: dict[str, dict] = {}
        self.writes = 0

    def find(self, flt: dict, projection: dict | None = None):
        ids = flt["_id"]["$in"]
        return [{"_id": i} for i in ids if i in self.docs]

    def find_one(self, flt: dict, projection: dict | None = None):
        return None

    def insert_many(self, docs: list[dict], ordered: bool = True) -> None:
        for d in docs:
            assert d["_id"] not in self.docs
            self.docs[d["_id"]] = dict(d)
            self.writes += 1

    def update_one(self, flt: dict, update: dict, upsert: bool = False):
        cur = self.docs.get(flt["_id"])
        if cur is not None and cur["rank"] < flt["rank"]["$lt"]:
            cur.update(update["$set"])
            self.writes += 1
        return SimpleNamespace(matched_count=int(cur is not None))


def orders_store() -> tuple[Store, FakeOrders]:
    orders = FakeOrders()
    return Store(SimpleNamespace(orders=orders, events=orders), threads=1), orders


def test_apply_orders_is_idempotent_under_redelivery_and_replay():
    store, orders = orders_store()
    ms = lifecycle()
    store.apply_orders(ms[:2])
    assert orders.docs["o1"]["status"] == "confirmed" and orders.docs["o1"]["payment"]["status"] == "succeeded"
    store.apply_orders(ms[1:3])  # an overlapping redelivery
    store.apply_orders(ms[3:])
    final = dict(orders.docs["o1"])
    assert final["refund"]["status"] == "succeeded" and final["rank"] == 4
    writes = orders.writes
    for batch in (ms, ms[:1], ms[::-1], [ms[0]], [ms[2], ms[1]]):  # replays and stale redeliveries change nothing
        store.apply_orders(batch)
    assert orders.docs["o1"] == final and orders.writes == writes


# --- stats: revenue net of refunds per currency ---------------------------------------------------------------
def counters(ms: list[P.Msg], state: dict | None = None, prior: dict | None = None) -> dict:
    return P.fold_event_counters(state or P.initial_counters(CREATED), ms, prior or {})[0]


def test_stats_count_confirmed_orders_and_subtract_refunds_that_succeeded():
    st = counters(lifecycle())["stats"]
    assert (st["orders"], st["seats"], st["revenue"], st["refunded"]) == (1, 2, 200, 200)
    assert (st["cancellations"], st["cancelled_seats"], st["refunds_failed"]) == (1, 2, 0)
    assert st["by_day"]["2026-12-05"] == {"orders": 1, "seats": 2, "revenue": 200}  # the day it was confirmed
    assert st["by_day"]["2026-12-06"] == {"cancellations": 1, "cancelled_seats": 2, "refunded": 200}


def test_orders_that_never_confirmed_move_no_money():
    ms = [
        msg(1, "OrderPlaced", {"order": paid("o1", version=1, status="pending_payment")}),
        msg(2, "OrderPaymentFailed", {"order": paid("o1", version=2, status="payment_failed", payment="failed")}),
        msg(3, "OrderPlaced", {"order": paid("o2", version=1, status="pending_payment")}),
        # a pending order cancelled: not a cancellation of a sale (it never was one)
        msg(4, "OrderCancelled", {"order": paid("o2", version=2, status="cancelled", cancelled=True),
                                  "reason": "cancelled_by_buyer"}),
        # paid after its seats were resold: cancelled and refunded, never confirmed, never counted
        msg(5, "OrderCancelled", {"order": paid("o3", version=2, status="cancelled", payment="succeeded",
                                                cancelled=True, refund="pending", reason="seats_unavailable"),
                                  "reason": "seats_unavailable"}),
        msg(6, "RefundUpdated", {"order": paid("o3", version=3, status="cancelled", payment="succeeded",
                                               cancelled=True, refund="succeeded", reason="seats_unavailable")}),
    ]
    st = counters(ms)["stats"]
    assert all(st[k] == 0 for k in ("orders", "seats", "revenue", "refunded", "cancellations", "refunds_failed"))
    assert all(P.order_stats(m) is None for m in ms)


def test_a_failed_refund_keeps_the_revenue_and_is_counted():
    ms = lifecycle()[:3] + [msg(4, "RefundUpdated", {"order": paid(version=4, status="cancelled", payment="succeeded",
                                                                   confirmed=True, cancelled=True, refund="failed")})]
    st = counters(ms)["stats"]
    assert (st["revenue"], st["refunded"], st["refunds_failed"], st["cancellations"]) == (200, 0, 1, 1)


def test_a_refund_still_pending_changes_no_stats():
    pending = msg(9, "RefundUpdated", {"order": paid(version=4, status="cancelled", payment="succeeded",
                                                     confirmed=True, cancelled=True, refund="pending")})
    assert P.order_stats(pending) is None and P.rollup_increments(pending) is None


def test_stats_redelivered_count_once():
    ms = lifecycle()
    once = counters(ms)
    again = counters(ms, once)
    assert again["stats"] == once["stats"]
    half = counters(ms[:3])
    assert counters(ms, half)["stats"] == once["stats"]  # an overlapping redelivery


def test_rollups_keep_gross_and_refunds_per_currency():
    eur, usd = lifecycle("o1", total=200, currency="EUR"), lifecycle("o2", total=900, currency="USD")[:2]
    ms = [msg(i, m.type, m.data) for i, m in enumerate(eur + usd, start=1)]
    rollup, _ = P.fold_rollup({"wm": {}}, [(m, P.rollup_increments(m)[1]) for m in ms if P.rollup_increments(m)])
    assert (rollup["revenue_EUR"], rollup["refunded_EUR"], rollup["revenue_USD"]) == (200, 200, 900)
    assert "refunded_USD" not in rollup and rollup["orders"] == 2
    assert views.net(rollup) == {"EUR": 0, "USD": 900}
    assert views.by_currency(rollup, "refunded") == {"EUR": 200}


# --- seat counters: a pending order's seats are held ------------------------------------------------------------
def test_a_pending_orders_seats_stay_held_and_come_back_when_its_payment_fails_or_its_window_ends():
    held = msg(1, "SeatsHeld", {"hold": {"id": "h1"}, "seats": seats(("A-1-1", "held", 2), ("A-1-2", "held", 2),
                                                                      ("A-2-1", "held", 2))})
    placed = msg(2, "OrderPlaced", {"order": paid(version=1, status="pending_payment")})
    st = counters([held, placed])
    assert (st["counts"]["A"]["held"], st["counts"]["A"]["sold"], st["available"]) == (3, 0, 11)
    # no seat-map prior given: the reasons alone say the seats were held
    assert {"payment_failed", "payment_expired"} <= set(P.RELEASE_PRIOR)
    failed = [msg(3, "OrderPaymentFailed", {"order": paid(version=2, status="payment_failed", payment="failed")}),
              msg(4, "SeatsReleased", {"reason": "payment_failed", "order_id": "o1",
                                       "seats": seats(("A-1-1", "available", 3), ("A-1-2", "available", 3))}),
              msg(5, "SeatsReleased", {"reason": "payment_expired", "order_id": "o9",
                                       "seats": seats(("A-2-1", "available", 3))})]
    end = counters(failed, st)
    assert (end["counts"]["A"]["held"], end["counts"]["A"]["sold"], end["available"]) == (0, 0, 14)


def test_a_late_payment_re_takes_released_seats_then_sells_them():
    st = counters([msg(1, "SeatsHeld", {"hold": {}, "seats": seats(("A-1-1", "held", 2))}),
                   msg(2, "SeatsReleased", {"reason": "payment_expired", "seats": seats(("A-1-1", "available", 3))}),
                   msg(3, "SeatsHeld", {"hold": {}, "seats": seats(("A-1-1", "held", 4))}),
                   msg(4, "OrderConfirmed", {"order": paid(version=2, status="confirmed", payment="succeeded",
                                                           confirmed=True, seats_=("A-1-1",)),
                                             "seats": seats(("A-1-1", "sold", 5))})])
    assert (st["counts"]["A"]["held"], st["counts"]["A"]["sold"]) == (0, 1)


def test_event_cancellation_without_the_seat_map_releases_a_pending_orders_seats_as_held():
    st = counters([msg(1, "SeatsHeld", {"hold": {}, "seats": seats(("A-1-1", "held", 2))}),
                   msg(2, "OrderPlaced", {"order": paid(version=1, status="pending_payment", seats_=("A-1-1",))})])
    end = counters([msg(3, "OrderCancelled", {"order": paid(version=2, status="cancelled", cancelled=True,
                                                            seats_=("A-1-1",)), "reason": "event_cancelled"}),
                    msg(4, "SeatsReleased", {"reason": "event_cancelled", "seats": seats(("A-1-1", "available", 3))})],
                   st)
    assert (end["counts"]["A"]["held"], end["counts"]["A"]["sold"]) == (0, 0)
    assert end["stats"]["cancellations"] == 0


# --- buyer notifications ------------------------------------------------------------------------------------
def test_the_buyer_is_told_about_failed_payments_and_refunds_that_succeeded():
    [n] = N.plan(msg(2, "OrderPaymentFailed", {"order": paid(version=2, status="payment_failed", payment="failed")}))
    assert (n.user_id, n.kind, n.cause) == ("b1", "payment_failed", "order:o1")
    assert n.data["order"]["status"] == "payment_failed" and n.data["order"]["payment"]["status"] == "failed"
    assert "client_secret" not in n.data["order"]["payment"] and "buyer_id" not in n.data["order"]
    ms = lifecycle()
    [n] = N.plan(ms[3])
    assert (n.user_id, n.kind) == ("b1", "refund_succeeded")
    assert n.data["order"]["refund"] == {"status": "succeeded", "amount": 200, "reason": "cancelled_by_buyer"}
    assert N.plan(ms[0]) == []  # OrderPlaced: the buyer is on the provider's page
    assert [x.kind for x in N.plan(ms[1]) + N.plan(ms[2])] == ["order_confirmed", "order_cancelled"]
    failed = msg(5, "RefundUpdated", {"order": paid(version=4, status="cancelled", payment="succeeded",
                                                    confirmed=True, cancelled=True, refund="failed")})
    assert N.plan(failed) == []
    assert N.plan(msg(6, "RefundUpdated", {"order": {**ms[3].data["order"], "refund": {
        "status": "pending", "amount": 200, "reason": "cancelled_by_buyer"}}})) == []


def test_notification_ids_are_one_per_cause_kind_and_recipient():
    ms = lifecycle()
    [confirmed] = N.plan(ms[1])
    again = P.Msg(ms[1].topic, ms[1].partition, ms[1].offset + 100, {**ms[1].env, "id": "resent-elsewhere"})
    assert N.plan(again)[0].id == confirmed.id  # a re-send, a replay: the same notification
    # the order's tickets join its confirmation
    issued = msg(9, "TicketsIssued", {"order_id": "o1", "tickets": [
        {"id": "t1", "order_id": "o1", "event_id": "e1", "buyer_id": "b1", "seat": "A-1-1", "status": "valid",
         "code": "x.y", "version": 1}]})
    nid, tickets = N.confirmation_tickets(issued)
    assert nid == confirmed.id and tickets == [{"id": "t1", "seat": "A-1-1", "section": None, "code": "x.y"}]
    # an event cancellation tells each buyer once, whatever the number of their orders
    c1 = N.plan(msg(10, "OrderCancelled", {"order": paid(version=3, status="cancelled", cancelled=True),
                                           "reason": "event_cancelled"}))
    c2 = N.plan(msg(11, "OrderCancelled", {"order": {**paid(version=3, status="cancelled", cancelled=True),
                                                     "id": "o2"}, "reason": "event_cancelled"}))
    assert c1[0].kind == "event_cancelled" and c1[0].id == c2[0].id
    # a reminder is of one start time: the same event moved gets a new one
    def notice(starts_at: str, kind: str = "reminder", version: int = 3) -> P.Msg:
        return msg(12, "HolderNotice", {"event_id": "e1", "buyer_id": "b1", "notice": kind, "event_version": version,
                                        "title": "T", "starts_at": starts_at, "tickets": 2})
    r1, r1b, r2 = (N.plan(notice(t))[0] for t in ("2027-01-01T20:00:00.000Z",) * 2 + ("2027-01-02T20:00:00.000Z",))
    assert r1.kind == "event_reminder" and r1.id == r1b.id != r2.id
    ch = N.plan(notice("2027-01-02T20:00:00.000Z", "changed", 4))[0]
    assert ch.kind == "event_changed" and ch.data["tickets"] == 2


# --- the query side: /me/orders/{id} and stats through their response models ---------------------------------------
def order_document() -> dict:
    doc = P.fold_orders(lifecycle())["o1"]
    return {"_id": "00000000-0000-4000-8000-000000000001", **doc, "event_id": "00000000-0000-4000-8000-0000000000e1",
            "event": {"id": "00000000-0000-4000-8000-0000000000e1", "title": "T", "starts_at": "2027-03-01T20:00:00Z",
                      "v": 1}}


def test_an_order_renders_with_its_payment_and_refund():
    out = json.loads(R.dump(R.render(R.Order, views._order(order_document()))))
    assert out["status"] == "cancelled" and out["payment"]["status"] == "succeeded"
    assert out["payment"]["checkout_url"] == PAYMENT["checkout_url"] and out["payment"]["provider"] == "devpay"
    assert out["refund"] == {"status": "succeeded", "amount": 200, "reason": "cancelled_by_buyer"}
    assert out["confirmed_at"] == "2026-12-05T10:01:00Z" and "rank" not in out and "buyer_id" not in out
    pending = P.fold_orders(lifecycle()[:1])["o1"]
    doc = {"_id": "00000000-0000-4000-8000-000000000002", **pending, "event": order_document()["event"]}
    out = json.loads(R.dump(R.render(R.Order, views._order(doc))))
    assert out["status"] == "pending_payment" and out["payment"]["status"] == "pending"
    assert "refund" not in out and "confirmed_at" not in out


class FakeAsyncCollection:
    def __init__(self, docs: list[dict]) -> None:
        self.docs = docs

    @staticmethod
    def _match(d: dict, flt: dict) -> bool:
        return all(d.get(k) in v["$in"] if isinstance(v, dict) else d.get(k) == v for k, v in flt.items())

    async def find_one(self, flt: dict, projection: Any = None) -> dict | None:
        return next((d for d in self.docs if self._match(d, flt)), None)

    def find(self, flt: dict, projection: Any = None) -> "FakeCursor":
        return FakeCursor([d for d in self.docs if self._match(d, flt)])


class FakeCursor:
    def __init__(self, docs: list[dict]) -> None:
        self.docs = docs

    def sort(self, *_: Any) -> "FakeCursor":
        return self

    async def __aiter__(self):
        for d in self.docs:
            yield d


def test_my_order_is_the_buyers_own_only():
    doc = order_document()
    ticket = {"_id": "t1", "order_id": doc["_id"], "seat": "A-1-1", "section": "A", "status": "void"}
    db = SimpleNamespace(orders=FakeAsyncCollection([doc]), tickets=FakeAsyncCollection([ticket]))
    mine = asyncio.run(views.my_order(db, "b1", doc["_id"]))
    assert mine["id"] == doc["_id"] and mine["refund"]["status"] == "succeeded"
    assert mine["tickets"] == [{"id": "t1", "seat": "A-1-1", "status": "void"}]
    assert asyncio.run(views.my_order(db, "someone-else", doc["_id"])) is None


def test_organizer_stats_are_net_of_refunds():
    placed, confirmed, cancelled, refunded = lifecycle()
    held = msg(0, "SeatsHeld", {"hold": {}, "seats": seats(("A-1-1", "held", 2), ("A-1-2", "held", 2),
                                                             ("A-2-1", "held", 2))})
    released = msg(5, "SeatsReleased", {"reason": "order_cancelled", "order_id": "o1",
                                        "seats": seats(("A-1-1", "available", 4), ("A-1-2", "available", 4))})
    other = msg(6, "OrderConfirmed", {"order": paid("o2", version=2, status="confirmed", payment="succeeded",
                                                    confirmed=True, seats_=("A-2-1",), total=100),
                                      "seats": seats(("A-2-1", "sold", 3))})
    state = counters([held, placed, confirmed, cancelled, refunded, released, other])  # log order
    event = {"_id": "00000000-0000-4000-8000-0000000000e1", "title": "T", "status": "on_sale", "currency": "EUR",
             **{k: state[k] for k in ("capacity", "held", "sold", "available", "stats")}}
    db = SimpleNamespace(events=FakeAsyncCollection([event]))
    stats = R.render(R.OrganizerStats, asyncio.run(views.organizer_stats(db, event["_id"]))).model_dump()
    assert (stats["gross_revenue"], stats["refunded"], stats["revenue"]) == (300, 200, 100)
    assert (stats["orders"], stats["cancellations"], stats["cancellation_rate"]) == (2, 1, 0.5)
    assert stats["checked_in"] == 0 and stats["sold"] == 1
    assert stats["sales_by_day"] == [
        {"date": "2026-12-05", "orders": 2, "seats": 3, "revenue": 300, "refunded": 0, "cancellations": 0},
        {"date": "2026-12-06", "orders": 0, "seats": 0, "revenue": 0, "refunded": 200, "cancellations": 1}]


# --- the checker counts what the fold counts ----------------------------------------------------------------------
def test_the_checkers_postgresql_stats_agree_with_the_fold():
    from projectors.check import _add, _stats, order_increments

    def row(status: str, *, confirmed: bool, refund: str | None = None, total: int = 200) -> dict:
        return {"status": status, "confirmed": confirmed, "quantity": 2, "total": total, "currency": "EUR",
                "day": "2026-12-05" if confirmed else None, "cday": "2026-12-06" if status == "cancelled" else None,
                "rday": "2026-12-06", "refund_status": refund, "refund_amount": total if refund else None}

    truth = _stats()
    for r in (row("cancelled", confirmed=True, refund="succeeded"),   # lifecycle(): paid, cancelled, refunded
              row("payment_failed", confirmed=False),
              row("cancelled", confirmed=False, refund="succeeded"),  # seats_unavailable
              row("cancelled", confirmed=True, refund="failed")):
        for day, inc in order_increments(r)[1]:
            _add(truth, day, **inc)
    failed_refund = lifecycle("o4")[:3] + [msg(4, "RefundUpdated", {"order": paid(
        "o4", version=4, status="cancelled", payment="succeeded", confirmed=True, cancelled=True, refund="failed")})]
    never = [msg(1, "OrderPlaced", {"order": paid("o2", version=1, status="pending_payment")}),
             msg(2, "OrderPaymentFailed", {"order": paid("o2", version=2, status="payment_failed", payment="failed")}),
             msg(3, "RefundUpdated", {"order": paid("o3", version=3, status="cancelled", payment="succeeded",
                                                    cancelled=True, refund="succeeded")})]
    ms = [msg(i, m.type, m.data) for i, m in enumerate(lifecycle() + never + failed_refund, start=1)]
    got = counters(ms)["stats"]
    assert {k: got[k] for k in truth if k != "by_day"} == {k: v for k, v in truth.items() if k != "by_day"}
    assert got["by_day"] == truth["by_day"]
