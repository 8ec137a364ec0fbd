"""The query service's read API on the live stack: list/search/filters/pagination, detail with per-section
counts and ETag, seat map, the buyer's orders and waitlist, organizer stats, admin analytics, auth."""
from __future__ import annotations

import uuid

import pytest

from common.auth import encode_token
from tests.e2e.conftest import eventually

pytestmark = pytest.mark.e2e


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def admin_token(settings) -> str:
    # Admins come from the CLI; the query service only needs a valid HS256 token with the admin role.
    return encode_token(str(uuid.uuid4()), "admin", settings.jwt_secret, 600)


def listed(client, **params) -> dict:
    r = client.get("/api/v1/events", params=params)
    assert r.status_code == 200, r.text
    return r.json()


def test_list_search_filters_and_pagination(api, organizer, q):
    tag = uuid.uuid4().hex[:10]
    city = f"City-{tag}"
    a = api.event(organizer[1], city=city, title=f"Jazz {tag} night")
    b = api.event(organizer[1], city=city, title=f"Rock {tag.upper()} evening")
    api.event(organizer[1], city=city, title=f"Draft {tag}", publish=False)

    page = eventually(lambda: (p := listed(q, city=city)) and p["total"] == 2 and p, timeout=60)
    assert {e["id"] for e in page["items"]} == {a["id"], b["id"]}  # the draft is not public
    item = page["items"][0]
    assert set(item) >= {"id", "title", "category", "venue", "starts_at", "status", "currency", "price_min",
                         "price_max", "capacity", "available"}
    assert item["venue"]["city"] == city and item["price_min"] == 2000 and item["price_max"] == 5000
    assert item["capacity"] == 80 and item["status"] == "on_sale"

    assert {e["id"] for e in listed(q, q=f"jazz {tag}")["items"]} == {a["id"]}  # case-insensitive substring
    assert listed(q, q=tag.upper(), city=city)["total"] == 2
    assert listed(q, q="(.*", city=city)["total"] == 0  # the search text is literal, not a regex
    assert listed(q, city=city, category="music")["total"] == 2
    assert listed(q, city=city, category="theatre")["total"] == 0
    assert listed(q, city=city, starts_after="2027-03-01T19:00:00Z", starts_before="2027-03-01T21:00:00Z")["total"] == 2
    assert listed(q, city=city, starts_after="2027-03-01T20:00:01Z")["total"] == 0

    p1, p2 = listed(q, city=city, page_size=1), listed(q, city=city, page_size=1, page=2)
    assert (p1["page"], p1["page_size"], p1["total"], len(p1["items"])) == (1, 1, 2, 1)
    assert p1["items"][0]["id"] != p2["items"][0]["id"]
    assert listed(q, city=city, page=3, page_size=1)["items"] == []

    api.cancel_event(organizer[1], b["id"])
    eventually(lambda: listed(q, city=city, status="cancelled")["total"] == 1, timeout=60)
    assert listed(q, city=city, status="on_sale")["items"][0]["id"] == a["id"]


@pytest.mark.parametrize("params, field", [
    ({"page": 0}, "page"), ({"page_size": 101}, "page_size"), ({"page_size": "ten"}, "page_size"),
    ({"status": "draft"}, "status"), ({"starts_after": "next tuesday"}, "starts_after"), ({"q": "x" * 201}, "q"),
])
def test_bad_list_parameters_are_400_naming_the_field(q, params, field):
    r = q.get("/api/v1/events", params=params)
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["code"] == "VALIDATION_ERROR" and field in err["details"]


def test_unknown_or_malformed_ids_are_404(q):
    for path in (f"/api/v1/events/{uuid.uuid4()}", "/api/v1/events/not-a-uuid", "/api/v1/events/x/seats",
                 f"/api/v1/events/{uuid.uuid4()}/seats", f"/api/v1/events/{uuid.uuid4()}/seats/stream"):
        r = q.get(path)
        assert r.status_code == 404, path
        assert r.json()["error"]["code"] == "NOT_FOUND"


