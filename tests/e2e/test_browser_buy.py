"""The seat-map page's buy flow in a real Chromium (issue 13): pick seats, hold, check out, pay (or decline) on
devpay's hosted page, come back to the page, and see the order confirmed (or failed) and the seats sold (or back
on sale), live."""
from __future__ import annotations

import pytest

from tests.e2e.test_browser_seatmap import SeatMapPage, browser_tools, query_url  # noqa: F401 - fixtures

pytestmark = pytest.mark.e2e


def click(page: SeatMapPage, selector: str) -> None:
    """Click after the evaluation returns (a click that navigates would end the evaluation's page)."""
    page.eval(f"setTimeout(() => document.querySelector({selector!r}).click(), 0), true")


def buy(page: SeatMapPage, seats: list[str], button: str) -> None:
    for seat in seats:
        page.seat(seat, "available")
        click(page, f'[data-seat="{seat}"]')
    click(page, "#hold-btn")
    for seat in seats:
        page.seat(seat, "held")  # the hold, seen over the seat stream
    click(page, "#checkout-btn")
    page.wait_attr(f"#{button}", "type", "submit")  # devpay's hosted page, with Pay and Decline
    click(page, f"#{button}")


def test_a_buyer_pays_on_devpay_and_comes_back_confirmed_or_declined(browser_tools, api, query_url, tmp_path):
    _, organizer = api.user("organizer")
    ev = api.event(organizer, rows=1, seats_per_row=6, ga=0, prices={"A": 1500})
    _, buyer = api.user("buyer")
    page = SeatMapPage(f"{query_url}/?event={ev['id']}#token={buyer}", tmp_path)
    try:
        page.ready()
        page.wait_attr("#conn", "data-state", "live")
        buy(page, ["A-1-1", "A-1-2"], "pay")
        page.wait_attr("#order-status", "data-status", "confirmed")  # back on the page, the webhook's outcome
        page.seat("A-1-1", "sold")
        page.seat("A-1-2", "sold")
        assert "token" not in page.eval("location.href")
        order_id = page.eval("document.querySelector('#order-status').dataset.order")
        mine = api.call("POST", "/api/v1/orders", buyer, json={"hold_id": api.call(
            "POST", f"/api/v1/events/{ev['id']}/holds", buyer, json={"seats": ["A-1-6"]})["id"]})
        assert mine["id"] != order_id  # (a fresh order for another hold: the page's order is its own)

        page.wait_attr("#conn", "data-state", "live")
        buy(page, ["A-1-3"], "decline")
        page.wait_attr("#order-status", "data-status", "payment_failed")
        page.seat("A-1-3", "available")  # back on sale
    finally:
        page.close()
