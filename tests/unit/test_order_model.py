"""The order's transitions (domain/model.py Order): pure rules, no I/O."""
from __future__ import annotations

from datetime import timedelta

from command_service.domain.model import SEATS_UNAVAILABLE, Hold, Order, OrderPayment, PromoCode, utcnow


def hold(total: int = 3000) -> Hold:
    return Hold("h1", "e1", "b1", ("A-1-1", "A-1-2"), None, 2, utcnow() + timedelta(minutes=5), total, "EUR")


def pending() -> Order:
    o = Order.from_hold(hold(), "o1")
    return o.with_payment(OrderPayment("devpay", "pay_1", "pending", "http://x/checkout/pay_1",
                                       utcnow() + timedelta(minutes=10)))


def test_a_free_order_is_confirmed_at_once_and_a_paid_one_waits():
    free = Order.from_hold(hold(), "o1", PromoCode("p", "e1", "ALL", 100, None, 5))
    assert (free.status, free.total, free.discount, free.confirmed_at is not None) == ("confirmed", 0, 3000, True)
    paid = Order.from_hold(hold(), "o2")
    assert (paid.status, paid.total, paid.confirmed_at) == ("pending_payment", 3000, None)


def test_every_transition_is_a_new_version():
    o = pending()
    confirmed = o.confirmed()
    assert (confirmed.status, confirmed.payment.status, confirmed.version) == ("confirmed", "succeeded", 2)
    cancelled = confirmed.cancelled("cancelled_by_buyer")
    assert (cancelled.status, cancelled.version, cancelled.seats_released) == ("cancelled", 3, True)
    refunding = cancelled.refunding("cancelled_by_buyer")
    assert (refunding.refund.status, refunding.refund.amount, refunding.version) == ("pending", 3000, 4)
    done = refunding.refund_settled("succeeded")
    assert (done.refund.status, done.version) == ("succeeded", 5)
    assert done.to_json()["refund"] == {"status": "succeeded", "amount": 3000, "reason": "cancelled_by_buyer"}


def test_a_refund_is_due_only_for_money_taken_without_a_ticket():
    o = pending()
    assert not o.refund_due()  # still waiting
    assert not o.confirmed().refund_due()  # has its ticket
    assert o.confirmed().cancelled("cancelled_by_admin").refund_due()
    assert not o.cancelled("cancelled_by_buyer").refund_due()  # never paid
    late = o.payment_failed("canceled").settled("succeeded")  # paid after it was given up
    assert late.refund_due()
    assert not late.refunding(SEATS_UNAVAILABLE).refund_due()  # once
    free = Order.from_hold(hold(0), "o3")
    assert not free.cancelled("cancelled_by_buyer").refund_due()
