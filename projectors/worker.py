"""Projector worker: ``python -m projectors.worker``.

A confluent-kafka consumer in the ``EVENTLY_PROJECTOR_GROUP`` group reads the outbox topics,
applies each message to the MongoDB read models, and commits its offsets only after the writes
(at-least-once delivery + idempotent writes = exactly-once effect). A message that can never be
applied goes to the dead-letter topic with the error in its headers, and the partition moves on;
an unavailable MongoDB is retried, never dead-lettered.
"""
from __future__ import annotations

import json
import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import structlog
from confluent_kafka import Consumer, KafkaError, Message, Producer
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, generate_latest
from pymongo import MongoClient
from pymongo.errors import PyMongoError

from common.logging import configure_logging
from common.settings import get_settings
from projectors import read_models
from projectors.topics import DLQ_TOPIC, SOURCE_TOPICS

log = structlog.get_logger("projector")

APPLIED = Counter("evently_projector_messages_total", "Messages handled", ["topic", "outcome"])
LAST_OFFSET = Gauge("evently_projector_last_applied_offset", "Last applied offset", ["topic", "partition"])
LAG = Gauge("evently_projector_consumer_lag", "High watermark minus committed position", ["topic", "partition"])


class Worker:
    def __init__(self) -> None:
        s = get_settings()
        self.settings = s
        self.db = MongoClient(s.mongo_url, serverSelectionTimeoutMS=5000)[s.mongo_db]
        self.consumer = Consumer({
            "bootstrap.servers": s.kafka_bootstrap,
            "group.id": s.projector_group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "fetch.wait.max.ms": 10,
            "log_level": 3,
        })
        self.dlq = Producer({"bootstrap.servers": s.kafka_bootstrap, "linger.ms": 0, "acks": "all"})
        self.stopping = threading.Event()
        self.healthy = False

    def handle(self, msg: Message) -> str:
        try:
            env = json.loads(msg.value()) if msg.value() is not None else None
            return "applied" if read_models.apply(self.db, env) else "ignored"
        except (ValueError, KeyError, TypeError, AttributeError) as exc:  # includes PoisonMessage, JSON errors
            self.dead_letter(msg, exc)
            return "dead_lettered"

    def dead_letter(self, msg: Message, exc: Exception) -> None:
        log.warning("dead-lettering message", topic=msg.topic(), partition=msg.partition(),
                    offset=msg.offset(), error=repr(exc))
        headers = list(msg.headers() or []) + [
            ("dlq.error", repr(exc).encode()),
            ("dlq.source", f"{msg.topic()}/{msg.partition()}/{msg.offset()}".encode()),
        ]
        self.dlq.produce(DLQ_TOPIC, key=msg.key(), value=msg.value(), headers=headers)
        self.dlq.flush(10)

    def apply_with_retry(self, msg: Message) -> str:
        delay = 0.1
        while not self.stopping.is_set():
            try:
                return self.handle(msg)
            except PyMongoError as exc:  # store unavailable: wait, never skip
                self.healthy = False
                log.warning("read-model store unavailable, retrying", error=str(exc), delay=delay)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
        raise SystemExit(0)

    def run(self) -> None:
        self.consumer.subscribe(SOURCE_TOPICS)
        log.info("projector started", topics=SOURCE_TOPICS, group=self.settings.projector_group)
        last_lag = 0.0
        while not self.stopping.is_set():
            msgs = self.consumer.consume(num_messages=500, timeout=0.2)
            for msg in msgs:
                if msg.error():
                    if msg.error().code() != KafkaError._PARTITION_EOF:
                        log.warning("consumer error", error=str(msg.error()))
                    continue
                outcome = self.apply_with_retry(msg)
                APPLIED.labels(msg.topic(), outcome).inc()
                LAST_OFFSET.labels(msg.topic(), str(msg.partition())).set(msg.offset())
            if msgs:
                self.consumer.commit(asynchronous=False)
            self.healthy = True
            if time.monotonic() - last_lag > 5:
                self.update_lag()
                last_lag = time.monotonic()
        self.consumer.close()

    def update_lag(self) -> None:
        try:
            for tp in self.consumer.committed(self.consumer.assignment(), timeout=2):
                _, high = self.consumer.get_watermark_offsets(tp, timeout=2, cached=False)
                LAG.labels(tp.topic, str(tp.partition)).set(max(high - max(tp.offset, 0), 0))
        except Exception as exc:  # noqa: BLE001 - metrics must never kill the worker
            log.debug("lag update failed", error=str(exc))


def serve_http(worker: Worker, host: str, port: int) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            if self.path == "/metrics":
                body, ctype, code = generate_latest(), CONTENT_TYPE_LATEST, 200
            elif self.path == "/health":
                ok = worker.healthy
                body = json.dumps({"status": "ok" if ok else "unavailable"}).encode()
                ctype, code = "application/json", 200 if ok else 503
            else:
                body, ctype, code = b'{"error": {"code": "NOT_FOUND", "message": "no such path", "details": {}}}', \
                    "application/json", 404
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main() -> None:
    configure_logging()
    worker = Worker()
    s = get_settings()
    serve_http(worker, s.projector_host, s.projector_metrics_port)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: worker.stopping.set())
    worker.run()


if __name__ == "__main__":
    main()
