"""Benchmark (not a test): SSE fan-out of one event's seat stream to many subscribers on ONE query-service process.

    .venv/bin/python -m infra.stack exec -- .venv/bin/python loadtests/sse_fanout.py --subscribers 10000 --holds 60

Starts its own query-service process (one worker, on a free port, next to the stack's), creates an on-sale
event through the command service, opens ``--subscribers`` SSE connections to that process (from
``--client-procs`` client processes), then makes ``--holds`` single-seat holds at ``--rate`` per second.
Each hold's commit time is when its HTTP 201 arrived; each subscriber records when the frame carrying that
seat arrived. Reported: fan-out latency commit -> frame received (p50/p90/p99/max over every subscriber and
hold), frames missed, and the query process's RSS (peak while connected). Bounded by ``--hard-timeout``.
"""
from __future__ import annotations

import argparse
import asyncio
import gc
import json
import multiprocessing as mp
import os
import resource
import socket
import statistics
import subprocess
import sys
import time
import uuid

import aiohttp

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--command-url", default=os.environ.get("EVENTLY_COMMAND_URL", "http://127.0.0.1:8001"))
    p.add_argument("--subscribers", type=int, default=10_000)
    p.add_argument("--client-procs", type=int, default=2, help="client processes sharing the subscribers")
    p.add_argument("--holds", type=int, default=60, help="single-seat holds to make (one frame each, or fewer)")
    p.add_argument("--rate", type=float, default=5.0, help="holds per second")
    p.add_argument("--connect-batch", type=int, default=500, help="connections opened at a time")
    p.add_argument("--hard-timeout", type=float, default=600.0)
    return p.parse_args(argv)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# ---------------------------------------------------------------------------------- client processes
def client_proc(url: str, n: int, batch: int, seats: list[str], ready, go, out, deadline: float) -> None:
    raise_fd_limit()
    gc.freeze()  # thousands of live connections: keep the collector from walking them again and again
    gc.set_threshold(50_000, 20, 100)
    asyncio.run(_client(url, n, batch, set(seats), ready, go, out, deadline))


async def _client(url, n, batch, wanted, ready, go, out, deadline) -> None:
    got: list[dict[str, float]] = [dict() for _ in range(n)]
    connected = 0
    errors: dict[str, int] = {}
    conn = aiohttp.TCPConnector(limit=0, force_close=False)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=None)
    async with aiohttp.ClientSession(connector=conn, timeout=timeout) as session:
        opened = [asyncio.Event() for _ in range(n)]

        async def sub(i: int) -> None:
            nonlocal connected
            try:
                async with session.get(url) as r:
                    if r.status != 200:
                        errors[f"HTTP {r.status}"] = errors.get(f"HTTP {r.status}", 0) + 1
                        opened[i].set()
                        return
                    connected += 1
                    opened[i].set()
                    mine = got[i]
                    buf = b""
                    async for chunk in r.content.iter_any():
                        now = time.time()
                        buf += chunk
                        while b"\r\n\r\n" in buf:
                            frame, buf = buf.split(b"\r\n\r\n", 1)
                            for line in frame.split(b"\r\n"):
                                if line.startswith(b"data: "):
                                    for ch in json.loads(line[6:])["changes"]:
                                        seat = ch.get("seat")
                                        if seat in wanted and seat not in mine:
                                            mine[seat] = now
                        if len(mine) == len(wanted):
                            return
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                opened[i].set()

        tasks = []
        for start in range(0, n, batch):
            for i in range(start, min(n, start + batch)):
                tasks.append(asyncio.create_task(sub(i)))
            await asyncio.gather(*(opened[i].wait() for i in range(start, min(n, start + batch))))
        ready.put((connected, errors))
        while not go.is_set():
            await asyncio.sleep(0.05)
        left = deadline - time.time()
        done, pending = await asyncio.wait(tasks, timeout=max(left, 1))
        for t in pending:
            t.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    out.put((got, errors))


# ---------------------------------------------------------------------------------- the run
async def api(session, method, path, token=None, **kw):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with session.request(method, path, headers=headers, **kw) as r:
        body = await r.json(content_type=None)
        return r.status, body


