"""The status and kind vocabularies every service speaks: event payloads (contracts/events.py), read models
(contracts/readmodels.py) and both services' response models use these, so a new status is added in one place."""
from __future__ import annotations

from typing import Literal, get_args

Role = Literal["buyer", "organizer", "admin", "scanner"]  # scanner: a door credential for one event (its token's evt)
TicketStatus = Literal["valid", "checked_in", "void"]
# What a notification is about (the inbox's ``kind``, the SSE event name, the mail template: projectors/notifications.py)
NotificationKind = Literal["order_confirmed", "payment_failed", "order_cancelled", "refund_succeeded", "waitlist_offer",
                           "offer_expired", "event_changed", "event_cancelled", "event_reminder"]
HolderNoticeKind = Literal["reminder", "changed"]  # HolderNotice.notice: what a ticket holder is told of their event
MailStatus = Literal["pending", "sent", "failed", "skipped"]  # a notification's email (skipped: no address)
CheckinResult = Literal["checked_in", "already_checked_in", "void", "wrong_event", "invalid"]
EventStatus = Literal["draft", "on_sale", "cancelled"]
PublicEventStatus = Literal["on_sale", "cancelled"]  # drafts are the organizer's own business
SectionKind = Literal["seated", "ga"]
SeatStatus = Literal["available", "held", "sold"]
HoldStatus = Literal["active", "converted", "released", "expired"]
OrderStatus = Literal["pending_payment", "confirmed", "payment_failed", "cancelled"]
PaymentStatus = Literal["pending", "succeeded", "failed", "canceled"]  # contracts/payments.py
RefundStatus = Literal["pending", "succeeded", "failed"]
WaitlistStatus = Literal["waiting", "offered", "converted", "expired", "left"]
HealthStatus = Literal["ok", "unavailable"]
# payment_failed: a pending_payment order's payment failed; payment_expired: its payment window ended unpaid
ReleaseReason = Literal["expired", "cancelled", "order_cancelled", "event_cancelled", "payment_failed",
                        "payment_expired"]

ROLES: tuple[str, ...] = get_args(Role)
PUBLIC_EVENT_STATUSES: tuple[str, ...] = get_args(PublicEventStatus)
SEAT_STATUSES: tuple[str, ...] = get_args(SeatStatus)
RELEASE_REASONS: tuple[str, ...] = get_args(ReleaseReason)
