"""Projectors on the live stack: real flows through the command API, checked against PostgreSQL with the
consistency checker (projectors/check.py). Every test creates its own events and checks only those, so
other tests may create data at the same time."""
from __future__ import annotations

import json
import random
import subprocess
import sys
import time
import uuid

import httpx
import pytest
import redis
from confluent_kafka import Consumer, Producer, TopicPartition

from projectors.rebuild import replay
from projectors.store import Store, ensure_indexes
from projectors.worker import parse
from tests.e2e.conftest import consistent, eventually, kafka_messages

pytestmark = pytest.mark.e2e


@pytest.fixture
def busy_event(api, organizer, buyer, settings):
    """An on-sale event with every kind of inventory change, projected and consistent."""
    since = int(time.time() * 1000) - 5000
    ev = api.event(organizer[1])
    api.traffic(organizer[1], buyer[1], ev["id"])
    consistent(settings, [ev["id"]])
    return ev["id"], since


@pytest.fixture
def cancelled_event(api, organizer, buyer, settings):
    """An event cancelled with sold and held seats and GA places (SeatsReleased(event_cancelled))."""
    ev = api.event(organizer[1])
    api.traffic(organizer[1], buyer[1], ev["id"])
    api.cancel_event(organizer[1], ev["id"])
    consistent(settings, [ev["id"]])
    return ev["id"]


def feed_len(settings, event_id: str) -> int:
    return redis.Redis.from_url(settings.redis_url).xlen(f"feed:{event_id}")


def test_read_models_follow_the_command_side(busy_event, cancelled_event, mongo, buyer, settings):
    event_id, _ = busy_event
    doc = mongo.events.find_one({"_id": event_id})
    assert doc["status"] == "on_sale"
    assert doc["counts"]["A"] == {"kind": "seated", "capacity": 30, "held": 1, "sold": 3, "available": 26, "v": 1}
    assert doc["counts"]["GA"]["held"] == 2 and doc["counts"]["GA"]["sold"] == 4
    assert (doc["held"], doc["sold"], doc["available"]) == (3, 7, 70)
    assert doc["stats"]["orders"] == 5 and doc["stats"]["cancellations"] == 2
    assert doc["price_min"] == 2000 and doc["price_max"] == 5000 and doc["venue"]["city"] == "Lisbon"
    orders = list(mongo.orders.find({"buyer_id": buyer[0], "event_id": event_id}))
    assert sorted(o["status"] for o in orders) == ["cancelled", "cancelled", "confirmed", "confirmed", "confirmed"]
    assert all(o["event"]["title"] == doc["title"] for o in orders)
    row1 = mongo.seatmap.find_one({"_id": f"{event_id}:A:1"})
    assert row1["st"][:3] == ["s", "s", "a"]
    # the live feed: ordered, monotonic positions, latest state of every changed seat
    entries = redis.Redis.from_url(settings.redis_url).xrange(f"feed:{event_id}")
    offsets = [int(f[b"off"]) for _, f in entries]
    assert offsets == sorted(set(offsets))
    last: dict[str, str] = {}
    for _, f in entries:
        for ch in json.loads(f[b"data"])["changes"]:
            if "seat" in ch:
                last[ch["seat"]] = ch["status"]
    assert last["A-1-1"] == "sold" and last["A-1-3"] == "available" and last["A-2-1"] == "held"
    cancelled = mongo.events.find_one({"_id": cancelled_event})
    assert cancelled["status"] == "cancelled" and cancelled["held"] == 0 and cancelled["sold"] == 0


def test_replaying_every_topic_into_the_same_read_models_changes_nothing(busy_event, cancelled_event, mongo,
                                                                         settings):
    event_id, _ = busy_event
    before = {e: feed_len(settings, e) for e in (event_id, cancelled_event)}
    snapshot = mongo.events.find_one({"_id": event_id}, {"counts": 1, "stats": 1, "held": 1, "sold": 1})
    result = replay(settings, mongo, feed=True, quiet=True)  # from offset 0, the same collections, live worker running
    assert result["messages"] > 0
    consistent(settings, [event_id, cancelled_event])
    assert mongo.events.find_one({"_id": event_id}, {"counts": 1, "stats": 1, "held": 1, "sold": 1}) == snapshot
    assert {e: feed_len(settings, e) for e in before} == before  # no seat-feed entry appended twice


