"""The notifier: ``python -m projectors.notifier``. Email, the inbox and the notification stream (issue 15).

Two halves in one process, joined by MongoDB:

1. **Record** (a thread): a confluent-kafka consumer in its own group (``EVENTLY_NOTIFIER_GROUP``) reads the outbox
   topics. For each batch it plans the notifications (projectors/notifications.py: who is told what, each with an
   id derived from cause, kind and recipient), then
   - inserts them into ``notifications`` (the inbox read model; an id already there is a redelivery, a replay or
     a Debezium re-send, and is left alone) and their mail's status into ``mail_log`` (the ledger of what was
     mailed). Each collection has one writer per document after its insert (the inbox: this half, for read
     marks; the ledger: the senders), because FerretDB rewrites a whole document on update, so two writers of one
     document could lose each other's change (a test found a read mark lost to a ``sent`` mark that way),
   - queues each new one's mail in ``mail_queue`` with what it needs to be rendered (a small collection: FerretDB
     answers every lookup in a big one with a sequential scan, so sending never reads the ledger, except for a
     mail queued again by a redelivery, which re-checks it first),
   - attaches an order's tickets to its confirmation (TicketsIssued; the mail waits for them),
   - applies NotificationsRead (marking read goes through the command side and the outbox),
   - appends each new one to the user's SSE stream (``notify:<user>``, once per id),
   and only then commits the batch's offsets. Nothing is lost if the process dies: what was not recorded is
   delivered again. The store away (or the projector behind) is retried with backoff (tenacity, as the projector
   does); an error a message's data causes is met by recording the batch one message at a time, so only that
   message's notifications are skipped (logged), never the batch's.
2. **Send** (asyncio): a dispatcher claims due mails from ``mail_queue`` (a compare-and-set on the entry's ``cv``,
   so several notifier processes never take one mail at once) and hands them to ``EVENTLY_NOTIFIER_SENDERS``
   senders, each with its own SMTP connection (aiosmtplib). The mails sent are recorded ``sent`` in the ledger
   and leave the queue together, every 0.2 s. A failure other than a 5xx reply (the server down,
   a timeout, a 4xx) puts the mail back with exponential backoff (0.5 s doubling up to ``EVENTLY_NOTIFIER_RETRY_MAX_SECONDS``), so one failing address
   never holds the others back; a 5xx reply, or ``EVENTLY_NOTIFIER_MAX_ATTEMPTS`` attempts, records it ``failed``.
   A claim is a lease (``EVENTLY_NOTIFIER_LEASE_SECONDS``): a process that dies mid-send leaves its mails to be
   claimed again when the lease ends.

**Once per cause and recipient.** The id is recorded before any mail goes out, and a mail is queued only once
per notification (again only while the ledger says ``pending``). The one window left: the process dies after the
SMTP server accepted a mail and before ``sent`` was recorded (at most 0.2 s plus two writes later). That mail
goes out again when its lease ends, with the same ``Message-ID`` and ``X-Evently-Notification-Id`` (receivers,
and Mailpit with ``--ignore-duplicate-ids``, can drop it). So a crash (kill -9, power loss) can send twice at most
the mails accepted in its last 0.2 s and those in flight; nothing else is ever sent twice. A graceful stop
(SIGTERM, as the supervisor restarts) finishes the mails in flight and hands back the ones claimed but not started.

**An event the read model lacks** (the projector behind) holds the batch back, retried like a store outage, for
at most a minute; then its notifications go out without the event's details (a dead-lettered event must not stop
every mail behind it).

**History is not mailed.** A notification whose cause is older than ``EVENTLY_NOTIFIER_MAX_AGE_SECONDS`` when first
recorded (a new notifier group reading topics from the start) fills the inbox but is not mailed (ledger
``skipped``) nor streamed.
"""
from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
import time
import uuid
from datetime import datetime, timezone
from typing import Any

import redis
import structlog
import tenacity
from confluent_kafka import Consumer, KafkaException, Message, TopicPartition
from prometheus_client import Counter, Gauge, Histogram
from pymongo import AsyncMongoClient, MongoClient
from pymongo.errors import PyMongoError

from common.logging import configure_logging
from common.settings import Settings, get_settings
from contracts import keys
from contracts import readmodels as rm
from projectors import mail
from projectors import notifications as N
from projectors import projection as P
from projectors.store import insert_new
from projectors.topics import SOURCE_TOPICS
from projectors.consuming import create_indexes, read_batch, serve_http, transient

