"""Commands: one per write operation, validated and bounded when built from a request body.

``parse(Command, body, **context)`` turns a JSON body plus path/actor context into a command or
raises ValidationError naming each bad field (CONTRACT: 400 VALIDATION_ERROR).
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated, Any, Literal, TypeVar, Union

import pydantic
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, model_validator
from pydantic.json_schema import SkipJsonSchema

from common.auth import Principal
from command_service.domain import errors
from contracts.seats import CODE_PATTERN
from command_service.domain.model import (MAX_LAYOUT_BYTES, MAX_ROWS_PER_SECTION, MAX_SEATED_SEATS_PER_VENUE,
                                          MAX_SEATS_PER_HOLD, MAX_SEATS_PER_ROW, MAX_SECTION_CAPACITY,
                                          MAX_SECTIONS_PER_VENUE, Layout, Row, Section)


def _utc(ts: datetime) -> datetime:
    if not datetime(2000, 1, 1, tzinfo=timezone.utc) <= ts <= datetime(2100, 1, 1, tzinfo=timezone.utc):
        raise ValueError("must be between 2000 and 2100")
    return ts.astimezone(timezone.utc)


Text = lambda n: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=n),  # noqa: E731
                           Field(description=f"trimmed of surrounding white space, then 1 to {n} characters")]
Code = Annotated[str, StringConstraints(pattern=CODE_PATTERN)]
UtcDatetime = Annotated[pydantic.AwareDatetime, AfterValidator(_utc),
                        Field(description="ISO 8601 with a UTC offset, between 2000-01-01 and 2100-01-01")]
Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
Price = Annotated[int, Field(ge=0, le=100_000_000, strict=True)]
Prices = Annotated[dict[Code, Price], Field(min_length=1, max_length=MAX_SECTIONS_PER_VENUE,
                                            description="one price per section: the keys are exactly the section "
                                                        "codes of the venue (a PATCH may give a subset)")]
Email = Annotated[str, StringConstraints(strip_whitespace=True, to_lower=True, max_length=254,
                                         pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")]
Uuid = Annotated[str, StringConstraints(pattern=r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$"),
                 AfterValidator(str.lower)]


class Command(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)


class Authenticated(Command):
    actor: SkipJsonSchema[Principal]  # from the bearer token, never from the body


# --- auth ---------------------------------------------------------------------------------
class Register(Command):
    email: Email
    password: Annotated[str, StringConstraints(min_length=8, max_length=128)]
    name: Text(100)
    role: Literal["buyer", "organizer"]


class IssueToken(Command):
    email: Email
    password: Annotated[str, StringConstraints(min_length=1, max_length=128)]


class RefreshToken(Command):
    refresh_token: Annotated[str, StringConstraints(min_length=1, max_length=200)]


class Logout(Authenticated):
    pass


class SetUserRole(Authenticated):
    user_id: str
    role: Literal["buyer", "organizer", "admin"]


class DisableUser(Authenticated):
    user_id: str


class UpdatePreferences(Authenticated):
    """PATCH /me/preferences: the mail a user takes besides order, payment and refund mail."""
    reminders: bool | None = Field(None, strict=True)
    marketing: bool | None = Field(None, strict=True)

    @model_validator(mode="after")
    def _some_change(self) -> UpdatePreferences:
        if self.reminders is None and self.marketing is None:
            raise ValueError("give reminders and/or marketing (true or false)")
        return self


class MarkNotificationsRead(Authenticated):
    """One notification (``notification_id``) or, without it, every notification of the caller's so far."""
    notification_id: str | None = None


# --- venues -------------------------------------------------------------------------------
class RowIn(Command):
    label: Code
    seats: Annotated[int, Field(ge=1, le=MAX_SEATS_PER_ROW, strict=True)]


class SeatedSectionIn(Command):
    code: Code
    name: Text(100)
    kind: Literal["seated"]
    rows: Annotated[list[RowIn], Field(min_length=1, max_length=MAX_ROWS_PER_SECTION,
                                       description="row labels are unique within the section")]


class GASectionIn(Command):
    code: Code
    name: Text(100)
    kind: Literal["ga"]
    capacity: Annotated[int, Field(ge=1, le=MAX_SECTION_CAPACITY, strict=True)]


