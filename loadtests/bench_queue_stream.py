"""Benchmark (not a test): the waiting room's position streams (GET .../queue/{entry_id}/stream), old code against
new, side by side in one run.

    .venv/bin/python -m infra.stack exec -- .venv/bin/python loadtests/bench_queue_stream.py \
        --followers 1000 --admit-per-minute 1800 --baseline ae12b58

Starts two query-service processes (one worker each, on free ports, next to the stack's): the working tree's, and
``--baseline``'s (a git revision, checked out into a temporary worktree). Seeds ``--followers`` buyers
(loadtests/seed_buyers.py), makes two events with a waiting room opening at the same instant, joins every buyer to
both, then opens one SSE stream per entry: event A's on the baseline process, event B's on the new one. Both rooms
admit at ``--admit-per-minute`` until all are in. Reported per process, over the same window (opening -> the
last admission frame): CPU seconds and CPU ms per follower-minute, frames received, and the delay from an
entry's admission in PostgreSQL to its admission frame (p50/p99). Bounded by ``--hard-timeout``.
"""
from __future__ import annotations

import argparse
import asyncio
import gc
import json
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone

import aiohttp
import psycopg

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from common.settings import Settings  # noqa: E402
from loadtests.seed_buyers import seed  # noqa: E402
from loadtests.sse_fanout import cpu_s, free_port, raise_fd_limit  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--command-url", default=os.environ.get("EVENTLY_COMMAND_URL", "http://127.0.0.1:8001"))
    p.add_argument("--followers", type=int, default=1000, help="buyers, each following one entry per event")
    p.add_argument("--admit-per-minute", type=int, default=1800)
    p.add_argument("--baseline", required=True, help="git revision of the old query service")
    p.add_argument("--client-procs", type=int, default=2)
    p.add_argument("--hard-timeout", type=float, default=540.0)
    return p.parse_args(argv)


# ---------------------------------------------------------------------------------- client processes
def client_proc(urls: list[tuple[str, str, str]], ready, go, out, deadline: float) -> None:
    """``urls``: (label, entry id, stream url). Puts {label: [(entry id, frames, admitted at)]} on ``out``."""
    raise_fd_limit()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    asyncio.run(_client(urls, ready, go, out, deadline))


async def _client(urls, ready, go, out, deadline) -> None:
    results: dict[str, list] = {}
    errors: dict[str, int] = {}
    conn = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=None)
    async with aiohttp.ClientSession(connector=conn, timeout=timeout) as session:
        opened = [asyncio.Event() for _ in urls]

        async def follow(i: int, label: str, entry_id: str, url: str) -> None:
            frames, admitted_at = 0, None
            try:
                async with session.get(url) as r:
                    opened[i].set()
                    if r.status != 200:
                        errors[f"HTTP {r.status}"] = errors.get(f"HTTP {r.status}", 0) + 1
                        return
                    buf = b""
                    async for chunk in r.content.iter_any():
                        buf += chunk
                        while b"\r\n\r\n" in buf:
                            frame, buf = buf.split(b"\r\n\r\n", 1)
                            for line in frame.split(b"\r\n"):
                                if line.startswith(b"data: "):
                                    frames += 1
                                    if json.loads(line[6:])["status"] == "admitted":
                                        admitted_at = time.time()
                        if admitted_at is not None:
                            return
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
            finally:
                opened[i].set()
                results.setdefault(label, []).append((entry_id, frames, admitted_at))

        tasks = []
        for start in range(0, len(urls), 200):
            batch = range(start, min(len(urls), start + 200))
            tasks += [asyncio.create_task(follow(i, *urls[i])) for i in batch]
            await asyncio.gather(*(opened[i].wait() for i in batch))
        ready.put(errors.copy())
        done, pending = await asyncio.wait(tasks, timeout=max(1.0, deadline - time.time()))
        for t in pending:
            t.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    out.put((results, errors))


# ---------------------------------------------------------------------------------- the run
async def call(s: aiohttp.ClientSession, method: str, path: str, token: str, **kw):
    async with s.request(method, path, headers={"Authorization": f"Bearer {token}"}, **kw) as r:
        return r.status, await r.json(content_type=None)


async def setup(command_url: str, buyers: list[dict], rate: int) -> tuple[list[str], dict[str, dict], float]:
    """Two waiting-room events opening at once; every buyer joins both. -> event ids, {event: {entry: buyer}},
    the opening (epoch s)."""
    async with aiohttp.ClientSession(command_url) as s:
        org = (await seed(1, 3600, role="organizer"))[0]["token"]
        st, venue = await call(s, "POST", "/api/v1/venues", org, json={
            "name": "Queue Arena", "city": "Queueville",
            "sections": [{"code": "GA", "name": "Floor", "kind": "ga", "capacity": 10}]})
        assert st == 201, venue
        opens = datetime.now(timezone.utc) + timedelta(seconds=30 + len(buyers) / 40)
        events = []
        for label in ("baseline", "new"):
            st, ev = await call(s, "POST", "/api/v1/events", org, json={
                "venue_id": venue["id"], "title": f"Queue stream bench ({label})", "category": "bench",
                "starts_at": "2030-01-01T20:00:00Z", "currency": "EUR", "prices": {"GA": 0},
                "sale_starts_at": opens.isoformat(), "waiting_room": {"admit_per_minute": rate,
                                                                      "admission_seconds": 600}})
            assert st == 201, ev
            st, body = await call(s, "POST", f"/api/v1/events/{ev['id']}/publish", org)
            assert st == 200, body
            events.append(ev["id"])
        entries: dict[str, dict] = {e: {} for e in events}
        sem = asyncio.Semaphore(32)

        async def join(event_id: str, b: dict) -> None:
            async with sem:
                st, body = await call(s, "POST", f"/api/v1/events/{event_id}/queue", b["token"])
                assert st == 201, body
                entries[event_id][body["id"]] = b
        t0 = time.monotonic()
        await asyncio.gather(*(join(e, b) for b in buyers for e in events))
        print(f"joined {len(buyers)} buyers to both events in {time.monotonic() - t0:.1f} s; the rooms open at "
              f"{opens.isoformat()}", flush=True)
        return events, entries, opens.timestamp()


