"""Query strings are validated by models (query_service/params.py) on the live query service: unknown, repeated,
empty, control-character and out-of-range parameters are a 400 VALIDATION_ERROR naming the parameter, never a 5xx;
a malformed resume position starts the stream with ``event: reset``."""
from __future__ import annotations

import httpx
import pytest

from tests.e2e.conftest import eventually
from tests.e2e.sse import SseClient

pytestmark = pytest.mark.e2e


def invalid(r: httpx.Response, name: str) -> str:
    assert r.status_code == 400, (r.status_code, r.text)
    error = r.json()["error"]
    assert error["code"] == "VALIDATION_ERROR" and name in error["details"], error
    return error["details"][name]


@pytest.mark.parametrize("query,name", [
    ("bogus=1", "bogus"),                                   # unknown
    ("page=", "page"),                                      # empty
    ("q=%20%20", "q"),                                      # blank once trimmed
    ("page=1&page=2", "page"),                              # repeated
    ("q=a%00b", "q"),                                       # NUL
    ("city=Lis%0Abon", "city"),                             # other control characters
    ("page=0", "page"), ("page_size=101", "page_size"),     # out of range
    ("page=99999999999999999999999999999999", "page"),      # big numbers
    ("page=1.0", "page"), ("page=0x10", "page"), ("page=%E2%91%A0", "page"),  # not plain decimal digits
    ("starts_after=1999-12-31T23:59:59Z", "starts_after"),  # dates outside 2000-2100
    ("starts_before=2100-01-01T00:00:01Z", "starts_before"),
    ("starts_after=yesterday", "starts_after"),
    ("starts_after=2027-02-30T00:00:00Z", "starts_after"),
    ("status=draft", "status"),                             # drafts are never public
    ("q=" + "x" * 201, "q"),                                # too long
    ("sort=price", "sort"),                                 # planned for a later milestone
])
def test_bad_event_list_parameters_are_a_400_naming_them(q, query, name):
    invalid(q.get("/api/v1/events?" + query), name)


def test_a_planned_parameter_says_so(q):
    assert "later milestone" in invalid(q.get("/api/v1/events", params={"near": "1,2"}), "near")


def test_routes_without_parameters_refuse_any(q):
    invalid(q.get("/health?verbose=1"), "verbose")


def test_authenticated_lists_validate_paging_too(q, buyer):
    r = q.get("/api/v1/me/orders?page_size=1000", headers={"Authorization": f"Bearer {buyer[1]}"})
    invalid(r, "page_size")


def test_no_odd_value_of_any_parameter_is_a_5xx(q):
    odd = ["", " ", "%00", "%FF", "%C0%AF", "-1", "1e400", "9" * 400, "[]", "{}", "$gt", "null", "true",
           "..%2F..%2F", "%25", "2000-01-01", "2100-01-01T00:00:00+14:00", "1999-12-31T23:00:00-02:00"]
    for name in ("page", "page_size", "q", "category", "city", "starts_after", "starts_before", "status"):
        for value in odd:
            r = q.get(f"/api/v1/events?{name}={value}")
            assert r.status_code in (200, 400), (name, value, r.status_code, r.text)


@pytest.fixture(scope="module")
def projected_event(api, organizer, q):
    ev = api.event(organizer[1])
    eventually(lambda: q.get(f"/api/v1/events/{ev['id']}/seats").status_code == 200, timeout=60)
    return ev["id"]


@pytest.mark.parametrize("position", ["garbage", "1-2-3", "-1-0", "18446744073709551616-0", "1-" + "9" * 30])
def test_a_malformed_resume_position_starts_with_a_reset(projected_event, settings, position):
    url = f"http://{settings.query_host}:{settings.query_port}/api/v1/events/{projected_event}/seats/stream"
    with SseClient(url, {"Last-Event-ID": position}) as sse:
        frame = sse.next(30)
        assert frame.event == "reset" and frame.id  # a fresh position the client can resume from
