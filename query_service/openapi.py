"""The OpenAPI 3 document of the query service (GET /openapi.json), written by hand.

Keep it in step with app.py ROUTES (tests/unit/test_query_openapi.py checks that every route is here).
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any

UUID = {"type": "string", "format": "uuid"}
TIME = {"type": "string", "format": "date-time"}
INT = {"type": "integer"}
STR = {"type": "string"}
NUM = {"type": "number"}


def obj(**properties: Any) -> dict[str, Any]:
    return {"type": "object", "properties": properties}


def arr(items: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": items}


def page_of(item: dict[str, Any]) -> dict[str, Any]:
    return obj(items=arr(item), page=INT, page_size=INT, total=INT)


def q(name: str, schema: dict[str, Any], description: str = "") -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


PAGING = [q("page", {"type": "integer", "minimum": 1, "maximum": 10000, "default": 1}),
          q("page_size", {"type": "integer", "minimum": 1, "maximum": 100, "default": 20})]
EVENT_ID = {"name": "event_id", "in": "path", "required": True, "schema": UUID}
ERR = {"$ref": "#/components/schemas/Error"}
SSE = {"description": "text/event-stream", "content": {"text/event-stream": {"schema": STR}}}
SEAT_STREAM_DOC = ("Frames `event: seats`, `id: <position>`, `data: {event_id, changes: [{seat, status} | "
                   "{section, available}]}`; `event: reset` when the position is no longer retained (refetch "
                   "/seats); a comment heartbeat at least every 15 s. Resume with `Last-Event-ID` or "
                   "`?last_event_id=`.")


def op(summary: str, ok: dict[str, Any] | None, *, auth: bool = False, params: list | None = None,
       errors: tuple[int, ...] = (400, 503), cached: bool = False, sse: bool = False) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    if sse:
        responses["200"] = SSE
    elif ok is not None:
        responses["200"] = {"description": "OK", "content": {"application/json": {"schema": ok}}}
    if cached:
        responses["304"] = {"description": "Not modified (If-None-Match matched the ETag)"}
    for status in errors + ((401, 403) if auth else ()):
        responses[str(status)] = {"description": "error", "content": {"application/json": {"schema": ERR}}}
    o: dict[str, Any] = {"summary": summary, "responses": responses}
    if auth:
        o["security"] = [{"bearer": []}]
    if params:
        o["parameters"] = params
    return o


LIST_ITEM = obj(id=UUID, title=STR, category=STR, venue=obj(name=STR, city=STR), starts_at=TIME, status=STR,
                currency=STR, price_min=INT, price_max=INT, capacity=INT, available=INT)
SECTION = obj(code=STR, name=STR, kind={"enum": ["seated", "ga"]}, capacity=INT, available=INT, held=INT, sold=INT,
              price=INT)
DETAIL = obj(id=UUID, title=STR, description=STR, category=STR, venue=obj(id=UUID, name=STR, city=STR),
             starts_at=TIME, ends_at=TIME, status=STR, currency=STR, capacity=INT, available=INT, held=INT, sold=INT,
             sections=arr(SECTION))
SEATS = obj(event_id=UUID, last_event_id=STR,
            seats=arr(obj(id=STR, section=STR, row=STR, number=INT,
                          status={"enum": ["available", "held", "sold"]}, price=INT)),
            general_admission=arr(obj(section=STR, capacity=INT, available=INT, held=INT, sold=INT, price=INT)))
ORDER = obj(id=UUID, event=obj(id=UUID, title=STR, starts_at=TIME), status={"enum": ["confirmed", "cancelled"]},
            seats=arr(STR), section=STR, quantity=INT, total=INT, currency=STR, created_at=TIME)
ENTRY = obj(id=UUID, event_id=UUID,
            position={**INT, "nullable": True, "minimum": 1,
                      "description": "live rank among the event's waiting entries; null unless waiting"},
            status={"enum": ["waiting", "offered", "converted", "expired", "left"]}, quantity=INT,
            section={**STR, "description": "absent: any seated seat"},
            offer={**obj(hold_id=UUID, expires_at=TIME), "description": "only while offered"}, created_at=TIME)
DAY = obj(date={"type": "string", "format": "date"}, orders=INT, seats=INT, revenue=INT)
STATS = obj(capacity=INT, sold=INT, held=INT, available=INT, utilization=NUM, revenue=INT, orders=INT,
            cancellations=INT, cancellation_rate=NUM, sales_by_day=arr(DAY))
ANALYTICS = obj(total_orders=INT, total_seats_sold=INT, total_revenue=INT, revenue_by_currency=obj(),
                cancellation_rate=NUM, utilization=NUM,
                most_popular=arr(obj(event_id=UUID, title=STR, seats_sold=INT, utilization=NUM)), daily=arr(DAY))


@lru_cache
def openapi_document() -> dict[str, Any]:
    return {
        "openapi": "3.0.3",
        "info": {"title": "Evently query service", "version": "1.0.0",
                 "description": "Reads from the MongoDB read models and the live seat feed (CONTRACT.md)."},
        "servers": [{"url": "http://127.0.0.1:8002"}],
        "paths": {
            "/": {"get": {"summary": "The live seat-map page (HTML)",
                          "responses": {"200": {"description": "text/html"}}}},
            "/health": {"get": op("Health of MongoDB and Redis", obj(status=STR, checks=obj()), errors=(503,))},
            "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {"200": {"description": "text"}}}},
            "/openapi.json": {"get": op("This document", obj(), errors=())},
            "/api/v1/events": {"get": op(
                "Events on sale or cancelled: search, filters, pagination (ETag, micro-cached)", page_of(LIST_ITEM),
                cached=True, params=[q("q", STR, "case-insensitive substring of the title"), q("category", STR),
                                     q("city", STR), q("starts_after", TIME), q("starts_before", TIME),
                                     q("status", {"enum": ["on_sale", "cancelled"]}), *PAGING])},
            "/api/v1/events/{event_id}": {"get": op("Event detail with per-section counts (ETag)", DETAIL,
                                                    cached=True, params=[EVENT_ID], errors=(404, 503))},
            "/api/v1/events/{event_id}/seats": {"get": op("Seat map and the feed position to stream from", SEATS,
                                                          cached=True, params=[EVENT_ID], errors=(404, 503))},
            "/api/v1/events/{event_id}/seats/stream": {"get": {
                **op("Live seat changes (SSE)", None, sse=True, errors=(404, 503),
                     params=[EVENT_ID, q("last_event_id", STR),
                             {"name": "Last-Event-ID", "in": "header", "required": False, "schema": STR}]),
                "description": SEAT_STREAM_DOC}},
            "/api/v1/me/orders": {"get": op("The buyer's orders, newest first", page_of(ORDER), auth=True,
                                            params=PAGING)},
            "/api/v1/me/waitlist": {"get": op("The buyer's waitlist entries", page_of(ENTRY), auth=True,
                                              params=PAGING)},
            "/api/v1/me/notifications/stream": {"get": {
                **op("The buyer's notifications (SSE): order_confirmed, order_cancelled, waitlist_offer, "
                     "offer_expired", None, sse=True, auth=True,
                     params=[q("access_token", STR, "the JWT, for EventSource"), q("last_event_id", STR)])}},
            "/api/v1/organizer/events/{event_id}/stats": {"get": op(
                "Sales of one event (owning organizer or admin)", STATS, auth=True, params=[EVENT_ID],
                errors=(404, 503))},
            "/api/v1/admin/analytics": {"get": op(
                "Totals, daily rollups, most popular events (admin)", ANALYTICS, auth=True,
                params=[q("days", {"type": "integer", "minimum": 1, "maximum": 366, "default": 30}),
                        q("top", {"type": "integer", "minimum": 1, "maximum": 100, "default": 10})])},
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
            "schemas": {"Error": obj(error=obj(code=STR, message=STR, details=obj()))},
        },
    }
