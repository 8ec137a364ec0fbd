"""The flash-sale opening, with and without the waiting room, on the same crowd (issue 16).

    .venv/bin/python -m infra.stack exec -- .venv/bin/python loadtests/opening.py --buyers 2000

Seeds ``--buyers`` buyers (loadtests/seed_buyers.py: test tooling, written straight into PostgreSQL), then runs
loadtests/k6/opening.js twice on the same buyers, each on its own new event of 500 seats with max_per_buyer 4:
first with the waiting room (admit_per_minute ``--admit-per-minute``), then without. After each run it checks
PostgreSQL: seats sold (exactly the seat count), the most places any buyer holds or bought (at most 4), and, for
the waiting room, the fairness of admission: buyers who joined before the opening must be admitted in an order
unrelated to when they joined (Spearman rank correlation near 0), later joiners exactly in arrival order. Prints
both runs side by side. Exit 1 if any check fails.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

import psycopg

sys.path.insert(0, ".")
from common.settings import Settings  # noqa: E402

K6 = os.path.join(".venv", "bin", "k6")


def spearman(xs: list[float], ys: list[float]) -> float:
    def ranks(v: list[float]) -> list[float]:
        order = sorted(range(len(v)), key=v.__getitem__)
        r = [0.0] * len(v)
        for rank, i in enumerate(order):
            r[i] = float(rank)
        return r
    rx, ry = ranks(xs), ranks(ys)
    n = len(xs)
    if n < 3:
        return float("nan")
    d2 = sum((a - b) ** 2 for a, b in zip(rx, ry))
    return 1 - 6 * d2 / (n * (n * n - 1))


def run_k6(buyers_file: str, room: bool, args) -> tuple[str, dict]:
    summary = tempfile.mktemp(suffix=".json")
    env = {**os.environ}
    cmd = [K6, "run", "-q", "--summary-export", summary, "-e", f"BUYERS_FILE={buyers_file}",
           "-e", f"WAITING_ROOM={1 if room else 0}", "-e", f"ADMIT_PER_MINUTE={args.admit_per_minute}",
           "-e", f"OPEN_IN={args.open_in}", "loadtests/k6/opening.js"]
    print(f"==> k6 {'with' if room else 'without'} the waiting room", flush=True)
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=args.open_in + 420)
    m = re.search(r"EVENT ([0-9a-f-]{36})", out.stdout + out.stderr)
    if not m:
        print(out.stdout[-3000:], out.stderr[-3000:])
        raise SystemExit("k6 did not report its event")
    with open(summary) as f:
        metrics = json.load(f)["metrics"]
    print(f"    k6 exit {out.returncode}", flush=True)
    return m.group(1), {"metrics": metrics, "exit": out.returncode}


def check(pg, event_id: str, room: bool) -> dict:
    q = lambda sql: pg.execute(sql, {"e": event_id}).fetchall()  # noqa: E731
    sold = q("SELECT coalesce(sum(coalesce(array_length(seats, 1), quantity)), 0) FROM orders "
             "WHERE event_id = %(e)s AND status = 'confirmed'")[0][0]
    per_buyer = q("SELECT buyer_id, sum(n) FROM (SELECT buyer_id, coalesce(array_length(seats, 1), quantity) n "
                  "FROM orders WHERE event_id = %(e)s AND status IN ('pending_payment', 'confirmed') UNION ALL "
                  "SELECT buyer_id, coalesce(array_length(seats, 1), quantity) FROM holds WHERE event_id = %(e)s "
                  "AND status = 'active') x GROUP BY buyer_id")
    out = {"sold": sold, "buyers_served": len(per_buyer), "max_per_buyer": max((n for _, n in per_buyer), default=0)}
    if room:
        rows = q("SELECT pre_open, joined_at, admitted_at, draw, seq FROM queue_entries WHERE event_id = %(e)s "
                 "AND admitted_at IS NOT NULL ORDER BY admitted_at, pre_open DESC, draw, seq")
        pre = [r for r in rows if r[0]]
        late = [r for r in rows if not r[0]]
        out["admitted"] = len(rows)
        out["pre_open_rho"] = spearman([r[1].timestamp() for r in pre], list(range(len(pre))))
        out["late_in_arrival_order"] = [r[4] for r in late] == sorted(r[4] for r in late)
        out["late_admitted"] = len(late)
        span = (rows[-1][2] - rows[0][2]).total_seconds() if len(rows) > 1 else 0
        out["admissions_per_s"] = round(len(rows) / span, 1) if span else None
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--buyers", type=int, default=2000)
    ap.add_argument("--admit-per-minute", type=int, default=3000)
    ap.add_argument("--open-in", type=int, default=60)
    args = ap.parse_args()
    s = Settings()
    buyers_file = tempfile.mktemp(suffix=".json")
    subprocess.run([sys.executable, "loadtests/seed_buyers.py", "--buyers", str(args.buyers), "--out", buyers_file],
                   check=True, timeout=600)
    results = {}
    with psycopg.connect(s.database_url, autocommit=True) as pg:
        for room in (True, False):
            event_id, k6 = run_k6(buyers_file, room, args)
            results[room] = {"event": event_id, **k6, **check(pg, event_id, room)}
    ok = True
    print(f"\n{'':34}{'waiting room':>18}{'no waiting room':>18}")

    def m(room: bool, name: str, stat: str) -> str:
        v = results[room]["metrics"].get(name, {}).get(stat)
        return "-" if v is None else f"{v:,.0f}"
    for label, name, stat in (("sold out after (ms, last checkout)", "sold_at_ms", "max"),
                              ("hold p50 (ms)", "hold_ms", "med"), ("hold p99 (ms)", "hold_ms", "p(99)"),
                              ("checkout p50 (ms)", "checkout_ms", "med"), ("checkout p99 (ms)", "checkout_ms", "p(99)"),
                              ("waited p50: open -> hold (ms)", "waited_ms", "med"),
                              ("waited p99 (ms)", "waited_ms", "p(99)"), ("holds tried", "hold_ms", "count"),
                              ("5xx", "http_5xx", "count"), ("unexpected answers", "unexpected_answers", "count")):
        print(f"{label:34}{m(True, name, stat):>18}{m(False, name, stat):>18}")
    for label, key in (("seats sold (PostgreSQL)", "sold"), ("buyers served", "buyers_served"),
                       ("most places of one buyer", "max_per_buyer")):
        print(f"{label:34}{results[True][key]:>18}{results[False][key]:>18}")
    r = results[True]
    print(f"waiting room: {r['admitted']} admitted at {r['admissions_per_s']}/s; pre-open joiners: Spearman rho "
          f"(join time vs admission order) {r['pre_open_rho']:.3f}; {r['late_admitted']} later joiners in arrival "
          f"order: {r['late_in_arrival_order']}")
    for room in (True, False):
        res = results[room]
        ok &= res["sold"] == 500 and res["max_per_buyer"] <= 4 and res["exit"] == 0
        ok &= res["metrics"].get("http_5xx", {}).get("count", 0) == 0
    ok &= r["late_in_arrival_order"] and abs(r["pre_open_rho"]) < 0.2
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
