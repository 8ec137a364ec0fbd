"""Command handlers: one per command. Each validates against the domain, changes state inside one
unit of work (outbox included) and only then touches Redis. The order lifecycle (checkout, payments, cancels,
refunds) is in service_layer/orders.py.

A seat's journey (README.md): ``create_hold`` -> SeatLocks.acquire (Redis, all or none) ->
Repository.reserve (PostgreSQL decides) -> SeatsHeld in the outbox -> ``orders.checkout`` (pending_payment,
seats still held) -> the provider's webhook -> ``orders.apply_payment`` -> Repository.sell_held -> OrderConfirmed
-> SeatLocks.settle records the seat as sold.
"""
from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import replace
from datetime import timedelta
from typing import Any, Awaitable, Callable

import structlog
import tenacity

from common import revocation
from common.auth import Principal, admission_valid, encode_token
from command_service import metrics
from command_service.adapters.passwords import hash_password, verify_password
from command_service.domain import commands, errors
from command_service.domain.events import (EventCancelled, EventCreated, EventPublished, EventUpdated,
                                           NotificationsRead, OfferExpired, OrderCancelled, PromoCodeCreated, SeatsHeld,
                                           SeatsReleased,
                                           UserRegistered, UserUpdated, VenueCreated,
                                           WaitlistJoined, WaitlistLeft)
from command_service.domain.model import (Event, Hold, InventoryChange, PromoCode, User, Venue,
                                          WaitlistEntry, ensure_sale_open, new_id, require_owner, require_role,
                                          utcnow)
from command_service.service_layer import notices, orders, tickets, waiting_room
from command_service.service_layer.services import Services, best_effort
from command_service.service_layer.unit_of_work import TransientConflict, UnitOfWork
from command_service.service_layer.waitlist import lock_offers, offer_waitlist, waitlist_scope

log = structlog.get_logger()
RELEASE_CHUNK = 1000  # seats per SeatsReleased message when a whole event is cancelled


# --- auth ---------------------------------------------------------------------------------
async def register(cmd: commands.Register, svc: Services) -> User:
    return await add_user(svc.uow, cmd.email, cmd.password, cmd.name, cmd.role)


async def add_user(uow_factory: Callable[[], UnitOfWork], email: str, password: str, name: str, role: str) -> User:
    """Also used by the CLI to create admins (never reachable through the API)."""
    user = User(new_id(), email, name, role, await hash_password(password))
    async with uow_factory() as uow:
        if not await uow.repo.add_user(user):
            raise errors.EmailExists("an account with this email exists", {"email": "already registered"})
        uow.emit(UserRegistered.of(user))
        await uow.commit()
    return user


async def issue_token(cmd: commands.IssueToken, svc: Services) -> dict[str, Any]:
    async with svc.uow() as uow:
        user = await uow.repo.user_by_email(cmd.email)
    if not await verify_password(user.password_hash if user else None, cmd.password):
        raise errors.Unauthenticated("wrong email or password")
    user.ensure_active()
    async with svc.uow() as uow:
        tokens = await _new_tokens(uow, svc, user, family_id=new_id())
        await uow.commit()
    return tokens


async def _new_tokens(uow: UnitOfWork, svc: Services, user: User, family_id: str) -> dict[str, Any]:
    """An access token and the next refresh token of ``family_id`` (recorded in this unit of work)."""
    ttl, jti, refresh = svc.settings.jwt_ttl_seconds, uuid.uuid4().hex, secrets.token_urlsafe(32)
    now = utcnow()
    await uow.repo.add_refresh_token(_digest(refresh), family_id, user.id, jti, now + timedelta(seconds=ttl),
                                     now + timedelta(seconds=svc.settings.refresh_ttl_seconds))
    return {"access_token": encode_token(user.id, user.role, svc.settings.jwt_secret, ttl, jti=jti),
            "token_type": "bearer", "expires_in": ttl, "refresh_token": refresh}


def _digest(refresh_token: str) -> str:
    return hashlib.sha256(refresh_token.encode()).hexdigest()


