"""Progress output for long steps: every step says what it does, how long it has taken, and why it failed."""
from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import time
from typing import Callable

TICK = 5.0  # seconds between "still waiting" lines


class StepFailed(RuntimeError):
    pass


def say(msg: str) -> None:
    print(msg, flush=True)


def tail(path: pathlib.Path, lines: int = 25) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return "(no log)"
    return "\n".join("    | " + line for line in text[-lines:])


def run_step(desc: str, cmd: list[str], log: pathlib.Path, *, route: str,
             env: dict[str, str] | None = None, cwd: pathlib.Path | None = None) -> str:
    """Run an install command, echoing progress, and return its combined output."""
    say(f"==> {desc}")
    log.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=cwd,
                                env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL)
        next_tick = started + TICK
        while proc.poll() is None:
            time.sleep(0.2)
            if time.monotonic() >= next_tick:
                say(f"    ... {desc}: {time.monotonic() - started:.0f}s")
                next_tick += TICK
    if proc.returncode != 0:
        raise StepFailed(f"{route} failed (exit {proc.returncode}) while: {desc}\n"
                         f"  command: {' '.join(cmd)}\n  log: {log}\n{tail(log)}")
    say(f"    done in {time.monotonic() - started:.1f}s")
    return log.read_text(errors="replace")


def wait_for(desc: str, check: Callable[[], bool], *, timeout: float,
             alive: Callable[[], bool] | None = None, log: pathlib.Path | None = None) -> float:
    """Poll ``check`` until it is true; fail early if the process died, or after ``timeout``."""
    started = time.monotonic()
    next_tick = started + TICK
    sys.stdout.write(f"    waiting for {desc} ")
    sys.stdout.flush()
    while True:
        try:
            if check():
                took = time.monotonic() - started
                say(f"ready ({took:.1f}s)")
                return took
        except StepFailed:
            say("FAILED")
            raise
        except Exception:  # noqa: BLE001 - not ready yet, whatever the reason
            pass
        now = time.monotonic()
        if alive is not None and not alive():
            say("DIED")
            raise StepFailed(f"{desc} exited during start-up; log: {log}\n{tail(log) if log else ''}")
        if now - started > timeout:
            say("TIMEOUT")
            raise StepFailed(f"{desc} was not ready after {timeout:.0f}s; log: {log}\n{tail(log) if log else ''}")
        if now >= next_tick:
            sys.stdout.write(f"{now - started:.0f}s ")
            sys.stdout.flush()
            next_tick += TICK
        time.sleep(0.25)
