"""The shared contracts: event payload models vs EVENTS.md, envelope round trips, the seat grammar, errors."""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from command_service.domain import events as domain_events
from command_service.domain.model import InventoryChange, SeatChange
from contracts import errors, events, seats
from projectors import projection as P

EVENTS_MD = (Path(__file__).parents[2] / "command_service" / "EVENTS.md").read_text()


def _table_rows() -> dict[str, str]:
    rows = {}
    for line in EVENTS_MD.splitlines():
        m = re.match(r"\| `(\w+)` \| \w+ \| (.*) \|$", line)
        if m:
            rows[m[1]] = m[2]
    return rows


def _fields(cell: str) -> set[str]:
    m = re.search(r"`\{(.*?)\}`", cell)
    if m is None:
        return set()
    text, depth, out = m[1], 0, []
    for ch in text:
        depth += ch in "[{"
        depth -= ch in "]}"
        out.append(ch if depth == 0 and ch not in "]}" else " ")
    return {w[1] for part in "".join(out).split(",") if (w := re.match(r"\s*(\w+)", part))}


EVENT_DOCUMENT = {"id", "organizer_id", "status", "title", "description", "category", "venue", "venue_id",
                  "starts_at", "ends_at", "currency", "prices", "capacity", "sections", "version", "created_at",
                  "updated_at", "sale_starts_at", "max_per_buyer", "waiting_room"}


def test_events_md_lists_every_event_type_and_nothing_else():
    assert set(_table_rows()) == set(events.DATA_MODELS)


@pytest.mark.parametrize("type_", sorted(events.DATA_MODELS))
def test_events_md_names_the_same_fields_as_the_model(type_):
    model = events.DATA_MODELS[type_]
    cell = _table_rows()[type_]
    documented = _fields(cell)
    if cell.startswith("event document"):
        documented = EVENT_DOCUMENT | set(re.findall(r"\+ `(\w+)", cell))
    assert documented == set(model.model_fields), f"EVENTS.md row {type_} vs contracts/events.py"


def test_the_event_document_bullet_matches_the_model():
    bullet = EVENTS_MD.split("- **event document**: `{", 1)[1].split("}`", 1)[0]
    names = {re.match(r"\s*(\w+)", p)[1] for p in re.sub(r"\{[^}]*\}|\[[^\]]*\]", "", bullet).split(",")}
    assert names == EVENT_DOCUMENT == set(events.EventDocument.model_fields)


# --- envelopes: the command side builds them, the projector accepts exactly what it builds ------------------
def _now() -> datetime:
    return datetime(2026, 11, 21, 20, 0, tzinfo=timezone.utc)


def test_a_built_envelope_round_trips_through_the_projector():
    change = InventoryChange(seats=(SeatChange("A-1-7", "available", 3),))
    ev = domain_events.SeatsReleased.of("e1", "expired", change, hold_id="h1")
    env = ev.envelope()
    assert env["type"] == "SeatsReleased" and env["schema_version"] == events.SCHEMA_VERSION
    assert env["data"]["seats"] == [{"seat_id": "A-1-7", "status": "available", "version": 3}]
    assert P.validate(env) is env
    assert ev.aggregate_type == "event"


def test_the_command_side_cannot_build_a_payload_the_projector_would_reject():
    change = InventoryChange(seats=(SeatChange("A-1-07", "available", 3),))  # not a seat id
    with pytest.raises(events.ValidationError):
        domain_events.SeatsReleased.of("e1", "expired", change).envelope()


def test_unknown_event_types_pass_and_bad_versions_are_poison():
    env = {"id": "x", "type": "SomethingNew", "aggregate_id": "e", "data": {"anything": 1}}
    assert P.validate(env) is env
    with pytest.raises(P.PoisonMessage, match="schema_version"):
        P.validate({**env, "type": "EventPublished", "schema_version": 2, "data": {"status": "on_sale", "version": 2}})


def test_timestamps_keep_their_bytes():
    data = {"status": "on_sale", "version": 2, "updated_at": "2026-11-21T20:00:00.120Z"}
    env = events.envelope("EventPublished", "e", data, id="x", occurred_at="2026-11-21T20:00:00.120Z")
    assert env["data"] == data


