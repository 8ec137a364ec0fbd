"""The order lifecycle (CONTRACT v2 "Orders, payments and refunds"; command_service/README.md "Payments").

Who moves an order:

* the buyer: ``checkout`` (a free order is confirmed at once; a paid one is ``pending_payment`` with a payment at
  the provider) and ``cancel_order`` (also the event's organizer and admins);
* the provider's webhook: ``payment_webhook`` (payment succeeded / failed / canceled, refund settled);
* the sweeper (entrypoints/sweeper.py, in every process): ``release_ended_windows`` puts the seats of an unpaid
  order back on sale when its window ends, ``reconcile_payments`` asks the provider about every payment still
  pending ``payment_grace_seconds`` after its window (a lost webhook) or of an order that no longer waits for it,
  and ``retry_refunds`` asks again for every refund the provider has not answered.

Every change of an order happens under its row lock (``get_order(lock=True)``, taken before any inventory row),
in one transaction with its outbox events, so a duplicate or late webhook finds the order already moved and
changes nothing; ``apply_payment`` is the one place that decides what a payment's outcome does to an order, for
the webhook and the reconciliation alike. Calls to the provider are never made inside a transaction.

The rule that keeps money safe: a payment known to have succeeded for an order that is not confirmed (cancelled,
failed, or its seats resold after the window) gets a refund, once: ``Order.refund_due``; the refund row is unique
per order and the provider's idempotency key is the order id.
"""
from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field, replace
from datetime import timedelta

import structlog

from command_service import metrics
from command_service.adapters.payments import Payment, ProviderRefused, WebhookEvent
from command_service.domain import commands, errors
from command_service.domain.events import (OrderCancelled, OrderConfirmed, OrderPaymentFailed, OrderPaymentSettled,
                                           OrderPlaced,
                                           RefundUpdated, SeatsHeld, SeatsReleased, WaitlistConverted)
from command_service.domain.model import (SEATS_UNAVAILABLE, Hold, InventoryChange, Order, OrderPayment, PromoCode,
                                          require_role, utcnow)
from command_service.service_layer import tickets
from command_service.service_layer.services import Services, best_effort
from command_service.service_layer.unit_of_work import UnitOfWork
from command_service.service_layer.waitlist import lock_offers, offer_waitlist
from contracts import payments as P
from contracts import seats as seat_ids

log = structlog.get_logger("orders")
ORDER_NAMESPACE = uuid.UUID("6f1c9a4e-3c55-4d8e-9a51-0b7c2d1e5f00")
RECONCILE_RETRY_S = 30.0  # a claimed reconciliation that could not finish is tried again after this
REFUND_RETRY_S = 15.0     # likewise a refund the provider did not answer
INLINE_REFUND_CLAIM_S = 30.0  # a cancel asks for its refund itself; the sweeper steps in only after this


def order_id_for(hold_id: str) -> str:
    """An order's id follows from its hold (one order per hold), so a checkout retried after the provider
    answered but before we committed asks the provider again with the same idempotency key: one payment."""
    return str(uuid.uuid5(ORDER_NAMESPACE, hold_id))


@dataclass
class After:
    """What a transaction leaves to do once committed: Redis seat states, waitlist offer locks, refunds to ask."""

    settle: list[tuple[str, InventoryChange, str, tuple[str, ...]]] = field(default_factory=list)
    offers: list[Hold] = field(default_factory=list)
    refunds: list[str] = field(default_factory=list)

    async def run(self, svc: Services) -> None:
        for event_id, change, hold_id, unlock in self.settle:
            await best_effort(event_id, svc.locks.settle(event_id, change.seats, hold_id=hold_id, unlock=unlock))
        await lock_offers(svc, self.offers)
        for order_id in self.refunds:
            await request_refund(svc, order_id)


