"""Query-string models: one pydantic model per endpoint, validated the way the command side validates bodies
(command_service/domain/commands.py). They are also the documentation: common/openapi.py turns each field into
a query parameter of /openapi.json.

Rules (CONTRACT "Malformed input never produces a 5xx"), each a 400 VALIDATION_ERROR naming the field:
unknown parameters (``extra="forbid"``), a parameter given twice, empty or blank values (``?page=``), control
characters (NUL ...), integers that are not plain decimal digits or out of range, date-times that are not
ISO 8601 or fall outside 2000-2100 (the command side's range for event dates). The parameters CONTRACT lists as
"planned for a later milestone" (``price_max``, ``available``, ``near``, ``radius_km``, ``sort``) answer 400 too,
with a message saying so, until they are built.

``Last-Event-ID`` (header) / ``?last_event_id=`` is not a 400 when malformed: CONTRACT treats a position the
server cannot resume from as "no longer retained", so a malformed one (or one whose parts exceed Redis' 64-bit
stream-id parts) makes the stream start with ``event: reset`` (see :func:`stream_position`).
"""
from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Annotated, Any, Literal, TypeVar

import pydantic
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field
from pydantic_core import PydanticCustomError

from contracts.vocabulary import PUBLIC_EVENT_STATUSES, EventStatus, Role, TicketStatus
from query_service.feed import STREAM_ID

PUBLIC_STATUSES = PUBLIC_EVENT_STATUSES
# CONTRACT lists these for GET /api/v1/events but schedules them for a later milestone: 400 until built.
PLANNED = ("price_max", "available", "near", "radius_km", "sort")
PLANNED_MESSAGE = "planned for a later milestone; not supported yet"
EARLIEST = datetime(2000, 1, 1, tzinfo=timezone.utc)
LATEST = datetime(2100, 1, 1, tzinfo=timezone.utc)
CONTROL = re.compile(r"[\x00-\x1f\x7f]")
DIGITS = re.compile(r"^[+-]?[0-9]{1,100}$")
MAX_STREAM_PART = 2**64 - 1
UUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"


class InvalidQuery(Exception):
    """The query string failed its model: ``details`` maps each bad parameter to what is wrong with it."""

    def __init__(self, details: dict[str, str]) -> None:
        super().__init__("invalid query parameters")
        self.details = details


# --- field types --------------------------------------------------------------------------------
def _text(value: Any) -> Any:
    if isinstance(value, str):
        value = value.strip()
        if not value:
            raise PydanticCustomError("empty", "must not be empty (leave the parameter out instead)")
        if CONTROL.search(value):
            raise PydanticCustomError("control_character", "must not contain control characters (NUL, ...)")
    return value


def _integer(value: Any) -> Any:
    if isinstance(value, str):
        value = _text(value)
        if not DIGITS.match(value):
            raise PydanticCustomError("integer", "must be an integer")
        return int(value)
    return value


def _instant(value: Any) -> Any:
    """ISO 8601 (``Z`` or any offset; no offset means UTC) -> an aware datetime in 2000-2100."""
    if isinstance(value, datetime):
        return value
    value = _text(value)
    if len(value) > 40:
        raise PydanticCustomError("date_time", "must be an ISO 8601 date-time")
    try:
        t = datetime.fromisoformat(value.replace("z", "Z").replace("Z", "+00:00"))
    except ValueError:
        raise PydanticCustomError("date_time", "must be an ISO 8601 date-time") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=timezone.utc)
    if not EARLIEST <= t <= LATEST:  # compared as instants: never converts (0001-01-01+01:00 would overflow)
        raise PydanticCustomError("date_time_range", "must be between 2000-01-01 and 2100-01-01")
    return t


def _in_range(lo: int, hi: int):
    def check(value: int) -> int:
        if not lo <= value <= hi:
            raise PydanticCustomError("range", "must be between {lo} and {hi}", {"lo": lo, "hi": hi})
        return value
    return check


def Text(max_length: int, description: str = "") -> Any:  # noqa: N802 - a type factory, like commands.Text
    return Annotated[str, BeforeValidator(_text), Field(max_length=max_length, description=description or None)]


def Integer(lo: int, hi: int, default: int, description: str = "") -> Any:  # noqa: N802
    # The bounds are checked by the validator (for a message naming them) and documented by the schema.
    return Annotated[int, BeforeValidator(_integer), AfterValidator(_in_range(lo, hi)),
                     Field(default, description=description or None, json_schema_extra={"minimum": lo, "maximum": hi})]


Instant = Annotated[datetime, BeforeValidator(_instant),
                    Field(description="ISO 8601 date-time, `Z` or any offset (none: UTC), within 2000-2100")]


