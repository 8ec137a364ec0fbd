"""Command service HTTP API (aiohttp): ``python -m command_service.entrypoints.app``.

Thin: each route builds a command from the request (domain/commands.py), hands it to the
service layer and renders the result. Errors become CONTRACT error bodies in one place
(``error_response``); idempotency keys are handled by a middleware.
Listens on EVENTLY_COMMAND_HOST:EVENTLY_COMMAND_PORT; EVENTLY_COMMAND_WORKERS > 1 starts that
many processes sharing the port (SO_REUSEPORT).
"""
from __future__ import annotations

import asyncio
import functools
import json
import multiprocessing
import multiprocessing.connection
import os
import shutil
import signal
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable

import psycopg
import redis.asyncio
import redis.exceptions
import structlog
from aiohttp import web
from pydantic import BaseModel
from prometheus_client import multiprocess
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from common.auth import InvalidToken, Principal, bearer_token, decode_token
from common.logging import configure_logging
from common.metrics import CONTENT_TYPE_LATEST, exposition
from common.openapi import Health, Operation, Param, build_document, swagger_ui
from common.ratelimit import RateLimited, RateLimiter, RateLimitItem
from common.revocation import Revocations
from common.settings import Settings, get_settings, require_secure_secret
from contracts.errors import CODE_FOR_STATUS, STATUS, ErrorBody, error_body
from contracts.payments import BadSignature
from command_service import metrics
from command_service.adapters.idempotency import IdempotencyStore
from command_service.adapters.lease import ProcessLease
from command_service.adapters.payments import provider_for
from command_service.adapters.seat_locks import SeatLocks
from command_service.adapters.ticket_keys import TicketKeys
from command_service.domain import commands, errors
from command_service.domain.model import iso
from command_service.entrypoints import sweeper
from command_service.entrypoints import schemas
from command_service.service_layer import handlers
from command_service.service_layer.services import Services
from command_service.service_layer.unit_of_work import TransientConflict, UnitOfWork

log = structlog.get_logger()
SETTINGS = web.AppKey("settings", Settings)
POOL = web.AppKey("pool", AsyncConnectionPool)
SERVICES = web.AppKey("services", Services)
ACTOR = web.RequestKey("actor", Principal)
IDEMPOTENCY = web.AppKey("idempotency", IdempotencyStore)
REVOCATIONS = web.AppKey("revocations", Revocations)


@dataclass(frozen=True)
class Limits:
    limiter: RateLimiter
    password_address: RateLimitItem
    password_account: RateLimitItem
    writes: RateLimitItem

    @classmethod
    def of(cls, s: Settings, redis_pool) -> Limits:
        p = RateLimiter.parse
        return cls(RateLimiter(s.redis_url, prefix=s.rate_key_prefix, connection_pool=redis_pool),
                   p(s.rate_password_per_address), p(s.rate_password_per_account), p(s.rate_writes_per_account))


LIMITS = web.AppKey("limits", Limits)
routes = web.RouteTableDef()


# --- request helpers ----------------------------------------------------------------------
def error_response(exc: BaseException) -> web.Response:
    """Every failure, as a CONTRACT error body with the matching status."""
    if isinstance(exc, errors.DomainError):
        status, body = STATUS[exc.code], error_body(exc.code, exc.message, exc.details)
    elif isinstance(exc, web.HTTPException):
        status = exc.status
        body = error_body(CODE_FOR_STATUS.get(status, "VALIDATION_ERROR" if status < 500 else "INTERNAL_ERROR"),
                          exc.reason)
    elif isinstance(exc, RateLimited):
        status, body = 429, error_body("RATE_LIMITED", str(exc), {"scope": exc.scope, "retry_after": exc.retry_after})
    elif isinstance(exc, psycopg.DataError):  # a value validation let through but PostgreSQL cannot store
        log.warning("data_error", error=str(exc)[:300])
        status, body = 400, error_body("VALIDATION_ERROR", "a value in the request cannot be stored")
    elif isinstance(exc, (psycopg.OperationalError, PoolTimeout, TransientConflict)):
        status, body = 503, error_body("DEPENDENCY_UNAVAILABLE", "database unavailable", {"dependency": "postgresql"})
    elif isinstance(exc, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)):
        status, body = 503, error_body("DEPENDENCY_UNAVAILABLE", "Redis unavailable", {"dependency": "redis"})
    else:
        log.exception("unhandled_error", exc_info=exc)
        status, body = 500, error_body("INTERNAL_ERROR", "internal error")
    metrics.REJECTIONS.labels(body["error"]["code"]).inc()
    headers = {}
    if status == 503:  # a dependency that is down or saturated (pool timeout) usually recovers
        headers["Retry-After"] = "1"
    if isinstance(exc, RateLimited):
        headers["Retry-After"] = str(exc.retry_after)
    if isinstance(exc, web.HTTPMethodNotAllowed):
        headers["Allow"] = ", ".join(sorted(exc.allowed_methods))
    return web.json_response(body, status=status, headers=headers or None)


