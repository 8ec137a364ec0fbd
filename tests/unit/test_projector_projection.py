"""Pure projection logic: validation (poison), seat-map folds, counter folds with watermarks, orders, feed."""
from __future__ import annotations

import pytest

from projectors import notifications as N
from projectors import projection as P

EV = "e1"


def msg(offset: int, type_: str, data: dict, *, partition: int = 0, id_: str | None = None) -> P.Msg:
    env = {"id": id_ or f"id-{offset}", "type": type_, "schema_version": 1, "aggregate_id": EV,
           "occurred_at": "2026-11-21T20:00:00Z", "data": data}
    return P.Msg("evently.event", partition, offset, P.validate(env))


def seats(*changes: tuple[str, str, int]) -> list[dict]:
    return [{"seat_id": s, "status": st, "version": v} for s, st, v in changes]


def order(oid: str, status: str = "confirmed", seats_=("A-1-1",), total: int = 100) -> dict:
    o = {"id": oid, "event_id": EV, "buyer_id": "b", "status": status, "seats": list(seats_), "total": total,
         "currency": "EUR", "created_at": "2026-11-21T10:00:00Z"}
    if status == "cancelled":
        o["cancelled_at"] = "2026-11-22T10:00:00Z"
    return o


CREATED = {"title": "T", "sections": [{"code": "A", "kind": "seated", "capacity": 4, "price": 100},
                                       {"code": "GA", "kind": "ga", "capacity": 10, "price": 50}],
           "prices": {"A": 100, "GA": 50}, "seats": ["A-1-1", "A-1-2", "A-2-1", "A-2-2"]}


@pytest.mark.parametrize("env, error", [
    ("nope", "not a JSON object"),
    ({"id": "x", "aggregate_id": "e", "data": {}}, r"type: Field required"),
    ({"type": "SeatsHeld", "id": "x", "aggregate_id": "e"}, r"data: Field required"),
    ({"type": "SeatsHeld", "id": "x", "aggregate_id": "e", "data": {"hold": {}, "seats": [{"seat_id": "A1"}]}},
     r"seats\.0\.status: Field required"),
    ({"type": "SeatsHeld", "id": "x", "aggregate_id": "e",
      "data": {"hold": {}, "seats": [{"seat_id": "A-1", "status": "held", "version": 2}]}}, r"seats\.0\.seat_id: String should match pattern"),
    ({"type": "OrderConfirmed", "id": "x", "aggregate_id": "e", "data": {"order": {"id": "o"}}}, r"order\.event_id: Field required"),
    ({"type": "SeatsReleased", "id": "x", "aggregate_id": "e", "data": {"reason": "why"}}, r"reason: Input should be 'expired'"),
    ({"type": "EventPublished", "id": "x", "aggregate_id": "e", "schema_version": 9, "data": {"version": 2}},
     "unsupported schema_version"),
    ({"type": "WaitlistJoined", "id": "x", "aggregate_id": "e", "data": {}}, r"entry: Field required"),
    ({"type": "WaitlistLeft", "id": "x", "aggregate_id": "e", "data": {"entry": {"id": "w"}}}, r"entry\.event_id: Field required"),
    ({"type": "WaitlistJoined", "id": "x", "aggregate_id": "e", "data": {"entry": {
        "id": "w", "event_id": "e", "buyer_id": "b", "status": "queued"}}}, r"entry\.status: Input should be 'waiting'"),
    ({"type": "WaitlistJoined", "id": "x", "aggregate_id": "e", "data": {"entry": {
        "id": "w", "event_id": "e", "buyer_id": "b", "status": "waiting", "quantity": "2", "seq": 1, "version": 1}}},
     r"entry\.quantity: Input should be a valid integer"),
    ({"type": "WaitlistOffered", "id": "x", "aggregate_id": "e", "data": {"entry": {
        "id": "w", "event_id": "e", "buyer_id": "b", "status": "offered", "quantity": 1, "seq": 1, "version": 2,
        "created_at": "2026-11-21T10:00:00Z", "updated_at": "2026-11-21T10:00:00Z"}}}, r"entry: Value error, an offered entry needs its offer"),
    ({"type": "OfferExpired", "id": "x", "aggregate_id": "e", "data": {"entry": {
        "id": "w", "event_id": "e", "buyer_id": "b", "status": "expired", "quantity": 1, "seq": 1, "version": 3,
        "created_at": "2026-11-21T10:00:00Z", "updated_at": "yesterday"}}}, r"entry\.updated_at: Value error"),
])
def test_malformed_envelopes_are_poison(env, error):
    with pytest.raises(P.PoisonMessage, match=error):
        P.validate(env)