# --- checkout -------------------------------------------------------------------------------------------------
async def checkout(cmd: commands.Checkout, svc: Services) -> tuple[Order, bool]:
    """(the order, created now?). A hold checks out once: the same request again answers the same order."""
    require_role(cmd.actor, "buyer")
    async with svc.uow() as uow:
        hold, existing = await uow.repo.checkout_context(cmd.hold_id)
    if hold is None or hold.buyer_id != cmd.actor.user_id:
        raise errors.NotFound("no such hold")
    if existing is not None:
        async with svc.uow() as uow:
            order, _ = await uow.repo.get_order(existing)
        return order, False
    if hold.status != "active" or hold.expires_at <= utcnow():
        raise hold.checkout_refusal(cmd.actor.user_id)
    order_id = order_id_for(hold.id)
    discount_total = hold.total
    if cmd.promo_code:  # priced with the code as it stands; the checkout's transaction takes the use
        async with svc.uow() as uow:
            promo = await uow.repo.find_promo_code(hold.event_id, cmd.promo_code)
        discount_total -= _check_promo(promo, hold, cmd.promo_code).discount(hold.total)
    if discount_total == 0:
        try:
            return await _confirm_free(cmd, svc, order_id), True
        except errors.DomainError:
            placed = await _placed_meanwhile(svc, hold.id)
            if placed is None:
                raise
            return placed, False
    # 1. the provider (outside any transaction): down means 503 and the hold is untouched
    payment = await svc.payments.create_payment(
        order_id=order_id, amount=discount_total, currency=hold.currency,
        description=f"Evently order {order_id}", return_url=svc.settings.payment_return_url.format(order_id=order_id))
    if payment.status != P.PENDING:  # the same hold and amount checked out before and that payment was given up
        raise errors.InvalidState("this hold's earlier payment was cancelled; hold the seats again",
                                  {"payment_status": payment.status})
    window = timedelta(seconds=svc.settings.payment_window_seconds)
    # 2. PostgreSQL: the hold becomes a pending_payment order; its seats stay held for the window
    try:
        async with svc.uow() as uow:
            converted = await uow.repo.convert_hold(hold.id, cmd.actor.user_id)
            if converted is None:
                raise await _refusal(uow, cmd)
            promo = await _redeem(uow, converted, cmd.promo_code) if cmd.promo_code else None
            order = Order.from_hold(converted, order_id, promo)
            if order.total != payment.amount:  # the code changed between pricing and redeeming: price again
                raise errors.InvalidPromoCode("the promo code changed during checkout; try again",
                                              {"promo_code": cmd.promo_code})
            order = order.with_payment(OrderPayment(svc.payments.name, payment.id, P.PENDING, payment.checkout_url,
                                                    order.created_at + window))
            await uow.repo.add_order(order, reconcile_at=order.payment.expires_at + timedelta(
                seconds=svc.settings.payment_grace_seconds))
            uow.emit(OrderPlaced.of(order))
            await _waitlist_converted(uow, converted)
            await uow.commit()
    except errors.DomainError:
        placed = await _placed_meanwhile(svc, hold.id)
        if placed is not None:  # the same checkout, sent twice at once: the other one placed it (same payment)
            return placed, False
        # nobody can pay it: the buyer never saw its page (best effort; an unused pending payment harms nobody)
        await _best_effort_cancel(svc, payment.id)
        raise
    metrics.ORDERS.labels("seated" if order.seats else "ga").inc()
    return order, True


async def _placed_meanwhile(svc: Services, hold_id: str) -> Order | None:
    """The order a concurrent request for the same hold placed while this one was on its way, if any."""
    async with svc.uow() as uow:
        _, existing = await uow.repo.checkout_context(hold_id)
        return (await uow.repo.get_order(existing))[0] if existing else None