def actor(request: web.Request) -> Principal:
    if ACTOR not in request:
        try:
            token = bearer_token(request.headers.get("Authorization"))
            principal = request.app[REVOCATIONS].check(decode_token(token, request.app[SETTINGS].jwt_secret))
            uuid.UUID(principal.user_id)
        except (InvalidToken, ValueError) as exc:
            raise errors.Unauthenticated("a valid bearer token is required", {"reason": str(exc)[:200]}) from None
        request[ACTOR] = principal
    return request[ACTOR]


def path_id(request: web.Request, name: str) -> str:
    try:
        return str(uuid.UUID(request.match_info[name]))
    except ValueError:
        raise errors.NotFound(f"no such {name.removesuffix('_id')}") from None


BODY = web.RequestKey("body", object)


async def json_body(request: web.Request) -> Any:
    """The request's JSON body, parsed and checked once (the rate limiter reads a login's email from it too)."""
    if BODY not in request:
        request[BODY] = await _parse_body(request)
    return request[BODY]


async def _parse_body(request: web.Request) -> Any:
    raw = await request.read()  # over max_body_bytes: aiohttp raises 413
    if not raw.strip():
        return None
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):  # JSONDecodeError, UnicodeDecodeError, absurd nesting
        raise errors.ValidationError("malformed JSON body", {"body": "not valid UTF-8 JSON"}) from None
    bad = commands.nul_fields(body) if b"\\u0000" in raw else []
    if bad:  # one rule for every field: PostgreSQL text cannot hold NUL, and no name or title needs one
        raise errors.ValidationError("NUL characters are not allowed", {where: "contains a NUL character"
                                                                         for where in bad[:20]})
    return body


async def run(request: web.Request, command: type[commands.Command], *, body: bool = True, **context: Any) -> Any:
    """Build the command from body + context (path ids, actor) and dispatch it."""
    if issubclass(command, commands.Authenticated):
        context["actor"] = actor(request)
    cmd = commands.parse(command, await json_body(request) if body else None, **context)
    return await handlers.handle(cmd, request.app[SERVICES])


# --- routes: each declares its OpenAPI operation (common/openapi.py) next to its handler ------------------------
OPERATIONS: list[Operation] = []
IDEMPOTENCY_KEY = Param("Idempotency-Key", "header", "1 to 200 characters: a repeat with the same key and body "
                        "within 24 h replays the first response (CONTRACT \"Idempotency\")")
# Not replayed (CONTRACT "Idempotency" note in README "Security"): the auth endpoints hand out tokens, which must
# never be stored, and their callers are anonymous (no per-user key space). A repeat simply runs again: register
# answers 409 for a taken email, and a login or refresh is safe to repeat.
# The payment provider's webhook is deduplicated by the provider's own event id instead (its retries carry no key).
NOT_IDEMPOTENT = frozenset({"/api/v1/auth/register", "/api/v1/auth/token", "/api/v1/auth/refresh",
                            "/api/v1/auth/logout", "/api/v1/payments/{provider}/webhook"})


TITLE, VERSION = "Evently command service", "1.0.0"
DESCRIPTION = (
    "Writes: accounts, venues, events, holds, orders, the waitlist. Reads are on the query service. "
    "The reference is docs/api.md. Every error has the body `{error: {code, message, details}}`. "
    "Strings are trimmed of surrounding white space before their length is checked; integers are strict "
    "(a JSON integer: `\"2\"` and `2.0` are refused); unknown body fields are refused; times are ISO 8601 "
    "with an offset, between 2000 and 2100. Every POST but the /auth ones takes an `Idempotency-Key`.")


def route(method: str, path: str, summary: str, *, ok: int = 200, response: type[BaseModel] | None = None,
          body: type[BaseModel] | None = None, auth: bool = True, errors_: tuple[int, ...] = (),
          tags: tuple[str, ...] = (), description: str = "", extra_ok: tuple[int, ...] = ()) -> Callable:
    """Register an aiohttp route and record its OpenAPI operation. ``body``: the command whose fields (minus the
    token's actor and the path ids) are the JSON body."""
    def register(handler: Callable) -> Callable:
        routes.route(method, path)(handler)
        responses: dict[int, Any] = {ok: response, **{status: response for status in extra_ok}}
        for status in errors_ + ((403,) if auth else ()):
            responses[status] = ErrorBody
        headers = (IDEMPOTENCY_KEY,) if method == "POST" and path not in NOT_IDEMPOTENT else ()
        OPERATIONS.append(Operation(method, path, summary, tags=tags, auth=auth, body=body, headers=headers,
                                    responses=responses, description=description, body_exclude=("actor",)))
        return handler
    return register


