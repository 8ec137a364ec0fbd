"""The payment-provider port and its adapters (issue 13; CONTRACT v2 "Orders, payments and refunds").

The order handlers talk to :class:`PaymentProvider` only; ``EVENTLY_PAYMENT_PROVIDER`` picks the adapter:

* :class:`DevpayProvider`: devpay, the local stack's provider (infra/devpay/), over its REST API;
* ``stripe``: Stripe PaymentIntents through the official SDK (command_service/adapters/stripe_payments.py).

What every adapter guarantees the handlers:

* ``create_payment`` is idempotent on the order id and amount: asked twice (a retried checkout) it returns the same
  payment; a checkout retried for another amount (without the promo code it lost) makes a new one;
* ``refund`` is idempotent on the order id: asked twice (a repeated or concurrent cancel) the money goes back once;
* ``payments_for`` lists what the provider knows under an order id (reconciliation of a lost webhook);
* ``parse_webhook`` verifies the provider's signature and returns a :class:`WebhookEvent`, or raises
  :class:`contracts.payments.BadSignature`;
* a provider that does not answer raises :class:`errors.DependencyUnavailable` (``dependency: payments``): the
  HTTP layer answers 503 with ``Retry-After``. Calls are retried a few times first, which is safe because each
  one is idempotent.
"""
from __future__ import annotations

import abc
import json
from dataclasses import dataclass
from typing import Any, Mapping

import aiohttp
import structlog
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from command_service.domain import errors
from common.settings import Settings
from contracts import payments as P

log = structlog.get_logger("payments")


@dataclass(frozen=True)
class Payment:
    id: str
    status: str  # contracts.payments.PAYMENT_STATUSES
    amount: int  # minor units
    currency: str
    reference: str  # the order id
    checkout_url: str | None = None
    amount_refunded: int = 0


@dataclass(frozen=True)
class Refund:
    id: str
    payment_id: str
    status: str  # pending | succeeded | failed
    amount: int


@dataclass(frozen=True)
class WebhookEvent:
    """What a verified webhook says, whatever the provider: ``kind`` is ``payment`` or ``refund``."""
    id: str  # the provider's event id: a repeat of the same event is recorded once
    type: str  # contracts.payments.EVENT_TYPES
    kind: str
    object_id: str  # the payment's or the refund's id
    status: str
    reference: str | None  # the order id, when the object carries it
    payment_id: str | None = None  # a refund's payment
    amount: int | None = None


class PaymentProvider(abc.ABC):
    name: str

    @abc.abstractmethod
    async def create_payment(self, *, order_id: str, amount: int, currency: str, description: str,
                             return_url: str | None) -> Payment: ...

    @abc.abstractmethod
    async def get_payment(self, payment_id: str) -> Payment: ...

    @abc.abstractmethod
    async def payments_for(self, order_id: str) -> list[Payment]: ...

    @abc.abstractmethod
    async def cancel_payment(self, payment_id: str) -> Payment: ...

    @abc.abstractmethod
    async def refund(self, *, order_id: str, payment_id: str, amount: int, reason: str) -> Refund: ...

    @abc.abstractmethod
    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> WebhookEvent: ...

    async def close(self) -> None:
        return None


class _Transient(Exception):
    """A call that may work if tried again: no answer, or a 5xx."""


class ProviderRefused(errors.DomainError):
    """The provider refused the call (its 4xx): a bug or a state mismatch, not an outage."""

    code = "INVALID_STATE"


