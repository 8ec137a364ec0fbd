"""A rebuild's outbox-id claims: re-sends are dropped in memory, and only each partition's newest claims
(those Debezium could still re-send to the live worker) are written. The collection is a fake that records
inserts; the logic under test is the Store's."""
from __future__ import annotations

from types import SimpleNamespace

from projectors import projection as P
from projectors.store import Store


class FakeCollection:
    def __init__(self) -> None:
        self.docs: list[dict] = []

    def insert_many(self, docs, ordered=True):
        self.docs.extend(docs)


def msg(partition: int, offset: int, kafka_ms: float, id_: str | None = None) -> P.Msg:
    env = {"id": id_ or f"p{partition}-{offset}", "type": "EventPublished", "schema_version": 1,
           "aggregate_id": "e1", "data": {"version": 2}}
    return P.Msg("evently.event", partition, offset, env, None, kafka_ms)


def replay_store(window_ms: float) -> tuple[Store, FakeCollection]:
    applied = FakeCollection()
    store = Store(SimpleNamespace(applied=applied), threads=1)
    store.memory_claims = {}
    store.claim_window_ms = window_ms
    return store, applied


def test_only_each_partitions_newest_claims_are_written_after_the_replay():
    store, applied = replay_store(window_ms=10_000)
    # partition 0: one message a second for 60 s; partition 1 went quiet long before (its last 3 messages
    # are within 10 s of ITS newest one, so they stay: the window is per partition, not "now")
    p0 = [msg(0, o, 1_000_000 + o * 1000) for o in range(60)]
    p1 = [msg(1, o, 500_000 + o * 4000) for o in range(10)]
    assert store.claim(p0[:30] + p1) == p0[:30] + p1
    assert store.claim(p0[30:]) == p0[30:]
    assert applied.docs == []  # nothing is written while replaying
    assert store.persist_claim_tails() == 11 + 3
    assert {d["_id"] for d in applied.docs} == {m.id for m in p0[49:]} | {m.id for m in p1[7:]}
    assert {d["_id"]: d["at"] for d in applied.docs}["p0-59"] == "evently_event:0:59"


def test_a_resend_at_a_new_offset_is_dropped_and_its_original_position_kept():
    store, applied = replay_store(window_ms=60_000)
    originals = [msg(0, o, 1_000 + o) for o in range(5)]
    resent = [msg(0, 5 + o, 2_000 + o, id_=m.id) for o, m in enumerate(originals[2:])]
    assert store.claim(originals) == originals
    assert store.claim(resent + [msg(0, 8, 3_000)]) == [msg(0, 8, 3_000)]
    assert store.duplicates == 3
    store.persist_claim_tails()
    assert sorted(d["at"] for d in applied.docs) == [f"evently_event:0:{o}" for o in (0, 1, 2, 3, 4, 8)]
