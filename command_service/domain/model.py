"""The write-side domain: users, venues and their layouts, events, holds, orders.

Plain dataclasses and rules only. Inventory itself (who holds or bought which seat) lives in
PostgreSQL rows that the repository updates conditionally; the domain describes those changes
as ``SeatChange`` / ``GASectionState`` values (absolute post-change state + row version).
"""
from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable

from common.auth import Principal
from command_service.domain import errors
from contracts import seats

# --- limits (also enforced by the command schemas in commands.py) -------------------------
MAX_SEATS_PER_HOLD = 10
MAX_SECTION_CAPACITY = 100_000
MAX_SECTIONS_PER_VENUE = 100
MAX_ROWS_PER_SECTION = 500
MAX_SEATS_PER_ROW = 1_000
# Keeps EventCreated (which lists every seat id) well under Kafka's 1 MB default message size.
MAX_SEATED_SEATS_PER_VENUE = 50_000
MAX_VENUE_CAPACITY = 500_000
# Every venue and event message carries the layout (sections with their rows), so its JSON is bounded: with
# the rest of an event document it stays far below Kafka's 1 MiB record limit (a record over it would stop the
# CDC pipeline on that WAL record at every restart). 256 KiB is ~6,000 rows with the longest labels.
MAX_LAYOUT_BYTES = 256 * 1024
MAX_OUTBOX_PAYLOAD_BYTES = 512 * 1024  # the outbox writer refuses any payload over this (adapters/outbox.py)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def iso(ts: datetime | None) -> str | None:
    """ISO 8601 UTC with a Z suffix (CONTRACT "Common rules")."""
    if ts is None:
        return None
    return ts.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_id() -> str:
    return str(uuid.uuid4())


# --- authorization rules ------------------------------------------------------------------
def require_role(actor: Principal, *roles: str) -> None:
    if actor.role not in roles:
        raise errors.Forbidden(f"requires role {' or '.join(roles)}")


def require_owner(actor: Principal, owner_id: str, *, admin_allowed: bool = False) -> None:
    if actor.user_id == owner_id or (admin_allowed and actor.role == "admin"):
        return
    raise errors.Forbidden("you do not own this resource")


# --- seats and layouts --------------------------------------------------------------------
@dataclass(frozen=True)
class SeatRef:
    section: str
    row: str
    number: int

    @property
    def id(self) -> str:
        return f"{self.section}-{self.row}-{self.number}"


def parse_seat_id(seat_id: str) -> SeatRef | None:
    """``<section>-<row>-<n>`` (e.g. ``A-1-7``), or None when it is not shaped like a seat id (contracts/seats.py)."""
    parts = seats.parse(seat_id)
    return SeatRef(*parts) if parts is not None else None


@dataclass(frozen=True)
class Row:
    label: str
    seats: int


@dataclass(frozen=True)
class Section:
    code: str
    name: str
    kind: str  # "seated" | "ga"
    rows: tuple[Row, ...] = ()
    ga_capacity: int = 0

    @property
    def capacity(self) -> int:
        return sum(r.seats for r in self.rows) if self.kind == "seated" else self.ga_capacity

    def seat_ids(self) -> list[str]:
        return [f"{self.code}-{r.label}-{n}" for r in self.rows for n in range(1, r.seats + 1)]

    def to_json(self) -> dict[str, Any]:
        if self.kind == "seated":
            return {"code": self.code, "name": self.name, "kind": "seated", "capacity": self.capacity,
                    "rows": [{"label": r.label, "seats": r.seats} for r in self.rows]}
        return {"code": self.code, "name": self.name, "kind": "ga", "capacity": self.capacity}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Section:
        if d["kind"] == "seated":
            return cls(d["code"], d["name"], "seated", tuple(Row(r["label"], r["seats"]) for r in d["rows"]))
        return cls(d["code"], d["name"], "ga", ga_capacity=d["capacity"])


