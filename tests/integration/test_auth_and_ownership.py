"""Every endpoint checks role and ownership; admins come from the CLI only."""
from __future__ import annotations

import subprocess
import sys
import uuid

import pytest

from common.auth import encode_token
from tests.integration.conftest import seated

pytestmark = pytest.mark.integration


async def test_register_and_token(api):
    email = f"Buyer-{uuid.uuid4().hex}@Example.com"
    body = {"email": email, "password": "long enough", "name": "B", "role": "buyer"}
    r = await api.call("POST", "/api/v1/auth/register", json=body)
    assert r.status == 201 and r.body["email"] == email.lower() and r.body["role"] == "buyer"
    assert "password" not in str(r.body) and "hash" not in str(r.body)
    dup = await api.call("POST", "/api/v1/auth/register", json=body)
    assert (dup.status, dup.code) == (409, "EMAIL_EXISTS")
    admin = await api.call("POST", "/api/v1/auth/register", json={**body, "email": "x" + email, "role": "admin"})
    assert (admin.status, admin.code) == (400, "VALIDATION_ERROR") and "role" in admin.body["error"]["details"]
    bad = await api.call("POST", "/api/v1/auth/token", json={"email": email, "password": "wrong password"})
    assert (bad.status, bad.code) == (401, "UNAUTHENTICATED")
    nobody = await api.call("POST", "/api/v1/auth/token", json={"email": "no" + email, "password": "long enough"})
    assert (nobody.status, nobody.code) == (401, "UNAUTHENTICATED")
    ok = await api.call("POST", "/api/v1/auth/token", json={"email": email, "password": "long enough"})
    assert ok.status == 200 and ok.body["token_type"] == "bearer" and ok.body["expires_in"] > 0


async def test_tokens_are_checked(api, organizer, settings):
    path = "/api/v1/venues"
    body = {"name": "V", "city": "C", "sections": [seated()]}
    for token in (None, "garbage", encode_token(organizer[0], "organizer", "another-secret-0123456789abcdef-xyz", 60),
                  encode_token(organizer[0], "organizer", settings.jwt_secret, -60),
                  encode_token("not-a-uuid", "organizer", settings.jwt_secret, 60)):
        r = await api.call("POST", path, token, json=body)
        assert (r.status, r.code) == (401, "UNAUTHENTICATED"), token


async def test_a_foreign_token_is_refused_on_every_owner_scoped_endpoint(api, pg, organizer):
    owner = organizer[1]
    _, intruder = await api.account("organizer")
    event = await api.on_sale_event(owner, [seated("A", rows=1, seats=4)])
    cur = await pg.execute("SELECT venue_id FROM events WHERE id = %s", (event["id"],))
    venue_id = str((await cur.fetchone())["venue_id"])
    buyer, stranger = api.buyer_token(), api.buyer_token()
    hold = await api.hold(buyer, event["id"], seats=["A-1-1"])
    order = await api.checkout(buyer, (await api.hold(buyer, event["id"], seats=["A-1-2"])).body["id"])
    assert hold.status == 201 and order.status == 201
    e = f"/api/v1/events/{event['id']}"

    refusals = {
        "create event at a foreign venue": await api.call("POST", "/api/v1/events", intruder, json={
            "venue_id": venue_id, "title": "Mine", "category": "music", "starts_at": "2030-01-01T20:00:00Z",
            "currency": "EUR", "prices": {"A": 1}}),
        "patch": await api.call("PATCH", e, intruder, json={"title": "Hijacked"}),
        "publish": await api.call("POST", e + "/publish", intruder),
        "cancel event": await api.call("POST", e + "/cancel", intruder),
        "cancel event as buyer": await api.call("POST", e + "/cancel", buyer),
        "release hold": await api.call("DELETE", f"/api/v1/holds/{hold.body['id']}", stranger),
        "checkout": await api.checkout(stranger, hold.body["id"]),
        "cancel order": await api.call("POST", f"/api/v1/orders/{order.body['id']}/cancel", stranger),
        "cancel order as another organizer": await api.call(
            "POST", f"/api/v1/orders/{order.body['id']}/cancel", intruder),
        "hold as organizer": await api.hold(owner, event["id"], seats=["A-1-3"]),
        "venue as buyer": await api.call("POST", "/api/v1/venues", buyer,
                                         json={"name": "V", "city": "C", "sections": [seated()]}),
    }
    for what, r in refusals.items():
        assert r.status in (403, 404) and r.code in ("FORBIDDEN", "NOT_FOUND"), (what, r.status, r.body)
    # Nothing changed hands.
    cur = await pg.execute("SELECT title, status FROM events WHERE id = %s", (event["id"],))
    assert await cur.fetchone() == {"title": event["title"], "status": "on_sale"}
    cur = await pg.execute("SELECT status FROM holds WHERE id = %s", (hold.body["id"],))
    assert (await cur.fetchone())["status"] == "active"
    cur = await pg.execute("SELECT status FROM orders WHERE id = %s", (order.body["id"],))
    assert (await cur.fetchone())["status"] == "confirmed"


async def test_admins_come_from_the_cli_and_may_cancel_any_event(api, organizer, settings):
    email = f"admin-{uuid.uuid4().hex}@example.com"
    cli = subprocess.run([sys.executable, "-m", "command_service.entrypoints.cli", "create-admin", "--email", email,
                          "--password", "admin password"], capture_output=True, text=True, timeout=60)
    assert cli.returncode == 0, cli.stderr
    token = await api.call("POST", "/api/v1/auth/token", json={"email": email, "password": "admin password"})
    assert token.status == 200
    admin = token.body["access_token"]
    event = await api.on_sale_event(organizer[1], [seated("A", rows=1, seats=2)])
    r = await api.call("POST", f"/api/v1/events/{event['id']}/cancel", admin)
    assert r.status == 200 and r.body["status"] == "cancelled"
    again = subprocess.run([sys.executable, "-m", "command_service.entrypoints.cli", "create-admin", "--email", email,
                            "--password", "admin password"], capture_output=True, text=True, timeout=60)
    assert again.returncode == 1 and "exists" in again.stderr