@route("POST", "/api/v1/auth/register", "Create a buyer or organizer account", ok=201, response=schemas.User,
       body=commands.Register, auth=False, errors_=(409,), tags=("accounts",),
       description="409 `EMAIL_EXISTS` when the email is taken (emails compare in lower case).")
async def register(request: web.Request) -> web.Response:
    return web.json_response((await run(request, commands.Register)).to_json(), status=201)


@route("POST", "/api/v1/auth/token", "Log in: an access token for email + password", response=schemas.Token,
       body=commands.IssueToken, auth=False, errors_=(401,), tags=("accounts",),
       description="401 `UNAUTHENTICATED` for a wrong email or password (the same answer for both).")
async def token(request: web.Request) -> web.Response:
    return web.json_response(await run(request, commands.IssueToken))


@route("POST", "/api/v1/auth/refresh", "Exchange a refresh token (once) for a new access + refresh token",
       response=schemas.Token, body=commands.RefreshToken, auth=False, errors_=(401,), tags=("accounts",),
       description="Each refresh token works once. Presenting one a second time revokes its whole family (the "
                   "tokens issued from the same login, and their access tokens): 401.")
async def refresh(request: web.Request) -> web.Response:
    return web.json_response(await run(request, commands.RefreshToken))


@route("POST", "/api/v1/auth/logout", "Log out: this access token and its refresh token stop working", ok=204,
       tags=("accounts",), description="On both services within 5 s.")
async def logout(request: web.Request) -> web.Response:
    await run(request, commands.Logout, body=False)
    return web.Response(status=204)


@route("POST", "/api/v1/admin/users/{user_id}/role", "Change a user's role (admin)", response=schemas.AdminUser,
       body=commands.SetUserRole, errors_=(404,), tags=("accounts",),
       description="The user's current tokens stop working (within 5 s); they sign in again with the new role.")
async def set_user_role(request: web.Request) -> web.Response:
    user = await run(request, commands.SetUserRole, user_id=path_id(request, "user_id"))
    return web.json_response(user.document_for_admin())


@route("POST", "/api/v1/admin/users/{user_id}/disable", "Disable a user (admin)", response=schemas.AdminUser,
       errors_=(404,), tags=("accounts",),
       description="The user's tokens stop working on both services within 5 s, and sign-in is refused.")
async def disable_user(request: web.Request) -> web.Response:
    user = await run(request, commands.DisableUser, body=False, user_id=path_id(request, "user_id"))
    return web.json_response(user.document_for_admin())


@route("PATCH", "/api/v1/me/preferences", "Choose the optional mail you take (reminders, marketing)",
       response=schemas.Preferences, body=commands.UpdatePreferences, tags=("accounts",),
       description="Order, payment and refund mail cannot be turned off. Give `reminders` and/or `marketing`.")
async def update_preferences(request: web.Request) -> web.Response:
    return web.json_response((await run(request, commands.UpdatePreferences)).preferences())


@route("POST", "/api/v1/me/notifications/{notification_id}/read", "Mark one of your notifications read", ok=204,
       errors_=(400, 404), tags=("accounts",),
       description="Applied to the inbox read model through the outbox (GET /me/notifications on the query "
                   "service shows it within moments). An id that is not one of yours changes nothing.")
async def mark_notification_read(request: web.Request) -> web.Response:
    await run(request, commands.MarkNotificationsRead, body=False,
              notification_id=path_id(request, "notification_id"))
    return web.Response(status=204)


@route("POST", "/api/v1/me/notifications/read-all", "Mark every notification you have so far read", ok=204,
       errors_=(400,), tags=("accounts",))
async def mark_all_notifications_read(request: web.Request) -> web.Response:
    await run(request, commands.MarkNotificationsRead, body=False)
    return web.Response(status=204)


@route("POST", "/api/v1/venues", "Create a venue (organizer)", ok=201, response=schemas.Venue,
       body=commands.CreateVenue, tags=("catalog",))
async def create_venue(request: web.Request) -> web.Response:
    return web.json_response((await run(request, commands.CreateVenue)).to_json(), status=201)


@route("POST", "/api/v1/events", "Create a draft event at one of the organizer's venues", ok=201,
       response=schemas.Event, body=commands.CreateEvent, errors_=(404,), tags=("catalog",),
       description="`prices` names exactly the venue's section codes. 404 when the venue is unknown or not "
                   "the organizer's.")
async def create_event(request: web.Request) -> web.Response:
    return web.json_response((await run(request, commands.CreateEvent)).document(), status=201)


@route("PATCH", "/api/v1/events/{event_id}", "Edit an event (owning organizer); never changes inventory",
       response=schemas.Event, body=commands.UpdateEvent, errors_=(404, 409), tags=("catalog",),
       description="Any of title, description, category, starts_at, ends_at, prices (at least one). `prices` keys "
                   "must be section codes of the venue. 409 `INVALID_STATE` for a cancelled event.")