def test_unknown_types_and_missing_optional_fields_pass():
    P.validate({"type": "SomethingNew", "id": "x", "aggregate_id": "e", "data": {}})
    # Debezium drops empty arrays: SeatsHeld for GA has no "seats" key at all
    P.validate({"type": "SeatsHeld", "id": "x", "aggregate_id": "e", "data": {
        "hold": {"id": "h"}, "ga_sections": [{"section": "GA", "capacity": 5, "held": 1, "sold": 0, "version": 2}]}})


def test_seat_chunk_newest_version_wins_whatever_the_order():
    chunk = P.new_chunk(EV, "A", "1", 3)
    m1 = msg(1, "SeatsHeld", {"hold": {}, "seats": seats(("A-1-2", "held", 2))})
    m2 = msg(2, "OrderConfirmed", {"order": order("o1", seats_=("A-1-2",)), "seats": seats(("A-1-2", "sold", 3))})
    new, prior, changed = P.fold_chunk(chunk, [(m2, m2.data["seats"][0]), (m1, m1.data["seats"][0])])
    assert changed and new["st"] == ["a", "s", "a"] and new["v"] == [1, 3, 1]
    again, _, changed = P.fold_chunk({**new, "cv": 1}, [(m1, m1.data["seats"][0])])
    assert not changed and again["st"] == ["a", "s", "a"]  # a stale redelivery never brings back "held"


def test_seat_chunk_reports_prior_status_for_ambiguous_releases():
    chunk = {"st": ["s", "h"], "v": [3, 2], "p": ["h", "a"], "cv": 5}
    rel = msg(9, "SeatsReleased", {"reason": "event_cancelled",
                                   "seats": seats(("A-1-1", "available", 4), ("A-1-2", "available", 3))})
    new, prior, _ = P.fold_chunk(chunk, [(rel, c) for c in rel.data["seats"]])
    assert prior == {(rel.tp, 9, "A-1-1"): "sold", (rel.tp, 9, "A-1-2"): "held"}
    # replayed when the seat doc is already at that version: the stored previous status answers
    _, prior2, changed = P.fold_chunk(new, [(rel, c) for c in rel.data["seats"]])
    assert not changed and prior2 == prior


def counters_after(msgs, state=None, prior=None):
    state = state or P.initial_counters(CREATED)
    return P.fold_event_counters(state, msgs, prior or {})


def test_counters_follow_holds_orders_releases_and_cancellations():
    ms = [
        msg(1, "SeatsHeld", {"hold": {}, "seats": seats(("A-1-1", "held", 2), ("A-1-2", "held", 2))}),
        msg(2, "OrderConfirmed", {"order": order("o1", seats_=("A-1-1",)), "seats": seats(("A-1-1", "sold", 3))}),
        msg(3, "SeatsReleased", {"reason": "expired", "seats": seats(("A-1-2", "available", 3))}),
        msg(4, "OrderCancelled", {"order": order("o1", "cancelled", seats_=("A-1-1",)), "reason": "cancelled_by_buyer"}),
        msg(5, "SeatsReleased", {"reason": "order_cancelled", "seats": seats(("A-1-1", "available", 4))}),
        msg(6, "SeatsHeld", {"hold": {}, "ga_sections": [
            {"section": "GA", "capacity": 10, "held": 3, "sold": 0, "version": 2}]}),
    ]
    st, changed = counters_after(ms)
    assert changed
    assert st["counts"]["A"]["held"] == 0 and st["counts"]["A"]["sold"] == 0 and st["counts"]["A"]["available"] == 4
    assert st["counts"]["GA"]["held"] == 3 and st["available"] == 11
    assert st["stats"]["orders"] == 1 and st["stats"]["cancellations"] == 1
    assert st["stats"]["by_day"]["2026-11-21"]["revenue"] == 100
    assert st["stats"]["by_day"]["2026-11-22"]["cancelled_seats"] == 1
    assert st["stats"]["refunded"] == 0  # an order written before payments was never refunded: revenue stays
    assert st["wm"] == {"evently_event:0": 6}