log = structlog.get_logger("notifier")

RECORDED = Counter("evently_notifier_notifications_total", "Notifications recorded", ["kind", "outcome"])
MAILS = Counter("evently_notifier_mails_total", "Mail attempts", ["outcome"])  # sent | retry | failed
MAIL_LATENCY = Histogram("evently_notifier_cause_to_sent_seconds", "occurred_at of the cause -> SMTP accepted",
                         buckets=(.05, .1, .2, .3, .5, .75, 1, 2, 5, 10, 30, 60, 300))
RECORD_LATENCY = Histogram("evently_notifier_cause_to_recorded_seconds", "occurred_at of the cause -> recorded",
                           buckets=(.01, .025, .05, .1, .2, .3, .5, .75, 1, 2, 5, 10, 30))
QUEUE_DEPTH = Gauge("evently_notifier_mail_queue", "Mails waiting in mail_queue (sampled)")

FINISH_EVERY = 0.2  # seconds between two recordings of the mails sent
# A recipient the users read model does not know yet is waited for (the projector may lag) this long after the
# cause, then the mail fails: load tests mint tokens for buyers who have no account, and so no address.
RECIPIENT_WAIT_S = 300.0
# An event the read model does not have yet is waited for (the batch is retried) this long, then its notifications
# go out without its details: a message the projector dead-lettered must not stop every mail behind it.
EVENT_WAIT_S = 60.0


# Seconds before the nth retry: 0.5, 1, 2, ... capped by EVENTLY_NOTIFIER_RETRY_MAX_SECONDS.
def backoff(attempts: int, cap: float) -> float:
    return min(cap, 0.5 * 2 ** max(attempts - 1, 0))


# The user's SSE stream gets each notification once: its id is remembered in a set next to the stream.
NOTIFY_LUA = """
if redis.call('SADD', KEYS[2], ARGV[1]) == 0 then return false end
redis.call('EXPIRE', KEYS[2], ARGV[5])
return redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', 'type', ARGV[3], 'data', ARGV[4])
"""
NOTIFY_MAXLEN = 1000
# What a queued mail carries (rendered from the queue entry alone: FerretDB answers every lookup in the big
# notifications collection with a sequential scan, so the hot path never reads it).
MAIL_FIELDS = ("user_id", "kind", "event_id", "event", "data", "created_at")
NOTIFY_SEEN_TTL_S = 30 * 24 * 3600


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _epoch(iso: str) -> float:
    try:
        return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


def links(s: Settings) -> dict[str, str]:
    page = s.query_public_url.rstrip("/")
    return {"page_url": page, "inbox_url": f"{page}/", "tickets_url": f"{page}/tickets"}


# ---------------------------------------------------------------------------------------------------- recording
class _Stopping(Exception):
    """The process stops while a batch waits for the store: leave it uncommitted."""


class NotYetProjected(Exception):
    """A notification names an event neither this process has seen created nor the events read model has yet
    (the projector is behind): the batch is tried again shortly, like a store outage."""


def event_info(doc: dict[str, Any], event_id: str) -> dict[str, Any]:
    venue = doc.get("venue") or None
    return {"id": event_id, "title": doc.get("title"), "starts_at": doc.get("starts_at"), "ends_at": doc.get("ends_at"),
            "venue": {"name": venue.get("name"), "city": venue.get("city")} if venue else None}