async def setup(command_url: str, holds: int) -> tuple[str, str, list[str]]:
    async with aiohttp.ClientSession(command_url) as s:
        async def user(role):
            email = f"sse-{role}-{uuid.uuid4().hex[:10]}@example.com"
            st, _ = await api(s, "POST", "/api/v1/auth/register",
                              json={"email": email, "password": "bench-password", "name": "b", "role": role})
            assert st == 201
            st, tok = await api(s, "POST", "/api/v1/auth/token", json={"email": email, "password": "bench-password"})
            return tok["access_token"]

        org, buyer = await user("organizer"), await user("buyer")
        rows = max(1, (holds + 99) // 100)
        st, venue = await api(s, "POST", "/api/v1/venues", org, json={
            "name": "SSE Arena", "city": "Streamville",
            "sections": [{"code": "A", "name": "Floor", "kind": "seated",
                          "rows": [{"label": str(r), "seats": 100} for r in range(1, rows + 1)]}]})
        assert st == 201, venue
        st, ev = await api(s, "POST", "/api/v1/events", org, json={
            "venue_id": venue["id"], "title": "SSE fan-out", "category": "bench",
            "starts_at": "2030-01-01T20:00:00Z", "currency": "EUR", "prices": {"A": 1000}})
        assert st == 201, ev
        st, _ = await api(s, "POST", f"/api/v1/events/{ev['id']}/publish", org)
        assert st == 200
        seats = [f"A-{i // 100 + 1}-{i % 100 + 1}" for i in range(holds)]
        return ev["id"], buyer, seats


async def drive(command_url: str, event_id: str, buyer: str, seats: list[str], rate: float) -> dict[str, float]:
    committed: dict[str, float] = {}
    async with aiohttp.ClientSession(command_url) as s:
        t0 = time.monotonic()
        for i, seat in enumerate(seats):
            await asyncio.sleep(max(0.0, t0 + i / rate - time.monotonic()))
            st, body = await api(s, "POST", f"/api/v1/events/{event_id}/holds", buyer, json={"seats": [seat]})
            if st == 201:
                committed[seat] = time.time()
            else:
                print(f"hold {seat}: {st} {body}", file=sys.stderr)
    return committed


def main(argv=None) -> int:
    args = parse_args(argv)
    raise_fd_limit()
    hard_deadline = time.time() + args.hard_timeout
    port = free_port()
    env = {**os.environ, "EVENTLY_QUERY_PORT": str(port), "EVENTLY_QUERY_WORKERS": "1"}
    server = subprocess.Popen([sys.executable, "-m", "query_service.app"], env=env, cwd=ROOT,
                              preexec_fn=raise_fd_limit)
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                time.sleep(0.2)
        event_id, buyer, seats = asyncio.run(setup(args.command_url, args.holds))
        # wait until the read model has the event (the stream endpoint 404s before)
        import urllib.request
        for _ in range(300):
            try:
                with urllib.request.urlopen(f"{base}/api/v1/events/{event_id}/seats", timeout=5) as r:
                    last = json.loads(r.read())["last_event_id"]
                    break
            except Exception:
                time.sleep(0.2)
        url = f"{base}/api/v1/events/{event_id}/seats/stream?last_event_id={last}"
        rss0 = rss_mb(server.pid)
        ctx = mp.get_context("fork")
        ready, out, go = ctx.Queue(), ctx.Queue(), ctx.Event()
        per = [args.subscribers // args.client_procs + (1 if i < args.subscribers % args.client_procs else 0)
               for i in range(args.client_procs)]
        t_conn = time.monotonic()
        procs = [ctx.Process(target=client_proc, args=(url, n, args.connect_batch, seats, ready, go, out,
                                                       hard_deadline - 30)) for n in per]
        for p in procs:
            p.start()
        connected, conn_errors = 0, {}
        for _ in procs:
            c, e = ready.get(timeout=max(1, hard_deadline - time.time()))
            connected += c
            for k, v in e.items():
                conn_errors[k] = conn_errors.get(k, 0) + v
        t_conn = time.monotonic() - t_conn
        rss_connected = rss_mb(server.pid)
        print(f"connected {connected}/{args.subscribers} subscribers in {t_conn:.1f}s "
              f"(errors: {conn_errors or 'none'}); query RSS {rss0:.0f} MB idle -> {rss_connected:.0f} MB", flush=True)
        go.set()
        cpu0 = {"query": cpu_s(server.pid), **{f"client{i}": cpu_s(p.pid) for i, p in enumerate(procs)}}
        t_drive = time.monotonic()
        peak = rss_connected
        committed_box: dict[str, float] = {}

        async def run_drive():
            nonlocal peak
            task = asyncio.create_task(drive(args.command_url, event_id, buyer, seats, args.rate))
            while not task.done():
                peak = max(peak, rss_mb(server.pid))
                await asyncio.sleep(0.5)
            committed_box.update(task.result())

        asyncio.run(run_drive())
        cpu = {"query": cpu_s(server.pid), **{f"client{i}": cpu_s(p.pid) for i, p in enumerate(procs)}}
        cpu = {k: cpu[k] - cpu0[k] for k in cpu}
        t_drive = time.monotonic() - t_drive
        results = [out.get(timeout=max(1, hard_deadline - time.time())) for _ in procs]
        for p in procs:
            p.join(10)
        lat, missed = [], 0
        errors: dict[str, int] = {}
        for got, e in results:
            for k, v in e.items():
                errors[k] = errors.get(k, 0) + v
            for mine in got:
                for seat, t in committed_box.items():
                    if seat in mine:
                        lat.append(max(0.0, mine[seat] - t))
                    else:
                        missed += 1
        lat.sort()
        q = statistics.quantiles(lat, n=100) if len(lat) > 1 else [float("nan")] * 99
        print(f"holds committed {len(committed_box)}/{len(seats)} at {args.rate}/s; deliveries {len(lat)} "
              f"(missed {missed}); errors: {errors or 'none'}")
        print(f"fan-out latency commit -> frame received: p50 {q[49] * 1000:.0f} ms, p90 {q[89] * 1000:.0f} ms, "
              f"p99 {q[98] * 1000:.0f} ms, max {lat[-1] * 1000 if lat else float('nan'):.0f} ms")
        print(f"CPU during the {t_drive:.1f}s of holds: " + ", ".join(f"{k} {v:.1f}s" for k, v in cpu.items()))
        print(f"query-service process RSS: idle {rss0:.0f} MB, {connected} connected {rss_connected:.0f} MB, "
              f"peak {peak:.0f} MB")
        return 0 if lat and missed == 0 else 1
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()


if __name__ == "__main__":
    sys.exit(main())
