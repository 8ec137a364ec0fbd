"""devpay, the local payment provider (infra/devpay/), as its own process: its API, idempotency, hosted checkout
page, signed webhooks retried until they are taken, pause/resume, and state that survives a restart.

Each test module run starts a private devpay (free port, its own database file, webhooks to a receiver served
here), so what the tests do to it (pausing webhooks, a receiver that fails) never touches the stack's devpay.
"""
from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from contracts import payments as P

pytestmark = pytest.mark.integration
API_KEY = "devpay-test-key-" + uuid.uuid4().hex
SECRET = "devpay-test-secret-" + uuid.uuid4().hex


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Receiver:
    """The merchant's webhook endpoint: verifies each signature, answers ``fail_next`` 500s first."""

    def __init__(self) -> None:
        self.events: list[dict] = []
        self.refused: list[str] = []
        self.fail_next = 0
        self.attempts = 0

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.attempts += 1
        try:
            P.verify(SECRET, request.headers.get(P.SIGNATURE_HEADER), body)
        except P.BadSignature as exc:
            self.refused.append(str(exc))
            return web.Response(status=400)
        if self.fail_next > 0:
            self.fail_next -= 1
            return web.Response(status=500)
        self.events.append(json.loads(body))
        return web.Response(status=200)

    def of(self, object_id: str) -> list[str]:
        return [e["type"] for e in self.events if e["data"]["object"]["id"] == object_id]


