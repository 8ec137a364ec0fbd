"""The read-model store: applies a batch of parsed messages to MongoDB (FerretDB) and the seat feed.

No multi-document transactions exist here, so every document is kept exact on its own:
- one update per document per batch (the fold happens in memory, see projection.py);
- every counter document carries its own per-partition offset watermark (``wm``) and is written
  with compare-and-set on a document counter (``cv``): the watermark and the counters move together,
  a redelivered offset is skipped, a concurrent writer (a replay) makes the CAS fail and we re-read;
- seats carry their row version (newest wins), orders their ``rank`` (the order version; an order written
  before payments ranks by status, cancelled beats confirmed), waitlist entries their entry version;
- Debezium re-sends (same outbox id at a new offset) are dropped by the ``applied`` claims.

FerretDB executes a multi-statement bulk update very slowly, so writes are single ``update_one`` calls
run from a small thread pool; new documents go in with ``insert_many``.
"""
from __future__ import annotations

import json
import time
from collections import defaultdict, deque
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterable

import structlog
from pymongo.database import Database
from pymongo.errors import BulkWriteError, DuplicateKeyError

from contracts import keys
from contracts import readmodels as rm
from contracts.readmodels import ensure_indexes  # noqa: F401 - the workers and tests import it from here
from projectors import projection as P
from projectors.projection import Msg

log = structlog.get_logger("projector.store")

READ_MODEL_COLLECTIONS = list(rm.COLLECTIONS)
TOTAL_ID = "total"
CACHE_LIMIT = 200_000

# One entry per event per batch. ``prev`` is the ``off`` of the entry it follows: a reader that delivered off N and
# then sees prev != N knows the stream lost entries in between (Redis lost data, or a FLUSHALL recreated it) and
# resets its clients (query_service/feed.py) instead of leaving them a silent gap. On an empty stream ``prev`` is
# ARGV[7]: keys.FEED_PREV_FIRST for the event's first entry, keys.FEED_PREV_LOST when the event had entries before.
FEED_LUA = """
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local prev = ARGV[7]
if last[1] then
  local f = last[1][2]
  for i = 1, #f, 2 do
    if f[i] == 'off' then
      if tonumber(f[i + 1]) >= tonumber(ARGV[1]) then return false end
      prev = f[i + 1]
    end
  end
end
return redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', 'off', ARGV[1], 'prev', prev, 'data', ARGV[3],
                  'rm', ARGV[4], 'occ', ARGV[5], 'k', ARGV[6])
"""

feed_key = keys.seat_feed


def insert_new(collection, docs: list[dict[str, Any]]) -> set[int]:
    """Insert documents that may already exist (unordered ``insert_many``, fast on FerretDB).
    Returns the indexes of those that did (duplicate key); any other write error is raised."""
    try:
        collection.insert_many(docs, ordered=False)
    except BulkWriteError as exc:
        errors = exc.details.get("writeErrors", [])
        if any(e.get("code") != 11000 for e in errors):
            raise
        return {e["index"] for e in errors}
    return set()

