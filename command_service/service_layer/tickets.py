"""Tickets, scanners and check-in (issue 14; CONTRACT v2 "Tickets and check-in").

* ``issue`` gives a confirmed order one signed ticket per seat or GA place, in the confirming transaction
  (orders.py calls it wherever an order becomes confirmed); ``void`` voids a cancelled order's tickets.
* ``create_scanner``: an organizer's door credential for one event, a ``scanner`` token valid until the event ends.
* ``check_in``: verify the code's signature (with the key the code names), then one conditional UPDATE: of any
  number of concurrent scans of a ticket, from any device or upload, exactly one admits it.
* ``check_in_batch``: scans made offline, each admitted the same way (in the order they were scanned).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog

from common.auth import Principal, encode_token
from command_service import metrics
from command_service.domain import commands, errors
from command_service.domain.events import TicketCheckedIn, TicketsIssued, TicketsVoided
from command_service.domain.model import Order, Scanner, Ticket, new_id, require_owner, require_role, ticket_places, utcnow
from command_service.service_layer.services import Services
from command_service.service_layer.unit_of_work import UnitOfWork
from contracts import tickets as codes

log = structlog.get_logger("tickets")
SCANNER_GRACE = timedelta(hours=6)  # an event without ends_at: its scanners work this long after it starts


async def issue(uow: UnitOfWork, svc: Services, order: Order) -> list[Ticket]:
    key_id, key = await svc.ticket_keys.signing_key(uow.repo, order.event_id)
    tickets = []
    for seat, section in ticket_places(order):
        tid = new_id()
        tickets.append(Ticket(tid, order.id, order.event_id, order.buyer_id, seat, section,
                              codes.sign(key, key_id, tid, order.event_id)))
    await uow.repo.add_tickets(tickets)
    uow.emit(TicketsIssued.of(order, tickets))
    metrics.TICKETS.labels("issued").inc(len(tickets))
    return tickets


async def void(uow: UnitOfWork, order: Order) -> None:
    voided = await uow.repo.void_tickets(order.id)
    if voided:
        uow.emit(TicketsVoided.of(order.event_id, order.id, voided))
        metrics.TICKETS.labels("voided").inc(len(voided))


async def void_event(uow: UnitOfWork, event_id: str, chunk: int = 1000) -> None:
    voided = await uow.repo.void_event_tickets(event_id)
    for i in range(0, len(voided), chunk):
        uow.emit(TicketsVoided.of(event_id, None, voided[i:i + chunk]))
    metrics.TICKETS.labels("voided").inc(len(voided))


# --- scanners -------------------------------------------------------------------------------------------------
async def create_scanner(cmd: commands.CreateScanner, svc: Services) -> tuple[Scanner, str]:
    require_role(cmd.actor, "organizer")
    async with svc.uow() as uow:
        event = await uow.repo.get_event(cmd.event_id)
        if event is None:
            raise errors.NotFound("no such event")
        require_owner(cmd.actor, event.organizer_id)
        expires_at = event.ends_at or event.starts_at + SCANNER_GRACE
        if expires_at <= utcnow():
            raise errors.InvalidState("the event is over: its doors are closed", {"ends_at": expires_at.isoformat()})
        scanner = Scanner(new_id(), event.id, cmd.actor.user_id, cmd.name, expires_at)
        await uow.repo.add_scanner(scanner)
        await uow.commit()
    ttl = int((expires_at - utcnow()).total_seconds())
    return scanner, encode_token(scanner.id, "scanner", svc.settings.jwt_secret, ttl, event_id=event.id)


async def _door(svc: Services, actor: Principal, event_id: str) -> None:
    """The event's own scanners and its organizer may check in (and read its key)."""
    if actor.scans_for(event_id):
        return
    if actor.role == "scanner":
        raise errors.Forbidden("this scanner is for another event")
    require_role(actor, "organizer")
    async with svc.uow() as uow:
        owner = await uow.repo.event_organizer(event_id)
    if owner is None:
        raise errors.NotFound("no such event")
    require_owner(actor, owner)


