"""Consistency checker: ``python -m projectors.check [--event ID ...] [--settle SECONDS] [--no-global]``.

Compares the MongoDB read models with the truth in PostgreSQL and exits 1 with a readable diff when
they diverge (0 when they agree, 2 when it cannot run):

- per event: status; held/sold/available per section and in total (``events.counts``); every
  seat's status in the seat map; every order (status, version, total, buyer, payment status, refund status and
  amount) in ``orders``; the organizer stats (confirmed orders, their seats and revenue, refunds that succeeded,
  refunds that failed, cancellations of confirmed orders, per day); every waitlist entry (status, version, seq,
  buyer) in ``waitlist``; every ticket (status, version, order, buyer) in ``tickets``;
- globally (unless ``--event`` or ``--no-global``): the analytics total and each daily rollup.

The projection is asynchronous, so ``--settle S`` re-checks for up to S seconds until the models agree
(a real divergence never settles). Events that exist only in MongoDB (no PostgreSQL row) are ignored.
"""
from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from typing import Any, Iterable

import psycopg
from psycopg.rows import dict_row
from pymongo import MongoClient

from common.settings import Settings, get_settings
from projectors import projection as P
from projectors.projection import CODE_STATUS

STAT_KEYS = ("orders", "seats", "revenue", "refunded", "refunds_failed", "cancellations", "cancelled_seats")
ORDER_KEYS = ("status", "version", "total", "buyer_id", "event_id", "payment_status", "refund_status", "refund_amount")
DAY = "to_char({} AT TIME ZONE 'UTC', 'YYYY-MM-DD')"
# What PostgreSQL says the projector counts (projection.order_stats): an order counts once confirmed (confirmed_at:
# migration 0010 set it for every order written before payments), on that day; a cancellation of a confirmed order
# on its cancelled_at day; a refund on its order's cancelled_at day (a refund of an order never confirmed is not
# money that was counted: only its failure is).
ORDERS_SQL = (f"SELECT o.id::text, o.event_id::text, o.buyer_id::text, o.status, o.version, o.total, o.quantity, "
              f"o.currency, o.payment_status, o.confirmed_at IS NOT NULL AS confirmed, {DAY.format('o.confirmed_at')} "
              f"AS day, {DAY.format('o.cancelled_at')} AS cday, {DAY.format('coalesce(o.cancelled_at, r.updated_at)')}"
              f" AS rday, r.status AS refund_status, r.amount AS refund_amount "
              f"FROM orders o LEFT JOIN refunds r ON r.order_id = o.id")


def _chunks(xs: list[Any], n: int = 500) -> Iterable[list[Any]]:
    for i in range(0, len(xs), n):
        yield xs[i:i + n]


def _docs_by_id(collection, ids: list[str], fields: dict[str, int]) -> dict[str, Any]:
    """The documents of ``ids``. FerretDB 1.24 answers an ``_id: {$in}`` query by scanning the collection,
    so many ids are read in ONE scan (filtered here) rather than one scan per 500 ids."""
    if len(ids) <= 2000:
        parts = [collection.find({"_id": {"$in": part}}, fields) for part in _chunks(ids)]
        return {d["_id"]: d for cursor in parts for d in cursor}
    wanted = set(ids)
    return {d["_id"]: d for d in collection.find({}, fields) if d["_id"] in wanted}


