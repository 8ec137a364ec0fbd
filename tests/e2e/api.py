"""A small synchronous client of the command service for e2e tests (register, venue, event, holds, orders)."""
from __future__ import annotations

import uuid
from typing import Any

import httpx

from common.settings import Settings
from tests.paying import pay as pay_order


class Api:
    def __init__(self, base_url: str) -> None:
        self.http = httpx.Client(base_url=base_url, timeout=30)

    def call(self, method: str, path: str, token: str | None = None, expect: int | tuple[int, ...] = (200, 201, 204),
             **kw: Any) -> Any:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        r = self.http.request(method, path, headers=headers, **kw)
        ok = (expect,) if isinstance(expect, int) else expect
        assert r.status_code in ok, f"{method} {path} -> {r.status_code} {r.text}"
        return r.json() if r.content else None

    def user(self, role: str, email: str | None = None) -> tuple[str, str]:
        """Register a fresh user (a random address unless ``email``); returns (user id, token)."""
        email = email or f"{role}-{uuid.uuid4().hex}@example.com"
        body = self.call("POST", "/api/v1/auth/register",
                         json={"email": email, "password": "correct horse battery", "name": role, "role": role})
        tok = self.call("POST", "/api/v1/auth/token", json={"email": email, "password": "correct horse battery"})
        return body["id"], tok["access_token"]

    def event(self, organizer: str, *, rows: int = 3, seats_per_row: int = 10, ga: int = 50, city: str = "Lisbon",
              title: str | None = None, publish: bool = True, currency: str = "EUR",
              prices: dict[str, int] | None = None, starts_at: str = "2027-03-01T20:00:00Z") -> dict[str, Any]:
        """A venue (section A: ``rows`` x ``seats_per_row``; GA of ``ga`` places unless 0) and an event there,
        priced by ``prices`` (default A 5000, GA 2000; price 0: free orders, confirmed at checkout)."""
        sections = [{"code": "A", "name": "Stalls", "kind": "seated",
                     "rows": [{"label": str(i + 1), "seats": seats_per_row} for i in range(rows)]}]
        if ga:
            sections.append({"code": "GA", "name": "Standing", "kind": "ga", "capacity": ga})
        venue = self.call("POST", "/api/v1/venues", organizer,
                          json={"name": "Hall " + uuid.uuid4().hex[:6], "city": city, "sections": sections})
        prices = prices or {"A": 5000, **({"GA": 2000} if ga else {})}
        ev = self.call("POST", "/api/v1/events", organizer, json={
            "venue_id": venue["id"], "title": title or f"Show {uuid.uuid4().hex[:8]}", "category": "music",
            "starts_at": starts_at, "currency": currency, "prices": prices})
        if publish:
            self.call("POST", f"/api/v1/events/{ev['id']}/publish", organizer)
        return ev

    def hold(self, buyer: str, event_id: str, seats: list[str] | None = None, section: str | None = None,
             quantity: int | None = None) -> dict[str, Any]:
        body = {"seats": seats} if seats else {"section": section, "quantity": quantity}
        return self.call("POST", f"/api/v1/events/{event_id}/holds", buyer, json=body)

    def order(self, buyer: str, hold_id: str, *, pay: bool = True) -> dict[str, Any]:
        """Check the hold out; ``pay``: and pay a paid order at the stack's devpay (tests/paying.py), returning it
        once confirmed."""
        order = self.call("POST", "/api/v1/orders", buyer, json={"hold_id": hold_id})
        if not pay:
            return order
        return pay_order(Settings(), order, lambda: self.call("POST", "/api/v1/orders", buyer, json={"hold_id": hold_id}))

    def release(self, buyer: str, hold_id: str) -> None:
        self.call("DELETE", f"/api/v1/holds/{hold_id}", buyer)

    def cancel_order(self, token: str, order_id: str) -> dict[str, Any]:
        return self.call("POST", f"/api/v1/orders/{order_id}/cancel", token)

    def cancel_event(self, token: str, event_id: str) -> dict[str, Any]:
        return self.call("POST", f"/api/v1/events/{event_id}/cancel", token)

    def join_waitlist(self, buyer: str, event_id: str, quantity: int, section: str | None = None,
                      expect: int | tuple[int, ...] = 201) -> dict[str, Any]:
        """201 {id, position, ...}; with another ``expect``, the error body."""
        body: dict[str, Any] = {"quantity": quantity, **({"section": section} if section else {})}
        return self.call("POST", f"/api/v1/events/{event_id}/waitlist", buyer, expect=expect, json=body)

    def leave_waitlist(self, buyer: str, entry_id: str) -> None:
        self.call("DELETE", f"/api/v1/waitlist/{entry_id}", buyer, expect=204)

    def traffic(self, organizer: str, buyer: str, event_id: str) -> dict[str, Any]:
        """A mix of every inventory change on one event: holds, orders, releases, cancellations, GA."""
        out: dict[str, Any] = {"orders": [], "held": []}
        h = self.hold(buyer, event_id, ["A-1-1", "A-1-2"]); out["orders"].append(self.order(buyer, h["id"]))
        h = self.hold(buyer, event_id, ["A-1-3"]); o = self.order(buyer, h["id"]); self.cancel_order(buyer, o["id"])
        out["orders"].append(o)
        h = self.hold(buyer, event_id, ["A-2-1", "A-2-2", "A-2-3"]); self.release(buyer, h["id"])
        h = self.hold(buyer, event_id, ["A-2-1"]); out["held"].append(h)
        h = self.hold(buyer, event_id, section="GA", quantity=4); out["orders"].append(self.order(buyer, h["id"]))
        h = self.hold(buyer, event_id, section="GA", quantity=2); out["held"].append(h)
        h = self.hold(buyer, event_id, ["A-3-5", "A-3-6"]); o = self.order(buyer, h["id"])
        self.cancel_order(organizer, o["id"]); out["orders"].append(o)
        h = self.hold(buyer, event_id, ["A-3-5"]); out["orders"].append(self.order(buyer, h["id"]))
        return out
