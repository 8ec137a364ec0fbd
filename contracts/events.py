"""The outbox envelope and every event payload (schema v1), as typed models: the one definition.

The command side builds every envelope through :func:`envelope` (command_service/domain/events.py maps domain
objects to these payloads); the projectors check every message with :func:`validate` before folding it. A
message that fails is poison (dead-letter topic). command_service/EVENTS.md documents the same shapes in prose;
tests/unit/test_contracts.py checks that its table and these models name the same fields.

Wire rules (unchanged since v1):
- times are ISO 8601 UTC strings with ``Z`` (kept as strings, so a round trip never changes their bytes);
- Debezium's JSON expansion drops ``null`` fields and empty arrays, so every optional field has a default;
- nested documents (event document, hold, order, entry) allow extra fields: a newer writer may add some, and an
  older reader must still apply the message (a change that is not backward compatible bumps ``schema_version``).
"""
from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StrictInt, TypeAdapter, ValidationError, model_validator

from contracts.seats import SEAT_ID_PATTERN
from contracts.vocabulary import (EventStatus, HolderNoticeKind, OrderStatus, PaymentStatus, RefundStatus, ReleaseReason, Role,
                                 SeatStatus, SectionKind, TicketStatus, WaitlistStatus)

SCHEMA_VERSION = 1
__all__ = ["SCHEMA_VERSION", "DATA_MODELS", "Envelope", "envelope", "validate", "ValidationError"]


def _iso(value: str) -> str:
    datetime.fromisoformat(value.replace("Z", "+00:00"))  # ValueError -> ValidationError
    return value


def _none_is_empty(value: Any) -> Any:
    return [] if value is None else value


Timestamp = Annotated[str, AfterValidator(_iso)]
SeatId = Annotated[str, Field(pattern=SEAT_ID_PATTERN)]
NonEmpty = Annotated[str, Field(min_length=1)]
T = TypeVar("T")
# Debezium's JSON expansion infers one struct per array, so a list that one element lacks arrives as null in it
# (a GA section's ``rows``): a list field reads null as empty.
List = Annotated[list[T], BeforeValidator(_none_is_empty)]


class _Open(BaseModel):
    """A nested document: typed where readers rely on it, open to fields a newer writer adds."""
    model_config = ConfigDict(extra="allow", frozen=True)


# --- inventory: absolute post-change states with per-row versions --------------------------------------------
class SeatState(_Open):
    seat_id: SeatId
    status: SeatStatus
    version: StrictInt


class GASectionState(_Open):
    section: str
    capacity: StrictInt
    held: StrictInt
    sold: StrictInt
    version: StrictInt


class _Inventory(_Open):
    seats: List[SeatState] = []
    ga_sections: List[GASectionState] = []


# --- documents ---------------------------------------------------------------------------------------------
class Row(_Open):
    label: str
    seats: StrictInt


class SectionDoc(_Open):
    code: str
    name: str = ""
    kind: SectionKind = "seated"
    capacity: StrictInt = 0
    price: StrictInt | None = None
    rows: List[Row] = []


class VenueRef(_Open):
    id: NonEmpty
    name: str
    city: str


class EventDocument(_Open):
    """An event as the command side stores it (HTTP responses carry the same document). Everything a reader
    shows is required: a document without it is poison (dead-lettered), never a half-filled catalog entry that
    the read API could not render."""
    id: NonEmpty
    organizer_id: NonEmpty
    status: EventStatus = "draft"
    title: str
    description: str | None = None
    category: str
    venue: VenueRef
    venue_id: NonEmpty
    starts_at: Timestamp
    ends_at: Timestamp | None = None
    currency: str
    prices: dict[str, StrictInt] = {}
    capacity: StrictInt = 0
    sections: List[SectionDoc] = []
    version: StrictInt = 1
    created_at: Timestamp
    updated_at: Timestamp
    # flash-sale controls (issue 16), absent when not set: holds open at sale_starts_at; a buyer's places are
    # capped at max_per_buyer; waiting_room = {admit_per_minute, admission_seconds}
    sale_starts_at: Timestamp | None = None
    max_per_buyer: StrictInt | None = None
    waiting_room: dict[str, StrictInt] | None = None


class Hold(_Open):
    id: str | None = None  # always written; no reader needs it
    event_id: str | None = None
    buyer_id: str | None = None
    seats: list[SeatId] | None = None  # or section + quantity
    section: str | None = None
    quantity: StrictInt | None = None
    total: StrictInt | None = None
    currency: str | None = None
    status: str | None = None
    expires_at: Timestamp | None = None
    waitlist_entry_id: str | None = None  # only on a waitlist offer


class Payment(_Open):
    """A paid order's payment at the provider (CONTRACT v2 "Orders, payments and refunds")."""
    id: str
    provider: str
    status: PaymentStatus
    checkout_url: str | None = None
    expires_at: Timestamp  # the payment window: the seats stay held for the buyer until then


class Refund(_Open):
    status: RefundStatus
    amount: StrictInt
    reason: str  # cancelled_by_buyer | cancelled_by_organizer | cancelled_by_admin | event_cancelled | seats_unavailable