class CreateVenue(Authenticated):
    name: Text(200)
    city: Text(100)
    address: Text(300) | None = None
    sections: Annotated[list[Annotated[Union[SeatedSectionIn, GASectionIn], Field(discriminator="kind")]],
                        Field(min_length=1, max_length=MAX_SECTIONS_PER_VENUE,
                              description="section codes are unique within the venue; at most "
                                          f"{MAX_SEATED_SEATS_PER_VENUE} seated seats in all, and at most "
                                          f"{MAX_LAYOUT_BYTES // 1024} KiB as JSON")]

    def layout(self) -> Layout:
        layout = Layout(tuple(
            Section(s.code, s.name, "seated", tuple(Row(r.label, r.seats) for r in s.rows))
            if isinstance(s, SeatedSectionIn) else Section(s.code, s.name, "ga", ga_capacity=s.capacity)
            for s in self.sections))
        layout.ensure_publishable()
        return layout


# --- events -------------------------------------------------------------------------------
class WaitingRoom(Command):
    """Holds on the event need an admission from its waiting room (POST /events/{id}/queue)."""
    admit_per_minute: Annotated[int, Field(ge=1, le=1_000_000, strict=True,
                                           description="buyers let in per minute (see docs/flash-sales.md)")]
    admission_seconds: Annotated[int, Field(ge=30, le=86_400, strict=True,
                                            description="how long an admission lets its buyer hold")]


MaxPerBuyer = Annotated[int, Field(ge=1, le=10_000, strict=True,
                                   description="a buyer's held plus sold places on the event never exceed it")]


class CreateEvent(Authenticated):
    venue_id: Uuid
    title: Text(200)
    description: Annotated[str, StringConstraints(max_length=5000)] | None = None
    category: Text(50)
    starts_at: UtcDatetime
    ends_at: UtcDatetime | None = None
    currency: Currency
    prices: Prices
    sale_starts_at: UtcDatetime | None = None
    max_per_buyer: MaxPerBuyer | None = None
    waiting_room: WaitingRoom | None = None


class UpdateEvent(Authenticated):
    """PATCH: only the fields given change (title, category, starts_at, prices cannot be null)."""

    event_id: str
    title: Text(200) = None
    description: Annotated[str, StringConstraints(max_length=5000)] | None = None
    category: Text(50) = None
    starts_at: UtcDatetime = None
    ends_at: UtcDatetime | None = None
    prices: Prices = None
    sale_starts_at: UtcDatetime | None = None  # null: the sale is open as soon as the event is on sale
    max_per_buyer: MaxPerBuyer | None = None   # null: no limit
    waiting_room: WaitingRoom | None = None    # null: no waiting room

    @model_validator(mode="after")
    def _some_change(self) -> UpdateEvent:
        if not self.changes():
            raise ValueError("give at least one of title, description, category, starts_at, ends_at, prices, "
                             "sale_starts_at, max_per_buyer, waiting_room")
        return self

    def changes(self) -> dict[str, Any]:
        out = {f: getattr(self, f) for f in self.model_fields_set if f not in ("actor", "event_id")}
        if out.get("waiting_room") is not None:
            out["waiting_room"] = out["waiting_room"].model_dump()
        return out


class PublishEvent(Authenticated):
    event_id: str


class CancelEvent(Authenticated):
    event_id: str


# --- holds and orders ---------------------------------------------------------------------
class CreateHold(Authenticated):
    event_id: str
    seats: Annotated[list[Annotated[str, StringConstraints(max_length=40)]],
                     Field(min_length=1, max_length=MAX_SEATS_PER_HOLD)] | None = None
    section: Annotated[Code | None, Field(description="a general-admission section's code (with `quantity`)")] = None
    quantity: Annotated[int, Field(ge=1, le=MAX_SEATS_PER_HOLD, strict=True)] | None = None
    admission: Annotated[str, StringConstraints(max_length=2048),
                         Field(description="the waiting room's admission token (events with a waiting room)")] | None = None

    @model_validator(mode="after")
    def _one_form(self) -> CreateHold:
        if self.seats is not None:
            if self.section is not None or self.quantity is not None:
                raise ValueError("give either seats or section+quantity, not both")
            if len(set(self.seats)) != len(self.seats):
                raise ValueError("seats must not repeat")
        elif self.section is None or self.quantity is None:
            raise ValueError("give seats, or section and quantity")
        return self


