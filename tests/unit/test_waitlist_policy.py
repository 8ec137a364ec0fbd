"""The waitlist rules (command_service/domain/waitlist.py), on plain data: FIFO, GA heads block their queue,
seated entries gather what they lack, and what nobody wants stays on sale."""
from command_service.domain.model import Layout, Row, Section, WaitlistEntry
from command_service.domain.waitlist import plan_offers

LAYOUT = Layout((Section("A", "Stalls", "seated", (Row("1", 4), Row("2", 4))),
                 Section("B", "Balcony", "seated", (Row("1", 4),)),
                 Section("GA", "Floor", "ga", ga_capacity=10),
                 Section("VIP", "VIP floor", "ga", ga_capacity=4)))


def entry(n: int, quantity: int, section: str | None = None, **kw) -> WaitlistEntry:
    return WaitlistEntry(f"w{n}", "ev", f"buyer{n}", section, quantity, seq=n, **kw)


def plan(entries, seats=(), ga=None, gathered=None):
    claims = plan_offers(entries, LAYOUT, list(seats), ga or {}, **({"gathered": gathered} if gathered else {}))
    return [(c.entry.id, c.seats or c.ga_section) for c in claims]


def test_seats_go_first_come_first_served():
    assert plan([entry(1, 1), entry(2, 1), entry(3, 1)], ["A-1-1", "A-1-2"]) == [
        ("w1", ("A-1-1",)), ("w2", ("A-1-2",))]


def test_a_seated_entry_takes_only_its_section_and_what_it_lacks():
    entries = [entry(1, 2, "B"), entry(2, 3, "A"), entry(3, 1)]
    assert plan(entries, ["A-1-1", "B-1-1", "A-1-2", "B-1-2", "B-1-3"]) == [
        ("w1", ("B-1-1", "B-1-2")), ("w2", ("A-1-1", "A-1-2")), ("w3", ("B-1-3",))]


def test_seats_gathered_on_a_pending_offer_count():
    gathering = entry(1, 3, "A", offer_hold_id="h1")
    assert plan([gathering, entry(2, 1)], ["A-1-1", "A-1-2"], gathered=lambda e: 2 if e.id == "w1" else 0) == [
        ("w1", ("A-1-1",)), ("w2", ("A-1-2",))]


def test_a_ga_entry_gets_its_whole_quantity_or_its_queue_waits():
    entries = [entry(1, 3, "GA"), entry(2, 5, "GA"), entry(3, 1, "GA"), entry(4, 2, "VIP")]
    # 6 places on the floor: w1 takes 3, w2 (5) does not fit, so w3 behind it waits too; VIP is its own queue
    assert plan(entries, ga={"GA": 6, "VIP": 2}) == [("w1", "GA"), ("w4", "VIP")]


def test_nothing_freed_in_a_scope_offers_nothing_there():
    assert plan([entry(1, 1, "B"), entry(2, 2, "GA")], ["A-1-1"], ga={"GA": 0}) == []


def test_seats_nobody_wants_stay_on_sale():
    claims = plan_offers([entry(1, 1, "B")], LAYOUT, ["A-1-1", "B-1-1", "B-1-2"], {})
    taken = {s for c in claims for s in c.seats}
    assert taken == {"B-1-1"} and {"A-1-1", "B-1-2"}.isdisjoint(taken)
