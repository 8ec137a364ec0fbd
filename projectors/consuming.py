"""What the projector and the notifier share as Kafka consumers of the outbox topics: parsing a message into a
validated envelope, telling a transient store error from one the data causes, and the ``/health`` + ``/metrics``
listener. (Each process registers only its own metrics: this module defines none.)"""
from __future__ import annotations

import json
import threading
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

import redis
import tenacity
from confluent_kafka import KafkaError, Message
from prometheus_client import make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer
from pymongo.errors import (BulkWriteError, ConnectionFailure, ExecutionTimeout, OperationFailure, PyMongoError,
                             WTimeoutError)

from contracts import readmodels
from contracts.errors import error_body
from projectors import projection as P

# MongoDB error codes that the document or the update itself causes: the same message fails the same way every
# time, so it is dead-lettered. Every other server error is treated as transient and retried (a stuck partition
# shows in the lag metric and the log; a dead-lettered message is a read model silently missing a change).
# FerretDB reports a lost or refused PostgreSQL backend as code 1 (InternalError: "failed to connect", "unexpected
# EOF"): the fault suite (tests/faults) found that counting those as permanent dead-lettered a whole outage's
# messages.
PERMANENT_MONGO_CODES = frozenset({
    2,      # BadValue
    9,      # FailedToParse
    14,     # TypeMismatch
    15,     # Overflow
    28,     # PathNotViable
    40,     # ConflictingUpdateOperators
    52, 53, 55, 56, 57,  # $-prefixed / invalid _id / DBRef / empty / dotted field names
    66,     # ImmutableField
    121,    # DocumentValidationFailure
    10334,  # BSONObjectTooLarge
    17280,  # KeyTooLong
})


def transient(exc: BaseException) -> bool:
    """Will the same batch succeed later? Lost connections, timeouts, a server not (yet) reachable, and any store
    error that is not one the data causes (``PERMANENT_MONGO_CODES``): yes, retry the batch with backoff. Anything
    else (a write the store refuses for what it holds, a document too large, a bug met by one message's data): no,
    the message is dead-lettered with the error and the partition moves on."""
    if isinstance(exc, (ConnectionFailure, ExecutionTimeout, WTimeoutError)):
        return True
    if isinstance(exc, BulkWriteError):  # permanent only if every write failed for its data
        codes = {e.get("code") for e in (exc.details or {}).get("writeErrors", [])}
        return not codes or not codes <= PERMANENT_MONGO_CODES
    if isinstance(exc, OperationFailure):
        return exc.code not in PERMANENT_MONGO_CODES
    if isinstance(exc, PyMongoError) and (exc.has_error_label("RetryableWriteError")
                                          or exc.has_error_label("TransientTransactionError")):
        return True
    return isinstance(exc, (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError))


def parse(msg: Message) -> P.Msg:
    """Kafka message -> validated Msg, or PoisonMessage."""
    if msg.value() is None:
        raise P.PoisonMessage("empty message value")
    try:
        env = json.loads(msg.value())
    except (ValueError, UnicodeDecodeError) as exc:
        raise P.PoisonMessage(f"not JSON: {exc}") from exc
    P.validate(env)
    ts_type, ts = msg.timestamp()
    return P.Msg(msg.topic(), msg.partition(), msg.offset(), env, P.occurred_ms(env), float(ts) if ts_type else None)


def read_batch(raw: list[Message], log: Any) -> tuple[list[tuple[Message, P.Msg | P.PoisonMessage]],
                                                   dict[tuple[str, int], int]]:
    """A polled batch as (message, its parsed envelope or why it is poison), in order, plus the last offset of each
    partition in it (what to commit). Consumer errors are logged (end of partition aside) and skipped."""
    out: list[tuple[Message, P.Msg | P.PoisonMessage]] = []
    last: dict[tuple[str, int], int] = {}
    for m in raw:
        if m.error():
            if m.error().code() != KafkaError._PARTITION_EOF:
                log.warning("consumer error", error=str(m.error()))
            continue
        last[(m.topic(), m.partition())] = m.offset()
        try:
            out.append((m, parse(m)))
        except P.PoisonMessage as exc:
            out.append((m, exc))
    return out, last


def create_indexes(db: Any, indexes: tuple, log: Any) -> None:
    """At a worker's start: the store may still be starting, so 30 tries 1 s apart, then start anyway (applying
    retries on its own)."""
    try:
        tenacity.Retrying(retry=tenacity.retry_if_exception_type(PyMongoError), stop=tenacity.stop_after_attempt(30),
                          wait=tenacity.wait_fixed(1), reraise=True,
                          before_sleep=lambda st: log.warning("creating indexes failed, retrying",
                                                              error=str(st.outcome.exception())))(
            readmodels.ensure_indexes, db, indexes)
    except PyMongoError as exc:
        log.error("creating indexes failed; continuing without", error=str(exc))


def serve_http(worker: Any, host: str, port: int):
    """``/metrics`` is prometheus_client's own WSGI app; ``/health`` says whether ``worker`` (anything with
    ``healthy`` and ``paused``) is consuming."""
    metrics_app = make_wsgi_app()

    def app(environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            return metrics_app(environ, start_response)
        if path == "/health":
            ok = worker.healthy
            body = json.dumps({"status": "ok" if ok else "unavailable", "checks": {"paused": worker.paused}})
            status = "200 OK" if ok else "503 Service Unavailable"
        else:
            body, status = json.dumps(error_body("NOT_FOUND", "no such path")), "404 Not Found"
        data = body.encode()
        start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
        return [data]

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args) -> None:
            pass

    server = make_server(host, port, app, ThreadingWSGIServer, handler_class=Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