def test_detail_has_counts_per_section_and_an_etag(api, organizer, buyer, q):
    ev = api.event(organizer[1])
    url = f"/api/v1/events/{ev['id']}"
    eventually(lambda: q.get(url).status_code == 200, timeout=60)
    first = q.get(url)
    etag = first.headers["etag"]
    assert q.get(url, headers={"If-None-Match": etag}).status_code == 304

    api.hold(buyer[1], ev["id"], ["A-1-1", "A-1-2"])
    api.hold(buyer[1], ev["id"], section="GA", quantity=3)

    def counted():
        body = q.get(url).json()
        return body if body["held"] == 5 else None

    body = eventually(counted, timeout=60)
    sections = {s["code"]: s for s in body["sections"]}
    assert sections["A"] == {"code": "A", "name": "Stalls", "kind": "seated", "capacity": 30, "available": 28,
                             "held": 2, "sold": 0, "price": 5000}
    assert sections["GA"]["held"] == 3 and sections["GA"]["available"] == 47 and sections["GA"]["kind"] == "ga"
    assert (body["capacity"], body["available"], body["sold"]) == (80, 75, 0)
    r = q.get(url, headers={"If-None-Match": etag})
    assert r.status_code == 200 and r.headers["etag"] != etag  # the old ETag no longer matches


def test_drafts_are_not_public(api, organizer, q, mongo):
    ev = api.event(organizer[1], publish=False)
    eventually(lambda: mongo.events.find_one({"_id": ev["id"]}), timeout=60)
    assert q.get(f"/api/v1/events/{ev['id']}").status_code == 404
    assert q.get(f"/api/v1/events/{ev['id']}/seats").status_code == 404


def test_seat_map_lists_every_seat_with_its_status_and_the_feed_position(api, organizer, buyer, q, settings):
    import redis

    ev = api.event(organizer[1])
    h = api.hold(buyer[1], ev["id"], ["A-2-3"])
    api.order(buyer[1], h["id"])
    api.hold(buyer[1], ev["id"], ["A-3-10"])
    url = f"/api/v1/events/{ev['id']}/seats"

    feed = redis.Redis.from_url(settings.redis_url)

    def settled():
        # The projector writes the read model, then appends to the feed: wait for both (the micro-cached map
        # then catches up with the feed's tip).
        body = q.get(url).json()
        st = {s["id"]: s["status"] for s in body["seats"]}
        tip = feed.xrevrange(f"feed:{ev['id']}", count=1)
        return body if st.get("A-2-3") == "sold" and st.get("A-3-10") == "held" and tip \
            and body["last_event_id"] == tip[0][0].decode() else None

    body = eventually(settled, timeout=60)
    assert len(body["seats"]) == 30
    assert sum(s["status"] == "available" for s in body["seats"]) == 28
    seat = next(s for s in body["seats"] if s["id"] == "A-2-3")
    assert seat == {"id": "A-2-3", "section": "A", "row": "2", "number": 3, "status": "sold", "price": 5000}
    assert body["general_admission"][0]["section"] == "GA" and body["general_admission"][0]["available"] == 50


def test_my_orders_are_the_buyers_own(api, organizer, q):
    ev = api.event(organizer[1], title=f"Orders {uuid.uuid4().hex[:6]}")
    _, me = api.user("buyer")
    _, other = api.user("buyer")
    o1 = api.order(me, api.hold(me, ev["id"], ["A-1-4"])["id"])
    o2 = api.order(me, api.hold(me, ev["id"], section="GA", quantity=2)["id"])
    api.cancel_order(me, o1["id"])

    def mine():
        body = q.get("/api/v1/me/orders", headers=bearer(me)).json()
        return body if body["total"] == 2 and body["items"][-1]["status"] == "cancelled" else None

    body = eventually(mine, timeout=60)
    newest, oldest = body["items"]
    assert newest["id"] == o2["id"] and oldest["id"] == o1["id"]
    assert newest["section"] == "GA" and newest["quantity"] == 2 and newest["total"] == 4000
    assert oldest["seats"] == ["A-1-4"] and oldest["currency"] == "EUR"
    assert newest["event"] == {"id": ev["id"], "title": ev["title"], "starts_at": "2027-03-01T20:00:00.000Z"}
    assert q.get("/api/v1/me/orders", headers=bearer(other)).json()["total"] == 0
    assert q.get("/api/v1/me/orders").status_code == 401
    assert q.get("/api/v1/me/orders", headers=bearer("not.a.jwt")).status_code == 401
    assert q.get("/api/v1/me/orders", headers=bearer(organizer[1])).status_code == 403
    r = q.get("/api/v1/me/waitlist", headers=bearer(me))
    assert r.status_code == 200 and r.json()["items"] == [] and r.headers["cache-control"] == "private, no-store"


