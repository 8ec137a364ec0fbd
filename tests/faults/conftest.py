"""Fixtures for the fault suite: it runs against the live stack (`make test-faults`, and `make test`)."""
from __future__ import annotations

import pytest

from common.settings import Settings


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings()


@pytest.fixture(scope="session")
def api(settings: Settings):
    from tests.e2e.api import Api

    return Api(f"http://{settings.command_host}:{settings.command_port}")


@pytest.fixture(scope="session")
def organizer(api) -> str:
    return api.user("organizer")[1]
