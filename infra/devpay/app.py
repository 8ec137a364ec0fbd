"""devpay: a small real payment provider for the local stack and the tests (issue 13).

``python -m infra.devpay.app`` serves on 127.0.0.1:8004 (``EVENTLY_DEVPAY_PORT``). Its state is its own SQLite
database (``EVENTLY_DEVPAY_DB``), so payments, refunds and undelivered webhooks survive a restart. Measured:
about 300-400 payments/s (create + capture + webhook), 1.4-1.7 ms of its CPU each (loadtests/bench_devpay.py).

API (JSON; every ``/v1`` call needs ``Authorization: Bearer <EVENTLY_DEVPAY_API_KEY>``):

* ``POST /v1/payments`` ``{amount, currency, reference, description?, return_url?}`` with an ``Idempotency-Key``
  header: 201 payment ``{id, status: pending, checkout_url, ...}``; the same key again: 200, the same payment.
* ``GET /v1/payments/{id}``, ``GET /v1/payments?reference=<order id>`` (reconciliation asks this way).
* ``POST /v1/payments/{id}/capture`` / ``/decline`` / ``/cancel``: what the checkout page's buttons do, for scripts
  and tests (and ``cancel``: the merchant gives up on a pending payment). Each sends its webhook once.
* ``POST /v1/refunds`` ``{payment_id, amount?, reason?}`` with an ``Idempotency-Key`` (the order id): 201 refund,
  ``succeeded`` at once, and a ``refund.succeeded`` webhook; the same key again: 200, the same refund.
* ``GET /v1/refunds/{id}``, ``GET /v1/refunds?payment_id=``.
* ``POST /v1/webhooks/pause`` / ``/resume``, ``GET /v1/webhooks`` (delivery state), ``GET /v1/events`` (the last
  webhook events with their attempts).

Hosted checkout: ``GET /checkout/{id}`` is a page with Pay and Decline buttons; after either it sends the buyer
to the payment's ``return_url`` (``?payment_id=&status=``).

Webhooks: every change writes its event in the same transaction (devpay's own outbox). A sender task POSTs due
events to ``EVENTLY_DEVPAY_WEBHOOK_URL``, signed (contracts/payments.py), and retries each until it gets a 2xx:
after 0.5 s, 1 s, 2 s ... at most ``EVENTLY_DEVPAY_RETRY_MAX_SECONDS`` apart, with jitter. Events are sent in
order but a retried one can arrive after a later one, as with real providers.
"""
from __future__ import annotations

import asyncio
import hmac
import json
import random
from pathlib import Path
from typing import Awaitable, Callable

import aiohttp
import jinja2
import structlog
from aiohttp import web
from pydantic import BaseModel, Field, ValidationError

from common.logging import configure_logging
from common.settings import Settings, get_settings
from contracts import payments as P
from infra.devpay.store import Conflict, Invalid, NotFound, Store

log = structlog.get_logger("devpay")

STORE = web.AppKey("store", Store)
SETTINGS = web.AppKey("settings", Settings)
WAKE = web.AppKey("wake", asyncio.Event)
TEMPLATES = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
                               autoescape=True)
routes = web.RouteTableDef()


class NewPayment(BaseModel):
    model_config = {"extra": "forbid"}
    amount: int = Field(gt=0, le=10**12, description="minor units (cents)")
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    reference: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=500)
    return_url: str | None = Field(default=None, max_length=2000, pattern=r"^https?://")


class NewRefund(BaseModel):
    model_config = {"extra": "forbid"}
    payment_id: str = Field(min_length=1, max_length=100)
    amount: int | None = Field(default=None, gt=0, le=10**12)
    reason: str = Field(default="", max_length=200)


