"""Security regressions (issue 11) on the live stack."""
from __future__ import annotations

import uuid

import httpx
import pytest

from common.auth import encode_token
from common.settings import PUBLISHED_SECRETS

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("secret", sorted(PUBLISHED_SECRETS))
def test_a_token_signed_with_the_published_development_secret_is_refused(settings, api, organizer, secret):
    """#1: the stack runs with its own random secret, so a forged admin token gets 401 on both services."""
    assert settings.jwt_secret not in PUBLISHED_SECRETS
    forged = {"Authorization": f"Bearer {encode_token(str(uuid.uuid4()), 'admin', secret, 600)}"}
    q = f"http://{settings.query_host}:{settings.query_port}"
    c = f"http://{settings.command_host}:{settings.command_port}"
    r = httpx.get(f"{q}/api/v1/admin/analytics", headers=forged, timeout=10)
    assert r.status_code == 401 and r.json()["error"]["code"] == "UNAUTHENTICATED", r.text
    ev = api.event(organizer[1])
    r = httpx.post(f"{c}/api/v1/events/{ev['id']}/cancel", headers=forged, timeout=10)
    assert r.status_code == 401 and r.json()["error"]["code"] == "UNAUTHENTICATED", r.text
