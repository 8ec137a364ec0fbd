"""Read-side views: plain functions from the read models (projectors/README.md) to API shapes.

Each function takes the database (and Redis for the feed position) and returns JSON-ready data or
``None`` when the thing does not exist. No HTTP here: app.py does parsing, auth and caching.
"""
from __future__ import annotations

import asyncio
import csv
import io
import re
from datetime import datetime, timezone
from typing import Any

from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.database import AsyncDatabase

from common import waiting_room
from contracts import keys
from contracts import readmodels as rm
from query_service.feed import ZERO, as_str
from query_service.params import as_read_model_time

BOOKKEEPING = rm.HIDE_BOOKKEEPING  # projector bookkeeping: never part of an API response
PUBLIC_STATUSES = rm.PUBLIC_EVENT_STATUSES
SEAT_STATUS = rm.CODE_STATUS
LIST_FIELDS = dict.fromkeys(rm.EVENT_LIST_FIELDS, 1)


def _ratio(n: float, d: float) -> float:
    """n / d in [0, 1] (a read model that is behind or was built by an older projector never makes it a 5xx)."""
    return min(max(round(n / d, 4), 0.0), 1.0) if d else 0.0


def list_filter(q: str | None, category: str | None, city: str | None, starts_after: str | None,
                starts_before: str | None, status: str | None) -> dict[str, Any]:
    flt: dict[str, Any] = {**PUBLIC, **COMPLETE, **({"status": status} if status else {})}
    if q:
        # FerretDB 1.24 has no $text: a case-insensitive substring match on the title.
        flt["title"] = {"$regex": re.escape(q), "$options": "i"}
    if category:
        flt["category"] = category
    if city:
        flt["venue.city"] = city
    when: dict[str, str] = {}
    if starts_after:
        when["$gte"] = starts_after
    if starts_before:
        when["$lt"] = starts_before
    if when:
        flt["starts_at"] = when
    return flt


# A catalog document is served once it has what every EventCreated the command side writes carries. One that
# lacks them (a hand-made outbox row, a bug) is left out of the list and is a 404, rather than a 5xx for everyone
# listing events; the checker (projectors/check.py) still reports it.
COMPLETE: dict[str, Any] = {"title": {"$ne": None}, "venue.id": {"$ne": None}, "venue.name": {"$ne": None},
                            "venue.city": {"$ne": None}, "starts_at": {"$ne": None}, "currency": {"$ne": None},
                            "price_min": {"$ne": None}, "updated_at": {"$ne": None}}
PUBLIC = {"status": {"$in": list(PUBLIC_STATUSES)}}


async def event_list(db: AsyncDatabase, flt: dict[str, Any], page: int, page_size: int) -> dict[str, Any]:
    total = await db.events.count_documents(flt)
    items = []
    if total > (page - 1) * page_size:
        cursor = db.events.find(flt, LIST_FIELDS).sort([("starts_at", ASCENDING), ("_id", ASCENDING)]) \
            .skip((page - 1) * page_size).limit(page_size)
        async for doc in cursor:
            doc["id"] = doc.pop("_id")
            venue = doc.get("venue") or {}
            doc["venue"] = {"name": venue.get("name"), "city": venue.get("city")}
            if doc.get("sale_starts_at"):
                doc["on_sale_at"] = doc["sale_starts_at"]
            items.append(doc)
    return {"items": items, "page": page, "page_size": page_size, "total": total}


def _sections(doc: dict[str, Any]) -> list[dict[str, Any]]:
    counts = doc.get("counts") or {}
    out = []
    for s in doc.get("sections") or []:
        c = counts.get(s["code"]) or {}
        capacity = c.get("capacity", s.get("capacity", 0))
        out.append({"code": s["code"], "name": s.get("name"), "kind": s.get("kind"), "capacity": capacity,
                    "available": c.get("available", capacity), "held": c.get("held", 0), "sold": c.get("sold", 0),
                    "price": (doc.get("prices") or {}).get(s["code"], s.get("price"))})
    return out


async def _event(db: AsyncDatabase, event_id: str, projection: dict | None = None) -> dict[str, Any] | None:
    return await db.events.find_one({"_id": event_id}, projection or BOOKKEEPING)


