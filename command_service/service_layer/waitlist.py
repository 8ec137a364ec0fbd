"""The waitlist policy: who gets the inventory that comes back, and how seats are gathered for an offer.

Called by the handlers that return inventory (release, expiry, order and event cancellation, leaving the
waitlist), inside the transaction that returned it.
"""
from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from command_service import metrics
from command_service.domain import errors
from command_service.domain.events import SeatsHeld, WaitlistOffered
from command_service.domain.model import Hold, InventoryChange, SaleInfo, new_id, utcnow
from command_service.domain.waitlist import plan_offers
from command_service.service_layer.services import Services, best_effort
from command_service.service_layer.unit_of_work import TransientConflict, UnitOfWork


PENDING_OFFER = timedelta(days=30)  # a seated offer still gathering seats: held for the buyer, clock not running


def waitlist_scope(sale: SaleInfo, section: str | None) -> tuple[list[str] | None, str | None]:
    """(seat ids, None) for a seated entry, or (None, GA section code)."""
    if section is None:
        seats = sale.layout.seat_ids()
        if not seats:
            raise errors.ValidationError("this event has only general admission", {"section": "name a GA section"})
        return seats, None
    s = sale.layout.section(section)
    if s is None:
        raise errors.ValidationError("unknown section", {"section": section})
    return (None, section) if s.kind == "ga" else (s.seat_ids(), None)


async def offer_waitlist(uow: UnitOfWork, svc: Services, event_id: str, freed: InventoryChange) -> list[Hold]:
    """Inside the transaction that returned inventory: offer it to the first waiting entries, FIFO, as real holds.

    GA: an entry is offered its whole quantity when it fits; otherwise that section's queue waits (nobody
    behind jumps the head). Seated: an entry takes the seats that came back in its scope; when it asked for
    more, they stay held on its pending offer (not back on sale) until enough have come back, and only then
    does the offer start (WaitlistOffered, TTL). Seats nobody in line wants stay on general sale.
    Returns the holds whose seat locks Redis should record after the commit."""
    seats = [c.seat_id for c in freed.seats if c.status == "available"]
    free_ga = {g.section: g.capacity - g.held - g.sold for g in freed.ga_sections}
    if not seats and not any(n > 0 for n in free_ga.values()):
        return []
    entries = await uow.repo.waiting_entries(event_id)
    if not entries:
        return []
    sale = await svc.catalog.get(event_id)
    pending: dict[str, Hold] = {}  # seated entries still gathering seats: their pending offer hold
    for e in entries if seats else ():  # only freed seats can grow a pending offer
        if e.offer_hold_id:
            h = await uow.repo.get_hold(e.offer_hold_id)
            if h is not None and h.status == "active":
                pending[e.id] = h
    claims = plan_offers(entries, sale.layout, seats, free_ga,
                         gathered=lambda e: len(pending[e.id].seats or ()) if e.id in pending else 0)
    ttl = timedelta(seconds=svc.settings.waitlist_offer_ttl_seconds)
    terms = None  # the event's prices: from the first reserve, or read when only a pending offer grows
    held: list[Hold] = []
    blocked: set[str] = set()
    for claim in claims:
        e = claim.entry
        have = 0  # seats already gathered on the entry's pending offer
        if claim.ga_section is not None:
            if claim.ga_section in blocked:
                continue
            hold = Hold(new_id(), event_id, e.buyer_id, None, e.section, e.quantity, utcnow() + ttl,
                        waitlist_entry_id=e.id)
            change, terms = await uow.repo.reserve(hold)
            if not hold.covered_by(change):  # PostgreSQL disagrees with the plan: that queue waits
                blocked.add(claim.ga_section)
                continue
            hold = hold.priced(terms)
            await uow.repo.add_hold(hold)
        else:
            take = list(claim.seats)
            prior = pending.get(e.id)
            have = len(prior.seats or ()) if prior is not None else 0
            if have:
                terms = terms or await uow.repo.sale_terms(event_id)
                extra = Hold(prior.id, event_id, e.buyer_id, tuple(take), None, len(take), prior.expires_at)
                hold, change = await uow.repo.extend_hold(prior, take, extra.priced(terms).total)
                if hold is None:  # cannot happen while we hold the returned rows; never leave half a change
                    raise TransientConflict(f"pending offer {prior.id} could not take {take}")
            else:
                hold = Hold(new_id(), event_id, e.buyer_id, tuple(take), None, len(take), utcnow() + ttl,
                            waitlist_entry_id=e.id)
                change, terms = await uow.repo.reserve(hold)
                got = tuple(c.seat_id for c in change.seats)
                if not got:
                    continue
                expires = hold.expires_at if len(got) >= e.quantity else utcnow() + PENDING_OFFER
                hold = replace(hold, seats=got, quantity=len(got), expires_at=expires).priced(terms)
                await uow.repo.add_hold(hold)
        uow.emit(SeatsHeld.of(hold, change))
        held.append(hold)
        if hold.quantity >= e.quantity:
            if have:  # a pending offer just got its last seats: its clock starts now
                hold = replace(hold, expires_at=utcnow() + ttl)
                await uow.repo.set_hold_expiry(hold.id, hold.expires_at)
            offered = e.offered(hold.id, hold.expires_at)
            await uow.repo.save_waitlist_entry(offered)
            uow.emit(WaitlistOffered.of(offered))
            metrics.WAITLIST.labels("offered").inc()
        else:  # still gathering seats for this entry: nothing behind it in this scope can go first
            await uow.repo.save_waitlist_entry(replace(e, offer_hold_id=hold.id))
    return held


async def lock_offers(svc: Services, holds: list[Hold]) -> None:
    """After the commit: record the offered seats' locks under their new hold (PostgreSQL already decided)."""
    ttl_ms = int(svc.settings.waitlist_offer_ttl_seconds * 1000)
    for h in holds:
        if h.seats:
            await best_effort(h.event_id, svc.locks.acquire(h.event_id, h.seats, h.id, ttl_ms))