@dataclass(frozen=True)
class Layout:
    """A venue's sections; every event at the venue gets its own inventory built from it."""

    sections: tuple[Section, ...]

    def __post_init__(self) -> None:
        codes = [s.code for s in self.sections]
        if len(set(codes)) != len(codes):
            raise errors.ValidationError("section codes must be unique", {"sections": "duplicate code"})
        for s in self.sections:
            labels = [r.label for r in s.rows]
            if len(set(labels)) != len(labels):
                raise errors.ValidationError("row labels must be unique within a section",
                                             {"sections": f"duplicate row label in section {s.code}"})
            if s.capacity > MAX_SECTION_CAPACITY:
                raise errors.ValidationError("section too large",
                                             {"sections": f"section {s.code} exceeds {MAX_SECTION_CAPACITY} places"})
        if sum(s.capacity for s in self.sections if s.kind == "seated") > MAX_SEATED_SEATS_PER_VENUE:
            raise errors.ValidationError("too many seats",
                                         {"sections": f"at most {MAX_SEATED_SEATS_PER_VENUE} seated places per venue"})
        if self.capacity > MAX_VENUE_CAPACITY:
            raise errors.ValidationError("venue too large",
                                         {"sections": f"at most {MAX_VENUE_CAPACITY} places per venue"})

    @property
    def capacity(self) -> int:
        return sum(s.capacity for s in self.sections)

    def ensure_publishable(self) -> None:
        """A new venue's layout must fit in the messages that carry it (MAX_LAYOUT_BYTES)."""
        size = len(json.dumps(self.to_json()))
        if size > MAX_LAYOUT_BYTES:
            raise errors.ValidationError("the venue layout is too large", {
                "sections": f"{size} bytes as JSON; at most {MAX_LAYOUT_BYTES} (fewer rows, or shorter labels)"})

    @property
    def codes(self) -> list[str]:
        return [s.code for s in self.sections]

    def section(self, code: str) -> Section | None:
        return next((s for s in self.sections if s.code == code), None)

    def seat_ids(self) -> list[str]:
        return [sid for s in self.sections if s.kind == "seated" for sid in s.seat_ids()]

    def ga_sections(self) -> list[Section]:
        return [s for s in self.sections if s.kind == "ga"]

    def unknown_seats(self, seat_ids: Iterable[str]) -> list[str]:
        """Seat ids that do not name a seat of this layout (malformed ones included)."""
        unknown = []
        for sid in seat_ids:
            ref = parse_seat_id(sid)
            section = self.section(ref.section) if ref else None
            row = next((r for r in section.rows if r.label == ref.row), None) if section else None
            if row is None or ref.number > row.seats:
                unknown.append(sid)
        return unknown

    def to_json(self) -> list[dict[str, Any]]:
        return [s.to_json() for s in self.sections]

    @classmethod
    def from_json(cls, sections: list[dict[str, Any]]) -> Layout:
        return cls(tuple(Section.from_json(s) for s in sections))


# --- users and venues ---------------------------------------------------------------------
@dataclass(frozen=True)
class User:
    id: str
    email: str
    name: str
    role: str
    password_hash: str
    disabled: bool = False
    version: int = 1
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)
    mail_reminders: bool = True  # order, payment and refund mail cannot be turned off (CONTRACT "Email")
    mail_marketing: bool = True

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "email": self.email, "name": self.name, "role": self.role}

    def preferences(self) -> dict[str, bool]:
        return {"reminders": self.mail_reminders, "marketing": self.mail_marketing}

    def document(self) -> dict[str, Any]:
        """What the admin sees and the users read model keeps: never the password hash."""
        return {**self.to_json(), "disabled": self.disabled, "preferences": self.preferences(),
                "version": self.version, "created_at": iso(self.created_at), "updated_at": iso(self.updated_at)}

    def document_for_admin(self) -> dict[str, Any]:
        return {**self.to_json(), "disabled": self.disabled, "created_at": iso(self.created_at)}

    def changed(self, **changes: Any) -> User:
        return replace(self, version=self.version + 1, updated_at=utcnow(), **changes)

    def ensure_active(self) -> None:
        if self.disabled:
            raise errors.Unauthenticated("this account is disabled")


@dataclass(frozen=True)
class Venue:
    id: str
    organizer_id: str
    name: str
    city: str
    address: str | None
    layout: Layout

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "city": self.city, "address": self.address,
                "capacity": self.layout.capacity, "sections": self.layout.to_json()}


