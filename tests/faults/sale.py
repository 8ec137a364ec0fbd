"""A steady sale for the fault suite (issue 12): buyers holding, buying, releasing, cancelling and joining
waitlists on a few events, and SSE subscribers keeping their own seat maps from the live stream.

It runs on its own asyncio loop in a thread, so a test can start it, inject a fault, and stop it. Every answer
is recorded. What a client does, and what the suite therefore allows:

* every request has a client timeout (``CLIENT_TIMEOUT_S``); running into it is a violation (a hang);
* a connection that dies before any answer (a killed worker) is retried with the same ``Idempotency-Key``,
  as a careful client does, at most ``TRANSPORT_RETRIES`` times; a request that never got an answer is a
  violation;
* an answer must be a contract answer for the call: 200/201/204, 409, 410, or 503 ``DEPENDENCY_UNAVAILABLE``
  with ``Retry-After``. Anything else (a 500, a 502, a 503 without ``Retry-After``) is a violation.

A subscriber starts from ``/seats`` and streams from its ``last_event_id``. When the stream ends or breaks it
reconnects with ``Last-Event-ID``, as an EventSource does; on ``event: reset`` it refetches ``/seats`` and streams
again from that map's position, as the page does. At the end its map must equal ``/seats``.
"""
from __future__ import annotations

import asyncio
import collections
import json
import random
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx

from common.settings import Settings

CLIENT_TIMEOUT_S = 10.0
TRANSPORT_RETRIES = 5
OK = {200, 201, 204}


@dataclass
class Answers:
    """What the clients saw, by status (and 409/503 code), and every answer outside the contract."""
    counts: collections.Counter = field(default_factory=collections.Counter)
    violations: list[str] = field(default_factory=list)
    transport_retries: int = 0
    # order id -> what the client knows: "paid" (201, then devpay captured its payment: the system owes a confirmed
    # order), "pending_payment" (201, but the capture got no answer), "confirmed" (a free order), "cancelled" (200)
    orders: dict[str, str] = field(default_factory=dict)
    cancel_asked: set[str] = field(default_factory=set)   # orders whose cancel was sent (answered or not)
    order_times: list[float] = field(default_factory=list)  # monotonic time of each 201 order

    def record(self, what: str, r: httpx.Response) -> None:
        code = ""
        if r.status_code >= 400:
            try:
                code = r.json()["error"]["code"]
            except (ValueError, KeyError, TypeError):
                code = "?"
        self.counts[f"{r.status_code} {code}".strip()] += 1
        if r.status_code in OK or r.status_code in (409, 410):
            return
        if r.status_code == 503 and code == "DEPENDENCY_UNAVAILABLE" and r.headers.get("Retry-After", "").isdigit():
            return
        self.violations.append(f"{what} -> {r.status_code} {r.text[:200]}")


class Client:
    def __init__(self, http: httpx.AsyncClient, answers: Answers, token: str,
                 devpay: httpx.AsyncClient | None = None) -> None:
        self.http, self.answers, self.headers = http, answers, {"Authorization": f"Bearer {token}"}
        self.devpay = devpay

    async def pay(self, order: dict[str, Any]) -> str:
        """What the buyer's Pay button does, at the stack's devpay: "paid" once devpay says so."""
        if order.get("status") != "pending_payment":
            return order.get("status", "confirmed")
        try:
            r = await self.devpay.post(f"/v1/payments/{order['payment']['id']}/capture")
        except httpx.TransportError:
            return "pending_payment"
        self.answers.counts[f"devpay capture {r.status_code}"] += 1
        return "paid" if r.status_code == 200 else "pending_payment"

    async def call(self, method: str, path: str, body: Any = None) -> httpx.Response | None:
        key = uuid.uuid4().hex
        headers = {**self.headers, **({"Idempotency-Key": key} if method == "POST" else {})}
        for attempt in range(TRANSPORT_RETRIES + 1):
            try:
                r = await self.http.request(method, path, json=body, headers=headers)
            except httpx.TimeoutException:
                self.answers.counts["timeout"] += 1
                self.answers.violations.append(f"{method} {path}: no answer within {CLIENT_TIMEOUT_S} s")
                return None
            except httpx.TransportError:
                self.answers.transport_retries += 1
                await asyncio.sleep(0.2 * (attempt + 1))
                continue
            self.answers.record(f"{method} {path}", r)
            return r
        self.answers.counts["no answer"] += 1
        self.answers.violations.append(f"{method} {path}: connection failed {TRANSPORT_RETRIES + 1} times")
        return None


