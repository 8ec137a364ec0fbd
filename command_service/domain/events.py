"""Domain events: what the write side tells the world, through the transactional outbox.

Every event is stored as one ``outbox`` row whose ``payload`` is the envelope built by
contracts/events.py, which holds the one typed model of every payload (documented, and versioned,
in command_service/EVENTS.md). These classes only map domain objects to those payloads.
Inventory events carry absolute post-change states with per-row versions, so a projector can
apply them idempotently and in any order per seat / GA section.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

from contracts import events as contract
from contracts.vocabulary import RELEASE_REASONS
from command_service.domain.model import (Event, Hold, InventoryChange, Order, PromoCode, Ticket, User, Venue,
                                          WaitlistEntry, iso,
                                          new_id, utcnow)



@dataclass(frozen=True)
class DomainEvent:
    aggregate_id: str
    data: dict[str, Any]
    id: str = field(default_factory=new_id)
    occurred_at: datetime = field(default_factory=utcnow)

    schema_version: ClassVar[int] = contract.SCHEMA_VERSION

    @property
    def type(self) -> str:
        return type(self).__name__

    @property
    def aggregate_type(self) -> str:  # everything about one event shares its Kafka key
        return contract.AGGREGATE_TYPES[self.type]

    def envelope(self) -> dict[str, Any]:
        return contract.envelope(self.type, self.aggregate_id, self.data, id=self.id,
                                 occurred_at=iso(self.occurred_at))


class UserRegistered(DomainEvent):
    @classmethod
    def of(cls, user: User) -> UserRegistered:
        return cls(user.id, user.document())


class UserUpdated(DomainEvent):
    """An admin changed the user's role or disabled the account (the whole document, with its version)."""

    @classmethod
    def of(cls, user: User) -> UserUpdated:
        return cls(user.id, user.document())


class VenueCreated(DomainEvent):

    @classmethod
    def of(cls, venue: Venue) -> VenueCreated:
        return cls(venue.id, {**venue.to_json(), "organizer_id": venue.organizer_id})


class EventCreated(DomainEvent):
    @classmethod
    def of(cls, event: Event) -> EventCreated:
        # Every seat starts available at version 1, every GA section empty at version 1. The seats are not
        # listed: readers derive them from the sections' rows (a list would grow the message ~30 bytes a seat).
        return cls(event.id, event.document())


class EventUpdated(DomainEvent):
    @classmethod
    def of(cls, event: Event, changed: list[str]) -> EventUpdated:
        return cls(event.id, {**event.document(), "changed": changed})


class EventPublished(DomainEvent):
    @classmethod
    def of(cls, event: Event) -> EventPublished:
        return cls(event.id, {"status": event.status, "version": event.version, "updated_at": iso(event.updated_at)})


class EventCancelled(DomainEvent):
    @classmethod
    def of(cls, event: Event) -> EventCancelled:
        return cls(event.id, {"status": event.status, "version": event.version, "updated_at": iso(event.updated_at)})


class PromoCodeCreated(DomainEvent):
    @classmethod
    def of(cls, promo: PromoCode) -> PromoCodeCreated:
        return cls(promo.event_id, {k: v for k, v in promo.to_json().items() if k != "uses"})


class SeatsHeld(DomainEvent):
    @classmethod
    def of(cls, hold: Hold, change: InventoryChange) -> SeatsHeld:
        return cls(hold.event_id, {"hold": hold.to_json(), **change.to_json()})


class SeatsReleased(DomainEvent):
    @classmethod
    def of(cls, event_id: str, reason: str, change: InventoryChange, *, hold_id: str | None = None,
           order_id: str | None = None) -> SeatsReleased:
        assert reason in RELEASE_REASONS, reason
        return cls(event_id, {"reason": reason, "hold_id": hold_id, "order_id": order_id, **change.to_json()})


class OrderConfirmed(DomainEvent):
    @classmethod
    def of(cls, order: Order, change: InventoryChange) -> OrderConfirmed:
        return cls(order.event_id, {"order": order.to_json(), **change.to_json()})


class OrderCancelled(DomainEvent):
    @classmethod
    def of(cls, order: Order, reason: str) -> OrderCancelled:
        return cls(order.event_id, {"order": order.to_json(), "reason": reason})


class _OrderChange(DomainEvent):
    @classmethod
    def of(cls, order: Order) -> _OrderChange:
        return cls(order.event_id, {"order": order.to_json()})


