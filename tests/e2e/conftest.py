"""Fixtures for end-to-end tests: they run against the live stack that `make test` starts."""
from __future__ import annotations

import time
from typing import Callable, TypeVar

import psycopg
import pytest

from common.settings import Settings

T = TypeVar("T")


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings()


@pytest.fixture(scope="session")
def pg(settings: Settings):
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        yield conn


def eventually(probe: Callable[[], T | None], *, timeout: float = 30.0, interval: float = 0.05) -> T:
    """Poll until ``probe`` returns something truthy. The timeout is a liveness bound, not a speed assertion."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = probe()
            if result:
                return result
        except Exception as exc:  # noqa: BLE001 - keep polling, report the last error
            last_exc = exc
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s (last error: {last_exc!r})")
