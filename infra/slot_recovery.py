"""Recover from a lost replication slot (or lost Connect offsets): ``python -m infra.slot_recovery``.

When Debezium's slot is invalidated (``pg_replication_slots.wal_status = 'lost'``: Connect was down past
``max_slot_wal_keep_size``), the changes written meanwhile never reach Kafka, and the connector task fails with
"no longer available". This tool does the operator's steps of debezium/README.md "When the slot is lost", in
order, with progress:

1. stop the connector (Connect REST ``PUT /connectors/<name>/stop``);
2. drop the lost slot (as the CDC user, which has REPLICATION);
3. delete the connector's stored offsets (``DELETE /connectors/<name>/offsets``, KIP-875), so it starts afresh;
4. resume it with ``snapshot.mode=no_data``: Debezium creates a new slot at the current WAL position and streams
   from there, without re-reading the whole outbox table (the stack's ``initial`` would: every retained row again);
5. re-publish the retained outbox rows written since ``--since`` (default: every retained row), so the gap
   reaches Kafka; the projector skips the events it already applied;
6. run ``projectors.check`` until the read models match PostgreSQL (``--settle`` seconds at most).

Outbox rows older than ``EVENTLY_OUTBOX_RETENTION_SECONDS`` are gone: a gap older than that needs a rebuild of
the read models from PostgreSQL instead (for the local stack, ``make reset``).
"""
from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime, timezone

import psycopg

from common.settings import get_settings
from infra import config
from infra.connector import http_json, spec
from infra.progress import say


def connector_state(url: str, name: str) -> tuple[str, list[str]]:
    _, body = http_json(f"{url}/connectors/{name}/status", timeout=10)
    return body["connector"]["state"], [t["state"] for t in body.get("tasks", [])]


def wait_state(url: str, name: str, want: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while (state := connector_state(url, name))[0] != want or (want == "RUNNING" and state[1] != ["RUNNING"]):
        if time.monotonic() > deadline:
            raise TimeoutError(f"connector {name} is {state}, not {want}, after {timeout} s")
        time.sleep(0.5)


def recover(connect_url: str, since: datetime | None, settle: float, events: list[str] | None = None) -> int:
    from command_service.adapters.outbox import republish
    from projectors.check import check

    s, name = get_settings(), spec()["name"]
    slot = spec()["config"]["slot.name"]
    say(f"==> 1/6 stopping connector {name}")
    http_json(f"{connect_url}/connectors/{name}/stop", method="PUT", timeout=30)
    wait_state(connect_url, name, "STOPPED")
    with psycopg.connect(s.database_url, autocommit=True) as conn:
        row = conn.execute("SELECT wal_status, active_pid FROM pg_replication_slots WHERE slot_name = %s",
                           [slot]).fetchone()
        say(f"==> 2/6 slot {slot}: {row[0] if row else 'absent'}" + ("; dropping it" if row else ""))
        if row:
            deadline = time.monotonic() + 30
            while conn.execute("SELECT active FROM pg_replication_slots WHERE slot_name = %s", [slot]).fetchone()[0]:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"slot {slot} still in use 30 s after the connector stopped")
                time.sleep(0.2)
            conn.execute("SELECT pg_drop_replication_slot(%s)", [slot])
    say(f"==> 3/6 deleting connector {name}'s offsets")
    http_json(f"{connect_url}/connectors/{name}/offsets", method="DELETE", timeout=30)
    say(f"==> 4/6 resuming connector {name} (new slot at the current WAL position, no snapshot)")
    http_json(f"{connect_url}/connectors/{name}/config", method="PUT",
              body={**spec()["config"], "snapshot.mode": "no_data"}, timeout=30)
    http_json(f"{connect_url}/connectors/{name}/resume", method="PUT", timeout=30)
    wait_state(connect_url, name, "RUNNING")
    with psycopg.connect(s.database_url, autocommit=True) as conn:
        while conn.execute("SELECT count(*) FROM pg_replication_slots WHERE slot_name = %s", [slot]).fetchone()[0] == 0:
            time.sleep(0.2)  # the task creates the slot as it starts streaming: republish only after that
        start = since or conn.execute("SELECT coalesce(min(created_at), now()) FROM outbox").fetchone()[0]
        n = republish(conn, start, datetime.now(timezone.utc))
    say(f"==> 5/6 re-published {n} outbox row(s) written since {start.isoformat()}")
    say(f"==> 6/6 checking the read models against PostgreSQL (up to {settle:.0f} s)")
    deadline, diffs = time.monotonic() + settle, ["not checked"]
    while diffs and time.monotonic() < deadline:
        diffs = check(s, events)
        if diffs:
            time.sleep(1)
    if diffs:
        say(f"read models still DIVERGE ({len(diffs)} difference(s)), e.g. {diffs[0]}; a gap older than the outbox "
            f"retention needs a rebuild from PostgreSQL")
        return 1
    say("read models match PostgreSQL")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--connect-url", default=f"http://{config.HOST}:{config.port('connect')}")
    p.add_argument("--since", type=datetime.fromisoformat,
                   help="re-publish outbox rows written since this time (ISO 8601; default: every retained row)")
    p.add_argument("--settle", type=float, default=120, help="seconds to wait for the checker to match")
    p.add_argument("--event", action="append", help="check only this event (repeatable; default: everything)")
    args = p.parse_args(argv)
    return recover(args.connect_url, args.since, args.settle, args.event)


if __name__ == "__main__":
    sys.exit(main())