async def _confirm_free(cmd: commands.Checkout, svc: Services, order_id: str) -> Order:
    """A free order: one transaction turns the live hold into a confirmed order (seats sold)."""
    async with svc.uow() as uow:
        hold, change = await uow.repo.end_hold(cmd.hold_id, "converted", buyer_id=cmd.actor.user_id,
                                               order_id=order_id)
        if hold is None or not hold.covered_by(change):
            raise await _refusal(uow, cmd)
        promo = await _redeem(uow, hold, cmd.promo_code) if cmd.promo_code else None
        order = Order.from_hold(hold, order_id, promo)
        if order.total != 0:
            raise errors.InvalidPromoCode("the promo code changed during checkout; try again",
                                          {"promo_code": cmd.promo_code})
        await uow.repo.add_order(order)
        uow.emit(OrderConfirmed.of(order, change))
        await tickets.issue(uow, svc, order)
        await _waitlist_converted(uow, hold)
        await uow.commit()
    metrics.ORDERS.labels("seated" if hold.seats else "ga").inc()
    if hold.seats:
        await best_effort(hold.event_id, svc.locks.settle(hold.event_id, change.seats, hold_id=hold.id,
                                                           unlock=hold.seats))
    return order


async def _waitlist_converted(uow: UnitOfWork, hold: Hold) -> None:
    if hold.waitlist_entry_id:  # a waitlist offer was taken
        entry = await uow.repo.entry_for_hold(hold.id)
        if entry is not None and entry.active:
            done = entry.moved("converted")
            await uow.repo.save_waitlist_entry(done)
            uow.emit(WaitlistConverted.of(done))


def _check_promo(promo: PromoCode | None, hold: Hold, code: str) -> PromoCode:
    if promo is None:
        raise errors.InvalidPromoCode("unknown, expired or used-up promo code", {"promo_code": code})
    sections = {seat_ids.parse(s).section for s in hold.seats} if hold.seats else {hold.section}
    if not all(promo.applies_to(sec) for sec in sections):
        raise errors.InvalidPromoCode("this promo code is not valid for these seats",
                                      {"promo_code": code, "sections": sorted(promo.sections or ())})
    return promo


async def _redeem(uow: UnitOfWork, hold: Hold, code: str) -> PromoCode:
    """One use of the code, in the checkout's transaction (so a refused checkout takes no use): refused, the whole
    checkout is (the hold stays active, and the buyer may check out without the code)."""
    return _check_promo(await uow.repo.redeem_promo_code(hold.event_id, code), hold, code)


async def _refusal(uow: UnitOfWork, cmd: commands.Checkout) -> errors.DomainError:
    hold = await uow.repo.get_hold(cmd.hold_id)
    return hold.checkout_refusal(cmd.actor.user_id) if hold else errors.NotFound("no such hold")


async def _best_effort_cancel(svc: Services, payment_id: str) -> None:
    try:
        await svc.payments.cancel_payment(payment_id)
    except Exception as exc:  # noqa: BLE001 - an unused pending payment harms nobody
        log.warning("payment_cancel_failed", payment_id=payment_id, error=repr(exc)[:200])


# --- the outcome of a payment ---------------------------------------------------------------------------------
async def apply_payment(uow: UnitOfWork, svc: Services, order: Order, status: str, after: After) -> Order:
    """What a payment's final ``status`` does to ``order`` (its row locked), in the caller's transaction.
    Idempotent: an order that already knows its payment's outcome is returned unchanged."""
    if order.payment is None or order.payment.status != P.PENDING or status == P.PENDING:
        return order
    if status == P.SUCCEEDED and order.status == "pending_payment":
        return await _paid(uow, svc, order, after)
    if order.status == "pending_payment":  # failed or canceled: the seats go back (unless the window did it)
        failed = order.payment_failed(status)
        await uow.repo.save_order(failed)
        uow.emit(OrderPaymentFailed.of(failed))
        if not order.seats_released:
            await _release(uow, svc, order, "payment_failed", after)
        if order.promo_code_id:
            await uow.repo.return_promo_use(order.promo_code_id)
        metrics.PAYMENTS.labels("failed").inc()
        return failed
    # the order no longer waited (cancelled, or failed by an earlier answer): a success means money to return
    settled = order.settled(status)
    if settled.refund_due():
        settled = settled.refunding(order.cancel_reason or SEATS_UNAVAILABLE)
        await uow.repo.add_refund(settled, first_attempt_in_s=INLINE_REFUND_CLAIM_S)
        after.refunds.append(order.id)
    await uow.repo.save_order(settled)
    uow.emit(RefundUpdated.of(settled) if settled.refund else OrderPaymentSettled.of(settled))  # every version is told
    return settled


