"""Query service entrypoint: ``python -m query_service.app`` (uvicorn on EVENTLY_QUERY_HOST:PORT).

The routes and the lifespan. Each route declares its OpenAPI operation next to its handler (``@get``): the
query-string model it is validated with (query_service/params.py) and the response models it renders through
(query_service/responses.py) are the ones /openapi.json documents (common/openapi.py builds it). The glue
(errors, auth, metrics) is in query_service/http.py, the micro-cache in query_service/cache.py; reads are
views over the MongoDB read models (query_service/views.py) and the Redis feed streams (query_service/feed.py).
"""
from __future__ import annotations

import asyncio
import json
from datetime import datetime
import contextlib
import functools
import gc
import html
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Awaitable, Callable

import redis.asyncio
import redis.exceptions
import uvicorn
from pydantic import BaseModel
from pymongo import AsyncMongoClient
from pymongo.errors import PyMongoError
from sse_starlette import EventSourceResponse
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from common.logging import configure_logging
from common.metrics import CONTENT_TYPE_LATEST, exposition
from common.openapi import Health, Operation, Param, build_document, swagger_ui
from common.settings import Settings, get_settings, require_secure_secret
from common import qr
from common.auth import Principal
from common.waiting_room import QueueUnavailable
from common.revocation import Revocations
from contracts import keys
from contracts.errors import ErrorBody
from query_service import views
from query_service.cache import MicroCache, cached_json
from query_service.feed import StreamHub, notification_frame, seat_frame, sse_frame
from query_service.queue_watch import QueueWatch, queue_frame
from query_service.http import EXCEPTION_HANDLERS, ApiError, MetricsMiddleware, log, principal, private_json, require
from query_service.params import (PLANNED, PLANNED_MESSAGE, RESET, UUID_PATTERN, AnalyticsQuery, AttendeesQuery,
                                  EventListQuery, NoQuery, NotificationsQuery, NotificationStreamQuery, OrganizerEventsQuery,
                                  TokenStreamQuery, PageQuery, Paging, Query, SeatStreamQuery, TicketsQuery,
                                  UsersQuery, parse_query, stream_position)
from query_service.responses import (AdminAnalytics, AttendeePage, EventDetail, EventPage, NotificationPage, Order, OrderPage, QueueEntry,
                                     OrganizerEventPage, OrganizerStats, OrganizerVenuePage, SeatMap, TicketPage,
                                     UserPage, WaitlistPage, render)

STATIC = Path(__file__).parent / "static"
UUID_RE = re.compile(UUID_PATTERN)
TITLE, VERSION = "Evently query service", "1.0.0"
DESCRIPTION = ("Reads only: the MongoDB read models the projectors write, and the live seat feed (Redis "
               "Streams). See docs/api.md. Errors have the body `{error: {code, message, details}}`; unknown, "
               "repeated, empty or malformed query parameters are a 400 `VALIDATION_ERROR` naming each one.")

ROUTES: list[BaseRoute] = []
OPERATIONS: list[Operation] = []

LAST_EVENT_ID = Param("Last-Event-ID", "header", "resume after this feed position (an EventSource sends it on "
                      "reconnect); a position that is malformed or no longer retained starts the stream with "
                      "`event: reset`")
IF_NONE_MATCH = Param("If-None-Match", "header", "an `ETag` from an earlier response: 304 if it still matches")


def get(path: str, summary: str, *, ok: type[BaseModel] | str | tuple | None, query: type[Query] = NoQuery,
        errors: tuple[int, ...] = (), auth: bool = False, cached: bool = False, headers: tuple[Param, ...] = (),
        tags: tuple[str, ...] = (), description: str = "", planned: tuple[str, ...] = ()) -> Callable:
    """Register a GET route and its OpenAPI operation. The handler gets the request and its validated query."""
    def register(handler: Callable[[Request, Any], Awaitable[Response]]) -> Callable:
        @functools.wraps(handler)
        async def endpoint(request: Request) -> Response:
            return await handler(request, parse_query(query, request.query_params, planned=planned))

        ROUTES.append(Route(path, endpoint, methods=["GET"]))
        responses: dict[int, Any] = {200: ok, 400: ErrorBody}  # every route refuses unknown query parameters
        if cached:
            responses[304] = None
        for status in errors + ((403,) if auth else ()):
            responses[status] = ErrorBody
        OPERATIONS.append(Operation(
            "get", path, summary, tags=tags, auth=auth, description=description,
            query=None if query is NoQuery else query,
            headers=headers + ((IF_NONE_MATCH,) if cached else ()), responses=responses))
        return handler
    return register


