"""The seat-map page's waiting room in a real Chromium (issue 16): the buyer joins, watches the position count
down live, and buying unlocks on admission: hold with the admission, check out, confirmed."""
from __future__ import annotations

import time
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from tests.e2e.conftest import eventually
from tests.e2e.test_browser_buy import click
from tests.e2e.test_browser_seatmap import SeatMapPage, browser_tools, query_url  # noqa: F401 - fixtures

pytestmark = pytest.mark.e2e


def test_the_page_counts_the_queue_down_and_unlocks_buying_on_admission(browser_tools, api, q, query_url,
                                                                         tmp_path):
    _, organizer = api.user("organizer")
    opens = datetime.now(timezone.utc) + timedelta(seconds=8)
    venue = api.call("POST", "/api/v1/venues", organizer, json={"name": "Queue Club", "city": "Lisbon", "sections": [
        {"code": "A", "name": "Stalls", "kind": "seated", "rows": [{"label": "1", "seats": 6}]}]})
    ev = api.call("POST", "/api/v1/events", organizer, json={
        "venue_id": venue["id"], "title": f"Drop {uuid.uuid4().hex[:6]}", "category": "music",
        "starts_at": "2027-03-01T20:00:00Z", "currency": "EUR", "prices": {"A": 0},
        "sale_starts_at": opens.isoformat().replace("+00:00", "Z"),
        # one admission every 2 s from the opening: three early joiners go first, then this buyer
        "waiting_room": {"admit_per_minute": 30, "admission_seconds": 120}})
    api.call("POST", f"/api/v1/events/{ev['id']}/publish", organizer)
    for _ in range(3):
        api.call("POST", f"/api/v1/events/{ev['id']}/queue", api.user("buyer")[1])
    eventually(lambda: q.get(f"/api/v1/events/{ev['id']}").status_code == 200, timeout=60)
    _, buyer = api.user("buyer")
    page = SeatMapPage(f"{query_url}/?event={ev['id']}#token={buyer}", tmp_path)
    try:
        page.ready()
        page.wait_attr("#conn", "data-state", "live")
        assert page.eval("document.querySelector('#queue').hidden") is False
        assert "sale opens" in page.eval("document.querySelector('#when').textContent")
        time.sleep(max(0.0, (opens - datetime.now(timezone.utc)).total_seconds() + 0.3))
        click(page, "#join-btn")
        page.wait_attr("#queue-status", "data-status", "waiting")
        click(page, '[data-seat="A-1-1"]')
        assert page.eval("document.querySelector('#hold-btn').disabled") is True  # locked until admitted
        positions = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            status, position = page.eval("[document.querySelector('#queue-status').dataset.status, "
                                         "document.querySelector('#queue-status').dataset.position]")
            if position and (not positions or positions[-1] != int(position)):
                positions.append(int(position))
            if status == "admitted":
                break
            time.sleep(0.1)
        assert status == "admitted", positions
        assert positions[0] >= 2 and positions == sorted(positions, reverse=True), positions  # counting down
        assert len(positions) >= 2  # seen moving, live
        assert page.eval("document.querySelector('#hold-btn').disabled") is False
        click(page, "#hold-btn")
        page.seat("A-1-1", "held")
        click(page, "#checkout-btn")
        page.wait_attr("#order-status", "data-status", "confirmed")
        page.seat("A-1-1", "sold")
    finally:
        page.close()