async def _paid(uow: UnitOfWork, svc: Services, order: Order, after: After) -> Order:
    """A success for a pending order: its held seats become sold. After its window (seats back on sale) it is
    confirmed only if every seat is still free; otherwise it is cancelled and refunded (``seats_unavailable``)."""
    if order.seats_released:
        retaken = await uow.repo.retake(order)
        if not _covers(order, retaken):
            cancelled = order.cancelled(SEATS_UNAVAILABLE)
            cancelled = replace(cancelled, payment=replace(order.payment, status=P.SUCCEEDED))
            cancelled = cancelled.refunding(SEATS_UNAVAILABLE)
            await uow.repo.save_order(cancelled)
            await uow.repo.add_refund(cancelled, first_attempt_in_s=INLINE_REFUND_CLAIM_S)
            uow.emit(OrderCancelled.of(cancelled, SEATS_UNAVAILABLE))
            if order.promo_code_id:
                await uow.repo.return_promo_use(order.promo_code_id)
            after.refunds.append(order.id)
            metrics.PAYMENTS.labels("late_refunded").inc()
            return cancelled
        hold = await uow.repo.get_hold(order.hold_id)
        uow.emit(SeatsHeld.of(hold, retaken))
    change = await uow.repo.sell_held(order)
    if not _covers(order, change):  # the order's seats are held for it alone: anything else is a broken invariant
        raise RuntimeError(f"order {order.id}: held inventory not found ({len(change.seats)} seats)")
    confirmed = replace(order.confirmed(), seats_released=False)
    await uow.repo.save_order(confirmed)
    uow.emit(OrderConfirmed.of(confirmed, change))
    await tickets.issue(uow, svc, confirmed)
    after.settle.append((order.event_id, change, order.hold_id, order.seats or ()))
    metrics.PAYMENTS.labels("succeeded").inc()
    return confirmed


def _covers(order: Order, change: InventoryChange) -> bool:
    return len(change.seats) == len(order.seats) if order.seats else bool(change.ga_sections)


async def _release(uow: UnitOfWork, svc: Services, order: Order, reason: str, after: After) -> None:
    """The seats an unpaid order held go back on sale (or to the waitlist)."""
    change = await uow.repo.release_held(order)
    if change:
        uow.emit(SeatsReleased.of(order.event_id, reason, change, order_id=order.id))
        after.offers += await offer_waitlist(uow, svc, order.event_id, change)
    after.settle.append((order.event_id, change, order.hold_id, order.seats or ()))


# --- the provider's webhook -----------------------------------------------------------------------------------
async def payment_webhook(cmd: commands.RecordPaymentWebhook, svc: Services) -> dict:
    """Record a verified webhook once per provider event id (the provider retries until it gets a 2xx, and may
    send an event twice) and act on it in the same transaction."""
    event: WebhookEvent = cmd.event
    after = After()
    async with svc.uow() as uow:
        new = await uow.repo.record_payment_webhook(cmd.provider, event, cmd.payload)
        order = None
        if new:
            payment_id = event.object_id if event.kind == "payment" else event.payment_id
            order = await uow.repo.order_for_payment(cmd.provider, payment_id, lock=True) if payment_id else None
            if order is not None and event.kind == "payment":
                await apply_payment(uow, svc, order, event.status, after)
            elif order is not None and event.kind == "refund":
                await _refund_answered(uow, order, event.status, event.object_id)
            if order is not None:  # one we know nothing of stays unprocessed, for an operator to look at
                await uow.repo.mark_webhook_processed(cmd.provider, event.id)
        await uow.commit()
    await after.run(svc)
    log.info("payment_webhook", provider=cmd.provider, type=event.type, object_id=event.object_id,
             duplicate=not new, order_id=order.id if order else None)
    return {"received": True, "duplicate": not new}