@dataclass
class SaleEvent:
    id: str
    seats: list[str]
    ga_section: str = "GA"


async def buyer(client: Client, events: list[SaleEvent], stop: asyncio.Event, rng: random.Random) -> None:
    while not stop.is_set():
        ev = rng.choice(events)
        roll = rng.random()
        if roll < 0.05:
            await client.call("POST", f"/api/v1/events/{ev.id}/waitlist", {"quantity": 1})
        else:
            body = ({"section": ev.ga_section, "quantity": rng.randint(1, 3)} if roll < 0.25
                    else {"seats": rng.sample(ev.seats, rng.randint(1, 3))})
            r = await client.call("POST", f"/api/v1/events/{ev.id}/holds", body)
            if r is not None and r.status_code == 201:
                hold = r.json()
                if rng.random() < 0.8:
                    o = await client.call("POST", "/api/v1/orders", {"hold_id": hold["id"]})
                    if o is not None and o.status_code == 201:
                        order = o.json()
                        client.answers.orders[order["id"]] = order["status"]
                        client.answers.order_times.append(time.monotonic())
                        client.answers.orders[order["id"]] = await client.pay(order)
                        if rng.random() < 0.4:  # seats come back, so the sale never sells out
                            client.answers.cancel_asked.add(order["id"])
                            c = await client.call("POST", f"/api/v1/orders/{order['id']}/cancel")
                            if c is not None and c.status_code == 200:
                                client.answers.orders[order["id"]] = "cancelled"
                else:
                    await client.call("DELETE", f"/api/v1/holds/{hold['id']}")
        await asyncio.sleep(rng.uniform(0.05, 0.25))


@dataclass
class SeatWatcher:
    """One SSE subscriber's own seat map, kept from the stream alone (plus /seats at start and on reset)."""
    event_id: str
    seats: dict[str, str] = field(default_factory=dict)
    ga: dict[str, int] = field(default_factory=dict)
    position: str = "0-0"
    frames: int = 0
    resets: int = 0
    reconnects: int = 0
    errors: list[str] = field(default_factory=list)
    # What this subscriber did, newest last (time, what, position): a failure names the steps that led to it.
    trace: collections.deque = field(default_factory=lambda: collections.deque(maxlen=400))

    def note(self, what: str, position: str | None = None) -> None:
        self.trace.append((round(time.time(), 3), what, position))

    def load(self, snapshot: dict[str, Any]) -> None:
        self.seats = {s["id"]: s["status"] for s in snapshot["seats"]}
        self.ga = {g["section"]: g["available"] for g in snapshot.get("general_admission", [])}
        self.position = snapshot["last_event_id"]
        self.note("snapshot", self.position)

    def apply(self, entry_id: str, data: dict[str, Any]) -> None:
        if _pos(entry_id) <= _pos(self.position):
            self.note("skip", entry_id)
            return  # already in the map this subscriber holds (it was fetched after this frame)
        self.note("frame " + ",".join(f"{ch.get('seat') or ch.get('section')}={ch.get('status', ch.get('available'))}"
                                      for ch in data["changes"]), entry_id)
        for ch in data["changes"]:
            if "seat" in ch:
                self.seats[ch["seat"]] = ch["status"]
            else:
                self.ga[ch["section"]] = ch["available"]
        self.position = entry_id
        self.frames += 1