class Order(_Open):
    id: str
    event_id: str
    buyer_id: str
    hold_id: str | None = None
    status: OrderStatus
    seats: list[SeatId] | None = None  # or section + quantity
    section: str | None = None
    quantity: StrictInt | None = None
    subtotal: StrictInt | None = None  # before the promo code's discount; absent in orders written before 2026-12-03
    discount: StrictInt = 0
    total: StrictInt
    currency: str | None = None
    created_at: Timestamp
    cancelled_at: Timestamp | None = None
    # Since payments (2026-12-05): every state of an order is a new version (newest wins in the read model; an
    # order written before has none, and its status ranks instead), a paid order carries its payment, a cancelled
    # paid one its refund, and a confirmed one when it was confirmed (its revenue counts from then).
    version: StrictInt | None = None
    confirmed_at: Timestamp | None = None
    payment: Payment | None = None
    refund: Refund | None = None

    @model_validator(mode="after")
    def _complete(self) -> Order:
        if not self.seats and (self.section is None or self.quantity is None):
            raise ValueError("order needs seats or section + quantity")
        if self.status == "cancelled" and self.cancelled_at is None:
            raise ValueError("cancelled order without cancelled_at")
        return self


class Offer(_Open):
    hold_id: str
    expires_at: Timestamp


class WaitlistEntry(_Open):
    id: NonEmpty
    event_id: NonEmpty
    buyer_id: NonEmpty
    section: str | None = None  # None: any seated seat
    quantity: StrictInt
    seq: StrictInt                # the FIFO ticket, unique and increasing per event
    status: WaitlistStatus
    offer: Offer | None = None
    version: StrictInt
    created_at: Timestamp
    updated_at: Timestamp

    @model_validator(mode="after")
    def _offer(self) -> WaitlistEntry:
        if self.status == "offered" and self.offer is None:
            raise ValueError("an offered entry needs its offer")
        return self


# --- event payloads (``data``) -------------------------------------------------------------------------------
class Preferences(_Open):
    """What mail a user takes besides order, payment and refund mail (which cannot be turned off)."""
    reminders: bool = True
    marketing: bool = True


class UserRegistered(_Open):
    """A user account (never the password hash): the users read model's document."""
    id: NonEmpty
    email: str
    name: str
    role: Role
    disabled: bool = False
    preferences: Preferences = Preferences()
    version: StrictInt
    created_at: Timestamp
    updated_at: Timestamp


class UserUpdated(UserRegistered):
    pass


class NotificationsRead(_Open):
    """A user read one notification (``notification_id``) or all of them (``notification_id`` absent): every
    notification of theirs created at or before ``read_at`` then."""
    user_id: NonEmpty
    notification_id: str | None = None
    read_at: Timestamp


class HolderNotice(_Open):
    """One ticket holder is to be told about their event: ``reminder`` (EVENTLY_REMINDER_HOURS before it starts;
    ``starts_at`` is the time reminded of) or ``changed`` (its time moved: ``previous_starts_at``). One message per
    holder, written in the transaction that decided it, so the recipients are exactly the holders then."""
    event_id: NonEmpty
    buyer_id: NonEmpty
    notice: HolderNoticeKind
    event_version: StrictInt
    title: str
    starts_at: Timestamp
    ends_at: Timestamp | None = None
    previous_starts_at: Timestamp | None = None
    previous_ends_at: Timestamp | None = None
    tickets: StrictInt


class VenueCreated(_Open):
    id: str | None = None
    organizer_id: str | None = None
    name: str
    city: str | None = None
    address: str | None = None
    capacity: StrictInt = 0
    sections: List[SectionDoc] = []


class EventCreated(EventDocument):
    # Written until 2026-12 (every seat id, in layout order); now absent: the seats are the sections' rows
    # (label, seats numbered from 1), which bound the message by the layout (MAX_LAYOUT_BYTES), not the seat count.
    seats: List[SeatId] = []


class EventUpdated(EventDocument):
    changed: List[str] = []


class _StatusChange(_Open):
    status: EventStatus
    version: StrictInt
    updated_at: Timestamp | None = None


class EventPublished(_StatusChange):
    pass


class EventCancelled(_StatusChange):
    pass


class SeatsHeld(_Inventory):
    hold: Hold


class SeatsReleased(_Inventory):
    reason: ReleaseReason
    hold_id: str | None = None
    order_id: str | None = None


class OrderConfirmed(_Inventory):
    order: Order


class OrderPlaced(_Open):
    """A paid order waits for its payment (status ``pending_payment``); its seats stay held (no inventory moves)."""
    order: Order


class OrderCancelled(_Open):
    order: Order
    reason: str = "cancelled_by_buyer"


class OrderPaymentFailed(_Open):
    """The payment failed or was cancelled (status ``payment_failed``). The seats, if still held, come back in
    the ``SeatsReleased`` (reason ``payment_failed``) of the same transaction."""
    order: Order


class OrderPaymentSettled(_Open):
    """The payment of an order that no longer waited for it (cancelled, or failed earlier) settled: its
    ``payment.status`` is now final (new version). A success there comes as RefundUpdated instead (money goes back)."""
    order: Order


