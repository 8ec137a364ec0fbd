"""Benchmark (not a test): mail through the notifier into Mailpit (issue 15).

    .venv/bin/python -m infra.stack exec -- .venv/bin/python loadtests/bench_mail.py --orders 300

Sets up, through the API, a free event (price 0: orders are confirmed at checkout, so payments are not measured)
and ``--buyers`` buyers. Two phases, each bounded by ``--hard-timeout``:

1. **Latency**: ``--orders`` orders of one seat each (one ticket, so one QR code per mail), ``--rate`` per second.
   For each, the time from the order's commit (``confirmed_at``, the transaction's time) to Mailpit's receipt of
   its confirmation mail (Mailpit's ``Created``; the mail is found by its ``Message-ID``, the notification id).
   Reported: p50, p90, p99, max.
2. **Throughput**: the notifier is stopped, ``--orders`` more orders are made, and the notifier is started: the
   rate at which it drains that backlog into Mailpit (first to last receipt), and its CPU per mail (utime + stime
   of its process, from /proc, over the drain).

Every mail must arrive exactly once; the run fails (exit 1) otherwise.
"""
from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from datetime import datetime

import aiohttp
import httpx
import jwt

sys.path.insert(0, ".")
from common.settings import Settings  # noqa: E402
from infra import stack  # noqa: E402
from loadtests.bench_checkins import account, call  # noqa: E402
from loadtests.bench_orders import cpu_seconds  # noqa: E402
from projectors.notifications import notification_id  # noqa: E402


def ts(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


async def setup(http: aiohttp.ClientSession, seats: int, buyers: int) -> tuple[str, list[tuple[str, str]]]:
    organizer = await account(http, "organizer")
    rows = [{"label": str(r + 1), "seats": 100} for r in range((seats + 99) // 100)]
    _, venue = await call(http, "POST", "/api/v1/venues", organizer, json={
        "name": "Mail Hall", "city": "Benchville", "sections": [{"code": "A", "name": "Stalls", "kind": "seated",
                                                                "rows": rows}]})
    _, event = await call(http, "POST", "/api/v1/events", organizer, json={
        "venue_id": venue["id"], "title": "Mail bench", "category": "music", "starts_at": "2030-01-01T20:00:00Z",
        "currency": "EUR", "prices": {"A": 0}})
    await call(http, "POST", f"/api/v1/events/{event['id']}/publish", organizer)
    tokens = [await account(http, "buyer") for _ in range(buyers)]
    # (buyer id, token): the id is the token's subject (the notification id is derived from it)
    return event["id"], [(jwt.decode(t, options={"verify_signature": False})["sub"], t) for t in tokens]


async def buy(http: aiohttp.ClientSession, event_id: str, seat: str, buyer: tuple[str, str]) -> dict:
    status, hold = await call(http, "POST", f"/api/v1/events/{event_id}/holds", buyer[1], json={"seats": [seat]})
    assert status == 201, hold
    status, order = await call(http, "POST", "/api/v1/orders", buyer[1], json={"hold_id": hold["id"]})
    assert status == 201 and order["status"] == "confirmed", order
    return {"order": order, "nid": notification_id(f"order:{order['id']}", "order_confirmed", buyer[0])}


def mailpit_created(settings: Settings, nids: set[str], timeout: float) -> dict[str, list[float]]:
    """notification id -> Mailpit receipt times of its mails (a list: a duplicate would show twice)."""
    found: dict[str, list[float]] = {}
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=settings.mailpit_url, timeout=30) as mp:
        while time.monotonic() < deadline:
            found = {}
            start = 0
            while True:
                page = mp.get("/api/v1/search", params={"query": "subject:\"Mail bench\"", "start": start,
                                                         "limit": 1000}).json()
                for m in page["messages"]:
                    nid = m["MessageID"].split("@")[0]
                    if nid in nids:
                        found.setdefault(nid, []).append(ts(m["Created"]))
                start += len(page["messages"])
                if not page["messages"] or start >= page["messages_count"]:
                    break
            if len(found) >= len(nids):
                time.sleep(3)  # a late duplicate would show now
                return found
            time.sleep(0.5)
    return found


async def make_orders(http, event_id: str, seats: list[str], buyers, rate: float) -> list[dict]:
    out, tasks = [], []
    gap = 1.0 / rate if rate > 0 else 0.0
    for i, seat in enumerate(seats):
        tasks.append(asyncio.create_task(buy(http, event_id, seat, buyers[i % len(buyers)])))
        if gap:
            await asyncio.sleep(gap)
    for t in tasks:
        out.append(await t)
    return out


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


async def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--orders", type=int, default=300)
    ap.add_argument("--buyers", type=int, default=10)
    ap.add_argument("--rate", type=float, default=20.0, help="orders per second in the latency phase")
    ap.add_argument("--hard-timeout", type=float, default=300.0)
    args = ap.parse_args()
    s = Settings()
    base = f"http://{s.command_host}:{s.command_port}"
    async with aiohttp.ClientSession(base, timeout=aiohttp.ClientTimeout(total=60)) as http:
        event_id, buyers = await setup(http, 2 * args.orders, args.buyers)
        seats = [f"A-{1 + i // 100}-{1 + i % 100}" for i in range(2 * args.orders)]
        print(f"event {event_id}: {args.buyers} buyers; phase 1: {args.orders} orders at {args.rate}/s", flush=True)
        made = await make_orders(http, event_id, seats[:args.orders], buyers, args.rate)
        got = mailpit_created(s, {m["nid"] for m in made}, args.hard_timeout)
        lat = [min(got[m["nid"]]) - ts(m["order"]["confirmed_at"]) for m in made if m["nid"] in got]
        dup1 = sum(len(v) - 1 for v in got.values())
        print(f"  commit -> mail in Mailpit: p50 {pct(lat, 50)*1000:.0f} ms, p90 {pct(lat, 90)*1000:.0f} ms, "
              f"p99 {pct(lat, 99)*1000:.0f} ms, max {max(lat)*1000:.0f} ms; {len(got)}/{len(made)} mails, "
              f"{dup1} duplicates", flush=True)

        print(f"phase 2: notifier stopped, {args.orders} orders queued, then started", flush=True)
        stack.NOTIFIER.stop()
        made2 = await make_orders(http, event_id, seats[args.orders:], buyers, 0)
        stack.NOTIFIER.ensure()
        pid = stack.NOTIFIER.pid()
        cpu0 = cpu_seconds(pid)
        got2 = mailpit_created(s, {m["nid"] for m in made2}, args.hard_timeout)
        cpu = cpu_seconds(pid) - cpu0  # includes the 3 s settle (idle) and the start-up
        times = sorted(min(v) for v in got2.values())
        dup2 = sum(len(v) - 1 for v in got2.values())
        span = times[-1] - times[0] if len(times) > 1 else float("nan")
        print(f"  drained {len(got2)}/{len(made2)} mails in {span:.1f} s: {len(times) / span:.1f} mails/s; "
              f"notifier CPU {cpu * 1000 / max(len(got2), 1):.1f} ms/mail; {dup2} duplicates", flush=True)
    ok = len(got) == len(made) and len(got2) == len(made2) and dup1 == dup2 == 0
    print("OK" if ok else "FAILED: mails missing or duplicated")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
