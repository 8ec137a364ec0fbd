"""Issue 11 #3: no organizer can halt the CDC pipeline with one venue. The largest venue the validation allows
goes through Debezium and Kafka and gets its seat map, and the pipeline keeps flowing after it; one more row is
refused at the API."""
from __future__ import annotations

import httpx
import pytest

from command_service.domain.model import MAX_ROWS_PER_SECTION, MAX_SEATED_SEATS_PER_VENUE, Layout, Row, Section
from tests.e2e.conftest import eventually

pytestmark = pytest.mark.e2e


PER_ROW = 7  # seats per row: with the longest labels, the layout bound binds before the 50,000-seat one


def layout(n_rows: int) -> Layout:
    """``n_rows`` rows with the longest labels, codes and names, in sections of at most MAX_ROWS_PER_SECTION."""
    sections = []
    for i, start in enumerate(range(0, n_rows, MAX_ROWS_PER_SECTION)):
        rows = tuple(Row(f"R{r:09d}", PER_ROW) for r in range(min(MAX_ROWS_PER_SECTION, n_rows - start)))
        sections.append(Section(f"S{i:09d}", "N" * 100, "seated", rows))
    return Layout(tuple(sections))


def fits(n_rows: int) -> bool:
    try:
        layout(n_rows).ensure_publishable()
    except Exception:  # noqa: BLE001 - over MAX_LAYOUT_BYTES
        return False
    return n_rows * PER_ROW <= MAX_SEATED_SEATS_PER_VENUE


def largest_rows() -> int:
    lo, hi = 1, MAX_SEATED_SEATS_PER_VENUE // PER_ROW + 1  # fits(lo), not fits(hi)
    assert fits(lo) and not fits(hi), "the layout bound should bind first"
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return lo


def body(sections: list[dict]) -> dict:
    return {"name": "V" * 200, "city": "C" * 100,
            "sections": [{k: v for k, v in s.items() if k != "capacity"} for s in sections]}


def test_the_largest_allowed_venue_streams_and_one_more_row_is_refused(api, organizer, settings):
    c = f"http://{settings.command_host}:{settings.command_port}"
    q = f"http://{settings.query_host}:{settings.query_port}"
    token = {"Authorization": f"Bearer {organizer[1]}"}
    n = largest_rows()
    sections, too_big = layout(n).to_json(), layout(n + 1).to_json()
    last = sections[-1]
    r = httpx.post(f"{c}/api/v1/venues", json=body(too_big), headers=token, timeout=60)
    assert r.status_code == 400 and "sections" in r.json()["error"]["details"], r.text[:300]

    r = httpx.post(f"{c}/api/v1/venues", json=body(sections), headers=token, timeout=60)
    assert r.status_code == 201, r.text[:300]
    venue = r.json()
    ev = httpx.post(f"{c}/api/v1/events", headers=token, timeout=60, json={
        "venue_id": venue["id"], "title": "Largest", "category": "music", "starts_at": "2027-03-01T20:00:00Z",
        "currency": "EUR", "prices": {s["code"]: 100 for s in sections}}).json()
    assert httpx.post(f"{c}/api/v1/events/{ev['id']}/publish", headers=token, timeout=60).status_code == 200
    last_seat = f"{last['code']}-{last['rows'][-1]['label']}-{last['rows'][-1]['seats']}"

    def seat_map() -> dict | None:
        r = httpx.get(f"{q}/api/v1/events/{ev['id']}/seats", timeout=60)
        return r.json() if r.status_code == 200 else None

    snapshot = eventually(seat_map, timeout=180, interval=1)
    assert len(snapshot["seats"]) == venue["capacity"] and any(s["id"] == last_seat for s in snapshot["seats"])
    # The pipeline still flows: a small event made afterwards is projected too.
    small = api.event(organizer[1], rows=1, seats_per_row=2, ga=0)
    eventually(lambda: httpx.get(f"{q}/api/v1/events/{small['id']}", timeout=10).status_code == 200, timeout=60)