class RefundUpdated(_Open):
    """A refund changed state (``order.refund``: pending -> succeeded | failed); the whole order, new version."""
    order: Order


class Ticket(_Open):
    """One seat or GA place of a confirmed order; ``code`` is signed (contracts/tickets.py). Newest version wins."""
    id: NonEmpty
    order_id: NonEmpty
    event_id: NonEmpty
    buyer_id: NonEmpty
    seat: SeatId | None = None  # or section
    section: str | None = None
    status: TicketStatus
    code: NonEmpty
    checked_in_at: Timestamp | None = None
    version: StrictInt


class TicketsIssued(_Open):
    order_id: NonEmpty
    tickets: List[Ticket]


class TicketsVoided(_Open):
    order_id: str | None = None
    tickets: List[Ticket]


class TicketCheckedIn(_Open):
    ticket: Ticket
    scanner_id: str


class _WaitlistChange(_Open):
    entry: WaitlistEntry


class WaitlistJoined(_WaitlistChange):
    pass


class WaitlistOffered(_WaitlistChange):
    pass


class OfferExpired(_WaitlistChange):
    reason: str  # expired | declined | event_cancelled


class WaitlistConverted(_WaitlistChange):
    pass


class WaitlistLeft(_WaitlistChange):
    reason: str | None = None  # event_cancelled: the entry was only waiting when its event was cancelled


class PromoCodeCreated(_Open):
    id: str
    event_id: str
    code: str
    percent_off: StrictInt | None = None
    amount_off: StrictInt | None = None
    max_uses: StrictInt
    valid_from: Timestamp | None = None
    valid_until: Timestamp | None = None
    sections: List[str] | None = None
    created_at: Timestamp


class QueueEntry(_Open):
    id: NonEmpty
    buyer_id: NonEmpty
    pre_open: bool = False  # joined before the sale opened: ordered by a random draw among those
    seq: StrictInt
    joined_at: Timestamp
    admission_expires_at: Timestamp | None = None


class QueueJoined(_Open):
    """A buyer joined the event's waiting room (one entry per buyer and event)."""
    event_id: NonEmpty
    entry: QueueEntry


class QueueAdmitted(_Open):
    """The admitter let these entries in (each may hold until its ``admission_expires_at``)."""
    event_id: NonEmpty
    entries: List[QueueEntry]


DATA_MODELS: dict[str, type[BaseModel]] = {m.__name__: m for m in (
    UserRegistered, UserUpdated, VenueCreated, EventCreated, EventUpdated, EventPublished, EventCancelled, SeatsHeld, SeatsReleased,
    OrderPlaced, OrderConfirmed, OrderCancelled, OrderPaymentFailed, OrderPaymentSettled, RefundUpdated, TicketsIssued, TicketsVoided,
    TicketCheckedIn, WaitlistJoined, WaitlistOffered, OfferExpired, WaitlistConverted, WaitlistLeft,
    PromoCodeCreated, NotificationsRead, HolderNotice, QueueJoined, QueueAdmitted)}
# Kafka topic per aggregate type: evently.<aggregatetype> (Debezium outbox router). Everything about one event
# shares aggregate type "event" and the event id as key, so it stays in commit order on one partition.
# Accounts and what their owner does to their own inbox are aggregate type "user" (key = user id).
AGGREGATE_TYPES: dict[str, str] = {name: {"VenueCreated": "venue", "UserRegistered": "user", "UserUpdated": "user",
                                          "NotificationsRead": "user"}
                                   .get(name, "event") for name in DATA_MODELS}


class Envelope(BaseModel):
    """The outbox row's ``payload``."""
    model_config = ConfigDict(extra="allow")
    id: NonEmpty
    type: str
    schema_version: StrictInt = SCHEMA_VERSION
    aggregate_id: NonEmpty
    occurred_at: Timestamp | None = None
    data: dict[str, Any]


_ENVELOPE = TypeAdapter(Envelope)


def envelope(type_: str, aggregate_id: str, data: dict[str, Any], *, id: str, occurred_at: str) -> dict[str, Any]:
    """Build a v1 envelope; ``data`` is checked against the payload model of ``type_`` (ValidationError)."""
    payload = DATA_MODELS[type_].model_validate(data)
    return {"id": id, "type": type_, "schema_version": SCHEMA_VERSION, "aggregate_id": aggregate_id,
            "occurred_at": occurred_at, "data": payload.model_dump(mode="json", exclude_unset=True)}


def validate(env: Any) -> dict[str, Any]:
    """Check a received envelope and its payload (ValueError / ValidationError when it can never be applied).

    Unknown types pass unchecked: a reader ignores what it does not know. Returns ``env`` itself."""
    if not isinstance(env, dict):
        raise ValueError("payload is not a JSON object")
    head = _ENVELOPE.validate_python(env)
    model = DATA_MODELS.get(head.type)
    if model is not None:
        if head.schema_version != SCHEMA_VERSION:
            raise ValueError(f"unsupported schema_version {head.schema_version!r} for {head.type}")
        model.model_validate(head.data)
    return env