# --- cancellation ---------------------------------------------------------------------------------------------
async def cancel_order(cmd: commands.CancelOrder, svc: Services) -> Order:
    """Repeatable: under the order's lock only the first cancel finds it open, returns its seats and asks for its
    refund; the others return it as it is."""
    after = After()
    async with svc.uow() as uow:
        found = await uow.repo.get_order(cmd.order_id, lock=True)
        if found is None:
            raise errors.NotFound("no such order")
        order, organizer_id = found
        order.ensure_cancellable_by(cmd.actor, organizer_id)
        if order.status in ("cancelled", "payment_failed"):
            return order
        reason = f"cancelled_by_{cmd.actor.role}"
        cancelled = order.cancelled(reason)
        if order.status == "confirmed":
            await tickets.void(uow, order)
            change = await uow.repo.release_sold(order)
            uow.emit(SeatsReleased.of(order.event_id, "order_cancelled", change, order_id=order.id))
            after.offers += await offer_waitlist(uow, svc, order.event_id, change)
            after.settle.append((order.event_id, change, "", ()))
        elif not order.seats_released:  # pending_payment: its seats were held for the payment
            await _release(uow, svc, order, "cancelled", after)
        if cancelled.refund_due():
            cancelled = cancelled.refunding(reason)
            await uow.repo.add_refund(cancelled, first_attempt_in_s=INLINE_REFUND_CLAIM_S)
            after.refunds.append(order.id)
        # a payment still pending is cancelled at the provider by the reconciliation, at once
        await uow.repo.save_order(cancelled, reconcile_now=cancelled.payment is not None
                                  and cancelled.payment.status == P.PENDING)
        if order.promo_code_id:  # the cancel above happened once: the use comes back once
            await uow.repo.return_promo_use(order.promo_code_id)
        uow.emit(OrderCancelled.of(cancelled, reason))
        await uow.commit()
    metrics.ORDER_CANCELLATIONS.labels(reason).inc()
    await after.run(svc)
    if cancelled.payment is not None and cancelled.payment.status == P.PENDING:
        await reconcile_order(svc, order.id)  # at once, so the buyer cannot pay it any more
    async with svc.uow() as uow:  # as it stands now (the refund may have settled already)
        return (await uow.repo.get_order(order.id))[0]


async def refund_cancelled_orders(svc: Services, orders: list[Order]) -> None:
    """Event cancellation, inside its transaction's caller, after the commit: the refunds were recorded with the
    cancellation; ask for them now, a few at a time (the sweeper retries whatever fails)."""
    gate = asyncio.Semaphore(8)

    async def one(order_id: str) -> None:
        async with gate:
            await request_refund(svc, order_id)

    await asyncio.gather(*(one(o.id) for o in orders))


# --- refunds ---------------------------------------------------------------------------------------------------
async def request_refund(svc: Services, order_id: str) -> None:
    """Ask the provider for the order's refund (idempotent on the order id) and record its answer. An outage
    leaves it pending: ``retry_refunds`` asks again."""
    async with svc.uow() as uow:
        order, _ = await uow.repo.get_order(order_id)
    if order.refund is None or order.refund.status != "pending" or order.payment is None:
        return
    try:
        refund = await svc.payments.refund(order_id=order.id, payment_id=order.payment.id, amount=order.refund.amount,
                                           reason=order.refund.reason)
    except errors.DependencyUnavailable as exc:
        log.warning("refund_deferred", order_id=order_id, error=str(exc))
        return
    except ProviderRefused as exc:  # the provider will never do it: recorded as failed (admin analytics count it)
        log.error("refund_refused", order_id=order_id, error=str(exc))
        await _record_refund(svc, order_id, "failed", None, str(exc)[:500])
        return
    await _record_refund(svc, order_id, refund.status, refund.id, None)