async def refresh_token(cmd: commands.RefreshToken, svc: Services) -> dict[str, Any]:
    """Rotate: the presented token is used up and the next one of its family issued. A token presented a second
    time means it was copied: the whole family (and its live access tokens) is revoked, and the answer is 401."""
    reused: revocation.Members = {}
    async with svc.uow() as uow:
        row, fresh = await uow.repo.use_refresh_token(_digest(cmd.refresh_token))
        if row is None:
            raise errors.Unauthenticated("unknown refresh token")
        if not fresh:
            if row["used_at"] is not None and row["revoked_at"] is None:
                reused = revocation.token_members(
                    {jti: expires.timestamp()
                     for jti, expires in await uow.repo.revoke_refresh_family(str(row["family_id"]))})
                await uow.repo.record_revocations(reused)
                await uow.commit()
                log.warning("refresh_token_reused", user_id=str(row["user_id"]), family_id=str(row["family_id"]))
        else:
            user = await uow.repo.get_user(str(row["user_id"]))
            if user is None or user.disabled:
                raise errors.Unauthenticated("this account is disabled")
            tokens = await _new_tokens(uow, svc, user, family_id=str(row["family_id"]))
            await uow.commit()
            return tokens
    await revocation.publish(svc.redis, reused)
    raise errors.Unauthenticated("this refresh token was already used, expired or revoked")


async def logout(cmd: commands.Logout, svc: Services) -> None:
    """This access token and its refresh-token family stop working (on both services within 5 s)."""
    async with svc.uow() as uow:
        family = await uow.repo.refresh_family_of(cmd.actor.jti)
        live = await uow.repo.revoke_refresh_family(family) if family else []
        revoked = revocation.token_members({cmd.actor.jti: cmd.actor.expires_at,
                                            **{jti: expires.timestamp() for jti, expires in live}})
        await uow.repo.record_revocations(revoked)
        await uow.commit()
    await revocation.publish(svc.redis, revoked)


async def _change_user(cmd: commands.SetUserRole | commands.DisableUser, svc: Services, **changes: Any) -> User:
    """An admin's change to an account: every token the user holds stops working (they sign in again, with the
    new role; a disabled user cannot)."""
    require_role(cmd.actor, "admin")
    async with svc.uow() as uow:
        user = await uow.repo.get_user(cmd.user_id, lock=True)
        if user is None:
            raise errors.NotFound("no such user")
        if all(getattr(user, k) == v for k, v in changes.items()):
            return user  # nothing to change: repeating it is harmless
        user = user.changed(**changes)
        await uow.repo.save_user(user)
        await uow.repo.revoke_user_refresh_tokens(user.id)
        revoked = revocation.user_member(user.id, svc.settings.jwt_ttl_seconds)
        await uow.repo.record_revocations(revoked)
        uow.emit(UserUpdated.of(user))
        await uow.commit()
    await revocation.publish(svc.redis, revoked)
    return user


async def set_user_role(cmd: commands.SetUserRole, svc: Services) -> User:
    return await _change_user(cmd, svc, role=cmd.role)


async def disable_user(cmd: commands.DisableUser, svc: Services) -> User:
    return await _change_user(cmd, svc, disabled=True)


async def update_preferences(cmd: commands.UpdatePreferences, svc: Services) -> User:
    """Which optional mail the caller takes (reminders, marketing); order, payment and refund mail always goes."""
    require_role(cmd.actor, "buyer", "organizer", "admin")
    changes = {k: v for k, v in (("mail_reminders", cmd.reminders), ("mail_marketing", cmd.marketing))
               if v is not None}
    async with svc.uow() as uow:
        user = await uow.repo.get_user(cmd.actor.user_id, lock=True)
        if user is None:
            raise errors.NotFound("no such user")
        if any(getattr(user, k) != v for k, v in changes.items()):
            user = user.changed(**changes)
            await uow.repo.save_user(user)
            uow.emit(UserUpdated.of(user))
        await uow.commit()
    return user


async def mark_notifications_read(cmd: commands.MarkNotificationsRead, svc: Services) -> None:
    """The inbox lives in the read model; the command side records the fact, and the notifier applies it to the
    caller's own notifications only (an id that is not theirs changes nothing)."""
    require_role(cmd.actor, "buyer", "organizer", "admin")
    async with svc.uow() as uow:
        uow.emit(NotificationsRead.of(cmd.actor.user_id, cmd.notification_id))
        await uow.commit()


