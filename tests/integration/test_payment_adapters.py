"""The payment port's two adapters against real servers: DevpayProvider against the stack's devpay, StripeProvider
against stripe-mock (Stripe's own mock server, built like FerretDB by infra/install.py). Webhooks are signed here.
"""
from __future__ import annotations

import json
import socket
import subprocess
import time
import uuid

import httpx
import pytest

from command_service.adapters.payments import DevpayProvider, ProviderRefused
from command_service.domain import errors
from common.settings import Settings
from contracts import payments as P

pytestmark = pytest.mark.integration


@pytest.fixture
async def devpay(settings):
    provider = DevpayProvider(settings)
    yield provider
    await provider.close()


def script(settings, path: str) -> dict:
    """What a test script does at devpay (the checkout page's buttons, without a browser)."""
    r = httpx.post(f"{settings.devpay_url}{path}", headers={"Authorization": f"Bearer {settings.devpay_api_key}"})
    assert r.status_code == 200, r.text
    return r.json()


async def test_devpay_payment_and_refund_are_idempotent_on_the_order(devpay, settings):
    order_id = str(uuid.uuid4())
    first = await devpay.create_payment(order_id=order_id, amount=5000, currency="EUR", description="2 seats",
                                        return_url="http://127.0.0.1:8002/return")
    again = await devpay.create_payment(order_id=order_id, amount=5000, currency="EUR", description="2 seats",
                                        return_url="http://127.0.0.1:8002/return")
    assert first == again and first.status == P.PENDING and first.reference == order_id
    assert first.checkout_url == f"{settings.devpay_url}/checkout/{first.id}"
    assert [p.id for p in await devpay.payments_for(order_id)] == [first.id]
    with pytest.raises(ProviderRefused):  # not paid: nothing to refund
        await devpay.refund(order_id=order_id, payment_id=first.id, amount=5000, reason="cancelled")
    script(settings, f"/v1/payments/{first.id}/capture")
    assert (await devpay.get_payment(first.id)).status == P.SUCCEEDED
    refunds = [await devpay.refund(order_id=order_id, payment_id=first.id, amount=5000, reason="cancelled")
               for _ in range(3)]
    assert len({r.id for r in refunds}) == 1 and refunds[0].status == P.SUCCEEDED and refunds[0].amount == 5000
    assert (await devpay.get_payment(first.id)).amount_refunded == 5000


async def test_devpay_cancel_ends_a_pending_payment(devpay, settings):
    pay = await devpay.create_payment(order_id=str(uuid.uuid4()), amount=100, currency="EUR", description="x",
                                      return_url=None)
    assert (await devpay.cancel_payment(pay.id)).status == P.CANCELED
    r = httpx.post(f"{settings.devpay_url}/v1/payments/{pay.id}/capture",
                   headers={"Authorization": f"Bearer {settings.devpay_api_key}"})
    assert r.status_code == 409  # a canceled payment cannot be paid any more


def test_devpay_webhooks_are_verified(settings):
    provider = DevpayProvider(settings)
    body = json.dumps({"id": "evt_1", "type": P.PAYMENT_SUCCEEDED, "created": time.time(), "data": {"object": {
        "id": "pay_1", "object": "payment", "status": P.SUCCEEDED, "reference": "order-1", "amount": 700}}}).encode()
    event = provider.parse_webhook({P.SIGNATURE_HEADER: P.sign(settings.devpay_webhook_secret, body)}, body)
    assert (event.id, event.type, event.kind, event.object_id, event.status, event.reference, event.amount) == (
        "evt_1", P.PAYMENT_SUCCEEDED, "payment", "pay_1", P.SUCCEEDED, "order-1", 700)
    with pytest.raises(P.BadSignature):
        provider.parse_webhook({P.SIGNATURE_HEADER: P.sign("another-secret-0123456789abcdef", body)}, body)
    old = P.sign(settings.devpay_webhook_secret, body, t=int(time.time()) - P.SIGNATURE_TOLERANCE_S - 5)
    with pytest.raises(P.BadSignature):
        provider.parse_webhook({P.SIGNATURE_HEADER: old}, body)
    strange = json.dumps({"id": "evt_2", "type": "payment.teleported", "data": {"object": {}}}).encode()
    with pytest.raises(P.BadSignature):
        provider.parse_webhook({P.SIGNATURE_HEADER: P.sign(settings.devpay_webhook_secret, strange)}, strange)