def _event_id(request: Request) -> str:
    event_id = request.path_params["event_id"]
    if not UUID_RE.match(event_id):
        raise ApiError("NOT_FOUND", "no such event")  # a malformed id is as unknown as any other
    return event_id.lower()


async def _found(response: Response | None, what: str = "no such event") -> Response:
    if response is None:
        raise ApiError("NOT_FOUND", what)
    return response


# --- pages and operations ----------------------------------------------------------------------------
@get("/", "The live seat-map page (HTML)", ok="text/html", query=PageQuery, errors=(400,), tags=("page",))
async def index(request: Request, _: PageQuery) -> Response:
    return HTMLResponse(_index_page(request.app.state.settings.command_public_url), headers={"Cache-Control": "no-cache"})


@functools.cache
def _index_page(command_url: str) -> str:
    """The page, told where the command service is (it holds and checks out there: CORS allows this origin)."""
    return (STATIC / "index.html").read_text().replace("__EVENTLY_COMMAND_URL__", html.escape(command_url, quote=True))


@get("/organizer", "The organizer's dashboard page (HTML): sales, inventory and check-ins, live", ok="text/html",
     tags=("page",), description="Open as `/organizer#token=<organizer access token>`: the fragment never reaches a "
                                "server; the page keeps the token in the tab's session storage.")
async def organizer_page(request: Request, _: NoQuery) -> Response:
    return FileResponse(STATIC / "organizer.html", media_type="text/html; charset=utf-8",
                        headers={"Cache-Control": "no-cache"})


@get("/tickets", "The buyer's tickets page (HTML): each ticket with its QR code", ok="text/html", tags=("page",),
     description="Open as `/tickets#token=<buyer access token>` (or after signing in on the seat-map page, which "
                 "keeps the token in the tab's session storage).")
async def tickets_page(request: Request, _: NoQuery) -> Response:
    return FileResponse(STATIC / "tickets.html", media_type="text/html; charset=utf-8",
                        headers={"Cache-Control": "no-cache"})


@get("/health", "Health of MongoDB and Redis (503 names the failed one)", ok=Health, tags=("operations",))
async def health(request: Request, _: NoQuery) -> Response:
    checks, ok = {}, True
    try:
        await request.app.state.mongo.admin.command("ping")
        checks["mongodb"] = "ok"
    except PyMongoError as exc:
        checks["mongodb"], ok = "unavailable", False
        log.warning("health check failed", dependency="mongodb", error=f"{type(exc).__name__}: {str(exc)[:300]}")
    try:
        await request.app.state.redis.ping()
        checks["redis"] = "ok"
    except redis.exceptions.RedisError as exc:
        checks["redis"], ok = "unavailable", False
        log.warning("health check failed", dependency="redis", error=f"{type(exc).__name__}: {str(exc)[:300]}")
    body = Health(status="ok" if ok else "unavailable", checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)


@get("/metrics", "Prometheus metrics", ok="text/plain", tags=("operations",))
async def metrics_endpoint(request: Request, _: NoQuery) -> Response:
    return Response(exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST})


@get("/openapi.json", "This document (OpenAPI 3, generated from the code)", ok="application/json",
     tags=("operations",))
async def openapi(request: Request, _: NoQuery) -> Response:
    return JSONResponse(openapi_document())


@get("/docs", "Browsable API docs (Swagger UI, served locally)", ok="text/html", tags=("operations",))
async def docs(request: Request, _: NoQuery) -> Response:
    return HTMLResponse(DOCS.html)


# --- catalog -------------------------------------------------------------------------------------------
@get("/api/v1/events", "Events on sale or cancelled: search, filters, pagination (ETag, micro-cached)",
     ok=EventPage, query=EventListQuery, errors=(400,), cached=True, tags=("catalog",), planned=PLANNED,
     description="Sorted by `starts_at`, then id; drafts are never listed. `q` is today a case-insensitive, "
                 "literal substring of the title. CONTRACT's other list parameters (`price_max`, `available`, "
                 f"`near`, `radius_km`, `sort`) are {PLANNED_MESSAGE}: they answer 400 VALIDATION_ERROR.")