class ReleaseHold(Authenticated):
    hold_id: str


class JoinQueue(Authenticated):
    event_id: str


PromoCodeText = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^[A-Za-z0-9_-]{3,32}$"),
                          Field(description="3 to 32 letters, digits, `-` or `_`; matched case-insensitively")]


class Checkout(Authenticated):
    hold_id: Uuid
    promo_code: PromoCodeText | None = None


class CreatePromoCode(Authenticated):
    event_id: str
    code: PromoCodeText
    percent_off: Annotated[int, Field(ge=1, le=100, strict=True)] | None = None
    amount_off: Annotated[int, Field(ge=1, le=100_000_000, strict=True,
                                     description="minor units of the event's currency")] | None = None
    max_uses: Annotated[int, Field(ge=1, le=10_000_000, strict=True)]
    valid_from: UtcDatetime | None = None
    valid_until: UtcDatetime | None = None
    sections: Annotated[list[Code], Field(min_length=1, max_length=MAX_SECTIONS_PER_VENUE,
                                          description="the section codes it applies to (absent: all)")] | None = None


class CancelOrder(Authenticated):
    order_id: str


# --- tickets and check-in -----------------------------------------------------------------
class CreateScanner(Authenticated):
    event_id: str
    name: Text(100)


TicketCode = Annotated[str, StringConstraints(min_length=1, max_length=200),
                       Field(description="the ticket's signed code (`<payload>.<signature>`, base64url)")]


class CheckIn(Authenticated):
    event_id: str
    code: TicketCode


class OfflineScan(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: TicketCode
    scanned_at: UtcDatetime


class CheckInBatch(Authenticated):
    event_id: str
    scans: Annotated[list[OfflineScan], Field(min_length=1, max_length=1000)]


class CheckinKey(Authenticated):
    event_id: str


# --- waitlist -----------------------------------------------------------------------------
class JoinWaitlist(Authenticated):
    event_id: str
    quantity: Annotated[int, Field(ge=1, le=MAX_SEATS_PER_HOLD, strict=True)]
    section: Code | None = None  # a GA section, a seated section, or none: any seated seats


class LeaveWaitlist(Authenticated):
    entry_id: str


C = TypeVar("C", bound=Command)


def printable(text: str) -> str:
    """A field name or path as it may appear in an error's details (never a raw NUL)."""
    return text.replace("\x00", "\\u0000")


def nul_fields(body: Any, where: str = "") -> list[str]:
    """The paths (``a.b.0``) of every key or string in a JSON value that contains a NUL character."""
    if isinstance(body, str):
        return [where or "body"] if "\x00" in body else []
    found: list[str] = []
    items = body.items() if isinstance(body, dict) else enumerate(body) if isinstance(body, list) else ()
    for k, v in items:
        path = f"{where}.{k}" if where else str(k)
        if isinstance(k, str) and "\x00" in k:
            found.append(printable(path))
        found += nul_fields(v, path)
    return found


def parse(command: type[C], body: Any, **context: Any) -> C:
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise errors.ValidationError("the body must be a JSON object", {"body": "expected an object"})
    overlap = set(body) & set(context)
    if overlap:
        raise errors.ValidationError("unexpected fields", {f: "not allowed in the body" for f in sorted(overlap)})
    try:
        return command.model_validate({**body, **context})
    except pydantic.ValidationError as exc:
        details: dict[str, str] = {}
        for err in exc.errors(include_url=False):
            where = printable(".".join(str(p) for p in err["loc"])) or "body"
            details.setdefault(where, err["msg"])
        raise errors.ValidationError("invalid request", details) from None


# --- payments -----------------------------------------------------------------------------
class RecordPaymentWebhook(Command):
    """A webhook the provider's adapter has verified (command_service/adapters/payments.py ``parse_webhook``)."""
    provider: str
    event: Any  # adapters.payments.WebhookEvent
    payload: dict[str, Any]