async def update_event(request: web.Request) -> web.Response:
    event = await run(request, commands.UpdateEvent, event_id=path_id(request, "event_id"))
    return web.json_response(event.document())


@route("POST", "/api/v1/events/{event_id}/promo-codes", "Create a promo code for an event (owning organizer)",
       ok=201, response=schemas.PromoCode, body=commands.CreatePromoCode, errors_=(400, 404, 409),
       tags=("catalog",),
       description="Exactly one of `percent_off` (1-100, rounded down to the minor unit) and `amount_off` (minor "
                   "units, never below 0). At most `max_uses` orders use it, under any concurrency; a cancelled "
                   "order gives its use back. 409 `INVALID_STATE` when the event already has the code (codes "
                   "compare case-insensitively).")
async def create_promo_code(request: web.Request) -> web.Response:
    promo = await run(request, commands.CreatePromoCode, event_id=path_id(request, "event_id"))
    return web.json_response(promo.to_json(), status=201)


@route("POST", "/api/v1/events/{event_id}/publish", "Put a draft on sale (owning organizer)",
       response=schemas.Event, errors_=(404, 409), tags=("catalog",))
async def publish_event(request: web.Request) -> web.Response:
    event = await run(request, commands.PublishEvent, body=False, event_id=path_id(request, "event_id"))
    return web.json_response(event.document())


@route("POST", "/api/v1/events/{event_id}/cancel", "Cancel an event: every order cancelled, every hold released",
       response=schemas.Event, errors_=(404, 409), tags=("catalog",),
       description="The owning organizer or an admin.")
async def cancel_event(request: web.Request) -> web.Response:
    event = await run(request, commands.CancelEvent, body=False, event_id=path_id(request, "event_id"))
    return web.json_response(event.document())


@route("POST", "/api/v1/events/{event_id}/holds", "Hold seats (all or nothing) until the hold expires", ok=201,
       response=schemas.Hold, body=commands.CreateHold, errors_=(404, 409), tags=("buying",),
       description="`{seats: [seat_id, ...]}` (at most 10) or `{section, quantity}` for a general-admission "
                   "section. 409 `SEATS_UNAVAILABLE` (details.seats), `SOLD_OUT`, `EVENT_NOT_ON_SALE` (also before "
                   "`sale_starts_at`: details.on_sale_at) or `LIMIT_EXCEEDED` (details: limit, current: the buyer's "
                   "held + sold places); 403 `ADMISSION_REQUIRED` on a waiting-room event without a valid "
                   "`admission`.")
async def create_hold(request: web.Request) -> web.Response:
    hold = await run(request, commands.CreateHold, event_id=path_id(request, "event_id"))
    return web.json_response(hold.to_json(), status=201)


@route("POST", "/api/v1/events/{event_id}/queue", "Join an event's waiting room (buyer)", ok=201,
       response=schemas.QueueEntry, errors_=(404, 409), tags=("buying",),
       description="One entry per buyer and event: joining again answers the same entry. Joining before "
                   "`sale_starts_at` puts you in a pool shuffled at random at opening; later, in arrival order. "
                   "Follow it at the query service (`GET /api/v1/events/{id}/queue/{entry_id}`, or its `/stream`) "
                   "until `admission` comes, then hold with it. 409 `INVALID_STATE` when the event has no "
                   "waiting room, `EVENT_NOT_ON_SALE` when it is not on sale.")
async def join_queue(request: web.Request) -> web.Response:
    entry = await run(request, commands.JoinQueue, body=False, event_id=path_id(request, "event_id"))
    return web.json_response(entry, status=201)


@route("DELETE", "/api/v1/holds/{hold_id}", "Release a hold (owning buyer)", ok=204, errors_=(404,),
       tags=("buying",))
async def release_hold(request: web.Request) -> web.Response:
    await run(request, commands.ReleaseHold, body=False, hold_id=path_id(request, "hold_id"))
    return web.Response(status=204)


@route("POST", "/api/v1/orders", "Check out a hold (the buyer who owns it)", ok=201, response=schemas.Order,
       body=commands.Checkout, errors_=(400, 404, 409, 410), tags=("buying",),
       description="A free order (total 0) is `confirmed` at once. A paid one is `pending_payment` with "
                   "`payment: {id, provider, status, checkout_url, expires_at}`: the buyer pays on `checkout_url`, "
                   "and the provider's webhook confirms it (or `payment_failed`); its seats stay held until "
                   "`payment.expires_at`. The same request again for the same hold answers 200 with the same order "
                   "as it is now. 410 `HOLD_EXPIRED` when the hold expired or was released. `promo_code` lowers "
                   "`total` (`subtotal` - `discount`); 400 `INVALID_PROMO_CODE` for an unknown, expired or "
                   "used-up code, or one not valid for the hold's sections (the hold stays active). 503 "
                   "`DEPENDENCY_UNAVAILABLE` when the payment provider does not answer (the hold stays active).",
       extra_ok=(200,))
