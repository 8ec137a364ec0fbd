"""How the tests pay for an order: as a buyer would, through the stack's real devpay (never a fake). The order is
``pending_payment`` after checkout; the payment is captured at devpay (what its Pay button does), devpay's signed
webhook reaches the stack's command service, and the order becomes ``confirmed``. Every wait is bounded."""
from __future__ import annotations

import asyncio
import time
from typing import Any, Awaitable, Callable

import httpx

from common.settings import Settings

PAY_TIMEOUT_S = 30.0  # a liveness bound for the webhook to confirm the order, not a speed assertion


def _devpay(settings: Settings) -> tuple[str, dict[str, str]]:
    return settings.devpay_url, {"Authorization": f"Bearer {settings.devpay_api_key}"}


def capture(settings: Settings, payment_id: str) -> None:
    url, headers = _devpay(settings)
    r = httpx.post(f"{url}/v1/payments/{payment_id}/capture", headers=headers, timeout=10)
    assert r.status_code == 200, f"devpay capture {payment_id}: {r.status_code} {r.text}"


async def acapture(settings: Settings, payment_id: str) -> None:
    url, headers = _devpay(settings)
    async with httpx.AsyncClient(timeout=10) as client:
        r = await client.post(f"{url}/v1/payments/{payment_id}/capture", headers=headers)
    assert r.status_code == 200, f"devpay capture {payment_id}: {r.status_code} {r.text}"


def pay(settings: Settings, order: dict[str, Any], current: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Capture ``order``'s payment and poll ``current()`` (the order as the command side answers it now) until it
    is no longer pending; returns it."""
    if order.get("status") != "pending_payment":
        return order
    capture(settings, order["payment"]["id"])
    deadline = time.monotonic() + PAY_TIMEOUT_S
    while True:
        now = current()
        if now["status"] != "pending_payment":
            return now
        assert time.monotonic() < deadline, f"order {order['id']} still pending {PAY_TIMEOUT_S} s after capture"
        time.sleep(0.05)


async def apay(settings: Settings, order: dict[str, Any],
               current: Callable[[], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
    if order.get("status") != "pending_payment":
        return order
    await acapture(settings, order["payment"]["id"])
    deadline = time.monotonic() + PAY_TIMEOUT_S
    while True:
        now = await current()
        if now["status"] != "pending_payment":
            return now
        assert time.monotonic() < deadline, f"order {order['id']} still pending {PAY_TIMEOUT_S} s after capture"
        await asyncio.sleep(0.05)
