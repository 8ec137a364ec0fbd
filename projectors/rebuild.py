"""Rebuild the read models: ``python -m projectors.rebuild [--no-drop] [--mongo-db NAME]``.

Default: pause the live projector workers (Redis flag ``evently:projector:pause``, they acknowledge
between batches), drop every read-model collection, replay ``evently.*`` from offset 0 up to the end
offsets seen at the start, then un-pause; the workers resume from their committed offsets and
everything the rebuild already applied is skipped by the watermarks. Prints events/s.

``--no-drop`` replays from offset 0 into the existing read models without pausing anybody: every
write is idempotent, so this must change nothing (the replay test uses it). ``--mongo-db`` rebuilds
into another database (no pause, no feed writes) - e.g. to compare with ``projectors.check --mongo-db``.
The live seat feed is never dropped: its entries are deduplicated by offset, so a rebuild appends nothing.
"""
from __future__ import annotations

import argparse
import sys
import threading
import time
import uuid

import structlog
from confluent_kafka import OFFSET_BEGINNING, TopicPartition
from pymongo import MongoClient

from common.logging import configure_logging
from common.settings import Settings, get_settings
from projectors.store import READ_MODEL_COLLECTIONS, ensure_indexes
from projectors.topics import SOURCE_TOPICS
from projectors.worker import PAUSE_KEY, PAUSED_ACK, Projector, redis_client

log = structlog.get_logger("rebuild")


def replay(settings: Settings, db, *, feed: bool, batch_size: int = 20_000, threads: int = 8,
           topics: list[str] = SOURCE_TOPICS, quiet: bool = False) -> dict[str, float]:
    """Apply every message of ``topics`` from offset 0 to the current end into ``db``; never commits."""
    proj = Projector(settings, group=f"evently-replay-{uuid.uuid4().hex[:8]}", db=db,
                     rds=redis_client(settings) if feed else None, batch_size=batch_size, threads=threads,
                     consumer_overrides={"fetch.wait.max.ms": 100, "fetch.min.bytes": 1 << 20,
                                         "queued.max.messages.kbytes": 262144})
    proj.dlq_enabled = False
    # Reading every partition from offset 0 alone, the replay detects Debezium re-sends in memory and
    # persists only each partition's newest claims (what Debezium could still re-send to the live worker).
    proj.store.memory_claims = {}
    proj.store.claim_window_ms = settings.projector_claim_window_s * 1000
    proj.live_metrics = False  # freshness of history says nothing
    if not feed:
        proj.store.redis = None
    try:
        ends: dict[tuple[str, int], int] = {}
        assign = []
        for t in topics:
            for p in proj.consumer.list_topics(t, timeout=10).topics[t].partitions:
                low, high = proj.consumer.get_watermark_offsets(TopicPartition(t, p), timeout=10)
                if high > low:
                    ends[(t, p)] = high
                    assign.append(TopicPartition(t, p, OFFSET_BEGINNING))
        total = sum(ends.values())
        proj.consumer.assign(assign)
        started = time.monotonic()
        done: set[tuple[str, int]] = set()
        messages = 0
        last_report = started
        while len(done) < len(ends):
            raw = proj.poll_batch(1.0)
            raw = [m for m in raw if not m.error() and m.offset() < ends.get((m.topic(), m.partition()), 0)]
            if raw:
                proj.process(raw, commit=False)
                messages += len(raw)
                for m in raw:
                    if m.offset() >= ends[(m.topic(), m.partition())] - 1:
                        done.add((m.topic(), m.partition()))
            if not quiet and time.monotonic() - last_report > 5:
                last_report = time.monotonic()
                print(f"  ... {messages}/{total} messages, {messages / (last_report - started):,.0f}/s", flush=True)
        claims = proj.store.persist_claim_tails()
        elapsed = time.monotonic() - started
        return {"messages": messages, "seconds": elapsed, "rate": messages / elapsed if elapsed else 0.0,
                "claims_written": claims,
                "dead_lettered": proj.dead_lettered, "duplicates": proj.store.duplicates,
                "cas_conflicts": proj.store.cas_conflicts}
    finally:
        proj.consumer.close()
        proj.store.pool.shutdown()


def pause_workers(settings: Settings, token: str, stop: threading.Event, wait: float = 15.0) -> bool:
    rds = redis_client(settings)
    rds.set(PAUSE_KEY, token, ex=30)

    def refresh() -> None:
        while not stop.wait(5):
            rds.set(PAUSE_KEY, token, ex=30)
    threading.Thread(target=refresh, daemon=True).start()
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if rds.get(PAUSED_ACK(settings.projector_group)):
            time.sleep(0.3)  # the ack is written at the top of the loop: no batch in flight
            return True
        time.sleep(0.1)
    return False


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--no-drop", action="store_true", help="replay into the existing read models (must be a no-op)")
    p.add_argument("--mongo-db", help="rebuild into this database instead of EVENTLY_MONGO_DB (no pause, no feed)")
    p.add_argument("--batch-size", type=int, default=20_000)
    p.add_argument("--threads", type=int, default=8)
    args = p.parse_args(argv)
    configure_logging()
    s = get_settings()
    target = args.mongo_db or s.mongo_db
    db = MongoClient(s.mongo_url, serverSelectionTimeoutMS=5000, maxPoolSize=32)[target]
    live = target == s.mongo_db
    stop = threading.Event()
    token = uuid.uuid4().hex
    paused = False
    try:
        if not args.no_drop:
            if live:
                paused = pause_workers(s, token, stop)
                print("live projector paused" if paused else "no live projector acknowledged the pause (none running?)")
            t0 = time.monotonic()
            for c in READ_MODEL_COLLECTIONS:
                db.drop_collection(c)
            ensure_indexes(db)
            print(f"dropped read models in {target!r} ({time.monotonic() - t0:.1f}s)")
        r = replay(s, db, feed=live, batch_size=args.batch_size, threads=args.threads)
    finally:
        stop.set()
        if live and not args.no_drop:
            rds = redis_client(s)
            if rds.get(PAUSE_KEY) == token.encode():
                rds.delete(PAUSE_KEY)
    print(f"replayed {r['messages']:,} messages in {r['seconds']:.2f}s = {r['rate']:,.0f} events/s "
          f"(dead-lettered {r['dead_lettered']}, duplicates dropped {r['duplicates']}, "
          f"outbox-id claims written {r['claims_written']:,}, "
          f"CAS conflicts {r['cas_conflicts']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