def pg_truth(conn: psycopg.Connection, event_ids: list[str] | None) -> dict[str, Any]:
    where, args = ("WHERE event_id = ANY(%s::uuid[])", [event_ids]) if event_ids else ("", [])
    ev_where = "WHERE id = ANY(%s::uuid[])" if event_ids else ""
    truth: dict[str, Any] = {"events": {}, "seats": defaultdict(dict), "counts": defaultdict(lambda: defaultdict(
        lambda: {"held": 0, "sold": 0, "capacity": 0})), "orders": {}, "stats": defaultdict(lambda: _stats()),
        "waitlist": {}, "tickets": {}}
    with conn.cursor(row_factory=dict_row) as cur:
        for r in cur.execute(f"SELECT id::text, status, title FROM events {ev_where}", args):
            truth["events"][r["id"]] = r
        for r in cur.execute(f"SELECT event_id::text, seat_id, status FROM seats {where}", args):
            truth["seats"][r["event_id"]][r["seat_id"]] = r["status"]
            c = truth["counts"][r["event_id"]][r["seat_id"].split("-", 1)[0]]
            c["capacity"] += 1
            if r["status"] in ("held", "sold"):
                c[r["status"]] += 1
        for r in cur.execute(f"SELECT event_id::text, section, capacity, held, sold FROM ga_sections {where}", args):
            truth["counts"][r["event_id"]][r["section"]] = {"held": r["held"], "sold": r["sold"],
                                                              "capacity": r["capacity"]}
        for r in cur.execute(ORDERS_SQL + (" WHERE o.event_id = ANY(%s::uuid[])" if event_ids else ""), args):
            truth["orders"][r["id"]] = r
            _, inc = order_increments(r)
            for d, i in inc:
                _add(truth["stats"][r["event_id"]], d, **i)
        for r in cur.execute(f"SELECT id::text, event_id::text, buyer_id::text, status, version, seq "
                             f"FROM waitlist_entries {where}", args):
            truth["waitlist"][r["id"]] = r
        for r in cur.execute(f"SELECT id::text, event_id::text, order_id::text, buyer_id::text, status, version "
                             f"FROM tickets {where}", args):
            truth["tickets"][r["id"]] = r
    return truth


def order_increments(r: dict[str, Any]) -> tuple[str, list[tuple[str, dict[str, int]]]]:
    """(currency, [(day, stat increments)]) of one PostgreSQL order row (ORDERS_SQL)."""
    out: list[tuple[str, dict[str, int]]] = []
    if r["confirmed"]:
        out.append((r["day"], {"orders": 1, "seats": r["quantity"], "revenue": r["total"]}))
        if r["status"] == "cancelled":
            out.append((r["cday"], {"cancellations": 1, "cancelled_seats": r["quantity"]}))
        if r["refund_status"] == "succeeded":
            out.append((r["rday"], {"refunded": int(r["refund_amount"])}))
    if r["refund_status"] == "failed":
        out.append((r["rday"], {"refunds_failed": 1}))
    return r["currency"], out


def _stats() -> dict[str, Any]:
    return {**{k: 0 for k in STAT_KEYS}, "by_day": {}}


def _add(stats: dict[str, Any], day: str, **inc: int) -> None:
    for k, n in inc.items():
        stats[k] += n
        d = stats["by_day"].setdefault(day, {})
        d[k] = d.get(k, 0) + n


