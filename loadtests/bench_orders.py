"""Benchmark (not a test): orders/s with and without payment, side by side in one run on one box.

    .venv/bin/python -m infra.stack exec -- \
        .venv/bin/python loadtests/bench_orders.py --mode both --duration 20 --concurrency 48

Sets up its own organizer and buyers through the API, and for every phase a fresh venue and on-sale event, then
runs ``concurrency`` buyers in a closed loop for ``duration`` seconds per phase. Each buyer holds the next free
seats (``--seats-per-order``) and checks the hold out:

* ``free``: the event's price is 0, so checkout confirms the order at once (201 ``confirmed``): the same code path
  as every order took before payments.
* ``paid``: price 4200; checkout answers 201 ``pending_payment`` with a devpay payment, the buyer captures it at
  devpay (``POST /v1/payments/{id}/capture``, what its Pay button does), devpay's signed webhook reaches the command
  service, which confirms the order. The buyer's next order starts once this one is confirmed, so orders/s counts
  complete purchases (hold + checkout + capture + webhook).

``--mode both`` runs free then paid, each on its own fresh event, in the same process; ``--rounds N`` repeats the
pair, alternating which goes first. An order counts only once confirmed. Reported per phase: holds/s and confirmed
orders/s with latencies, every answer, and CPU ms per order (utime+stime from /proc over the phase) of the command
service (its processes and workers, found by the port of ``--url``), devpay, PostgreSQL (found by the port of
``database_url``), any ``--cpu-pid`` and the bench client itself; for paid, devpay's capture latency and the time
from capture to confirmed (p50/p99). Then paid vs free: the payment's share of the command service's CPU per order
and devpay's CPU per payment.

The paid phase needs the stack's environment (``infra.stack exec``): devpay's API key and the database URL.
Bounds: each phase stops starting orders after ``--duration``; a buyer waits at most ``--confirm-timeout`` for its
order's confirmation; the whole run is aborted after ``--hard-timeout`` seconds. Loopback only.
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
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PAID_PRICE = 4200


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default="http://127.0.0.1:8001")
    p.add_argument("--mode", choices=("both", "free", "paid"), default="both",
                   help="free: price 0, confirmed at checkout; paid: through devpay; both: one after the other")
    p.add_argument("--rounds", type=int, default=1, help="repeat the phases, alternating their order (--mode both)")
    p.add_argument("--duration", type=float, default=20.0, help="measured seconds per phase")
    p.add_argument("--concurrency", type=int, default=64, help="buyers in a closed loop")
    p.add_argument("--seats-per-order", type=int, default=1)
    p.add_argument("--rows", type=int, default=50, help="rows of 1000 seats in each phase's venue (<= 50)")
    p.add_argument("--confirm-timeout", type=float, default=30.0,
                   help="seconds a paid order may take from capture to confirmed before it counts as not confirmed")
    p.add_argument("--poll-interval", type=float, default=0.01, help="seconds between reads of the orders table")
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


def _family(pid: int) -> set[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return {pid, *(int(c) for c in f.read().split())}
    except OSError:
        return {pid}


def measured_pids(args: argparse.Namespace) -> dict[str, int]:
    """The processes whose CPU is reported, by name: the command service behind ``--url`` (the parent process,
    whose children are its workers: cpu_seconds counts them), devpay, PostgreSQL, then every --cpu-pid."""
    # imported here: both import cpu_seconds from this module
    from loadtests.bench_checkins import command_pids
    from loadtests.bench_devpay import pid_on_port
    from common.settings import Settings

    s = Settings()
    found: dict[str, int] = {}
    listener = pid_on_port(urlsplit(args.url).port or 80)
    parents = [p for p in command_pids() if listener in _family(p)]
    if parents:
        found["command service"] = parents[0]
    elif listener:  # a command service started some other way: at least the process that answers
        found["command service"] = listener
    for name, port in (("devpay", s.devpay_port), ("PostgreSQL", urlsplit(s.database_url).port)):
        pid = pid_on_port(port) if port else None
        if pid:
            found[name] = pid
    for pid in args.cpu_pid:
        if pid not in found.values():
            found[f"pid {pid}"] = pid
    return found


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


async def on_sale_event(session: aiohttp.ClientSession, organizer: str, args: argparse.Namespace,
                        price: int) -> tuple[str, list[str]]:
    """A fresh venue and published event at ``price`` (0 = free orders); returns its id and its seats."""
    rows = [{"label": str(r), "seats": 1000} for r in range(1, args.rows + 1)]
    status, venue = await call(session, "POST", "/api/v1/venues", organizer, json={
        "name": "Bench Arena", "city": "Benchville", "sections": [{"code": "A", "name": "Floor", "kind": "seated",
                                                                   "rows": rows}]})
    assert status == 201, venue
    status, event = await call(session, "POST", "/api/v1/events", organizer, json={
        "venue_id": venue["id"], "title": f"Bench night ({'free' if price == 0 else 'paid'})", "category": "bench",
        "starts_at": "2030-01-01T20:00:00Z", "currency": "EUR", "prices": {"A": price}})
    assert status == 201, event
    status, _ = await call(session, "POST", f"/api/v1/events/{event['id']}/publish", organizer)
    assert status == 200
    return event["id"], [f"A-{r}-{n}" for r in range(1, args.rows + 1) for n in range(1, 1001)]


class Confirmations:
    """Sees paid orders become confirmed by reading PostgreSQL's ``orders`` table, one query per tick for every
    order still waiting.

    Why the table and not the API (re-POST /orders with the same hold answers the order as it is now): a poll
    through the API costs the command service an HTTP request and two transactions per waiting order per tick,
    i.e. CPU in exactly the processes whose CPU per order this bench compares, in proportion to how often it
    polls. One SELECT by primary key for all waiting orders costs PostgreSQL a fraction of a millisecond per tick
    and nothing in the command service. The row's ``confirmed_at`` (stamped by the command service when the
    webhook confirms the order; same host clock) also gives the capture -> confirmed time independently of the
    poll interval. It is test tooling reading, never writing."""

    def __init__(self, dsn: str, interval: float) -> None:
        self.dsn, self.interval = dsn, interval
        self.waiting: dict[str, asyncio.Future] = {}
        self.queries = 0

    async def run(self) -> None:
        import psycopg

        async with await psycopg.AsyncConnection.connect(self.dsn, autocommit=True) as conn:
            while True:
                if self.waiting:
                    cur = await conn.execute(
                        "SELECT id::text, status, confirmed_at FROM orders "
                        "WHERE id = ANY(%s::uuid[]) AND status <> 'pending_payment'", (list(self.waiting),))
                    self.queries += 1
                    for order_id, status, confirmed_at in await cur.fetchall():
                        fut = self.waiting.pop(order_id, None)
                        if fut is not None and not fut.done():
                            fut.set_result((status, confirmed_at))
                await asyncio.sleep(self.interval)

    async def wait(self, order_id: str, timeout: float):
        """(status, confirmed_at) once the order is no longer pending_payment, or None after ``timeout``."""
        fut = asyncio.get_running_loop().create_future()
        self.waiting[order_id] = fut
        try:
            return await asyncio.wait_for(fut, timeout)
        except asyncio.TimeoutError:
            self.waiting.pop(order_id, None)
            return None


def pct(xs: list[float], q: int) -> float:
    return statistics.quantiles(xs, n=100)[q - 1] * 1000 if len(xs) > 1 else float("nan")


async def run_phase(kind: str, session: aiohttp.ClientSession, devpay: aiohttp.ClientSession | None,
                    watch: Confirmations | None, organizer: str, buyers: list[str], pids: dict[str, int],
                    args: argparse.Namespace) -> dict:
    t0 = time.perf_counter()
    event_id, seats = await on_sale_event(session, organizer, args, 0 if kind == "free" else PAID_PRICE)
    print(f"[{kind}] setup: event {event_id}, {len(seats)} seats in {time.perf_counter() - t0:.1f}s", flush=True)
    batches = iter([seats[i:i + args.seats_per_order] for i in range(0, len(seats), args.seats_per_order)])
    statuses: Counter[str] = Counter()
    hold_lat: list[float] = []
    order_lat: list[float] = []
    capture_lat: list[float] = []
    to_confirmed: list[float] = []  # capture sent -> the order's confirmed_at
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
                status, order = await call(session, "POST", "/api/v1/orders", token, json={"hold_id": hold["id"]})
                order_lat.append(time.perf_counter() - t)
                state = order.get("status") if status in (200, 201) and isinstance(order, dict) else None
                statuses[f"order {status}" + (f" {state}" if state else "")] += 1
                if status != 201:
                    continue
                if kind == "free":
                    orders += state == "confirmed"
                    continue
                if state != "pending_payment":
                    continue
                sent = time.time()
                t = time.perf_counter()
                async with devpay.post(f"/v1/payments/{order['payment']['id']}/capture") as r:
                    await r.read()
                    capture_lat.append(time.perf_counter() - t)
                    statuses[f"capture {r.status}"] += 1
                    if r.status != 200:
                        continue
                outcome = await watch.wait(order["id"], args.confirm_timeout)
                if outcome is None:
                    statuses[f"not confirmed within {args.confirm_timeout:g}s"] += 1
                    continue
                state, confirmed_at = outcome
                statuses[f"then {state}"] += 1
                if state == "confirmed":
                    orders += 1
                    to_confirmed.append(confirmed_at.timestamp() - sent)
            except aiohttp.ClientError as exc:  # counted, not fatal: the figures say how many failed
                statuses[f"client error {type(exc).__name__}"] += 1

    polls0 = watch.queries if watch else 0
    cpu0 = {name: cpu_seconds(pid) for name, pid in pids.items()}
    own0 = time.process_time()
    started = time.perf_counter()
    await asyncio.gather(*(buyer(b) for b in buyers))
    elapsed = time.perf_counter() - started
    own = time.process_time() - own0
    cpu = {name: cpu_seconds(pid) - cpu0[name] for name, pid in pids.items()}
    return {"kind": kind, "elapsed_s": elapsed, "holds": holds, "orders": orders, "hold_lat": hold_lat,
            "order_lat": order_lat, "capture_lat": capture_lat, "to_confirmed": to_confirmed,
            "statuses": statuses, "cpu_s": cpu, "client_cpu_s": own,
            "polls": (watch.queries - polls0) if watch else 0}


def report(r: dict, args: argparse.Namespace, pids: dict[str, int]) -> None:
    k, elapsed = r["kind"], r["elapsed_s"]
    what = "hold + checkout (confirmed at checkout)" if k == "free" else \
        "hold + checkout + devpay capture + webhook -> confirmed"
    print(f"[{k}] {r['holds']} holds, {r['orders']} orders confirmed in {elapsed:.1f}s with {args.concurrency} "
          f"buyers: {what}")
    print(f"[{k}] holds/s  {r['holds'] / elapsed:8.1f}   (hold p50 {pct(r['hold_lat'], 50):.1f} ms, "
          f"p99 {pct(r['hold_lat'], 99):.1f} ms)")
    print(f"[{k}] orders/s {r['orders'] / elapsed:8.1f}   (checkout p50 {pct(r['order_lat'], 50):.1f} ms, "
          f"p99 {pct(r['order_lat'], 99):.1f} ms)")
    if k == "paid":
        print(f"[{k}] payment: capture p50 {pct(r['capture_lat'], 50):.1f} ms, p99 {pct(r['capture_lat'], 99):.1f} ms;"
              f" capture -> confirmed p50 {pct(r['to_confirmed'], 50):.1f} ms, p99 {pct(r['to_confirmed'], 99):.1f} ms"
              f" (orders table read {r['polls']} times, in PostgreSQL's CPU)")
    print(f"[{k}] responses: " + ", ".join(f"{s}: {n}" for s, n in sorted(r["statuses"].items())))
    per = lambda s: s * 1000 / max(r["orders"], 1)  # noqa: E731
    print(f"[{k}] CPU ms/order: " + ", ".join([f"{name} (pid {pids[name]}) {per(s):.2f}"
                                               for name, s in r["cpu_s"].items()]
                                              + [f"client {per(r['client_cpu_s']):.2f}"]), flush=True)


def compare(results: list[dict]) -> None:
    """Paid vs free over every phase of each kind (sums, so rounds weigh by their orders)."""
    tot = {}
    for kind in ("free", "paid"):
        rs = [r for r in results if r["kind"] == kind]
        orders = sum(r["orders"] for r in rs)
        cpu: Counter[str] = Counter()
        for r in rs:
            cpu.update(r["cpu_s"])
        tot[kind] = {"orders": orders, "elapsed": sum(r["elapsed_s"] for r in rs),
                     "cpu_ms": {n: s * 1000 / max(orders, 1) for n, s in cpu.items()},
                     "to_confirmed": [x for r in rs for x in r["to_confirmed"]]}
    f, p = tot["free"], tot["paid"]
    rate = lambda t: t["orders"] / t["elapsed"] if t["elapsed"] else 0.0  # noqa: E731
    print("paid vs free (same process, same box, one after the other):")
    ratio = f" = {rate(p) / rate(f):.2f} x free" if rate(f) else ""
    print(f"  orders/s         paid {rate(p):8.1f}   free {rate(f):8.1f}{ratio}")
    cmd_p, cmd_f = p["cpu_ms"].get("command service"), f["cpu_ms"].get("command service")
    if cmd_p is not None and cmd_f is not None:
        extra = cmd_p - cmd_f
        share = f", {100 * extra / cmd_p:.0f}% of a paid order's" if cmd_p > 0 else ""
        print(f"  command service  paid {cmd_p:6.2f} ms/order   free {cmd_f:6.2f} ms/order   -> the payment "
              f"(provider call at checkout + webhook) {extra:+.2f} ms/order{share}")
    for name in p["cpu_ms"]:
        if name != "command service":
            print(f"  {name:<16} paid {p['cpu_ms'][name]:6.2f} ms/order   free {f['cpu_ms'].get(name, 0.0):6.2f} "
                  f"ms/order" + ("   (devpay's CPU per payment: create + capture + its webhook)"
                                 if name == "devpay" else ""))
    print(f"  capture -> confirmed p50 {pct(p['to_confirmed'], 50):.1f} ms, p99 {pct(p['to_confirmed'], 99):.1f} ms "
          f"({len(p['to_confirmed'])} orders)")


def preflight(args: argparse.Namespace):
    """The stack's settings, once they allow the run: devpay's key for a paid phase, loopback addresses only."""
    from common.settings import Settings

    s = Settings()
    if args.mode != "free" and not s.devpay_api_key:
        raise SystemExit("the paid phase needs devpay's API key: run under "
                         "`.venv/bin/python -m infra.stack exec -- ...` (EVENTLY_DEVPAY_API_KEY)")
    for u in (args.url, s.devpay_url, s.database_url):
        if urlsplit(u).hostname not in ("127.0.0.1", "localhost", "::1"):
            raise SystemExit(f"loopback only: {u}")
    return s


async def bench(args: argparse.Namespace, s) -> list[dict]:
    kinds = ["free", "paid"] if args.mode == "both" else [args.mode]
    pids = measured_pids(args)
    hook = urlsplit(s.devpay_webhook_url)
    if "paid" in kinds and (hook.port, hook.hostname) != (urlsplit(args.url).port, urlsplit(args.url).hostname):
        print(f"note: devpay's webhooks go to {s.devpay_webhook_url}, not to --url {args.url}: the paid phase's "
              "confirmations are another process's CPU", flush=True)
    connector = aiohttp.TCPConnector(limit=args.concurrency + 8)
    async with aiohttp.ClientSession(args.url, connector=connector) as session, \
            aiohttp.ClientSession(s.devpay_url, headers={"Authorization": f"Bearer {s.devpay_api_key}"},
                                  connector=aiohttp.TCPConnector(limit=args.concurrency + 8)) as devpay:
        t0 = time.perf_counter()
        organizer = await account(session, "organizer")
        buyers = list(await asyncio.gather(*(account(session, "buyer") for _ in range(args.concurrency))))
        print(f"setup: {len(buyers)} buyers in {time.perf_counter() - t0:.1f}s; CPU of "
              + ", ".join(f"{n} pid {p}" for n, p in pids.items()), flush=True)
        watch = Confirmations(s.database_url, args.poll_interval) if "paid" in kinds else None
        poller = asyncio.create_task(watch.run()) if watch else None
        results = []
        try:
            for rnd in range(args.rounds):
                for kind in (kinds if rnd % 2 == 0 else kinds[::-1]):
                    if poller is not None and poller.done():
                        poller.result()  # the orders table cannot be read: say why
                    r = await run_phase(kind, session, devpay, watch, organizer, buyers, pids, args)
                    report(r, args, pids)
                    results.append(r)
        finally:
            if poller is not None:
                poller.cancel()
                await asyncio.gather(poller, return_exceptions=True)
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = preflight(args)
    try:
        results = asyncio.run(asyncio.wait_for(bench(args, settings), timeout=args.hard_timeout))
    except asyncio.TimeoutError:
        print(f"aborted: the run exceeded --hard-timeout {args.hard_timeout}s", file=sys.stderr)
        return 2
    if {r["kind"] for r in results} == {"free", "paid"}:
        compare(results)
    unconfirmed = sum(n for r in results for s, n in r["statuses"].items()
                      if s.startswith("not confirmed") or (s.startswith("then ") and s != "then confirmed"))
    if unconfirmed:
        print(f"FAILED: {unconfirmed} captured orders did not end confirmed", file=sys.stderr)
    return 0 if all(r["orders"] for r in results) and not unconfirmed else 1


if __name__ == "__main__":
    sys.exit(main())
