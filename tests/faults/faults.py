"""The ten faults of issue 12, each injected into the running local stack (infra/stack.py).

A fault's ``inject()`` does the damage and returns at once; ``recovered()`` says when the part that was hit
works again (supervisord has restarted it and its health check passes, or its job is done). The suite measures
the time between the two as "time to recover". Nothing here restarts anything: supervisord does that.
"""
from __future__ import annotations

import collections
import json
import os
import re
import signal
import subprocess
import uuid
from dataclasses import dataclass, field
from typing import Callable

import redis

from common.settings import Settings
from infra import stack
from infra.components import Component


@dataclass
class Fault:
    name: str
    inject: Callable[[], None]
    recovered: Callable[[], bool]
    notes: dict = field(default_factory=dict)


def kill_process(comp: Component, sig: signal.Signals = signal.SIGKILL, name: str | None = None) -> Fault:
    """Signals the component's process; recovered once supervisord has restarted it and it is healthy."""
    state: dict = {}

    def inject() -> None:
        state["pid"], state["restarts"] = comp.pid(), comp.restarts()
        os.kill(state["pid"], sig)

    def recovered() -> bool:
        return comp.restarts() > state["restarts"] and comp.pid() not in (None, state["pid"]) and comp.healthy()

    return Fault(name or f"kill -9 {comp.name}", inject, recovered)


def connections(port: int) -> collections.Counter:
    """Established connections to ``port`` per owning process (``ss -tnp``)."""
    out = subprocess.run(["ss", "-Htnp", "state", "established", f"( sport = :{port} )"], capture_output=True,
                         text=True).stdout
    return collections.Counter(int(pid) for pid in re.findall(r"pid=(\d+)", out))


def kill_worker(comp: Component) -> Fault:
    """Kills the worker that holds the most client connections (the SSE subscribers, requests in flight)."""
    state: dict = {}

    def inject() -> None:
        workers = comp.workers()
        assert len(workers) >= 2, f"{comp.name} runs {len(workers)} worker process(es); the fault needs 2"
        busy = connections(comp.ports[0])
        state["before"], state["victim"] = workers, max(workers, key=lambda w: (busy[w], -w))
        state["connections"] = busy[state["victim"]]
        os.kill(state["victim"], signal.SIGKILL)

    def recovered() -> bool:
        now = comp.workers()
        return state["victim"] not in now and len(now) == len(state["before"]) and comp.healthy()

    return Fault(f"kill -9 a {comp.name} worker", inject, recovered, state)


def redis_flushall(settings: Settings) -> Fault:
    def inject() -> None:
        redis.Redis.from_url(settings.redis_url, socket_timeout=5).flushall()

    return Fault("FLUSHALL on Redis", inject, stack.REDIS.healthy)


def postgres_immediate_restart() -> Fault:
    """An immediate-mode shutdown (SIGQUIT to the postmaster: no checkpoint, crash recovery on start, every
    connection cut), then supervisord starts it again: the same as `pg_ctl restart -m immediate`."""
    return kill_process(stack.POSTGRES, signal.SIGQUIT, "immediate restart of PostgreSQL")


POISON_MARK = "fault-suite-poison"


def poison_message(settings: Settings, event_id: str) -> Fault:
    """Two messages no projector can apply, written straight to the inventory topic with a live event's key
    (so they sit in the same partition as the sale): bytes that are not JSON, and an envelope of a known type
    whose data breaks its schema. Both must reach the dead-letter topic and the partition must move on."""
    from confluent_kafka import Consumer, Producer, TopicPartition

    from projectors.topics import DLQ_TOPIC

    state: dict = {"marks": [f"{POISON_MARK}-{uuid.uuid4().hex}" for _ in range(2)]}

    def dlq_end() -> int:
        c = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": f"fault-{uuid.uuid4().hex}",
                      "enable.auto.commit": False})
        try:
            return c.get_watermark_offsets(TopicPartition(DLQ_TOPIC, 0), timeout=10)[1]
        finally:
            c.close()

    def inject() -> None:
        state["dlq_from"] = dlq_end()
        p = Producer({"bootstrap.servers": settings.kafka_bootstrap})
        a, b = state["marks"]
        p.produce("evently.event", key=event_id.encode(), value=f"not json {{ {a}".encode())
        p.produce("evently.event", key=event_id.encode(), value=json.dumps({
            "id": b, "type": "SeatsHeld", "schema_version": 1, "aggregate_id": event_id,
            "data": {"event_id": event_id, "seats": "every one of them"}}).encode())
        assert p.flush(10) == 0, "the poison was not written"

    def recovered() -> bool:
        c = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": f"fault-{uuid.uuid4().hex}",
                      "enable.auto.commit": False})
        try:
            c.assign([TopicPartition(DLQ_TOPIC, 0, state["dlq_from"])])
            found: dict[str, dict] = {}
            for m in c.consume(500, timeout=3):
                if m.error() is None:
                    for mark in state["marks"]:
                        if mark.encode() in (m.value() or b""):
                            found[mark] = {k: v.decode() for k, v in (m.headers() or [])}
            state["dead_letters"] = found
            return len(found) == 2
        finally:
            c.close()

    return Fault("poison messages on the inventory topic", inject, recovered, state)


def all_faults(settings: Settings, poison_event: Callable[[], str]) -> dict[str, Callable[[], Fault]]:
    """id -> a factory (some faults need the sale's events, made later)."""
    return {
        "command-worker": lambda: kill_worker(stack.COMMAND),
        "projector": lambda: kill_process(stack.PROJECTOR),
        "query-worker": lambda: kill_worker(stack.QUERY),
        "connect": lambda: kill_process(stack.CONNECT),
        "kafka": lambda: kill_process(stack.KAFKA),
        "redis-kill": lambda: kill_process(stack.REDIS),
        "redis-flushall": lambda: redis_flushall(settings),
        "postgres-immediate": postgres_immediate_restart,
        "ferretdb": lambda: kill_process(stack.FERRETDB),
        "poison": lambda: poison_message(settings, poison_event()),
    }