# --- events -------------------------------------------------------------------------------
EDITABLE_FIELDS = ("title", "description", "category", "starts_at", "ends_at", "prices", "sale_starts_at",
                   "max_per_buyer", "waiting_room")


def check_prices(layout: Layout, prices: dict[str, int], *, partial: bool = False) -> None:
    unknown = sorted(set(prices) - set(layout.codes))
    missing = [] if partial else sorted(set(layout.codes) - set(prices))
    if unknown or missing:
        raise errors.ValidationError("prices must name exactly the venue's sections",
                                     {"prices": {"unknown_sections": unknown, "missing_sections": missing}})


def check_dates(starts_at: datetime, ends_at: datetime | None) -> None:
    if ends_at is not None and ends_at <= starts_at:
        raise errors.ValidationError("ends_at must be after starts_at", {"ends_at": "must be after starts_at"})


@dataclass
class Event:
    id: str
    organizer_id: str
    venue: Venue
    title: str
    description: str | None
    category: str
    starts_at: datetime
    ends_at: datetime | None
    currency: str
    prices: dict[str, int]
    status: str = "draft"  # draft -> on_sale -> cancelled; draft -> cancelled
    version: int = 1
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)
    # flash-sale controls (issue 16): holds open at sale_starts_at (None: at publishing); a buyer's held + sold
    # places never exceed max_per_buyer; waiting_room = {admit_per_minute, admission_seconds}: holds need admission
    sale_starts_at: datetime | None = None
    max_per_buyer: int | None = None
    waiting_room: dict[str, int] | None = None

    def __post_init__(self) -> None:
        check_prices(self.venue.layout, self.prices)
        check_dates(self.starts_at, self.ends_at)

    def update(self, changes: dict[str, Any]) -> list[str]:
        """Apply an organizer edit; returns the names of the fields that changed. Never touches inventory."""
        if self.status == "cancelled":
            raise errors.InvalidState("a cancelled event cannot be edited")
        if "prices" in changes:
            check_prices(self.venue.layout, changes["prices"], partial=True)
            changes = {**changes, "prices": {**self.prices, **changes["prices"]}}
        check_dates(changes.get("starts_at", self.starts_at), changes.get("ends_at", self.ends_at))
        changed = [k for k in EDITABLE_FIELDS if k in changes and changes[k] != getattr(self, k)]
        for k in changed:
            setattr(self, k, changes[k])
        if changed:
            self._bump()
            if self._start_room_clock():
                changed.append("sale_starts_at")
        return changed

    def _start_room_clock(self) -> bool:
        """An on-sale event with a waiting room admits from ``sale_starts_at``: without one, its sale opened now
        (at publishing, or when the room was added to a sale already open)."""
        if self.status == "on_sale" and self.waiting_room and self.sale_starts_at is None:
            self.sale_starts_at = self.updated_at
            return True
        return False

    def publish(self) -> bool:
        """Put the event on sale; False when it already is (publishing is repeatable)."""
        if self.status == "cancelled":
            raise errors.InvalidState("a cancelled event cannot be published")
        if self.status == "on_sale":
            return False
        self.status = "on_sale"
        self._bump()
        self._start_room_clock()
        return True

    def cancel(self) -> bool:
        """False when the event was already cancelled."""
        if self.status == "cancelled":
            return False
        self.status = "cancelled"
        self._bump()
        return True

    def _bump(self) -> None:
        self.version += 1
        self.updated_at = utcnow()

    def document(self) -> dict[str, Any]:
        """The full event document: HTTP responses and EventCreated/EventUpdated carry it."""
        return {
            "id": self.id, "organizer_id": self.organizer_id, "status": self.status,
            "title": self.title, "description": self.description, "category": self.category,
            "venue": {"id": self.venue.id, "name": self.venue.name, "city": self.venue.city},
            "venue_id": self.venue.id,
            "starts_at": iso(self.starts_at), "ends_at": iso(self.ends_at),
            "currency": self.currency, "prices": dict(self.prices),
            "capacity": self.venue.layout.capacity,
            "sections": [{**s.to_json(), "price": self.prices[s.code]} for s in self.venue.layout.sections],
            "version": self.version, "created_at": iso(self.created_at), "updated_at": iso(self.updated_at),
            **({"sale_starts_at": iso(self.sale_starts_at)} if self.sale_starts_at else {}),
            **({"max_per_buyer": self.max_per_buyer} if self.max_per_buyer else {}),
            **({"waiting_room": dict(self.waiting_room)} if self.waiting_room else {}),
        }


