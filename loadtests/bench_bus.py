"""CPU per command spent in the message bus itself (command_service/service_layer/handlers.handle), with a no-op
handler: today's bus (a plain first call, tenacity only after a conflict) beside a tenacity retrier built for
every command, as the bus did briefly. Pure CPU, no stack.

    .venv/bin/python -m loadtests.bench_bus [--n 50000]
"""
from __future__ import annotations

import argparse
import asyncio
import time

import tenacity

from command_service.domain import commands
from command_service.service_layer import handlers
from command_service.service_layer.unit_of_work import TransientConflict


class Noop(commands.Command):
    pass


async def noop(cmd, svc):
    return None


async def retrier_per_command(cmd, svc, attempts: int = 3):
    retrying = tenacity.AsyncRetrying(retry=tenacity.retry_if_exception_type(TransientConflict),
                                      stop=tenacity.stop_after_attempt(attempts), reraise=True)
    return await retrying(handlers.HANDLERS[type(cmd)], cmd, svc)


async def run(n: int) -> None:
    handlers.HANDLERS[Noop] = noop
    cmd = Noop()
    for name, bus in (("handlers.handle", handlers.handle), ("tenacity per command", retrier_per_command)) * 2:
        start = time.process_time()
        for _ in range(n):
            await bus(cmd, None)
        print(f"{name:<22} {(time.process_time() - start) / n * 1e6:6.1f} µs CPU per command (n={n})")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=50000)
    asyncio.run(run(ap.parse_args().n))


if __name__ == "__main__":
    main()
