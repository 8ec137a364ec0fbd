"""Projector worker: ``python -m projectors.worker``.

A confluent-kafka consumer in the ``EVENTLY_PROJECTOR_GROUP`` group reads the outbox topics in
batches, applies each batch to the MongoDB read models and then to the live seat feed (Redis
Streams), and commits its offsets only after those writes (at-least-once delivery + idempotent,
watermark-guarded writes = exactly-once effect; see projectors/README.md). A message that can never
be applied goes to the dead-letter topic with the error in its headers, and the partition moves on, whether it
fails to parse or fails while being applied (a store error its data causes, or a bug met by its data); a transient
error (MongoDB or Redis unreachable, a timeout, FerretDB without its PostgreSQL: ``transient``) is retried with
backoff, never dead-lettered.

``/health`` is 200 once the worker is consuming; ``/metrics`` has consumer lag and the last applied
position per partition, plus freshness histograms (occurred_at -> read model / -> feed).
"""
from __future__ import annotations

import signal
import threading
import time
from collections import Counter as Counter_
from typing import Any, Callable

import redis
import structlog
import tenacity
from confluent_kafka import Consumer, KafkaException, Message, Producer, TopicPartition
from prometheus_client import Counter, Gauge, Histogram
from pymongo import MongoClient

from common.logging import configure_logging
from common.settings import Settings, get_settings
from contracts import keys
from projectors import projection as P
from projectors.consuming import create_indexes, parse, read_batch, serve_http, transient  # noqa: F401 (parse, transient: tests import them here)
from contracts.readmodels import INDEXES
from projectors.store import Store
from projectors.topics import DLQ_TOPIC, SOURCE_TOPICS

log = structlog.get_logger("projector")

APPLIED = Counter("evently_projector_messages_total", "Messages handled", ["topic", "outcome"])
LAST_OFFSET = Gauge("evently_projector_last_applied_offset", "Last applied offset", ["topic", "partition"])
LAST_APPLIED_TS = Gauge("evently_projector_last_applied_timestamp_seconds", "Wall time of the last applied batch")
LAG = Gauge("evently_projector_consumer_lag", "High watermark minus consumed position", ["topic", "partition"])
BATCH = Histogram("evently_projector_batch_size", "Messages per applied batch",
                  buckets=(1, 2, 5, 10, 50, 100, 500, 1000, 5000, 20000))
APPLY_SECONDS = Histogram("evently_projector_batch_seconds", "Time to apply one batch",
                          buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10))
FRESHNESS = Histogram("evently_projector_freshness_seconds", "occurred_at of the event -> write done",
                      ["stage"], buckets=(.005, .01, .02, .035, .05, .075, .1, .15, .2, .3, .5, .75, 1, 2, 5, 10))
FRESH_KAFKA, FRESH_READ_MODEL, FRESH_FEED = (FRESHNESS.labels(stage) for stage in ("kafka", "read_model", "feed"))
PAUSED = Gauge("evently_projector_paused", "1 while a rebuild holds the projector paused")

PAUSE_KEY = keys.PROJECTOR_PAUSE  # set by projectors.rebuild (value = rebuild id, with a TTL)
PAUSED_ACK = keys.projector_paused_ack  # the worker's acknowledgement: no batch in flight


def mongo_db(s: Settings):
    return MongoClient(s.mongo_url, serverSelectionTimeoutMS=5000, maxPoolSize=32)[s.mongo_db]


def redis_client(s: Settings) -> redis.Redis:
    return redis.Redis.from_url(s.redis_url, socket_timeout=5)