async def event_detail(db: AsyncDatabase, event_id: str) -> dict[str, Any] | None:
    doc = await db.events.find_one({"_id": event_id, **PUBLIC, **COMPLETE}, BOOKKEEPING)
    if doc is None:
        return None
    return {
        "id": doc["_id"], "title": doc.get("title"), "description": doc.get("description"),
        "category": doc.get("category"), "venue": doc.get("venue"), "starts_at": doc.get("starts_at"),
        "ends_at": doc.get("ends_at"), "status": doc.get("status"), "currency": doc.get("currency"),
        "capacity": doc.get("capacity", 0), "available": doc.get("available", doc.get("capacity", 0)),
        "held": doc.get("held", 0), "sold": doc.get("sold", 0),
        "price_min": doc.get("price_min"), "price_max": doc.get("price_max"),
        "sections": _sections(doc), "version": doc.get("version"), "updated_at": doc.get("updated_at"),
        **{k: v for k, v in (("on_sale_at", doc.get("sale_starts_at")), ("max_per_buyer", doc.get("max_per_buyer")),
                             ("waiting_room", doc.get("waiting_room"))) if v is not None},
    }


async def seat_map(db: AsyncDatabase, redis: Any, event_id: str) -> dict[str, Any] | None:
    # The feed position first, then the seats: a change after the position is replayed by the
    # stream (statuses are absolute), so the pair is never behind the stream.
    tip = await redis.xrevrange(keys.seat_feed(event_id), "+", "-", count=1)
    last_event_id = as_str(tip[0][0]) if tip else ZERO
    doc = await _event(db, event_id, {"status": 1, "prices": 1, "sections": 1, "counts": 1})
    if doc is None or doc.get("status") not in PUBLIC_STATUSES:
        return None
    prices = doc.get("prices") or {}
    seats = []
    rows = await db.seatmap.find({"event_id": event_id}, {"section": 1, "row": 1, "st": 1}).to_list(None)
    order = {s["code"]: i for i, s in enumerate(doc.get("sections") or [])}
    rows.sort(key=lambda r: (order.get(r["section"], 1 << 30), _row_key(r["row"])))
    for r in rows:
        sec, row, price = r["section"], r["row"], prices.get(r["section"])
        for n, st in enumerate(r["st"], start=1):
            seats.append({"id": f"{sec}-{row}-{n}", "section": sec, "row": row, "number": n,
                          "status": SEAT_STATUS.get(st, st), "price": price})
    ga = [{"section": s["code"], "available": s["available"], "held": s["held"], "sold": s["sold"],
           "capacity": s["capacity"], "price": s["price"]} for s in _sections(doc) if s["kind"] == "ga"]
    return {"event_id": event_id, "seats": seats, "general_admission": ga, "last_event_id": last_event_id}


def _row_key(label: str) -> tuple[int, Any]:
    return (0, int(label)) if label.isdigit() else (1, label)


def _order(doc: dict[str, Any]) -> dict[str, Any]:
    ev = doc.get("event") or {}
    out = {"id": doc["_id"], "event": {"id": ev.get("id", doc.get("event_id")), "title": ev.get("title"),
                                       "starts_at": ev.get("starts_at")},
           "status": doc.get("status"), "subtotal": doc.get("subtotal", doc.get("total")),
           "discount": doc.get("discount", 0), "total": doc.get("total"), "currency": doc.get("currency"),
           "created_at": doc.get("created_at")}
    if "section" in doc:
        out.update(section=doc["section"], quantity=doc.get("quantity"))
    else:
        out["seats"] = doc.get("seats", [])
    for k in ("confirmed_at", "cancelled_at"):
        if doc.get(k):
            out[k] = doc[k]
    payment, refund = doc.get("payment"), doc.get("refund")
    if payment:
        out["payment"] = {k: payment[k] for k in rm.ORDER_PAYMENT_FIELDS if payment.get(k) is not None}
    if refund:
        out["refund"] = {k: refund[k] for k in rm.ORDER_REFUND_FIELDS if refund.get(k) is not None}
    return out