class OrderPlaced(_OrderChange):
    """A paid order waits for its payment; its seats stay held (no inventory moves)."""


class OrderPaymentFailed(_OrderChange):
    """The payment failed or was cancelled; the inventory comes back in a SeatsReleased of the same transaction."""


class OrderPaymentSettled(_OrderChange):
    """The payment of an order that no longer waited for it settled (its final status, a new version)."""


class RefundUpdated(_OrderChange):
    """The order's refund settled (succeeded or failed)."""


class TicketsIssued(DomainEvent):
    """A confirmed order's tickets, in its confirming transaction."""

    @classmethod
    def of(cls, order: Order, tickets: list[Ticket]) -> TicketsIssued:
        return cls(order.event_id, {"order_id": order.id, "tickets": [t.to_json() for t in tickets]})


class TicketsVoided(DomainEvent):
    """A cancelled order's tickets are void (each with its new version)."""

    @classmethod
    def of(cls, event_id: str, order_id: str | None, tickets: list[Ticket]) -> TicketsVoided:
        return cls(event_id, {"order_id": order_id, "tickets": [t.to_json() for t in tickets]})


class TicketCheckedIn(DomainEvent):
    """A ticket was admitted at the door (once)."""

    @classmethod
    def of(cls, ticket: Ticket, scanner_id: str) -> TicketCheckedIn:
        return cls(ticket.event_id, {"ticket": ticket.to_json(), "scanner_id": scanner_id})


# --- waitlist: every event carries the entry's absolute state after the change (version-guarded) ------------
class WaitlistEvent(DomainEvent):
    @classmethod
    def of(cls, entry: WaitlistEntry, **extra: Any) -> WaitlistEvent:
        return cls(entry.event_id, {"entry": entry.to_json(), **extra})


class WaitlistJoined(WaitlistEvent):
    pass


class WaitlistOffered(WaitlistEvent):
    pass


class OfferExpired(WaitlistEvent):
    """``reason``: expired (the TTL ran out) or declined (the buyer released the offer hold)."""


class WaitlistConverted(WaitlistEvent):
    pass


class WaitlistLeft(WaitlistEvent):
    pass


# --- notifications: what the notifier (projectors/notifier.py) is told beyond the events above ---------------
class NotificationsRead(DomainEvent):
    """A user read one of their notifications, or (``notification_id`` None) all of them so far."""

    @classmethod
    def of(cls, user_id: str, notification_id: str | None) -> NotificationsRead:
        data = {"user_id": user_id, "read_at": iso(utcnow())}
        return cls(user_id, data if notification_id is None else {**data, "notification_id": notification_id})


class HolderNotice(DomainEvent):
    """One ticket holder is to be told about their event: a reminder, or its time changed."""

    @classmethod
    def of(cls, notice: str, event: dict[str, Any], buyer_id: str, tickets: int,
           previous: dict[str, Any] | None = None) -> HolderNotice:
        """``event``: id, title, starts_at, ends_at, version (a row or Event fields); ``previous``: the times
        before a change (starts_at, ends_at)."""
        data = {"event_id": str(event["id"]), "buyer_id": buyer_id, "notice": notice,
                "event_version": event["version"], "title": event["title"], "starts_at": iso(event["starts_at"]),
                "tickets": tickets}
        if event.get("ends_at") is not None:
            data["ends_at"] = iso(event["ends_at"])
        for k, v in (previous or {}).items():
            if v is not None:
                data[f"previous_{k}"] = iso(v)
        return cls(str(event["id"]), data)


# --- the waiting room (issue 16) -----------------------------------------------------------------------------
def queue_entry(row: dict[str, Any]) -> dict[str, Any]:
    out = {"id": str(row["id"]), "buyer_id": str(row["buyer_id"]), "pre_open": row["pre_open"], "seq": row["seq"],
           "joined_at": iso(row["joined_at"])}
    if row.get("admission_expires_at") is not None:
        out["admission_expires_at"] = iso(row["admission_expires_at"])
    return out


class QueueJoined(DomainEvent):
    @classmethod
    def of(cls, event_id: str, row: dict[str, Any]) -> QueueJoined:
        return cls(event_id, {"event_id": event_id, "entry": queue_entry(row)})


class QueueAdmitted(DomainEvent):
    @classmethod
    def of(cls, event_id: str, rows: list[dict[str, Any]]) -> QueueAdmitted:
        return cls(event_id, {"event_id": event_id, "entries": [queue_entry(r) for r in rows]})