def start_query(cwd: str, port: int) -> subprocess.Popen:
    env = {**os.environ, "EVENTLY_QUERY_PORT": str(port), "EVENTLY_QUERY_WORKERS": "1", "PYTHONPATH": cwd}
    return subprocess.Popen([sys.executable, "-m", "query_service.app"], env=env, cwd=cwd,
                            preexec_fn=raise_fd_limit, stdout=subprocess.DEVNULL)


def wait_port(port: int) -> None:
    import socket
    for _ in range(150):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"nothing listens on {port}")


def pct(xs: list[float], p: int) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p / 100))] if xs else float("nan")


def main(argv=None) -> int:
    args = parse_args(argv)
    raise_fd_limit()
    deadline = time.time() + args.hard_timeout
    settings = Settings()
    tree = tempfile.mkdtemp(prefix="evently-baseline-")
    subprocess.run(["git", "worktree", "add", "--detach", tree, args.baseline], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL)
    ports = {"baseline": free_port(), "new": free_port()}
    servers = {"baseline": start_query(tree, ports["baseline"]), "new": start_query(ROOT, ports["new"])}
    procs: list = []
    try:
        for port in ports.values():
            wait_port(port)
        buyers = asyncio.run(seed(args.followers, 3600))
        events, entries, opens = asyncio.run(setup(args.command_url, buyers, args.admit_per_minute))
        urls = []
        for label, event_id in zip(("baseline", "new"), events):
            base = f"http://127.0.0.1:{ports[label]}/api/v1/events/{event_id}/queue"
            urls += [(label, e, f"{base}/{e}/stream?access_token={b['token']}")
                     for e, b in entries[event_id].items()]
        ctx = mp.get_context("fork")
        ready, out = ctx.Queue(), ctx.Queue()
        for i in range(args.client_procs):
            p = ctx.Process(target=client_proc, args=(urls[i::args.client_procs], ready, None, out, deadline - 30))
            p.start()
            procs.append(p)
        conn_errors = [ready.get(timeout=max(1, deadline - time.time())) for _ in procs]
        print(f"{len(urls)} streams open (errors: {[e for e in conn_errors if e] or 'none'}); "
              f"opening in {opens - time.time():.1f} s", flush=True)
        time.sleep(max(0.0, opens - time.time()))
        cpu0 = {k: cpu_s(s.pid) for k, s in servers.items()}
        t0 = time.time()
        results = [out.get(timeout=max(1, deadline - time.time())) for _ in procs]
        cpu = {k: cpu_s(s.pid) - cpu0[k] for k, s in servers.items()}
        window = time.time() - t0
        with psycopg.connect(settings.database_url) as pg:
            admitted = {str(r[0]): r[1].timestamp() for r in pg.execute(
                "SELECT id, admitted_at FROM queue_entries WHERE event_id = ANY(%s) AND admitted_at IS NOT NULL",
                (events,))}
        print(f"window: opening -> the last admission frame, {window:.1f} s; {len(admitted)}/{len(urls)} admitted")
        ok = True
        for label in ("baseline", "new"):
            rows = [r for res, _ in results for r in res.get(label, [])]
            frames = sum(f for _, f, _ in rows)
            late = [(at - admitted[e]) * 1000 for e, _, at in rows if at is not None and e in admitted]
            missing = sum(1 for _, _, at in rows if at is None)
            ok = ok and missing == 0
            follower_min = sum(((at or t0 + window) - t0) for _, _, at in rows) / 60
            print(f"{label:9s} ({args.baseline if label == 'baseline' else 'working tree'}): query CPU "
                  f"{cpu[label]:.1f} s = {cpu[label] * 1000 / max(follower_min, 1e-9):.0f} ms per follower-minute; "
                  f"{frames} frames to {len(rows)} followers; admission frame after the commit p50 "
                  f"{pct(late, 50):.0f} ms, p99 {pct(late, 99):.0f} ms; never admitted {missing}")
        errors = {k: v for _, e in results for k, v in e.items()}
        print(f"client errors: {errors or 'none'}")
        return 0 if ok and not errors else 1
    finally:
        for p in procs:
            p.join(5)
            if p.is_alive():
                p.kill()
        for s in servers.values():
            s.terminate()
            try:
                s.wait(10)
            except subprocess.TimeoutExpired:
                s.kill()
        subprocess.run(["git", "worktree", "remove", "--force", tree], cwd=ROOT, check=False)


if __name__ == "__main__":
    sys.exit(main())
