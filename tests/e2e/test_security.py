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


# --- #4 and #7: malformed input is a 400 with the contract's body, never a 5xx ------------------------------------
NUL = "a\u0000b"
VENUE = {"name": "Hall", "city": "Porto", "sections": [{"code": "A", "name": "Stalls", "kind": "seated",
                                                        "rows": [{"label": "1", "seats": 2}]}]}


def _nul_cases(venue_id: str, event_id: str):
    register = {"email": "x@example.com", "password": "correct horse battery", "name": "n", "role": "buyer"}
    event = {"venue_id": venue_id, "title": "t", "category": "music", "starts_at": "2027-03-01T20:00:00Z",
             "currency": "EUR", "prices": {"A": 100}}
    yield "POST", "/api/v1/auth/register", {**register, "name": NUL}
    yield "POST", "/api/v1/auth/register", {**register, "email": f"x{NUL}@example.com"}
    yield "POST", "/api/v1/auth/token", {"email": f"x{NUL}@example.com", "password": "whatever"}
    yield "POST", "/api/v1/venues", {**VENUE, "name": NUL}
    yield "POST", "/api/v1/venues", {**VENUE, "city": NUL}
    yield "POST", "/api/v1/venues", {**VENUE, "sections": [{**VENUE["sections"][0], "name": NUL}]}
    yield "POST", "/api/v1/events", {**event, "title": NUL}
    yield "PATCH", f"/api/v1/events/{event_id}", {"title": NUL}
    yield "PATCH", f"/api/v1/events/{event_id}", {"category": NUL}
    yield "POST", f"/api/v1/events/{event_id}/holds", {"x\u0000": 1}
    yield "POST", f"/api/v1/events/{event_id}/holds", {"seats": [f"A-1-{NUL}"]}


def test_nul_characters_anywhere_in_a_body_are_a_400(api, organizer, settings):
    c = f"http://{settings.command_host}:{settings.command_port}"
    ev = api.event(organizer[1])
    buyer = api.user("buyer")[1]
    for method, path, body in _nul_cases(ev["venue_id"], ev["id"]):
        token = buyer if path.endswith("/holds") else organizer[1]
        r = httpx.request(method, c + path, json=body, headers={"Authorization": f"Bearer {token}"}, timeout=10)
        assert r.status_code == 400, (method, path, r.status_code, r.text)
        assert r.json()["error"]["code"] == "VALIDATION_ERROR" and "\x00" not in r.json()["error"]["details"], r.text


def test_a_stored_400_is_replayed_not_turned_into_a_500(api, organizer, buyer, settings):
    """#7: a 400 whose details name a field with a NUL in it, sent with an Idempotency-Key, is stored (or not)
    without breaking: the first answer and the repeat are both that 400."""
    c = f"http://{settings.command_host}:{settings.command_port}"
    ev = api.event(organizer[1])
    headers = {"Authorization": f"Bearer {buyer[1]}", "Idempotency-Key": uuid.uuid4().hex}
    for _ in range(2):
        r = httpx.post(f"{c}/api/v1/events/{ev['id']}/holds", content=b'{"x\\u0000": 1}', timeout=10,
                       headers={**headers, "Content-Type": "application/json"})
        assert r.status_code == 400 and r.json()["error"]["code"] == "VALIDATION_ERROR", r.text


@pytest.mark.parametrize("service", ["command", "query"])
def test_an_unsupported_method_is_a_405_with_allow(settings, service):
    host, port = (settings.command_host, settings.command_port) if service == "command" else \
        (settings.query_host, settings.query_port)
    r = httpx.request("TRACE", f"http://{host}:{port}/health", timeout=10)
    assert r.status_code == 405 and "GET" in r.headers["Allow"], (r.status_code, dict(r.headers))
    assert r.json()["error"]["code"]


# --- #6: the idempotency layer stores nothing it must not ----------------------------------------------------
def test_auth_endpoints_are_never_replayed_and_no_token_is_stored(settings, pg):
    """Two anonymous clients using the same key both register; a login with a key gets a fresh token each time;
    no stored response holds a token."""
    c = f"http://{settings.command_host}:{settings.command_port}"
    key = {"Idempotency-Key": "shared-" + uuid.uuid4().hex}
    emails = [f"idem-{uuid.uuid4().hex}@example.com" for _ in range(2)]
    for email in emails:
        r = httpx.post(f"{c}/api/v1/auth/register", headers=key, timeout=10,
                       json={"email": email, "password": "correct horse battery", "name": "n", "role": "buyer"})
        assert r.status_code == 201 and r.json()["email"] == email, r.text
    tokens = []
    for _ in range(2):
        r = httpx.post(f"{c}/api/v1/auth/token", headers=key, timeout=10,
                       json={"email": emails[0], "password": "correct horse battery"})
        assert r.status_code == 200 and "Idempotent-Replayed" not in r.headers
        tokens.append(r.json()["access_token"])
    assert tokens[0] != tokens[1]
    with pg.cursor() as cur:
        cur.execute("SELECT count(*) FROM idempotency_keys WHERE key = %s OR response_body::text LIKE %s",
                    (key["Idempotency-Key"], "%access_token%"))
        assert cur.fetchone()[0] == 0


