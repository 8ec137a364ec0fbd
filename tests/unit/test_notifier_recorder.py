"""The notifier's recording half (projectors/notifier.py): it waits for the projector to have an event, but not
for ever, and a message it cannot record costs only its own notifications."""
from __future__ import annotations

import json
import threading

import pytest

from projectors import notifier


class NoEvents:
    def find_one(self, *args, **kwargs):
        return None


def recorder() -> notifier.Recorder:
    r = notifier.Recorder.__new__(notifier.Recorder)  # no Kafka, no store: only the event lookup is exercised
    r.db, r.events, r.missing = {"events": NoEvents()}, {}, {}
    return r


def test_an_event_the_read_model_lacks_is_waited_for_then_told_without_its_details():
    r = recorder()
    with pytest.raises(notifier.NotYetProjected):
        r._event("e1")  # the batch is retried: the projector may be behind
    r.missing["e1"] -= notifier.EVENT_WAIT_S + 1
    ev = r._event("e1")
    assert ev == {"id": "e1", "title": "your event", "starts_at": None, "ends_at": None, "venue": None}
    with pytest.raises(notifier.NotYetProjected):
        r._event("e2")  # another event waits its own time


def test_an_event_seen_in_the_stream_needs_no_lookup():
    r = recorder()
    r._remember("e3", {"title": "Gala", "starts_at": "2027-01-01T20:00:00.000Z", "venue": {"name": "Hall", "city": "Oslo"}})
    assert r._event("e3")["title"] == "Gala" and r._event("e3")["venue"] == {"name": "Hall", "city": "Oslo"}


class FakeKafkaMessage:
    """What read_batch reads of a confluent-kafka message."""
    def __init__(self, offset: int, user: str) -> None:
        self._offset = offset
        self._value = json.dumps({"id": f"m{offset}", "type": "NotificationsRead", "aggregate_id": user,
                                  "occurred_at": "2026-12-05T10:00:00.000Z",
                                  "data": {"user_id": user, "read_at": "2026-12-05T10:00:00.000Z"}}).encode()

    def error(self): return None
    def topic(self): return "evently.user"
    def partition(self): return 0
    def offset(self): return self._offset
    def value(self): return self._value
    def timestamp(self): return (0, 0)


class FakeConsumer:
    def __init__(self) -> None:
        self.committed = []

    def commit(self, offsets, asynchronous):
        self.committed += [(tp.topic, tp.partition, tp.offset) for tp in offsets]


def test_a_message_that_cannot_be_recorded_costs_only_its_own_notifications():
    r = recorder()
    r.stopping, r.consumer, r.on_recorded = threading.Event(), FakeConsumer(), lambda: None
    recorded: list[str] = []

    def record(msgs):
        if any(m.data["user_id"] == "bad" for m in msgs):
            raise ValueError("a bug met by this message's data")  # permanent: not retried
        recorded.extend(m.data["user_id"] for m in msgs)
    r.record = record
    r.process([FakeKafkaMessage(1, "a"), FakeKafkaMessage(2, "bad"), FakeKafkaMessage(3, "b")])
    assert recorded == ["a", "b"]  # the batch failed, then each message alone: only "bad" is skipped
    assert r.consumer.committed == [("evently.user", 0, 4)]  # and the partition moves on


def test_a_batch_waiting_for_the_store_is_not_committed_when_the_process_stops():
    r = recorder()
    r.stopping, r.consumer, r.on_recorded = threading.Event(), FakeConsumer(), lambda: None

    def record(msgs):
        r.stopping.set()  # asked to stop while the store is away
        raise notifier.NotYetProjected("e1")
    r.record = record
    r.process([FakeKafkaMessage(1, "a")])
    assert r.consumer.committed == []  # delivered again after the restart