# --- venues and events (organizers) -------------------------------------------------------
async def create_venue(cmd: commands.CreateVenue, svc: Services) -> Venue:
    require_role(cmd.actor, "organizer")
    venue = Venue(new_id(), cmd.actor.user_id, cmd.name, cmd.city, cmd.address, cmd.layout())
    async with svc.uow() as uow:
        await uow.repo.add_venue(venue)
        uow.emit(VenueCreated.of(venue))
        await uow.commit()
    return venue


async def create_event(cmd: commands.CreateEvent, svc: Services) -> Event:
    require_role(cmd.actor, "organizer")
    async with svc.uow() as uow:
        venue = await uow.repo.get_venue(cmd.venue_id)
        if venue is None:
            raise errors.ValidationError("unknown venue", {"venue_id": "no such venue"})
        require_owner(cmd.actor, venue.organizer_id)
        event = Event(new_id(), cmd.actor.user_id, venue, cmd.title, cmd.description, cmd.category, cmd.starts_at,
                      cmd.ends_at, cmd.currency, dict(cmd.prices), sale_starts_at=cmd.sale_starts_at,
                      max_per_buyer=cmd.max_per_buyer,
                      waiting_room=cmd.waiting_room.model_dump() if cmd.waiting_room else None)
        await uow.repo.add_event(event)
        uow.emit(EventCreated.of(event))
        await uow.commit()
    return event


async def _owned_event(uow: UnitOfWork, actor: Principal, event_id: str, *, admin_allowed: bool = False) -> Event:
    require_role(actor, "organizer", *(("admin",) if admin_allowed else ()))
    event = await uow.repo.get_event(event_id, for_update=True)
    if event is None:
        raise errors.NotFound("no such event")
    require_owner(actor, event.organizer_id, admin_allowed=admin_allowed)
    return event


async def update_event(cmd: commands.UpdateEvent, svc: Services) -> Event:
    """Organizer edits never touch inventory (no seat or GA row is read or written). A new time is told to
    every ticket holder (service_layer/notices.py)."""
    async with svc.uow() as uow:
        event = await _owned_event(uow, cmd.actor, cmd.event_id)
        before = {"starts_at": event.starts_at, "ends_at": event.ends_at}
        changed = event.update(cmd.changes())
        if changed:
            await uow.repo.save_event(event)
            uow.emit(EventUpdated.of(event, changed))
            if {"starts_at", "ends_at"} & set(changed):
                await notices.tell_time_changed(uow, event, before)
        await uow.commit()
    svc.catalog.forget(event.id)  # the hold path's cache: sale time, limit, waiting room
    return event


async def publish_event(cmd: commands.PublishEvent, svc: Services) -> Event:
    async with svc.uow() as uow:
        event = await _owned_event(uow, cmd.actor, cmd.event_id)
        if event.publish():
            await uow.repo.save_event(event)
            uow.emit(EventPublished.of(event))
        await uow.commit()
    svc.catalog.forget(event.id)
    return event


async def cancel_event(cmd: commands.CancelEvent, svc: Services) -> Event:
    """Cancel the event, every order and every hold. Repeating it finishes whatever is left."""
    async with svc.uow() as uow:
        event = await _owned_event(uow, cmd.actor, cmd.event_id, admin_allowed=True)
        if event.cancel():
            await uow.repo.save_event(event)
            uow.emit(EventCancelled.of(event))
        holds, cancelled, change = await uow.repo.cancel_event_inventory(event)
        parts = change.chunks(RELEASE_CHUNK)
        refunds = []
        for o in cancelled:  # paid orders get their money back (asked after the commit, retried by the sweeper)
            if o.refund_due():
                o = o.refunding("event_cancelled")
                await uow.repo.save_order(o)
                await uow.repo.add_refund(o, first_attempt_in_s=orders.INLINE_REFUND_CLAIM_S)
                refunds.append(o)
            uow.emit(OrderCancelled.of(o, "event_cancelled"))
        await tickets.void_event(uow, event.id)
        uow.emit(*(SeatsReleased.of(event.id, "event_cancelled", part) for part in parts))
        for entry in await uow.repo.active_entries(event.id):  # the queue ends with the event
            ended = entry.moved("expired")
            await uow.repo.save_waitlist_entry(ended)
            # an offer holder is told the offer is gone; someone only waiting just leaves the queue
            kind = OfferExpired if entry.status == "offered" else WaitlistLeft
            uow.emit(kind.of(ended, reason="event_cancelled"))
        await uow.commit()
    svc.catalog.forget(event.id)
    metrics.ORDER_CANCELLATIONS.labels("event_cancelled").inc(len(cancelled))
    metrics.HOLDS_ENDED.labels("event_cancelled").inc(len(holds))
    for part in parts:
        await best_effort(event.id, svc.locks.settle(event.id, part.seats))
    for h in holds:
        if h.seats:
            await best_effort(event.id, svc.locks.settle(event.id, hold_id=h.id, unlock=h.seats))
    await orders.refund_cancelled_orders(svc, refunds)
    return event


