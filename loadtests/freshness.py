"""Benchmark (not a test): freshness of the read models and of the live seat feed.

    .venv/bin/python -m infra.stack exec -- .venv/bin/python loadtests/freshness.py --rate 40 --duration 20

Sets up its own organizer, venue, on-sale event and buyers through the command API (loopback only),
then runs a steady open-loop load for ``--duration`` seconds: ``--rate`` times a second a buyer holds
the next free seat and checks it out (two PostgreSQL commits per operation; at most ``--max-ops``). The event is
free, so the checkout itself confirms the order and sells the seat: this measures the CDC pipeline, not payments (a
paid seat becomes sold when the provider's webhook confirms its order; loadtests/bench_orders.py measures that).
For every commit it takes the moment the HTTP response arrived as the commit time (the commit happens
just before the response is written, so this slightly UNDER-states latency; ``occurred_at``, stamped
before the transaction, would over-state it).

The projector stamps every seat-feed entry with ``rm`` = when the read-model write for it finished, and
the Redis stream id is the moment the entry was appended. After the run, the feed of the event is read
back and, per seat and state (held, then sold), the first entry showing that state (or a later one) gives:

- commit -> read model   (``rm`` - commit time)
- commit -> seat feed    (stream id ms - commit time)

Prints p50/p90/p99/max for both. Everything is bounded by ``--hard-timeout``.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import uuid

import aiohttp
import redis


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default=f"http://127.0.0.1:{os.environ.get('EVENTLY_COMMAND_PORT', '8001')}")
    p.add_argument("--redis", default=os.environ.get("EVENTLY_REDIS_URL", "redis://127.0.0.1:16379/0"))
    p.add_argument("--rate", type=float, default=40.0, help="hold+checkout operations started per second")
    p.add_argument("--duration", type=float, default=20.0, help="seconds of load")
    p.add_argument("--max-ops", type=int, default=5000, help="upper bound on operations")
    p.add_argument("--buyers", type=int, default=20)
    p.add_argument("--hard-timeout", type=float, default=180.0)
    p.add_argument("--json", action="store_true", help="print the result as JSON too")
    return p.parse_args(argv)


async def call(s: aiohttp.ClientSession, method: str, path: str, token: str | None = None, **kw):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with s.request(method, path, headers=headers, **kw) as r:
        body = await r.json(content_type=None)
        return r.status, body, time.time()


async def account(s: aiohttp.ClientSession, role: str) -> str:
    email = f"fresh-{role}-{uuid.uuid4().hex}@example.com"
    st, body, _ = await call(s, "POST", "/api/v1/auth/register",
                             json={"email": email, "password": "correct horse battery", "name": role, "role": role})
    assert st == 201, body
    st, body, _ = await call(s, "POST", "/api/v1/auth/token", json={"email": email, "password": "correct horse battery"})
    return body["access_token"]


async def setup(s: aiohttp.ClientSession, args: argparse.Namespace, seats_needed: int) -> tuple[str, list[str], list[str]]:
    org = await account(s, "organizer")
    rows = max(1, -(-seats_needed // 100))
    sections = [{"code": "F", "name": "Floor", "kind": "seated",
                 "rows": [{"label": str(i + 1), "seats": 100} for i in range(rows)]}]
    st, venue, _ = await call(s, "POST", "/api/v1/venues", org, json={"name": "Freshness hall", "city": "Porto",
                                                                      "sections": sections})
    assert st == 201, venue
    st, ev, _ = await call(s, "POST", "/api/v1/events", org, json={
        "venue_id": venue["id"], "title": "Freshness run", "category": "bench", "starts_at": "2027-01-01T20:00:00Z",
        "currency": "EUR", "prices": {"F": 0}})  # free: a checkout sells the seat in its own commit
    assert st == 201, ev
    st, body, _ = await call(s, "POST", f"/api/v1/events/{ev['id']}/publish", org)
    assert st == 200, body
    buyers = [await account(s, "buyer") for _ in range(args.buyers)]
    seat_ids = [f"F-{r + 1}-{n + 1}" for r in range(rows) for n in range(100)]
    return ev["id"], buyers, seat_ids


async def run(args: argparse.Namespace) -> dict:
    ops = min(args.max_ops, int(args.rate * args.duration))
    commits: dict[tuple[str, str], float] = {}
    errors: list[str] = []
    async with aiohttp.ClientSession(args.url, connector=aiohttp.TCPConnector(limit=200)) as s:
        event_id, buyers, seat_ids = await setup(s, args, ops)
        await asyncio.sleep(2)  # let EventCreated/EventPublished reach the read models

        async def op(i: int) -> None:
            buyer, seat = buyers[i % len(buyers)], seat_ids[i]
            st, hold, t = await call(s, "POST", f"/api/v1/events/{event_id}/holds", buyer, json={"seats": [seat]})
            if st != 201:
                errors.append(f"hold {st} {hold}")
                return
            commits[(seat, "held")] = t
            st, order, t = await call(s, "POST", "/api/v1/orders", buyer, json={"hold_id": hold["id"]})
            if st != 201:
                errors.append(f"order {st} {order}")
                return
            commits[(seat, "sold")] = t

        started = time.monotonic()
        tasks = []
        for i in range(ops):
            delay = started + i / args.rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(op(i)))
        await asyncio.gather(*tasks)
        load_seconds = time.monotonic() - started
    # read the feed back once the projector caught up (bounded wait)
    r = redis.Redis.from_url(args.redis)
    want = {seat for seat, _ in commits}
    deadline = time.monotonic() + 30
    first: dict[tuple[str, str], tuple[float, float, float]] = {}
    while True:
        first.clear()
        for entry_id, f in r.xrange(f"feed:{event_id}"):
            feed_ms = int(entry_id.split(b"-")[0])
            rm_ms = float(f[b"rm"])
            k_ms = float(f.get(b"k", b"nan"))
            for ch in json.loads(f[b"data"])["changes"]:
                seat, status = ch.get("seat"), ch.get("status")
                if seat not in want:
                    continue
                for target in (("held", "sold") if status == "sold" else ("held",) if status == "held" else ()):
                    first.setdefault((seat, target), (rm_ms, feed_ms, k_ms))
        if all(k in first for k in commits) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    rm_lat = sorted(first[k][0] - commits[k] * 1000 for k in commits if k in first)
    feed_lat = sorted(first[k][1] - commits[k] * 1000 for k in commits if k in first)
    # the Kafka timestamp of the entry's newest message: an upper bound of when the seat's change reached Kafka
    kafka_lat = sorted(first[k][2] - commits[k] * 1000 for k in commits if k in first)

    def pct(xs: list[float], q: float) -> float:
        return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")
    return {"event_id": event_id, "operations": ops, "commits": len(commits), "matched": len(rm_lat),
            "errors": len(errors), "first_errors": errors[:3], "load_seconds": round(load_seconds, 1),
            "commits_per_s": round(len(commits) / load_seconds, 1) if load_seconds else 0,
            "read_model_ms": {q: round(pct(rm_lat, v), 1) for q, v in (("p50", .5), ("p90", .9), ("p99", .99), ("max", 1))},
            "kafka_ms_upper": {q: round(pct(kafka_lat, v), 1) for q, v in (("p50", .5), ("p99", .99))},
            "feed_ms": {q: round(pct(feed_lat, v), 1) for q, v in (("p50", .5), ("p90", .9), ("p99", .99), ("max", 1))}}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        res = asyncio.run(asyncio.wait_for(run(args), args.hard_timeout))
    except asyncio.TimeoutError:
        print(f"aborted after --hard-timeout {args.hard_timeout}s", file=sys.stderr)
        return 2
    print(f"{res['commits']} commits ({res['commits_per_s']}/s over {res['load_seconds']}s), "
          f"{res['matched']} matched in the feed, {res['errors']} errors {res['first_errors']}")
    rm, fd = res["read_model_ms"], res["feed_ms"]
    print(f"commit -> read model: p50 {rm['p50']} ms  p90 {rm['p90']} ms  p99 {rm['p99']} ms  max {rm['max']} ms")
    print(f"commit -> seat feed : p50 {fd['p50']} ms  p90 {fd['p90']} ms  p99 {fd['p99']} ms  max {fd['max']} ms")
    print(f"(commit -> Kafka append, upper bound: p50 {res['kafka_ms_upper']['p50']} ms  p99 {res['kafka_ms_upper']['p99']} ms)")
    if args.json:
        print(json.dumps(res))
    return 0 if res["matched"] == res["commits"] and not res["errors"] else 1


if __name__ == "__main__":
    sys.exit(main())
