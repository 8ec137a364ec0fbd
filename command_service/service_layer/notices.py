"""What ticket holders are told about their event (issue 15): reminders, and a change of its time.

The recipients are decided here, in the transaction that decides the notice, from the ``tickets`` table: one
``HolderNotice`` outbox message per holder. The notifier (projectors/notifier.py) turns each into a mail and an
inbox entry, once per cause and recipient.

Reminders: the sweeper of every command-service process calls :func:`send_due_reminders`. An on-sale event is
due once ``starts_at - EVENTLY_REMINDER_HOURS`` has passed and ``events.reminded_for`` is not its ``starts_at``;
the rows are claimed with ``FOR UPDATE SKIP LOCKED`` and ``reminded_for`` is set in the same transaction as the
notices, so concurrent sweepers remind each event once. An event moved to a new time (PATCH ``starts_at``) is
due again at that time; one moved before its reminder was due is reminded only of the new time. The holders are
those holding tickets when it is due, minus those who turned reminders off (PATCH /me/preferences); someone who
buys later has their confirmation mail.
"""
from __future__ import annotations

from typing import Any, Callable

from command_service.domain.events import HolderNotice
from command_service.domain.model import Event
from command_service.service_layer.services import Services
from command_service.service_layer.unit_of_work import UnitOfWork

REMINDER_BATCH = 20  # events per transaction


async def sweep_reminders(svc: Services) -> int:
    """The sweeper's step (every command-service process)."""
    return await send_due_reminders(svc.uow, svc.settings.reminder_hours)


async def send_due_reminders(uow_factory: Callable[[], UnitOfWork], hours: float) -> int:
    """Remind the holders of every event now due (see the module's doc); returns the events reminded."""
    within_s = hours * 3600
    async with uow_factory() as uow:
        due = await uow.repo.claim_due_reminders(within_s, REMINDER_BATCH)
        for event in due:
            holders = await uow.repo.ticket_holders(str(event["id"]), reminders=True)
            uow.emit(*(HolderNotice.of("reminder", event, buyer, n) for buyer, n in holders))
            uow.repo.set_reminded(str(event["id"]), event["starts_at"])
        await uow.commit()
    return len(due)


async def tell_time_changed(uow: UnitOfWork, event: Event, before: dict[str, Any]) -> None:
    """In the edit's transaction: every holder of an on-sale event whose time changed is told (not marketing
    mail: it cannot be turned off)."""
    if event.status != "on_sale":
        return
    doc = {"id": event.id, "title": event.title, "starts_at": event.starts_at, "ends_at": event.ends_at,
           "version": event.version}
    for buyer, n in await uow.repo.ticket_holders(event.id):
        uow.emit(HolderNotice.of("changed", doc, buyer, n, previous=before))
