"""Pure projection logic (no I/O): parsing outbox envelopes and folding batches into read-model state.

Everything here is deterministic in its inputs, so the store layer (projectors/store.py) can
re-run a fold after a compare-and-set conflict and the unit tests can check it without a stack.

Vocabulary:
- ``Msg``: one Kafka message, parsed and validated: position (``tp``, ``offset``) + envelope.
- ``tp``: "<topic with dots replaced>:<partition>", used as a field name in watermark maps
  (MongoDB field names must not contain dots).
- Watermark ``wm[tp]``: the highest offset of partition ``tp`` already folded into a document.
  A document only ever takes a message with ``offset > wm[tp]``; the watermark and the effect are
  written in ONE update, so a redelivered offset can never count twice.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from contracts import events as contract
from contracts import readmodels as rm
from contracts import seats

STATUS_CODE, CODE_STATUS = rm.STATUS_CODE, rm.CODE_STATUS
# An order written before payments has no ``version``: its status ranks instead (cancelled beats confirmed). Orders
# since payments carry a version that agrees with it (a free order is confirmed at v1, cancelled at v2).
ORDER_RANK = {"confirmed": 1, "cancelled": 2}
# What a release reason says the seats were before (event_cancelled does not say: the seat map tells). A
# pending_payment order's seats are held for its payment, so its failure, its window's end and its cancel release
# held seats; a confirmed order's cancel releases sold ones.
RELEASE_PRIOR = {"expired": "held", "cancelled": "held", "order_cancelled": "sold", "payment_failed": "held",
                 "payment_expired": "held"}
INVENTORY_TYPES = {"SeatsHeld", "SeatsReleased", "OrderConfirmed"}
# Every state of an order (the orders read model); OrderPlaced and OrderPaymentFailed move no inventory and no money.
ORDER_TYPES = frozenset({"OrderPlaced", "OrderConfirmed", "OrderPaymentFailed", "OrderPaymentSettled", "OrderCancelled",
                         "RefundUpdated"})
# Tickets (issue 14): the tickets read model, and the event's ticket counts (issued, voided, checked in).
TICKET_TYPES = frozenset({"TicketsIssued", "TicketsVoided", "TicketCheckedIn"})
# What the event counters fold besides inventory: the stats of cancellations, refunds and tickets.
STATS_TYPES = frozenset({"OrderCancelled", "RefundUpdated"}) | TICKET_TYPES
PAYMENT_FIELDS, REFUND_FIELDS = rm.ORDER_PAYMENT_FIELDS, rm.ORDER_REFUND_FIELDS
LIFECYCLE_TYPES = {"EventCreated", "EventUpdated", "EventPublished", "EventCancelled"}
WAITLIST_TYPES = {"WaitlistJoined", "WaitlistOffered", "OfferExpired", "WaitlistConverted", "WaitlistLeft"}
USER_TYPES = {"UserRegistered", "UserUpdated"}
# The waitlist read model keeps these entry fields (absolute state, EVENTS.md "waitlist entry").
ENTRY_FIELDS = ("event_id", "buyer_id", "section", "quantity", "seq", "status", "offer", "version",
                "created_at", "updated_at")
KNOWN_TYPES = frozenset(contract.DATA_MODELS)


class PoisonMessage(ValueError):
    """The message can never be applied (malformed, unknown shape): it goes to the dead-letter topic."""


def tp_name(topic: str, partition: int) -> str:
    return f"{topic.replace('.', '_')}:{partition}"


@dataclass
class Msg:
    topic: str
    partition: int
    offset: int
    env: dict[str, Any]
    occurred_ms: float | None = None
    kafka_ms: float | None = None  # the broker's append time (CreateTime set by Connect's producer)

    @property
    def tp(self) -> str:
        return tp_name(self.topic, self.partition)

    @property
    def type(self) -> str:
        return self.env["type"]

    @property
    def id(self) -> str:
        return self.env["id"]

    @property
    def aggregate_id(self) -> str:
        return self.env["aggregate_id"]

    @property
    def data(self) -> dict[str, Any]:
        return self.env["data"]

    @property
    def position(self) -> str:
        return f"{self.tp}:{self.offset}"


# --------------------------------------------------------------------------- validation
def _req(cond: bool, what: str) -> None:
    if not cond:
        raise PoisonMessage(what)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def split_seat(seat_id: Any) -> tuple[str, str, int]:
    """``"A-1-7"`` -> ``("A", "1", 7)`` (the grammar of contracts/seats.py); PoisonMessage for anything else."""
    parts = seats.parse(seat_id)
    _req(parts is not None, f"malformed seat id {seat_id!r}")
    return parts


def parse_time(s: Any) -> datetime:
    try:
        return datetime.fromisoformat(str(s).replace("Z", "+00:00"))
    except ValueError as exc:
        raise PoisonMessage(f"bad timestamp {s!r}") from exc


def validate(env: Any) -> dict[str, Any]:
    """Raise PoisonMessage unless ``env`` is an envelope we can apply (contracts/events.py; unknown types pass)."""
    try:
        return contract.validate(env)
    except contract.ValidationError as exc:
        kind = env.get("type") if isinstance(env, dict) else None
        where = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'payload'}: {e['msg']}" for e in exc.errors()[:5])
        raise PoisonMessage(f"malformed {kind or 'envelope'}: {where}"[:1000]) from None
    except ValueError as exc:
        raise PoisonMessage(str(exc)) from None


def occurred_ms(env: dict[str, Any]) -> float | None:
    try:
        return parse_time(env.get("occurred_at")).timestamp() * 1000
    except PoisonMessage:
        return None


# --------------------------------------------------------------------------- catalog documents
def event_static(data: dict[str, Any]) -> dict[str, Any]:
    """The catalog/detail document fields taken from an event document (EventCreated/EventUpdated)."""
    doc = {k: v for k, v in data.items() if k not in ("seats", "id", "changed")}
    sections = [{k: v for k, v in s.items() if k != "rows"} for s in data.get("sections", [])]
    doc["sections"] = sections
    prices = [p for p in (data.get("prices") or {}).values() if _is_int(p)]
    if prices:
        doc["price_min"], doc["price_max"] = min(prices), max(prices)
    doc.setdefault("status", "draft")
    doc.setdefault("version", 1)
    for k in ("sale_starts_at", "max_per_buyer", "waiting_room"):  # a control turned off is absent: clear it
        doc.setdefault(k, None)
    return doc


def initial_counters(data: dict[str, Any]) -> dict[str, Any]:
    sections = data.get("sections", [])
    counts = {s["code"]: {"kind": s.get("kind", "seated"), "capacity": s.get("capacity", 0), "held": 0, "sold": 0,
                          "available": s.get("capacity", 0), "v": 1} for s in sections}
    capacity = sum(s.get("capacity", 0) for s in sections) if sections else data.get("capacity", 0)
    return {"counts": counts, "capacity": capacity, "held": 0, "sold": 0, "available": capacity,
            "stats": empty_stats(), "wm": {}, "cv": 0}


def empty_stats() -> dict[str, Any]:
    return {"orders": 0, "seats": 0, "revenue": 0, "refunded": 0, "refunds_failed": 0, "cancellations": 0,
            "cancelled_seats": 0, "tickets_issued": 0, "tickets_voided": 0, "checked_in": 0, "by_day": {}}


def event_seat_rows(data: dict[str, Any]) -> dict[tuple[str, str], int]:
    """(section, row) -> seats in that row, for an EventCreated: from its sections' rows, or from the ``seats``
    list that messages written before the layout-only payload carried."""
    if data.get("seats"):
        return seat_rows(data["seats"])
    return {(s["code"], r["label"]): r["seats"] for s in data.get("sections", []) if s.get("kind") == "seated"
            for r in s.get("rows") or ()}


def seat_rows(seat_ids: list[str]) -> dict[tuple[str, str], int]:
    """(section, row) -> seats in that row (the highest seat number)."""
    rows: dict[tuple[str, str], int] = {}
    for sid in seat_ids:
        sec, row, n = split_seat(sid)
        rows[(sec, row)] = max(rows.get((sec, row), 0), n)
    return rows


chunk_id = rm.chunk_id


def new_chunk(event_id: str, section: str, row: str, n: int) -> dict[str, Any]:
    return {"_id": chunk_id(event_id, section, row), "event_id": event_id, "section": section, "row": row,
            "st": ["a"] * n, "v": [1] * n, "p": ["a"] * n, "cv": 0}


# --------------------------------------------------------------------------- folds
def fold_chunk(chunk: dict[str, Any], changes: list[tuple[Msg, dict[str, Any]]]) -> tuple[dict[str, Any], dict, bool]:
    """Apply seat changes (in log order) to one seat-map chunk; newer version wins per seat.

    Returns (new chunk fields {st, v, p}, prior, changed) where prior[(topic-partition, offset, seat_id)] is the
    status a seat had right before the change at ``offset`` (for release reasons that do not say).
    """
    st, v, p = list(chunk["st"]), list(chunk["v"]), list(chunk["p"])
    prior: dict[tuple[str, int, str], str] = {}
    changed = False
    for msg, ch in changes:
        _, _, n = split_seat(ch["seat_id"])
        i = n - 1
        while i >= len(st):  # a seat beyond the announced row: grow (never expected, never fatal)
            st.append("a"), v.append(1), p.append("a")
        new_v, new_s = ch["version"], STATUS_CODE[ch["status"]]
        if v[i] == new_v - 1:
            prior[(msg.tp, msg.offset, ch["seat_id"])] = CODE_STATUS[st[i]]
        elif v[i] == new_v:
            prior[(msg.tp, msg.offset, ch["seat_id"])] = CODE_STATUS[p[i]]
        if new_v > v[i]:
            p[i], st[i], v[i] = st[i], new_s, new_v
            changed = True
    return {"st": st, "v": v, "p": p}, prior, changed


def _day(ts: str) -> str:
    return parse_time(ts).date().isoformat()


def _qty(order: dict[str, Any]) -> int:
    return len(order["seats"]) if isinstance(order.get("seats"), list) else int(order.get("quantity", 0))


def _add_stats(stats: dict[str, Any], day_key: str, **inc: int) -> None:
    for k, n in inc.items():
        stats[k] = stats.get(k, 0) + n
    if day_key:
        day = stats.setdefault("by_day", {}).setdefault(day_key, {})
        for k, n in inc.items():
            day[k] = day.get(k, 0) + n


def was_confirmed(order: dict[str, Any]) -> bool:
    """Whether the order had been confirmed (sold, counted in ``orders`` and revenue): it says when, or it has no
    payment (written before payments, when every order was confirmed at once; a free order says when too)."""
    return order.get("confirmed_at") is not None or order.get("payment") is None


def order_stats(msg: Msg) -> tuple[str, dict[str, int]] | None:
    """(day, increments) that an order message adds to stats and daily rollups; None when it moves no money.

    - OrderConfirmed: an order (its seats, its total as gross revenue) on the day it was confirmed;
    - OrderCancelled of an order that had been confirmed: a cancellation on its ``cancelled_at`` day (a
      pending_payment order cancelled was never counted, so it is not taken back);
    - RefundUpdated: a refund that ``succeeded`` for an order that had been confirmed gives its amount back
      (``refunded``; revenue net = revenue - refunded), on the order's ``cancelled_at`` day; one that ``failed`` is
      counted in ``refunds_failed``. A refund of a payment that never confirmed its order (it succeeded after the
      order failed or its seats were resold) returns money that was never counted: it adds nothing to ``refunded``.
    OrderPlaced and OrderPaymentFailed add nothing: an order counts once confirmed."""
    if msg.type in TICKET_TYPES:
        return ticket_stats(msg)
    order = msg.data.get("order") or {}
    if msg.type == "OrderConfirmed":
        return _day(order.get("confirmed_at") or order["created_at"]), {
            "orders": 1, "seats": _qty(order), "revenue": order["total"]}
    if msg.type == "OrderCancelled" and was_confirmed(order):
        return _day(order.get("cancelled_at") or msg.env.get("occurred_at")), {
            "cancellations": 1, "cancelled_seats": _qty(order)}
    if msg.type == "RefundUpdated":
        refund = order.get("refund") or {}
        day = _day(order.get("cancelled_at") or msg.env.get("occurred_at"))
        if refund.get("status") == "succeeded" and was_confirmed(order):
            return day, {"refunded": refund["amount"]}
        if refund.get("status") == "failed":
            return day, {"refunds_failed": 1}
    return None


def ticket_stats(msg: Msg) -> tuple[str, dict[str, int]]:
    """Tickets issued and voided (check-in progress: checked in of issued - voided), and check-ins by day."""
    if msg.type == "TicketCheckedIn":
        return _day(msg.data["ticket"]["checked_in_at"]), {"checked_in": 1}
    day = _day(msg.env.get("occurred_at") or msg.data["tickets"][0].get("checked_in_at"))
    n = len(msg.data["tickets"])
    return (day, {"tickets_issued": n}) if msg.type == "TicketsIssued" else (day, {"tickets_voided": n})


def ticket_doc(ticket: dict[str, Any]) -> dict[str, Any]:
    """The tickets read-model fields of a ticket state: every field written (absent ones as null), so a ``$set``
    of a newer state leaves nothing of an older one behind."""
    return {k: ticket.get(k) for k in rm.TICKET_FIELDS}


def fold_tickets(msgs: list[Msg]) -> dict[str, dict[str, Any]]:
    """ticket id -> its newest state in this batch (highest ticket ``version``, whatever the order)."""
    out: dict[str, dict[str, Any]] = {}
    for msg in msgs:
        if msg.type not in TICKET_TYPES:
            continue
        for t in ([msg.data["ticket"]] if msg.type == "TicketCheckedIn" else msg.data["tickets"]):
            cur = out.get(t["id"])
            if cur is None or t["version"] > cur["version"]:
                out[t["id"]] = ticket_doc(t)
    return out


MONEY_FIELDS = rm.ANALYTICS_MONEY_FIELDS  # kept per currency in the analytics rollups
NO_CURRENCY = "XXX"  # ISO 4217's "no currency": an order event from before payloads carried one


def currency_key(field: str, currency: str | None) -> str:
    """The analytics field of one currency's money: ``revenue_EUR``, ``refunded_USD``. Flat numeric
    fields, so the rollups fold them like every other counter (contracts/readmodels.py ANALYTICS)."""
    return f"{field}_{currency or NO_CURRENCY}"


def rollup_increments(msg: Msg) -> tuple[str, dict[str, int]] | None:
    """``order_stats`` plus each amount under its currency: the analytics rollups span events (and so
    currencies), where one event's stats are in that event's currency."""
    os_ = order_stats(msg)
    if os_ is None:
        return None
    day, inc = os_
    currency = (msg.data.get("order") or {}).get("currency")
    money = {currency_key(k, currency): n for k, n in inc.items() if k in MONEY_FIELDS}
    return day, {**inc, **money}


def fold_event_counters(state: dict[str, Any], msgs: list[Msg], prior: dict[tuple[str, int, str], str],
                        cancelled_order_seats: set[str] | None = None) -> tuple[dict[str, Any], bool]:
    """Fold an event's inventory/order messages (log order) into its counters and stats.

    ``state`` = {counts, capacity, held, sold, available, stats, wm}; messages at or below the
    document's watermark for their partition are skipped. Returns (new state, changed).
    """
    counts = {k: dict(v) for k, v in state["counts"].items()}
    stats = {**state.get("stats", empty_stats())}
    stats["by_day"] = {d: dict(x) for d, x in stats.get("by_day", {}).items()}
    wm = dict(state.get("wm", {}))
    sold_by_order = set(cancelled_order_seats or ())
    changed = False
    for msg in msgs:
        if msg.offset <= wm.get(msg.tp, -1):
            continue
        wm[msg.tp] = msg.offset
        changed = True
        d, t = msg.data, msg.type
        if t == "OrderCancelled" and isinstance(d["order"].get("seats"), list) and was_confirmed(d["order"]):
            sold_by_order.update(d["order"]["seats"])  # a pending_payment order's seats were held, not sold
        os_ = order_stats(msg)
        if os_:
            _add_stats(stats, os_[0], **os_[1])
        if t not in INVENTORY_TYPES:
            continue
        for ch in d.get("seats", []):
            sec = split_seat(ch["seat_id"])[0]
            c = counts.setdefault(sec, {"kind": "seated", "capacity": 0, "held": 0, "sold": 0, "v": 1})
            new = ch["status"]
            if t == "SeatsHeld":
                old = "available"
            elif t == "OrderConfirmed":
                old = "held"
            else:
                old = RELEASE_PRIOR.get(d["reason"]) or prior.get((msg.tp, msg.offset, ch["seat_id"])) or (
                    "sold" if ch["seat_id"] in sold_by_order else "held")
            if old == new:
                continue
            if old in ("held", "sold"):
                c[old] -= 1
            if new in ("held", "sold"):
                c[new] += 1
        for g in d.get("ga_sections", []):
            c = counts.setdefault(g["section"], {"kind": "ga", "capacity": g["capacity"], "held": 0, "sold": 0, "v": 0})
            if g["version"] > c.get("v", 0):
                c.update(capacity=g["capacity"], held=g["held"], sold=g["sold"], v=g["version"])
    for c in counts.values():
        c["available"] = c.get("capacity", 0) - c["held"] - c["sold"]
    held = sum(c["held"] for c in counts.values())
    sold = sum(c["sold"] for c in counts.values())
    capacity = state.get("capacity") or sum(c.get("capacity", 0) for c in counts.values())
    return {"counts": counts, "capacity": capacity, "held": held, "sold": sold, "available": capacity - held - sold,
            "stats": stats, "wm": wm}, changed


def fold_rollup(state: dict[str, Any], items: list[tuple[Msg, dict[str, int]]]) -> tuple[dict[str, Any], bool]:
    """Fold order increments into one analytics document (a day or the grand total), watermark-guarded."""
    new = {k: v for k, v in state.items() if k not in ("_id", "cv")}
    wm = dict(new.get("wm", {}))
    changed = False
    for msg, inc in items:
        if msg.offset <= wm.get(msg.tp, -1):
            continue
        wm[msg.tp] = msg.offset
        changed = True
        for k, n in inc.items():
            new[k] = new.get(k, 0) + n
    new["wm"] = wm
    return new, changed


def order_rank(order: dict[str, Any]) -> int:
    """Newest wins: the order's ``version``, or for an order written before payments its status rank."""
    v = order.get("version")
    return v if _is_int(v) else ORDER_RANK.get(order["status"], 1)


