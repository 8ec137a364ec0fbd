"""Bad input gets a 4xx with the contract's error body, never a 5xx."""
from __future__ import annotations

import uuid

import pytest

from tests.integration.conftest import seated

pytestmark = pytest.mark.integration


def assert_error(r, status: int, code: str) -> None:
    assert r.status == status, (r.status, r.body)
    assert set(r.body) == {"error"} and set(r.body["error"]) == {"code", "message", "details"}
    assert r.body["error"]["code"] == code


async def test_malformed_oversized_and_unknown(api, organizer, settings):
    event = await api.on_sale_event(organizer[1], [seated("A", rows=2, seats=5)])
    path, buyer = f"/api/v1/events/{event['id']}/holds", api.buyer_token()
    json_hdr = {"Content-Type": "application/json"}
    assert_error(await api.call("POST", path, buyer, data=b'{"seats": ["A-1-1"', headers=json_hdr),
                 400, "VALIDATION_ERROR")
    assert_error(await api.call("POST", path, buyer, data=b"\xff\xfe", headers=json_hdr), 400, "VALIDATION_ERROR")
    assert_error(await api.call("POST", path, buyer, data=b"[1, 2]", headers=json_hdr), 400, "VALIDATION_ERROR")
    assert_error(await api.call("POST", path, buyer, data=b"[" * 200_000, headers=json_hdr), 400, "VALIDATION_ERROR")
    big = b'{"seats": ["' + b"x" * (settings.max_body_bytes + 10) + b'"]}'
    assert_error(await api.call("POST", path, buyer, data=big, headers=json_hdr), 413, "PAYLOAD_TOO_LARGE")
    unknown = await api.hold(buyer, event["id"], seats=["A-1-1", "A-3-1", "A-1-6", "B-1-1", "nonsense", "A-1-0"])
    assert_error(unknown, 400, "VALIDATION_ERROR")
    assert unknown.body["error"]["details"]["seats"] == ["A-3-1", "A-1-6", "B-1-1", "nonsense", "A-1-0"]


@pytest.mark.parametrize("body, field", [
    ({"seats": [f"A-1-{n}" for n in range(1, 12)]}, "seats"),
    ({"seats": []}, "seats"),
    ({"seats": ["A-1-1", "A-1-1"]}, "body"),
    ({"seats": ["A-1-1"], "section": "A", "quantity": 1}, "body"),
    ({"section": "GA"}, "body"),
    ({"section": "GA", "quantity": 0}, "quantity"),
    ({"section": "GA", "quantity": "2"}, "quantity"),
    ({"seats": "A-1-1"}, "seats"),
    ({"seats": ["A-1-1"], "extra": 1}, "extra"),
    ({"seats": [1]}, "seats.0"),
])
async def test_hold_bodies_are_bounded(api, organizer, body, field):
    event = await api.on_sale_event(organizer[1], [seated("A", rows=1, seats=20)])
    r = await api.hold(api.buyer_token(), event["id"], **body)
    assert_error(r, 400, "VALIDATION_ERROR")
    assert field in r.body["error"]["details"], r.body


@pytest.mark.parametrize("change, field", [
    ({"currency": "eur"}, "currency"),
    ({"currency": "EURO"}, "currency"),
    ({"starts_at": "2030-06-01T19:00:00"}, "starts_at"),  # no zone
    ({"starts_at": "next friday"}, "starts_at"),
    ({"ends_at": "2030-06-01T18:00:00Z"}, "ends_at"),  # before starts_at
    ({"prices": {"A": -1}}, "prices.A"),
    ({"prices": {"A": 1.5}}, "prices.A"),
    ({"prices": {"A": 1, "Z": 1}}, "prices"),
    ({"prices": {}}, "prices"),
    ({"title": ""}, "title"),
    ({"title": "x" * 201}, "title"),
    ({"venue_id": "not-a-uuid"}, "venue_id"),
    ({"venue_id": str(uuid.uuid4())}, "venue_id"),
])
async def test_event_fields_are_validated(api, organizer, change, field):
    v = await api.call("POST", "/api/v1/venues", organizer[1],
                       json={"name": "V", "city": "C", "sections": [seated("A", rows=1, seats=2)]})
    body = {"venue_id": v.body["id"], "title": "T", "category": "music", "starts_at": "2030-06-01T19:00:00Z",
            "currency": "EUR", "prices": {"A": 100}, **change}
    r = await api.call("POST", "/api/v1/events", organizer[1], json=body)
    assert_error(r, 400, "VALIDATION_ERROR")
    assert field in r.body["error"]["details"], r.body


@pytest.mark.parametrize("sections", [
    [],
    [seated("A"), seated("A")],
    [{"code": "A-B", "name": "n", "kind": "ga", "capacity": 1}],
    [{"code": "A", "name": "n", "kind": "ga", "capacity": 100_001}],
    [{"code": "A", "name": "n", "kind": "ga", "capacity": 0}],
    [{"code": "A", "name": "n", "kind": "balcony", "capacity": 1}],
    [{"code": "A", "name": "n", "kind": "seated", "rows": [{"label": "1", "seats": 1001}]}],
    [{"code": "A", "name": "n", "kind": "seated", "rows": [{"label": "1", "seats": 2}, {"label": "1", "seats": 2}]}],
    [seated(str(i), rows=500, seats=1000) for i in range(2)],
])
async def test_venue_layouts_are_bounded(api, organizer, sections):
    r = await api.call("POST", "/api/v1/venues", organizer[1], json={"name": "V", "city": "C", "sections": sections})
    assert_error(r, 400, "VALIDATION_ERROR")


async def test_paths_and_methods(api, organizer):
    buyer = api.buyer_token()
    assert_error(await api.call("POST", "/api/v1/events/not-a-uuid/holds", buyer, json={"seats": ["A-1-1"]}),
                 404, "NOT_FOUND")
    assert_error(await api.call("POST", f"/api/v1/events/{uuid.uuid4()}/holds", buyer, json={"seats": ["A-1-1"]}),
                 404, "NOT_FOUND")
    assert_error(await api.call("DELETE", f"/api/v1/holds/{uuid.uuid4()}", buyer), 404, "NOT_FOUND")
    assert_error(await api.call("POST", f"/api/v1/orders/{uuid.uuid4()}/cancel", buyer), 404, "NOT_FOUND")
    assert_error(await api.call("GET", "/api/v1/nowhere"), 404, "NOT_FOUND")
    assert_error(await api.call("GET", "/api/v1/venues"), 405, "METHOD_NOT_ALLOWED")
    draft = await api.on_sale_event(organizer[1], [seated("A", rows=1, seats=2)], publish=False)
    assert_error(await api.hold(buyer, draft["id"], seats=["A-1-1"]), 409, "EVENT_NOT_ON_SALE")