async def checkout(request: web.Request) -> web.Response:
    order, created = await run(request, commands.Checkout)
    return web.json_response(order.to_json(), status=201 if created else 200)


@route("POST", "/api/v1/orders/{order_id}/cancel", "Cancel an order; its seats return to sale exactly once",
       response=schemas.Order, errors_=(404,), tags=("buying",),
       description="The owning buyer, the event's organizer or an admin. Repeating it is harmless. A paid, "
                   "confirmed order is refunded: `refund: {status: pending | succeeded | failed, amount, reason}` "
                   "(asked of the provider once, with the order id as idempotency key; retried until it answers). "
                   "A `pending_payment` order is cancelled and its payment cancelled at the provider (refunded if "
                   "it had succeeded). A `payment_failed` order is returned as it is.")
async def cancel_order(request: web.Request) -> web.Response:
    order = await run(request, commands.CancelOrder, body=False, order_id=path_id(request, "order_id"))
    return web.json_response(order.to_json())


@route("POST", "/api/v1/events/{event_id}/scanners", "Make a door credential for an event (owning organizer)",
       ok=201, response=schemas.Scanner, body=commands.CreateScanner, errors_=(404, 409), tags=("check-in",),
       description="A `scanner` token scoped to this event: it may check tickets in, upload offline scans and read "
                   "the check-in key and list of this event, and nothing else. It works until the event ends "
                   "(`ends_at`, or 6 h after `starts_at`); 409 `INVALID_STATE` once the event is over.")
async def create_scanner(request: web.Request) -> web.Response:
    scanner, token = await run(request, commands.CreateScanner, event_id=path_id(request, "event_id"))
    return web.json_response({"id": scanner.id, "event_id": scanner.event_id, "name": scanner.name, "token": token,
                              "expires_at": iso(scanner.expires_at)}, status=201)


@route("POST", "/api/v1/events/{event_id}/checkins", "Check a ticket in at the door (the event's scanner or "
       "organizer)", response=schemas.CheckedIn, body=commands.CheckIn, errors_=(400, 404, 409), tags=("check-in",),
       description="The code's signature is verified, then one conditional update admits the ticket: of any number "
                   "of concurrent scans exactly one gets 200. 409 `ALREADY_CHECKED_IN` (`details.checked_in_at`: "
                   "the first scan's time), `TICKET_VOID`, `WRONG_EVENT`; 400 `INVALID_TICKET` on a bad signature.")
async def check_in(request: web.Request) -> web.Response:
    t = await run(request, commands.CheckIn, event_id=path_id(request, "event_id"))
    place = {"seat": t.seat} if t.seat else {"section": t.section}
    return web.json_response({"ticket_id": t.id, **place, "status": t.status,
                              "checked_in_at": iso(t.checked_in_at)})


@route("POST", "/api/v1/events/{event_id}/checkins/batch", "Upload scans made offline (the event's scanner or "
       "organizer)", response=schemas.BatchResults, body=commands.CheckInBatch, errors_=(400, 404),
       tags=("check-in",), description="Each ticket is admitted once across every device and upload, at its "
                                       "earliest scan; later duplicates are reported (`already_checked_in`), never "
                                       "counted. At most 1,000 scans per upload.")
async def check_in_batch(request: web.Request) -> web.Response:
    return web.json_response({"results": await run(request, commands.CheckInBatch,
                                                   event_id=path_id(request, "event_id"))})


@route("GET", "/api/v1/events/{event_id}/checkin-key", "The event's public ticket key, to verify codes offline",
       response=schemas.CheckinKey, errors_=(404,), tags=("check-in",),
       description="The event's scanners and organizer. A code `<payload>.<signature>` (base64url, no padding) "
                   "verifies when `signature` is an Ed25519 signature of the ASCII `payload` by this key; the "
                   "payload (35 bytes) is version 1, the key number (2 bytes), the ticket id and the event id "
                   "(16 bytes each). contracts/tickets.py.")
async def checkin_key(request: web.Request) -> web.Response:
    return web.json_response(await run(request, commands.CheckinKey, body=False,
                                       event_id=path_id(request, "event_id")))


@route("POST", "/api/v1/events/{event_id}/waitlist", "Join a sold-out event's waitlist", ok=201,
       response=schemas.WaitlistJoined, body=commands.JoinWaitlist, errors_=(404, 409), tags=("buying",),
       description="409 `SEATS_AVAILABLE` while enough seats are on sale, `ALREADY_ON_WAITLIST` for a second "
                   "active entry.")