def test_watermark_makes_redelivery_of_applied_offsets_a_no_op():
    ms = [msg(1, "SeatsHeld", {"hold": {}, "seats": seats(("A-1-1", "held", 2))}),
          msg(2, "OrderConfirmed", {"order": order("o1"), "seats": seats(("A-1-1", "sold", 3))})]
    first, _ = counters_after(ms[:1])
    second, _ = counters_after(ms, first)  # an overlapping redelivery: offset 1 again, then 2
    assert second["counts"]["A"]["sold"] == 1 and second["counts"]["A"]["held"] == 0
    third, changed = counters_after(ms, second)
    assert not changed and third["counts"] == second["counts"] and third["stats"] == second["stats"]


def test_older_ga_state_never_overwrites_a_newer_one():
    newer = msg(5, "OrderConfirmed", {"order": {**order("o1", seats_=()), "seats": None, "section": "GA",
                                                 "quantity": 2},
                                      "ga_sections": [{"section": "GA", "capacity": 10, "held": 0, "sold": 2,
                                                       "version": 3}]})
    older = msg(7, "SeatsHeld", {"hold": {}, "ga_sections": [
        {"section": "GA", "capacity": 10, "held": 2, "sold": 0, "version": 2}]})
    st, _ = counters_after([newer, older])
    assert (st["counts"]["GA"]["held"], st["counts"]["GA"]["sold"]) == (0, 2)


def test_event_cancellation_uses_prior_statuses():
    ms = [msg(1, "SeatsHeld", {"hold": {}, "seats": seats(("A-1-1", "held", 2), ("A-1-2", "held", 2))}),
          msg(2, "OrderConfirmed", {"order": order("o1"), "seats": seats(("A-1-1", "sold", 3))})]
    st, _ = counters_after(ms)
    rel = [msg(3, "OrderCancelled", {"order": order("o1", "cancelled"), "reason": "event_cancelled"}),
           msg(4, "SeatsReleased", {"reason": "event_cancelled",
                                    "seats": seats(("A-1-1", "available", 4), ("A-1-2", "available", 3))})]
    tp = P.tp_name("evently.event", 0)
    end, _ = counters_after(rel[::-1], st, prior={(tp, 4, "A-1-1"): "sold", (tp, 4, "A-1-2"): "held"})
    assert end["counts"]["A"]["held"] == 0 and end["counts"]["A"]["sold"] == 0
    # without the seat map, the cancelled orders' seats tell which seats were sold
    end2, _ = counters_after(rel, st)
    assert end2["counts"]["A"] == end["counts"]["A"]


def test_rollup_watermarks_are_per_partition():
    a = msg(10, "OrderConfirmed", {"order": order("o1"), "seats": []}, partition=0)
    b = msg(3, "OrderConfirmed", {"order": order("o2"), "seats": []}, partition=1)
    inc_a, inc_b = P.order_stats(a)[1], P.order_stats(b)[1]
    st, _ = P.fold_rollup({"wm": {}, "cv": 0}, [(a, inc_a)])
    st, changed = P.fold_rollup(st, [(b, inc_b), (a, inc_a)])
    assert changed and st["orders"] == 2 and st["wm"] == {"evently_event:0": 10, "evently_event:1": 3}


def test_cancelled_order_state_beats_confirmed_in_any_order():
    """Orders written before payments have no version: their status ranks."""
    c = msg(2, "OrderCancelled", {"order": order("o1", "cancelled"), "reason": "cancelled_by_buyer"})
    o = msg(1, "OrderConfirmed", {"order": order("o1"), "seats": seats(("A-1-1", "sold", 3))})
    assert P.fold_orders([c, o])["o1"]["status"] == "cancelled"
    assert P.fold_orders([o, c])["o1"]["rank"] == 2


def test_feed_changes_carry_the_last_state_per_seat_and_ga_availability():
    ms = [msg(1, "SeatsHeld", {"hold": {}, "seats": seats(("A-1-1", "held", 2))}),
          msg(2, "OrderConfirmed", {"order": order("o1"), "seats": seats(("A-1-1", "sold", 3))}),
          msg(3, "SeatsHeld", {"hold": {}, "seats": seats(("A-1-2", "held", 2)), "ga_sections": [
              {"section": "GA", "capacity": 10, "held": 3, "sold": 1, "version": 4}]})]
    assert P.feed_changes(ms, None, -1) == [{"seat": "A-1-1", "status": "sold"}, {"seat": "A-1-2", "status": "held"},
                                            {"section": "GA", "available": 6}]
    assert P.feed_changes(ms, None, 2) == [{"seat": "A-1-2", "status": "held"}, {"section": "GA", "available": 6}]