def error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def api_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The API key on ``/v1``, and the store's exceptions as 4xx."""
    if request.path.startswith("/v1/"):
        expected = f"Bearer {request.app[SETTINGS].devpay_api_key}"
        if not hmac.compare_digest(request.headers.get("Authorization", ""), expected):
            return error(401, "unauthenticated", "a valid API key is required (Authorization: Bearer ...)")
    try:
        return await handler(request)
    except NotFound as exc:
        return error(404, "not_found", str(exc))
    except Conflict as exc:
        return error(409, "conflict", str(exc))
    except Invalid as exc:
        return error(400, "invalid_request", str(exc))
    except ValidationError as exc:
        return error(400, "invalid_request", "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}"
                                                        for e in exc.errors()))


async def body_of(request: web.Request, model: type[BaseModel]) -> BaseModel:
    try:
        data = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise Invalid("the body is not JSON") from None
    if not isinstance(data, dict):
        raise Invalid("the body must be a JSON object")
    return model.model_validate(data)


def required_query(request: web.Request, name: str) -> str:
    value = request.query.get(name)
    if not value:
        raise Invalid(f"?{name}= is required")
    return value


def changed(request: web.Request) -> None:
    request.app[WAKE].set()  # a new webhook event: the sender goes now instead of at its next tick


@routes.get("/health")
async def health(request: web.Request) -> web.Response:
    request.app[STORE].webhook_state()  # the database answers
    return web.json_response({"status": "ok"})


@routes.post("/v1/payments")
async def create_payment(request: web.Request) -> web.Response:
    new = await body_of(request, NewPayment)
    payment, created = request.app[STORE].create_payment(new.model_dump(), request.headers.get("Idempotency-Key"))
    return web.json_response(payment, status=201 if created else 200)


@routes.get("/v1/payments")
async def list_payments(request: web.Request) -> web.Response:
    return web.json_response({"items": request.app[STORE].payments_for(required_query(request, "reference"))})


@routes.get("/v1/payments/{id}")
async def get_payment(request: web.Request) -> web.Response:
    return web.json_response(request.app[STORE].payment(request.match_info["id"]))


SETTLE = {"capture": P.SUCCEEDED, "decline": P.FAILED, "cancel": P.CANCELED}


@routes.post(r"/v1/payments/{id}/{action:capture|decline|cancel}")
async def settle_payment(request: web.Request) -> web.Response:
    payment = request.app[STORE].settle(request.match_info["id"], SETTLE[request.match_info["action"]])
    changed(request)
    return web.json_response(payment)


@routes.post("/v1/refunds")
async def create_refund(request: web.Request) -> web.Response:
    new = await body_of(request, NewRefund)
    refund, created = request.app[STORE].create_refund(new.model_dump(), request.headers.get("Idempotency-Key"))
    changed(request)
    return web.json_response(refund, status=201 if created else 200)


@routes.get("/v1/refunds")
async def list_refunds(request: web.Request) -> web.Response:
    return web.json_response({"items": request.app[STORE].refunds_for(required_query(request, "payment_id"))})


@routes.get("/v1/refunds/{id}")
async def get_refund(request: web.Request) -> web.Response:
    return web.json_response(request.app[STORE].refund(request.match_info["id"]))


@routes.post(r"/v1/webhooks/{action:pause|resume}")
async def pause_webhooks(request: web.Request) -> web.Response:
    request.app[STORE].set_paused(request.match_info["action"] == "pause")
    changed(request)
    return web.json_response(request.app[STORE].webhook_state())


@routes.get("/v1/webhooks")
async def webhook_state(request: web.Request) -> web.Response:
    return web.json_response(request.app[STORE].webhook_state())


@routes.get("/v1/events")
async def list_events(request: web.Request) -> web.Response:
    return web.json_response({"items": request.app[STORE].events()})


# ---------------------------------------------------------------------- hosted checkout
def money(amount: int, currency: str) -> str:
    return f"{amount / 100:,.2f} {currency}"


@routes.get("/checkout/{id}")
async def checkout_page(request: web.Request) -> web.Response:
    try:
        payment = request.app[STORE].payment(request.match_info["id"])
    except NotFound:
        return web.Response(status=404, text="no such payment", content_type="text/plain")
    html = TEMPLATES.get_template("checkout.html").render(p=payment, total=money(payment["amount"],
                                                                                 payment["currency"]))
    return web.Response(text=html, content_type="text/html", headers={"Cache-Control": "no-store"})