async def join_waitlist(request: web.Request) -> web.Response:
    entry, position = await run(request, commands.JoinWaitlist, event_id=path_id(request, "event_id"))
    return web.json_response({"id": entry.id, "event_id": entry.event_id, "position": position,
                              "status": entry.status, "quantity": entry.quantity, "section": entry.section,
                              "created_at": entry.to_json()["created_at"]}, status=201)


@route("DELETE", "/api/v1/waitlist/{entry_id}", "Leave a waitlist (owning buyer)", ok=204, errors_=(404,),
       tags=("buying",))
async def leave_waitlist(request: web.Request) -> web.Response:
    await run(request, commands.LeaveWaitlist, body=False, entry_id=path_id(request, "entry_id"))
    return web.Response(status=204)


@route("POST", "/api/v1/payments/{provider}/webhook", "The payment provider's signed webhook",
       response=schemas.WebhookReceipt, auth=False, errors_=(400, 404), tags=("payments",),
       description="Called by the provider, not by clients: `devpay` signs with `Devpay-Signature` "
                   "(t=<unix>,v1=<hex HMAC-SHA256 of \"t.body\">), `stripe` with `Stripe-Signature`. 200 once "
                   "recorded; the same provider event again is recorded once (`duplicate: true`). 400 "
                   "`VALIDATION_ERROR` on a missing, wrong or older than 5 minutes signature; 404 for a provider "
                   "this deployment does not use (`EVENTLY_PAYMENT_PROVIDER`).")
async def payment_webhook(request: web.Request) -> web.Response:
    svc = request.app[SERVICES]
    provider = request.match_info["provider"]
    if provider != svc.payments.name:
        raise errors.NotFound(f"this deployment takes payments through {svc.payments.name!r}, not {provider!r}")
    raw = await request.read()
    try:
        event = svc.payments.parse_webhook(request.headers, raw)
    except BadSignature as exc:
        raise errors.ValidationError(f"webhook refused: {exc}", {"signature": str(exc)}) from None
    cmd = commands.RecordPaymentWebhook(provider=provider, event=event, payload=json.loads(raw))
    return web.json_response(await handlers.handle(cmd, svc))


@route("GET", "/health", "Health of PostgreSQL and Redis (503 names the failed one)", response=Health,
       auth=False, tags=("operations",))
async def health(request: web.Request) -> web.Response:
    svc = request.app[SERVICES]

    async def check(name: str, probe) -> str:
        try:
            await asyncio.wait_for(probe(), timeout=2)
            return "ok"
        except Exception as exc:  # noqa: BLE001 - any failure means unavailable; the why goes to the log only
            log.warning("health check failed", dependency=name, error=f"{type(exc).__name__}: {str(exc)[:300]}")
            return "unavailable"

    async def pg() -> None:
        async with request.app[POOL].connection() as conn:
            await conn.execute("SELECT 1")

    results = await asyncio.gather(check("postgresql", pg), check("redis", svc.locks.ping))
    checks = dict(zip(("postgresql", "redis"), results, strict=True))
    ok = all(v == "ok" for v in checks.values())
    return web.json_response({"status": "ok" if ok else "unavailable", "checks": checks}, status=200 if ok else 503)


@route("GET", "/metrics", "Prometheus metrics (all workers)", response=None, auth=False, tags=("operations",))
async def metrics_endpoint(request: web.Request) -> web.Response:
    return web.Response(body=exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST})


@route("GET", "/openapi.json", "This document (OpenAPI 3.1, generated from the code)", response=None, auth=False,
       tags=("operations",))
async def openapi(request: web.Request) -> web.Response:
    return web.json_response(openapi_document())


DOCS = swagger_ui("/openapi.json", title=TITLE, assets="/docs/assets")


@route("GET", "/docs", "Browsable API docs (Swagger UI, served locally)", response=None, auth=False,
       tags=("operations",))
async def docs(request: web.Request) -> web.Response:
    return web.Response(text=DOCS.html, content_type="text/html")


@functools.cache
def openapi_document() -> dict[str, Any]:
    return build_document(TITLE, VERSION, DESCRIPTION, OPERATIONS)


# --- middlewares --------------------------------------------------------------------------
@web.middleware
async def errors_middleware(request: web.Request, handler) -> web.StreamResponse:
    """Outermost: nothing escapes as a bare 500; records latency per route."""
    started = time.perf_counter()
    try:
        response = await handler(request)
    except Exception as exc:  # noqa: BLE001 - mapped to a contract error body
        response = error_response(exc)
    resource = request.match_info.route.resource
    key = (request.method, resource.canonical if resource else "unmatched", response.status)
    child = _LATENCY.get(key)
    if child is None:  # one labelled child per method/route/status, looked up once
        child = _LATENCY[key] = metrics.REQUEST_LATENCY.labels(key[0], key[1], str(key[2]))
    child.observe(time.perf_counter() - started)
    return response


_LATENCY: dict[tuple[str, str, int], Any] = {}


