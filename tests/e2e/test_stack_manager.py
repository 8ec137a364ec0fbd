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
        name, ports, pid, health = line.split()
        assert ports == ",".join(map(str, comp.ports))
        assert int(pid) == comp.pid()
        assert health == "healthy"
    assert re.search(r"^debezium\s+\(connector\)\s+-\s+RUNNING$", result.stdout, re.M)


def test_second_up_leaves_running_components_alone():
    before = {comp.name: comp.pid() for comp in stack.COMPONENTS}
    result = run_stack("up")
    assert result.returncode == 0, result.stdout + result.stderr
    for comp in stack.COMPONENTS:
        assert re.search(rf"^\[running\] {re.escape(comp.name)}\s", result.stdout, re.M), result.stdout
    assert {comp.name: comp.pid() for comp in stack.COMPONENTS} == before
    assert "connector evently-outbox updated" in result.stdout
