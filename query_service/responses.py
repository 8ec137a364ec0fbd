"""Response models of the query service: every JSON body it sends goes through one of these (``render``), and
/openapi.json documents the same models, so the document and the responses cannot drift apart.

A view (query_service/views.py) returns plain data; ``render`` validates it into the endpoint's model and
dumps only what the view set (``exclude_unset``: optional fields such as ``offer`` stay absent rather than
``null``) and only documented fields (a field a view adds but no model declares is not sent).
Fields marked ``| None`` can be null; fields with a default of ``None`` but no ``| None`` are optional (absent
when they do not apply).
"""
from __future__ import annotations

import json
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from common.openapi import Count, DateTime, Money, ResponseModel, Uuid
from contracts.vocabulary import (EventStatus, NotificationKind, OrderStatus, PaymentStatus, PublicEventStatus, RefundStatus, Role,
                                 SeatStatus, SectionKind, TicketStatus, WaitlistStatus)

Date = Annotated[str, Field(json_schema_extra={"format": "date"})]
Ratio = Annotated[float, Field(ge=0, le=1)]


class Body(ResponseModel):
    """``extra="ignore"``: ``render`` drops whatever a view adds that no model declares, so it is never sent."""
    model_config = ConfigDict(extra="ignore")


T = TypeVar("T", bound=BaseModel)


class Page(Body, Generic[T]):
    """CONTRACT "Lists"."""

    items: list[T]
    page: Annotated[int, Field(ge=1)]
    page_size: Annotated[int, Field(ge=1, le=100)]
    total: Count

    @classmethod
    def model_parametrized_name(cls, params: tuple[type[Any], ...]) -> str:
        return f"{params[0].__name__}Page"


# --- catalog ------------------------------------------------------------------------------------
class VenueSummary(Body):
    name: str
    city: str


class EventListItem(Body):
    id: Uuid
    title: str
    category: str
    venue: VenueSummary
    starts_at: DateTime
    status: PublicEventStatus
    currency: str
    price_min: Money
    price_max: Money
    capacity: Count
    available: Count
    on_sale_at: DateTime = Field(None, description="holds open at this instant (absent: as soon as it is on sale)")


class Venue(Body):
    id: Uuid
    name: str
    city: str


class SectionCounts(Body):
    code: str
    name: str
    kind: SectionKind
    capacity: Count
    available: Count
    held: Count
    sold: Count
    price: Money


class WaitingRoom(Body):
    admit_per_minute: Annotated[int, Field(ge=1)]
    admission_seconds: Annotated[int, Field(ge=1)]


class EventDetail(Body):
    id: Uuid
    title: str
    description: str | None
    category: str
    venue: Venue
    starts_at: DateTime
    ends_at: DateTime | None
    status: PublicEventStatus
    currency: str
    capacity: Count
    available: Count
    held: Count
    sold: Count
    price_min: Money
    price_max: Money
    sections: list[SectionCounts]
    version: Annotated[int, Field(ge=1, description="the event's version (bumped by every change)")]
    updated_at: DateTime
    on_sale_at: DateTime = Field(None, description="holds open at this instant (absent: as soon as it is on sale)")
    max_per_buyer: Annotated[int, Field(ge=1, description="a buyer's held + sold places never exceed it")] = None
    waiting_room: WaitingRoom = None


class Seat(Body):
    id: Annotated[str, Field(description="`<section code>-<row label>-<seat number>`", examples=["A-1-7"])]
    section: str
    row: str
    number: Annotated[int, Field(ge=1)]
    status: SeatStatus
    price: Money


class GeneralAdmission(Body):
    section: str
    capacity: Count
    available: Count
    held: Count
    sold: Count
    price: Money


class SeatMap(Body):
    event_id: Uuid
    seats: list[Seat]
    general_admission: list[GeneralAdmission]
    last_event_id: Annotated[str, Field(description="the feed position this map is at: stream from it "
                                                    "(`Last-Event-ID`); `0-0` when the feed is empty")]


# --- the buyer's own ------------------------------------------------------------------------------
class OrderEvent(Body):
    id: Uuid
    title: str | None
    starts_at: DateTime | None


class OrderTicket(Body):
    id: Uuid
    seat: str = None
    section: str = None
    status: TicketStatus


class TicketEvent(Body):
    id: Uuid
    title: str | None
    starts_at: DateTime | None
    venue: Venue | None