def order_doc(order: dict[str, Any]) -> dict[str, Any]:
    """The orders read-model fields of an order state (``_id`` apart): the order document, its payment and refund
    as the API shows them, ``quantity`` and ``rank``."""
    doc = {k: v for k, v in order.items() if k not in ("id", "payment", "refund")}
    for name, fields in (("payment", PAYMENT_FIELDS), ("refund", REFUND_FIELDS)):
        if order.get(name):
            doc[name] = {k: order[name][k] for k in fields if order[name].get(k) is not None}
    doc["rank"] = order_rank(order)
    doc["quantity"] = _qty(order)
    return doc


def fold_orders(msgs: list[Msg]) -> dict[str, dict[str, Any]]:
    """order id -> its newest state in this batch (highest ``rank``, whatever the order of the messages)."""
    out: dict[str, dict[str, Any]] = {}
    for msg in msgs:
        if msg.type not in ORDER_TYPES:
            continue
        order = msg.data["order"]
        cur = out.get(order["id"])
        if cur is None or order_rank(order) > cur["rank"]:
            out[order["id"]] = order_doc(order)
    return out


def entry_doc(entry: dict[str, Any]) -> dict[str, Any]:
    """The waitlist read-model fields of an entry. Every field is written, absent ones as null: the entry is
    an absolute state, so a ``$set`` must clear an offer that is gone (Debezium drops null fields)."""
    doc = {k: entry.get(k) for k in ENTRY_FIELDS}
    offer = entry.get("offer")
    doc["offer"] = {"hold_id": offer["hold_id"], "expires_at": offer["expires_at"]} if offer else None
    return doc