# --- the seat grammar ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("seat_id, parts", [
    ("A-1-7", ("A", "1", 7)), ("VIP-B-12", ("VIP", "B", 12)), ("ABCDEFGHIJ-0123456789-99999", ("ABCDEFGHIJ",
                                                                                               "0123456789", 99999)),
])
def test_seat_ids_parse(seat_id, parts):
    assert seats.parse(seat_id) == parts
    assert seats.format(*parts) == seat_id
    assert re.fullmatch(seats.SEAT_ID_PATTERN[1:-1], seat_id)


@pytest.mark.parametrize("seat_id", ["A-1-0", "A-1", "A-1-7-1", "A--7", "A-1-x", "", "A-1-999999", "\u00c4-1-1",
                                     "A-1-07", "ABCDEFGHIJK-1-1", "A-1-\u00b2", "A-1- 1", 7, None])
def test_non_seat_ids_do_not_parse(seat_id):
    assert seats.parse(seat_id) is None
    assert not (isinstance(seat_id, str) and re.fullmatch(seats.SEAT_ID_PATTERN[1:-1], seat_id))


# --- errors -------------------------------------------------------------------------------------------------
def test_every_domain_error_code_has_a_status():
    from command_service.domain import errors as domain_errors
    codes = {c.code for c in vars(domain_errors).values()
             if isinstance(c, type) and issubclass(c, domain_errors.DomainError) and c is not domain_errors.DomainError}
    assert codes <= set(errors.STATUS), codes - set(errors.STATUS)


def test_the_error_body_matches_its_model():
    body = errors.error_body("NOT_FOUND", "no such event")
    assert errors.ErrorBody.model_validate(body).error.details == {}


def test_offer_expiry_in_the_future_is_fine():
    entry = {"id": "w", "event_id": "e", "buyer_id": "b", "status": "offered", "quantity": 1, "seq": 1,
             "version": 2, "created_at": "2026-11-21T10:00:00Z", "updated_at": "2026-11-21T10:00:00Z",
             "offer": {"hold_id": "h", "expires_at": (_now() + timedelta(minutes=10)).isoformat()}}
    env = {"id": "x", "type": "WaitlistOffered", "aggregate_id": "e", "data": {"entry": entry}}
    assert P.validate(env) is env


def test_a_ga_section_with_null_rows_as_debezium_delivers_it_is_fine():
    # Debezium infers one struct for the sections array: the GA section gets "rows": null (found on the stack).
    data = {**COMPLETE_EVENT, "sections": [{"code": "A", "kind": "seated", "capacity": 2,
                                            "rows": [{"label": "1", "seats": 2}]},
                                           {"code": "GA", "kind": "ga", "capacity": 5, "rows": None}]}
    env = {"id": "x", "type": "EventCreated", "aggregate_id": "e", "data": data}
    assert P.validate(env) is env


COMPLETE_EVENT = {"id": "e", "organizer_id": "o", "title": "T", "category": "music", "venue_id": "v",
                  "venue": {"id": "v", "name": "Hall", "city": "Porto"}, "starts_at": "2027-01-01T20:00:00Z",
                  "currency": "EUR", "created_at": "2026-12-01T00:00:00Z", "updated_at": "2026-12-01T00:00:00Z"}


@pytest.mark.parametrize("missing", ["venue", "starts_at", "currency", "updated_at", "category", "id"])
def test_an_event_document_without_what_readers_show_is_poison(missing):
    """A catalog entry the read API could not render (found by schemathesis: a 500 on GET /events/{id}) never
    reaches the read model."""
    data = {k: v for k, v in COMPLETE_EVENT.items() if k != missing}
    with pytest.raises(P.PoisonMessage):
        P.validate({"id": "x", "type": "EventCreated", "aggregate_id": "e", "data": data})
    data = {**COMPLETE_EVENT, "venue": {"name": "Hall", "city": "Porto"}}  # a venue without its id
    with pytest.raises(P.PoisonMessage):
        P.validate({"id": "x", "type": "EventUpdated", "aggregate_id": "e", "data": data})
