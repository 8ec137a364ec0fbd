"""The stack manager against the live stack that `make test` started."""
from __future__ import annotations

import re
import subprocess
import sys

import pytest

from infra import config, stack

pytestmark = pytest.mark.e2e


def run_stack(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "infra.stack", *args], capture_output=True, text=True,
                          cwd=config.ROOT, timeout=300)


def test_status_lists_every_component_healthy_with_port_and_pid():
    result = run_stack("status")
    assert result.returncode == 0, result.stdout
    for comp in stack.COMPONENTS:
        line = next(l for l in result.stdout.splitlines() if l.split()[0] == comp.name)
        name, ports, pid, health, restarts = line.split()
        assert ports == ",".join(map(str, comp.ports))
        assert int(pid) == comp.pid()
        assert health == "healthy" and int(restarts) >= 0
    assert re.search(r"^debezium\s+\(connector\)\s+-\s+RUNNING$", result.stdout, re.M)


def test_second_up_leaves_running_components_alone():
    before = {comp.name: comp.pid() for comp in stack.COMPONENTS}
    result = run_stack("up")
    assert result.returncode == 0, result.stdout + result.stderr
    for comp in stack.COMPONENTS:
        assert re.search(rf"^\[running\] {re.escape(comp.name)}\s", result.stdout, re.M), result.stdout
    assert {comp.name: comp.pid() for comp in stack.COMPONENTS} == before
    assert "connector evently-outbox updated" in result.stdout


def test_a_component_killed_with_sigkill_is_restarted_by_the_supervisor(api, organizer, settings):
    """Issue 12 "Supervision first": supervisord brings a dead projector back, `make status` counts the restart,
    and the read side catches up by itself (no `make up`)."""
    import os
    import signal

    import httpx

    from tests.e2e.conftest import eventually

    before, restarts = stack.PROJECTOR.pid(), stack.PROJECTOR.restarts()
    os.kill(before, signal.SIGKILL)
    eventually(lambda: stack.PROJECTOR.healthy() and stack.PROJECTOR.pid() not in (None, before), timeout=60,
               interval=0.2)
    assert stack.PROJECTOR.restarts() == restarts + 1
    line = next(l for l in run_stack("status").stdout.splitlines() if l.startswith("projector "))
    assert line.split()[3:] == ["healthy", str(restarts + 1)]
    ev = api.event(organizer[1])  # made after the kill: projected by the restarted worker
    q = f"http://{settings.query_host}:{settings.query_port}"
    eventually(lambda: httpx.get(f"{q}/api/v1/events/{ev['id']}", timeout=10).status_code == 200, timeout=60)
