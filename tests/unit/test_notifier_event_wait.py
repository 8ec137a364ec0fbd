"""The notifier waits for the projector to have an event, but not for ever (projectors/notifier.py)."""
from __future__ import annotations

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
