"""Benchmark (not a test): check-ins per second on one event with 4 concurrent scanners (issue 14), and the time
from a scan to the organizer's count on the read side.

    .venv/bin/python -m infra.stack exec -- .venv/bin/python loadtests/bench_checkins.py --tickets 2000

Sets up, through the API, a free event (price 0: confirmed orders at once, so the set-up does not measure payments)
with ``--tickets`` GA places bought 10 per order, and ``--scanners`` scanner credentials. Then every scanner
checks in its share of the tickets with ``--in-flight`` requests at a time (1 = a door device that waits for each
answer), each ticket once. Reported: check-ins/s, latency p50/p99, the command service's CPU per check-in (its
processes and their children, from /proc), answers other than 200, and the scan-to-read-model delay: the time
until ``GET /api/v1/organizer/events/{id}/stats`` counts every check-in (``checked_in``), measured from the last
scan. Bounded by ``--hard-timeout``.
"""
from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
import uuid
from collections import Counter

import aiohttp
import psycopg

sys.path.insert(0, ".")
from common.settings import Settings  # noqa: E402
from loadtests.bench_orders import cpu_seconds  # noqa: E402


def command_pids() -> list[int]:
    out = subprocess.run(["pgrep", "-f", "command_service.entrypoints.app"], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


async def call(http: aiohttp.ClientSession, method: str, path: str, token: str | None = None, **kw):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with http.request(method, path, headers=headers, **kw) as r:
        return r.status, (await r.json() if r.content_type == "application/json" else None)


async def account(http: aiohttp.ClientSession, role: str) -> str:
    email = f"bench-{role}-{uuid.uuid4().hex}@example.com"
    body = {"email": email, "password": "bench password", "name": role, "role": role}
    assert (await call(http, "POST", "/api/v1/auth/register", json=body))[0] == 201
    status, tok = await call(http, "POST", "/api/v1/auth/token", json={"email": email, "password": "bench password"})
    assert status == 200, tok
    return tok["access_token"]


async def setup(http: aiohttp.ClientSession, args) -> tuple[str, str, list[str], list[str]]:
    organizer, buyer = await account(http, "organizer"), await account(http, "buyer")
    _, venue = await call(http, "POST", "/api/v1/venues", organizer, json={
        "name": "Bench Arena", "city": "Benchville",
        "sections": [{"code": "GA", "name": "Floor", "kind": "ga", "capacity": args.tickets}]})
    _, event = await call(http, "POST", "/api/v1/events", organizer, json={
        "venue_id": venue["id"], "title": "Check-in bench", "category": "music",
        "starts_at": "2030-01-01T20:00:00Z", "currency": "EUR", "prices": {"GA": 0}})
    await call(http, "POST", f"/api/v1/events/{event['id']}/publish", organizer)
    orders = []
    print(f"setting up {args.tickets} tickets ...", flush=True)
    for _ in range(args.tickets // 10):
        status, hold = await call(http, "POST", f"/api/v1/events/{event['id']}/holds", buyer,
                                  json={"section": "GA", "quantity": 10})
        assert status == 201, hold
        status, order = await call(http, "POST", "/api/v1/orders", buyer, json={"hold_id": hold["id"]})
        assert status == 201 and order["status"] == "confirmed", order
        orders.append(order["id"])
    with psycopg.connect(Settings().database_url) as conn:
        codes = [r[0] for r in conn.execute("SELECT code FROM tickets WHERE order_id = ANY(%s::uuid[])", (orders,))]
    scanners = []
    for i in range(args.scanners):
        status, sc = await call(http, "POST", f"/api/v1/events/{event['id']}/scanners", organizer,
                                json={"name": f"door {i}"})
        assert status == 201, sc
        scanners.append(sc["token"])
    return event["id"], organizer, scanners, codes


async def bench(args) -> None:
    s = Settings()
    async with aiohttp.ClientSession(base_url=args.url, connector=aiohttp.TCPConnector(limit=0)) as http, \
            aiohttp.ClientSession(base_url=args.query_url) as query:
        event_id, organizer, scanners, codes = await setup(http, args)
        pids = command_pids()
        latencies: list[float] = []
        answers: Counter = Counter()
        queue = list(reversed(codes))

        async def device(token: str) -> None:
            while queue:
                code = queue.pop()
                t = time.perf_counter()
                status, _ = await call(http, "POST", f"/api/v1/events/{event_id}/checkins", token, json={"code": code})
                latencies.append(time.perf_counter() - t)
                answers[status] += 1

        cpu0, t0 = sum(cpu_seconds(p) for p in pids), time.monotonic()
        await asyncio.wait_for(asyncio.gather(*(device(tok) for tok in scanners for _ in range(args.in_flight))),
                               args.hard_timeout)
        elapsed = time.monotonic() - t0
        cpu = sum(cpu_seconds(p) for p in pids) - cpu0
        last_scan = time.monotonic()
        counted = None
        while time.monotonic() - last_scan < 60:
            async with query.get(f"/api/v1/organizer/events/{event_id}/stats",
                                 headers={"Authorization": f"Bearer {organizer}"}) as r:
                if r.status == 200 and (await r.json()).get("checked_in") == answers[200]:
                    counted = time.monotonic() - last_scan
                    break
            await asyncio.sleep(0.05)

    def pct(q: float) -> float:
        return statistics.quantiles(latencies, n=100)[q - 1] * 1000 if len(latencies) > 1 else float("nan")

    n = answers[200]
    print(f"check-ins: {n} in {elapsed:.2f} s = {n / elapsed:.0f}/s with {args.scanners} scanners x "
          f"{args.in_flight} in flight; answers {dict(answers)}")
    print(f"latency p50 {pct(50):.1f} ms, p99 {pct(99):.1f} ms; command service CPU {cpu * 1000 / max(n, 1):.2f} ms "
          f"per check-in ({len(pids)} processes)")
    print("read side counted every check-in " + (f"{counted * 1000:.0f} ms after the last scan" if counted is not None
                                                  else "NOT within 60 s (or stats has no checked_in yet)"))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default="http://127.0.0.1:8001")
    p.add_argument("--query-url", default="http://127.0.0.1:8002")
    p.add_argument("--tickets", type=int, default=2000)
    p.add_argument("--scanners", type=int, default=4)
    p.add_argument("--in-flight", type=int, default=1, help="requests each scanner has in flight at once")
    p.add_argument("--hard-timeout", type=float, default=300.0)
    asyncio.run(bench(p.parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