async def test_a_provider_that_does_not_answer_is_a_dependency_error(settings):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once the socket closes
    provider = DevpayProvider(settings.model_copy(update={"devpay_url": f"http://127.0.0.1:{port}"}), attempts=2)
    try:
        with pytest.raises(errors.DependencyUnavailable) as info:
            await provider.create_payment(order_id=str(uuid.uuid4()), amount=100, currency="EUR", description="x",
                                          return_url=None)
        assert info.value.details == {"dependency": "payments"}
    finally:
        await provider.close()


# ---------------------------------------------------------------------- Stripe, against stripe-mock
@pytest.fixture(scope="module")
def stripe_mock():
    from infra import install

    binary = install.ensure_stripe_mock()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([str(binary), "-http-addr", f"127.0.0.1:{port}"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(f"{url}/v1/payment_intents", headers={"Authorization": "Bearer sk_test_123"}, timeout=1)
            break
        except httpx.HTTPError:
            assert proc.poll() is None and time.monotonic() < deadline, "stripe-mock did not start"
            time.sleep(0.2)
    yield url
    proc.kill()
    proc.wait(10)


@pytest.fixture
async def stripe_provider(stripe_mock):
    from command_service.adapters.stripe_payments import StripeProvider

    yield StripeProvider(Settings(stripe_api_key="sk_test_123", stripe_api_base=stripe_mock,
                                  stripe_webhook_secret="whsec_test_0123456789abcdef"))


async def test_stripe_adapter_speaks_stripes_api(stripe_provider):
    order_id = str(uuid.uuid4())
    pay = await stripe_provider.create_payment(order_id=order_id, amount=4200, currency="EUR", description="seats",
                                               return_url=None)
    # stripe-mock answers from fixtures (it validates the request, it does not keep state): the shapes are real
    assert pay.id.startswith("pi_") and pay.status in P.PAYMENT_STATUSES and pay.currency.isupper()
    got = await stripe_provider.get_payment(pay.id)
    assert got.id == pay.id
    canceled = await stripe_provider.cancel_payment(pay.id)  # the fixture's status: stripe-mock keeps no state
    assert canceled.id == pay.id and canceled.status in P.PAYMENT_STATUSES
    refund = await stripe_provider.refund(order_id=order_id, payment_id=pay.id, amount=4200, reason="cancelled")
    assert refund.id.startswith("re_") and refund.status in ("pending", "succeeded", "failed")
    assert isinstance(await stripe_provider.payments_for(order_id), list)


async def test_stripe_adapter_refuses_what_stripe_refuses(stripe_provider):
    with pytest.raises(ProviderRefused):
        await stripe_provider.get_payment("not-an-intent-id/..")


def _stripe_event(type_: str, obj: dict) -> bytes:
    return json.dumps({"id": f"evt_{uuid.uuid4().hex}", "object": "event", "type": type_, "api_version": "2024-06-20",
                       "created": int(time.time()), "data": {"object": obj}}).encode()


def test_stripe_webhooks_are_verified_with_the_sdk(stripe_provider):
    secret = stripe_provider.webhook_secret
    body = _stripe_event("payment_intent.succeeded", {"id": "pi_1", "object": "payment_intent", "amount": 4200,
                                                      "status": "succeeded", "metadata": {"order_id": "o-1"}})
    # Stripe signs as devpay does: t=<unix>,v1=<HMAC-SHA256 of "t.body">
    event = stripe_provider.parse_webhook({"Stripe-Signature": P.sign(secret, body)}, body)
    assert (event.type, event.kind, event.object_id, event.status, event.reference) == (
        P.PAYMENT_SUCCEEDED, "payment", "pi_1", P.SUCCEEDED, "o-1")
    failed = _stripe_event("payment_intent.payment_failed", {"id": "pi_2", "object": "payment_intent",
                                                             "status": "requires_payment_method", "metadata": {}})
    assert stripe_provider.parse_webhook({"Stripe-Signature": P.sign(secret, failed)}, failed).status == P.FAILED
    refund = _stripe_event("refund.updated", {"id": "re_1", "object": "refund", "status": "succeeded",
                                              "amount": 4200, "payment_intent": "pi_1", "metadata": {"order_id": "o-1"}})
    got = stripe_provider.parse_webhook({"Stripe-Signature": P.sign(secret, refund)}, refund)
    assert (got.type, got.kind, got.payment_id, got.reference) == (P.REFUND_SUCCEEDED, "refund", "pi_1", "o-1")
    with pytest.raises(P.BadSignature):
        stripe_provider.parse_webhook({"Stripe-Signature": P.sign("whsec_other_0123456789", body)}, body)
    with pytest.raises(P.BadSignature):
        stripe_provider.parse_webhook({}, body)
