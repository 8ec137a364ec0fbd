"""Who is told what, by which message: the notifications of each outbox message (pure; no I/O).

A notification is one cause told to one user: an inbox entry (``/me/notifications``), an SSE frame on the user's
notification stream and one email, all with the same id. The id is derived from the cause, the kind and the
recipient (:func:`notification_id`), so every redelivery, replay or restart that meets the same cause again finds
the same id, and the notifier records it once (projectors/notifier.py).

The cause is what happened once:
- an order's confirmation, payment failure, cancellation and refund happen at most once per order, so their cause
  is the order (``order:<id>``); the confirmation's tickets (TicketsIssued, in the same transaction) join it there;
- an event's cancellation tells each buyer once however many orders they had (``event:<id>:cancelled``);
- a reminder is of one start time (``event:<id>:reminder:<starts_at>``), a change of one event version;
- a waitlist offer or its expiry is its outbox message (``msg:<outbox id>``).

| outbox message | kind | to |
|---|---|---|
| OrderConfirmed | order_confirmed (its tickets' QR codes attached) | the buyer |
| OrderPaymentFailed | payment_failed | the buyer |
| OrderCancelled (reason not event_cancelled) | order_cancelled | the buyer |
| OrderCancelled (reason event_cancelled) | event_cancelled, once per buyer | every buyer with an order |
| RefundUpdated with refund.status succeeded | refund_succeeded | the buyer |
| WaitlistOffered | waitlist_offer (with the offer's deadline) | the entry's buyer |
| OfferExpired | offer_expired | the entry's buyer |
| HolderNotice notice=changed | event_changed | each ticket holder (one message each) |
| HolderNotice notice=reminder | event_reminder | each ticket holder who takes reminders |

OrderPlaced is not told (the buyer is on the provider's page), nor a refund that failed or is still pending.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from projectors.projection import ORDER_TYPES, Msg, entry_doc, order_doc

NAMESPACE = uuid.UUID("6f1c2b8e-5d0a-4c1e-9a57-0e7f3d1b2c44")  # never change: every id ever recorded depends on it
ORDER_FIELDS = ("id", "event_id", "status", "seats", "section", "quantity", "subtotal", "discount", "total",
                "currency", "created_at", "cancelled_at", "confirmed_at", "version")
SIMPLE_ORDER_KINDS = {"OrderConfirmed": "order_confirmed", "OrderPaymentFailed": "payment_failed",
                      "OrderCancelled": "order_cancelled", "RefundUpdated": "refund_succeeded"}
HOLDER_KINDS = {"reminder": "event_reminder", "changed": "event_changed"}


def notification_id(cause: str, kind: str, user_id: str) -> str:
    return str(uuid.uuid5(NAMESPACE, f"{cause}|{kind}|{user_id}"))


@dataclass(frozen=True)
class Notice:
    """One notification as planned from a message; ``data`` is the API's ``data`` (and the SSE frame's body)."""
    user_id: str
    kind: str
    cause: str
    event_id: str
    created_at: str
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return notification_id(self.cause, self.kind, self.user_id)


def _order(order: dict[str, Any]) -> dict[str, Any]:
    doc = order_doc(order)
    return {**{k: order[k] for k in ORDER_FIELDS if k in order},
            **{k: doc[k] for k in ("payment", "refund") if k in doc}}


def plan(msg: Msg) -> list[Notice]:
    """The notifications ``msg`` causes (most messages cause none)."""
    at = msg.env.get("occurred_at") or ""
    if msg.type in ORDER_TYPES and msg.type in SIMPLE_ORDER_KINDS:
        order = msg.data["order"]
        if msg.type == "RefundUpdated" and (order.get("refund") or {}).get("status") != "succeeded":
            return []
        data: dict[str, Any] = {"order": _order(order)}
        kind, cause = SIMPLE_ORDER_KINDS[msg.type], f"order:{order['id']}"
        if msg.type == "OrderCancelled":
            data["reason"] = msg.data.get("reason")
            if data["reason"] == "event_cancelled":
                kind, cause = "event_cancelled", f"event:{order['event_id']}:cancelled"
        return [Notice(order["buyer_id"], kind, cause, order["event_id"], at, data)]
    if msg.type in ("WaitlistOffered", "OfferExpired"):
        entry = msg.data["entry"]
        data = {"entry": {"id": entry["id"], **{k: v for k, v in entry_doc(entry).items() if k != "buyer_id"}}}
        if msg.type == "WaitlistOffered":
            data["offer"] = data["entry"]["offer"]
        else:
            data["reason"] = msg.data.get("reason")  # expired | declined | event_cancelled
        kind = "waitlist_offer" if msg.type == "WaitlistOffered" else "offer_expired"
        return [Notice(entry["buyer_id"], kind, f"msg:{msg.id}", entry["event_id"], at, data)]
    if msg.type == "HolderNotice":
        d = msg.data
        cause = (f"event:{d['event_id']}:reminder:{d['starts_at']}" if d["notice"] == "reminder"
                 else f"event:{d['event_id']}:changed:v{d['event_version']}")
        data = {k: d[k] for k in ("starts_at", "ends_at", "previous_starts_at", "previous_ends_at", "tickets")
                if d.get(k) is not None}
        return [Notice(d["buyer_id"], HOLDER_KINDS[d["notice"]], cause, d["event_id"], at, data)]
    return []


def confirmation_tickets(msg: Msg) -> tuple[str, list[dict[str, Any]]] | None:
    """TicketsIssued: (the id of the order's confirmation notification, its tickets for the mail)."""
    if msg.type != "TicketsIssued" or not msg.data.get("tickets"):
        return None
    tickets = msg.data["tickets"]
    buyer = tickets[0]["buyer_id"]
    nid = notification_id(f"order:{msg.data['order_id']}", "order_confirmed", buyer)
    return nid, [{k: t.get(k) for k in ("id", "seat", "section", "code")} for t in tickets]


def read_mark(msg: Msg) -> tuple[str, str | None, str] | None:
    """NotificationsRead: (user id, one notification id or None for all, read_at)."""
    if msg.type != "NotificationsRead":
        return None
    return msg.data["user_id"], msg.data.get("notification_id"), msg.data["read_at"]
