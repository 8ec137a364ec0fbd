"""POST /api/v1/payments/{provider}/webhook (CONTRACT: 200 once recorded, a repeat recorded once, 400 on a bad
signature): signed here, and end to end from the stack's devpay, which delivers its webhooks to the command service
of the stack."""
from __future__ import annotations

import json
import time
import uuid

import httpx
import pytest

from command_service.adapters.payments import DevpayProvider
from contracts import payments as P
from tests.integration.conftest import eventually

pytestmark = pytest.mark.integration
PATH = "/api/v1/payments/devpay/webhook"


def devpay_event(type_: str = P.PAYMENT_SUCCEEDED, **obj) -> bytes:
    return json.dumps({"id": f"evt_{uuid.uuid4().hex}", "type": type_, "created": time.time(), "data": {"object": {
        "id": f"pay_{uuid.uuid4().hex[:24]}", "object": "payment", "status": P.SUCCEEDED,
        "reference": str(uuid.uuid4()), "amount": 1200, **obj}}}).encode()


async def rows(pg, event_id: str) -> list[dict]:
    cur = await pg.execute("SELECT * FROM payment_webhooks WHERE event_id = %s", (event_id,))
    return await cur.fetchall()


async def test_a_signed_webhook_is_recorded_once(api, pg, settings):
    body = devpay_event()
    event = json.loads(body)
    for duplicate in (False, True, True):  # the provider retries until it has a 2xx
        r = await api.call("POST", PATH, data=body, headers={
            P.SIGNATURE_HEADER: P.sign(settings.devpay_webhook_secret, body), "Content-Type": "application/json"})
        assert r.status == 200 and r.body == {"received": True, "duplicate": duplicate}, r.body
    [row] = await rows(pg, event["id"])
    assert (row["provider"], row["type"], row["object_id"], row["reference"], row["status"]) == (
        "devpay", P.PAYMENT_SUCCEEDED, event["data"]["object"]["id"], event["data"]["object"]["reference"],
        P.SUCCEEDED)
    assert row["payload"] == event and row["processed_at"] is None


@pytest.mark.parametrize("case", ["unsigned", "wrong secret", "too old", "tampered", "not an event"])
async def test_a_webhook_that_is_not_the_providers_is_refused(api, pg, settings, case):
    body = devpay_event()
    header = P.sign(settings.devpay_webhook_secret, body)
    if case == "unsigned":
        header = None
    elif case == "wrong secret":
        header = P.sign("not-the-webhook-secret-0123456789", body)
    elif case == "too old":
        header = P.sign(settings.devpay_webhook_secret, body, t=int(time.time()) - 3600)
    elif case == "tampered":
        body = body.replace(b'"amount": 1200', b'"amount": 1')
    elif case == "not an event":
        body = b'{"hello": "world"}'
        header = P.sign(settings.devpay_webhook_secret, body)
    r = await api.call("POST", PATH, data=body, headers={P.SIGNATURE_HEADER: header} if header else {})
    assert r.status == 400 and r.code == "VALIDATION_ERROR", r.body
    if case != "not an event":
        assert await rows(pg, json.loads(body)["id"]) == []


async def test_a_provider_this_deployment_does_not_use_is_not_found(api):
    r = await api.call("POST", "/api/v1/payments/paypal/webhook", data=b"{}")
    assert r.status == 404 and r.code == "NOT_FOUND"


async def test_the_stacks_devpay_delivers_its_webhooks_to_the_command_service(pg, settings):
    """The real path: a payment at devpay, captured as a script would, and its webhook recorded by the stack's
    command service (devpay retries until it has the 200)."""
    provider = DevpayProvider(settings)
    try:
        pay = await provider.create_payment(order_id=str(uuid.uuid4()), amount=900, currency="EUR",
                                            description="webhook path", return_url=None)
        r = httpx.post(f"{settings.devpay_url}/v1/payments/{pay.id}/capture",
                       headers={"Authorization": f"Bearer {settings.devpay_api_key}"})
        assert r.status_code == 200

        async def recorded():
            cur = await pg.execute("SELECT type, reference FROM payment_webhooks WHERE object_id = %s", (pay.id,))
            return await cur.fetchall()

        got = await eventually(recorded, timeout=20)
        assert got == [{"type": P.PAYMENT_SUCCEEDED, "reference": pay.reference}]
    finally:
        await provider.close()


async def test_a_stripe_deployment_takes_stripe_signed_webhooks(settings, pg):
    """EVENTLY_PAYMENT_PROVIDER=stripe: the same endpoint under /stripe/, verified by the Stripe SDK."""
    from aiohttp.test_utils import TestServer

    from command_service.entrypoints.app import create_app
    from tests.integration.conftest import make_api

    secret = "whsec_" + uuid.uuid4().hex
    stripe_settings = settings.model_copy(update={"payment_provider": "stripe", "stripe_api_key": "sk_test_123",
                                                  "stripe_webhook_secret": secret})
    server = TestServer(create_app(stripe_settings), host="127.0.0.1", port=0)
    await server.start_server()
    api = await make_api(str(server.make_url("")).rstrip("/"), stripe_settings)
    try:
        event_id = f"evt_{uuid.uuid4().hex}"
        body = json.dumps({"id": event_id, "object": "event", "type": "payment_intent.succeeded",
                           "created": int(time.time()), "data": {"object": {
                               "id": "pi_" + uuid.uuid4().hex[:20], "object": "payment_intent", "amount": 900,
                               "status": "succeeded", "metadata": {"order_id": "o-1"}}}}).encode()
        r = await api.call("POST", "/api/v1/payments/stripe/webhook", data=body,
                           headers={"Stripe-Signature": P.sign(secret, body)})
        assert r.status == 200 and r.body == {"received": True, "duplicate": False}, r.body
        [row] = await rows(pg, event_id)
        assert (row["provider"], row["type"], row["reference"]) == ("stripe", P.PAYMENT_SUCCEEDED, "o-1")
        r = await api.call("POST", "/api/v1/payments/stripe/webhook", data=body,
                           headers={"Stripe-Signature": P.sign("whsec_wrong", body)})
        assert r.status == 400
        assert (await api.call("POST", PATH, data=body)).status == 404  # devpay is not this deployment's provider
    finally:
        await api.session.close()
        await server.close()