class DevpayProvider(PaymentProvider):
    name = "devpay"

    def __init__(self, settings: Settings, *, attempts: int = 3, timeout_s: float = 5.0) -> None:
        self.base = settings.devpay_url.rstrip("/")
        self.key, self.secret = settings.devpay_api_key, settings.devpay_webhook_secret
        self.attempts, self.timeout = attempts, aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self.timeout,
                                                  headers={"Authorization": f"Bearer {self.key}"})
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def _call(self, method: str, path: str, *, body: dict[str, Any] | None = None,
                    key: str | None = None, params: dict[str, str] | None = None) -> dict[str, Any]:
        headers = {"Idempotency-Key": key} if key else {}

        async def once() -> dict[str, Any]:
            try:
                async with self._client().request(method, self.base + path, json=body, params=params,
                                                  headers=headers) as r:
                    data = await r.json(content_type=None)
                    if r.status >= 500:
                        raise _Transient(f"devpay answered {r.status}")
                    if r.status >= 400:
                        message = (data or {}).get("error", {}).get("message", f"HTTP {r.status}")
                        raise ProviderRefused(f"devpay refused {method} {path}: {message}",
                                              {"provider_status": r.status})
                    return data
            except (aiohttp.ClientError, TimeoutError, json.JSONDecodeError) as exc:
                raise _Transient(repr(exc)[:200]) from exc

        try:
            async for attempt in AsyncRetrying(stop=stop_after_attempt(self.attempts), reraise=True,
                                               wait=wait_exponential(multiplier=0.1, max=1.0),
                                               retry=retry_if_exception_type(_Transient)):
                with attempt:
                    return await once()
        except _Transient as exc:
            log.warning("payment provider unavailable", provider=self.name, call=f"{method} {path}", error=str(exc))
            raise errors.DependencyUnavailable("payments", "the payment provider is not answering") from exc
        raise AssertionError("unreachable")

    @staticmethod
    def _payment(d: dict[str, Any]) -> Payment:
        return Payment(id=d["id"], status=d["status"], amount=d["amount"], currency=d["currency"],
                       reference=d["reference"], checkout_url=d.get("checkout_url"),
                       amount_refunded=d.get("amount_refunded", 0))

    async def create_payment(self, *, order_id: str, amount: int, currency: str, description: str,
                             return_url: str | None) -> Payment:
        body = {"amount": amount, "currency": currency, "reference": order_id, "description": description[:500]}
        if return_url:
            body["return_url"] = return_url
        return self._payment(await self._call("POST", "/v1/payments", body=body, key=f"payment:{order_id}:{amount}"))

    async def get_payment(self, payment_id: str) -> Payment:
        return self._payment(await self._call("GET", f"/v1/payments/{payment_id}"))

    async def payments_for(self, order_id: str) -> list[Payment]:
        data = await self._call("GET", "/v1/payments", params={"reference": order_id})
        return [self._payment(d) for d in data["items"]]

    async def cancel_payment(self, payment_id: str) -> Payment:
        return self._payment(await self._call("POST", f"/v1/payments/{payment_id}/cancel"))

    async def refund(self, *, order_id: str, payment_id: str, amount: int, reason: str) -> Refund:
        d = await self._call("POST", "/v1/refunds", body={"payment_id": payment_id, "amount": amount,
                                                         "reason": reason[:200]}, key=f"refund:{order_id}")
        return Refund(id=d["id"], payment_id=d["payment_id"], status=d["status"], amount=d["amount"])

    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> WebhookEvent:
        P.verify(self.secret, headers.get(P.SIGNATURE_HEADER) or headers.get(P.SIGNATURE_HEADER.lower()), body)
        try:
            event = json.loads(body)
            obj = event["data"]["object"]
            kind = obj["object"]
            if event["type"] not in P.EVENT_TYPES or kind not in ("payment", "refund"):
                raise ValueError(f"unknown event type {event['type']!r}")
            return WebhookEvent(id=event["id"], type=event["type"], kind=kind, object_id=obj["id"],
                                status=obj["status"], reference=obj.get("reference"),
                                payment_id=obj.get("payment_id"), amount=obj.get("amount"))
        except (ValueError, KeyError, TypeError) as exc:
            raise P.BadSignature(f"signed, but not a devpay event: {exc}") from exc


def provider_for(settings: Settings) -> PaymentProvider:
    if settings.payment_provider == "stripe":
        from command_service.adapters.stripe_payments import StripeProvider

        return StripeProvider(settings)
    return DevpayProvider(settings)