async def _with_tickets(db: AsyncDatabase, orders: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each order with its tickets ``[{id, seat | section, status}]`` (one query for the page)."""
    by_order: dict[str, list[dict[str, Any]]] = {o["id"]: [] for o in orders}
    if by_order:
        async for t in db.tickets.find({"order_id": {"$in": list(by_order)}}, {"seat": 1, "section": 1, "status": 1,
                                                                              "order_id": 1}).sort("_id", ASCENDING):
            place = {"seat": t["seat"]} if t.get("seat") else {"section": t.get("section")}
            by_order.setdefault(t["order_id"], []).append({"id": t["_id"], **place, "status": t.get("status")})
    for o in orders:
        o["tickets"] = sorted(by_order.get(o["id"], []), key=lambda t: t.get("seat") or "")
    return orders


async def my_orders(db: AsyncDatabase, buyer_id: str, page: int, page_size: int) -> dict[str, Any]:
    flt = {"buyer_id": buyer_id}
    total = await db.orders.count_documents(flt)
    cursor = db.orders.find(flt).sort([("created_at", DESCENDING), ("_id", ASCENDING)]) \
        .skip((page - 1) * page_size).limit(page_size)
    items = await _with_tickets(db, [_order(d) async for d in cursor])
    return {"items": items, "page": page, "page_size": page_size, "total": total}


async def my_order(db: AsyncDatabase, buyer_id: str, order_id: str) -> dict[str, Any] | None:
    """One of the buyer's own orders; None for an unknown order and for another buyer's (the same 404)."""
    doc = await db.orders.find_one({"_id": order_id, "buyer_id": buyer_id})
    return None if doc is None else (await _with_tickets(db, [_order(doc)]))[0]


# --- the waiting room (Redis, written by the command side: service_layer/waiting_room.py) -------------
def now_text() -> str:
    """Now in the read models' instant form (UTC, milliseconds, ``Z``), which sorts as text."""
    return as_read_model_time(datetime.now(timezone.utc))


async def queue_entry(redis: Any, event_id: str, entry_id: str, buyer_id: str) -> dict[str, Any] | None:
    """The buyer's own entry (common/waiting_room.py reads it); None for another's or an unknown one."""
    entry = await waiting_room.read_entry(redis, event_id, entry_id)
    if entry is None or entry.pop("buyer_id") != buyer_id:
        return None
    return {"id": entry_id, "event_id": event_id, **entry}


# --- the inbox (the notifier's notifications collection) ---------------------------------------------
async def my_notifications(db: AsyncDatabase, user_id: str, unread_only: bool, page: int,
                           page_size: int) -> dict[str, Any]:
    unread = {"user_id": user_id, "read_at": None}
    flt = unread if unread_only else {"user_id": user_id}
    coll = db[rm.NOTIFICATIONS]
    total = await coll.count_documents(flt)
    n_unread = total if unread_only else await coll.count_documents(unread)
    cursor = coll.find(flt, {f: 1 for f in rm.NOTIFICATION_FIELDS}).sort(
        [("created_at", DESCENDING), ("_id", ASCENDING)]).skip((page - 1) * page_size).limit(page_size)
    items = [{"id": d.pop("_id"), **d} async for d in cursor]
    return {"items": items, "page": page, "page_size": page_size, "total": total, "unread": n_unread}


# --- tickets ---------------------------------------------------------------------------------------
def _ticket(doc: dict[str, Any], event: dict[str, Any] | None) -> dict[str, Any]:
    out = {"id": doc["_id"], "order_id": doc.get("order_id"), "event_id": doc.get("event_id"),
           "status": doc.get("status"), "code": doc.get("code")}
    out.update({"seat": doc["seat"]} if doc.get("seat") else {"section": doc.get("section")})
    if doc.get("checked_in_at"):
        out["checked_in_at"] = doc["checked_in_at"]
    ev = event or {}
    venue = ev.get("venue")
    out["event"] = {"id": doc.get("event_id"), "title": ev.get("title"), "starts_at": ev.get("starts_at"),
                    "venue": {"id": venue.get("id"), "name": venue.get("name"), "city": venue.get("city")}
                    if venue else None}
    return out


async def my_tickets(db: AsyncDatabase, buyer_id: str, event_id: str | None, page: int,
                     page_size: int) -> dict[str, Any]:
    flt = {"buyer_id": buyer_id, **({"event_id": event_id} if event_id else {})}
    total = await db.tickets.count_documents(flt)
    docs = await db.tickets.find(flt).sort([("event_id", ASCENDING), ("seat", ASCENDING), ("_id", ASCENDING)]) \
        .skip((page - 1) * page_size).limit(page_size).to_list(None)
    ids = sorted({d.get("event_id") for d in docs})
    events = {e["_id"]: e async for e in db.events.find({"_id": {"$in": ids}},
                                                        {"title": 1, "starts_at": 1, "venue": 1})}
    items = [_ticket(d, events.get(d.get("event_id"))) for d in docs]
    return {"items": items, "page": page, "page_size": page_size, "total": total}


async def my_ticket_code(db: AsyncDatabase, buyer_id: str, ticket_id: str) -> str | None:
    """The code of one of the buyer's own tickets (None: unknown, or another buyer's: the same 404)."""
    doc = await db.tickets.find_one({"_id": ticket_id, "buyer_id": buyer_id}, {"code": 1})
    return doc.get("code") if doc else None


ATTENDEE_COLUMNS = ("ticket_id", "order_id", "buyer_name", "buyer_email", "seat", "section", "status",
                    "checked_in_at")


async def attendees(db: AsyncDatabase, event_id: str, status: str | None, page: int | None,
                    page_size: int | None) -> dict[str, Any]:
    """The event's tickets with their buyers' names and emails (the users read model); every one when ``page`` is
    None (the CSV export)."""
    flt = {"event_id": event_id, **({"status": status} if status else {})}
    total = await db.tickets.count_documents(flt)
    cursor = db.tickets.find(flt).sort([("section", ASCENDING), ("seat", ASCENDING), ("_id", ASCENDING)])
    if page is not None:
        cursor = cursor.skip((page - 1) * page_size).limit(page_size)
    docs = await cursor.to_list(None)
    buyers = sorted({d.get("buyer_id") for d in docs})
    users = {u["_id"]: u async for u in db.users.find({"_id": {"$in": buyers}}, {"name": 1, "email": 1})}
    items = []
    for d in docs:
        u = users.get(d.get("buyer_id")) or {}
        item = {"ticket_id": d["_id"], "order_id": d.get("order_id"), "buyer": {"name": u.get("name"),
                                                                               "email": u.get("email")},
                "status": d.get("status"), "checked_in_at": d.get("checked_in_at")}
        item.update({"seat": d["seat"]} if d.get("seat") else {"section": d.get("section")})
        items.append(item)
    return {"items": items, "page": page or 1, "page_size": page_size or max(len(items), 1), "total": total}


def attendees_csv(items: list[dict[str, Any]]) -> str:
    """One header row and one row per ticket; the csv module quotes a field holding a comma, a quote or a newline."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\r\n")
    w.writerow(ATTENDEE_COLUMNS)
    for a in items:
        w.writerow([a["ticket_id"], a["order_id"], a["buyer"]["name"] or "", a["buyer"]["email"] or "",
                    a.get("seat") or "", a.get("section") or "", a["status"], a.get("checked_in_at") or ""])
    return out.getvalue()


# --- the organizer's own -----------------------------------------------------------------------------
async def organizer_events(db: AsyncDatabase, organizer_id: str, status: str | None, page: int,
                           page_size: int) -> dict[str, Any]:
    """The organizer's events, drafts included, soonest first."""
    flt = {"organizer_id": organizer_id, "title": {"$exists": True}, **({"status": status} if status else {})}
    total = await db.events.count_documents(flt)
    cursor = db.events.find(flt, {"title": 1, "status": 1, "starts_at": 1, "venue": 1, "currency": 1,
                                  "capacity": 1, "sold": 1, "held": 1, "available": 1}) \
        .sort([("starts_at", ASCENDING), ("_id", ASCENDING)]).skip((page - 1) * page_size).limit(page_size)
    items = []
    async for d in cursor:
        cap = d.get("capacity", 0)
        items.append({"id": d["_id"], "title": d.get("title"), "status": d.get("status"),
                      "starts_at": d.get("starts_at"), "currency": d.get("currency"),
                      "venue": {"name": (d.get("venue") or {}).get("name"), "city": (d.get("venue") or {}).get("city")},
                      "capacity": cap, "sold": d.get("sold", 0), "held": d.get("held", 0),
                      "available": d.get("available", cap)})
    return {"items": items, "page": page, "page_size": page_size, "total": total}


async def organizer_venues(db: AsyncDatabase, organizer_id: str, page: int, page_size: int) -> dict[str, Any]:
    flt = {"organizer_id": organizer_id}
    total = await db.venues.count_documents(flt)
    cursor = db.venues.find(flt, {"name": 1, "city": 1, "capacity": 1}).sort([("name", ASCENDING), ("_id", ASCENDING)]) \
        .skip((page - 1) * page_size).limit(page_size)
    items = [{"id": d["_id"], "name": d.get("name"), "city": d.get("city"), "capacity": d.get("capacity", 0)}
             async for d in cursor]
    return {"items": items, "page": page, "page_size": page_size, "total": total}


def _entry(doc: dict[str, Any], position: int | None) -> dict[str, Any]:
    out = {"id": doc["_id"], "event_id": doc.get("event_id"), "position": position,
           "status": doc.get("status"), "quantity": doc.get("quantity"), "created_at": doc.get("created_at")}
    if doc.get("section"):
        out["section"] = doc["section"]
    if doc.get("status") == "offered" and doc.get("offer"):
        out["offer"] = {"hold_id": doc["offer"].get("hold_id"), "expires_at": doc["offer"].get("expires_at")}
    return out


async def _position(db: AsyncDatabase, doc: dict[str, Any]) -> int | None:
    """The live rank of a waiting entry: 1 + the event's waiting entries with a smaller FIFO ticket ``seq``.
    Not stored, so everyone behind moves up the moment someone ahead leaves or is offered seats."""
    if doc.get("status") != "waiting" or doc.get("seq") is None:
        return None
    ahead = await db.waitlist.count_documents({"event_id": doc.get("event_id"), "status": "waiting",
                                               "seq": {"$lt": doc["seq"]}})
    return ahead + 1


async def my_waitlist(db: AsyncDatabase, buyer_id: str, page: int, page_size: int) -> dict[str, Any]:
    flt = {"buyer_id": buyer_id}
    total = await db.waitlist.count_documents(flt)
    cursor = db.waitlist.find(flt).sort([("created_at", DESCENDING), ("_id", ASCENDING)]) \
        .skip((page - 1) * page_size).limit(page_size)
    docs = await cursor.to_list(None)
    positions = await asyncio.gather(*(_position(db, d) for d in docs))  # one count per waiting entry
    items = [_entry(d, p) for d, p in zip(docs, positions)]
    return {"items": items, "page": page, "page_size": page_size, "total": total}


async def event_owner(db: AsyncDatabase, event_id: str) -> str | None | bool:
    """The organizer id of an event; False when there is no such event."""
    doc = await _event(db, event_id, {"organizer_id": 1})
    return False if doc is None else doc.get("organizer_id")


async def organizer_stats(db: AsyncDatabase, event_id: str) -> dict[str, Any] | None:
    doc = await _event(db, event_id, {"capacity": 1, "held": 1, "sold": 1, "available": 1, "stats": 1,
                                      "currency": 1, "status": 1, "title": 1})
    if doc is None:
        return None
    st = doc.get("stats") or {}
    capacity, sold = doc.get("capacity", 0), doc.get("sold", 0)
    orders, cancellations = st.get("orders", 0), st.get("cancellations", 0)
    by_day = sorted((st.get("by_day") or {}).items())
    return {
        "event_id": doc["_id"], "title": doc.get("title"), "status": doc.get("status"), "currency": doc.get("currency"),
        "capacity": capacity, "sold": sold, "held": doc.get("held", 0),
        "available": doc.get("available", capacity), "utilization": _ratio(sold, capacity),
        "revenue": st.get("revenue", 0) - st.get("refunded", 0), "gross_revenue": st.get("revenue", 0),
        "refunded": st.get("refunded", 0), "refunds_failed": st.get("refunds_failed", 0),
        "orders": orders, "cancellations": cancellations, "cancellation_rate": _ratio(cancellations, orders),
        "checked_in": st.get("checked_in", 0),
        "tickets": st.get("tickets_issued", 0) - st.get("tickets_voided", 0),
        "sales_by_day": [{"date": day, "orders": v.get("orders", 0), "seats": v.get("seats", 0),
                          "revenue": v.get("revenue", 0), "refunded": v.get("refunded", 0),
                          "cancellations": v.get("cancellations", 0)}
                         for day, v in by_day],
    }


def by_currency(doc: dict[str, Any], field: str) -> dict[str, int]:
    """``{currency: amount}`` of one money field of an analytics rollup (``revenue_EUR``: projectors/projection.py
    ``currency_key``), currencies in order."""
    prefix = field + "_"
    return {k[len(prefix):]: v for k, v in sorted(doc.items()) if k.startswith(prefix) and len(k) == len(prefix) + 3}


def net(doc: dict[str, Any]) -> dict[str, int]:
    """Revenue net of refunds, per currency: confirmed orders' totals minus the refunds that succeeded."""
    gross, refunded = by_currency(doc, "revenue"), by_currency(doc, "refunded")
    return {c: gross.get(c, 0) - refunded.get(c, 0) for c in sorted(set(gross) | set(refunded))}


async def admin_analytics(db: AsyncDatabase, days: int, top: int) -> dict[str, Any]:
    total = await db.analytics.find_one({"_id": "total"}, {"wm": 0, "cv": 0}) or {}
    daily = await db.analytics.find({"_id": {"$regex": "^day:"}}, {"wm": 0, "cv": 0}) \
        .sort([("date", DESCENDING)]).limit(days).to_list(None)
    capacity = sold = 0
    async for e in db.events.find({"status": "on_sale"}, {"capacity": 1, "sold": 1}):
        capacity += e.get("capacity", 0)
        sold += e.get("sold", 0)
    popular = await db.events.find({"status": "on_sale", "sold": {"$gt": 0}},
                                   {"title": 1, "sold": 1, "capacity": 1}) \
        .sort([("sold", DESCENDING), ("_id", ASCENDING)]).limit(top).to_list(None)
    orders, cancellations = total.get("orders", 0), total.get("cancellations", 0)
    return {
        "total_orders": orders,
        "total_seats_sold": total.get("seats", 0) - total.get("cancelled_seats", 0),
        "revenue": net(total),
        "refunded": by_currency(total, "refunded"),
        "refunds_failed": total.get("refunds_failed", 0),
        "cancellations": cancellations,
        "cancellation_rate": _ratio(cancellations, orders),
        "utilization": _ratio(sold, capacity),
        "most_popular": [{"event_id": e["_id"], "title": e.get("title"), "seats_sold": e.get("sold", 0),
                          "utilization": _ratio(e.get("sold", 0), e.get("capacity", 0))} for e in popular],
        "daily": [{"date": d.get("date"), "orders": d.get("orders", 0), "seats": d.get("seats", 0),
                   "revenue": by_currency(d, "revenue"), "refunded": by_currency(d, "refunded"),
                   "cancellations": d.get("cancellations", 0), "cancelled_seats": d.get("cancelled_seats", 0)}
                  for d in daily],
    }


async def admin_users(db: AsyncDatabase, role: str | None, q: str | None, page: int, page_size: int) -> dict[str, Any]:
    """Accounts, newest first: from the users read model, which never holds a password hash."""
    flt: dict[str, Any] = {}
    if role:
        flt["role"] = role
    if q:
        pattern = {"$regex": re.escape(q), "$options": "i"}
        flt["$or"] = [{"email": pattern}, {"name": pattern}]
    total = await db[rm.USERS].count_documents(flt)
    cursor = db[rm.USERS].find(flt, {"email": 1, "name": 1, "role": 1, "disabled": 1, "created_at": 1}) \
        .sort([("created_at", DESCENDING), ("_id", ASCENDING)]).skip((page - 1) * page_size).limit(page_size)
    items = [{"id": d["_id"], "email": d["email"], "name": d["name"], "role": d["role"],
              "disabled": bool(d.get("disabled")), "created_at": d["created_at"]} async for d in cursor]
    return {"items": items, "page": page, "page_size": page_size, "total": total}
