"""Response bodies of the command service, as models: /openapi.json documents them (common/openapi.py), and the
e2e suite validates every real response against that document, so a handler that sends a field no model
declares, or leaves out a required one, fails the tests. Request bodies are the commands themselves
(command_service/domain/commands.py).

Fields typed ``T | None`` can be null; fields with a default of ``None`` but no ``| None`` are absent when they
do not apply (a hold has ``seats``, or ``section`` + ``quantity``).
"""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from common.openapi import Count, DateTime, Money, ResponseModel, Uuid
from contracts.vocabulary import (CheckinResult, EventStatus, HoldStatus, OrderStatus, PaymentStatus, RefundStatus, Role, SectionKind,
                                 WaitlistStatus)


class User(ResponseModel):
    id: Uuid
    email: str
    name: str
    role: Role


class AdminUser(User):
    disabled: bool
    created_at: DateTime


class Preferences(ResponseModel):
    reminders: bool = Field(description="event reminders (EVENTLY_REMINDER_HOURS before the start)")
    marketing: bool = Field(description="marketing-type mail (Evently sends none yet; the choice is kept)")


class Admission(ResponseModel):
    token: str = Field(description="send it as `admission` in the hold's body")
    expires_at: DateTime


class QueueEntry(ResponseModel):
    id: Uuid
    event_id: Uuid
    position: int | None = Field(description="1 = next in; 0 once admitted; null while the queue is being "
                                             "rebuilt")
    status: Literal["waiting", "admitted"]
    admission: Admission = None


class Token(ResponseModel):
    access_token: str = Field(description="a JWT (HS256) for `Authorization: Bearer`")
    token_type: Literal["bearer"]
    expires_in: int = Field(description="seconds until the access token expires")
    refresh_token: str = Field(description="opaque; POST /auth/refresh exchanges it once for a new pair")


class RowOut(ResponseModel):
    label: str
    seats: Count


class SectionOut(ResponseModel):
    code: str
    name: str
    kind: SectionKind
    capacity: Count
    rows: list[RowOut] = None  # seated sections only


class Venue(ResponseModel):
    id: Uuid
    name: str
    city: str
    address: str | None
    capacity: Count
    sections: list[SectionOut]


class VenueRef(ResponseModel):
    id: Uuid
    name: str
    city: str


class EventSection(SectionOut):
    price: Money


class WaitingRoomOut(ResponseModel):
    admit_per_minute: int = Field(ge=1)
    admission_seconds: int = Field(ge=1)


class Event(ResponseModel):
    id: Uuid
    organizer_id: Uuid
    status: EventStatus
    title: str
    description: str | None
    category: str
    venue: VenueRef
    venue_id: Uuid
    starts_at: DateTime
    ends_at: DateTime | None
    currency: str
    prices: dict[str, Money]
    capacity: Count
    sections: list[EventSection]
    version: int = Field(description="goes up with every change of the event (publish, edit, cancel)")
    created_at: DateTime
    updated_at: DateTime
    sale_starts_at: DateTime = Field(None, description="holds open at this instant (absent: when on sale)")
    max_per_buyer: int = Field(None, ge=1, description="a buyer's held + sold places never exceed it")
    waiting_room: WaitingRoomOut = None


class Hold(ResponseModel):
    id: Uuid
    event_id: Uuid
    buyer_id: Uuid
    seats: list[str] = None       # a seated hold ...
    section: str = None           # ... or a GA hold: section + quantity
    quantity: int = None
    total: Money
    currency: str
    status: HoldStatus
    expires_at: DateTime
    waitlist_entry_id: Uuid = None  # only on a waitlist offer


class PaymentState(ResponseModel):
    id: str
    provider: str
    status: PaymentStatus
    checkout_url: str | None = Field(description="the provider's hosted page (devpay); null for Stripe")
    expires_at: DateTime = Field(description="the payment window: the seats stay held for the buyer until then")


class RefundState(ResponseModel):
    status: RefundStatus
    amount: Money
    reason: str


class Order(ResponseModel):
    id: Uuid
    event_id: Uuid
    buyer_id: Uuid
    hold_id: Uuid
    status: OrderStatus
    seats: list[str] = None
    section: str = None
    quantity: int = None
    subtotal: Money = Field(description="before the promo code's discount")
    discount: Money
    total: Money = Field(description="subtotal - discount: what the buyer pays")
    currency: str
    created_at: DateTime
    cancelled_at: DateTime | None
    confirmed_at: DateTime | None
    version: int = Field(ge=1, description="grows by one with every change of the order")
    payment: PaymentState = Field(None, description="a paid order's payment (absent for a free order)")
    refund: RefundState = Field(None, description="present once a paid order's money is being returned")


class WaitlistJoined(ResponseModel):
    id: Uuid
    event_id: Uuid
    position: int = Field(ge=1, description="1 = next in line")
    status: WaitlistStatus
    quantity: int
    section: str | None
    created_at: DateTime


class WebhookReceipt(ResponseModel):
    received: Literal[True]
    duplicate: bool = Field(description="this provider event was recorded before (the provider sent it again)")


class PromoCode(ResponseModel):
    id: Uuid
    event_id: Uuid
    code: str
    percent_off: int | None
    amount_off: Money | None
    max_uses: int
    uses: Count
    valid_from: DateTime | None
    valid_until: DateTime | None
    sections: list[str] | None = Field(description="null: every section")
    created_at: DateTime


class Scanner(ResponseModel):
    id: Uuid
    event_id: Uuid
    name: str
    token: str = Field(description="a `scanner` bearer token for this event's doors alone")
    expires_at: DateTime = Field(description="when the event ends: the token stops working then")


class CheckedIn(ResponseModel):
    ticket_id: Uuid
    seat: str = None
    section: str = None
    status: Literal["checked_in"]
    checked_in_at: DateTime


class BatchResult(ResponseModel):
    ticket_id: Uuid | None = Field(description="null when the code is not a ticket of ours")
    result: CheckinResult


class BatchResults(ResponseModel):
    results: list[BatchResult] = Field(description="one per scan, in the order sent")


class CheckinKey(ResponseModel):
    key_id: str
    algorithm: Literal["Ed25519"]
    public_key: str = Field(description="base64 of the raw 32-byte Ed25519 public key")
