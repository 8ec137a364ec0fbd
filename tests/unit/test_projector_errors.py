"""The projector's error classes (projectors/worker.py): transient store errors are retried until they pass,
permanent ones dead-letter only the message that causes them, and the rest of the batch is applied."""
from __future__ import annotations

import threading
import time

import pytest
import redis
from confluent_kafka import KafkaError, KafkaException
from pymongo.errors import (AutoReconnect, BulkWriteError, DocumentTooLarge, OperationFailure,
                            ServerSelectionTimeoutError)

from projectors import projection as P
from projectors.worker import Projector, transient


def msg(n: int, kind: str = "SeatsHeld") -> P.Msg:
    return P.Msg("evently.event", 0, n, {"id": f"m{n}", "type": kind, "aggregate_id": "e", "data": {}})


class FlakyStore:
    """Fails as told: ``transient_failures`` times first, then permanently for messages whose offset is bad."""

    def __init__(self, transient_failures: int = 0, bad: set[int] = frozenset(), error=KeyError) -> None:
        self.transient_failures, self.bad, self.error = transient_failures, bad, error
        self.applied: list[int] = []
        self.forgotten = 0

    def apply(self, msgs):
        if self.transient_failures:
            self.transient_failures -= 1
            raise AutoReconnect("connection closed")
        if any(m.offset in self.bad for m in msgs):
            raise self.error("cannot apply")
        self.applied += [m.offset for m in msgs]
        return list(msgs), time.time()

    def forget(self):
        self.forgotten += 1


def projector(store) -> Projector:
    p = Projector.__new__(Projector)  # no Kafka, no MongoDB: only the apply logic
    p.store, p.stopping, p.healthy = store, threading.Event(), True
    return p


@pytest.mark.parametrize("exc,expected", [
    (AutoReconnect("x"), True), (ServerSelectionTimeoutError("x"), True), (redis.ConnectionError("x"), True),
    (redis.TimeoutError("x"), True), (OperationFailure("bad value", code=2), False), (DocumentTooLarge("x"), False),
    (OperationFailure("document failed validation", code=121), False),
    # FerretDB's answer while its PostgreSQL backend restarts (found by tests/faults): retried, never dead-lettered
    (OperationFailure("[msg_insert.go:168] failed to connect to `user=evently database=ferretdb`", code=1), True),
    (OperationFailure("[msg_insert.go:168] unexpected EOF", code=1), True),
    (BulkWriteError({"writeErrors": [{"index": 0, "code": 121, "errmsg": "invalid"}]}), False),
    (BulkWriteError({"writeErrors": [{"index": 0, "code": 1, "errmsg": "unexpected EOF"}]}), True),
    (KeyError("price"), False), (TypeError("x"), False),
])
def test_errors_are_classified(exc, expected):
    assert transient(exc) is expected


def test_a_transient_error_retries_the_batch_until_it_passes():
    store = FlakyStore(transient_failures=3)
    applied, _, failed = projector(store)._apply([msg(1), msg(2)])
    assert [m.offset for m in applied] == [1, 2] and failed == [] and store.applied == [1, 2]
    assert store.forgotten == 3  # the caches are dropped at every failure


@pytest.mark.parametrize("error", [KeyError, lambda m: OperationFailure(m, code=2)])
def test_a_permanent_error_dead_letters_only_its_message(error):
    store = FlakyStore(bad={2}, error=error)
    applied, _, failed = projector(store)._apply([msg(1), msg(2), msg(3)])
    assert [m.offset for m in applied] == [1, 3] and store.applied == [1, 3]  # in log order, the rest applied
    assert [(m.offset, type(e).__name__) for m, e in failed] == [(2, "KeyError" if error is KeyError
                                                                      else "OperationFailure")]


class FlakyConsumer:
    def __init__(self, failures: int) -> None:
        self.failures, self.commits = failures, []

    def commit(self, offsets, asynchronous):
        if self.failures:
            self.failures -= 1
            raise KafkaException(KafkaError(KafkaError._WAIT_COORD))
        self.commits.append(sorted((o.topic, o.partition, o.offset) for o in offsets))


def test_a_failed_offset_commit_is_not_fatal_and_goes_with_the_next_batch():
    """Found by the fault suite (kill -9 of Kafka): a commit that failed while the coordinator was away killed
    the worker, and its replacement waited out the old member's session."""
    p = projector(FlakyStore())
    p.consumer, p.uncommitted = FlakyConsumer(failures=1), {}
    p.commit({("evently.event", 0): 5})
    assert p.consumer.commits == [] and p.uncommitted == {("evently.event", 0): 5}
    p.commit({("evently.event", 1): 7})
    assert p.consumer.commits == [[("evently.event", 0, 6), ("evently.event", 1, 8)]] and p.uncommitted == {}
