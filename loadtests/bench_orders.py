"""Benchmark (not a test): holds/s and orders/s (hold + checkout) on one event.

    .venv/bin/python loadtests/bench_orders.py --url http://127.0.0.1:8001 --duration 20 --concurrency 64

Sets up its own organizer, venue, on-sale event and buyers through the API, then runs
``concurrency`` buyers in a closed loop for ``duration`` seconds: each holds the next free seats
(``--seats-per-order``) and checks the hold out. Every hold and order is counted only on its
success status. The whole run is bounded by ``--hard-timeout`` seconds.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
import uuid
from collections import Counter

import aiohttp


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default="http://127.0.0.1:8001")
    p.add_argument("--duration", type=float, default=20.0, help="measured seconds")
    p.add_argument("--concurrency", type=int, default=64, help="buyers in a closed loop")
    p.add_argument("--seats-per-order", type=int, default=1)
    p.add_argument("--rows", type=int, default=50, help="rows of 1000 seats in the venue (<= 50)")
    p.add_argument("--hard-timeout", type=float, default=300.0, help="abort the whole run after this many seconds")
    p.add_argument("--cpu-pid", type=int, action="append", default=[], metavar="PID",
                   help="also report CPU ms per order of this process and its children (Linux; repeatable)")
    return p.parse_args(argv)


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` and its live children (e.g. a postmaster and its backends), from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            children = [int(c) for c in f.read().split()]
    except OSError:
        children = []
    for p in (pid, *children):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except (OSError, IndexError, ValueError):
            pass
    return total


async def call(session: aiohttp.ClientSession, method: str, path: str, token: str | None = None, **kw):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with session.request(method, path, headers=headers, **kw) as r:
        return r.status, await r.json(content_type=None)


async def account(session: aiohttp.ClientSession, role: str) -> str:
    email = f"bench-{role}-{uuid.uuid4().hex[:12]}@example.com"
    status, body = await call(session, "POST", "/api/v1/auth/register",
                              json={"email": email, "password": "bench-password", "name": "Bench", "role": role})
    assert status == 201, body
    status, body = await call(session, "POST", "/api/v1/auth/token",
                              json={"email": email, "password": "bench-password"})
    assert status == 200, body
    return body["access_token"]


async def setup(session: aiohttp.ClientSession, args: argparse.Namespace) -> tuple[str, list[str], list[str]]:
    organizer = await account(session, "organizer")
    rows = [{"label": str(r), "seats": 1000} for r in range(1, args.rows + 1)]
    status, venue = await call(session, "POST", "/api/v1/venues", organizer, json={
        "name": "Bench Arena", "city": "Benchville", "sections": [{"code": "A", "name": "Floor", "kind": "seated",
                                                                   "rows": rows}]})
    assert status == 201, venue
    status, event = await call(session, "POST", "/api/v1/events", organizer, json={
        "venue_id": venue["id"], "title": "Bench night", "category": "bench", "starts_at": "2030-01-01T20:00:00Z",
        "currency": "EUR", "prices": {"A": 4200}})
    assert status == 201, event
    status, _ = await call(session, "POST", f"/api/v1/events/{event['id']}/publish", organizer)
    assert status == 200
    buyers = await asyncio.gather(*(account(session, "buyer") for _ in range(args.concurrency)))
    seats = [f"A-{r}-{n}" for r in range(1, args.rows + 1) for n in range(1, 1001)]
    return event["id"], list(buyers), seats


async def bench(args: argparse.Namespace) -> dict:
    connector = aiohttp.TCPConnector(limit=args.concurrency + 8)
    async with aiohttp.ClientSession(args.url, connector=connector) as session:
        t0 = time.perf_counter()
        event_id, buyers, seats = await setup(session, args)
        print(f"setup: event {event_id}, {len(seats)} seats, {len(buyers)} buyers in {time.perf_counter() - t0:.1f}s",
              flush=True)
        batches = iter([seats[i:i + args.seats_per_order] for i in range(0, len(seats), args.seats_per_order)])
        statuses: Counter[str] = Counter()
        hold_lat: list[float] = []
        order_lat: list[float] = []
        holds = orders = 0
        deadline = time.perf_counter() + args.duration

        async def buyer(token: str) -> None:
            nonlocal holds, orders
            for batch in batches:
                if time.perf_counter() >= deadline:
                    return
                try:
                    t = time.perf_counter()
                    status, hold = await call(session, "POST", f"/api/v1/events/{event_id}/holds", token,
                                              json={"seats": batch})
                    hold_lat.append(time.perf_counter() - t)
                    statuses[f"hold {status}"] += 1
                    if status != 201:
                        continue
                    holds += 1
                    t = time.perf_counter()
                    status, _ = await call(session, "POST", "/api/v1/orders", token, json={"hold_id": hold["id"]})
                    order_lat.append(time.perf_counter() - t)
                    statuses[f"order {status}"] += 1
                    orders += status == 201
                except aiohttp.ClientError as exc:  # counted, not fatal: the figures say how many failed
                    statuses[f"client error {type(exc).__name__}"] += 1

        cpu0 = {pid: cpu_seconds(pid) for pid in args.cpu_pid}
        own0 = time.process_time()
        started = time.perf_counter()
        await asyncio.gather(*(buyer(b) for b in buyers))
        elapsed = time.perf_counter() - started
        own = time.process_time() - own0
        cpu = {pid: cpu_seconds(pid) - cpu0[pid] for pid in args.cpu_pid}

    def pct(xs: list[float], q: float) -> float:
        return statistics.quantiles(xs, n=100)[q - 1] * 1000 if len(xs) > 1 else float("nan")

    return {"elapsed_s": elapsed, "holds": holds, "orders": orders, "holds_per_s": holds / elapsed,
            "orders_per_s": orders / elapsed, "hold_p50_ms": pct(hold_lat, 50), "hold_p99_ms": pct(hold_lat, 99),
            "order_p50_ms": pct(order_lat, 50), "order_p99_ms": pct(order_lat, 99), "statuses": dict(statuses),
            "cpu_s": cpu, "client_cpu_s": own}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        r = asyncio.run(asyncio.wait_for(bench(args), timeout=args.hard_timeout))
    except asyncio.TimeoutError:
        print(f"aborted: the run exceeded --hard-timeout {args.hard_timeout}s", file=sys.stderr)
        return 2
    print(f"{r['holds']} holds, {r['orders']} orders in {r['elapsed_s']:.1f}s with {args.concurrency} buyers")
    print(f"holds/s  {r['holds_per_s']:8.1f}   (hold p50 {r['hold_p50_ms']:.1f} ms, p99 {r['hold_p99_ms']:.1f} ms)")
    print(f"orders/s {r['orders_per_s']:8.1f}   "
          f"(checkout p50 {r['order_p50_ms']:.1f} ms, p99 {r['order_p99_ms']:.1f} ms)")
    print("responses: " + ", ".join(f"{k}: {v}" for k, v in sorted(r["statuses"].items())))
    per = lambda s: s * 1000 / max(r["orders"], 1)  # noqa: E731
    print("CPU ms/order: " + ", ".join([f"pid {pid} {per(s):.2f}" for pid, s in r["cpu_s"].items()]
                                       + [f"client {per(r['client_cpu_s']):.2f}"]))
    return 0 if r["orders"] else 1


if __name__ == "__main__":
    sys.exit(main())