def _pos(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


async def _snapshot(http: httpx.AsyncClient, event_id: str) -> dict[str, Any] | None:
    try:
        r = await http.get(f"/api/v1/events/{event_id}/seats")
    except httpx.HTTPError:
        return None
    return r.json() if r.status_code == 200 else None


async def watch(http: httpx.AsyncClient, w: SeatWatcher, stop: asyncio.Event) -> None:
    while not stop.is_set() and (snap := await _snapshot(http, w.event_id)) is None:
        await asyncio.sleep(0.5)
    if snap is None:
        return
    w.load(snap)
    while not stop.is_set():
        w.note("connect", w.position)
        try:
            async with http.stream("GET", f"/api/v1/events/{w.event_id}/seats/stream",
                                   headers={"Last-Event-ID": w.position},
                                   timeout=httpx.Timeout(5.0, read=30.0)) as r:
                if r.status_code != 200:
                    w.errors.append(f"stream -> {r.status_code}")
                    await asyncio.sleep(0.5)
                    continue
                event, entry_id, data = "message", None, []
                async for line in r.aiter_lines():
                    if line == "":
                        if event == "reset":  # as the page does (query_service/static/index.html): refetch
                            w.resets += 1      # the map, then stream again from the map's own position
                            w.note("reset", entry_id)
                            while (snap := await _snapshot(http, w.event_id)) is None and not stop.is_set():
                                await asyncio.sleep(0.5)
                            if snap is not None:
                                w.load(snap)
                            break
                        elif event == "seats" and entry_id and data:
                            w.apply(entry_id, json.loads("\n".join(data)))
                        event, entry_id, data = "message", None, []
                    elif line.startswith(":"):
                        continue
                    else:
                        name, _, value = line.partition(":")
                        value = value[1:] if value.startswith(" ") else value
                        if name == "event":
                            event = value
                        elif name == "id":
                            entry_id = value
                        elif name == "data":
                            data.append(value)
        except (httpx.HTTPError, json.JSONDecodeError) as exc:
            if stop.is_set():
                return
            w.errors.append(repr(exc)[:120])
        w.reconnects += 1
        await asyncio.sleep(0.3)


class Sale:
    """``with Sale(...) as sale:`` runs buyers and watchers until the block ends (or ``stop()``)."""

    def __init__(self, command_url: str, query_url: str, buyer_tokens: list[str], events: list[SaleEvent],
                 watchers_per_event: int = 2, seed: int = 12) -> None:
        self.command_url, self.query_url = command_url, query_url
        self.tokens, self.events = buyer_tokens, events
        self.answers = Answers()
        self.watchers = [SeatWatcher(ev.id) for ev in events for _ in range(watchers_per_event)]
        self.seed = seed
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_until_complete, args=(self._main(),), daemon=True)
        self._stop: asyncio.Event | None = None
        self._buyers_stop: asyncio.Event | None = None
        self._started = threading.Event()
        self.ended_at: float | None = None

    async def _main(self) -> None:
        self._stop, self._buyers_stop = asyncio.Event(), asyncio.Event()
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=50)
        s = Settings()
        async with httpx.AsyncClient(base_url=self.command_url, timeout=CLIENT_TIMEOUT_S, limits=limits) as cmd, \
                httpx.AsyncClient(base_url=self.query_url, timeout=CLIENT_TIMEOUT_S, limits=limits) as qry, \
                httpx.AsyncClient(base_url=s.devpay_url, timeout=CLIENT_TIMEOUT_S, limits=limits,
                                  headers={"Authorization": f"Bearer {s.devpay_api_key}"}) as devpay:
            watchers = [asyncio.create_task(watch(qry, w, self._stop)) for w in self.watchers]
            buyers = [asyncio.create_task(buyer(Client(cmd, self.answers, t, devpay), self.events, self._buyers_stop,
                                                random.Random(self.seed * 1000 + i)))
                      for i, t in enumerate(self.tokens)]
            self._started.set()
            await asyncio.gather(*buyers)
            self.ended_at = time.monotonic()
            await self._stop.wait()
            for t in watchers:
                t.cancel()
            await asyncio.gather(*watchers, return_exceptions=True)

    def __enter__(self) -> "Sale":
        self._thread.start()
        self._started.wait(10)
        return self

    def stop_buyers(self) -> float:
        """Stops the buyers after their current step; returns when they have all stopped (the sale's end)."""
        self._loop.call_soon_threadsafe(self._buyers_stop.set)
        deadline = time.monotonic() + 6 * CLIENT_TIMEOUT_S
        while self.ended_at is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert self.ended_at is not None, "buyers did not stop"
        return self.ended_at

    def __exit__(self, *exc: Any) -> None:
        if self._buyers_stop is not None:
            self._loop.call_soon_threadsafe(self._buyers_stop.set)
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)
