"""The Stripe adapter of the payment port (command_service/adapters/payments.py): PaymentIntents and Refunds through
the official ``stripe`` SDK (async calls over httpx), webhooks verified with ``stripe.Webhook.construct_event``.

How Stripe's shapes map onto the port:

* a payment is a PaymentIntent with ``metadata.order_id``; ``requires_*`` and ``processing`` are ``pending``,
  ``succeeded`` is ``succeeded``, ``canceled`` is ``canceled``; a ``payment_intent.payment_failed`` webhook is
  ``failed`` (Stripe leaves the intent in ``requires_payment_method``, open for another try; Evently ends the
  order there and cancels the intent);
* ``checkout_url`` is None: a Stripe buyer pays on a page that mounts Stripe Elements with the intent's client
  secret, which this milestone does not build (devpay is the provider of the local stack);
* idempotency keys are ``payment:<order id>:<amount>`` and ``refund:<order id>``, as with devpay.

The tests run it against stripe-mock (Stripe's own mock server), and sign webhook payloads themselves.
"""
from __future__ import annotations

from typing import Any, Mapping

import stripe
import structlog

from command_service.adapters.payments import Payment, PaymentProvider, ProviderRefused, Refund, WebhookEvent
from command_service.domain import errors
from common.settings import Settings
from contracts import payments as P

log = structlog.get_logger("payments.stripe")

PENDING_STATES = {"requires_payment_method", "requires_confirmation", "requires_action", "processing",
                  "requires_capture"}
EVENT_TYPES = {
    "payment_intent.succeeded": P.PAYMENT_SUCCEEDED,
    "payment_intent.payment_failed": P.PAYMENT_FAILED,
    "payment_intent.canceled": P.PAYMENT_CANCELED,
    "refund.updated": None,  # by the refund's own status
    "refund.created": None,
    "refund.failed": P.REFUND_FAILED,
}
SIGNATURE_HEADER = "Stripe-Signature"


def _plain(obj: Any) -> dict[str, Any]:
    """The SDK's objects are not dicts (``.get`` is refused): the plain, recursive dict of one."""
    return obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)


def _status(intent: dict[str, Any]) -> str:
    if intent["status"] == "succeeded":
        return P.SUCCEEDED
    if intent["status"] == "canceled":
        return P.CANCELED
    return P.PENDING


class StripeProvider(PaymentProvider):
    name = "stripe"

    def __init__(self, settings: Settings) -> None:
        base = {"api": settings.stripe_api_base} if settings.stripe_api_base else None
        self.client = stripe.StripeClient(settings.stripe_api_key, base_addresses=base, max_network_retries=2,
                                          http_client=stripe.HTTPXClient())
        self.webhook_secret = settings.stripe_webhook_secret

    async def _call(self, what: str, coro) -> Any:
        try:
            return await coro
        except (stripe.APIConnectionError, stripe.RateLimitError) as exc:
            log.warning("payment provider unavailable", provider=self.name, call=what, error=str(exc)[:200])
            raise errors.DependencyUnavailable("payments", "the payment provider is not answering") from exc
        except stripe.APIError as exc:  # Stripe's own 5xx
            raise errors.DependencyUnavailable("payments", "the payment provider failed") from exc
        except stripe.StripeError as exc:  # 4xx: the request or the object's state
            raise ProviderRefused(f"stripe refused {what}: {exc.user_message or exc}",
                                  {"provider_status": exc.http_status}) from exc

    @staticmethod
    def _payment(obj: Any) -> Payment:
        intent = _plain(obj)
        return Payment(id=intent["id"], status=_status(intent), amount=intent["amount"],
                       currency=intent["currency"].upper(), reference=(intent.get("metadata") or {}).get("order_id", ""),
                       checkout_url=None, amount_refunded=0)

    async def create_payment(self, *, order_id: str, amount: int, currency: str, description: str,
                             return_url: str | None) -> Payment:
        intent = await self._call("create payment", self.client.v1.payment_intents.create_async(
            params={"amount": amount, "currency": currency.lower(), "description": description[:500],
                    "metadata": {"order_id": order_id}, "automatic_payment_methods": {"enabled": True}},
            options={"idempotency_key": f"payment:{order_id}:{amount}"}))
        return self._payment(intent)

    async def get_payment(self, payment_id: str) -> Payment:
        return self._payment(await self._call("get payment", self.client.v1.payment_intents.retrieve_async(payment_id)))

    async def payments_for(self, order_id: str) -> list[Payment]:
        found = await self._call("search payments", self.client.v1.payment_intents.search_async(
            params={"query": f"metadata['order_id']:'{order_id}'"}))
        return [self._payment(i) for i in found.data]

    async def cancel_payment(self, payment_id: str) -> Payment:
        return self._payment(await self._call("cancel payment",
                                              self.client.v1.payment_intents.cancel_async(payment_id)))

    async def refund(self, *, order_id: str, payment_id: str, amount: int, reason: str) -> Refund:
        r = await self._call("refund", self.client.v1.refunds.create_async(
            params={"payment_intent": payment_id, "amount": amount, "metadata": {"order_id": order_id,
                                                                                "reason": reason[:200]}},
            options={"idempotency_key": f"refund:{order_id}"}))
        r = _plain(r)
        status = r["status"] if r["status"] in ("pending", "succeeded", "failed") else "pending"
        return Refund(id=r["id"], payment_id=payment_id, status=status, amount=r["amount"])

    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> WebhookEvent:
        header = headers.get(SIGNATURE_HEADER) or headers.get(SIGNATURE_HEADER.lower())
        try:
            event = stripe.Webhook.construct_event(body, header, self.webhook_secret)
        except (stripe.SignatureVerificationError, ValueError) as exc:
            raise P.BadSignature(str(exc)[:200]) from exc
        if event["type"] not in EVENT_TYPES:
            raise P.BadSignature(f"signed, but not an event Evently handles: {event['type']}")
        obj = _plain(event["data"]["object"])
        if event["type"].startswith("refund."):
            status = obj["status"] if obj["status"] in ("pending", "succeeded", "failed") else "pending"
            type_ = EVENT_TYPES[event["type"]] or {"succeeded": P.REFUND_SUCCEEDED, "failed": P.REFUND_FAILED}.get(
                status, P.REFUND_PENDING)
            return WebhookEvent(id=event["id"], type=type_, kind="refund", object_id=obj["id"], status=status,
                                reference=(obj.get("metadata") or {}).get("order_id"),
                                payment_id=obj.get("payment_intent"), amount=obj.get("amount"))
        status = {P.PAYMENT_SUCCEEDED: P.SUCCEEDED, P.PAYMENT_FAILED: P.FAILED,
                  P.PAYMENT_CANCELED: P.CANCELED}[EVENT_TYPES[event["type"]]]
        return WebhookEvent(id=event["id"], type=EVENT_TYPES[event["type"]], kind="payment", object_id=obj["id"],
                            status=status, reference=(obj.get("metadata") or {}).get("order_id"),
                            amount=obj.get("amount"))