class Ticket(Body):
    """CONTRACT "Tickets and check-in": the code is what the QR code encodes."""
    id: Uuid
    order_id: Uuid
    event_id: Uuid
    seat: str = None
    section: str = None
    status: TicketStatus
    code: Annotated[str, Field(max_length=200, description="`<payload>.<signature>`, verifiable offline with the "
                                                         "event's check-in key")]
    checked_in_at: DateTime = None
    event: TicketEvent


class AttendeeBuyer(Body):
    name: str | None
    email: str | None


class Attendee(Body):
    ticket_id: Uuid
    order_id: Uuid
    buyer: AttendeeBuyer
    seat: str = None
    section: str = None
    status: TicketStatus
    checked_in_at: DateTime | None


class OrganizerEvent(Body):
    id: Uuid
    title: str
    status: EventStatus
    starts_at: DateTime
    venue: VenueSummary
    currency: str
    capacity: Count
    sold: Count
    held: Count
    available: Count


class OrganizerVenue(Body):
    id: Uuid
    name: str
    city: str | None
    capacity: Count


class Payment(Body):
    """A paid order's payment at the provider."""
    id: str
    provider: Annotated[str, Field(examples=["devpay", "stripe"])]
    status: PaymentStatus
    checkout_url: Annotated[str, Field(description="the provider's hosted page (absent when it has none)")] = None
    expires_at: Annotated[str, Field(json_schema_extra={"format": "date-time"},
                                     description="the payment window: the seats stay held for the buyer until then")]


class Refund(Body):
    status: RefundStatus
    amount: Annotated[int, Field(ge=0, description="minor units of the order's currency")]
    reason: Annotated[str, Field(examples=["cancelled_by_buyer", "cancelled_by_organizer", "cancelled_by_admin",
                                           "event_cancelled", "seats_unavailable"])]


class Order(Body):
    id: Uuid
    event: OrderEvent
    status: Annotated[OrderStatus, Field(description="pending_payment until the provider answers, then confirmed "
                                                     "or payment_failed; cancelled")]
    seats: Annotated[list[str], Field(description="seated orders only")] = None
    section: Annotated[str, Field(description="general-admission orders only")] = None
    quantity: Annotated[int, Field(ge=1, description="general-admission orders only")] = None
    subtotal: Annotated[int, Field(description="before the promo code's discount, minor units")]
    discount: Annotated[int, Field(ge=0, description="the promo code's, minor units")]
    total: Money
    currency: str
    created_at: DateTime
    confirmed_at: Annotated[str, Field(json_schema_extra={"format": "date-time"},
                                       description="orders that were confirmed")] = None
    cancelled_at: Annotated[str, Field(json_schema_extra={"format": "date-time"},
                                       description="cancelled orders only")] = None
    payment: Annotated[Payment, Field(description="paid orders only (a free order has none)")] = None
    refund: Annotated[Refund, Field(description="once a paid order's money is being returned")] = None
    tickets: Annotated[list[OrderTicket], Field(description="one per seat or GA place once confirmed")] = []


class Offer(Body):
    hold_id: Uuid
    expires_at: DateTime


class WaitlistEntry(Body):
    id: Uuid
    event_id: Uuid
    position: Annotated[int | None, Field(ge=1, description="live rank among the event's waiting entries; "
                                                            "null unless waiting")]
    status: WaitlistStatus
    quantity: Annotated[int, Field(ge=1)]
    section: Annotated[str, Field(description="absent: any seated seat")] = None
    offer: Annotated[Offer, Field(description="only while offered: check out `hold_id` before `expires_at`")] = None
    created_at: DateTime


# --- organizer and admin --------------------------------------------------------------------------
class SalesDay(Body):
    date: Date
    orders: Annotated[int, Field(ge=0, description="orders confirmed that day")]
    seats: Count
    revenue: Annotated[int, Field(description="totals of the orders confirmed that day (before refunds), minor units")]
    refunded: Annotated[int, Field(ge=0, description="refunds that succeeded for orders cancelled that day")]
    cancellations: Count