def test_kafka_redeliveries_in_overlapping_and_stale_batches_are_exact(busy_event, cancelled_event, scratch_db,
                                                                       settings):
    """Consumer crashes/rebalances make Kafka hand out ranges again (older than what was applied, overlapping,
    duplicated). Apply the real messages that way, into a fresh database, and compare with PostgreSQL."""
    event_id, since = busy_event
    ensure_indexes(scratch_db)
    store = Store(scratch_db, None)
    rng = random.Random(7)
    for eid in (event_id, cancelled_event):
        msgs = [parse(m) for m in kafka_messages(settings, eid, since)]
        assert msgs and msgs[0].type == "EventCreated"
        frontier = 0
        while frontier < len(msgs):
            start = rng.randint(0, frontier)  # never past the frontier: Kafka replays, it does not skip
            end = min(len(msgs), frontier + rng.randint(1, 4))
            store.apply(msgs[start:end])
            if rng.random() < 0.5:
                store.forget()  # a restarted consumer has no caches
            if rng.random() < 0.3:
                old = rng.randint(0, end - 1)
                store.apply(msgs[old:old + rng.randint(1, 3)])  # a stale redelivery after newer ones
            frontier = end
        store.apply(msgs)  # and everything once more
    consistent(settings, [event_id, cancelled_event], db=scratch_db, timeout=10)


def test_debezium_resends_at_new_offsets_are_dropped(busy_event, mongo, settings):
    """After a Connect crash Debezium re-sends events it had already sent: same outbox id, new offset. Produce
    copies of the real messages (stale holds and orders included) and check nothing moves."""
    event_id, since = busy_event
    originals = kafka_messages(settings, event_id, since)
    before_feed = feed_len(settings, event_id)
    snapshot = mongo.events.find_one({"_id": event_id}, {"counts": 1, "stats": 1})
    # murmur2 = the Java client's partitioner (Connect's producer): the copies land where Debezium's would
    p = Producer({"bootstrap.servers": settings.kafka_bootstrap, "log_level": 3, "partitioner": "murmur2_random"})
    produced: list[tuple[int, int]] = []
    for m in originals[1:]:  # (re-sent in log order, the way a restarted connector does)
        p.produce(m.topic(), key=m.key(), value=m.value(), headers=m.headers(),
                  on_delivery=lambda err, msg: produced.append((msg.partition(), msg.offset())))
    p.flush(10)
    partition, last_offset = max(produced)
    assert {pp for pp, _ in produced} == {originals[0].partition()}

    def applied() -> bool:
        text = httpx.get(f"http://127.0.0.1:{settings.projector_metrics_port}/metrics", timeout=5).text
        for line in text.splitlines():
            if line.startswith("evently_projector_last_applied_offset{") and f'partition="{partition}"' in line \
                    and 'topic="evently.event"' in line:
                return float(line.rsplit(" ", 1)[1]) >= last_offset
        return False
    eventually(applied, timeout=60)
    consistent(settings, [event_id])
    assert mongo.events.find_one({"_id": event_id}, {"counts": 1, "stats": 1}) == snapshot
    assert feed_len(settings, event_id) == before_feed