# --- holds and orders (buyers) ------------------------------------------------------------
async def create_hold(cmd: commands.CreateHold, svc: Services) -> Hold:
    require_role(cmd.actor, "buyer")
    sale = await svc.catalog.get(cmd.event_id)
    ensure_sale_open(sale.status, sale.sale_starts_at)  # checked again inside the transaction (SaleTerms)
    if sale.waiting_room and not admission_valid(cmd.admission, cmd.actor.user_id, sale.event_id,
                                                 svc.settings.jwt_secret):
        raise errors.AdmissionRequired("this event has a waiting room: join it (POST /events/{id}/queue) and "
                                       "hold with the admission it gives", {"admission": "missing, invalid or expired"})
    hold = Hold.request(sale, cmd.actor.user_id, cmd.seats, cmd.section, cmd.quantity, svc.settings.hold_ttl_seconds)
    kind = "seated" if hold.seats else "ga"
    if hold.seats:  # 1. Redis: every seat lock or none (GA places are arbitrated by PostgreSQL alone)
        taken = await svc.locks.acquire(hold.event_id, hold.seats, hold.id, int(svc.settings.hold_ttl_seconds * 1000))
        if taken:
            metrics.LOCK_CONTENTION.labels("redis").inc()
            raise errors.SeatsUnavailable(taken)
    try:  # 2. PostgreSQL decides
        async with svc.uow() as uow:
            if sale.max_per_buyer:  # PostgreSQL decides, under a lock per (event, buyer): Redis plays no part
                current = await uow.repo.buyer_places(hold.event_id, hold.buyer_id)
                if current + hold.quantity > sale.max_per_buyer:
                    raise errors.LimitExceeded(
                        f"at most {sale.max_per_buyer} places per buyer on this event; you have {current}",
                        {"limit": sale.max_per_buyer, "current": current})
            change, terms = await uow.repo.reserve(hold)
            if terms is None:
                raise errors.NotFound("no such event")
            terms.ensure_sale_open()
            if not hold.covered_by(change):
                if hold.seats:
                    raise await _seats_taken(uow, svc, hold, change)
                raise errors.SoldOut(f"not enough places left in section {hold.section}",
                                     {"section": hold.section, "quantity": hold.quantity})
            hold = hold.priced(terms)
            await uow.repo.add_hold(hold)
            uow.emit(SeatsHeld.of(hold, change))
            await uow.commit()
    except BaseException as exc:
        if isinstance(exc, (errors.EventNotOnSale, errors.LimitExceeded)):
            svc.catalog.forget(hold.event_id)  # a stale entry (or a limit just changed): read it again next time
        if hold.seats:
            await best_effort(hold.event_id, svc.locks.settle(hold.event_id, hold_id=hold.id, unlock=hold.seats))
        raise
    metrics.HOLDS.labels(kind).inc()
    return hold


async def _seats_taken(uow: UnitOfWork, svc: Services, hold: Hold, change: InventoryChange) -> errors.SeatsUnavailable:
    """PostgreSQL refused seats that Redis let through (lock expired, Redis flushed): tell Redis which are sold."""
    metrics.LOCK_CONTENTION.labels("postgres").inc()
    taken = sorted(set(hold.seats) - {c.seat_id for c in change.seats})
    states = await uow.repo.seat_states(hold.event_id, taken)
    await best_effort(hold.event_id, svc.locks.settle(hold.event_id, [s for s in states if s.status == "sold"]))
    return errors.SeatsUnavailable(taken)


