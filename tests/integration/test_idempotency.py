"""CONTRACT "Idempotency": replay, in progress, key reused."""
from __future__ import annotations

import asyncio
import json
import uuid

import pytest

from common.auth import encode_token
from command_service.adapters.idempotency import IdempotencyStore
from tests.integration.conftest import eventually, seated

pytestmark = pytest.mark.integration


async def test_a_replay_returns_the_first_response(api, pg, organizer):
    event = await api.on_sale_event(organizer[1], [seated("A", rows=1, seats=5)])
    buyer = api.buyer_token()
    key = {"Idempotency-Key": uuid.uuid4().hex}
    path = f"/api/v1/events/{event['id']}/holds"
    first = await api.call("POST", path, buyer, json={"seats": ["A-1-1"]}, headers=key)
    again = await api.call("POST", path, buyer, json={"seats": ["A-1-1"]}, headers=key)
    assert first.status == again.status == 201
    assert again.body == first.body
    assert again.headers.get("Idempotent-Replayed") == "true"
    cur = await pg.execute("SELECT count(*) AS n FROM holds WHERE event_id = %s", (event["id"],))
    assert (await cur.fetchone())["n"] == 1

    # Another user's identical key is a different request altogether.
    other = await api.call("POST", path, api.buyer_token(), json={"seats": ["A-1-1"]}, headers=key)
    assert (other.status, other.code) == (409, "SEATS_UNAVAILABLE")
    # Error responses are replayed too.
    assert (await api.call("POST", path, api.buyer_token(), json={"seats": ["A-1-1"]}, headers=key)).status == 409

    order_key = {"Idempotency-Key": uuid.uuid4().hex}
    o1 = await api.call("POST", "/api/v1/orders", buyer, json={"hold_id": first.body["id"]}, headers=order_key)
    o2 = await api.call("POST", "/api/v1/orders", buyer, json={"hold_id": first.body["id"]}, headers=order_key)
    assert (o1.status, o2.status) == (201, 201) and o1.body == o2.body


async def test_the_same_key_with_another_body_is_refused(api, organizer):
    event = await api.on_sale_event(organizer[1], [seated("A", rows=1, seats=5)])
    buyer = api.buyer_token()
    key = {"Idempotency-Key": uuid.uuid4().hex}
    path = f"/api/v1/events/{event['id']}/holds"
    assert (await api.call("POST", path, buyer, json={"seats": ["A-1-1"]}, headers=key)).status == 201
    reused = await api.call("POST", path, buyer, json={"seats": ["A-1-2"]}, headers=key)
    assert (reused.status, reused.code) == (409, "IDEMPOTENCY_KEY_REUSED")


async def test_a_repeat_while_the_first_runs_is_refused(api, pg, organizer):
    event = await api.on_sale_event(organizer[1], [seated("A", rows=1, seats=5)])
    buyer_id = str(uuid.uuid4())
    token = encode_token(buyer_id, "buyer", api.settings.jwt_secret, 600)
    key, path, body = uuid.uuid4().hex, f"/api/v1/events/{event['id']}/holds", {"seats": ["A-1-3"]}
    raw = json.dumps(body).encode()
    # The first request with this key is "still running": its record has no response yet.
    await pg.execute("INSERT INTO idempotency_keys (user_id, key, request_hash) VALUES (%s, %s, %s)",
                     (buyer_id, key, IdempotencyStore(None, api.settings.jwt_secret).fingerprint("POST", path, raw)))
    r = await api.call("POST", path, token, data=raw,
                       headers={"Idempotency-Key": key, "Content-Type": "application/json"})
    assert (r.status, r.code) == (409, "IDEMPOTENCY_IN_PROGRESS")
    cur = await pg.execute("SELECT count(*) AS n FROM holds WHERE event_id = %s", (event["id"],))
    assert (await cur.fetchone())["n"] == 0


async def test_a_claim_whose_process_died_is_taken_over_at_once(api, pg, organizer, settings):
    """Found by the fault suite (kill -9 of a command worker): the client's retry got 409 IDEMPOTENCY_IN_PROGRESS
    for 60 s. A claim names its process's lease (adapters/lease.py); while that process lives the retry is refused,
    once it is gone (its connection closed: the advisory lock is released at once) the retry runs."""
    from command_service.adapters.lease import ProcessLease

    event = await api.on_sale_event(organizer[1], [seated("A", rows=1, seats=5)])
    buyer_id = str(uuid.uuid4())
    token = encode_token(buyer_id, "buyer", api.settings.jwt_secret, 600)
    key, path, body = uuid.uuid4().hex, f"/api/v1/events/{event['id']}/holds", {"seats": ["A-1-4"]}
    raw = json.dumps(body).encode()
    other = ProcessLease(settings.database_url).start()  # the "other process" that ran the first attempt
    try:
        await eventually(lambda: asyncio.sleep(0, other.key))
        first = IdempotencyStore(None, api.settings.jwt_secret)
        await pg.execute("INSERT INTO idempotency_keys (user_id, key, request_hash, owner) VALUES (%s, %s, %s, %s)",
                         (buyer_id, key, first.fingerprint("POST", path, raw), other.key))
        headers = {"Idempotency-Key": key, "Content-Type": "application/json"}
        r = await api.call("POST", path, token, data=raw, headers=headers)
        assert (r.status, r.code) == (409, "IDEMPOTENCY_IN_PROGRESS")  # its process is alive: still running
    finally:
        await other.close()  # the process dies
    r = await api.call("POST", path, token, data=raw, headers=headers)
    assert r.status == 201, r.body  # taken over at once, not after 60 s
    again = await api.call("POST", path, token, data=raw, headers=headers)
    assert again.status == 201 and again.body["id"] == r.body["id"]  # and remembered as usual
