"""WAL retention is bounded, and a lost replication slot is recovered without leaving the read models wrong
(issue 12, "Known weak spots"). Destructive: it stops Kafka Connect, lowers the WAL bounds, writes WAL until
PostgreSQL invalidates Debezium's slot, then runs the operator's recovery (infra/slot_recovery.py) and checks the
read models with projectors.check. The bounds are restored whatever happens.
"""
from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from pymongo import MongoClient

from infra import config, slot_recovery
from infra.connector import spec
from infra.stack import CONNECT, POSTGRES
from projectors.check import check
from tests.faults.test_faults import wait_for

pytestmark = pytest.mark.faults

BOUND_MB = 64           # max_slot_wal_keep_size during the test (the stack runs with 4 GB)
MAX_WAL_MB = 96         # max_wal_size during the test, so checkpoints come often and recycle WAL
SEGMENT_MB = 16
ROUND_MB = 32           # WAL written per round (a filler table in the postgres database, then TRUNCATE)
MAX_WRITTEN_MB = 1024   # give up (the bound did not act) after writing this much


def slot_state(slot: str) -> tuple[str, float]:
    """(wal_status, MB in pg_wal)."""
    out = POSTGRES.psql(
        "SELECT coalesce((SELECT wal_status FROM pg_replication_slots WHERE slot_name = '%s'), 'absent'), "
        "(SELECT sum(size) FROM pg_ls_waldir()) / 1048576.0" % slot)
    status, size = out.strip().split("|")
    return status, float(size)


def test_wal_retention_is_bounded_and_a_lost_slot_is_recovered(settings, api, organizer):
    slot = spec()["config"]["slot.name"]
    ev = api.event(organizer, rows=2, seats_per_row=10, ga=0)
    buyer = api.user("buyer")[1]
    api.order(buyer, api.hold(buyer, ev["id"], ["A-1-1"])["id"])
    assert wait_for(lambda: not check(settings, [ev["id"]]), 60)[1] is not None, "not projected before the test"

    # An operator re-publishes from somewhat before the outage began (earlier is harmless, only slower).
    since = datetime.fromisoformat(POSTGRES.psql("SELECT now()").strip().replace(" ", "T")) - timedelta(seconds=5)
    CONNECT.stop()
    samples = []
    try:
        # The gap: changes made while nothing streams them, and an event created in it.
        gap_order = api.order(buyer, api.hold(buyer, ev["id"], ["A-1-2", "A-1-3"])["id"])
        gap_event = api.event(organizer, rows=1, seats_per_row=5, ga=0)
        POSTGRES.psql(f"ALTER SYSTEM SET max_slot_wal_keep_size = '{BOUND_MB}MB'")
        POSTGRES.psql(f"ALTER SYSTEM SET max_wal_size = '{MAX_WAL_MB}MB'")
        POSTGRES.psql("ALTER SYSTEM SET min_wal_size = '32MB'")
        POSTGRES.psql("SELECT pg_reload_conf()")
        POSTGRES.psql("CREATE TABLE IF NOT EXISTS wal_filler (id bigint, pad text)")
        written = 0
        while written < MAX_WRITTEN_MB:
            rows = ROUND_MB * 1024 * 1024 // 1100
            POSTGRES.psql(f"INSERT INTO wal_filler SELECT g, repeat(md5(g::text), 32) FROM generate_series(1, {rows}) g")
            POSTGRES.psql("TRUNCATE wal_filler")
            POSTGRES.psql("CHECKPOINT")
            written += ROUND_MB
            samples.append((written, *slot_state(slot)))
            if samples[-1][1] == "lost" and written >= 4 * BOUND_MB:
                break
    finally:
        POSTGRES.psql("DROP TABLE IF EXISTS wal_filler")
        POSTGRES.psql("ALTER SYSTEM SET max_slot_wal_keep_size = '4GB'")  # the stack's own value (infra/components)
        POSTGRES.psql("ALTER SYSTEM RESET max_wal_size")
        POSTGRES.psql("ALTER SYSTEM RESET min_wal_size")
        POSTGRES.psql("SELECT pg_reload_conf()")
        CONNECT.ensure()
    print("written MB, slot wal_status, pg_wal MB:", samples)
    status, wal_mb = samples[-1][1], samples[-1][2]
    assert status == "lost", f"the slot was not invalidated after {samples[-1][0]} MB of WAL: {samples}"
    # Without the bound the stopped slot would hold every byte written since Connect stopped.
    assert wal_mb <= BOUND_MB + MAX_WAL_MB + 3 * SEGMENT_MB < samples[-1][0], samples

    # The operator's recovery: new slot and offsets, re-publish the retained outbox, check.
    assert slot_recovery.recover(f"http://{config.HOST}:{config.port('connect')}", since, settle=180,
                                 events=[ev["id"], gap_event["id"]]) == 0
    assert check(settings, [ev["id"], gap_event["id"]]) == []
    mongo = MongoClient(settings.mongo_url, serverSelectionTimeoutMS=5000)[settings.mongo_db]
    assert mongo.orders.find_one({"_id": gap_order["id"]}, {"status": 1})["status"] == "confirmed"
    # and the pipeline streams new changes again
    after = api.order(buyer, api.hold(buyer, ev["id"], ["A-2-1"])["id"])
    assert wait_for(lambda: mongo.orders.find_one({"_id": after["id"]}), 60)[1] is not None