async def release_hold(cmd: commands.ReleaseHold, svc: Services) -> None:
    require_role(cmd.actor, "buyer")
    async with svc.uow() as uow:
        hold = await uow.repo.get_hold(cmd.hold_id)
    if hold is None:
        raise errors.NotFound("no such hold")
    hold.ensure_owned_by(cmd.actor.user_id)
    if hold.status == "converted":
        raise errors.InvalidState("the hold was checked out; cancel the order instead")
    await _end_hold(svc, hold, "released", "cancelled")


async def expire_holds(svc: Services, limit: int = 200) -> int:
    """Sweeper step: release expired holds (several processes may sweep at once)."""
    async with svc.uow() as uow:
        holds = await uow.repo.claim_expired_holds(limit)
        await uow.commit()
    for hold in holds:
        await _end_hold(svc, hold, "expired", "expired")
    return len(holds)


async def _end_hold(svc: Services, hold: Hold, status: str, reason: str) -> None:
    async with svc.uow() as uow:
        ended, change = await uow.repo.end_hold(hold.id, status)
        if ended is not None and hold.waitlist_entry_id:  # an offer that was not taken passes on
            entry = await uow.repo.entry_for_hold(hold.id)
            if entry is not None and entry.active:
                gone = entry.moved("expired") if entry.status == "offered" else replace(entry, offer_hold_id=None)
                await uow.repo.save_waitlist_entry(gone)
                if entry.status == "offered":
                    uow.emit(OfferExpired.of(gone, reason="expired" if status == "expired" else "declined"))
        offers: list[Hold] = []
        if change:
            uow.emit(SeatsReleased.of(hold.event_id, reason, change, hold_id=hold.id))
            offers = await offer_waitlist(uow, svc, hold.event_id, change)
        await uow.commit()
    if change:
        metrics.HOLDS_ENDED.labels(reason).inc()
    if hold.seats:
        await best_effort(hold.event_id, svc.locks.settle(hold.event_id, change.seats, hold_id=hold.id,
                                                           unlock=hold.seats))
    await lock_offers(svc, offers)


async def create_promo_code(cmd: commands.CreatePromoCode, svc: Services) -> PromoCode:
    async with svc.uow() as uow:
        event = await _owned_event(uow, cmd.actor, cmd.event_id)
        if cmd.sections is not None:
            unknown = sorted(set(cmd.sections) - {sec.code for sec in event.venue.layout.sections})
            if unknown:
                raise errors.ValidationError("unknown sections", {"sections": f"not in the venue: {unknown}"})
        promo = PromoCode(new_id(), event.id, cmd.code, cmd.percent_off, cmd.amount_off, cmd.max_uses,
                          valid_from=cmd.valid_from, valid_until=cmd.valid_until,
                          sections=tuple(cmd.sections) if cmd.sections is not None else None)
        if not await uow.repo.add_promo_code(promo):
            raise errors.InvalidState("the event already has this promo code", {"code": cmd.code})
        uow.emit(PromoCodeCreated.of(promo))
        await uow.commit()
    return promo


# --- waitlist (buyers) --------------------------------------------------------------------
async def join_waitlist(cmd: commands.JoinWaitlist, svc: Services) -> tuple[WaitlistEntry, int]:
    """FIFO: the ticket comes from the event row (under its lock), the database refuses a second active entry."""
    require_role(cmd.actor, "buyer")
    sale = await svc.catalog.get(cmd.event_id)
    if sale.status != "on_sale":
        raise errors.EventNotOnSale(f"the event is {sale.status}", {"status": sale.status})
    seat_ids, ga_section = waitlist_scope(sale, cmd.section)
    async with svc.uow() as uow:
        free = await uow.repo.available_places(cmd.event_id, seat_ids, ga_section)
        if free >= cmd.quantity:
            raise errors.SeatsAvailable("enough seats are on sale: hold them instead",
                                        {"available": free, "hint": f"POST /api/v1/events/{cmd.event_id}/holds"})
        entry, position = await uow.repo.add_waitlist_entry(new_id(), cmd.event_id, cmd.actor.user_id, cmd.section,
                                                            cmd.quantity)
        if entry is None:
            raise errors.AlreadyWaiting("you are already on this event's waitlist", {"event_id": cmd.event_id})
        uow.emit(WaitlistJoined.of(entry))
        await uow.commit()
    metrics.WAITLIST.labels("joined").inc()
    return entry, position