async def checkin_key(cmd: commands.CheckinKey, svc: Services) -> dict:
    await _door(svc, cmd.actor, cmd.event_id)
    async with svc.uow() as uow:
        key_id, key = await svc.ticket_keys.signing_key(uow.repo, cmd.event_id)
        await uow.commit()
    return {"key_id": key_id, "algorithm": codes.ALGORITHM, "public_key": codes.public_key_b64(key.public_key())}


# --- check-in -------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Admission:
    result: str  # checked_in | already_checked_in | void | wrong_event | invalid
    ticket: Ticket | None = None
    ticket_id: str | None = None
    checked_in_at: datetime | None = None


async def _admit(uow: UnitOfWork, svc: Services, event_id: str, code: str, by: str, at: datetime) -> Admission:
    try:
        claim = codes.read(code)
        key = await svc.ticket_keys.public_key(uow.repo, claim.event_id, claim.key_id)
        if key is None:
            raise codes.BadCode("no such key")
        codes.verify(code, key)
    except codes.BadCode:
        return Admission("invalid")
    if claim.event_id != event_id:
        return Admission("wrong_event", ticket_id=claim.ticket_id)
    ticket = await uow.repo.check_in(claim.ticket_id, event_id, by, at)
    if ticket is not None:
        uow.emit(TicketCheckedIn.of(ticket, by))
        return Admission("checked_in", ticket, claim.ticket_id, ticket.checked_in_at)
    found = await uow.repo.get_ticket(claim.ticket_id)
    if found is None:  # signed by the event's key, never issued: cannot happen short of a stolen key
        return Admission("invalid", ticket_id=claim.ticket_id)
    if found.status == "void":
        return Admission("void", found, claim.ticket_id)
    return Admission("already_checked_in", found, claim.ticket_id, found.checked_in_at)


REFUSALS = {"invalid": errors.InvalidTicket, "wrong_event": errors.WrongEvent, "void": errors.TicketVoid,
            "already_checked_in": errors.AlreadyCheckedIn}


async def check_in(cmd: commands.CheckIn, svc: Services) -> Ticket:
    await _door(svc, cmd.actor, cmd.event_id)
    async with svc.uow() as uow:
        a = await _admit(uow, svc, cmd.event_id, cmd.code, cmd.actor.user_id, utcnow())
        await uow.commit()
    metrics.CHECKINS.labels(a.result).inc()
    if a.result != "checked_in":
        details = {"ticket_id": a.ticket_id} if a.ticket_id else {}
        if a.checked_in_at is not None:
            details["checked_in_at"] = a.ticket.to_json()["checked_in_at"]
        raise REFUSALS[a.result](_MESSAGES[a.result], details)
    return a.ticket


_MESSAGES = {"invalid": "not a ticket of ours: its signature does not verify",
             "wrong_event": "this ticket is for another event", "void": "this ticket was voided",
             "already_checked_in": "this ticket was already checked in"}


async def check_in_batch(cmd: commands.CheckInBatch, svc: Services) -> list[dict]:
    """Offline scans, uploaded later: in the order they were scanned, each admitted at most once across every
    device and upload (a later duplicate is reported, never counted). One transaction for the upload."""
    await _door(svc, cmd.actor, cmd.event_id)
    now = utcnow()
    order = sorted(range(len(cmd.scans)), key=lambda i: cmd.scans[i].scanned_at)
    results: list[dict | None] = [None] * len(cmd.scans)
    async with svc.uow() as uow:
        for i in order:
            scan = cmd.scans[i]
            a = await _admit(uow, svc, cmd.event_id, scan.code, cmd.actor.user_id, min(scan.scanned_at, now))
            results[i] = {"ticket_id": a.ticket_id, "result": a.result}
            metrics.CHECKINS.labels(a.result).inc()
        await uow.commit()
    return results