def test_poison_message_goes_to_the_dead_letter_topic_and_the_partition_moves_on(pg, mongo, settings):
    event_id = str(uuid.uuid4())
    c = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": f"e2e-{uuid.uuid4()}",
                  "enable.auto.commit": False, "log_level": 3})
    try:
        _, high = c.get_watermark_offsets(TopicPartition("evently.dlq", 0), timeout=10)
        c.assign([TopicPartition("evently.dlq", 0, high)])
        p = Producer({"bootstrap.servers": settings.kafka_bootstrap, "log_level": 3})
        bad_seat = {"id": str(uuid.uuid4()), "type": "SeatsHeld", "schema_version": 1, "aggregate_id": event_id,
                    "occurred_at": "2026-11-21T20:00:00Z",
                    "data": {"hold": {"id": "h"}, "seats": [{"seat_id": "not a seat", "status": "held", "version": 2}]}}
        p.produce("evently.event", key=event_id, value=b"{this is not json", headers=[("eventType", b"SeatsHeld")])
        p.produce("evently.event", key=event_id, value=json.dumps(bad_seat).encode())
        p.flush(10)
        # a good event with the same key lands on the same partition, after the poison
        outbox_id, venue_id = str(uuid.uuid4()), str(uuid.uuid4())
        envelope = {"id": outbox_id, "type": "EventCreated", "schema_version": 1, "aggregate_id": event_id,
                    "occurred_at": "2026-11-21T20:00:00Z", "data": {
                        "id": event_id, "organizer_id": str(uuid.uuid4()), "title": "After the poison",
                        "category": "x", "status": "on_sale", "venue_id": venue_id,
                        "venue": {"id": venue_id, "name": "Hall", "city": "Oslo"},
                        "starts_at": "2027-01-01T20:00:00.000Z", "currency": "EUR", "prices": {"GA": 100},
                        "created_at": "2026-11-21T20:00:00Z", "updated_at": "2026-11-21T20:00:00Z"}}
        pg.execute("INSERT INTO outbox (id, aggregatetype, aggregateid, type, payload) VALUES (%s, 'event', %s, %s, %s)",
                   (outbox_id, event_id, "EventCreated", json.dumps(envelope)))
        eventually(lambda: mongo.events.find_one({"_id": event_id}), timeout=60)

        dead: list = []

        def collect() -> bool:
            for m in c.consume(100, timeout=0.5):
                if not m.error() and m.key() == event_id.encode():
                    dead.append(m)
            return len(dead) >= 2
        eventually(collect, timeout=30)
    finally:
        c.close()
    errors = [dict(m.headers())["dlq.error"].decode() for m in dead]
    assert dead[0].value() == b"{this is not json" and "not JSON" in errors[0]
    assert "seats.0.seat_id" in errors[1] and "SeatsHeld" in errors[1]
    assert all(dict(m.headers())["dlq.source"].startswith(b"evently.event/") for m in dead)


def test_checker_reports_a_divergence_with_a_readable_diff(busy_event, mongo, settings):
    event_id, _ = busy_event
    doc = mongo.events.find_one({"_id": event_id})
    order = mongo.orders.find_one({"event_id": event_id, "status": "confirmed"})
    # Tamper (without touching the CAS counter) and restore afterwards.
    mongo.events.update_one({"_id": event_id}, {"$set": {"counts.A.sold": doc["counts"]["A"]["sold"] + 5}})
    mongo.orders.update_one({"_id": order["_id"]}, {"$set": {"status": "cancelled"}})
    row = mongo.seatmap.find_one({"_id": f"{event_id}:A:1"})
    mongo.seatmap.update_one({"_id": row["_id"]}, {"$set": {"st": ["h"] + row["st"][1:]}})
    try:
        r = subprocess.run([sys.executable, "-m", "projectors.check", "--event", event_id],
                           capture_output=True, text=True, timeout=120)
    finally:
        mongo.events.update_one({"_id": event_id}, {"$set": {"counts.A.sold": doc["counts"]["A"]["sold"]}})
        mongo.orders.update_one({"_id": order["_id"]}, {"$set": {"status": "confirmed"}})
        mongo.seatmap.update_one({"_id": row["_id"]}, {"$set": {"st": row["st"]}})
    assert r.returncode == 1, r.stdout + r.stderr
    assert "DIVERGE" in r.stdout
    sold = doc["counts"]["A"]["sold"]
    assert f"event {event_id} section A: sold mongo={sold + 5} pg={sold}" in r.stdout
    assert f"order {order['_id']}: status mongo=cancelled pg=confirmed" in r.stdout
    assert "A-1-1 mongo=held pg=sold" in r.stdout
    ok = subprocess.run([sys.executable, "-m", "projectors.check", "--event", event_id],
                        capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stdout


def test_rebuild_into_a_fresh_database_matches_postgresql(busy_event, cancelled_event, scratch_db, settings):
    ensure_indexes(scratch_db)
    result = replay(settings, scratch_db, feed=False, quiet=True)
    assert result["messages"] > 0
    consistent(settings, [busy_event[0], cancelled_event], db=scratch_db, timeout=10)


def test_metrics_expose_lag_and_last_applied_position(busy_event, settings):
    text = httpx.get(f"http://127.0.0.1:{settings.projector_metrics_port}/metrics", timeout=5).text
    assert "evently_projector_consumer_lag{" in text
    assert "evently_projector_last_applied_offset{" in text
    assert 'evently_projector_freshness_seconds_bucket{le="0.1",stage="read_model"}' in text
    health = httpx.get(f"http://127.0.0.1:{settings.projector_metrics_port}/health", timeout=5)
    assert health.status_code == 200 and health.json()["status"] == "ok"