async def _record_refund(svc: Services, order_id: str, status: str, refund_id: str | None, error: str | None) -> None:
    async with svc.uow() as uow:
        order, _ = await uow.repo.get_order(order_id, lock=True)
        await _refund_answered(uow, order, status, refund_id, error)
        await uow.commit()


async def _refund_answered(uow: UnitOfWork, order: Order, status: str, refund_id: str | None,
                           error: str | None = None) -> None:
    """The provider's answer about the order's refund (its row locked): a settled refund is recorded once."""
    if order.refund is None or order.refund.status != "pending":
        return
    if status not in ("succeeded", "failed"):
        await uow.repo.save_refund(order.id, "pending", provider_refund_id=refund_id, error=error)
        return
    settled = order.refund_settled(status)
    await uow.repo.save_refund(order.id, status, provider_refund_id=refund_id, error=error)
    await uow.repo.save_order(settled)
    uow.emit(RefundUpdated.of(settled))
    metrics.REFUNDS.labels(status).inc()


# --- the sweeper's steps --------------------------------------------------------------------------------------
async def release_ended_windows(svc: Services, limit: int = 100) -> int:
    """Orders still unpaid when their payment window ends: their seats go back on sale (the order stays
    ``pending_payment`` until the provider answers or the reconciliation asks it)."""
    after = After()
    async with svc.uow() as uow:
        ids = await uow.repo.claim_ended_windows(limit)
        for order_id in ids:
            order, _ = await uow.repo.get_order(order_id, lock=True)
            await _release(uow, svc, order, "payment_expired", after)
            await uow.repo.save_order(replace(order, seats_released=True))
        await uow.commit()
    await after.run(svc)
    return len(ids)


async def reconcile_payments(svc: Services, limit: int = 50) -> int:
    async with svc.uow() as uow:
        ids = await uow.repo.claim_reconciliations(limit, RECONCILE_RETRY_S)
        await uow.commit()
    for order_id in ids:
        try:  # one order the provider cannot answer for does not hold back the others of the batch
            await reconcile_order(svc, order_id)
        except Exception as exc:  # noqa: BLE001 - it is claimed again after RECONCILE_RETRY_S
            log.error("reconcile_failed", order_id=order_id, error=repr(exc)[:300])
    return len(ids)


async def reconcile_order(svc: Services, order_id: str) -> None:
    """Ask the provider what became of the order's payment and apply it. A payment still pending when nobody
    waits for it any more (the window and grace are over, or the order was cancelled) is cancelled at the
    provider first; if it succeeded meanwhile, the success is applied (and refunded if the order is gone)."""
    async with svc.uow() as uow:
        order, _ = await uow.repo.get_order(order_id)
    if order.payment is None or order.payment.status != P.PENDING:
        return
    try:
        payment = await svc.payments.get_payment(order.payment.id)
        if payment.status == P.PENDING:
            payment = await _cancel_or_current(svc, payment)
    except errors.DependencyUnavailable as exc:
        log.warning("reconcile_deferred", order_id=order_id, error=str(exc))
        return
    after = After()
    async with svc.uow() as uow:
        order, _ = await uow.repo.get_order(order_id, lock=True)
        await apply_payment(uow, svc, order, payment.status, after)
        await uow.commit()
    await after.run(svc)
    log.info("payment_reconciled", order_id=order_id, payment_status=payment.status)


async def _cancel_or_current(svc: Services, payment: Payment) -> Payment:
    try:
        return await svc.payments.cancel_payment(payment.id)
    except ProviderRefused:  # it settled between our two calls: its state now
        return await svc.payments.get_payment(payment.id)


async def retry_refunds(svc: Services, limit: int = 50) -> int:
    async with svc.uow() as uow:
        ids = await uow.repo.claim_refunds(limit, REFUND_RETRY_S)
        await uow.commit()
    for order_id in ids:
        try:
            await request_refund(svc, order_id)
        except Exception as exc:  # noqa: BLE001 - it is claimed again after REFUND_RETRY_S
            log.error("refund_retry_failed", order_id=order_id, error=repr(exc)[:300])
    return len(ids)