def test_organizer_stats_and_admin_analytics(api, organizer, buyer, q, admin_token, pg):
    ev = api.event(organizer[1])
    dollars = api.event(organizer[1], currency="USD")  # the platform's money is per currency, never summed
    api.order(buyer[1], api.hold(buyer[1], dollars["id"], section="GA", quantity=3)["id"])
    o = api.order(buyer[1], api.hold(buyer[1], ev["id"], ["A-1-1", "A-1-2"])["id"])
    api.order(buyer[1], api.hold(buyer[1], ev["id"], section="GA", quantity=1)["id"])
    api.cancel_order(buyer[1], o["id"])
    url = f"/api/v1/organizer/events/{ev['id']}/stats"

    def stats():
        body = q.get(url, headers=bearer(organizer[1])).json()
        return body if body.get("orders") == 2 and body.get("cancellations") == 1 else None

    body = eventually(stats, timeout=60)
    assert (body["capacity"], body["sold"], body["held"], body["available"]) == (80, 1, 0, 79)
    assert body["revenue"] == 2000 and body["cancellation_rate"] == 0.5 and body["utilization"] == 0.0125
    assert body["sales_by_day"][0]["orders"] == 2 and body["sales_by_day"][0]["revenue"] == 12000

    _, stranger = api.user("organizer")
    assert q.get(url, headers=bearer(stranger)).status_code == 403
    assert q.get(url, headers=bearer(buyer[1])).status_code == 403
    assert q.get(url, headers=bearer(admin_token)).json()["orders"] == 2
    assert q.get(f"/api/v1/organizer/events/{uuid.uuid4()}/stats", headers=bearer(admin_token)).status_code == 404

    assert q.get("/api/v1/admin/analytics", headers=bearer(organizer[1])).status_code == 403
    assert q.get("/api/v1/admin/analytics", params={"days": 0}, headers=bearer(admin_token)).status_code == 400

    def analytics():
        # The rollups match PostgreSQL once the projector has caught up (the whole database, every test's orders).
        # every order that was ever confirmed (not one still waiting for its payment, or whose payment failed)
        (orders,), = pg.execute("SELECT count(*) FROM orders WHERE confirmed_at IS NOT NULL").fetchall()
        body = q.get("/api/v1/admin/analytics", headers=bearer(admin_token)).json()
        return body if body["total_orders"] == orders else None

    body = eventually(analytics, timeout=60)
    (sold,), = pg.execute("SELECT count(*) FROM seats WHERE status = 'sold'").fetchall()
    (ga_sold,), = pg.execute("SELECT coalesce(sum(sold), 0) FROM ga_sections").fetchall()
    # net of refunds: confirmed orders' totals (a cancelled paid order was refunded, so it adds nothing)
    revenue = dict(pg.execute("SELECT currency, sum(total)::bigint FROM orders WHERE status = 'confirmed' "
                              "GROUP BY 1").fetchall())
    assert body["total_seats_sold"] == sold + ga_sold
    assert {c: n for c, n in body["revenue"].items() if n} == revenue
    assert {"EUR", "USD"} <= set(revenue)
    day = body["daily"][0]
    assert set(day["revenue"]) >= {"EUR", "USD"} and all(isinstance(n, int) for n in day["revenue"].values())
    assert 0 < body["cancellation_rate"] < 1
    assert body["daily"] and body["daily"][0]["orders"] > 0
    assert body["most_popular"] and all(p["seats_sold"] > 0 for p in body["most_popular"])
    sold_desc = [p["seats_sold"] for p in body["most_popular"]]
    assert sold_desc == sorted(sold_desc, reverse=True)


def test_openapi_health_metrics(q):
    doc = q.get("/openapi.json").json()
    assert doc["openapi"].startswith("3.") and "/api/v1/events/{event_id}/seats/stream" in doc["paths"]
    assert q.get("/health").json() == {"status": "ok", "checks": {"mongodb": "ok", "redis": "ok"}}
    q.get("/api/v1/events")
    assert "evently_query_request_seconds_bucket" in q.get("/metrics").text


def test_an_incomplete_catalog_document_is_a_404_not_a_5xx_for_every_lister(q, mongo):
    """A document without what every EventCreated carries (here: hand-made, no venue, date or currency) is left
    out of the list and is a 404, instead of failing the response model for everyone who lists events."""
    event_id = str(uuid.uuid4())
    mongo.events.insert_one({"_id": event_id, "title": "half made", "status": "on_sale", "capacity": 1,
                             "available": 1})
    try:
        r = q.get("/api/v1/events", params={"q": "half made", "page_size": 100})
        assert r.status_code == 200, r.text
        assert event_id not in {e["id"] for e in r.json()["items"]}
        assert q.get(f"/api/v1/events/{event_id}").status_code == 404
    finally:
        mongo.events.delete_one({"_id": event_id})
