"""The projector's error classes (projectors/worker.py): transient store errors are retried until they pass,
permanent ones dead-letter only the message that causes them, and the rest of the batch is applied."""
from __future__ import annotations

import threading
import time

import pytest
import redis
from pymongo.errors import AutoReconnect, DocumentTooLarge, OperationFailure, ServerSelectionTimeoutError

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
