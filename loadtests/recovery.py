"""Recovery after a kill -9 (issue 12), on the running stack: kill a supervised component, create an event at
once through the API, and time (a) until supervisord has the component back and healthy, and (b) until the
query service serves the new event (the whole write -> CDC -> projection path works again).

    .venv/bin/python -m infra.stack exec -- env PYTHONPATH=. .venv/bin/python loadtests/recovery.py projector 3
    .venv/bin/python -m infra.stack exec -- env PYTHONPATH=. .venv/bin/python loadtests/recovery.py connect 2

Bounded: each round gives up after 120 s.
"""
from __future__ import annotations

import argparse
import os
import signal
import time

import httpx

from common.settings import get_settings
from infra import stack
from tests.e2e.api import Api


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("component", choices=[c.name for c in stack.COMPONENTS])
    p.add_argument("rounds", type=int, nargs="?", default=2)
    args = p.parse_args()
    comp = next(c for c in stack.COMPONENTS if c.name == args.component)
    s = get_settings()
    api = Api(f"http://{s.command_host}:{s.command_port}")
    organizer = api.user("organizer")[1]
    query = f"http://{s.query_host}:{s.query_port}"
    for _ in range(args.rounds):
        pid = comp.pid()
        os.kill(pid, signal.SIGKILL)
        t0 = time.monotonic()
        ev = None
        back = None
        while time.monotonic() - t0 < 120:
            if ev is None:
                try:
                    ev = api.event(organizer)  # may fail while a write-side component is down: retry
                except (AssertionError, httpx.HTTPError):
                    time.sleep(0.2)
                    continue
            if back is None and comp.healthy() and comp.pid() not in (None, pid):
                back = time.monotonic() - t0
            try:
                if httpx.get(f"{query}/api/v1/events/{ev['id']}", timeout=10).status_code == 200 and back:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        done = time.monotonic() - t0
        print(f"kill -9 {comp.name}: back and healthy after {back or float('nan'):.1f} s; a new event was served "
              f"by the query service {done:.1f} s after the kill ({done - (back or done):.1f} s after it was back)",
              flush=True)
        time.sleep(3)


if __name__ == "__main__":
    main()
