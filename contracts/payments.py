"""The payment provider's wire shapes that cross a service (CONTRACT v2 "Orders, payments and refunds"), defined
once: devpay (infra/devpay/) signs and sends them, the command service's devpay adapter verifies and reads them.

Webhook signature, as CONTRACT says: ``Devpay-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">``
with the shared webhook secret. The timestamp is inside the signed text, so a captured webhook cannot be replayed
with a fresh ``t``; a receiver refuses one older than ``SIGNATURE_TOLERANCE_S`` (or as far in the future).
"""
from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "Devpay-Signature"
SIGNATURE_TOLERANCE_S = 300

# Payment statuses: a payment starts ``pending`` and ends ``succeeded``, ``failed`` (declined) or ``canceled``
# (the merchant gave up on it: the payment window ended). Only a ``succeeded`` payment can be refunded.
PENDING, SUCCEEDED, FAILED, CANCELED = "pending", "succeeded", "failed", "canceled"
PAYMENT_STATUSES = (PENDING, SUCCEEDED, FAILED, CANCELED)

# Webhook event types: ``{id, type, created, data: {object: <payment or refund>}}``.
PAYMENT_SUCCEEDED = "payment.succeeded"
PAYMENT_FAILED = "payment.failed"
PAYMENT_CANCELED = "payment.canceled"
REFUND_SUCCEEDED = "refund.succeeded"
REFUND_FAILED = "refund.failed"
REFUND_PENDING = "refund.pending"  # Stripe tells a refund that is not settled yet; devpay settles at once
EVENT_TYPES = (PAYMENT_SUCCEEDED, PAYMENT_FAILED, PAYMENT_CANCELED, REFUND_SUCCEEDED, REFUND_FAILED, REFUND_PENDING)


class BadSignature(ValueError):
    """The webhook is not signed with our secret, or too old to trust."""


def _mac(secret: str, t: int, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes, t: int | None = None) -> str:
    """The ``Devpay-Signature`` header value for ``body``."""
    t = int(time.time()) if t is None else t
    return f"t={t},v1={_mac(secret, t, body)}"


def verify(secret: str, header: str | None, body: bytes, *, now: float | None = None,
           tolerance: float = SIGNATURE_TOLERANCE_S) -> int:
    """The signed timestamp, or BadSignature. Several ``v1`` values are allowed (a secret being rotated)."""
    if not header:
        raise BadSignature(f"no {SIGNATURE_HEADER} header")
    t: int | None = None
    macs: list[str] = []
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name == "t" and value.isdigit() and len(value) <= 12:
            t = int(value)
        elif name == "v1":
            macs.append(value)
    if t is None or not macs:
        raise BadSignature(f"malformed {SIGNATURE_HEADER} header")
    now = time.time() if now is None else now
    if abs(now - t) > tolerance:
        raise BadSignature(f"signature timestamp is {now - t:.0f} s away from now (tolerance {tolerance:.0f} s)")
    expected = _mac(secret, t, body)
    if not any(hmac.compare_digest(expected, m) for m in macs):
        raise BadSignature("signature does not match")
    return t
