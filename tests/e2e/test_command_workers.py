"""The command service's supervisor replaces a worker that dies, and the service keeps answering."""
from __future__ import annotations

import os
import signal

import httpx
import pytest

from infra.stack import COMMAND
from tests.e2e.conftest import eventually

pytestmark = pytest.mark.e2e


def workers() -> set[int]:
    return COMMAND.workers()  # the worker processes of the command service's own supervisor


def test_a_crashed_worker_is_replaced(settings, api):
    before = workers()
    if len(before) < 2:
        pytest.skip("the command service runs a single process (EVENTLY_COMMAND_WORKERS=1)")
    victim = min(before)
    os.kill(victim, signal.SIGKILL)
    after = eventually(lambda: (w := workers()) and victim not in w and len(w) == len(before) and w, timeout=30)
    assert victim not in after and len(after) == len(before)
    base = f"http://{settings.command_host}:{settings.command_port}"
    # every request is served (whichever worker the kernel hands it to), and /metrics still aggregates
    for _ in range(20):
        assert httpx.get(f"{base}/health", timeout=10).status_code == 200
    api.user("buyer")
    assert "evently_" in httpx.get(f"{base}/metrics", timeout=10).text