class Devpay:
    def __init__(self, port: int, db: Path, webhook_url: str) -> None:
        self.port, self.db, self.webhook_url = port, db, webhook_url
        self.proc: subprocess.Popen | None = None
        self.url = f"http://127.0.0.1:{port}"

    def start(self) -> None:
        env = {**os.environ, "EVENTLY_DEVPAY_PORT": str(self.port), "EVENTLY_DEVPAY_DB": str(self.db),
               "EVENTLY_DEVPAY_URL": self.url,
               "EVENTLY_DEVPAY_API_KEY": API_KEY, "EVENTLY_DEVPAY_WEBHOOK_SECRET": SECRET,
               "EVENTLY_DEVPAY_WEBHOOK_URL": self.webhook_url, "EVENTLY_DEVPAY_RETRY_MAX_SECONDS": "1"}
        self.proc = subprocess.Popen([sys.executable, "-m", "infra.devpay.app"], env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            assert self.proc.poll() is None, self.proc.stderr.read().decode()[-2000:]
            time.sleep(0.1)
        raise AssertionError("devpay did not start")

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture(scope="module")
async def receiver():
    r = Receiver()
    app = web.Application()
    app.router.add_post("/hook", r.handle)
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    r.url = f"http://127.0.0.1:{server.port}/hook"
    yield r
    await server.close()


@pytest.fixture(scope="module")
def devpay(receiver, tmp_path_factory):
    d = Devpay(free_port(), tmp_path_factory.mktemp("devpay") / "devpay.sqlite3", receiver.url)
    d.start()
    yield d
    d.kill()


@pytest.fixture
async def api(devpay):
    async with httpx.AsyncClient(base_url=devpay.url, headers={"Authorization": f"Bearer {API_KEY}"},
                                 timeout=10) as client:
        yield client


async def eventually(check, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got or time.monotonic() > deadline:
            return got
        await asyncio.sleep(0.05)


async def new_payment(api, amount: int = 2500, key: str | None = None, **extra) -> dict:
    r = await api.post("/v1/payments", json={"amount": amount, "currency": "EUR", "reference": str(uuid.uuid4()),
                                             **extra}, headers={"Idempotency-Key": key or str(uuid.uuid4())})
    assert r.status_code == 201, r.text
    return r.json()


async def test_the_api_needs_the_key(devpay):
    async with httpx.AsyncClient(base_url=devpay.url) as anon:
        assert (await anon.post("/v1/payments", json={})).status_code == 401
        r = await anon.get("/v1/payments/pay_x", headers={"Authorization": "Bearer wrong"})
        assert r.status_code == 401 and r.json()["error"]["code"] == "unauthenticated"


async def test_create_is_idempotent_and_validated(api):
    key, ref = str(uuid.uuid4()), str(uuid.uuid4())
    body = {"amount": 1999, "currency": "EUR", "reference": ref}
    first = await api.post("/v1/payments", json=body, headers={"Idempotency-Key": key})
    again = await api.post("/v1/payments", json=body, headers={"Idempotency-Key": key})
    assert first.status_code == 201 and again.status_code == 200
    assert first.json()["id"] == again.json()["id"] and first.json()["status"] == P.PENDING
    assert first.json()["checkout_url"] == f"{str(api.base_url).rstrip('/')}/checkout/{first.json()['id']}"
    other = await api.post("/v1/payments", json={**body, "amount": 1}, headers={"Idempotency-Key": key})
    assert other.status_code == 409
    listed = (await api.get("/v1/payments", params={"reference": ref})).json()["items"]
    assert [p["id"] for p in listed] == [first.json()["id"]]
    for bad in ({**body, "amount": 0}, {**body, "currency": "euro"}, {**body, "extra": 1}, {"amount": 5}):
        r = await api.post("/v1/payments", json=bad, headers={"Idempotency-Key": str(uuid.uuid4())})
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_request", r.text
    r = await api.post("/v1/payments", content=b"{not json", headers={"Idempotency-Key": str(uuid.uuid4())})
    assert r.status_code == 400


async def test_capture_sends_one_signed_webhook_and_the_outcome_is_final(api, receiver):
    pay = await new_payment(api)
    for _ in range(2):  # a second capture is harmless: no second webhook
        r = await api.post(f"/v1/payments/{pay['id']}/capture")
        assert r.status_code == 200 and r.json()["status"] == P.SUCCEEDED
    assert await eventually(lambda: receiver.of(pay["id"]))
    await asyncio.sleep(0.5)
    assert receiver.of(pay["id"]) == [P.PAYMENT_SUCCEEDED]
    assert (await api.post(f"/v1/payments/{pay['id']}/decline")).status_code == 409
    declined = await new_payment(api)
    assert (await api.post(f"/v1/payments/{declined['id']}/decline")).json()["status"] == P.FAILED
    assert await eventually(lambda: receiver.of(declined["id"]) == [P.PAYMENT_FAILED])
    assert receiver.refused == []


async def test_a_webhook_is_retried_until_it_is_taken(api, devpay, receiver):
    receiver.fail_next = 3
    before = receiver.attempts
    pay = await new_payment(api)
    await api.post(f"/v1/payments/{pay['id']}/capture")
    assert await eventually(lambda: receiver.of(pay["id"]), timeout=15)
    assert receiver.attempts - before >= 4  # three 500s, then the 200
    event = next(e for e in (await api.get("/v1/events")).json()["items"] if e["data"]["object"]["id"] == pay["id"])
    assert event["attempts"] == 4 and event["delivered"] and event["last_error"] == "HTTP 500"


async def test_paused_webhooks_wait_for_resume_even_across_a_restart(api, devpay, receiver):
    assert (await api.post("/v1/webhooks/pause")).json()["paused"] is True
    pay = await new_payment(api)
    await api.post(f"/v1/payments/{pay['id']}/capture")
    await asyncio.sleep(1.0)
    assert receiver.of(pay["id"]) == []
    assert (await api.get("/v1/webhooks")).json()["undelivered"] >= 1
    devpay.kill()  # its state is in its own database
    devpay.start()
    assert (await api.get(f"/v1/payments/{pay['id']}")).json()["status"] == P.SUCCEEDED
    assert (await api.get("/v1/webhooks")).json()["paused"] is True
    await asyncio.sleep(0.5)
    assert receiver.of(pay["id"]) == []
    await api.post("/v1/webhooks/resume")
    assert await eventually(lambda: receiver.of(pay["id"]) == [P.PAYMENT_SUCCEEDED])


async def test_a_refund_happens_once_per_key_whatever_the_concurrency(api, receiver):
    pay = await new_payment(api, amount=3000)
    assert (await api.post("/v1/refunds", json={"payment_id": pay["id"]},
                           headers={"Idempotency-Key": str(uuid.uuid4())})).status_code == 409  # not paid yet
    await api.post(f"/v1/payments/{pay['id']}/capture")
    order_id = str(uuid.uuid4())
    answers = await asyncio.gather(*(api.post("/v1/refunds", json={"payment_id": pay["id"], "reason": "cancelled"},
                                              headers={"Idempotency-Key": order_id}) for _ in range(8)))
    assert sorted(r.status_code for r in answers) == [200] * 7 + [201]
    assert len({r.json()["id"] for r in answers}) == 1
    refund = answers[0].json()
    assert refund["amount"] == 3000 and refund["status"] == P.SUCCEEDED
    assert (await api.get(f"/v1/payments/{pay['id']}")).json()["amount_refunded"] == 3000
    more = await api.post("/v1/refunds", json={"payment_id": pay["id"], "amount": 1},
                          headers={"Idempotency-Key": str(uuid.uuid4())})
    assert more.status_code == 400  # nothing left
    assert await eventually(lambda: receiver.of(refund["id"]) == [P.REFUND_SUCCEEDED])
    listed = (await api.get("/v1/refunds", params={"payment_id": pay["id"]})).json()["items"]
    assert [r["id"] for r in listed] == [refund["id"]]


async def test_the_hosted_page_pays_and_sends_the_buyer_back(api, devpay, receiver):
    pay = await new_payment(api, amount=4250, return_url="http://127.0.0.1:9/back?order=1", description="2 seats")
    async with httpx.AsyncClient(base_url=devpay.url) as browser:
        page = await browser.get(f"/checkout/{pay['id']}")
        assert page.status_code == 200 and "42.50 EUR" in page.text and 'id="pay"' in page.text
        r = await browser.post(f"/checkout/{pay['id']}/pay")
        assert r.status_code == 303
        assert r.headers["location"] == f"http://127.0.0.1:9/back?order=1&payment_id={pay['id']}&status=succeeded"
        again = await browser.post(f"/checkout/{pay['id']}/decline")  # a late click changes nothing
        assert again.status_code == 303 and again.headers["location"].endswith("status=succeeded")
        done = await browser.get(f"/checkout/{pay['id']}")
        assert 'data-status="succeeded"' in done.text and 'id="pay"' not in done.text
        assert (await browser.get("/checkout/pay_nope")).status_code == 404
    assert await eventually(lambda: receiver.of(pay["id"]) == [P.PAYMENT_SUCCEEDED])
