"""Accounts (CONTRACT v2 "Auth", issue 11): rotating refresh tokens, logout, admin role changes and disabling,
the users read model. Revocations must reach both services within 5 s (common/revocation.py)."""
from __future__ import annotations

import subprocess
import sys
import time
import uuid

import httpx
import pytest

from tests.e2e.conftest import eventually

pytestmark = pytest.mark.e2e
PASSWORD = "correct horse battery"
REVOCATION_BOUND = 5.0  # CONTRACT: within 5 s


@pytest.fixture(scope="module")
def c(settings) -> httpx.Client:
    with httpx.Client(base_url=f"http://{settings.command_host}:{settings.command_port}", timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def q(settings) -> httpx.Client:
    with httpx.Client(base_url=f"http://{settings.query_host}:{settings.query_port}", timeout=30) as client:
        yield client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def login(c: httpx.Client, email: str, password: str = PASSWORD) -> httpx.Response:
    return c.post("/api/v1/auth/token", json={"email": email, "password": password})


@pytest.fixture(scope="module")
def admin(c) -> dict:
    """A real admin, made the only way admins are made: the CLI."""
    email = f"admin-{uuid.uuid4().hex}@example.com"
    out = subprocess.run([sys.executable, "-m", "command_service.entrypoints.cli", "create-admin", "--email", email,
                          "--password", PASSWORD], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    r = login(c, email)
    assert r.status_code == 200, r.text
    return {"id": out.stdout.strip(), "email": email, **r.json()}


def new_user(c: httpx.Client, role: str = "buyer") -> dict:
    email = f"{role}-{uuid.uuid4().hex}@example.com"
    r = c.post("/api/v1/auth/register", json={"email": email, "password": PASSWORD, "name": f"A {role}", "role": role})
    assert r.status_code == 201, r.text
    tokens = login(c, email)
    assert tokens.status_code == 200, tokens.text
    return {**r.json(), **tokens.json()}


def refused_on_both(c: httpx.Client, q: httpx.Client, token: str) -> float:
    """Seconds until ``token`` gets 401 on the command service and on the query service."""
    started = time.monotonic()

    def refused() -> bool:
        cmd = c.post("/api/v1/events/00000000-0000-4000-8000-000000000000/waitlist", headers=bearer(token),
                     json={"quantity": 1})
        read = q.get("/api/v1/me/orders", headers=bearer(token))
        return cmd.status_code == 401 and read.status_code == 401

    eventually(refused, timeout=REVOCATION_BOUND + 5, interval=0.1)
    return time.monotonic() - started


def test_a_refresh_token_works_once_and_a_reuse_revokes_its_family(c, q):
    user = new_user(c)
    assert user["refresh_token"] and user["token_type"] == "bearer"
    first = c.post("/api/v1/auth/refresh", json={"refresh_token": user["refresh_token"]})
    assert first.status_code == 200, first.text
    rotated = first.json()
    assert rotated["refresh_token"] != user["refresh_token"] and rotated["access_token"] != user["access_token"]
    assert q.get("/api/v1/me/orders", headers=bearer(rotated["access_token"])).status_code == 200
    # The first refresh token again: someone copied it. 401, and the whole family is revoked ...
    again = c.post("/api/v1/auth/refresh", json={"refresh_token": user["refresh_token"]})
    assert again.status_code == 401 and again.json()["error"]["code"] == "UNAUTHENTICATED"
    # ... including the rotated refresh token and its access token (on both services, within the bound).
    assert c.post("/api/v1/auth/refresh", json={"refresh_token": rotated["refresh_token"]}).status_code == 401
    assert refused_on_both(c, q, rotated["access_token"]) <= REVOCATION_BOUND + 1
    for bogus in ("nope", "x" * 200):
        r = c.post("/api/v1/auth/refresh", json={"refresh_token": bogus})
        assert r.status_code == 401 and r.json()["error"]["code"] == "UNAUTHENTICATED"


def test_logout_stops_the_token_and_its_refresh_token_on_both_services(c, q):
    user = new_user(c)
    other_session = login(c, user["email"]).json()  # another login of the same user is not logged out
    assert c.post("/api/v1/auth/logout", headers=bearer(user["access_token"])).status_code == 204
    took = refused_on_both(c, q, user["access_token"])
    assert took <= REVOCATION_BOUND + 1, took
    assert c.post("/api/v1/auth/refresh", json={"refresh_token": user["refresh_token"]}).status_code == 401
    assert q.get("/api/v1/me/orders", headers=bearer(other_session["access_token"])).status_code == 200
    assert c.post("/api/v1/auth/logout").status_code == 401


def test_an_admin_disables_a_user_everywhere(c, q, admin):
    user = new_user(c)
    r = c.post(f"/api/v1/admin/users/{user['id']}/disable", headers=bearer(admin["access_token"]))
    assert r.status_code == 200 and r.json()["disabled"] is True, r.text
    assert refused_on_both(c, q, user["access_token"]) <= REVOCATION_BOUND + 1
    assert login(c, user["email"]).status_code == 401  # and cannot sign in again
    assert c.post("/api/v1/auth/refresh", json={"refresh_token": user["refresh_token"]}).status_code == 401
    # The users read model says so, and never holds a password hash.
    listed = eventually(lambda: (r := q.get("/api/v1/admin/users", params={"q": user["email"]},
                                            headers=bearer(admin["access_token"]))).status_code == 200
                        and r.json()["items"] and r.json()["items"][0]["disabled"]
                        and r.json()["total"] == 1 and r.json(), timeout=60)  # total and items: two reads
    assert listed["total"] == 1 and listed["items"][0]["id"] == user["id"]
    assert set(listed["items"][0]) == {"id", "email", "name", "role", "disabled", "created_at"}


def test_an_admin_changes_a_role_and_the_old_token_stops_working(c, q, admin):
    user = new_user(c, "buyer")
    r = c.post(f"/api/v1/admin/users/{user['id']}/role", headers=bearer(admin["access_token"]),
               json={"role": "organizer"})
    assert r.status_code == 200 and r.json()["role"] == "organizer", r.text
    refused_on_both(c, q, user["access_token"])
    fresh = login(c, user["email"]).json()  # a login right after the change is not caught by it
    venue = c.post("/api/v1/venues", headers=bearer(fresh["access_token"]),
                   json={"name": "Hall", "city": "Porto", "sections": [{"code": "GA", "name": "Floor", "kind": "ga",
                                                                        "capacity": 10}]})
    assert venue.status_code == 201, venue.text
    time.sleep(1.5)  # a revocation poll later, the new token still works on both services
    assert q.get("/api/v1/me/orders", headers=bearer(fresh["access_token"])).status_code == 403  # not a buyer now
    assert c.post("/api/v1/venues", headers=bearer(fresh["access_token"]), json={
        "name": "Hall 2", "city": "Porto", "sections": [{"code": "GA", "name": "Floor", "kind": "ga",
                                                         "capacity": 10}]}).status_code == 201
    assert c.post("/api/v1/auth/refresh", json={"refresh_token": fresh["refresh_token"]}).status_code == 200
    bad = c.post(f"/api/v1/admin/users/{user['id']}/role", headers=bearer(admin["access_token"]), json={"role": "root"})
    assert bad.status_code == 400
    unknown = c.post(f"/api/v1/admin/users/{uuid.uuid4()}/disable", headers=bearer(admin["access_token"]))
    assert unknown.status_code == 404


def test_admin_endpoints_are_for_admins(c, q):
    user = new_user(c, "organizer")
    for r in (c.post(f"/api/v1/admin/users/{user['id']}/disable", headers=bearer(user["access_token"])),
              c.post(f"/api/v1/admin/users/{user['id']}/role", headers=bearer(user["access_token"]),
                     json={"role": "admin"}),
              q.get("/api/v1/admin/users", headers=bearer(user["access_token"]))):
        assert r.status_code == 403, r.text
    assert q.get("/api/v1/admin/users").status_code == 401


def test_the_users_read_model_filters_by_role(q, c, admin):
    org = new_user(c, "organizer")
    page = eventually(lambda: (r := q.get("/api/v1/admin/users", params={"role": "organizer", "q": org["email"]},
                                          headers=bearer(admin["access_token"]))).status_code == 200
                      and r.json()["total"] == 1 and r.json(), timeout=60)
    assert page["items"][0]["role"] == "organizer"
    none = q.get("/api/v1/admin/users", params={"role": "buyer", "q": org["email"]},
                 headers=bearer(admin["access_token"]))
    assert none.status_code == 200 and none.json()["total"] == 0
    assert q.get("/api/v1/admin/users", params={"role": "root"}, headers=bearer(admin["access_token"])).status_code == 400


def test_revocations_survive_redis_losing_them(c, q, admin, settings):
    """Found by the fault suite (FLUSHALL): the Redis set was the only copy of the revocations, so logged-out and
    disabled users' tokens worked again. PostgreSQL keeps the record; the command service rebuilds the set, and a
    process that finds the set lost keeps what it knew meanwhile: the tokens are refused throughout."""
    import jwt
    import redis

    from contracts import keys

    out, disabled = new_user(c), new_user(c)
    assert c.post("/api/v1/auth/logout", headers=bearer(out["access_token"])).status_code == 204
    assert c.post(f"/api/v1/admin/users/{disabled['id']}/disable",
                  headers=bearer(admin["access_token"])).status_code == 200
    for token in (out["access_token"], disabled["access_token"]):
        refused_on_both(c, q, token)
    rds = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    try:
        rds.delete(keys.REVOKED_TOKENS)  # what FLUSHALL does to it
        deadline = time.monotonic() + 3 * 1.0 + 1  # a few polls of every process
        while time.monotonic() < deadline:
            for token in (out["access_token"], disabled["access_token"]):
                assert q.get("/api/v1/me/orders", headers=bearer(token)).status_code == 401
                assert c.post("/api/v1/events/00000000-0000-4000-8000-000000000000/waitlist", headers=bearer(token),
                              json={"quantity": 1}).status_code == 401
            time.sleep(0.1)
        members = set(rds.zrange(keys.REVOKED_TOKENS, 0, -1))
        assert keys.REVOKED_TOKENS_COMPLETE in members
        assert any(m.startswith(f"sub:{disabled['id']}:") for m in members)
        # One entry lost on its own (as if its Redis write had failed) comes back with the next sync.
        jti = "jti:" + jwt.decode(out["access_token"], options={"verify_signature": False})["jti"]
        assert jti in members
        rds.zrem(keys.REVOKED_TOKENS, jti)
        eventually(lambda: rds.zscore(keys.REVOKED_TOKENS, jti) is not None, timeout=10, interval=0.2)
    finally:
        rds.close()
