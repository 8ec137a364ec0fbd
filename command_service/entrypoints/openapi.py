"""The OpenAPI 3 document of the command service (GET /openapi.json), written by hand.

Keep it in step with entrypoints/app.py (tests/integration/test_api_contract.py checks that
every route is documented) and with the bounds in domain/commands.py.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any

from contracts.seats import CODE_PATTERN
from command_service.domain.model import (MAX_ROWS_PER_SECTION, MAX_SEATS_PER_HOLD,
                                          MAX_SEATS_PER_ROW, MAX_SECTION_CAPACITY, MAX_SECTIONS_PER_VENUE)

UUID = {"type": "string", "format": "uuid"}
TIME = {"type": "string", "format": "date-time", "description": "ISO 8601, UTC"}
CODE = {"type": "string", "pattern": CODE_PATTERN}
MONEY = {"type": "integer", "minimum": 0, "maximum": 100_000_000, "description": "minor units"}
CURRENCY = {"type": "string", "pattern": "^[A-Z]{3}$"}


def text(max_length: int, min_length: int = 1) -> dict[str, Any]:
    return {"type": "string", "minLength": min_length, "maxLength": max_length}


def obj(required: list[str], **properties: Any) -> dict[str, Any]:
    return {"type": "object", "required": required, "properties": properties, "additionalProperties": False}


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def ok(status: int, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {"description": description}
    if schema is not None:
        response["content"] = {"application/json": {"schema": schema}}
    return {str(status): response}


def fails(*statuses: int) -> dict[str, Any]:
    return {str(s): {"$ref": f"#/components/responses/{s}"} for s in statuses}


def op(summary: str, responses: dict[str, Any], *, request: dict[str, Any] | None = None,
       auth: bool = True, idempotent_post: bool = False, params: tuple[str, ...] = ()) -> dict[str, Any]:
    o: dict[str, Any] = {"summary": summary, "responses": {**responses, **fails(400, 413, 503)}}
    if auth:
        o["security"] = [{"bearer": []}]
        o["responses"].update(fails(401, 403))
    if request is not None:
        o["requestBody"] = body(request)
    parameters = [{"name": p, "in": "path", "required": True, "schema": UUID} for p in params]
    if idempotent_post:
        parameters.append({"$ref": "#/components/parameters/IdempotencyKey"})
        o["responses"].update(fails(409))
    if parameters:
        o["parameters"] = parameters
    return o


SECTION_SEATED = obj(["code", "name", "kind", "rows"], code=CODE, name=text(100), kind={"const": "seated"},
                     rows={"type": "array", "minItems": 1, "maxItems": MAX_ROWS_PER_SECTION,
                           "items": obj(["label", "seats"], label=CODE,
                                        seats={"type": "integer", "minimum": 1, "maximum": MAX_SEATS_PER_ROW})})
SECTION_GA = obj(["code", "name", "kind", "capacity"], code=CODE, name=text(100), kind={"const": "ga"},
                 capacity={"type": "integer", "minimum": 1, "maximum": MAX_SECTION_CAPACITY})
ITEMS = {"seats": {"type": "array", "items": {"type": "string", "example": "A-1-7"}},
         "section": CODE, "quantity": {"type": "integer"}}

SCHEMAS = {
    "Error": obj(["error"], error=obj(["code", "message", "details"], code={"type": "string"},
                                      message={"type": "string"}, details={"type": "object"})),
    "User": obj(["id", "email", "name", "role"], id=UUID, email={"type": "string"}, name={"type": "string"},
                role={"enum": ["buyer", "organizer", "admin"]}),
    "Venue": obj(["id", "name", "city", "capacity", "sections"], id=UUID, name={"type": "string"},
                 city={"type": "string"}, address={"type": ["string", "null"]}, capacity={"type": "integer"},
                 sections={"type": "array", "items": {"type": "object"}}),
    "Event": obj(["id", "status", "title", "venue", "starts_at", "currency", "prices", "sections", "version"],
                 id=UUID, organizer_id=UUID, status={"enum": ["draft", "on_sale", "cancelled"]},
                 title={"type": "string"}, description={"type": ["string", "null"]}, category={"type": "string"},
                 venue=obj(["id", "name", "city"], id=UUID, name={"type": "string"}, city={"type": "string"}),
                 venue_id=UUID, starts_at=TIME, ends_at={**TIME, "type": ["string", "null"]}, currency=CURRENCY,
                 prices={"type": "object", "additionalProperties": MONEY}, capacity={"type": "integer"},
                 sections={"type": "array", "items": {"type": "object"}}, version={"type": "integer"},
                 created_at=TIME, updated_at=TIME),
    "Hold": obj(["id", "event_id", "total", "currency", "expires_at"], id=UUID, event_id=UUID, buyer_id=UUID,
                **ITEMS, total=MONEY, currency=CURRENCY, status={"enum": ["active"]}, expires_at=TIME),
    "Order": obj(["id", "event_id", "status", "total", "currency", "created_at"], id=UUID, event_id=UUID,
                 buyer_id=UUID, hold_id=UUID, status={"enum": ["confirmed", "cancelled"]}, **ITEMS, total=MONEY,
                 currency=CURRENCY, created_at=TIME, cancelled_at={**TIME, "type": ["string", "null"]}),
}
EVENT_FIELDS = dict(title=text(200), description={"type": ["string", "null"], "maxLength": 5000},
                    category=text(50), starts_at=TIME, ends_at={**TIME, "type": ["string", "null"]},
                    prices={"type": "object", "additionalProperties": MONEY, "minProperties": 1})
EVENT_ID, HOLD_ID, ORDER_ID = ("event_id",), ("hold_id",), ("order_id",)


@lru_cache
def openapi_document() -> dict[str, Any]:
    paths = {
        "/api/v1/auth/register": {"post": op(
            "Create a buyer or organizer account", {**ok(201, "created", ref("User")), **fails(409)}, auth=False,
            idempotent_post=True, request=obj(["email", "password", "name", "role"], email={"type": "string",
                                              "format": "email", "maxLength": 254}, password=text(128, 8),
                                              name=text(100), role={"enum": ["buyer", "organizer"]}))},
        "/api/v1/auth/token": {"post": op(
            "Exchange email and password for a JWT", ok(200, "token", obj(
                ["access_token", "token_type", "expires_in"], access_token={"type": "string"},
                token_type={"const": "bearer"}, expires_in={"type": "integer"})), auth=False, idempotent_post=True,
            request=obj(["email", "password"], email={"type": "string"}, password=text(128)))},
        "/api/v1/venues": {"post": op(
            "Create a venue (organizer)", ok(201, "created", ref("Venue")), idempotent_post=True,
            request=obj(["name", "city", "sections"], name=text(200), city=text(100), address=text(300),
                        sections={"type": "array", "minItems": 1, "maxItems": MAX_SECTIONS_PER_VENUE,
                                  "items": {"oneOf": [SECTION_SEATED, SECTION_GA]}}))},
        "/api/v1/events": {"post": op(
            "Create a draft event at one of your venues (organizer)", ok(201, "created", ref("Event")),
            idempotent_post=True, request=obj(["venue_id", "title", "category", "starts_at", "currency", "prices"],
                                              venue_id=UUID, currency=CURRENCY, **EVENT_FIELDS))},
        "/api/v1/events/{event_id}": {"patch": op(
            "Edit an event you own; never changes inventory", {**ok(200, "event", ref("Event")), **fails(404, 409)},
            params=EVENT_ID, request={**obj([], **EVENT_FIELDS), "minProperties": 1})},
        "/api/v1/events/{event_id}/publish": {"post": op(
            "Put a draft event on sale", {**ok(200, "event", ref("Event")), **fails(404)}, params=EVENT_ID,
            idempotent_post=True)},
        "/api/v1/events/{event_id}/cancel": {"post": op(
            "Cancel an event: every order cancelled, every hold released (owner or admin)",
            {**ok(200, "event", ref("Event")), **fails(404)}, params=EVENT_ID, idempotent_post=True)},
        "/api/v1/events/{event_id}/holds": {"post": op(
            "Hold seats (all or nothing) or general-admission places (buyer)",
            {**ok(201, "held", ref("Hold")), **fails(404)}, params=EVENT_ID, idempotent_post=True,
            request={"oneOf": [
                obj(["seats"], seats={"type": "array", "minItems": 1, "maxItems": MAX_SEATS_PER_HOLD,
                                      "uniqueItems": True, "items": {"type": "string", "maxLength": 40}}),
                obj(["section", "quantity"], section=CODE,
                    quantity={"type": "integer", "minimum": 1, "maximum": MAX_SEATS_PER_HOLD})]})},
        "/api/v1/holds/{hold_id}": {"delete": op(
            "Release your hold", {**ok(204, "released"), **fails(404, 409)}, params=HOLD_ID)},
        "/api/v1/orders": {"post": op(
            "Check out a hold you own", {**ok(201, "confirmed", ref("Order")), **fails(404, 410)},
            idempotent_post=True, request=obj(["hold_id"], hold_id=UUID))},
        "/api/v1/orders/{order_id}/cancel": {"post": op(
            "Cancel an order (its buyer, the event's organizer, admin); repeatable",
            {**ok(200, "cancelled", ref("Order")), **fails(404)}, params=ORDER_ID, idempotent_post=True)},
        "/api/v1/events/{event_id}/waitlist": {"post": op(
            "Join the event's FIFO waitlist (buyer): 409 SEATS_AVAILABLE while enough seats are on sale, "
            "409 ALREADY_ON_WAITLIST with an active entry",
            {**ok(201, "joined", obj(["id", "position"], id=UUID, event_id=UUID,
                                     position={"type": "integer", "minimum": 1}, status={"const": "waiting"},
                                     quantity={"type": "integer"}, section={"type": ["string", "null"]},
                                     created_at={"type": "string", "format": "date-time"})), **fails(404)},
            params=EVENT_ID, idempotent_post=True,
            request=obj(["quantity"], quantity={"type": "integer", "minimum": 1, "maximum": MAX_SEATS_PER_HOLD},
                        section=CODE))},
        "/api/v1/waitlist/{entry_id}": {"delete": op(
            "Leave the waitlist (your entry); an offer you held passes to the next in line; repeatable",
            {**ok(204, "left"), **fails(404)}, params=("entry_id",))},
        "/health": {"get": op("PostgreSQL and Redis reachability", {
            **ok(200, "healthy", obj(["status", "checks"], status={"const": "ok"}, checks={"type": "object"})),
            "503": {"description": "a dependency is unavailable; checks names it"}}, auth=False)},
        "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {
            "200": {"description": "Prometheus text format",
                    "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
        "/openapi.json": {"get": {"summary": "This document", "responses": ok(200, "OpenAPI 3 document",
                                                                            {"type": "object"})}},
    }
    error = {"content": {"application/json": {"schema": ref("Error")}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "Evently command service", "version": "1.0.0",
                 "description": "Write side of Evently (see CONTRACT.md). Errors: "
                                '{"error": {"code", "message", "details"}}.'},
        "servers": [{"url": "http://127.0.0.1:8001"}],
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
            "parameters": {"IdempotencyKey": {"name": "Idempotency-Key", "in": "header", "required": False,
                                              "schema": {"type": "string", "minLength": 1, "maxLength": 200}}},
            "responses": {
                "400": {"description": "VALIDATION_ERROR: details names each bad field", **error},
                "401": {"description": "UNAUTHENTICATED", **error},
                "403": {"description": "FORBIDDEN", **error},
                "404": {"description": "NOT_FOUND", **error},
                "409": {"description": "SEATS_UNAVAILABLE (details.seats), SOLD_OUT, EVENT_NOT_ON_SALE, "
                                       "INVALID_STATE, EMAIL_EXISTS, IDEMPOTENCY_IN_PROGRESS, "
                                       "IDEMPOTENCY_KEY_REUSED", **error},
                "410": {"description": "HOLD_EXPIRED", **error},
                "413": {"description": "PAYLOAD_TOO_LARGE: body over EVENTLY_MAX_BODY_BYTES", **error},
                "503": {"description": "DEPENDENCY_UNAVAILABLE: details.dependency names it", **error},
            },
        },
    }