def ensure_sale_open(status: str, sale_starts_at: datetime | None, now: datetime | None = None) -> None:
    """Holds are taken only on an on-sale event whose sale has started: a check against the clock, made inside
    the hold's transaction (no timer has to fire for a sale to open)."""
    if status != "on_sale":
        raise errors.EventNotOnSale(f"the event is {status}", {"status": status})
    if sale_starts_at is not None and (now or utcnow()) < sale_starts_at:
        raise errors.EventNotOnSale("the sale has not started yet",
                                    {"status": status, "on_sale_at": iso(sale_starts_at)})


@dataclass(frozen=True)
class SaleTerms:
    """An event's status, prices and sale controls as read inside a hold or checkout transaction."""

    status: str
    currency: str
    prices: dict[str, int]
    sale_starts_at: datetime | None = None

    def ensure_sale_open(self) -> None:
        ensure_sale_open(self.status, self.sale_starts_at)


@dataclass(frozen=True)
class SaleInfo:
    """What a hold request is validated against before any lock is taken (cached in-process)."""

    event_id: str
    status: str
    layout: Layout
    sale_starts_at: datetime | None = None
    max_per_buyer: int | None = None
    waiting_room: dict[str, int] | None = None


# --- inventory changes --------------------------------------------------------------------
@dataclass(frozen=True)
class SeatChange:
    seat_id: str
    status: str  # available | held | sold
    version: int

    def to_json(self) -> dict[str, Any]:
        return {"seat_id": self.seat_id, "status": self.status, "version": self.version}


@dataclass(frozen=True)
class GASectionState:
    section: str
    capacity: int
    held: int
    sold: int
    version: int

    def to_json(self) -> dict[str, Any]:
        return {"section": self.section, "capacity": self.capacity, "held": self.held, "sold": self.sold,
                "version": self.version}


@dataclass(frozen=True)
class InventoryChange:
    """Absolute post-change states of the inventory rows one transaction touched."""

    seats: tuple[SeatChange, ...] = ()
    ga_sections: tuple[GASectionState, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.seats or self.ga_sections)

    def chunks(self, size: int) -> list[InventoryChange]:
        """Split a large change (an event cancellation) so each outbox message stays small."""
        parts = [InventoryChange(seats=self.seats[i:i + size]) for i in range(0, len(self.seats), size)]
        return parts + [InventoryChange(ga_sections=self.ga_sections)] if self.ga_sections else parts

    def to_json(self) -> dict[str, Any]:
        return {"seats": [c.to_json() for c in self.seats], "ga_sections": [g.to_json() for g in self.ga_sections]}


# --- holds and orders ---------------------------------------------------------------------
def items(seats: tuple[str, ...] | None, section: str | None, quantity: int) -> dict[str, Any]:
    """CONTRACT: holds and orders carry ``seats`` or ``section`` + ``quantity``."""
    return {"seats": list(seats)} if seats else {"section": section, "quantity": quantity}