@routes.post(r"/checkout/{id}/{action:pay|decline}")
async def checkout_action(request: web.Request) -> web.StreamResponse:
    pid = request.match_info["id"]
    try:
        payment = request.app[STORE].settle(pid, P.SUCCEEDED if request.match_info["action"] == "pay" else P.FAILED)
        changed(request)
    except NotFound:
        return web.Response(status=404, text="no such payment", content_type="text/plain")
    except Conflict:
        payment = request.app[STORE].payment(pid)  # already decided (a double click): show where it ended
    if payment["return_url"]:
        sep = "&" if "?" in payment["return_url"] else "?"
        raise web.HTTPSeeOther(f"{payment['return_url']}{sep}payment_id={pid}&status={payment['status']}")
    raise web.HTTPSeeOther(f"/checkout/{pid}")


# ---------------------------------------------------------------------- webhook sender
def retry_delay(attempts: int, cap: float) -> float:
    """0.5 s, 1 s, 2 s, ... at most ``cap``, each with up to 25% jitter (many failing events do not retry in step)."""
    base = min(cap, 0.5 * 2 ** max(0, attempts - 1))
    return base * random.uniform(0.75, 1.0)


async def deliver(app: web.Application, session: aiohttp.ClientSession) -> int:
    """One pass over the due events; returns how many were delivered."""
    store, s = app[STORE], app[SETTINGS]
    if store.paused():
        return 0
    due = store.due_events()

    async def one(event_id: str, attempts: int, body: str) -> bool:
        raw = body.encode()
        headers = {"Content-Type": "application/json", P.SIGNATURE_HEADER: P.sign(s.devpay_webhook_secret, raw)}
        try:
            async with session.post(s.devpay_webhook_url, data=raw, headers=headers) as r:
                await r.read()
                if 200 <= r.status < 300:
                    store.delivered(event_id)
                    return True
                problem = f"HTTP {r.status}"
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            problem = repr(exc)[:300]
        store.failed(event_id, attempts + 1, problem, retry_delay(attempts + 1, s.devpay_retry_max_seconds))
        log.info("webhook not accepted; will retry", event_id=event_id, attempts=attempts + 1, error=problem)
        return False

    results = await asyncio.gather(*(one(*e) for e in due))
    return sum(results)


async def sender(app: web.Application) -> None:
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        while True:
            app[WAKE].clear()
            try:
                await deliver(app, session)
            except Exception as exc:  # noqa: BLE001 - the sender never dies; it says why and goes on
                log.warning("webhook pass failed", error=repr(exc)[:300])
            try:
                await asyncio.wait_for(app[WAKE].wait(), timeout=0.25)
            except asyncio.TimeoutError:
                pass


async def sender_ctx(app: web.Application):
    task = asyncio.create_task(sender(app))
    yield
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    app[STORE].close()


def create_app(settings: Settings | None = None) -> web.Application:
    s = settings or get_settings()
    if not s.devpay_api_key or not s.devpay_webhook_secret:
        raise SystemExit("devpay: EVENTLY_DEVPAY_API_KEY and EVENTLY_DEVPAY_WEBHOOK_SECRET must be set")
    app = web.Application(middlewares=[api_middleware], client_max_size=64 * 1024)
    app[SETTINGS] = s
    app[STORE] = Store(s.devpay_db, s.devpay_public_url or s.devpay_url, s.devpay_synchronous)
    app[WAKE] = asyncio.Event()
    app.add_routes(routes)
    app.cleanup_ctx.append(sender_ctx)
    return app


def main() -> None:
    s = get_settings()
    configure_logging()
    log.info("devpay starting", port=s.devpay_port, db=str(s.devpay_db), webhook_url=s.devpay_webhook_url)
    web.run_app(create_app(s), host=s.devpay_host, port=s.devpay_port, print=None, access_log=None)


if __name__ == "__main__":
    main()