def test_fingerprints_are_keyed_hmacs(settings, pg, api, organizer):
    """#6: the stored fingerprint is not a plain SHA-256 of the request (which could be recomputed from a guess
    at the body)."""
    import hashlib

    c = f"http://{settings.command_host}:{settings.command_port}"
    key = uuid.uuid4().hex
    body = b'{"name": "Hall", "city": "Porto", "sections": [{"code": "GA", "name": "F", "kind": "ga", "capacity": 5}]}'
    r = httpx.post(f"{c}/api/v1/venues", content=body, timeout=10, headers={
        "Authorization": f"Bearer {organizer[1]}", "Idempotency-Key": key, "Content-Type": "application/json"})
    assert r.status_code == 201, r.text
    with pg.cursor() as cur:
        cur.execute("SELECT request_hash FROM idempotency_keys WHERE key = %s", (key,))
        stored = cur.fetchone()[0]
    assert len(stored) == 64 and stored != hashlib.sha256(b"POST /api/v1/venues\n" + body).hexdigest()


# --- #8: what the stack leaves on disk and hands to Kafka Connect ----------------------------------------------
def test_stack_files_are_private_and_connect_gets_no_secret():
    from infra import config
    from infra.stack import CONNECT, REDIS

    for key in ("logs", "conf"):
        assert config.paths()[key].stat().st_mode & 0o077 == 0, key  # the logs, the JWT secret
    assert config.paths()["data"].stat().st_mode & 0o066 == 0  # others may traverse it (postgres), not list it
    assert (config.paths()["data"] / "redis").stat().st_mode & 0o077 == 0  # the AOF
    for log in config.paths()["logs"].glob("*.log"):
        if log.name in (f"{REDIS.name}.log", f"{CONNECT.name}.log"):
            assert log.stat().st_mode & 0o077 == 0, log
    pid = CONNECT.pid()
    environ = dict(e.split("=", 1) for e in open(f"/proc/{pid}/environ").read().split("\0") if "=" in e)
    assert not {k for k in environ if k.startswith("EVENTLY_") and not k.startswith("EVENTLY_CDC_")}, sorted(environ)
    worker = (config.paths()["conf"] / "connect-distributed.properties").read_text()
    assert "connector.client.config.override.policy=None" in worker


def test_out_of_range_dates_and_nul_query_values_are_400(settings):
    q = f"http://{settings.query_host}:{settings.query_port}"
    for query in ("starts_after=0001-01-01T00:00:00%2B01:00", "category=%00", "page=", "starts_before="):
        r = httpx.get(f"{q}/api/v1/events?{query}", timeout=10)
        assert r.status_code == 400 and r.json()["error"]["code"] == "VALIDATION_ERROR", (query, r.text)


def test_a_notification_stream_ends_when_its_token_expires(settings, api):
    """#8: a signed-in stream does not outlive its token (it ends within one heartbeat interval)."""
    import time

    from tests.e2e.sse import SseClient

    user_id, _ = api.user("buyer")
    short = encode_token(user_id, "buyer", settings.jwt_secret, 2)
    url = f"http://{settings.query_host}:{settings.query_port}/api/v1/me/notifications/stream?access_token={short}"
    started = time.monotonic()
    with SseClient(url) as sse:
        assert sse.status == 200
        with pytest.raises(EOFError):
            while True:
                sse.next(settings.sse_ping_seconds + 15)
    assert time.monotonic() - started <= settings.sse_ping_seconds + 15


def test_a_notification_stream_ends_after_logout(settings, api):
    from tests.e2e.sse import SseClient

    email = f"sse-{uuid.uuid4().hex}@example.com"
    c = f"http://{settings.command_host}:{settings.command_port}"
    httpx.post(f"{c}/api/v1/auth/register", timeout=10,
               json={"email": email, "password": "correct horse battery", "name": "n", "role": "buyer"})
    token = httpx.post(f"{c}/api/v1/auth/token", json={"email": email, "password": "correct horse battery"},
                       timeout=10).json()["access_token"]
    url = f"http://{settings.query_host}:{settings.query_port}/api/v1/me/notifications/stream"
    with SseClient(url, {"Authorization": f"Bearer {token}"}) as sse:
        assert sse.status == 200
        assert httpx.post(f"{c}/api/v1/auth/logout", headers={"Authorization": f"Bearer {token}"},
                          timeout=10).status_code == 204
        with pytest.raises(EOFError):
            while True:
                sse.next(settings.sse_ping_seconds + 15)