@dataclass(frozen=True)
class Hold:
    id: str
    event_id: str
    buyer_id: str
    seats: tuple[str, ...] | None  # seated hold ...
    section: str | None  # ... or a GA hold
    quantity: int
    expires_at: datetime
    total: int = 0
    currency: str = ""
    status: str = "active"  # active -> converted | released | expired
    waitlist_entry_id: str | None = None  # set on a waitlist offer: the entry it was offered to

    @classmethod
    def request(cls, sale: SaleInfo, buyer_id: str, seats: list[str] | None, section: str | None,
                quantity: int | None, ttl_seconds: float) -> Hold:
        """Validate a hold request against the event's layout; the price is set later, in the transaction."""
        expires_at = utcnow() + timedelta(seconds=ttl_seconds)
        if seats is not None:
            unknown = sale.layout.unknown_seats(seats)
            if unknown:
                raise errors.ValidationError("unknown seats", {"seats": unknown})
            return cls(new_id(), sale.event_id, buyer_id, tuple(seats), None, len(seats), expires_at)
        ga = sale.layout.section(section)
        if ga is None or ga.kind != "ga":
            raise errors.ValidationError("unknown general-admission section", {"section": section})
        return cls(new_id(), sale.event_id, buyer_id, None, section, quantity, expires_at)

    def priced(self, terms: SaleTerms) -> Hold:
        sections = [s.split("-", 1)[0] for s in self.seats] if self.seats else [self.section] * self.quantity
        return replace(self, total=sum(terms.prices[s] for s in sections), currency=terms.currency)

    def covered_by(self, change: InventoryChange) -> bool:
        """Did a transaction move all of this hold's inventory (every seat, or its GA section)?"""
        return len(change.seats) == len(self.seats) if self.seats else bool(change.ga_sections)

    def ensure_owned_by(self, buyer_id: str) -> None:
        if self.buyer_id != buyer_id:  # 404, not 403: a hold is private to its buyer
            raise errors.NotFound("no such hold")

    def checkout_refusal(self, buyer_id: str) -> errors.DomainError:
        """Why this hold could not be checked out by ``buyer_id``."""
        if self.buyer_id != buyer_id:
            return errors.NotFound("no such hold")
        status = "expired" if self.status == "active" else self.status
        return errors.HoldExpired("the hold is no longer valid", {"hold_status": status})

    def to_json(self) -> dict[str, Any]:
        out = {"id": self.id, "event_id": self.event_id, "buyer_id": self.buyer_id,
               **items(self.seats, self.section, self.quantity),
               "total": self.total, "currency": self.currency, "status": self.status,
               "expires_at": iso(self.expires_at)}
        if self.waitlist_entry_id:
            out["waitlist_entry_id"] = self.waitlist_entry_id
        return out


@dataclass(frozen=True)
class OrderPayment:
    """A paid order's payment at the provider. ``status`` is what we last learnt of it (contracts/payments.py)."""

    provider: str
    id: str
    status: str  # pending | succeeded | failed | canceled
    checkout_url: str | None
    expires_at: datetime  # the payment window: the seats stay held for the buyer until then

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "provider": self.provider, "status": self.status, "checkout_url": self.checkout_url,
                "expires_at": iso(self.expires_at)}


@dataclass(frozen=True)
class OrderRefund:
    status: str  # pending | succeeded | failed
    amount: int
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {"status": self.status, "amount": self.amount, "reason": self.reason}


SEATS_UNAVAILABLE = "seats_unavailable"  # refund reason: the payment succeeded after its seats were resold