def fold_users(msgs: list[Msg]) -> dict[str, dict[str, Any]]:
    """user id -> the newest account document of the batch (whole documents with a version; never a password
    hash), for the users read model."""
    newest: dict[str, dict[str, Any]] = {}
    for m in msgs:
        doc = {k: v for k, v in m.data.items() if k != "id"}
        if m.aggregate_id not in newest or newest[m.aggregate_id]["version"] < doc["version"]:
            newest[m.aggregate_id] = doc
    return newest


def fold_waitlist(msgs: list[Msg]) -> dict[str, dict[str, Any]]:
    """entry id -> its newest state in this batch (highest entry ``version`` wins, whatever the order)."""
    out: dict[str, dict[str, Any]] = {}
    for msg in msgs:
        if msg.type not in WAITLIST_TYPES:
            continue
        entry = msg.data["entry"]
        cur = out.get(entry["id"])
        if cur is None or entry["version"] > cur["version"]:
            out[entry["id"]] = entry_doc(entry)
    return out


@dataclass
class FeedEntry:
    event_id: str
    offset: int
    changes: list[dict[str, Any]] = field(default_factory=list)
    occurred_ms: float | None = None


def feed_changes(msgs: list[Msg], counts_after: dict[str, Any] | None, after_offset: int) -> list[dict[str, Any]]:
    """The seat-feed ``changes`` of one event's messages past ``after_offset``: last state per seat, in order,
    and each touched GA section's availability."""
    seats: dict[str, str] = {}
    ga: dict[str, int] = {}
    for msg in msgs:
        if msg.offset <= after_offset or msg.type not in INVENTORY_TYPES:
            continue
        for ch in msg.data.get("seats", []):
            seats.pop(ch["seat_id"], None)
            seats[ch["seat_id"]] = ch["status"]
        for g in msg.data.get("ga_sections", []):
            ga[g["section"]] = g["capacity"] - g["held"] - g["sold"]
    out: list[dict[str, Any]] = [{"seat": s, "status": st} for s, st in seats.items()]
    for sec, avail in ga.items():
        if counts_after and sec in counts_after:  # the read model's view (newest version) wins
            avail = counts_after[sec].get("available", avail)
        out.append({"section": sec, "available": avail})
    return out