def compare_events(db, truth: dict[str, Any]) -> list[str]:
    diffs: list[str] = []
    ids = list(truth["events"])
    docs: dict[str, Any] = {}
    for part in _chunks(ids):
        for d in db.events.find({"_id": {"$in": part}}, {"status": 1, "title": 1, "counts": 1, "held": 1, "sold": 1,
                                                          "available": 1, "capacity": 1, "stats": 1}):
            docs[d["_id"]] = d
    seatmap: dict[str, dict[str, str]] = defaultdict(dict)
    for part in _chunks(ids, 200):
        for c in db.seatmap.find({"event_id": {"$in": part}}, {"event_id": 1, "section": 1, "row": 1, "st": 1}):
            for i, code in enumerate(c["st"]):
                seatmap[c["event_id"]][f"{c['section']}-{c['row']}-{i + 1}"] = CODE_STATUS[code]
    for eid in sorted(ids):
        pg_ev, doc = truth["events"][eid], docs.get(eid)
        if doc is None:
            diffs.append(f"event {eid}: missing from events (PostgreSQL: {pg_ev['status']} {pg_ev['title']!r})")
            continue
        if doc.get("status") != pg_ev["status"]:
            diffs.append(f"event {eid}: status mongo={doc.get('status')} pg={pg_ev['status']}")
        counts = doc.get("counts") or {}
        tot = {"held": 0, "sold": 0, "capacity": 0}
        for sec, c in sorted(truth["counts"].get(eid, {}).items()):
            m = counts.get(sec, {})
            for k in ("held", "sold"):
                tot[k] += c[k]
                if m.get(k) != c[k]:
                    diffs.append(f"event {eid} section {sec}: {k} mongo={m.get(k)} pg={c[k]}")
            tot["capacity"] += c["capacity"]
            if m.get("available") != c["capacity"] - c["held"] - c["sold"]:
                diffs.append(f"event {eid} section {sec}: available mongo={m.get('available')} "
                             f"pg={c['capacity'] - c['held'] - c['sold']}")
        if truth["counts"].get(eid):
            for k in ("held", "sold"):
                if doc.get(k) != tot[k]:
                    diffs.append(f"event {eid}: total {k} mongo={doc.get(k)} pg={tot[k]}")
            if doc.get("available") != tot["capacity"] - tot["held"] - tot["sold"]:
                diffs.append(f"event {eid}: total available mongo={doc.get('available')} "
                             f"pg={tot['capacity'] - tot['held'] - tot['sold']}")
        pg_seats, m_seats = truth["seats"].get(eid, {}), seatmap.get(eid, {})
        bad = [f"{s} mongo={m_seats.get(s, 'missing')} pg={st}" for s, st in sorted(pg_seats.items())
               if m_seats.get(s) != st]
        if bad:
            diffs.append(f"event {eid}: {len(bad)} seat(s) differ in the seat map: " + ", ".join(bad[:10])
                         + (" ..." if len(bad) > 10 else ""))
        want, got = truth["stats"].get(eid, _stats()), doc.get("stats") or {}
        for k in STAT_KEYS:
            if got.get(k, 0) != want[k]:
                diffs.append(f"event {eid}: stats.{k} mongo={got.get(k, 0)} pg={want[k]}")
        for day in sorted(set(want["by_day"]) | set(got.get("by_day", {}))):
            w, g = want["by_day"].get(day, {}), got.get("by_day", {}).get(day, {})
            for k in STAT_KEYS:
                if g.get(k, 0) != w.get(k, 0):
                    diffs.append(f"event {eid}: stats.by_day[{day}].{k} mongo={g.get(k, 0)} pg={w.get(k, 0)}")
    return diffs


def compare_documents(collection, rows: dict[str, dict[str, Any]], fields: tuple[str, ...], what: str,
                      where: str) -> list[str]:
    """Each PostgreSQL row of ``rows`` (id -> row) against its read-model document, field by field."""
    diffs: list[str] = []
    ids = list(rows)
    docs = _docs_by_id(collection, ids, {f: 1 for f in fields})
    for rid in sorted(ids):
        r, d = rows[rid], docs.get(rid)
        if d is None:
            diffs.append(f"{what} {rid} (event {r['event_id']}): missing from {where} (pg status {r['status']})")
            continue
        for k in fields:
            if d.get(k) != r[k]:
                diffs.append(f"{what} {rid}: {k} mongo={d.get(k)} pg={r[k]}")
    return diffs


def compare_orders(db, truth: dict[str, Any]) -> list[str]:
    """Each order's newest state: its status and version (``rank``: an order written before payments ranks by
    status, which migration 0010 made its version), its payment's status and its refund."""
    diffs: list[str] = []
    rows = truth["orders"]
    docs = _docs_by_id(db.orders, list(rows), {k: 1 for k in ("status", "rank", "total", "buyer_id", "event_id",
                                                               "payment", "refund")})
    for oid in sorted(rows):
        r, d = rows[oid], docs.get(oid)
        if d is None:
            diffs.append(f"order {oid} (event {r['event_id']}): missing from orders (pg status {r['status']})")
            continue
        payment, refund = d.get("payment") or {}, d.get("refund") or {}
        got = {"status": d.get("status"), "version": d.get("rank"), "total": d.get("total"),
               "buyer_id": d.get("buyer_id"), "event_id": d.get("event_id"), "payment_status": payment.get("status"),
               "refund_status": refund.get("status"), "refund_amount": refund.get("amount")}
        want = {**r, "refund_amount": None if r["refund_amount"] is None else int(r["refund_amount"])}
        for k in ORDER_KEYS:
            if got[k] != want[k]:
                diffs.append(f"order {oid}: {k} mongo={got[k]} pg={want[k]}")
    return diffs