CORS_HEADERS = "Authorization, Content-Type, Idempotency-Key"


@web.middleware
async def cors_middleware(request: web.Request, handler) -> web.StreamResponse:
    """The browser page (served by the query service, another origin) writes here with a bearer token: the
    origins in ``EVENTLY_CORS_ORIGINS`` may call the API. No cookies are used, so no credentials are allowed; a
    preflight is answered here, before auth, rate limits and idempotency. Ten lines over aiohttp-cors, which needs
    every route registered with it and answers preflights for unknown paths with its own errors."""
    origin = request.headers.get("Origin")
    allowed = origin is not None and origin in request.app[SETTINGS].cors_origins
    if allowed and request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
        return web.Response(status=204, headers={
            "Access-Control-Allow-Origin": origin, "Access-Control-Allow-Methods": "GET, POST, PATCH, DELETE",
            "Access-Control-Allow-Headers": CORS_HEADERS, "Access-Control-Max-Age": "600", "Vary": "Origin"})
    response = await handler(request)
    if allowed:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Expose-Headers"] = "Retry-After"
        response.headers["Vary"] = "Origin"
    return response


PASSWORD_PATHS = frozenset({"/api/v1/auth/register", "/api/v1/auth/token"})
WRITE_METHODS = frozenset({"POST", "PATCH", "PUT", "DELETE"})


@web.middleware
async def rate_limit_middleware(request: web.Request, handler) -> web.StreamResponse:
    """CONTRACT "Rate limits" (common/ratelimit.py): the password endpoints per client address and per email,
    every other state-changing request per signed-in user. Runs before idempotency, so a 429 is never stored."""
    limits: Limits | None = request.app.get(LIMITS)
    if limits is None or request.method not in WRITE_METHODS:
        return await handler(request)
    if request.path in PASSWORD_PATHS:
        # the socket's peer (behind a proxy, put the limiter in the proxy or trust its X-Forwarded-For there)
        await limits.limiter.hit(limits.password_address, "password-address", request.remote or "unknown")
        body = await json_body(request)
        email = body.get("email") if isinstance(body, dict) else None
        if isinstance(email, str) and email.strip():
            await limits.limiter.hit(limits.password_account, "password-account", email.strip().lower()[:254])
    elif "Authorization" in request.headers:
        try:
            user = actor(request).user_id
        except errors.Unauthenticated:
            return await handler(request)  # refused by the handler anyway
        await limits.limiter.hit(limits.writes, "writes", user)
    return await handler(request)


@web.middleware
async def idempotency_middleware(request: web.Request, handler) -> web.StreamResponse:
    """CONTRACT "Idempotency": replay the first response of a POST per user + Idempotency-Key for 24 h.

    Keys are per signed-in user: a request without a valid token is not remembered (it is refused anyway, or is
    an auth endpoint). The stored fingerprint is an HMAC (adapters/idempotency.py). Only answers the request
    itself produced are stored: not 5xx (a retry may succeed), not 429 (it never ran)."""
    key = request.headers.get("Idempotency-Key")
    if request.method != "POST" or key is None or request.path in NOT_IDEMPOTENT:
        return await handler(request)
    if not 1 <= len(key) <= 200 or not key.isprintable():
        raise errors.ValidationError("bad Idempotency-Key", {"Idempotency-Key": "1 to 200 printable characters"})
    if "Authorization" not in request.headers:
        return await handler(request)
    try:
        user = actor(request).user_id
    except errors.Unauthenticated:
        return await handler(request)  # refused anyway; nothing to remember
    store = request.app[IDEMPOTENCY]
    digest = store.fingerprint(request.method, str(request.rel_url), await request.read())
    stored = await store.claim(user, key, digest)
    if stored is not None:
        replay = web.json_response(stored.body, status=stored.status) if stored.status != 204 \
            else web.Response(status=204)
        replay.headers["Idempotent-Replayed"] = "true"
        return replay
    try:
        response = await handler(request)
    except Exception as exc:  # noqa: BLE001 - the error response is what gets remembered
        response = error_response(exc)
    if response.status >= 500 or response.status == 429:
        await store.forget(user, key)
    else:
        body = json.loads(response.text) if response.status != 204 else None
        await store.complete(user, key, response.status, body)
    return response


