"""Prints the fault suite's results (``.stack/logs/faults.jsonl``) as the table in docs/reliability.md.

    .venv/bin/python -m tests.faults.report [--last N]
"""
from __future__ import annotations

import argparse
import json

from tests.faults.test_faults import REPORT


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--last", type=int, default=10, help="rows to show (the newest; default 10, one run)")
    rows = [json.loads(line) for line in REPORT.read_text().splitlines() if line.strip()][-p.parse_args().last:]
    print("| fault | what clients saw (answers by status) | orders 201 / lost | seats sold twice | time to recover "
          "| longest stretch without a 201 order | time to converge (checker run) | SSE: subscribers, reconnects, "
          "resets, gaps |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        answers = ", ".join(f"{k}: {v}" for k, v in sorted(r["answers"].items()))
        if r.get("transport_retries"):
            answers += f"; {r['transport_retries']} connections cut and retried"
        converge = "did not converge" if r["converge_s"] is None else f"{r['converge_s']} s ({r['check_s']} s)"
        print(f"| {r['fault']} | {answers} | {r['orders_201']} / {r['orders_lost']} | {r['sold_twice']} | "
              f"{r['recover_s']} s | {r['longest_pause_s']} s | {converge} | {r['subscribers']}, {r['reconnects']}, "
              f"{r['resets']}, {r['subscriber_gaps']} |")


if __name__ == "__main__":
    main()
