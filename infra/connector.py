"""Register the Debezium connector from debezium/evently-outbox.json with an idempotent PUT.

Used by the local stack (infra/stack.py) and by docker-compose's one-shot job:
``python -m infra.connector --connect-url http://connect:8083 [--wait]``.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time
import urllib.error
import urllib.request

from infra.progress import StepFailed

CONNECTOR_FILE = pathlib.Path(__file__).resolve().parent.parent / "debezium" / "evently-outbox.json"


class ConnectorFailed(StepFailed):
    pass


def http_json(url: str, method: str = "GET", body: dict | None = None, timeout: float = 3.0):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        raw = resp.read()
        return resp.status, (json.loads(raw) if raw else None)


def spec() -> dict:
    return json.loads(CONNECTOR_FILE.read_text())


def register(connect_url: str) -> str:
    """PUT /connectors/<name>/config: Connect answers 201 when it creates, 200 when it updates."""
    s = spec()
    status, _ = http_json(f"{connect_url}/connectors/{s['name']}/config", method="PUT", body=s["config"], timeout=30)
    if status != 201:
        # A task that failed under the previous config (the worker started it before this PUT) is not retried
        # by Connect on its own: restart only what failed, so a changed config takes effect (KIP-745).
        http_json(f"{connect_url}/connectors/{s['name']}/restart?includeTasks=true&onlyFailed=true",
                  method="POST", timeout=30)
    return "created" if status == 201 else "updated"


def running(connect_url: str) -> bool:
    """True when the connector and all its tasks run; raises ConnectorFailed with the trace if one failed."""
    name = spec()["name"]
    _, body = http_json(f"{connect_url}/connectors/{name}/status")
    tasks = body.get("tasks", [])
    failed = [t for t in tasks if t["state"] == "FAILED"]
    if body["connector"]["state"] == "FAILED" or failed:
        trace = (failed[0] if failed else body["connector"]).get("trace", "")
        hint = ("\n  hint: Kafka Connect remembers a position PostgreSQL no longer has (was one of them wiped "
                "without the other?). `make reset` wipes both." if "no longer available" in trace else "")
        raise ConnectorFailed(f"Debezium connector {name} FAILED:\n{trace[:2000]}{hint}")
    return body["connector"]["state"] == "RUNNING" and bool(tasks) and all(t["state"] == "RUNNING" for t in tasks)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--connect-url", required=True)
    p.add_argument("--timeout", type=float, default=120)
    args = p.parse_args()
    deadline = time.monotonic() + args.timeout
    while True:
        try:
            print(f"connector {spec()['name']}: {register(args.connect_url)}", flush=True)
            while not running(args.connect_url):
                if time.monotonic() > deadline:
                    raise TimeoutError("connector not RUNNING in time")
                time.sleep(1)
            print("connector RUNNING", flush=True)
            return 0
        except (urllib.error.URLError, OSError) as exc:
            if time.monotonic() > deadline:
                print(f"Kafka Connect unreachable at {args.connect_url}: {exc}", file=sys.stderr)
                return 1
            time.sleep(2)


if __name__ == "__main__":
    sys.exit(main())