class Recorder:
    """The Kafka half: messages -> notification documents, mail queue entries, read marks, SSE frames."""

    def __init__(self, s: Settings, *, group: str, db=None, rds: redis.Redis | None = None,
                 consumer_overrides: dict[str, Any] | None = None) -> None:
        self.s = s
        self.db = db if db is not None else MongoClient(s.mongo_url, serverSelectionTimeoutMS=5000)[s.mongo_db]
        self.redis = rds if rds is not None else redis.Redis.from_url(s.redis_url, socket_timeout=5)
        self._notify = self.redis.register_script(NOTIFY_LUA)
        self.links = links(s)
        self.group = group
        self.consumer = Consumer({
            "bootstrap.servers": s.kafka_bootstrap, "group.id": group, "enable.auto.commit": False,
            "auto.offset.reset": "earliest", "fetch.wait.max.ms": 10, "session.timeout.ms": 6000,
            "heartbeat.interval.ms": 1500, "log_level": 3, **(consumer_overrides or {})})
        self.events: dict[str, dict[str, Any]] = {}  # event id -> {id, title, starts_at, venue} (a small cache)
        self.missing: dict[str, float] = {}  # event id -> since when the read model has not had it
        self.stopping = threading.Event()
        self.healthy = False
        self.paused = False  # serve_http's /health reads it (the notifier is never paused by a rebuild)
        self.on_recorded = lambda: None

    def run(self) -> None:
        self.consumer.subscribe(SOURCE_TOPICS)
        log.info("notifier consuming", topics=SOURCE_TOPICS, group=self.group)
        while not self.stopping.is_set():
            first = self.consumer.poll(0.2)
            self.healthy = True
            if first is None:
                continue
            raw = [first] + self.consumer.consume(499, timeout=0)
            self.process(raw)
        self.consumer.close()  # commits what is still in flight

    def process(self, raw: list[Message]) -> None:
        batch, last = read_batch(raw, log)
        # poison: the projector dead-letters it; there is nothing to tell anyone
        msgs = [parsed for _, parsed in batch if not isinstance(parsed, P.PoisonMessage)]
        try:
            self._record_with_retry(msgs)
        except _Stopping:
            return  # not committed: delivered again
        except Exception:  # noqa: BLE001 - one message's data: record the others, one at a time
            log.exception("a batch's notifications could not be recorded; recording them one by one", count=len(msgs))
            for m in msgs:
                try:
                    self._record_with_retry([m])
                except _Stopping:
                    return
                except Exception:  # noqa: BLE001
                    log.exception("a message's notifications could not be recorded; skipped", type=m.type,
                                  position=f"{m.topic}/{m.partition}/{m.offset}")
        if last:  # asynchronous: the batch is recorded already, so a lost commit only means a harmless redelivery
            try:
                self.consumer.commit(offsets=[TopicPartition(t, p, o + 1) for (t, p), o in last.items()],
                                     asynchronous=True)
            except KafkaException as exc:
                log.warning("offset commit failed", error=str(exc))
        self.on_recorded()

    def _record_with_retry(self, msgs: list[P.Msg]) -> None:
        """Record, retrying with backoff (0.1 s doubling to 5 s) while the store is away or the projector behind,
        until it passes or the process stops (_Stopping). Recording is idempotent, so a retry is harmless."""
        def retriable(exc: BaseException) -> bool:
            return transient(exc) or isinstance(exc, NotYetProjected)
        try:
            tenacity.Retrying(
                retry=tenacity.retry_if_exception(retriable), stop=lambda _: self.stopping.is_set(),
                wait=tenacity.wait_exponential(multiplier=0.1, max=5.0), reraise=True,
                before_sleep=lambda st: log.warning("notifications not recorded yet; retried",
                                                    error=repr(st.outcome.exception()),
                                                    retry_in=st.next_action.sleep))(self.record, msgs)
        except Exception as exc:
            if retriable(exc) and self.stopping.is_set():
                raise _Stopping() from None
            raise

    def _event(self, event_id: str) -> dict[str, Any]:
        """What a mail says of its event: from the event's own messages (seen before any order of it, on the same
        partition), else from the events read model (an event created before this process started)."""
        ev = self.events.get(event_id)
        if ev is None:
            d = self.db[rm.EVENTS].find_one({"_id": event_id}, {"title": 1, "starts_at": 1, "ends_at": 1, "venue": 1})
            if d is None:  # wait for the projector, but not for ever: an event it never had must not stop the mail
                since = self.missing.setdefault(event_id, time.monotonic())
                if time.monotonic() - since < EVENT_WAIT_S:
                    raise NotYetProjected(f"event {event_id} is not in the read model yet")
                log.error("event unknown to the read model; telling without its details", event_id=event_id)
                return {"id": event_id, "title": "your event", "starts_at": None, "ends_at": None, "venue": None}
            self.missing.pop(event_id, None)
            ev = self._remember(event_id, d)
        return ev

    def _remember(self, event_id: str, doc: dict[str, Any]) -> dict[str, Any]:
        if len(self.events) > 10_000:
            self.events.clear()
        self.events[event_id] = ev = event_info(doc, event_id)
        return ev

    def record(self, msgs: list[P.Msg]) -> None:
        docs, fresh, ledger = [], [], []
        # an order's tickets complete its confirmation mail (TicketsIssued: same transaction, right after it)
        tickets = dict(t for t in map(N.confirmation_tickets, msgs) if t is not None)
        horizon = time.time() - self.s.notifier_max_age_seconds
        for m in msgs:
            if m.type in ("EventUpdated", "EventCreated"):
                self._remember(m.aggregate_id, m.data)
            for n in N.plan(m):
                event = self._event(n.event_id)
                if m.type == "HolderNotice":  # the time told is the message's (the read model may lag)
                    event = {**event, "title": m.data["title"], "starts_at": m.data["starts_at"]}
                doc = {"_id": n.id, "user_id": n.user_id, "kind": n.kind, "event_id": n.event_id, "event": event,
                       "data": n.data, "created_at": n.created_at, "read_at": None, "cause": n.cause}
                doc["title"], doc["body"] = mail.inbox_text(doc, self.links)
                stale = _epoch(n.created_at) < horizon
                docs.append(doc)
                ledger.append({"_id": n.id, "status": "skipped" if stale else "pending", "attempts": 0})
                if not stale:
                    fresh.append(doc)
        dup: set[int] = set()
        if docs:
            dup = insert_new(self.db[rm.NOTIFICATIONS], docs)
            insert_new(self.db[rm.MAIL_LOG], ledger)  # an entry already there keeps its status
            for i, doc in enumerate(docs):
                RECORDED.labels(doc["kind"], "duplicate" if i in dup else "new").inc()
        if fresh:
            # A new notification's mail is queued at once. One recorded before (a redelivery, a replay, a re-send)
            # was queued then, unless the process died in between: it is queued again only while the ledger still
            # says pending, marked ``verify`` so that its sender re-reads the ledger first (it may have been sent
            # since). Reading the ledger (a big collection: sequential scans) is thus kept off every new mail's path.
            old = {docs[i]["_id"] for i in dup}
            pending = set()
            if old & {d["_id"] for d in fresh}:
                pending = {d["_id"] for d in self.db[rm.MAIL_LOG].find(
                    {"_id": {"$in": list(old)}, "status": "pending"}, {"_id": 1})}
            now = time.time()
            queue = [{"_id": d["_id"], "next_at": now, "cv": 0, "ready": d["kind"] != "order_confirmed",
                      "verify": d["_id"] in old, **{k: d[k] for k in MAIL_FIELDS}}
                     for d in fresh if d["_id"] not in old or d["_id"] in pending]
            for q in queue:  # the confirmation's tickets, when they came in this batch too (the usual case)
                if q["_id"] in tickets:
                    q.update(tickets=tickets.pop(q["_id"]), ready=True)
            if queue:
                insert_new(self.db[rm.MAIL_QUEUE], queue)
            done = time.time()
            for d in fresh:
                RECORD_LATENCY.observe(max(done - _epoch(d["created_at"]), 0))
        for nid, tks in tickets.items():  # tickets of a confirmation queued by an earlier batch
            self.db[rm.MAIL_QUEUE].update_one({"_id": nid}, {"$set": {"tickets": tks, "ready": True}})
        for m in msgs:
            mark = N.read_mark(m)
            if mark is not None:
                user, nid, at = mark
                flt: dict[str, Any] = {"user_id": user, "read_at": None}
                flt.update({"_id": nid} if nid else {"created_at": {"$lte": at}})
                self.db[rm.NOTIFICATIONS].update_many(flt, {"$set": {"read_at": at}})
        if fresh:
            self.stream(fresh)

    def stream(self, docs: list[dict[str, Any]]) -> None:
        """Each new notification on its user's SSE stream, once per id (NOTIFY_LUA)."""
        pipe = self.redis.pipeline(transaction=False)
        for d in docs:
            frame = {"id": d["_id"], "type": d["kind"], "occurred_at": d["created_at"], "title": d["title"],
                     "body": d["body"], "event": d["event"], **d["data"]}
            self._notify(keys=[keys.notifications(d["user_id"]), keys.notifications_seen(d["user_id"])],
                         client=pipe, args=[d["_id"], NOTIFY_MAXLEN, d["kind"],
                                            json.dumps(frame, separators=(",", ":")), NOTIFY_SEEN_TTL_S])
        pipe.execute()


