"""The organizer's dashboard page (GET /organizer on the query service) in a real Chromium: the organizer's events,
one event's sales and inventory drawn as charts, and a check-in at the door moving the live count, over SSE."""
from __future__ import annotations

import httpx
import pytest

from tests.e2e.conftest import eventually
from tests.e2e.test_browser_seatmap import SeatMapPage, browser_tools, query_url  # noqa: F401 - fixtures

pytestmark = pytest.mark.e2e


def test_the_dashboard_shows_sales_and_a_scan_moves_the_check_in_count(browser_tools, api, query_url, tmp_path,
                                                                        settings):
    _, organizer = api.user("organizer")
    ev = api.event(organizer, rows=1, seats_per_row=10, ga=0, prices={"A": 0})
    _, buyer = api.user("buyer")
    order = api.order(buyer, api.hold(buyer, ev["id"], ["A-1-1", "A-1-2", "A-1-3"])["id"])
    assert order["status"] == "confirmed"
    scanner = api.call("POST", f"/api/v1/events/{ev['id']}/scanners", organizer, json={"name": "door"})["token"]
    q = httpx.Client(base_url=query_url, timeout=10)

    def issued():
        r = q.get("/api/v1/me/tickets", params={"event_id": ev["id"]}, headers={"Authorization": f"Bearer {buyer}"})
        return r.json()["items"] if r.status_code == 200 and r.json()["total"] == 3 else None
    tickets = eventually(issued)

    page = SeatMapPage(f"{query_url}/organizer#token={organizer}&event={ev['id']}", tmp_path)
    try:
        page.ready()
        page.wait_attr(f'[data-event="{ev["id"]}"]', "aria-pressed", "true")
        page.wait_attr("#conn", "data-state", "live")
        page.wait_attr("#sold", "data-value", "3")
        page.wait_attr("#available", "data-value", "7")
        page.wait_attr("#checked-in", "data-value", "0")
        assert page.eval("document.querySelectorAll('#sales rect.bar').length") == 1  # one day of sales, drawn
        assert page.eval("document.querySelector('#checked-in').textContent") == "0 of 3"
        assert page.eval("location.hash").find("token") == -1  # the token left the address bar
        api.call("POST", f"/api/v1/events/{ev['id']}/checkins", scanner, json={"code": tickets[0]["code"]})
        page.wait_attr("#checked-in", "data-value", "1")
        assert page.eval("document.querySelector('#checked-in').textContent") == "1 of 3"
        assert page.eval("document.querySelectorAll('#checkins rect.progress-fill').length") == 1
    finally:
        page.close()
        q.close()


def test_the_buyer_sees_each_ticket_with_its_qr_code(browser_tools, api, query_url, tmp_path):
    _, organizer = api.user("organizer")
    ev = api.event(organizer, rows=1, seats_per_row=5, ga=5, prices={"A": 1500, "GA": 0})
    _, buyer = api.user("buyer")
    paid = api.order(buyer, api.hold(buyer, ev["id"], ["A-1-2"])["id"])  # paid at devpay
    free = api.order(buyer, api.hold(buyer, ev["id"], section="GA", quantity=1)["id"])
    assert paid["status"] == free["status"] == "confirmed"
    q = httpx.Client(base_url=query_url, timeout=10)

    def issued():
        r = q.get("/api/v1/me/tickets", headers={"Authorization": f"Bearer {buyer}"})
        return r.json()["items"] if r.status_code == 200 and r.json()["total"] == 2 else None
    tickets = eventually(issued)
    q.close()
    page = SeatMapPage(f"{query_url}/tickets#token={buyer}", tmp_path)
    try:
        page.ready()
        for t in tickets:
            page.wait_attr(f'[data-ticket="{t["id"]}"]', "data-qr", "loaded")  # its QR image drew
            page.wait_attr(f'[data-ticket="{t["id"]}"]', "data-status", "valid")
        assert page.eval("[...document.querySelectorAll('.ticket .place')].map(e => e.textContent).sort()") == [
            "A-1-2", "GA (general admission)"]
        assert page.eval("document.querySelector('.ticket img').naturalWidth") > 50
    finally:
        page.close()
