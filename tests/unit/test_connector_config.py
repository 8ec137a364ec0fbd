"""debezium/evently-outbox.json carries the decisions documented in debezium/README.md."""
from __future__ import annotations

import re

from infra.connector import spec
from projectors.topics import SOURCE_TOPICS

CFG = spec()["config"]


def test_pgoutput_filtered_publication_over_outbox_and_heartbeat_only():
    assert CFG["plugin.name"] == "pgoutput"
    assert CFG["publication.autocreate.mode"] == "disabled"  # migration 0004 owns it
    assert CFG["table.include.list"].split(",") == ["public.outbox", "public.debezium_heartbeat"]
    assert CFG["slot.name"] == "evently_outbox"


def test_heartbeat_writes_the_heartbeat_table():
    assert int(CFG["heartbeat.interval.ms"]) > 0
    assert "debezium_heartbeat" in CFG["heartbeat.action.query"]


def test_outbox_router_routes_by_aggregate_type_keys_by_aggregate_id_and_expands_json():
    assert CFG["transforms.outbox.type"] == "io.debezium.transforms.outbox.EventRouter"
    assert CFG["transforms.outbox.route.by.field"] == "aggregatetype"
    assert CFG["transforms.outbox.table.field.event.key"] == "aggregateid"
    assert CFG["transforms.outbox.table.expand.json.payload"] == "true"


def test_routed_topics_are_the_ones_the_stack_creates():
    replacement = CFG["transforms.outbox.route.topic.replacement"]
    for aggregate in ("event", "venue"):
        assert replacement.replace("${routedByValue}", aggregate) in SOURCE_TOPICS


def test_heartbeat_rows_never_reach_the_outbox_router():
    outbox = re.compile(CFG["predicates.isOutboxTable.pattern"])
    heartbeat = re.compile(CFG["predicates.isHeartbeatTable.pattern"])
    prefix = CFG["topic.prefix"]
    assert outbox.fullmatch(f"{prefix}.public.outbox") and not outbox.fullmatch(f"{prefix}.public.debezium_heartbeat")
    assert heartbeat.fullmatch(f"{prefix}.public.debezium_heartbeat")
    assert CFG["transforms"].split(",")[0] == "dropHeartbeatRows"
