"""Password hashing cost (issue 11): argon2id at OWASP's minimum (what Evently uses) against argon2-cffi's
defaults (what it used before), side by side in one run, then 2,000 buyers registering and logging in against
the running stack (``make up`` first):

    .venv/bin/python -m infra.stack exec -- .venv/bin/python -m loadtests.bench_passwords [--buyers 2000]

Part 1 reports CPU time per verification (a login), alternating the two parameter sets so box noise hits both,
and the logins per second one core can do. Part 2 reports the wall time of N registrations + N logins at a
bounded concurrency, and the CPU the command service spent on them (its processes' utime + stime).
"""
from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
import uuid

import httpx
from argon2 import PasswordHasher

from command_service.adapters.passwords import PARAMETERS
from common.settings import get_settings

OLD = PasswordHasher()  # argon2-cffi 25 defaults: RFC 9106 low-memory (m=64 MiB, t=3, p=4)
NEW = PasswordHasher(**PARAMETERS)


def cpu_per_verify(hasher: PasswordHasher, rounds: int) -> float:
    h = hasher.hash("correct horse battery")
    started = time.process_time()
    for _ in range(rounds):
        hasher.verify(h, "correct horse battery")
    return (time.process_time() - started) / rounds


def part1(rounds: int, repeats: int) -> None:
    old, new = [], []
    for _ in range(repeats):
        old.append(cpu_per_verify(OLD, rounds))
        new.append(cpu_per_verify(NEW, rounds))
    for name, h, xs in (("before: argon2-cffi defaults", OLD, old), ("now: OWASP minimum", NEW, new)):
        p = h._parameters  # noqa: SLF001 - for the report only
        med = statistics.median(xs)
        print(f"{name:30s} m={p.memory_cost // 1024} MiB t={p.time_cost} p={p.parallelism}: "
              f"{med * 1000:6.1f} ms CPU per login (median of {repeats}) = {1 / med:5.0f} logins/s per core")


def service_cpu() -> float:
    """utime + stime (s) of the command service's processes (the supervisor and its workers)."""
    from infra.stack import COMPONENTS  # noqa: PLC0415
    comp = next(c for c in COMPONENTS if c.name == "command-service")
    root = comp.pid()  # supervisord's child: the command service's supervisor process
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(pid) == root or int(fields[1]) == root:  # ppid
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


async def part2(buyers: int, concurrency: int) -> None:
    s = get_settings()
    base = f"http://{s.command_host}:{s.command_port}"
    slots = asyncio.Semaphore(concurrency)
    emails = [f"bench-{uuid.uuid4().hex}@example.com" for _ in range(buyers)]
    async with httpx.AsyncClient(base_url=base, timeout=120,
                                 limits=httpx.Limits(max_connections=concurrency)) as c:
        async def call(path: str, body: dict, ok: int) -> None:
            async with slots:
                r = await c.post(path, json=body)
                assert r.status_code == ok, (path, r.status_code, r.text[:200])

        for step, path, ok, body in (
                ("register", "/api/v1/auth/register", 201,
                 lambda e: {"email": e, "password": "correct horse battery", "name": "b", "role": "buyer"}),
                ("login", "/api/v1/auth/token", 200, lambda e: {"email": e, "password": "correct horse battery"})):
            cpu0, t0 = service_cpu(), time.monotonic()
            await asyncio.gather(*(call(path, body(e), ok) for e in emails))
            wall, cpu = time.monotonic() - t0, service_cpu() - cpu0
            print(f"{buyers} {step:8s}: {wall:6.1f} s wall ({buyers / wall:5.0f}/s), command service "
                  f"{cpu:6.1f} s CPU = {cpu / buyers * 1000:5.1f} ms per {step}", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--buyers", type=int, default=2000)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    print(f"== part 1: CPU per login, {os.cpu_count()} cores", flush=True)
    part1(args.rounds, args.repeats)
    print(f"== part 2: {args.buyers} buyers register, then log in, {args.concurrency} at a time, whole stack up",
          flush=True)
    asyncio.run(part2(args.buyers, args.concurrency))


if __name__ == "__main__":
    main()
