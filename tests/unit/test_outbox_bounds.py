"""Issue 11 #3: no outbox payload can exceed what Kafka takes, whatever the request."""
from __future__ import annotations

import pytest

from command_service.adapters import outbox
from command_service.domain import errors
from command_service.domain.events import SeatsReleased
from command_service.domain.model import (MAX_LAYOUT_BYTES, InventoryChange, Layout, Row, Section, SeatChange)


class QueueOnly:
    def __init__(self) -> None:
        self.rows: list = []

    def queue_prepared(self, name, params) -> None:
        self.rows.append(params)


def test_an_oversized_payload_is_refused_before_it_is_queued():
    change = InventoryChange(seats=tuple(SeatChange(f"ABCDEFGHIJ-ABCDEFGHIJ-{n}", "available", 2) for n in range(1, 20_000)))
    repo = QueueOnly()
    with pytest.raises(errors.ValidationError):
        outbox.write(repo, [SeatsReleased.of("00000000-0000-4000-8000-000000000000", "event_cancelled", change)])
    assert repo.rows == []
    # what the handlers really send: chunks of 1,000 seats, each far below the bound
    outbox.write(repo, [SeatsReleased.of("00000000-0000-4000-8000-000000000000", "event_cancelled", part)
                        for part in change.chunks(1000)])
    assert len(repo.rows) == 20


def test_a_layout_over_the_bound_is_refused():
    rows = tuple(Row(f"R{r:09d}", 1) for r in range(100))
    Layout(tuple(Section(f"S{i:09d}", "N" * 100, "seated", rows) for i in range(10))).ensure_publishable()
    big = Layout(tuple(Section(f"S{i:09d}", "N" * 100, "seated", rows) for i in range(100)))  # 10,000 rows
    with pytest.raises(errors.ValidationError) as e:
        big.ensure_publishable()
    assert "sections" in e.value.details and str(MAX_LAYOUT_BYTES) in e.value.details["sections"]