def compare_waitlist(db, truth: dict[str, Any]) -> list[str]:
    return compare_documents(db.waitlist, truth["waitlist"], ("status", "version", "seq", "buyer_id"),
                             "waitlist entry", "waitlist")


def compare_tickets(db, truth: dict[str, Any]) -> list[str]:
    return compare_documents(db.tickets, truth["tickets"], ("status", "version", "order_id", "buyer_id"),
                             "ticket", "tickets")


def compare_global(db, conn: psycopg.Connection) -> list[str]:
    """The analytics rollups (the total and each day), with each currency's money (``revenue_EUR``...)."""
    diffs: list[str] = []
    days: dict[str, dict[str, int]] = defaultdict(lambda: {k: 0 for k in STAT_KEYS})
    with conn.cursor(row_factory=dict_row) as cur:
        for r in cur.execute(ORDERS_SQL):
            currency, inc = order_increments(r)
            for day, i in inc:
                d = days[day]
                for k, n in i.items():
                    d[k] += n
                    if k in P.MONEY_FIELDS:
                        key = P.currency_key(k, currency)
                        d[key] = d.get(key, 0) + n
    keys = set(STAT_KEYS).union(*[d.keys() for d in days.values()])
    total = {k: sum(d.get(k, 0) for d in days.values()) for k in keys}
    docs = {d["_id"]: d for d in db.analytics.find({})}

    def money_keys(doc: dict[str, Any]) -> set[str]:
        return {k for k in doc if k.startswith(tuple(f"{f}_" for f in P.MONEY_FIELDS))}

    got = docs.get("total", {})
    for k in sorted(keys | money_keys(got)):
        if got.get(k, 0) != total.get(k, 0):
            diffs.append(f"analytics total: {k} mongo={got.get(k, 0)} pg={total.get(k, 0)}")
    for day in sorted(set(days) | {i[4:] for i in docs if i.startswith("day:")}):
        w, g = days.get(day, {}), docs.get(f"day:{day}", {})
        for k in sorted(set(STAT_KEYS) | money_keys(w) | money_keys(g)):
            if g.get(k, 0) != w.get(k, 0):
                diffs.append(f"analytics day {day}: {k} mongo={g.get(k, 0)} pg={w.get(k, 0)}")
    return diffs


def check(settings: Settings, event_ids: list[str] | None = None, *, include_global: bool = True,
          db=None) -> list[str]:
    db = db if db is not None else MongoClient(settings.mongo_url, serverSelectionTimeoutMS=5000)[settings.mongo_db]
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        truth = pg_truth(conn, event_ids)
        if event_ids:
            missing = sorted(set(event_ids) - set(truth["events"]))
            diffs = [f"event {e}: not in PostgreSQL" for e in missing]
        else:
            diffs = []
        diffs += (compare_events(db, truth) + compare_orders(db, truth) + compare_waitlist(db, truth)
                  + compare_tickets(db, truth))
        if include_global and not event_ids:
            diffs += compare_global(db, conn)
    return diffs


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--event", action="append", help="check only this event (repeatable)")
    p.add_argument("--settle", type=float, default=0.0, help="re-check for up to this many seconds")
    p.add_argument("--no-global", action="store_true", help="skip the analytics rollups")
    p.add_argument("--mongo-db", help="read models database (default EVENTLY_MONGO_DB)")
    args = p.parse_args(argv)
    s = get_settings()
    db = MongoClient(s.mongo_url, serverSelectionTimeoutMS=5000)[args.mongo_db or s.mongo_db]
    deadline = time.monotonic() + args.settle
    try:
        while True:
            diffs = check(s, args.event, include_global=not args.no_global, db=db)
            if not diffs or time.monotonic() >= deadline:
                break
            time.sleep(0.5)
    except (psycopg.Error, Exception) as exc:  # noqa: BLE001 - a checker that cannot run says so
        print(f"check could not run: {exc!r}", file=sys.stderr)
        return 2
    scope = f"{len(args.event)} event(s)" if args.event else "all events"
    if diffs:
        print(f"read models DIVERGE from PostgreSQL ({scope}), {len(diffs)} difference(s):")
        for d in diffs:
            print("  - " + d)
        return 1
    print(f"read models match PostgreSQL ({scope})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
