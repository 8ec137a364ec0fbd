"""Walking skeleton: an outbox row travels PostgreSQL -> Debezium -> Kafka -> projector -> FerretDB
-> query service, on the live stack."""
from __future__ import annotations

import json
import uuid

import httpx
import pytest
from confluent_kafka import Consumer, TopicPartition

from tests.e2e.conftest import eventually

pytestmark = pytest.mark.e2e


def insert_event_created(pg, event_id: str, title: str) -> str:
    outbox_id, venue_id = str(uuid.uuid4()), str(uuid.uuid4())
    envelope = {"id": outbox_id, "type": "EventCreated", "schema_version": 1, "aggregate_id": event_id,
                "occurred_at": "2026-11-21T20:00:00Z",
                # what the command side writes for an event (contracts.events.EventCreated)
                "data": {"id": event_id, "organizer_id": str(uuid.uuid4()), "title": title, "category": "music",
                         "status": "on_sale", "venue_id": venue_id,
                         "venue": {"id": venue_id, "name": "Skeleton Hall", "city": "Lyon"},
                         "starts_at": "2027-03-01T20:00:00.000Z", "currency": "EUR", "prices": {"GA": 2500},
                         "capacity": 10, "sections": [{"code": "GA", "name": "Floor", "kind": "ga", "capacity": 10,
                                       "price": 2500}], "version": 1,
                         "created_at": "2026-11-21T20:00:00.000Z", "updated_at": "2026-11-21T20:00:00.000Z"}}
    pg.execute("INSERT INTO outbox (id, aggregatetype, aggregateid, type, payload) VALUES (%s, 'event', %s, %s, %s)",
               (outbox_id, event_id, "EventCreated", json.dumps(envelope)))
    return outbox_id


def test_outbox_row_is_routed_to_the_aggregate_topic_keyed_by_aggregate_id(settings, pg):
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": f"e2e-{uuid.uuid4()}",
                         "enable.auto.commit": False})
    try:
        partitions = consumer.list_topics("evently.event", timeout=10).topics["evently.event"].partitions
        start = []
        for p in partitions:
            _, high = consumer.get_watermark_offsets(TopicPartition("evently.event", p), timeout=10)
            start.append(TopicPartition("evently.event", p, high))
        consumer.assign(start)

        event_id = str(uuid.uuid4())
        outbox_id = insert_event_created(pg, event_id, "Routing check")

        def find():
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                return None
            if dict(msg.headers() or []).get("eventId") == outbox_id.encode():
                return msg
            return None

        msg = eventually(find, timeout=60)
        assert msg.key().decode() == event_id
        headers = dict(msg.headers())
        assert headers["eventType"] == b"EventCreated"
        # The outbox router expanded the JSON payload: the value is the envelope itself.
        body = json.loads(msg.value())
        assert body["aggregate_id"] == event_id and body["data"]["title"] == "Routing check"
    finally:
        consumer.close()


def test_outbox_row_reaches_the_query_service(settings, pg):
    event_id = str(uuid.uuid4())
    insert_event_created(pg, event_id, "Walking skeleton")
    url = f"http://{settings.query_host}:{settings.query_port}/api/v1/events/{event_id}"

    def fetch():
        r = httpx.get(url, timeout=5)
        return r if r.status_code == 200 else None

    r = eventually(fetch, timeout=60)
    body = r.json()
    assert body["id"] == event_id
    assert body["title"] == "Walking skeleton"
    assert body["category"] == "music"
    assert not {"wm", "cv", "created_by_event"} & body.keys()  # projector bookkeeping stays internal


def test_unknown_event_is_a_contract_404(settings):
    r = httpx.get(f"http://{settings.query_host}:{settings.query_port}/api/v1/events/{uuid.uuid4()}", timeout=5)
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "NOT_FOUND"
