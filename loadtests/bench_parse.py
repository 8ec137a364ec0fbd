"""CPU per message of the projectors' payload validation: the hand-written checks (projectors/projection.py before
the contracts package, loaded from git) against today's ``projection.validate`` (contracts.events models), side by
side in one process. Pure CPU, no stack needed.

    .venv/bin/python -m loadtests.bench_parse [--base aed734d~1] [--n 20000]
"""
from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from projectors import projection as new


def load_old(rev: str):
    src = subprocess.check_output(["git", "show", f"{rev}:projectors/projection.py"], text=True)
    path = Path(tempfile.mkdtemp()) / "old_projection.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("old_projection", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["old_projection"] = mod
    spec.loader.exec_module(mod)
    return mod


def envelopes() -> dict[str, dict]:
    eid = str(uuid.uuid4())
    base = {"schema_version": 1, "aggregate_id": eid, "occurred_at": "2026-12-01T20:00:00.000Z"}
    hold = {"id": str(uuid.uuid4()), "event_id": eid, "buyer_id": str(uuid.uuid4()), "seats": ["A-1-1", "A-1-2"],
            "section": None, "quantity": 2, "total": 9000, "status": "active",
            "expires_at": "2026-12-01T20:10:00.000Z"}
    seats_held = {**base, "id": str(uuid.uuid4()), "type": "SeatsHeld", "data": {
        "hold": hold, "seats": [{"seat_id": s, "status": "held", "version": 2} for s in hold["seats"]],
        "ga_sections": []}}
    seat_ids = [f"A-{r}-{n}" for r in range(1, 201) for n in range(1, 251)]  # 50,000 seats
    vid = str(uuid.uuid4())
    created = {**base, "id": str(uuid.uuid4()), "type": "EventCreated", "data": {
        "id": eid, "organizer_id": str(uuid.uuid4()), "title": "Big", "category": "music", "status": "draft",
        "venue_id": vid, "venue": {"id": vid, "name": "Hall", "city": "Lisbon"},
        "starts_at": "2027-03-01T20:00:00.000Z", "currency": "EUR", "prices": {"A": 5000}, "capacity": 50_000,
        "sections": [{"code": "A", "name": "Stalls", "kind": "seated", "capacity": 50_000, "price": 5000,
                      "rows": [{"label": str(r), "seats": 250} for r in range(1, 201)]}],
        "seats": seat_ids, "version": 1,
        "created_at": "2026-12-01T20:00:00.000Z", "updated_at": "2026-12-01T20:00:00.000Z"}}
    return {"SeatsHeld": seats_held, "EventCreated (50,000 seats)": created}


def cpu_per_call(fn, env, n: int) -> float:
    fn(env)  # warm
    start = time.process_time()
    for _ in range(n):
        fn(env)
    return (time.process_time() - start) / n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", default="aed734d~1")
    ap.add_argument("--n", type=int, default=20000)
    a = ap.parse_args()
    old = load_old(a.base)
    print(f"{'message':<30} {'old (' + a.base + ')':>18} {'new':>12}   CPU per message, process time")
    for name, env in envelopes().items():
        n = a.n if "50,000" not in name else max(a.n // 1000, 5)
        o, w = cpu_per_call(old.validate, env, n), cpu_per_call(new.validate, env, n)
        unit, k = ("ms", 1e3) if o > 1e-3 or w > 1e-3 else ("µs", 1e6)
        print(f"{name:<30} {o * k:>15.1f} {unit} {w * k:>9.1f} {unit}   (n={n})")


if __name__ == "__main__":
    main()