class OrganizerStats(Body):
    event_id: Uuid
    title: str
    status: EventStatus
    currency: str
    capacity: Count
    sold: Count
    held: Count
    available: Count
    utilization: Annotated[Ratio, Field(description="sold / capacity")]
    revenue: Annotated[int, Field(description="net of refunds (gross_revenue - refunded), minor units")]
    gross_revenue: Annotated[int, Field(description="totals of every confirmed order, minor units")]
    refunded: Annotated[int, Field(ge=0, description="refunds that succeeded for confirmed orders, minor units")]
    refunds_failed: Annotated[int, Field(ge=0, description="refunds the provider refused")]
    orders: Annotated[int, Field(ge=0, description="every confirmed order, cancelled ones included (an order "
                                                   "still waiting for its payment, or whose payment failed, is not)")]
    cancellations: Annotated[int, Field(ge=0, description="confirmed orders cancelled")]
    cancellation_rate: Annotated[Ratio, Field(description="cancellations / orders")]
    checked_in: Annotated[int, Field(ge=0, description="tickets checked in")]
    tickets: Annotated[int, Field(ge=0, description="tickets issued and not voided (check-in progress: "
                                                   "checked_in of tickets)")]
    sales_by_day: Annotated[list[SalesDay], Field(description="by the day orders were confirmed")]


class PopularEvent(Body):
    event_id: Uuid
    title: str | None
    seats_sold: Count
    utilization: Ratio


class AnalyticsDay(Body):
    date: Date
    orders: Count
    seats: Count
    revenue: Annotated[dict[str, int], Field(description="totals of the orders confirmed that day (before refunds), "
                                                         "minor units per ISO 4217 currency")]
    refunded: Annotated[dict[str, int], Field(description="refunds that succeeded for orders cancelled that day, "
                                                          "per currency")]
    cancellations: Count
    cancelled_seats: Count


class AdminAnalytics(Body):
    total_orders: Count
    total_seats_sold: Annotated[int, Field(description="net of cancellations")]
    revenue: Annotated[dict[str, int], Field(description="net of refunds (confirmed orders' totals minus the refunds "
                                                         "that succeeded), minor units per ISO 4217 currency "
                                                         "(amounts in different currencies are never added)")]
    refunded: Annotated[dict[str, int], Field(description="refunds that succeeded, per currency")]
    refunds_failed: Annotated[int, Field(ge=0, description="refunds the provider refused (they need a person)")]
    cancellations: Count
    cancellation_rate: Ratio
    utilization: Annotated[Ratio, Field(description="sold / capacity over on-sale events")]
    most_popular: list[PopularEvent]
    daily: Annotated[list[AnalyticsDay], Field(description="newest first")]


EventPage = Page[EventListItem]
OrderPage = Page[Order]


class AdminUser(Body):
    """An account as admins see it (the users read model: never a password hash)."""
    id: Uuid
    email: str
    name: str
    role: Role
    disabled: bool
    created_at: DateTime


UserPage = Page[AdminUser]


class Notification(Body):
    """CONTRACT "Email": one inbox entry (the same notification is mailed and streamed)."""
    id: Uuid
    kind: NotificationKind
    title: str
    body: str
    data: dict[str, Any] = Field(description="what it is about: `order`, `entry` + `offer`, `reason`, `starts_at`"
                                             ", `tickets`... by kind")
    created_at: DateTime
    read_at: DateTime | None


class Admission(Body):
    token: str = Field(description="send it as `admission` in the hold's body (POST /api/v1/events/{id}/holds)")
    expires_at: DateTime


class QueueEntry(Body):
    """CONTRACT "Flash-sale controls": a waiting-room entry, as its buyer follows it."""
    id: Uuid
    event_id: Uuid
    position: int | None = Field(description="1 = next in; 0 once admitted; null: not placed yet")
    status: Literal["waiting", "admitted"]
    admission: Admission = None


class NotificationPage(Page[Notification]):
    unread: Count = Field(description="the caller's unread notifications (all of them, whatever the filter)")
TicketPage = Page[Ticket]
AttendeePage = Page[Attendee]
OrganizerEventPage = Page[OrganizerEvent]
OrganizerVenuePage = Page[OrganizerVenue]
WaitlistPage = Page[WaitlistEntry]
M = TypeVar("M", bound=BaseModel)


def render(model: type[M], data: Any) -> M | None:
    """A view's data as the endpoint's response model (None stays None: "no such thing")."""
    return None if data is None else model.model_validate(data)


def dump(body: BaseModel | Any) -> bytes:
    """The JSON bytes of a response body: a model dumps what was set (optional fields stay absent)."""
    if isinstance(body, BaseModel):
        return body.__pydantic_serializer__.to_json(body, exclude_unset=True)
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
