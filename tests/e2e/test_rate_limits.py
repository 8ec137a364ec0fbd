"""Issue 11 #5: rate limits (CONTRACT "Rate limits") and stream caps, each on its own service process with small
limits (the stack's own processes run with raised ones, for the test and load suites: infra/config.py)."""
from __future__ import annotations

import uuid

import httpx
import pytest

from tests.e2e.conftest import eventually, service_process

pytestmark = pytest.mark.e2e
PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def limited_command(settings):
    with service_process("command_service.entrypoints.app", "EVENTLY_COMMAND_PORT", EVENTLY_COMMAND_WORKERS="1",
                         EVENTLY_RATE_KEY_PREFIX=f"test-rl-{uuid.uuid4().hex}",
                         EVENTLY_RATE_PASSWORD_PER_ADDRESS="8/minute", EVENTLY_RATE_PASSWORD_PER_ACCOUNT="3/minute",
                         EVENTLY_RATE_WRITES_PER_ACCOUNT="5/minute") as root:
        yield root


def test_wrong_logins_are_limited_per_account_then_per_address(limited_command):
    email = f"victim-{uuid.uuid4().hex}@example.com"
    statuses = [httpx.post(f"{limited_command}/api/v1/auth/token", timeout=30,
                           json={"email": email, "password": "wrong password"}).status_code for _ in range(4)]
    assert statuses == [401, 401, 401, 429], statuses
    r = httpx.post(f"{limited_command}/api/v1/auth/token", json={"email": email, "password": "x"}, timeout=30)
    assert r.status_code == 429 and r.json()["error"]["code"] == "RATE_LIMITED"
    assert 1 <= int(r.headers["Retry-After"]) <= 60
    # other accounts from the same address: refused once the address has spent its budget (8 in all)
    others = [httpx.post(f"{limited_command}/api/v1/auth/token", timeout=30,
                         json={"email": f"o{i}-{uuid.uuid4().hex}@example.com", "password": "x"}).status_code
              for i in range(5)]
    assert others[:3] == [401, 401, 401] and set(others[3:]) == {429}, others


def test_writes_are_limited_per_account(limited_command, api, organizer):
    _, token = api.user("buyer")  # registered on the stack's own (unlimited) process
    ev = api.event(organizer[1])
    statuses = [httpx.post(f"{limited_command}/api/v1/events/{ev['id']}/waitlist", timeout=30,
                           headers={"Authorization": f"Bearer {token}"}, json={"quantity": 1}).status_code
                for _ in range(6)]
    assert statuses[:5] == [409] * 5 and statuses[5] == 429, statuses  # SEATS_AVAILABLE, then the limit
    _, other = api.user("buyer")  # another account is not affected
    r = httpx.post(f"{limited_command}/api/v1/events/{ev['id']}/waitlist", timeout=30,
                   headers={"Authorization": f"Bearer {other}"}, json={"quantity": 1})
    assert r.status_code == 409


def test_streams_are_capped_per_client_address(api, organizer):
    ev = api.event(organizer[1])
    with service_process("query_service.app", "EVENTLY_QUERY_PORT", EVENTLY_QUERY_WORKERS="1",
                         EVENTLY_SSE_MAX_PER_ADDRESS="3") as root:
        url = f"{root}/api/v1/events/{ev['id']}/seats/stream"
        with httpx.Client(timeout=30) as client:
            eventually(lambda: client.get(f"{root}/api/v1/events/{ev['id']}").status_code == 200, timeout=60)
            streams = [client.stream("GET", url) for _ in range(3)]
            opened = [s.__enter__() for s in streams]
            try:
                assert [r.status_code for r in opened] == [200, 200, 200]
                r = client.get(url)
                assert r.status_code == 429 and r.json()["error"]["code"] == "RATE_LIMITED", r.text
                assert r.headers["Retry-After"]
            finally:
                for s in streams:
                    s.__exit__(None, None, None)

            def reopened() -> bool:  # closed streams give their slots back
                with client.stream("GET", url) as again:
                    return again.status_code == 200
            eventually(reopened, timeout=30, interval=0.5)