def test_twenty_thousand_seat_venue_stays_small_per_document():
    ids = [f"S{s}-{r}-{n}" for s in range(4) for r in range(1, 101) for n in range(1, 51)]
    rows = P.seat_rows(ids)
    assert len(ids) == 20_000 and len(rows) == 400 and max(rows.values()) == 50
    chunk = P.new_chunk(EV, "S0", "1", 1000)  # the largest possible row (1,000 seats)
    assert len(repr(chunk)) < 16_000


def test_event_cancel_prior_statuses_do_not_collide_across_partitions():
    """One batch can hold messages of several partitions at the same offsets: the prior status of a
    seat released by an event cancellation must be the one of *its* partition's message."""
    chunk_p0 = P.new_chunk(EV, "A", "1", 2)
    chunk_p1 = {**P.new_chunk("e2", "A", "1", 2)}
    # partition 0: A-1-1 sold (v3), then released by event cancellation at offset 7
    sold = [(msg(5, "SeatsHeld", {"hold": {"id": "h"}, "seats": seats(("A-1-1", "held", 2))}), {"seat_id": "A-1-1", "status": "held", "version": 2}),
            (msg(6, "OrderConfirmed", {"order": order("o1"), "seats": seats(("A-1-1", "sold", 3))}), {"seat_id": "A-1-1", "status": "sold", "version": 3})]
    release = msg(7, "SeatsReleased", {"reason": "event_cancelled", "seats": seats(("A-1-1", "available", 4))})
    _, prior0, _ = P.fold_chunk(chunk_p0, sold + [(release, {"seat_id": "A-1-1", "status": "available", "version": 4})])
    # partition 1, same offset 7, same seat id on another event: held (v2) then released (v3)
    other = msg(6, "SeatsHeld", {"hold": {"id": "h2"}, "seats": seats(("A-1-1", "held", 2))}, partition=1)
    other_release = msg(7, "SeatsReleased", {"reason": "event_cancelled", "seats": seats(("A-1-1", "available", 3))},
                        partition=1)
    _, prior1, _ = P.fold_chunk(chunk_p1, [(other, {"seat_id": "A-1-1", "status": "held", "version": 2}),
                                           (other_release, {"seat_id": "A-1-1", "status": "available", "version": 3})])
    prior = {**prior0, **prior1}
    state = P.initial_counters(CREATED)
    state, _ = P.fold_event_counters({**state, "stats": P.empty_stats(), "wm": {}},
                                     [sold[0][0], sold[1][0], release], prior)
    assert state["counts"]["A"]["sold"] == 0 and state["counts"]["A"]["held"] == 0


def entry(status: str = "waiting", version: int = 1, *, eid: str = "w1", seq: int = 1, offer: dict | None = None,
          section: str | None = None, quantity: int = 1) -> dict:
    """A waitlist entry as Debezium delivers it: null fields (section, offer) are dropped."""
    e = {"id": eid, "event_id": EV, "buyer_id": "b", "quantity": quantity, "seq": seq, "status": status,
         "version": version, "created_at": "2026-11-21T10:00:00Z", "updated_at": "2026-11-21T10:05:00Z"}
    if offer:
        e["offer"] = offer
    if section:
        e["section"] = section
    return e


OFFER = {"hold_id": "h1", "expires_at": "2026-11-21T10:15:00Z"}


def test_waitlist_events_validate_with_null_fields_dropped():
    P.validate({"type": "WaitlistJoined", "id": "x", "aggregate_id": EV, "data": {"entry": entry()}})
    m = msg(1, "WaitlistOffered", {"entry": entry("offered", 2, offer=OFFER, section="GA", quantity=3)})
    assert P.fold_waitlist([m])["w1"]["section"] == "GA"
    with pytest.raises(P.PoisonMessage, match="reason: Field required"):
        msg(2, "OfferExpired", {"entry": entry("expired", 3)})


def test_waitlist_newest_entry_version_wins_whatever_the_order():
    joined = msg(1, "WaitlistJoined", {"entry": entry()})
    offered = msg(2, "WaitlistOffered", {"entry": entry("offered", 2, offer=OFFER)})
    expired = msg(3, "OfferExpired", {"entry": entry("expired", 3), "reason": "expired"})
    other = msg(4, "WaitlistJoined", {"entry": entry(eid="w2", seq=2)})
    for batch in ([joined, offered, expired, other], [expired, other, offered, joined]):
        out = P.fold_waitlist(batch)
        assert set(out) == {"w1", "w2"}
        assert out["w1"]["status"] == "expired" and out["w1"]["version"] == 3 and out["w1"]["seq"] == 1
        # absolute state: the offer is gone, and the document says so (null), so a $set clears the old one
        assert out["w1"]["offer"] is None and out["w1"]["section"] is None
    assert P.fold_waitlist([offered])["w1"]["offer"] == OFFER
    assert P.fold_waitlist([msg(5, "OrderConfirmed", {"order": order("o1"), "seats": []})]) == {}