async def list_events(request: Request, q: EventListQuery) -> Response:
    flt = views.list_filter(q.q, q.category, q.city, q.starts_after_text(), q.starts_before_text(), q.status)
    db = request.app.state.db
    return await _found(await cached_json(
        request, q, lambda: _render(EventPage, views.event_list(db, flt, q.page, q.page_size))))


@get("/api/v1/events/suggest", "Search suggestions: planned for a later milestone (400 until built)",
     ok=None, errors=(400,), tags=("catalog",), query=NoQuery,
     description=f"CONTRACT lists `GET /api/v1/events/suggest?q=`; it is {PLANNED_MESSAGE}.")
async def suggest(request: Request, _: NoQuery) -> Response:
    raise ApiError("VALIDATION_ERROR", "search suggestions are not built yet", {"suggest": PLANNED_MESSAGE})


@get("/api/v1/events/{event_id}", "Event detail with per-section counts (ETag, micro-cached)", ok=EventDetail,
     errors=(404,), cached=True, tags=("catalog",))
async def event_detail(request: Request, q: NoQuery) -> Response:
    event_id, db = _event_id(request), request.app.state.db
    return await _found(await cached_json(request, q, lambda: _render(EventDetail, views.event_detail(db, event_id))))


@get("/api/v1/events/{event_id}/seats", "Seat map and the feed position to stream from (ETag, micro-cached)",
     ok=SeatMap, errors=(404,), cached=True, tags=("catalog",))
async def event_seats(request: Request, q: NoQuery) -> Response:
    event_id, state = _event_id(request), request.app.state
    return await _found(await cached_json(
        request, q, lambda: _render(SeatMap, views.seat_map(state.db, state.redis, event_id))))


async def _render(model: type[BaseModel], data: Awaitable[Any]) -> BaseModel | None:
    return render(model, await data)


# --- live streams --------------------------------------------------------------------------------------
SEAT_STREAM_DOC = ("Frames `event: seats`, `id: <position>`, `data: {event_id, changes: [{seat, status} | "
                   "{section, available}]}`; `event: reset` when the position is no longer retained or is "
                   "malformed (refetch /seats; the reset carries the current position as its `id` and the stream "
                   "goes on live from there); a comment heartbeat at least every 15 s. Resume with "
                   "`Last-Event-ID` or `?last_event_id=` (the header wins).")


class StreamSlots:
    """CONTRACT "Seat stream": SSE connections are capped per client address and per process (per worker
    process: each counts its own streams, no shared state on the hot path). Past a cap: 429 RATE_LIMITED."""

    def __init__(self, per_address: int, per_process: int) -> None:
        self.per_address, self.per_process = per_address, per_process
        self.by_address: dict[str, int] = {}
        self.total = 0

    def take(self, address: str) -> None:
        if self.total >= self.per_process:
            raise ApiError("RATE_LIMITED", "this server has as many streams open as it serves",
                           {"scope": "streams-per-process"}, headers={"Retry-After": "5"})
        if self.by_address.get(address, 0) >= self.per_address:
            raise ApiError("RATE_LIMITED", f"at most {self.per_address} open streams per client address",
                           {"scope": "streams-per-address"}, headers={"Retry-After": "5"})
        self.by_address[address] = self.by_address.get(address, 0) + 1
        self.total += 1

    def give_back(self, address: str) -> None:
        self.total -= 1
        n = self.by_address.get(address, 1) - 1
        if n:
            self.by_address[address] = n
        else:
            self.by_address.pop(address, None)

    async def hold(self, frames, address: str, signed_in: Principal | None = None, revocations=None):
        """``frames``, with this stream's slot given back when it ends (however it ends). A signed-in stream also
        ends when its token expires or is revoked (checked at every frame and heartbeat, so within one heartbeat
        interval); the client reconnects with a fresh token and resumes by Last-Event-ID. One wrapper for both:
        every frame of every subscriber passes through it."""
        try:
            async for frame in frames:
                if signed_in is not None and (time.time() >= signed_in.expires_at or revocations.revoked(signed_in)):
                    return
                yield frame
        finally:
            self.give_back(address)
            await frames.aclose()