# ---------------------------------------------------------------------------------------------------- sending
class Sender:
    """The SMTP half: claims due mails, sends them, records the outcome."""

    def __init__(self, s: Settings, db=None) -> None:
        self.s = s
        self.db = db if db is not None else AsyncMongoClient(s.mongo_url, serverSelectionTimeoutMS=5000)[s.mongo_db]
        self.links = links(s)
        self.wake = asyncio.Event()
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=s.notifier_senders * 4)
        self.stopping = asyncio.Event()
        self.idle = asyncio.Event()
        self.sent: list[tuple[dict[str, Any], int]] = []  # (claim, attempts) sent, not yet recorded
        self.users: dict[str, tuple[str, str]] = {}

    async def run(self) -> None:
        smtp = [mail.SMTPSender(self.s.smtp_url) for _ in range(self.s.notifier_senders)]
        workers = [asyncio.create_task(self._send_loop(c)) for c in smtp]
        finisher = asyncio.create_task(self._finish_sent())
        try:
            await self._dispatch()
        finally:
            for _ in workers:
                await self.queue.put({})  # one stop marker per sender, after what is queued
            await asyncio.gather(*workers, return_exceptions=True)
            self.idle.set()  # no mail in flight: the finisher records the last ones and ends
            await finisher
            for c in smtp:
                await c.close()

    async def _dispatch(self) -> None:
        """Claim due mails while the senders have room; wait for a wake-up (a batch recorded) or 0.5 s."""
        last_depth = 0.0
        while not self.stopping.is_set():
            claimed = 0
            try:
                room = self.queue.maxsize - self.queue.qsize()
                if room > 0:
                    now = time.time()
                    cursor = self.db[rm.MAIL_QUEUE].find({"ready": True, "next_at": {"$lte": now}}).sort(
                        "next_at", 1).limit(room)
                    due = await cursor.to_list(room)
                    won = await asyncio.gather(*(self._claim(e, now) for e in due))  # one round trip's time
                    for entry, ok in zip(due, won):
                        if ok:
                            await self.queue.put({**entry, "cv": entry["cv"] + 1})
                            claimed += 1
                if time.monotonic() - last_depth > 5:
                    QUEUE_DEPTH.set(await self.db[rm.MAIL_QUEUE].count_documents({}))
                    last_depth = time.monotonic()
            except PyMongoError as exc:
                log.warning("mail queue unavailable", error=repr(exc))
                await asyncio.sleep(1)
            if claimed == 0:
                self.wake.clear()
                try:
                    await asyncio.wait_for(self.wake.wait(), 0.5)
                except asyncio.TimeoutError:
                    pass
        await self._hand_back()

    async def _claim(self, entry: dict[str, Any], now: float) -> bool:
        """Compare-and-set on the entry's ``cv``: of several notifier processes, one wins each mail."""
        res = await self.db[rm.MAIL_QUEUE].update_one(
            {"_id": entry["_id"], "cv": entry["cv"]},
            {"$set": {"cv": entry["cv"] + 1, "next_at": now + self.s.notifier_lease_seconds}})
        return res.modified_count == 1

    async def _hand_back(self) -> None:
        """Stopping: mails claimed but not started go back to the queue at once (not after their lease)."""
        while not self.queue.empty():
            entry = self.queue.get_nowait()
            try:
                await self.db[rm.MAIL_QUEUE].update_one({"_id": entry["_id"], "cv": entry["cv"]},
                                                        {"$set": {"next_at": time.time()}})
            except PyMongoError:
                pass  # its lease ends anyway

    async def _send_loop(self, smtp: mail.SMTPSender) -> None:
        while True:
            entry = await self.queue.get()
            if not entry:
                return
            try:
                await self.deliver(entry, smtp)
            except Exception as exc:  # noqa: BLE001 - a sender survives anything; the lease brings the mail back
                log.warning("delivery failed", notification=entry["_id"], error=repr(exc))

    async def _recipient(self, user_id: str) -> tuple[str, str] | None:
        if user_id not in self.users:
            u = await self.db[rm.USERS].find_one({"_id": user_id}, {"email": 1, "name": 1})
            if u is None:
                return None  # the users read model has not caught up yet: try again shortly
            if len(self.users) > 50_000:
                self.users.clear()
            self.users[user_id] = (u["email"], u.get("name") or "")
        return self.users[user_id]

    async def deliver(self, entry: dict[str, Any], smtp: mail.SMTPSender) -> None:
        nid, claim = entry["_id"], {"_id": entry["_id"], "cv": entry["cv"]}
        if "user_id" not in entry:  # queued by a development build of this notifier: nothing to render from
            log.warning("queue entry without its mail dropped", notification=nid)
            await self.db[rm.MAIL_QUEUE].delete_one(claim)
            return
        if entry.get("verify"):  # queued again by a redelivery: sent since?
            doc = await self.db[rm.MAIL_LOG].find_one({"_id": nid}, {"status": 1})
            if doc is not None and doc.get("status") != "pending":
                await self.db[rm.MAIL_QUEUE].delete_one(claim)
                return
        attempts = entry.get("attempts", 0) + 1
        to = await self._recipient(entry["user_id"])
        try:
            if to is None:
                if time.time() - _epoch(entry["created_at"]) > RECIPIENT_WAIT_S:
                    raise mail.PermanentFailure("no such recipient in the users read model")
                raise LookupError("recipient not in the users read model yet")
            await smtp.send(mail.message(entry, to[0], to[1], self.s.mail_from, self.links))
        except mail.PermanentFailure as exc:
            await self._finish_one(claim, "failed", attempts, error=str(exc)[:500])
            MAILS.labels("failed").inc()
            log.warning("mail refused for good", notification=nid, error=str(exc))
            return
        except Exception as exc:  # noqa: BLE001 - the server away, a timeout, a 4xx: try again later
            if attempts >= self.s.notifier_max_attempts:
                await self._finish_one(claim, "failed", attempts, error=f"gave up: {exc!r}"[:500])
                MAILS.labels("failed").inc()
                return
            delay = backoff(attempts, self.s.notifier_retry_max_seconds)
            await self.db[rm.MAIL_QUEUE].update_one(claim, {"$set": {
                "next_at": time.time() + delay, "attempts": attempts, "error": repr(exc)[:500]}})
            MAILS.labels("retry").inc()
            log.info("mail retried later", notification=nid, attempts=attempts, retry_in=delay, error=repr(exc))
            return
        self.sent.append((claim, attempts))
        MAILS.labels("sent").inc()
        MAIL_LATENCY.observe(max(time.time() - _epoch(entry["created_at"]), 0))

    async def _finish_one(self, claim: dict[str, Any], status: str, attempts: int, error: str) -> None:
        await self.db[rm.MAIL_LOG].update_one({"_id": claim["_id"]}, {"$set": {
            "status": status, "attempts": attempts, "error": error, "done_at": now_iso()}})
        await self.db[rm.MAIL_QUEUE].delete_one(claim)

    async def _finish_sent(self) -> None:
        """Every ``FINISH_EVERY`` s: the mails sent since are recorded ``sent`` in the ledger, then leave the queue
        (two writes for the lot, not per mail). Until then their claims keep them from being sent again; a crash
        in between is the window the module's doc bounds."""
        while True:
            stopping = self.stopping.is_set() and self.idle.is_set()
            batch, self.sent = self.sent, []
            if batch:
                ids = [c["_id"] for c, _ in batch]
                try:
                    await self.db[rm.MAIL_LOG].update_many({"_id": {"$in": ids}}, {"$set": {
                        "status": "sent", "done_at": now_iso()}})
                    await self.db[rm.MAIL_QUEUE].delete_many({"_id": {"$in": ids}})
                except PyMongoError as exc:
                    log.warning("recording sent mails failed; retried", error=repr(exc))
                    self.sent = batch + self.sent
            if stopping and not self.sent:
                return
            await asyncio.sleep(FINISH_EVERY)


# ---------------------------------------------------------------------------------------------------- process
async def amain(s: Settings) -> None:
    recorder = Recorder(s, group=s.notifier_group)
    await asyncio.to_thread(create_indexes, recorder.db, rm.NOTIFIER_INDEXES, log)
    sender = Sender(s)
    loop = asyncio.get_running_loop()
    recorder.on_recorded = lambda: loop.call_soon_threadsafe(sender.wake.set)
    serve_http(recorder, s.projector_host, s.notifier_metrics_port)

    def stop() -> None:
        log.info("notifier stopping: finishing the mails in flight")
        recorder.stopping.set()
        sender.stopping.set()
        sender.wake.set()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)
    consuming = asyncio.create_task(asyncio.to_thread(recorder.run))
    await sender.run()
    await consuming


def main() -> None:
    configure_logging()
    s = get_settings()
    log.info("notifier starting", smtp=s.smtp_url.split("@")[-1], senders=s.notifier_senders, pid=os.getpid(),
             run=str(uuid.uuid4())[:8])
    asyncio.run(amain(s))


if __name__ == "__main__":
    main()