@dataclass(frozen=True)
class Order:
    """An order and its lifecycle (CONTRACT v2 "Orders, payments and refunds"; command_service/README.md):

    free: confirmed -> cancelled.  paid: pending_payment -> confirmed -> cancelled (refund);
    pending_payment -> payment_failed | cancelled. Every change is a new ``version``. The seats of a
    ``pending_payment`` order are held by its hold until ``payment.expires_at``; ``seats_released`` says the window
    ended (or the order left) and they went back on sale."""

    id: str
    event_id: str
    buyer_id: str
    hold_id: str
    seats: tuple[str, ...] | None
    section: str | None
    quantity: int
    total: int
    currency: str
    status: str = "confirmed"
    created_at: datetime = field(default_factory=utcnow)
    cancelled_at: datetime | None = None
    subtotal: int | None = None  # before the discount (None: as ``total``)
    discount: int = 0
    promo_code_id: str | None = None
    version: int = 1
    confirmed_at: datetime | None = None
    cancel_reason: str | None = None
    payment: OrderPayment | None = None
    refund: OrderRefund | None = None
    seats_released: bool = False

    def __post_init__(self) -> None:
        if self.subtotal is None:
            object.__setattr__(self, "subtotal", self.total)

    @classmethod
    def from_hold(cls, hold: Hold, order_id: str, promo: PromoCode | None = None) -> Order:
        """A free order (total 0 after the discount) is confirmed at once; a paid one waits for its payment."""
        discount = promo.discount(hold.total) if promo else 0
        total = hold.total - discount
        now = utcnow()
        return cls(order_id, hold.event_id, hold.buyer_id, hold.id, hold.seats, hold.section, hold.quantity,
                   total, hold.currency, status="confirmed" if total == 0 else "pending_payment", created_at=now,
                   subtotal=hold.total, discount=discount, promo_code_id=promo.id if promo else None,
                   confirmed_at=now if total == 0 else None)

    @property
    def paid(self) -> bool:
        return self.payment is not None

    def with_payment(self, payment: OrderPayment) -> Order:
        return replace(self, payment=payment)

    def _next(self, **changes: Any) -> Order:
        return replace(self, version=self.version + 1, **changes)

    def confirmed(self) -> Order:
        return self._next(status="confirmed", confirmed_at=utcnow(), payment=self._payment("succeeded"))

    def payment_failed(self, payment_status: str) -> Order:
        return self._next(status="payment_failed", payment=self._payment(payment_status), seats_released=True)

    def cancelled(self, reason: str) -> Order:
        """Cancelled, by whom (``reason``). A refund is due when its payment succeeded (``refund_due``)."""
        return self._next(status="cancelled", cancelled_at=utcnow(), cancel_reason=reason, seats_released=True)

    def settled(self, payment_status: str) -> Order:
        """The payment's final status learnt for an order that no longer waits for it (cancelled or failed)."""
        return self._next(payment=self._payment(payment_status))

    def refunding(self, reason: str) -> Order:
        return self._next(refund=OrderRefund("pending", self.total, reason))

    def refund_settled(self, status: str) -> Order:
        assert self.refund is not None
        return self._next(refund=replace(self.refund, status=status))

    def _payment(self, status: str) -> OrderPayment | None:
        return replace(self.payment, status=status) if self.payment else None

    def refund_due(self) -> bool:
        """Money was taken and the buyer holds no ticket for it: give it back (once)."""
        return (self.status in ("cancelled", "payment_failed") and self.payment is not None
                and self.payment.status == "succeeded" and self.total > 0 and self.refund is None)

    def ensure_cancellable_by(self, actor: Principal, event_organizer_id: str) -> None:
        if actor.role == "admin" or actor.user_id in (self.buyer_id, event_organizer_id):
            return
        raise errors.NotFound("no such order")  # private to its buyer and the event's organizer

    def to_json(self) -> dict[str, Any]:
        out = {"id": self.id, "event_id": self.event_id, "buyer_id": self.buyer_id, "hold_id": self.hold_id,
               "status": self.status, **items(self.seats, self.section, self.quantity), "subtotal": self.subtotal,
               "discount": self.discount, "total": self.total, "currency": self.currency,
               "created_at": iso(self.created_at), "cancelled_at": iso(self.cancelled_at),
               "confirmed_at": iso(self.confirmed_at), "version": self.version}
        if self.payment:
            out["payment"] = self.payment.to_json()
        if self.refund:
            out["refund"] = self.refund.to_json()
        return out


# --- tickets and scanners ------------------------------------------------------------------
@dataclass(frozen=True)
class Ticket:
    """One seat or GA place of a confirmed order (CONTRACT "Tickets and check-in"). ``code`` is signed with the
    event's key (contracts/tickets.py); valid -> checked_in (once) | void (the order was cancelled)."""

    id: str
    order_id: str
    event_id: str
    buyer_id: str
    seat: str | None
    section: str
    code: str
    status: str = "valid"
    checked_in_at: datetime | None = None
    version: int = 1

    def to_json(self) -> dict[str, Any]:
        place = {"seat": self.seat} if self.seat else {"section": self.section}
        return {"id": self.id, "order_id": self.order_id, "event_id": self.event_id, "buyer_id": self.buyer_id,
                **place, "status": self.status, "code": self.code, "checked_in_at": iso(self.checked_in_at),
                "version": self.version}