async def _with_opening(frames, event_id: str, opens_at: str):
    """The stream's frames, plus one ``event: sale_open`` frame at ``opens_at`` (no ``id``: it is not a feed
    position). The read side's own clock decides; the command side checks the same instant in the hold path."""
    wait = datetime.fromisoformat(opens_at.replace("Z", "+00:00")).timestamp() - time.time()
    opening = sse_frame("sale_open", None, json.dumps({"event_id": event_id, "on_sale_at": opens_at}))
    pending = asyncio.ensure_future(asyncio.sleep(max(wait, 0)))
    it = frames.__aiter__()
    try:
        while True:
            nxt = asyncio.ensure_future(it.__anext__())
            while pending is not None:
                done, _ = await asyncio.wait({nxt, pending}, return_when=asyncio.FIRST_COMPLETED)
                if pending in done:
                    pending = None
                    yield opening
                if nxt in done:
                    break
            try:
                yield await nxt
            except StopAsyncIteration:
                return
    finally:
        if pending is not None:
            pending.cancel()


def _sse(request: Request, hub: StreamHub, key: str, last_event_id: str | None,
         signed_in: Principal | None = None, opens: tuple[str, str] | None = None) -> EventSourceResponse:
    s: Settings = request.app.state.settings
    position = stream_position(request.headers.get("last-event-id"), last_event_id)
    address = request.client.host if request.client else "unknown"
    slots: StreamSlots = request.app.state.stream_slots
    slots.take(address)
    frames = hub.stream(key, None, reset=True) if position == RESET else hub.stream(key, position)
    if opens is not None:
        frames = _with_opening(frames, *opens)
    frames = slots.hold(frames, address, signed_in, request.app.state.revocations)
    # ping=0: the hub sends the heartbeats (one timer for all subscribers, see feed.py)
    return EventSourceResponse(frames, ping=0, send_timeout=s.sse_send_timeout_seconds,
                               headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


@get("/api/v1/events/{event_id}/seats/stream", "Live seat changes (SSE)", ok="text/event-stream",
     query=SeatStreamQuery, errors=(400, 404), headers=(LAST_EVENT_ID,), tags=("streams",),
     description=SEAT_STREAM_DOC)
async def seat_stream(request: Request, q: SeatStreamQuery) -> Response:
    event_id = _event_id(request)
    exists = await request.app.state.db.events.find_one(
        {"_id": event_id, **views.PUBLIC}, {"_id": 1, "sale_starts_at": 1})
    if exists is None:
        raise ApiError("NOT_FOUND", "no such event")
    opens_at = exists.get("sale_starts_at")
    opens = (event_id, opens_at) if opens_at and opens_at > views.now_text() else None
    return _sse(request, request.app.state.seat_hub, keys.seat_feed(event_id), q.last_event_id, opens=opens)


@get("/api/v1/me/notifications/stream", "The buyer's notifications (SSE)", ok="text/event-stream",
     query=NotificationStreamQuery, errors=(400,), auth=True, headers=(LAST_EVENT_ID,), tags=("streams",),
     description="Events `order_confirmed`, `order_cancelled`, `payment_failed`, `refund_succeeded`, "
                 "`waitlist_offer`, `offer_expired`, `event_changed`, `event_cancelled`, `event_reminder`, each with "
                 "`id: <position>` and data `{id (the notification's, as in /me/notifications), type, occurred_at, "
                 "title, body, event, ...its data}`; the token may also come as `?access_token=` (EventSource "
                 "cannot set headers). Resume and reset as on the seat stream.")
async def notification_stream(request: Request, q: NotificationStreamQuery) -> Response:
    p = principal(request, query_token=q.access_token)
    require(p, "buyer")
    return _sse(request, request.app.state.notify_hub, keys.notifications(p.user_id), q.last_event_id, signed_in=p)


@get("/api/v1/me/notifications", "Your notifications, newest first, with the unread count", ok=NotificationPage,
     query=NotificationsQuery, errors=(400,), auth=True, tags=("buyer",),
     description="The inbox the notifier fills (the same notifications it mails and streams). Mark them read on "
                 "the command service (POST /api/v1/me/notifications/{id}/read, /read-all).")
async def my_notifications(request: Request, q: NotificationsQuery) -> Response:
    p = principal(request)
    require(p, "buyer", "organizer", "admin")  # a scanner is a door credential, not an account
    return private_json(render(NotificationPage, await views.my_notifications(
        request.app.state.db, p.user_id, q.unread == "true", q.page, q.page_size)))


# --- the buyer's own -----------------------------------------------------------------------------------
async def _buyers_page(request: Request, q: Paging, model: type[BaseModel],
                       view: Callable[..., Awaitable[Any]]) -> Response:
    """One page of the calling buyer's own documents (orders, waitlist entries)."""
    p = principal(request)
    require(p, "buyer")
    return private_json(render(model, await view(request.app.state.db, p.user_id, q.page, q.page_size)))


@get("/api/v1/me/orders", "The buyer's orders, newest first", ok=OrderPage, query=Paging, errors=(400,),
     auth=True, tags=("buyer",))
async def my_orders(request: Request, q: Paging) -> Response:
    return await _buyers_page(request, q, OrderPage, views.my_orders)


@get("/api/v1/me/orders/{order_id}", "One of the buyer's orders: status, payment, refund", ok=Order,
     errors=(404,), auth=True, tags=("buyer",),
     description="The buyer's own order only: another buyer's, like an unknown one, is a 404. After paying on the "
                 "provider's page, poll it to see `pending_payment` become `confirmed` (or `payment_failed`).")
async def my_order(request: Request, _: NoQuery) -> Response:
    p = principal(request)
    require(p, "buyer")
    order_id = request.path_params["order_id"]
    if not UUID_RE.match(order_id):
        raise ApiError("NOT_FOUND", "no such order")
    order = render(Order, await views.my_order(request.app.state.db, p.user_id, order_id.lower()))
    if order is None:
        raise ApiError("NOT_FOUND", "no such order")
    return private_json(order)


@get("/api/v1/me/waitlist", "The buyer's waitlist entries, newest first (live positions)", ok=WaitlistPage,
     query=Paging, errors=(400,), auth=True, tags=("buyer",))
async def my_waitlist(request: Request, q: Paging) -> Response:
    return await _buyers_page(request, q, WaitlistPage, views.my_waitlist)


# --- organizer and admin -------------------------------------------------------------------------------
@get("/api/v1/organizer/events/{event_id}/stats", "Sales of one event (owning organizer or admin)",
     ok=OrganizerStats, errors=(404,), auth=True, tags=("organizer",))
async def organizer_stats(request: Request, _: NoQuery) -> Response:
    p = principal(request)
    require(p, "organizer", "admin")
    event_id = _event_id(request)
    owner = await views.event_owner(request.app.state.db, event_id)
    if owner is False:
        raise ApiError("NOT_FOUND", "no such event")
    if p.role != "admin" and owner != p.user_id:
        raise ApiError("FORBIDDEN", "not your event")
    stats = render(OrganizerStats, await views.organizer_stats(request.app.state.db, event_id))
    if stats is None:
        raise ApiError("NOT_FOUND", "no such event")
    return private_json(stats)


@get("/api/v1/organizer/events", "The caller's own events, drafts included (organizer)", ok=OrganizerEventPage,
     query=OrganizerEventsQuery, errors=(400,), auth=True, tags=("organizer",),
     description="Soonest first, with live counts; `status` filters (draft, on_sale, cancelled).")
async def organizer_events(request: Request, q: OrganizerEventsQuery) -> Response:
    p = principal(request)
    require(p, "organizer")
    return private_json(render(OrganizerEventPage, await views.organizer_events(
        request.app.state.db, p.user_id, q.status, q.page, q.page_size)))


@get("/api/v1/organizer/venues", "The caller's own venues (organizer)", ok=OrganizerVenuePage, query=Paging,
     errors=(400,), auth=True, tags=("organizer",))
async def organizer_venues(request: Request, q: Paging) -> Response:
    p = principal(request)
    require(p, "organizer")
    return private_json(render(OrganizerVenuePage, await views.organizer_venues(request.app.state.db, p.user_id,
                                                                                  q.page, q.page_size)))


async def _owned_event(request: Request, p: Principal, *, scanner: bool = False) -> str:
    """The path's event, if ``p`` is its organizer, an admin, or (``scanner``) one of its scanners."""
    event_id = _event_id(request)
    if scanner and p.scans_for(event_id):
        return event_id
    require(p, "organizer", "admin")
    owner = await views.event_owner(request.app.state.db, event_id)
    if owner is False:
        raise ApiError("NOT_FOUND", "no such event")
    if p.role != "admin" and owner != p.user_id:
        raise ApiError("FORBIDDEN", "not your event")
    return event_id


@get("/api/v1/organizer/events/{event_id}/attendees", "An event's tickets and who holds them (organizer, admin, "
     "the event's scanners)", ok=(AttendeePage, "text/csv"), query=AttendeesQuery, errors=(400, 404), auth=True,
     tags=("organizer",), description="`status` filters (valid, checked_in, void). `format=csv` answers every "
                                      "matching ticket as text/csv (one header row, then one row per ticket).")
async def attendees(request: Request, q: AttendeesQuery) -> Response:
    p = principal(request)
    event_id = await _owned_event(request, p, scanner=True)
    if q.format == "csv":
        data = await views.attendees(request.app.state.db, event_id, q.status, None, None)
        return Response(views.attendees_csv(data["items"]), media_type="text/csv; charset=utf-8", headers={
            "Cache-Control": "private, no-store",
            "Content-Disposition": f'attachment; filename="attendees-{event_id}.csv"'})
    return private_json(render(AttendeePage, await views.attendees(request.app.state.db, event_id, q.status,
                                                                   q.page, q.page_size)))


STATS_POLL_S = 0.5


def _polled_stream(request: Request, p: Principal, event: str, read: Callable[[], Awaitable[BaseModel | None]],
                   every: float) -> EventSourceResponse:
    """An SSE stream of ``event`` frames, each what ``read`` answers: one at connect, then one whenever it changes,
    re-read every ``every`` s (a read that fails with an API error, or answers nothing, is tried again next
    time). Counted against the client's stream slots, closed when the caller's token is revoked."""
    async def frames():
        last = None
        while True:
            try:
                model = await read()
            except ApiError:  # e.g. the waiting room being restored: the next read answers
                model = None
            body = model.model_dump_json(exclude_unset=True) if model is not None else None
            if body is not None and body != last:
                last = body
                yield {"event": event, "data": body}
            await asyncio.sleep(every)

    address = request.client.host if request.client else "unknown"
    slots: StreamSlots = request.app.state.stream_slots
    slots.take(address)
    return EventSourceResponse(slots.hold(frames(), address, p, request.app.state.revocations), ping=15,
                               send_timeout=request.app.state.settings.sse_send_timeout_seconds,
                               headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


@get("/api/v1/organizer/events/{event_id}/stream", "The event's sales and check-ins, live (SSE)",
     ok="text/event-stream", query=TokenStreamQuery, errors=(400, 404), auth=True, tags=("streams",),
     description="`event: stats` frames, each the whole stats document of GET .../stats: one at connect, then one "
                 "whenever it changes (sales, holds, refunds, check-ins); a comment heartbeat every 15 s. The "
                 "owning organizer or an admin; the token may come as `?access_token=`.")
async def organizer_stream(request: Request, q: TokenStreamQuery) -> Response:
    p = principal(request, query_token=q.access_token)
    event_id = await _owned_event(request, p)
    db = request.app.state.db

    async def stats() -> OrganizerStats | None:
        return render(OrganizerStats, await views.organizer_stats(db, event_id))
    return _polled_stream(request, p, "stats", stats, STATS_POLL_S)


# --- the waiting room ---------------------------------------------------------------------------------------
QUEUE_POLL_S = 0.5  # each event's shared reader checks the queue's sizes this often (queue_watch.py)


async def _queue_entry(request: Request, p: Principal) -> dict[str, Any]:
    require(p, "buyer")
    event_id, entry_id = _event_id(request), request.path_params["entry_id"]
    if not UUID_RE.match(entry_id):
        raise ApiError("NOT_FOUND", "no such queue entry")
    try:
        entry = await views.queue_entry(request.app.state.redis, event_id, entry_id.lower(), p.user_id)
    except QueueUnavailable:
        raise ApiError("DEPENDENCY_UNAVAILABLE", "the waiting room is being restored; try again in a moment",
                       {"dependency": "redis"}, headers={"Retry-After": "1"}) from None
    if entry is None:
        raise ApiError("NOT_FOUND", "no such queue entry")
    return entry


@get("/api/v1/events/{event_id}/queue/{entry_id}", "Your place in an event's waiting room", ok=QueueEntry,
     errors=(404, 503), auth=True, tags=("buyer",),
     description="`position` counts down to 1 (next in); once admitted, `status: admitted` with the `admission` "
                 "token to hold with. Another buyer's entry is a 404.")
async def queue_entry(request: Request, _: NoQuery) -> Response:
    return private_json(render(QueueEntry, await _queue_entry(request, principal(request))))


@get("/api/v1/events/{event_id}/queue/{entry_id}/stream", "Your place in the waiting room, live (SSE)",
     ok="text/event-stream", query=TokenStreamQuery, errors=(400, 404, 503), auth=True, tags=("streams",),
     description="`event: queue` frames, each the entry as GET .../queue/{entry_id} answers it: one at connect, "
                 "then one whenever it changes (every 0.5 s at most), the last one with the admission. The token "
                 "may come as `?access_token=`.")
async def queue_stream(request: Request, q: TokenStreamQuery) -> Response:
    p = principal(request, query_token=q.access_token)
    entry = await _queue_entry(request, p)  # 404 / 503 before the stream starts
    event_id, entry_id = entry.pop("event_id"), entry.pop("id")
    first = queue_frame(event_id, entry_id, entry)
    # one shared reader per event in this process (queue_watch.py), not one poll per follower
    frames = request.app.state.queue_watch.follow(event_id, entry_id, first)
    address = request.client.host if request.client else "unknown"
    slots: StreamSlots = request.app.state.stream_slots
    slots.take(address)
    # ping=0: the watch sends the heartbeats (one timer for all followers)
    return EventSourceResponse(slots.hold(frames, address, p, request.app.state.revocations), ping=0,
                               send_timeout=request.app.state.settings.sse_send_timeout_seconds,
                               headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


# --- tickets ------------------------------------------------------------------------------------------------
@get("/api/v1/me/tickets", "The buyer's tickets, with their codes", ok=TicketPage, query=TicketsQuery,
     errors=(400,), auth=True, tags=("buyer",), description="`event_id` narrows to one event's tickets.")
async def my_tickets(request: Request, q: TicketsQuery) -> Response:
    p = principal(request)
    require(p, "buyer")
    return private_json(render(TicketPage, await views.my_tickets(
        request.app.state.db, p.user_id, q.event_id.lower() if q.event_id else None, q.page, q.page_size)))


async def _my_ticket_code(request: Request) -> str:
    p = principal(request)
    require(p, "buyer")
    ticket_id = request.path_params["ticket_id"]
    code = await views.my_ticket_code(request.app.state.db, p.user_id, ticket_id.lower()) \
        if UUID_RE.match(ticket_id) else None
    if code is None:
        raise ApiError("NOT_FOUND", "no such ticket")
    return code


@get("/api/v1/me/tickets/{ticket_id}/qr.svg", "The ticket's QR code (SVG; it encodes the code)", ok="image/svg+xml",
     errors=(404,), auth=True, tags=("buyer",))
async def ticket_qr_svg(request: Request, _: NoQuery) -> Response:
    return Response(qr.svg(await _my_ticket_code(request)), media_type="image/svg+xml",
                    headers={"Cache-Control": "private, no-store"})


@get("/api/v1/me/tickets/{ticket_id}/qr.png", "The ticket's QR code (PNG; it encodes the code)", ok="image/png",
     errors=(404,), auth=True, tags=("buyer",))
async def ticket_qr_png(request: Request, _: NoQuery) -> Response:
    return Response(qr.png(await _my_ticket_code(request)), media_type="image/png",
                    headers={"Cache-Control": "private, no-store"})


@get("/api/v1/admin/users", "Accounts, newest first (admin)", ok=UserPage, query=UsersQuery, errors=(400,),
     auth=True, tags=("admin",), description="`role` filters by role; `q` is a case-insensitive substring of the "
                                             "email or the name.")
async def admin_users(request: Request, q: UsersQuery) -> Response:
    p = principal(request)
    require(p, "admin")
    return private_json(render(UserPage, await views.admin_users(request.app.state.db, q.role, q.q, q.page,
                                                                 q.page_size)))


@get("/api/v1/admin/analytics", "Totals, daily rollups, most popular events (admin)", ok=AdminAnalytics,
     query=AnalyticsQuery, errors=(400,), auth=True, tags=("admin",))
async def admin_analytics(request: Request, q: AnalyticsQuery) -> Response:
    p = principal(request)
    require(p, "admin")
    return private_json(render(AdminAnalytics, await views.admin_analytics(request.app.state.db, q.days, q.top)))


# --- the document, the docs page -----------------------------------------------------------------------
DOCS = swagger_ui("/openapi.json", title=TITLE, assets="/docs/assets")
ROUTES.append(Mount("/docs/assets", app=StaticFiles(directory=DOCS.assets_dir), name="docs-assets"))


@functools.cache
def openapi_document() -> dict[str, Any]:
    return build_document(TITLE, VERSION, DESCRIPTION, OPERATIONS)


@contextlib.asynccontextmanager
async def lifespan(app: Starlette):
    s: Settings = app.state.settings
    app.state.mongo = AsyncMongoClient(s.mongo_url, serverSelectionTimeoutMS=3000, maxPoolSize=s.query_mongo_pool_size)
    app.state.db = app.state.mongo[s.mongo_db]
    app.state.redis = redis.asyncio.Redis.from_url(s.redis_url, decode_responses=True,
                                                   max_connections=s.query_redis_pool_size)
    app.state.cache = MicroCache(s.query_cache_seconds, s.query_cache_stale_seconds, s.query_cache_max_bytes)
    hub = dict(queue_size=s.sse_queue_size, heartbeat=s.sse_ping_seconds)
    app.state.seat_hub = StreamHub(app.state.redis, seat_frame, kind="seats", **hub)
    app.state.notify_hub = StreamHub(app.state.redis, notification_frame, kind="notifications", **hub)
    app.state.queue_watch = QueueWatch(app.state.redis, every=QUEUE_POLL_S, heartbeat=s.sse_ping_seconds)
    follow = asyncio.create_task(app.state.revocations.follow(app.state.redis))  # common/revocation.py
    # No index creation here: the projector owns the read models and their indexes (contracts/readmodels.py).
    # Thousands of long-lived streams mean a big, stable heap: the default GC thresholds (700 allocations)
    # walk it over and over, pausing every stream (loadtests/RESULTS.md: query CPU -35%, fan-out p99 -65%).
    # Everything allocated so far is permanent; young collections run 70x less often.
    gc.freeze()
    gc.set_threshold(s.query_gc_threshold, 20, 100)
    yield
    follow.cancel()
    await asyncio.gather(follow, return_exceptions=True)
    await app.state.seat_hub.close()
    await app.state.notify_hub.close()
    await app.state.queue_watch.close()
    await app.state.redis.aclose()
    await app.state.mongo.close()


def create_app(settings: Settings | None = None) -> Starlette:
    app = Starlette(routes=ROUTES, exception_handlers=EXCEPTION_HANDLERS, lifespan=lifespan)
    app.state.settings = settings or get_settings()
    app.state.revocations = Revocations()
    app.state.stream_slots = StreamSlots(app.state.settings.sse_max_per_address, app.state.settings.sse_max_per_process)
    app.add_middleware(MetricsMiddleware)
    return app


def main() -> None:
    configure_logging()
    s = get_settings()
    require_secure_secret(s, "query-service")
    own_dir = s.query_workers > 1 and "PROMETHEUS_MULTIPROC_DIR" not in os.environ
    if own_dir:  # worker processes aggregate their metrics through files
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="evently-query-metrics-")
    try:
        uvicorn.run("query_service.app:create_app", factory=True, host=s.query_host, port=s.query_port,
                    workers=s.query_workers, log_level="warning", access_log=False,
                    loop="uvloop" if s.query_uvloop else "asyncio", http="httptools",
                    timeout_graceful_shutdown=3)
    finally:
        if own_dir:
            shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)


if __name__ == "__main__":
    main()