# --- app ----------------------------------------------------------------------------------
async def services_ctx(app: web.Application):
    s = app[SETTINGS]
    # No psycopg auto-prepare: its cache reset sends DEALLOCATE ALL, which would drop the statements
    # the repository PREPAREs itself (recoverable, see unit_of_work.py, but a wasted attempt).
    pool = AsyncConnectionPool(s.database_url, min_size=s.pg_pool_size, max_size=s.pg_pool_size, timeout=5,
                               open=False, kwargs={"prepare_threshold": None})
    await pool.open(wait=False)
    redis_pool = redis.asyncio.BlockingConnectionPool.from_url(
        s.redis_url, max_connections=s.redis_pool_size, timeout=5, socket_timeout=5, socket_connect_timeout=2)
    client = redis.asyncio.Redis(connection_pool=redis_pool)
    svc = Services(uow=lambda: UnitOfWork(pool), locks=SeatLocks(client), settings=s, redis=client,
                   payments=provider_for(s), ticket_keys=TicketKeys(s.ticket_key_secrets))
    app[POOL], app[SERVICES] = pool, svc
    lease = ProcessLease(s.database_url).start()  # this process's liveness, for the idempotency claims
    app[IDEMPOTENCY] = IdempotencyStore(pool, s.jwt_secret, lease)
    if s.rate_limits_enabled:
        app[LIMITS] = Limits.of(s, redis_pool)
    tasks = [asyncio.create_task(sweeper.run(svc, pool, app[IDEMPOTENCY], s.sweep_interval_seconds)),
             asyncio.create_task(app[REVOCATIONS].follow(client, source=lambda: _live_revocations(svc)))]
    yield
    for t in tasks:
        t.cancel()
    # Each step of the shutdown is bounded: a stuck one is named in the log and left behind, so stopping a
    # process (or a test server) never hangs on it.
    for name, step in (("background tasks", asyncio.gather(*tasks, return_exceptions=True)),
                       ("payment provider", svc.payments.close()), ("process lease", lease.close()),
                       ("redis client", client.aclose()), ("redis pool", redis_pool.aclose()),
                       ("postgresql pool", pool.close())):
        try:
            await asyncio.wait_for(step, SHUTDOWN_STEP_S)
        except asyncio.TimeoutError:
            log.warning("shutdown_step_timed_out", step=name, seconds=SHUTDOWN_STEP_S)
            print(f"command service: shutdown step {name!r} did not finish in {SHUTDOWN_STEP_S} s", file=sys.stderr)


SHUTDOWN_STEP_S = 10.0


async def _live_revocations(svc: Services) -> dict[str, float]:
    """The record the Redis revocation set is rebuilt from (common/revocation.py)."""
    async with svc.uow() as uow:
        return await uow.repo.live_revocations()


def create_app(settings: Settings | None = None) -> web.Application:
    s = settings or get_settings()
    app = web.Application(client_max_size=s.max_body_bytes,
                          middlewares=[cors_middleware, errors_middleware, rate_limit_middleware, idempotency_middleware])
    app[SETTINGS] = s
    app[REVOCATIONS] = Revocations()
    app.add_routes(routes)
    app.router.add_static(DOCS.assets_url, DOCS.assets_dir)
    app.cleanup_ctx.append(services_ctx)
    return app


def serve(settings: Settings) -> None:
    configure_logging()
    web.run_app(create_app(settings), host=settings.command_host, port=settings.command_port,
                reuse_port=settings.command_workers > 1, access_log=None, print=None)


def main() -> None:
    s = get_settings()
    require_secure_secret(s, "command-service")
    if s.command_workers <= 1:
        return serve(s)
    # Several processes share the port (SO_REUSEPORT); Prometheus aggregates their metrics through files.
    own_dir = "PROMETHEUS_MULTIPROC_DIR" not in os.environ
    if own_dir:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="evently-metrics-")
    try:
        supervise(s)
    finally:
        if own_dir:
            shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)


def supervise(s: Settings) -> None:
    """Run ``command_workers`` processes and replace any that dies (at most one restart per second per slot, so
    a worker that cannot start does not spin); SIGTERM/SIGINT stop them all. A dead worker's live gauges are
    dropped from the aggregated /metrics (``mark_process_dead``); its counters stay, as Prometheus expects."""
    configure_logging()
    ctx = multiprocessing.get_context("spawn")
    stopping = False

    def start(i: int) -> multiprocessing.process.BaseProcess:
        w = ctx.Process(target=serve, args=(s,), name=f"command-{i}")
        w.start()
        return w

    def stop(*_: Any) -> None:
        nonlocal stopping
        stopping = True
        for w in workers:
            if w.is_alive():
                w.terminate()

    workers = [start(i) for i in range(s.command_workers)]
    started = [time.monotonic()] * len(workers)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while not stopping:
        multiprocessing.connection.wait([w.sentinel for w in workers], timeout=1.0)
        for i, w in enumerate(workers):
            if w.is_alive() or stopping:
                continue
            multiprocess.mark_process_dead(w.pid)
            log.error("command_worker_died", worker=w.name, pid=w.pid, exitcode=w.exitcode)
            time.sleep(max(0.0, 1.0 - (time.monotonic() - started[i])))
            workers[i], started[i] = start(i), time.monotonic()
    for w in workers:
        w.join(10)
        if w.is_alive():
            w.kill()


if __name__ == "__main__":
    main()
