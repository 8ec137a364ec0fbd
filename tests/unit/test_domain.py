"""Pure domain rules: seat ids, layouts, events, holds, commands, event envelopes."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from common.auth import Principal
from command_service.domain import commands, errors
from command_service.domain.events import OrderConfirmed, SeatsReleased, VenueCreated
from command_service.domain.model import (Event, GASectionState, Hold, InventoryChange, Layout, Order, Row,
                                          SaleInfo, SaleTerms, SeatChange, Section, Venue, parse_seat_id)

ORGANIZER = Principal("00000000-0000-0000-0000-000000000001", "organizer")
BUYER = Principal("00000000-0000-0000-0000-000000000002", "buyer")
LAYOUT = Layout((Section("A", "Stalls", "seated", (Row("1", 3), Row("B", 2))),
                 Section("GA", "Floor", "ga", ga_capacity=50)))
START = datetime(2030, 1, 1, 20, tzinfo=timezone.utc)


def event(**kw) -> Event:
    venue = Venue("v1", ORGANIZER.user_id, "Hall", "Oslo", None, LAYOUT)
    args = dict(id="e1", organizer_id=ORGANIZER.user_id, venue=venue, title="T", description=None, category="c",
                starts_at=START, ends_at=START + timedelta(hours=2), currency="EUR", prices={"A": 100, "GA": 40})
    return Event(**{**args, **kw})


@pytest.mark.parametrize("seat_id, parsed", [
    ("A-1-7", ("A", "1", 7)), ("VIP-B-12", ("VIP", "B", 12)),
    ("A-1-0", None), ("A-1", None), ("A-1-7-1", None), ("A--7", None), ("A-1-x", None), ("", None),
    ("A-1-999999", None), ("Ä-1-1", None),
])
def test_seat_ids(seat_id, parsed):
    ref = parse_seat_id(seat_id)
    assert (ref and (ref.section, ref.row, ref.number)) == parsed or (ref is None and parsed is None)


def test_layout_knows_its_seats():
    assert LAYOUT.capacity == 55
    assert LAYOUT.seat_ids() == ["A-1-1", "A-1-2", "A-1-3", "A-B-1", "A-B-2"]
    assert LAYOUT.unknown_seats(["A-1-3", "A-1-4", "A-C-1", "GA-1-1", "x"]) == ["A-1-4", "A-C-1", "GA-1-1", "x"]
    assert Layout.from_json(LAYOUT.to_json()) == LAYOUT


@pytest.mark.parametrize("sections", [
    (Section("A", "a", "ga", ga_capacity=1), Section("A", "b", "ga", ga_capacity=1)),
    (Section("A", "a", "seated", (Row("1", 1), Row("1", 1))),),
    (Section("A", "a", "ga", ga_capacity=100_001),),
    tuple(Section(f"S{i}", "s", "seated", tuple(Row(str(r), 1000) for r in range(100))) for i in range(2)),
])
def test_layout_limits(sections):
    with pytest.raises(errors.ValidationError):
        Layout(sections)


def test_event_lifecycle_and_edits():
    e = event()
    assert e.update({"title": "New", "prices": {"GA": 45}}) == ["title", "prices"]
    assert e.prices == {"A": 100, "GA": 45} and e.version == 2
    assert e.update({"title": "New"}) == [] and e.version == 2
    with pytest.raises(errors.ValidationError):
        e.update({"ends_at": START - timedelta(hours=1)})
    with pytest.raises(errors.ValidationError):
        e.update({"prices": {"Z": 1}})
    assert e.publish() is True and e.status == "on_sale" and e.publish() is False
    assert e.cancel() is True and e.cancel() is False
    with pytest.raises(errors.InvalidState):
        e.publish()
    with pytest.raises(errors.InvalidState):
        e.update({"title": "Too late"})


def test_event_prices_must_cover_every_section():
    with pytest.raises(errors.ValidationError) as exc:
        event(prices={"A": 1})
    assert exc.value.details["prices"]["missing_sections"] == ["GA"]


def test_holds_are_validated_against_the_layout_and_priced_in_the_transaction():
    sale = SaleInfo("e1", "on_sale", LAYOUT)
    with pytest.raises(errors.ValidationError) as exc:
        Hold.request(sale, BUYER.user_id, ["A-1-1", "A-9-9"], None, None, 600)
    assert exc.value.details == {"seats": ["A-9-9"]}
    with pytest.raises(errors.ValidationError):
        Hold.request(sale, BUYER.user_id, None, "A", 2, 600)  # A is seated, not GA
    hold = Hold.request(sale, BUYER.user_id, ["A-1-1", "A-B-2"], None, None, 600)
    assert hold.priced(SaleTerms("on_sale", "EUR", {"A": 100, "GA": 40})).total == 200
    ga_hold = Hold.request(sale, BUYER.user_id, None, "GA", 3, 600).priced(
        SaleTerms("on_sale", "EUR", {"A": 1, "GA": 40}))
    assert (ga_hold.total, ga_hold.currency, ga_hold.quantity) == (120, "EUR", 3)
    assert hold.covered_by(InventoryChange(seats=(SeatChange("A-1-1", "held", 2), SeatChange("A-B-2", "held", 2))))
    assert not hold.covered_by(InventoryChange(seats=(SeatChange("A-1-1", "held", 2),)))
    assert ga_hold.covered_by(InventoryChange(ga_sections=(GASectionState("GA", 50, 3, 0, 2),)))
    with pytest.raises(errors.EventNotOnSale):
        SaleTerms("cancelled", "EUR", {}).ensure_sale_open()
    later = datetime.now(timezone.utc) + timedelta(minutes=5)
    with pytest.raises(errors.EventNotOnSale) as refused:
        SaleTerms("on_sale", "EUR", {}, later).ensure_sale_open()  # on sale, but not open yet
    assert refused.value.details["on_sale_at"]
    SaleTerms("on_sale", "EUR", {}, later - timedelta(minutes=10)).ensure_sale_open()


def test_checkout_refusals_do_not_leak_foreign_holds():
    hold = Hold("h1", "e1", BUYER.user_id, ("A-1-1",), None, 1, START, status="converted")
    assert isinstance(hold.checkout_refusal("someone else"), errors.NotFound)
    refusal = hold.checkout_refusal(BUYER.user_id)
    assert isinstance(refusal, errors.HoldExpired) and refusal.details == {"hold_status": "converted"}


def test_orders_are_cancellable_by_buyer_organizer_and_admin_only():
    order = Order("o1", "e1", BUYER.user_id, "h1", ("A-1-1",), None, 1, 100, "EUR")
    for who in (BUYER, ORGANIZER, Principal("x", "admin")):
        order.ensure_cancellable_by(who, ORGANIZER.user_id)
    with pytest.raises(errors.NotFound):
        order.ensure_cancellable_by(Principal("other", "buyer"), ORGANIZER.user_id)


def test_inventory_changes_split_into_small_messages():
    change = InventoryChange(seats=tuple(SeatChange(f"A-1-{n}", "available", 2) for n in range(1, 2501)),
                             ga_sections=(GASectionState("GA", 5, 0, 0, 3),))
    parts = change.chunks(1000)
    assert [len(p.seats) for p in parts] == [1000, 1000, 500, 0] and parts[-1].ga_sections
    assert not InventoryChange()


def test_envelopes_follow_the_outbox_conventions():
    venue = Venue("v1", ORGANIZER.user_id, "Hall", "Oslo", None, LAYOUT)
    created = VenueCreated.of(venue)
    assert (created.aggregate_type, created.aggregate_id, created.type) == ("venue", "v1", "VenueCreated")
    order = Order("o1", "e1", BUYER.user_id, "h1", None, "GA", 2, 80, "EUR")
    confirmed = OrderConfirmed.of(order, InventoryChange(ga_sections=(GASectionState("GA", 50, 0, 2, 3),)))
    env = confirmed.envelope()
    assert confirmed.aggregate_type == "event" and env["aggregate_id"] == "e1" and env["id"] == confirmed.id
    assert env["schema_version"] == 1 and env["occurred_at"].endswith("Z")
    assert env["data"]["order"]["section"] == "GA" and env["data"]["ga_sections"][0]["sold"] == 2
    with pytest.raises(AssertionError):
        SeatsReleased.of("e1", "because", InventoryChange())


def test_commands_bound_their_input():
    ok = commands.parse(commands.CreateHold, {"seats": ["A-1-1"]}, event_id="e1", actor=BUYER)
    assert ok.seats == ["A-1-1"]
    for body in ({"seats": ["A-1-1"] * 2}, {"seats": [f"A-1-{n}" for n in range(11)]}, {"quantity": 1},
                 {"section": "GA", "quantity": 11}, {"seats": ["A-1-1"], "event_id": "e2"}, ["A-1-1"]):
        with pytest.raises(errors.ValidationError):
            commands.parse(commands.CreateHold, body, event_id="e1", actor=BUYER)
    ev = commands.parse(commands.CreateEvent, {
        "venue_id": "0A3DCD8E-8967-418A-8D16-43C3284466EE", "title": " Show ", "category": "music",
        "starts_at": "2030-01-01T21:00:00+01:00", "currency": "EUR", "prices": {"A": 1}}, actor=ORGANIZER)
    assert ev.starts_at == START and ev.title == "Show" and ev.venue_id == "0a3dcd8e-8967-418a-8d16-43c3284466ee"
    with pytest.raises(errors.ValidationError) as exc:
        commands.parse(commands.Register, {"email": "nope", "password": "short", "name": "", "role": "admin"})
    assert set(exc.value.details) == {"email", "password", "name", "role"}


async def test_the_bus_retries_a_transaction_postgresql_aborted(monkeypatch):
    from command_service.service_layer import handlers
    from command_service.service_layer.unit_of_work import TransientConflict

    calls = []

    async def flaky(cmd, svc):
        calls.append(cmd)
        if len(calls) < 3:
            raise TransientConflict("deadlock detected")
        return "done"

    monkeypatch.setitem(handlers.HANDLERS, commands.PublishEvent, flaky)
    cmd = commands.PublishEvent(event_id="e1", actor=ORGANIZER)
    assert await handlers.handle(cmd, svc=None) == "done" and len(calls) == 3
    calls.clear()
    with pytest.raises(TransientConflict):
        await handlers.handle(cmd, svc=None, attempts=2)