def ticket_places(order: Order) -> list[tuple[str | None, str]]:
    """(seat, section) of each ticket an order gets: one per seat, or one per GA place."""
    if order.seats:
        return [(s, seats.parse(s).section) for s in order.seats]
    return [(None, order.section)] * order.quantity


@dataclass(frozen=True)
class Scanner:
    id: str
    event_id: str
    organizer_id: str
    name: str
    expires_at: datetime


# --- promo codes --------------------------------------------------------------------------
@dataclass(frozen=True)
class PromoCode:
    """A code that lowers an order's total: ``percent_off`` (1-100, rounded down to the minor unit) or
    ``amount_off`` (minor units, never below 0), for ``sections`` (None: all) between ``valid_from`` and
    ``valid_until``, at most ``max_uses`` times (the database counts ``uses``)."""

    id: str
    event_id: str
    code: str
    percent_off: int | None
    amount_off: int | None
    max_uses: int
    uses: int = 0
    valid_from: datetime | None = None
    valid_until: datetime | None = None
    sections: tuple[str, ...] | None = None
    created_at: datetime = field(default_factory=utcnow)

    def __post_init__(self) -> None:
        if (self.percent_off is None) == (self.amount_off is None):
            raise errors.ValidationError("give percent_off or amount_off, not both",
                                         {"percent_off": "exactly one of percent_off, amount_off"})
        if self.valid_from and self.valid_until and self.valid_until <= self.valid_from:
            raise errors.ValidationError("valid_until must be after valid_from", {"valid_until": "after valid_from"})

    def discount(self, subtotal: int) -> int:
        if self.percent_off is not None:
            return subtotal * self.percent_off // 100
        return min(subtotal, self.amount_off or 0)

    def applies_to(self, section: str) -> bool:
        return self.sections is None or section in self.sections

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "event_id": self.event_id, "code": self.code, "percent_off": self.percent_off,
                "amount_off": self.amount_off, "max_uses": self.max_uses, "uses": self.uses,
                "valid_from": iso(self.valid_from), "valid_until": iso(self.valid_until),
                "sections": list(self.sections) if self.sections is not None else None,
                "created_at": iso(self.created_at)}


# --- waitlist -----------------------------------------------------------------------------
@dataclass(frozen=True)
class WaitlistEntry:
    """A buyer in an event's FIFO queue. ``seq`` is the ticket (unique, increasing per event); the position
    shown to buyers is the rank among the event's waiting entries, so it moves up when someone ahead leaves.

    waiting -> offered (a hold exists for the buyer alone) -> converted (checked out) | expired (not taken)
    waiting | offered -> left. A seated entry that asked for more seats than came back stays ``waiting`` while
    the seats that came back accumulate on its pending offer hold (held, so nobody else takes them)."""

    id: str
    event_id: str
    buyer_id: str
    section: str | None  # a GA section, a seated section, or None: any seated seats
    quantity: int
    seq: int
    status: str = "waiting"
    offer_hold_id: str | None = None
    offer_expires_at: datetime | None = None
    version: int = 1
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)

    @property
    def active(self) -> bool:
        return self.status in ("waiting", "offered")

    def moved(self, status: str, **changes: Any) -> WaitlistEntry:
        return replace(self, status=status, version=self.version + 1, updated_at=utcnow(), **changes)

    def offered(self, hold_id: str, expires_at: datetime) -> WaitlistEntry:
        return self.moved("offered", offer_hold_id=hold_id, offer_expires_at=expires_at)

    def ensure_owned_by(self, buyer_id: str) -> None:
        if self.buyer_id != buyer_id:
            raise errors.NotFound("no such waitlist entry")

    def to_json(self) -> dict[str, Any]:
        offer = ({"hold_id": self.offer_hold_id, "expires_at": iso(self.offer_expires_at)}
                 if self.status == "offered" else None)
        return {"id": self.id, "event_id": self.event_id, "buyer_id": self.buyer_id, "section": self.section,
                "quantity": self.quantity, "seq": self.seq, "status": self.status, "offer": offer,
                "version": self.version, "created_at": iso(self.created_at), "updated_at": iso(self.updated_at)}
