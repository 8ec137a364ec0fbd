"""The stack's real Mailpit, through its API (``EVENTLY_MAILPIT_URL``): what the notifier really delivered."""
from __future__ import annotations

import time
from typing import Any

import httpx

from common.settings import Settings

NOTIFICATION_HEADER = "X-Evently-Notification-Id"


class Mailpit:
    def __init__(self, settings: Settings) -> None:
        self.http = httpx.Client(base_url=settings.mailpit_url, timeout=10)

    def to(self, address: str) -> list[dict[str, Any]]:
        """Every message addressed to ``address`` (summaries: ID, MessageID, Subject, Attachments...)."""
        r = self.http.get("/api/v1/search", params={"query": f"to:{address}", "limit": 1000})
        r.raise_for_status()
        return r.json()["messages"]

    def message(self, mid: str) -> dict[str, Any]:
        r = self.http.get(f"/api/v1/message/{mid}")
        r.raise_for_status()
        return r.json()

    def headers(self, mid: str) -> dict[str, list[str]]:
        r = self.http.get(f"/api/v1/message/{mid}/headers")
        r.raise_for_status()
        return r.json()

    def notification_id(self, mid: str) -> str:
        return self.headers(mid)[NOTIFICATION_HEADER][0]

    def wait_for(self, address: str, count: int, *, timeout: float = 60.0, settle: float = 3.0) -> list[dict]:
        """The messages to ``address`` once there are at least ``count``, and still the same after ``settle``
        seconds (so a duplicate arriving late is seen). Fails past ``timeout``: a liveness bound, not a speed
        assertion."""
        deadline = time.monotonic() + timeout
        while True:
            got = self.to(address)
            if len(got) >= count:
                time.sleep(settle)
                return self.to(address)
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(got)} of {count} mails to {address} within {timeout}s: "
                                     f"{[m['Subject'] for m in got]}")
            time.sleep(0.2)