async def leave_waitlist(cmd: commands.LeaveWaitlist, svc: Services) -> None:
    """Leaving twice is harmless. An offer (or seats gathered for one) goes to the next in line."""
    require_role(cmd.actor, "buyer")
    offers: list[Hold] = []
    released: tuple[Hold | None, InventoryChange] = (None, InventoryChange())
    async with svc.uow() as uow:
        entry = await uow.repo.get_waitlist_entry(cmd.entry_id)
        if entry is None:
            raise errors.NotFound("no such waitlist entry")
        entry.ensure_owned_by(cmd.actor.user_id)
        if not entry.active:
            return
        left = entry.moved("left")
        await uow.repo.save_waitlist_entry(left)
        uow.emit(WaitlistLeft.of(left))
        if entry.offer_hold_id:
            released = await uow.repo.end_hold(entry.offer_hold_id, "released")
            if released[1]:
                uow.emit(SeatsReleased.of(entry.event_id, "cancelled", released[1], hold_id=entry.offer_hold_id))
                offers = await offer_waitlist(uow, svc, entry.event_id, released[1])
        await uow.commit()
    metrics.WAITLIST.labels("left").inc()
    hold, change = released
    if hold is not None and hold.seats:
        await best_effort(hold.event_id, svc.locks.settle(hold.event_id, change.seats, hold_id=hold.id,
                                                           unlock=hold.seats))
    await lock_offers(svc, offers)


HANDLERS: dict[type[commands.Command], Callable[[Any, Services], Awaitable[Any]]] = {
    commands.Register: register,
    commands.IssueToken: issue_token,
    commands.RefreshToken: refresh_token,
    commands.Logout: logout,
    commands.SetUserRole: set_user_role,
    commands.DisableUser: disable_user,
    commands.UpdatePreferences: update_preferences,
    commands.MarkNotificationsRead: mark_notifications_read,
    commands.CreateVenue: create_venue,
    commands.CreateEvent: create_event,
    commands.UpdateEvent: update_event,
    commands.PublishEvent: publish_event,
    commands.CancelEvent: cancel_event,
    commands.CreateHold: create_hold,
    commands.ReleaseHold: release_hold,
    commands.JoinQueue: waiting_room.join_queue,
    commands.Checkout: orders.checkout,
    commands.CancelOrder: orders.cancel_order,
    commands.JoinWaitlist: join_waitlist,
    commands.LeaveWaitlist: leave_waitlist,
    commands.RecordPaymentWebhook: orders.payment_webhook,
    commands.CreatePromoCode: create_promo_code,
    commands.CreateScanner: tickets.create_scanner,
    commands.CheckIn: tickets.check_in,
    commands.CheckInBatch: tickets.check_in_batch,
    commands.CheckinKey: tickets.checkin_key,
}


async def handle(cmd: commands.Command, svc: Services, attempts: int = 3) -> Any:
    """The message bus, reduced to what this service needs: dispatch a command to its handler, and
    run it again (at once, up to ``attempts`` runs in all) when PostgreSQL broke a deadlock (handlers undo their
    Redis side on failure). The first run is a plain call: building a tenacity retrier costs ~40 µs of CPU, which
    every hold would pay; only a command that hit a conflict does."""
    handler = HANDLERS[type(cmd)]
    try:
        return await handler(cmd, svc)
    except TransientConflict:
        if attempts <= 1:
            raise
        log.info("transaction_retried", command=type(cmd).__name__, attempt=1)
    retrying = tenacity.AsyncRetrying(
        retry=tenacity.retry_if_exception_type(TransientConflict), stop=tenacity.stop_after_attempt(attempts - 1),
        reraise=True, before_sleep=lambda st: log.info("transaction_retried", command=type(cmd).__name__,
                                                        attempt=st.attempt_number + 1))
    return await retrying(handler, cmd, svc)