def as_read_model_time(t: datetime | None) -> str | None:
    """The read model's instant form (UTC, milliseconds, ``Z``), which sorts as text."""
    if t is None:
        return None
    t = t.astimezone(timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


# --- models -------------------------------------------------------------------------------------
def _no_null_defaults(schema: dict[str, Any]) -> None:
    for prop in schema.get("properties", {}).values():
        if "default" in prop and prop["default"] is None:
            del prop["default"]  # "absent" is not a value of the parameter's type


class Query(BaseModel):
    """A query string: every field optional, nothing else allowed."""

    model_config = ConfigDict(extra="forbid", frozen=True, json_schema_extra=_no_null_defaults)


class NoQuery(Query):
    """Endpoints that take no query parameters: any parameter is a 400."""


class PageQuery(Query):
    event: Text(100, "the event to open (read by the page's script)") = None
    # the payment provider's page sends the buyer back with these (the page follows that order until it is settled)
    order: Text(100, "an order to follow until its payment is settled (read by the page's script)") = None
    payment_id: Text(200, "the provider's payment id (sent back by the provider's page; not used)") = None
    status: Text(40, "the provider's payment status (sent back by the provider's page; not used)") = None


class Paging(Query):
    page: Integer(1, 10_000, 1, "page number, from 1")
    page_size: Integer(1, 100, 20, "items per page (CONTRACT: at most 100)")


class EventListQuery(Paging):
    q: Text(200, "case-insensitive, literal substring of the title (CONTRACT's word, prefix and accent rules "
                 "across more fields are planned for a later milestone)") = None
    category: Text(100, "exact category") = None
    city: Text(100, "exact venue city") = None
    starts_after: Instant = None
    starts_before: Instant = None
    status: Annotated[Literal[PUBLIC_STATUSES], BeforeValidator(_text)] = None  # type: ignore[valid-type]

    def starts_after_text(self) -> str | None:
        return as_read_model_time(self.starts_after)

    def starts_before_text(self) -> str | None:
        return as_read_model_time(self.starts_before)


class UsersQuery(Paging):
    role: Annotated[Role, BeforeValidator(_text)] = None  # type: ignore[assignment]
    q: Text(200, "case-insensitive, literal substring of the email or the name") = None


class TicketsQuery(Paging):
    event_id: Annotated[str, BeforeValidator(_text), Field(pattern=UUID_PATTERN, description="one event's tickets")] = None


class AttendeesQuery(Paging):
    status: Annotated[TicketStatus, BeforeValidator(_text)] = None  # type: ignore[assignment]
    format: Annotated[Literal["json", "csv"], BeforeValidator(_text),
                      Field(description="`csv`: every matching attendee as text/csv (no paging)")] = None


class NotificationsQuery(Paging):
    unread: Annotated[Literal["true", "false"], BeforeValidator(_text),
                      Field(description="`true`: only notifications not read yet")] = None


class OrganizerEventsQuery(Paging):
    status: Annotated[EventStatus, BeforeValidator(_text)] = None  # type: ignore[assignment]


class TokenStreamQuery(Query):
    """A stream whose only parameter is the token (a browser EventSource cannot set headers)."""
    access_token: Text(4096, "the JWT, for a browser EventSource (which cannot set headers)") = None


class AnalyticsQuery(Query):
    days: Integer(1, 366, 30, "daily rollups to return, newest first")
    top: Integer(1, 100, 10, "most popular events to return")


LastEventIdParam = Annotated[str, BeforeValidator(_text), Field(
    max_length=64, description="resume after this feed position (as the `Last-Event-ID` header); a position "
                               "that is malformed or no longer retained starts the stream with `event: reset`")]


class SeatStreamQuery(Query):
    last_event_id: LastEventIdParam = None


class NotificationStreamQuery(Query):
    access_token: Text(4096, "the JWT, for a browser EventSource (which cannot set headers)") = None
    last_event_id: LastEventIdParam = None


Q = TypeVar("Q", bound=Query)


def parse_query(model: type[Q], params: Any, *, planned: tuple[str, ...] = ()) -> Q:
    """Validate a query string (starlette ``QueryParams`` or any multi-dict with ``multi_items()``) against
    ``model``; InvalidQuery names each bad parameter."""
    items = params.multi_items() if hasattr(params, "multi_items") else list(params.items())
    values: dict[str, str] = {}
    details: dict[str, str] = {}
    for name, value in items:
        if CONTROL.search(name):
            details["query"] = "parameter names must not contain control characters"
        elif name in planned:
            details[name] = PLANNED_MESSAGE
        elif name in values:
            details[name] = "given more than once"
        else:
            values[name] = value
    try:
        parsed = model.model_validate({k: v for k, v in values.items() if k not in details})
    except pydantic.ValidationError as exc:
        for err in exc.errors(include_url=False, include_context=False):
            name = ".".join(str(p) for p in err["loc"]) or "query"
            details.setdefault(name, "unknown parameter" if err["type"] == "extra_forbidden" else err["msg"])
        raise InvalidQuery(details) from None
    if details:
        raise InvalidQuery(details)
    return parsed


# --- the SSE resume position ---------------------------------------------------------------------
RESET = "reset"


def stream_position(header: str | None, param: str | None) -> str | None:
    """The feed position to resume after: the ``Last-Event-ID`` header (an EventSource reconnect) wins over
    ``?last_event_id=``. None: no position (stream from now on). A position that is not a Redis stream id
    ``<ms>-<seq>`` with both parts below 2^64 comes back as :data:`RESET` (the stream starts with a reset)."""
    raw = header.strip() if header and header.strip() else param
    if raw is None:
        return None
    if len(raw) > 64 or not STREAM_ID.match(raw):
        return RESET
    ms, _, seq = raw.partition("-")
    if int(ms) > MAX_STREAM_PART or int(seq) > MAX_STREAM_PART:
        return RESET
    return raw
