"""Benchmark (not a test): what the local payment provider (devpay, infra/devpay/) sustains, with its webhooks
delivered to the stack's command service.

    .venv/bin/python -m infra.stack exec -- .venv/bin/python loadtests/bench_devpay.py --duration 15 --concurrency 32

``concurrency`` clients in a closed loop each create a payment (with an Idempotency-Key, as the command side
will) and capture it. Reported: payments/s, latency of each call, the devpay process's CPU per payment, and
whether every webhook was delivered by the end (``GET /v1/webhooks``). Bounded by ``--hard-timeout``.
"""
from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid

import aiohttp

sys.path.insert(0, ".")
from common.settings import Settings  # noqa: E402
from loadtests.bench_orders import cpu_seconds  # noqa: E402


def pid_on_port(port: int) -> int | None:
    import subprocess

    out = subprocess.run(["ss", "-Hltnp", f"sport = :{port}"], capture_output=True, text=True).stdout
    for part in out.split("pid=")[1:]:
        return int(part.split(",")[0])
    return None


async def main(args: argparse.Namespace) -> int:
    s = Settings()
    headers = {"Authorization": f"Bearer {s.devpay_api_key}"}
    pid = pid_on_port(s.devpay_port)
    latencies: dict[str, list[float]] = {"create": [], "capture": []}
    done = 0
    errors: dict[str, int] = {}
    async with aiohttp.ClientSession(base_url=s.devpay_url, headers=headers,
                                     connector=aiohttp.TCPConnector(limit=0)) as http:
        stop = time.monotonic() + args.duration
        cpu0, t0 = (cpu_seconds(pid) if pid else 0.0), time.monotonic()

        async def client() -> None:
            nonlocal done
            while time.monotonic() < stop:
                ref = str(uuid.uuid4())
                t = time.perf_counter()
                async with http.post("/v1/payments", json={"amount": 5000, "currency": "EUR", "reference": ref},
                                     headers={"Idempotency-Key": f"payment:{ref}"}) as r:
                    body = await r.json()
                    if r.status != 201:
                        errors[f"create {r.status}"] = errors.get(f"create {r.status}", 0) + 1
                        continue
                latencies["create"].append(time.perf_counter() - t)
                t = time.perf_counter()
                async with http.post(f"/v1/payments/{body['id']}/capture") as r:
                    await r.read()
                    if r.status != 200:
                        errors[f"capture {r.status}"] = errors.get(f"capture {r.status}", 0) + 1
                        continue
                latencies["capture"].append(time.perf_counter() - t)
                done += 1

        await asyncio.wait_for(asyncio.gather(*(client() for _ in range(args.concurrency))), args.hard_timeout)
        elapsed = time.monotonic() - t0
        cpu = (cpu_seconds(pid) - cpu0) if pid else float("nan")
        deadline = time.monotonic() + 60
        while True:  # every webhook of the run reaches the command service (devpay retries until it does)
            async with http.get("/v1/webhooks") as r:
                state = await r.json()
            if state["undelivered"] == 0 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        drained = time.monotonic() - t0 - elapsed

    def pct(xs: list[float], q: float) -> float:
        return statistics.quantiles(xs, n=100)[q - 1] * 1000 if len(xs) >= 100 else float("nan")

    print(f"payments created+captured: {done} in {elapsed:.1f} s = {done / elapsed:.0f}/s "
          f"(concurrency {args.concurrency}); errors: {errors or 'none'}")
    for k, xs in latencies.items():
        print(f"  {k}: p50 {pct(xs, 50):.1f} ms, p99 {pct(xs, 99):.1f} ms")
    print(f"  devpay CPU: {cpu * 1000 / max(done, 1):.2f} ms per payment (create + capture + its webhook)")
    print(f"  webhooks undelivered at the end: {state['undelivered']} (drained {drained:.1f} s after the load)")
    return 0 if not errors and state["undelivered"] == 0 else 1


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=float, default=15.0)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--hard-timeout", type=float, default=120.0)
    sys.exit(asyncio.run(main(p.parse_args())))
