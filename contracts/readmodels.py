"""The MongoDB read models (projectors/README.md): collection names, shared document fields, status codes,
bookkeeping fields and the one index list. The projectors write these documents; the query service reads them.

Indexes belong to the writer: the projector (worker start, rebuild) calls :func:`ensure_indexes`; the query
service never creates indexes, so there is one list and nothing to drift.
"""
from __future__ import annotations

from typing import Any

from pymongo import ASCENDING, DESCENDING

from contracts import vocabulary

# --- collections -------------------------------------------------------------------------------------------
EVENTS = "events"        # one document per event: catalog + detail fields, counters, stats (_id = event id)
SEATMAP = "seatmap"      # one chunk per seated row: st/v/p arrays indexed by seat number - 1 (_id = chunk_id)
ORDERS = "orders"        # one document per order, its newest state (_id = order id; ``rank`` = version)
WAITLIST = "waitlist"    # one document per waitlist entry (_id = entry id)
VENUES = "venues"        # one document per venue (_id = venue id)
ANALYTICS = "analytics"  # platform rollups: "totals" and "day:<YYYY-MM-DD>"
USERS = "users"          # one document per account, never a password hash (_id = user id): admin /admin/users
TICKETS = "tickets"      # one document per ticket, its newest state (_id = ticket id; ``version``)
APPLIED = "applied"      # outbox ids already applied (_id = outbox id, at = Kafka position)
COLLECTIONS = (EVENTS, SEATMAP, ORDERS, ANALYTICS, VENUES, WAITLIST, USERS, TICKETS, APPLIED)
# The notifier's own (projectors/notifier.py), never dropped by a projector rebuild: they are also the ledger of
# what was mailed, so a replay never mails twice.
NOTIFICATIONS = "notifications"  # one per cause and recipient (_id = notification id): the inbox
MAIL_LOG = "mail_log"            # each notification's mail: pending | sent | failed | skipped (_id = notification id)
MAIL_QUEUE = "mail_queue"        # mails not sent yet (_id = notification id; next_at, cv = claim CAS counter)

# --- seat status codes (seat-map chunks keep one letter per seat) --------------------------------------------
STATUS_CODE = {"available": "a", "held": "h", "sold": "s"}
CODE_STATUS = {v: k for k, v in STATUS_CODE.items()}

# --- bookkeeping fields: the projector's own, never part of an API response -----------------------------------
WATERMARKS = "wm"              # {"<topic>:<partition>": highest offset folded into this document}
CAS_VERSION = "cv"             # compare-and-set version of the document
CREATED_BY = "created_by_event"  # outbox id of the EventCreated that inserted the event document
BOOKKEEPING = (CREATED_BY, WATERMARKS, CAS_VERSION)
HIDE_BOOKKEEPING = {f: 0 for f in BOOKKEEPING}  # a find() projection

# --- shared document fields ---------------------------------------------------------------------------------
# What the public event list reads from an EVENTS document (projectors.projection.event_static writes them).
EVENT_LIST_FIELDS = ("title", "category", "venue", "starts_at", "status", "currency", "price_min", "price_max",
                     "capacity", "available", "sale_starts_at")
# An order document keeps its payment and refund with these fields (the API's ``payment`` / ``refund``).
ORDER_PAYMENT_FIELDS = ("id", "provider", "status", "checkout_url", "expires_at")
ORDER_REFUND_FIELDS = ("status", "amount", "reason")
# The money fields of the analytics rollups, each kept per currency (``revenue_EUR``, ``refunded_USD``: gross
# revenue of confirmed orders, refunds that succeeded); net revenue = revenue - refunded.
ANALYTICS_MONEY_FIELDS = ("revenue", "refunded")
SEATMAP_CHUNK_FIELDS = ("event_id", "section", "row", "st", "v", "p", CAS_VERSION)  # st: status code per seat
PUBLIC_EVENT_STATUSES = vocabulary.PUBLIC_EVENT_STATUSES  # drafts are the organizer's own business


def chunk_id(event_id: str, section: str, row: str) -> str:
    return f"{event_id}:{section}:{row}"


# --- indexes: (collection, keys) ----------------------------------------------------------------------------
INDEXES: tuple[tuple[str, list[tuple[str, int]]], ...] = (
    (EVENTS, [("status", ASCENDING), ("starts_at", ASCENDING)]),  # the public list
    (EVENTS, [("category", ASCENDING)]),
    (EVENTS, [("venue.city", ASCENDING)]),
    (EVENTS, [("organizer_id", ASCENDING)]),                     # the organizer's own events
    (EVENTS, [("sold", DESCENDING)]),                            # admin analytics: most popular
    (SEATMAP, [("event_id", ASCENDING)]),
    (ORDERS, [("buyer_id", ASCENDING), ("created_at", DESCENDING)]),  # /me/orders
    (ORDERS, [("event_id", ASCENDING)]),                          # event cancellation fan-out
    (WAITLIST, [("buyer_id", ASCENDING), ("created_at", DESCENDING)]),
    (WAITLIST, [("event_id", ASCENDING), ("status", ASCENDING), ("seq", ASCENDING)]),  # positions
    (USERS, [("role", ASCENDING), ("created_at", DESCENDING)]),   # admin: users by role, newest first
    (USERS, [("created_at", DESCENDING)]),
    (TICKETS, [("buyer_id", ASCENDING), ("event_id", ASCENDING)]),  # /me/tickets
    (TICKETS, [("order_id", ASCENDING)]),                          # an order's tickets
    (TICKETS, [("event_id", ASCENDING), ("status", ASCENDING)]),   # attendees
    (VENUES, [("organizer_id", ASCENDING)]),                       # the organizer's own venues
)
NOTIFIER_INDEXES: tuple[tuple[str, list[tuple[str, int]]], ...] = (
    (NOTIFICATIONS, [("user_id", ASCENDING), ("created_at", DESCENDING)]),  # /me/notifications
    (NOTIFICATIONS, [("user_id", ASCENDING), ("read_at", ASCENDING)]),      # unread count, read-all
    (MAIL_QUEUE, [("next_at", ASCENDING)]),                                  # due mails
)
# The inbox fields the API shows (GET /me/notifications); the rest is the notifier's bookkeeping.
NOTIFICATION_FIELDS = ("kind", "title", "body", "data", "created_at", "read_at")
# The ticket fields the read model keeps (the command side's ticket document, EVENTS.md "ticket").
TICKET_FIELDS = ("order_id", "event_id", "buyer_id", "seat", "section", "status", "code", "checked_in_at", "version")


def ensure_indexes(db: Any, indexes: tuple[tuple[str, list[tuple[str, int]]], ...] = INDEXES) -> None:
    """Create every read-model index (idempotent; the notifier passes NOTIFIER_INDEXES). ``db``: a pymongo
    ``Database``."""
    for collection, index_keys in indexes:
        db[collection].create_index(index_keys)
