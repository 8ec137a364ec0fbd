"""Fixtures for end-to-end tests: they run against the live stack that `make test` starts."""
from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from typing import Callable, TypeVar

import httpx
import psycopg
import pytest

from common.settings import Settings

T = TypeVar("T")


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings()


@pytest.fixture(scope="session")
def pg(settings: Settings):
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        yield conn


def eventually(probe: Callable[[], T | None], *, timeout: float = 30.0, interval: float = 0.05) -> T:
    """Poll until ``probe`` returns something truthy. The timeout is a liveness bound, not a speed assertion."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = probe()
            if result:
                return result
        except Exception as exc:  # noqa: BLE001 - keep polling, report the last error
            last_exc = exc
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s (last error: {last_exc!r})")


@contextlib.contextmanager
def service_process(module: str, port_var: str, **env: str):
    """Another process of one of our services on a free loopback port, with ``env`` over the stack's
    environment; yields its base URL once /health answers 200, and stops it afterwards."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", module], env={**os.environ, port_var: str(port), **env},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    root = f"http://127.0.0.1:{port}"
    try:
        eventually(lambda: httpx.get(f"{root}/health", timeout=2).status_code == 200, timeout=30)
        yield root
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


# --- projector fixtures -------------------------------------------------------------------
@pytest.fixture(scope="session")
def api(settings: Settings):
    from tests.e2e.api import Api

    return Api(f"http://{settings.command_host}:{settings.command_port}")


@pytest.fixture(scope="module")
def q(settings: Settings):
    """A client of the query service."""
    with httpx.Client(base_url=f"http://{settings.query_host}:{settings.query_port}", timeout=10) as client:
        yield client


@pytest.fixture(scope="session")
def organizer(api) -> tuple[str, str]:
    return api.user("organizer")


@pytest.fixture(scope="session")
def buyer(api) -> tuple[str, str]:
    return api.user("buyer")


@pytest.fixture(scope="session")
def mongo(settings: Settings):
    from pymongo import MongoClient

    client = MongoClient(settings.mongo_url, serverSelectionTimeoutMS=5000)
    yield client[settings.mongo_db]
    client.close()


@pytest.fixture
def scratch_db(settings: Settings):
    """A throwaway MongoDB database (dropped afterwards)."""
    import uuid as _uuid

    from pymongo import MongoClient

    client = MongoClient(settings.mongo_url, serverSelectionTimeoutMS=5000)
    name = f"scratch_{_uuid.uuid4().hex[:10]}"
    yield client[name]
    client.drop_database(name)
    client.close()


def consistent(settings: Settings, event_ids: list[str], db=None, timeout: float = 60.0) -> None:
    """Wait until the consistency checker finds no difference for these events (liveness bound)."""
    from projectors.check import check

    last: list[str] = []

    def probe() -> bool:
        nonlocal last
        last = check(settings, event_ids, db=db)
        return not last

    try:
        eventually(probe, timeout=timeout, interval=0.3)
    except AssertionError:
        raise AssertionError("read models diverge from PostgreSQL:\n  " + "\n  ".join(last)) from None


def kafka_messages(settings: Settings, event_id: str, since_ms: int, topic: str = "evently.event") -> list:
    """Every message of ``topic`` keyed by ``event_id`` appended since ``since_ms`` (raw confluent messages)."""
    import uuid as _uuid

    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": f"e2e-{_uuid.uuid4()}",
                  "enable.auto.commit": False, "log_level": 3})
    try:
        parts = c.list_topics(topic, timeout=10).topics[topic].partitions
        starts = c.offsets_for_times([TopicPartition(topic, p, since_ms) for p in parts], timeout=10)
        ends = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in parts}
        todo = {tp.partition for tp in starts if 0 <= tp.offset < ends[tp.partition]}
        c.assign([tp for tp in starts if tp.partition in todo])
        out = []
        deadline = time.monotonic() + 60
        while todo and time.monotonic() < deadline:
            for m in c.consume(1000, timeout=0.5):
                if m.error():
                    continue
                if m.key() == event_id.encode():
                    out.append(m)
                if m.offset() >= ends[m.partition()] - 1:
                    todo.discard(m.partition())
        return sorted(out, key=lambda m: m.offset())
    finally:
        c.close()


# --- response conformance: every service response of the e2e run is checked against /openapi.json ----------
@pytest.fixture(scope="session", autouse=True)
def openapi_conformance(settings: Settings):
    import httpx

    from tests.e2e.conformance import Conformance, record

    documents = {}
    for host, port in ((settings.command_host, settings.command_port), (settings.query_host, settings.query_port)):
        try:
            documents[f"{host}:{port}"] = httpx.get(f"http://{host}:{port}/openapi.json", timeout=10).json()
        except httpx.HTTPError:
            pass  # a service that is down: the tests that need it fail on their own
    conformance = Conformance(documents)
    with pytest.MonkeyPatch.context() as mp:
        record(mp, conformance)
        yield conformance
    assert not conformance.failures, (f"{len(conformance.failures)} responses do not match the documents "
                                      f"({conformance.checked} did):\n  " + "\n  ".join(conformance.failures[:40]))