class Projector:
    """Consumer + store + dead-letter producer; used by the worker, the rebuild and the tests."""

    def __init__(self, settings: Settings, *, group: str, db=None, rds: redis.Redis | None = None,
                 batch_size: int = 2000, consumer_overrides: dict[str, Any] | None = None,
                 threads: int = 8) -> None:
        self.settings = settings
        self.group = group
        self.db = db if db is not None else mongo_db(settings)
        self.redis = rds if rds is not None else redis_client(settings)
        self.store = Store(self.db, self.redis, threads=threads, feed_maxlen=settings.feed_maxlen)
        self.batch_size = batch_size
        conf = {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": group,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "fetch.wait.max.ms": 10,
            "fetch.min.bytes": 1,
            "max.partition.fetch.bytes": 8 * 1024 * 1024,
            "queued.min.messages": 20000,
            # A worker killed without leaving the group holds its partitions until its session times out: with
            # librdkafka's default (45 s) a kill -9 stalled the read side for 45 s after the restarted worker was
            # up. 6 s is the broker's minimum (group.min.session.timeout.ms); heartbeats go out every 1.5 s.
            "session.timeout.ms": 6000,
            "heartbeat.interval.ms": 1500,
            "log_level": 3,
        }
        conf.update(consumer_overrides or {})
        self.consumer = Consumer(conf)
        self.dlq = Producer({"bootstrap.servers": settings.kafka_bootstrap, "linger.ms": 0, "acks": "all",
                             "enable.idempotence": True, "log_level": 3})
        self.stopping = threading.Event()
        self.healthy = False
        self.paused = False
        self.applied = 0
        self.dead_lettered = 0
        self.uncommitted: dict[tuple[str, int], int] = {}  # applied, not yet committed (a commit failed)
        self.dlq_enabled = True  # a replay does not dead-letter the same poison message twice
        self.live_metrics = True  # a replay turns the freshness histograms off: history is not fresh

    # -------------------------------------------------------------- subscription
    def subscribe(self, topics: list[str] = SOURCE_TOPICS) -> None:
        self.consumer.subscribe(topics, on_assign=self._on_assign, on_revoke=self._on_revoke)

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.store.forget()
        log.info("partitions assigned", partitions=[f"{p.topic}/{p.partition}" for p in partitions])

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.store.forget()
        for p in partitions:  # no longer ours to commit: the next owner re-applies from the committed offset
            self.uncommitted.pop((p.topic, p.partition), None)

    # -------------------------------------------------------------- one batch
    def poll_batch(self, timeout: float) -> list[Message]:
        # poll() returns as soon as one message is there; consume(timeout=0) then drains what is already
        # fetched. (consume(n, timeout) alone waits for n messages or the whole timeout: +timeout latency.)
        first = self.consumer.poll(timeout)
        if first is None:
            return []
        return [first] + (self.consumer.consume(self.batch_size - 1, timeout=0) if self.batch_size > 1 else [])

    def process(self, raw: list[Message], *, commit: bool = True) -> int:
        """Parse, dead-letter poison, apply, then commit. Returns the number of messages applied."""
        good: list[P.Msg] = []
        raw_of: dict[int, Message] = {}
        batch, last = read_batch(raw, log)
        for m, parsed in batch:
            if isinstance(parsed, P.PoisonMessage):
                self.dead_letter(m, parsed)
                continue
            good.append(parsed)
            raw_of[id(parsed)] = m
        if not last:
            return 0
        started = time.monotonic()
        applied, done, failed = self._apply(good)
        for m, exc in failed:
            self.dead_letter(raw_of[id(m)], exc)
        if failed:
            dropped = {id(m) for m, _ in failed}
            good = [m for m in good if id(m) not in dropped]
        # A dead letter must be in Kafka before the offset that skips its message is committed; while the broker
        # is away the batch waits here (the fault suite's kill -9 of Kafka).
        while self.dlq.flush(10) and not self.stopping.is_set():
            log.warning("dead letters not delivered yet; the batch's offsets wait for them")
        if commit and not len(self.dlq):
            self.commit(last)
        APPLY_SECONDS.observe(time.monotonic() - started)
        BATCH.observe(len(raw))
        now = time.time()
        LAST_APPLIED_TS.set(now)
        for (t, p), o in last.items():
            LAST_OFFSET.labels(t, str(p)).set(o)
        outcomes: Counter_[tuple[str, str]] = Counter_()
        applied_ids = {id(m) for m in applied}
        for m in good:
            outcomes[(m.topic, "applied" if id(m) in applied_ids else "duplicate")] += 1
        for labels, n in outcomes.items():
            APPLIED.labels(*labels).inc(n)
        if self.live_metrics:
            for m in good:
                if m.occurred_ms and m.kafka_ms:
                    FRESH_KAFKA.observe(max(m.kafka_ms - m.occurred_ms, 0) / 1000)
                if m.occurred_ms:
                    FRESH_READ_MODEL.observe(max(done * 1000 - m.occurred_ms, 0) / 1000)
                    FRESH_FEED.observe(max(now * 1000 - m.occurred_ms, 0) / 1000)
        self.applied += len(good)
        return len(good)

    def _apply(self, msgs: list[P.Msg]) -> tuple[list[P.Msg], float, list[tuple[P.Msg, Exception]]]:
        """Apply a batch: (applied, done time, [(message, error)] that can never be applied).

        A transient error retries the batch (``_apply_with_retry``). A permanent one means some message of the
        batch cannot be applied: the batch is applied again one message at a time, in log order (applying is
        idempotent, and the store's caches are dropped first), and each message that fails permanently on its
        own is handed back to be dead-lettered. The others are applied, and the partition moves on."""
        try:
            applied, done = self._apply_with_retry(msgs)
            return applied, done, []
        except Exception as exc:  # noqa: BLE001 - classified: transient errors never get here
            log.error("batch failed permanently; applying its messages one at a time", error=repr(exc)[:500],
                      messages=len(msgs))
        applied, failed, done = [], [], time.time()
        for m in msgs:
            self.store.forget()
            try:
                one, done = self._apply_with_retry([m])
                applied += one
            except Exception as exc:  # noqa: BLE001 - permanent, for this message alone
                failed.append((m, exc))
        return applied, done, failed

    def _apply_with_retry(self, msgs: list[P.Msg]):
        """Store unavailable: wait and retry the whole batch (it is idempotent), 0.1 s doubling to 5 s, until it
        comes back or the worker is asked to stop. The usual case is one plain call: no retrier (~40 µs of CPU)
        is built per batch. A permanent error is raised at once."""
        try:
            return self.store.apply(msgs)
        except Exception as exc:
            if not transient(exc):
                raise
            self._store_down(exc, None)
        try:
            return tenacity.Retrying(
                retry=tenacity.retry_if_exception(transient), stop=lambda _: self.stopping.is_set(),
                wait=tenacity.wait_exponential(multiplier=0.1, max=5.0), reraise=True,
                before_sleep=lambda st: self._store_down(st.outcome.exception(), st.next_action.sleep),
            )(self.store.apply, msgs)
        except Exception as exc:
            if transient(exc) and self.stopping.is_set():
                raise SystemExit(0) from None
            raise

    def _store_down(self, exc: BaseException | None, delay: float | None) -> None:
        self.healthy = False
        log.warning("read-model store unavailable, retrying", error=str(exc), delay=delay)
        self.store.forget()

    def dead_letter(self, msg: Message, exc: Exception) -> None:
        log.warning("dead-lettering message", topic=msg.topic(), partition=msg.partition(),
                    offset=msg.offset(), error=str(exc))
        self.dead_lettered += 1
        if not self.dlq_enabled:
            return
        headers = list(msg.headers() or []) + [
            ("dlq.error", f"{type(exc).__name__}: {exc}".encode()),
            ("dlq.source", f"{msg.topic()}/{msg.partition()}/{msg.offset()}".encode()),
        ]
        self.dlq.produce(DLQ_TOPIC, key=msg.key(), value=msg.value(), headers=headers)
        APPLIED.labels(msg.topic(), "dead_lettered").inc()

    def commit(self, last: dict[tuple[str, int], int]) -> None:
        """Commits the batch's offsets (with any a failed commit left behind). A commit that fails (the broker or
        the group coordinator away) is not fatal: the read models already have the batch, the offsets go with the
        next commit, and if the worker dies first the batch is delivered again and applied idempotently. (It was
        fatal before the fault suite: the worker exited, and its replacement waited out the old member's
        session.)"""
        self.uncommitted.update(last)
        try:
            self.consumer.commit(offsets=[TopicPartition(t, p, o + 1) for (t, p), o in self.uncommitted.items()],
                                 asynchronous=False)
        except KafkaException as exc:
            log.warning("offset commit failed; retried with the next batch", error=str(exc))
            return
        self.uncommitted.clear()

    # -------------------------------------------------------------- the live loop
    def run(self) -> None:
        self.subscribe()
        log.info("projector started", topics=SOURCE_TOPICS, group=self.group)
        last_lag = 0.0
        while not self.stopping.is_set():
            if self._check_pause():
                time.sleep(0.2)
                continue
            raw = self.poll_batch(0.1)
            if raw:
                self.process(raw)
            self.healthy = True
            if time.monotonic() - last_lag > 1:
                self.update_lag()
                last_lag = time.monotonic()
        self.consumer.close()

    def _check_pause(self) -> bool:
        """A rebuild asks every worker to stop applying (it drops and refills the read models)."""
        try:
            want = self.redis.get(PAUSE_KEY) is not None
        except redis.RedisError:
            return self.paused
        assignment = self.consumer.assignment()
        if want and not self.paused:
            if assignment:
                self.consumer.pause(assignment)
            self.paused = True
            log.info("paused for a rebuild")
        if want:
            self.redis.set(PAUSED_ACK(self.group), str(time.time()), ex=5)
            self.consumer.poll(0)  # keep group membership alive
        elif self.paused:
            # Resume from the committed offsets: everything the rebuild replayed is skipped by watermarks.
            self.store.forget()
            committed = self.consumer.committed(assignment, timeout=10) if assignment else []
            for tp in committed:
                if tp.offset >= 0:
                    self.consumer.seek(tp)
            if assignment:
                self.consumer.resume(assignment)
            self.paused = False
            log.info("resumed after a rebuild")
        PAUSED.set(1 if self.paused else 0)
        return self.paused

    def update_lag(self) -> None:
        try:
            for tp in self.consumer.position(self.consumer.assignment()):
                _, high = self.consumer.get_watermark_offsets(tp, timeout=1, cached=True)
                if tp.offset >= 0 and high >= 0:
                    LAG.labels(tp.topic, str(tp.partition)).set(max(high - tp.offset, 0))
        except Exception as exc:  # noqa: BLE001 - metrics must never kill the worker
            log.debug("lag update failed", error=str(exc))


def main() -> None:
    configure_logging()
    s = get_settings()
    worker = Projector(s, group=s.projector_group, batch_size=s.projector_batch_size)
    create_indexes(worker.db, INDEXES, log)
    serve_http(worker, s.projector_host, s.projector_metrics_port)
    stop: Callable[..., None] = lambda *_: worker.stopping.set()  # noqa: E731
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stop)
    worker.run()


if __name__ == "__main__":
    main()