def test_waitlist_notifications_carry_the_offer():
    offered = msg(2, "WaitlistOffered", {"entry": entry("offered", 2, offer=OFFER)})
    [n] = N.plan(offered)
    assert (n.user_id, n.kind) == ("b", "waitlist_offer")
    assert n.data["offer"] == OFFER and n.data["entry"]["id"] == "w1" and n.data["entry"]["status"] == "offered"
    assert n.data["entry"]["event_id"] == EV and "buyer_id" not in n.data["entry"]
    [n2] = N.plan(msg(3, "OfferExpired", {"entry": entry("expired", 3), "reason": "declined"}))
    assert (n2.user_id, n2.kind, n2.data["reason"]) == ("b", "offer_expired", "declined") and "offer" not in n2.data
    assert n2.id != n.id  # each message is its own cause
    assert N.plan(msg(1, "WaitlistJoined", {"entry": entry()})) == []
    assert N.plan(msg(4, "WaitlistLeft", {"entry": entry("left", 2)})) == []


@pytest.mark.parametrize("seat_id, parts", [("A-1-7", ("A", "1", 7)), ("VIP-AA-1000", ("VIP", "AA", 1000))])
def test_seat_ids_split_into_section_row_and_number(seat_id, parts):
    assert P.split_seat(seat_id) == parts


@pytest.mark.parametrize("seat_id", ["A-1-0", "A-1", "A--1", "-1-1", "A-1-1-2", "A-1-x", "A-1-\u00b2", "A-1- 1",
                                     "A-1-07", "A-1-123456", "ABCDEFGHIJK-1-1", "\u00c4-1-1",
                                     7, None])
def test_malformed_seat_ids_are_poison(seat_id):
    with pytest.raises(P.PoisonMessage, match="malformed seat id"):
        P.split_seat(seat_id)


def test_event_created_seat_rows_come_from_the_layout_or_an_old_seat_list():
    sections = [{"code": "A", "kind": "seated", "capacity": 5, "rows": [{"label": "1", "seats": 3}, {"label": "2", "seats": 2}]},
                {"code": "GA", "kind": "ga", "capacity": 100, "rows": None}]
    assert P.event_seat_rows({"sections": sections}) == {("A", "1"): 3, ("A", "2"): 2}
    old = {"sections": sections, "seats": ["A-1-1", "A-1-2", "A-1-3", "A-2-1", "A-2-2"]}
    assert P.event_seat_rows(old) == P.event_seat_rows({"sections": sections})


def test_users_fold_to_the_newest_version_whatever_the_order():
    base = {"id": EV, "email": "a@example.com", "name": "A", "role": "buyer", "created_at": "2026-12-01T00:00:00Z",
            "updated_at": "2026-12-01T00:00:00Z"}
    msgs = [msg(1, "UserUpdated", {**base, "version": 3, "disabled": True}),
            msg(2, "UserRegistered", {**base, "version": 1}),
            msg(3, "UserUpdated", {**base, "version": 2, "role": "organizer"})]
    folded = P.fold_users(msgs)
    assert list(folded) == [EV] and folded[EV]["version"] == 3 and folded[EV]["disabled"] is True
    assert "id" not in folded[EV] and "password_hash" not in folded[EV]


def test_rollups_keep_each_currencys_money_apart():
    usd = {**order("o2", total=250), "currency": "USD"}
    eur_cancel = order("o1", "cancelled", total=100)
    rollup, _ = P.fold_rollup({"wm": {}}, [
        (m, P.rollup_increments(m)[1]) for m in (
            msg(1, "OrderConfirmed", {"order": order("o1"), "seats": seats(("A-1-1", "sold", 3))}),
            msg(2, "OrderConfirmed", {"order": usd, "seats": seats(("A-1-2", "sold", 3))}),
            msg(3, "OrderCancelled", {"order": eur_cancel, "reason": "cancelled_by_buyer"}),
        )])
    assert (rollup["revenue"], rollup["revenue_EUR"], rollup["revenue_USD"]) == (350, 100, 250)
    assert rollup["cancellations"] == 1 and not any(k.startswith("cancelled_revenue") for k in rollup)
    assert P.rollup_increments(msg(4, "SeatsHeld", {"hold": {}, "seats": []})) is None
