"""The waitlist handler (service_layer/waitlist.offer_waitlist) against an in-memory repository: the
cosmicpython fake-unit-of-work style. It checks what the handler does with the policy's claims: real holds,
pending offers that gather seats, when an offer starts, and that a GA queue waits when PostgreSQL disagrees."""
from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta
from types import SimpleNamespace

from command_service.domain.events import SeatsHeld, WaitlistOffered
from command_service.domain.model import (GASectionState, Hold, InventoryChange, Layout, Row, SaleInfo, SaleTerms,
                                          Section, SeatChange, WaitlistEntry, utcnow)
from command_service.service_layer.waitlist import PENDING_OFFER, offer_waitlist

LAYOUT = Layout((Section("A", "Stalls", "seated", (Row("1", 4),)), Section("GA", "Floor", "ga", ga_capacity=10)))
TTL = 600.0


class FakeRepository:
    """Just the inventory, holds and queue the handler touches, kept in dicts."""

    def __init__(self, entries: list[WaitlistEntry], held: set[str] = frozenset(), ga_taken: int = 10) -> None:
        self.seats = {s: ("held" if s in held else "available") for s in LAYOUT.seat_ids()}
        self.ga_taken = ga_taken  # places of GA held or sold
        self.holds: dict[str, Hold] = {}
        self.entries = {e.id: e for e in entries}
        self.terms = SaleTerms("on_sale", "EUR", {"A": 5000, "GA": 2000})

    async def waiting_entries(self, event_id: str) -> list[WaitlistEntry]:
        return sorted((e for e in self.entries.values() if e.status == "waiting"), key=lambda e: e.seq)

    async def get_hold(self, hold_id: str) -> Hold | None:
        return self.holds.get(hold_id)

    async def reserve(self, hold: Hold) -> tuple[InventoryChange, SaleTerms]:
        if hold.seats:
            free = [s for s in hold.seats if self.seats[s] == "available"]
            if len(free) < len(hold.seats):
                free = []  # all or nothing, like ev_reserve_seats
            for s in free:
                self.seats[s] = "held"
            return InventoryChange(seats=tuple(SeatChange(s, "held", 2) for s in free)), self.terms
        if self.ga_taken + hold.quantity > 10:
            return InventoryChange(), self.terms
        self.ga_taken += hold.quantity
        return InventoryChange(ga_sections=(GASectionState("GA", 10, self.ga_taken, 0, 2),)), self.terms

    async def add_hold(self, hold: Hold) -> None:
        self.holds[hold.id] = hold

    async def sale_terms(self, event_id: str) -> SaleTerms:
        return self.terms

    async def extend_hold(self, hold: Hold, seats: list[str], added_total: int):
        assert all(self.seats[s] == "available" for s in seats)
        for s in seats:
            self.seats[s] = "held"
        grown = replace(hold, seats=hold.seats + tuple(seats), quantity=hold.quantity + len(seats),
                        total=hold.total + added_total)
        self.holds[hold.id] = grown
        return grown, InventoryChange(seats=tuple(SeatChange(s, "held", 2) for s in seats))

    async def set_hold_expiry(self, hold_id: str, expires_at) -> None:
        self.holds[hold_id] = replace(self.holds[hold_id], expires_at=expires_at)

    async def save_waitlist_entry(self, e: WaitlistEntry) -> None:
        self.entries[e.id] = e


class FakeUnitOfWork:
    def __init__(self, repo: FakeRepository) -> None:
        self.repo = repo
        self.events: list = []

    def emit(self, *events) -> None:
        self.events.extend(events)


class FakeCatalog:
    async def get(self, event_id: str) -> SaleInfo:
        return SaleInfo(event_id, "on_sale", LAYOUT)


SERVICES = SimpleNamespace(catalog=FakeCatalog(), settings=SimpleNamespace(waitlist_offer_ttl_seconds=TTL))


def entry(n: int, quantity: int, section: str | None = None) -> WaitlistEntry:
    return WaitlistEntry(f"w{n}", "ev", f"buyer{n}", section, quantity, seq=n)


def free(repo: FakeRepository, *seats: str, ga: int = 0) -> InventoryChange:
    """Return inventory the way a release does, and describe it as the handler receives it."""
    for s in seats:
        repo.seats[s] = "available"
    repo.ga_taken -= ga
    gas = (GASectionState("GA", 10, repo.ga_taken, 0, 3),) if ga else ()
    return InventoryChange(seats=tuple(SeatChange(s, "available", 3) for s in seats), ga_sections=gas)


def run(repo: FakeRepository, change: InventoryChange) -> tuple[list[Hold], list]:
    uow = FakeUnitOfWork(repo)
    return asyncio.run(offer_waitlist(uow, SERVICES, "ev", change)), uow.events


def test_a_freed_seat_becomes_an_offer_hold_for_the_first_in_line():
    repo = FakeRepository([entry(1, 1), entry(2, 1)], held=set(LAYOUT.seat_ids()))
    holds, events = run(repo, free(repo, "A-1-2"))
    assert [(h.buyer_id, h.seats, h.total, h.waitlist_entry_id) for h in holds] == [("buyer1", ("A-1-2",), 5000, "w1")]
    assert repo.seats["A-1-2"] == "held"
    assert [type(e) for e in events] == [SeatsHeld, WaitlistOffered]
    assert repo.entries["w1"].status == "offered" and repo.entries["w2"].status == "waiting"
    assert abs((holds[0].expires_at - utcnow()).total_seconds() - TTL) < 5


def test_a_seated_entry_gathers_seats_on_a_pending_offer_and_its_clock_starts_when_complete():
    repo = FakeRepository([entry(1, 2, "A")], held=set(LAYOUT.seat_ids()))
    holds, events = run(repo, free(repo, "A-1-1"))
    pending = holds[0]
    assert pending.seats == ("A-1-1",) and [type(e) for e in events] == [SeatsHeld]
    assert repo.entries["w1"].status == "waiting" and repo.entries["w1"].offer_hold_id == pending.id
    assert pending.expires_at - utcnow() > PENDING_OFFER - timedelta(minutes=1)  # held, but no clock yet

    holds, events = run(repo, free(repo, "A-1-3"))
    grown = repo.holds[pending.id]
    assert grown.seats == ("A-1-1", "A-1-3") and grown.total == 10000
    assert [type(e) for e in events] == [SeatsHeld, WaitlistOffered]
    assert repo.entries["w1"].status == "offered"
    assert abs((grown.expires_at - utcnow()).total_seconds() - TTL) < 5  # the offer's TTL starts now


def test_a_ga_queue_waits_when_postgresql_has_fewer_places_than_planned():
    repo = FakeRepository([entry(1, 2, "GA"), entry(2, 1, "GA")], ga_taken=10)
    change = free(repo, ga=2)
    repo.ga_taken += 1  # someone else took a place between the release and the offer
    holds, events = run(repo, change)
    assert holds == [] and events == []  # the head did not fit, and nobody behind it jumps the queue
    assert {e.status for e in repo.entries.values()} == {"waiting"}


def test_nothing_is_read_when_no_inventory_came_back():
    repo = FakeRepository([entry(1, 1)])
    repo.waiting_entries = None  # would raise if called
    assert run(repo, InventoryChange(seats=(SeatChange("A-1-1", "sold", 2),))) == ([], [])