class Store:
    def __init__(self, db: Database, redis: Any = None, *, threads: int = 8, feed_maxlen: int = 10_000,
                 on_feed: Callable[[Msg, float], None] | None = None) -> None:
        self.db = db
        self.redis = redis
        self.feed_maxlen = feed_maxlen
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="store")
        self.stages = ThreadPoolExecutor(max_workers=5, thread_name_prefix="stage")  # the stages of apply()
        self._feed = redis.register_script(FEED_LUA) if redis is not None else None
        self.counters: dict[str, dict[str, Any]] = {}  # event id -> {counts..., wm, cv}
        self.chunks: dict[str, dict[str, Any]] = {}    # seat-map chunk id -> {st, v, p, cv}
        self.rollups: dict[str, dict[str, Any]] = {}   # analytics doc id -> state incl. cv
        self.event_info: dict[str, dict[str, Any]] = {}  # event id -> {title, starts_at}
        self.cas_conflicts = 0
        self.duplicates = 0
        self.memory_claims: dict[str, str] | None = None  # replay mode, see _claim_in_memory
        self.claim_window_ms = 0.0
        self._claim_tails: dict[str, deque[tuple[float, str, str]]] = {}  # partition -> (kafka ms, id, position)

    def forget(self) -> None:
        """Drop every cache (partitions were revoked: another writer may own them now)."""
        for c in (self.counters, self.chunks, self.rollups, self.event_info):
            c.clear()

    def _trim(self) -> None:
        for c in (self.counters, self.chunks, self.rollups, self.event_info):
            if len(c) > CACHE_LIMIT:
                c.clear()

    def _insert_new_in_chunks(self, collection, docs: list[dict[str, Any]], chunk: int = 500) -> set[int]:
        """``insert_new`` in chunks run side by side: FerretDB inserts one chunk on one connection (one
        PostgreSQL backend), so a large batch of new documents (a rebuild's orders) would use one core."""
        if len(docs) <= chunk:
            return insert_new(collection, docs)
        starts = range(0, len(docs), chunk)
        failed = self._parallel(lambda i: {i + j for j in insert_new(collection, docs[i:i + chunk])}, starts)
        return set().union(*failed)

    def _insert_missing(self, collection, docs: list[dict[str, Any]]) -> set[int]:
        """Like ``_insert_new_in_chunks``, but looks up which documents already exist first and inserts only
        the others. For collections whose documents normally change after their insert (orders, waitlist
        entries): a blind insert would fail on every existing one, and FerretDB's PostgreSQL backend logs each
        of those failures as a ``duplicate key`` ERROR, which buried real errors in the PostgreSQL log.
        A document inserted between the lookup and the insert (a concurrent writer) still comes back as a
        duplicate, so the result is the same either way."""
        ids = [d["_id"] for d in docs]
        existing: set[Any] = set()
        for i in range(0, len(ids), 500):
            existing.update(d["_id"] for d in collection.find({"_id": {"$in": ids[i:i + 500]}}, {"_id": 1}))
        new = [i for i, d in enumerate(docs) if d["_id"] not in existing]
        failed = self._insert_new_in_chunks(collection, [docs[i] for i in new]) if new else set()
        return {i for i, d in enumerate(docs) if d["_id"] in existing} | {new[j] for j in failed}

    def _parallel(self, fn: Callable[[Any], Any], items: Iterable[Any]) -> list[Any]:
        items = list(items)
        if len(items) <= 1:
            return [fn(i) for i in items]
        return list(self.pool.map(fn, items))

    # ------------------------------------------------------------------ the batch
    def apply(self, msgs: list[Msg]) -> tuple[list[Msg], float]:
        """Apply validated messages (in log order per partition). Returns (applied msgs, read-model done time).

        1. venues and event lifecycle (EventCreated makes the seat-map rows the next step writes);
        2. concurrently: the ``applied`` claims, the seat map (version-guarded), the orders (rank-guarded) and
           the waitlist (version-guarded): the last three are safe against Debezium re-sends by themselves;
        3. concurrently, without the re-sends: event counters/stats and analytics rollups (watermark CAS);
        4. the live seat feed, once the read models have the changes (notifications: projectors/notifier.py).
        """
        if not msgs:
            return [], time.time()
        venues = [m for m in msgs if m.type == "VenueCreated"]
        lifecycle = [m for m in msgs if m.type in P.LIFECYCLE_TYPES]
        if venues or lifecycle:
            self.apply_venues(venues)
            self.apply_lifecycle(lifecycle)
        inventory = [m for m in msgs if m.type in P.INVENTORY_TYPES]
        orders = [m for m in msgs if m.type in P.ORDER_TYPES]
        claims_f = self.stages.submit(self.claim, msgs)
        seats_f = self.stages.submit(self.apply_seats, inventory)
        orders_f = self.stages.submit(self.apply_orders, orders)
        waitlist_f = self.stages.submit(self.apply_waitlist, [m for m in msgs if m.type in P.WAITLIST_TYPES])
        users_f = self.stages.submit(self.apply_users, [m for m in msgs if m.type in P.USER_TYPES])
        tickets_f = self.stages.submit(self.apply_tickets, [m for m in msgs if m.type in P.TICKET_TYPES])
        msgs = claims_f.result()
        keep = {id(m) for m in msgs}
        per_event: dict[str, list[Msg]] = defaultdict(list)
        for m in msgs:
            if m.type in P.INVENTORY_TYPES or m.type in P.STATS_TYPES:
                per_event[m.aggregate_id].append(m)
        # The counters need the seats' prior states only for releases that do not say what they
        # release (event cancellation); otherwise they do not wait for the seat map.
        needs_prior = any(m.type == "SeatsReleased" and m.data.get("reason") not in P.RELEASE_PRIOR
                          for m in inventory)
        prior = seats_f.result() if needs_prior else {}
        rollups_f = self.stages.submit(self.apply_rollups, [m for m in orders if id(m) in keep])
        feeds = self._parallel(lambda kv: self.apply_event_counters(kv[0], kv[1], prior), per_event.items())
        for f in (seats_f, orders_f, waitlist_f, users_f, tickets_f, rollups_f):
            f.result()
        done = time.time()
        if self.redis is not None:
            self._parallel(lambda f: self.append_feed(*f, done), [f for f in feeds if f])
        self._trim()
        return msgs, done

    # ------------------------------------------------------------------ dedupe of Debezium re-sends
    def claim(self, msgs: list[Msg]) -> list[Msg]:
        """Record each outbox id with its position; an id already recorded at ANOTHER position is a
        Debezium re-send (at-least-once from Connect) and is dropped. The same position again is a Kafka
        redelivery: it goes through, and the per-document guards make it a no-op where it was applied."""
        if not msgs:
            return []
        if self.memory_claims is not None:
            return self._claim_in_memory(msgs)
        dup_idx = insert_new(self.db.applied, [{"_id": m.id, "at": m.position} for m in msgs])
        if not dup_idx:
            return msgs
        ids = list({msgs[i].id for i in dup_idx})
        at = {}
        for i in range(0, len(ids), 500):
            at.update({d["_id"]: d["at"] for d in self.db.applied.find({"_id": {"$in": ids[i:i + 500]}})})
        drop = {i for i in dup_idx if at.get(msgs[i].id, msgs[i].position) != msgs[i].position}
        if drop:
            self.duplicates += len(drop)
            log.info("dropped re-sent outbox events", count=len(drop),
                     ids=[msgs[i].id for i in sorted(drop)][:5])
        return [m for i, m in enumerate(msgs) if i not in drop]

    def _claim_in_memory(self, msgs: list[Msg]) -> list[Msg]:
        """Replay mode (a rebuild reads every partition from offset 0, alone): the claims are kept in memory.

        Only each partition's tail needs to reach MongoDB, for the live worker: Debezium re-sends only what it
        sent after its last offset flush, i.e. (Connect producing nothing newer meanwhile) the newest messages
        of the partition. So the last ``claim_window_ms`` of each partition are kept aside and written by
        ``persist_claim_tails`` once the replay is over (the live workers are paused until then)."""
        out = []
        for m in msgs:
            at = self.memory_claims.setdefault(m.id, m.position)
            if at != m.position:
                self.duplicates += 1
                continue
            out.append(m)
            tail = self._claim_tails.setdefault(m.tp, deque())
            ts = m.kafka_ms or 0.0
            tail.append((ts, m.id, m.position))
            while tail[0][0] < ts - self.claim_window_ms:  # older than the window behind the newest: never re-sent
                tail.popleft()
        return out

    def persist_claim_tails(self) -> int:
        """Write the replay's claims of each partition's last ``claim_window_ms``; returns how many."""
        docs = [{"_id": i, "at": at} for tail in self._claim_tails.values() for _, i, at in tail]
        self._insert_new_in_chunks(self.db.applied, docs)
        self._claim_tails.clear()
        return len(docs)

    # ------------------------------------------------------------------ venues and event lifecycle
    def apply_venues(self, msgs: list[Msg]) -> None:
        for m in msgs:
            d = m.data
            self.db.venues.update_one({"_id": m.aggregate_id},
                                      {"$setOnInsert": {k: v for k, v in d.items() if k != "id"}}, upsert=True)

    def apply_lifecycle(self, msgs: list[Msg]) -> None:
        created = [m for m in msgs if m.type == "EventCreated"]
        self._parallel(self._create_event, created)
        updates: dict[str, tuple[int, dict[str, Any]]] = {}
        for m in msgs:
            if m.type == "EventCreated":
                continue
            d = m.data
            fields = P.event_static(d) if m.type == "EventUpdated" else {k: d[k] for k in ("status", "version", "updated_at") if k in d}
            v, acc = updates.get(m.aggregate_id, (0, {}))
            acc.update(fields)
            updates[m.aggregate_id] = (max(v, d["version"]), acc)

        def update(item: tuple[str, tuple[int, dict[str, Any]]]) -> None:
            event_id, (v, fields) = item
            fields["version"] = v
            self.db.events.update_one({"_id": event_id, "version": {"$lt": v}}, {"$set": fields})
            if "title" in fields or "starts_at" in fields:
                info = {"event.title": fields.get("title"), "event.starts_at": fields.get("starts_at"), "event.v": v}
                self.db.orders.update_many({"event_id": event_id, "event.v": {"$lt": v}},
                                           {"$set": {k: x for k, x in info.items() if x is not None}})
                self.event_info.pop(event_id, None)
        self._parallel(update, updates.items())

    def _create_event(self, m: Msg) -> None:
        d = m.data
        event_id = m.aggregate_id
        doc = {**P.event_static(d), **P.initial_counters(d), "created_by_event": m.id}
        created = False
        try:
            r = self.db.events.update_one({"_id": event_id}, {"$setOnInsert": doc}, upsert=True)
            created = r.upserted_id is not None
        except DuplicateKeyError:
            pass
        if created:  # we created it: its counters are known (saves a read later)
            self.counters[event_id] = {k: doc[k] for k in ("counts", "capacity", "held", "sold", "available",
                                                           "stats", "wm", "cv")}
        else:
            # inventory that arrived before its EventCreated made a bare counter document: complete it
            self.db.events.update_one({"_id": event_id, "status": "unknown"}, {"$set": P.event_static(d)})
        rows = P.event_seat_rows(d)
        if rows:
            chunks = [P.new_chunk(event_id, sec, row, n) for (sec, row), n in rows.items()]
            failed = insert_new(self.db.seatmap, chunks)
            for i, c in enumerate(chunks):
                if i not in failed:  # only what we inserted is known to be current
                    self.chunks[c["_id"]] = {k: c[k] for k in ("st", "v", "p", "cv")}
        self.event_info[event_id] = {"id": event_id, "title": d.get("title"), "starts_at": d.get("starts_at"),
                                     "v": d.get("version", 1)}

    # ------------------------------------------------------------------ seat map
    def apply_seats(self, msgs: list[Msg]) -> dict[tuple[str, int, str], str]:
        """Seat changes -> seat-map chunks (one CAS update per touched chunk). Returns prior statuses."""
        per_chunk: dict[str, list[tuple[Msg, dict[str, Any]]]] = defaultdict(list)
        for m in msgs:
            for ch in m.data.get("seats", []):
                sec, row, _ = P.split_seat(ch["seat_id"])
                per_chunk[P.chunk_id(m.aggregate_id, sec, row)].append((m, ch))
        if not per_chunk:
            return {}
        self._load_chunks([c for c in per_chunk if c not in self.chunks])
        prior: dict[tuple[str, int, str], str] = {}
        for p in self._parallel(lambda kv: self._apply_chunk(kv[0], kv[1]), per_chunk.items()):
            prior.update(p)
        return prior

    def _load_chunks(self, ids: list[str]) -> None:
        for i in range(0, len(ids), 500):
            for d in self.db.seatmap.find({"_id": {"$in": ids[i:i + 500]}}, {"st": 1, "v": 1, "p": 1, "cv": 1}):
                self.chunks[d["_id"]] = {k: d[k] for k in ("st", "v", "p", "cv")}

    def _apply_chunk(self, cid: str, changes: list[tuple[Msg, dict[str, Any]]]) -> dict:
        for _ in range(50):
            cur = self.chunks.get(cid)
            if cur is None:
                d = self.db.seatmap.find_one({"_id": cid})
                if d is None:  # the event's EventCreated never arrived: build the row from what we see
                    event_id, sec, row = cid.rsplit(":", 2)
                    n = max(P.split_seat(ch["seat_id"])[2] for _, ch in changes)
                    try:
                        self.db.seatmap.insert_one(P.new_chunk(event_id, sec, row, n))
                    except DuplicateKeyError:
                        pass
                    continue
                cur = self.chunks[cid] = {k: d[k] for k in ("st", "v", "p", "cv")}
            new, prior, changed = P.fold_chunk(cur, changes)
            if not changed:
                return prior
            r = self.db.seatmap.update_one({"_id": cid, "cv": cur["cv"]}, {"$set": {**new, "cv": cur["cv"] + 1}})
            if r.matched_count:
                self.chunks[cid] = {**new, "cv": cur["cv"] + 1}
                return prior
            self.cas_conflicts += 1
            self.chunks.pop(cid, None)
        raise RuntimeError(f"seat-map chunk {cid}: too many CAS conflicts")

    # ------------------------------------------------------------------ orders (booking history)
    def apply_orders(self, msgs: list[Msg]) -> None:
        """Every state of an order (placed, confirmed, payment failed, cancelled, refund updated) -> its document;
        the newest ``rank`` wins: new documents are inserted, existing ones take ``$set`` only from a higher rank, so
        a redelivery or a replay of an older (or the same) state matches nothing."""
        orders = P.fold_orders(msgs)
        if not orders:
            return
        for oid, doc in orders.items():
            doc["event"] = self._event_info(doc["event_id"])
        docs = [{"_id": oid, **doc} for oid, doc in orders.items()]
        dup = [docs[i] for i in sorted(self._insert_missing(self.db.orders, docs))]

        def upgrade(doc: dict[str, Any]) -> None:
            oid = doc.pop("_id")
            doc.pop("event", None)  # keep the stored event snapshot (it may be newer)
            try:
                self.db.orders.update_one({"_id": oid, "rank": {"$lt": doc["rank"]}}, {"$set": doc}, upsert=True)
            except DuplicateKeyError:
                pass  # already at this state or a later one
        self._parallel(upgrade, dup)

    # ------------------------------------------------------------------ versioned documents
    def _upsert_versioned(self, collection, docs: dict[str, dict[str, Any]]) -> None:
        """Absolute states with a version: new documents are inserted, existing ones updated only by a newer
        version (an older or equal one, from a redelivery or a replay, matches nothing)."""
        if not docs:
            return
        rows = [{"_id": key, **doc} for key, doc in docs.items()]
        dup = [rows[i] for i in sorted(self._insert_missing(collection, rows))]

        def upgrade(doc: dict[str, Any]) -> None:
            key = doc.pop("_id")
            collection.update_one({"_id": key, "version": {"$lt": doc["version"]}}, {"$set": doc})
        self._parallel(upgrade, dup)

    def apply_waitlist(self, msgs: list[Msg]) -> None:
        self._upsert_versioned(self.db.waitlist, P.fold_waitlist(msgs))

    def apply_users(self, msgs: list[Msg]) -> None:
        self._upsert_versioned(self.db.users, P.fold_users(msgs))

    def apply_tickets(self, msgs: list[Msg]) -> None:
        self._upsert_versioned(self.db.tickets, P.fold_tickets(msgs))

    def _event_info(self, event_id: str) -> dict[str, Any]:
        info = self.event_info.get(event_id)
        if info is None:
            d = self.db.events.find_one({"_id": event_id}, {"title": 1, "starts_at": 1, "version": 1}) or {}
            info = {"id": event_id, "title": d.get("title"), "starts_at": d.get("starts_at"), "v": d.get("version", 0)}
            self.event_info[event_id] = info
        return dict(info)

    # ------------------------------------------------------------------ per-event counters and stats
    def apply_event_counters(self, event_id: str, msgs: list[Msg], prior: dict) -> tuple | None:
        """CAS the event's counters/stats; returns what the feed needs (or None)."""
        fields = ("counts", "capacity", "held", "sold", "available", "stats", "wm", "cv")
        for _ in range(50):
            cur = self.counters.get(event_id)
            if cur is None:
                d = self.db.events.find_one({"_id": event_id}, {f: 1 for f in fields})
                if d is None or "cv" not in d:
                    log.warning("inventory for an unknown event; creating its counter document", event_id=event_id)
                    try:
                        self.db.events.update_one({"_id": event_id}, {"$setOnInsert": {
                            "status": "unknown", "version": 0, **P.initial_counters({})}}, upsert=True)
                    except DuplicateKeyError:
                        pass
                    if d is not None and "cv" not in d:
                        self.db.events.update_one({"_id": event_id, "cv": {"$exists": False}},
                                                  {"$set": P.initial_counters({})})
                    continue
                cur = self.counters[event_id] = {f: d.get(f) for f in fields}
            new, changed = P.fold_event_counters(cur, msgs, prior)
            if changed:
                r = self.db.events.update_one({"_id": event_id, "cv": cur["cv"]}, {"$set": {**new, "cv": cur["cv"] + 1}})
                if not r.matched_count:
                    self.cas_conflicts += 1
                    self.counters.pop(event_id, None)
                    continue
                self.counters[event_id] = {**new, "cv": cur["cv"] + 1}
            inv = [m for m in msgs if m.type in P.INVENTORY_TYPES]
            # Whether the event's feed had entries before this batch (its counters had applied messages): if the
            # stream turns out empty, Redis lost them.
            return (event_id, inv, new["counts"], bool(cur.get("wm"))) if inv else None
        raise RuntimeError(f"event {event_id}: too many CAS conflicts")

    # ------------------------------------------------------------------ analytics rollups
    def apply_rollups(self, msgs: list[Msg]) -> None:
        per_doc: dict[str, list[tuple[Msg, dict[str, int]]]] = defaultdict(list)
        for m in msgs:
            os_ = P.rollup_increments(m)
            if os_:
                day, inc = os_
                per_doc[f"day:{day}"].append((m, inc))
                per_doc[TOTAL_ID].append((m, inc))
        self._parallel(lambda kv: self._apply_rollup(kv[0], kv[1]), per_doc.items())

    def _apply_rollup(self, doc_id: str, items: list[tuple[Msg, dict[str, int]]]) -> None:
        for _ in range(100):
            cur = self.rollups.get(doc_id)
            if cur is None:
                d = self.db.analytics.find_one({"_id": doc_id})
                if d is None:
                    base = {"_id": doc_id, "wm": {}, "cv": 0, **({"date": doc_id[4:]} if doc_id.startswith("day:") else {})}
                    try:
                        self.db.analytics.insert_one(base)
                    except DuplicateKeyError:
                        pass
                    continue
                cur = self.rollups[doc_id] = d
            new, changed = P.fold_rollup(cur, items)
            if not changed:
                return
            r = self.db.analytics.update_one({"_id": doc_id, "cv": cur["cv"]}, {"$set": {**new, "cv": cur["cv"] + 1}})
            if r.matched_count:
                self.rollups[doc_id] = {**new, "_id": doc_id, "cv": cur["cv"] + 1}
                return
            self.cas_conflicts += 1
            self.rollups.pop(doc_id, None)
        raise RuntimeError(f"analytics {doc_id}: too many CAS conflicts")

    # ------------------------------------------------------------------ live seat feed
    def append_feed(self, event_id: str, msgs: list[Msg], counts: dict[str, Any], had_entries: bool,
                    done: float) -> str | None:
        """One stream entry per event per batch, after the read model has it; never appended twice for an
        offset (the Lua script compares with the last entry's offset). ``had_entries``: the event had feed entries
        before this batch, so an empty stream means they were lost (``prev`` = keys.FEED_PREV_LOST)."""
        last = self.redis.xrevrange(feed_key(event_id), count=1)
        last_off = int(last[0][1].get(keys.FEED_OFF.encode(), b"-1")) if last else -1
        msgs = [m for m in msgs if m.offset > last_off]
        changes = P.feed_changes(msgs, counts, last_off)
        if not changes:
            return None
        occ = max((m.occurred_ms or 0) for m in msgs)
        kts = max((m.kafka_ms or 0) for m in msgs)
        data = json.dumps({"event_id": event_id, "changes": changes}, separators=(",", ":"))
        return self._feed(keys=[feed_key(event_id)],
                          args=[max(m.offset for m in msgs), self.feed_maxlen, data, f"{done * 1000:.1f}", f"{occ:.1f}",
                                f"{kts:.1f}", keys.FEED_PREV_LOST if had_entries else keys.FEED_PREV_FIRST])
