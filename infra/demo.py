"""``make demo``: seed a small demo through the public API of the running stack, and say what to open.

One organizer, one buyer, a venue with two seated sections and a standing floor, and two on-sale events (one
with a few seats already sold, so the map is not blank). Every run adds a fresh set (new emails), so it can be
run again; nothing is written behind the API's back.
"""
from __future__ import annotations

import sys
import uuid
from datetime import datetime, timedelta, timezone

import httpx

from common.settings import Settings, get_settings

PASSWORD = "demo passphrase"


def main() -> int:
    s = get_settings()
    command, query = f"http://{s.command_host}:{s.command_port}", f"http://{s.query_host}:{s.query_port}"
    http = httpx.Client(base_url=command, timeout=30)

    def call(method: str, path: str, token: str | None = None, **kw):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        if method == "POST":
            headers["Idempotency-Key"] = str(uuid.uuid4())
        r = http.request(method, path, headers=headers, **kw)
        if r.status_code >= 400:
            sys.exit(f"demo: {method} {path} -> {r.status_code} {r.text}")
        return r.json() if r.content else None

    try:
        http.get("/health").raise_for_status()
    except httpx.HTTPError as exc:
        sys.exit(f"demo: the command service at {command} is not answering ({exc}); run `make up` first")
    tag = uuid.uuid4().hex[:6]
    users = {}
    for role in ("organizer", "buyer"):
        email = f"demo-{role}-{tag}@example.com"
        call("POST", "/api/v1/auth/register", json={"email": email, "password": PASSWORD, "name": f"Demo {role}",
                                                    "role": role})
        users[role] = (email, call("POST", "/api/v1/auth/token",
                                   json={"email": email, "password": PASSWORD})["access_token"])
    org, buyer = users["organizer"][1], users["buyer"][1]
    print("demo: venue and events ...", flush=True)
    venue = call("POST", "/api/v1/venues", org, json={"name": f"Demo Hall {tag}", "city": "Lisbon", "sections": [
        {"code": "A", "name": "Stalls", "kind": "seated",
         "rows": [{"label": str(r), "seats": 16} for r in range(1, 9)]},
        {"code": "B", "name": "Balcony", "kind": "seated",
         "rows": [{"label": r, "seats": 12} for r in "ABCD"]},
        {"code": "GA", "name": "Standing floor", "kind": "ga", "capacity": 200}]})
    start = (datetime.now(timezone.utc) + timedelta(days=30)).replace(hour=20, minute=0, second=0, microsecond=0)
    events = []
    for i, (title, prices) in enumerate((("Demo: Opening night", {"A": 6500, "B": 4000, "GA": 2500}),
                                         ("Demo: Late show", {"A": 4500, "B": 3000, "GA": 1500}))):
        ev = call("POST", "/api/v1/events", org, json={
            "venue_id": venue["id"], "title": title, "category": "music", "currency": "EUR", "prices": prices,
            "description": "Seeded by make demo.", "starts_at": (start + timedelta(days=i)).isoformat()})
        call("POST", f"/api/v1/events/{ev['id']}/publish", org)
        events.append(ev)
    hold = call("POST", f"/api/v1/events/{events[0]['id']}/holds", buyer, json={"seats": ["A-1-7", "A-1-8"]})
    order = call("POST", "/api/v1/orders", buyer, json={"hold_id": hold["id"]})  # pending_payment: pay at devpay
    s = Settings()
    httpx.post(f"{s.devpay_url}/v1/payments/{order['payment']['id']}/capture",
               headers={"Authorization": f"Bearer {s.devpay_api_key}"}, timeout=10).raise_for_status()
    call("POST", f"/api/v1/events/{events[0]['id']}/holds", buyer, json={"seats": ["A-2-7", "A-2-8"]})
    print(f"""
demo ready ({tag}):
  seat map, live:   {query}/?event={events[0]['id']}
                    {query}/?event={events[1]['id']}
  organizer's dashboard: {query}/organizer#token={org}
  API docs:         {command}/docs (writes)   {query}/docs (reads)
  mail inbox:       http://127.0.0.1:8025/ (Mailpit)
  organizer:        {users['organizer'][0]} / {PASSWORD}
  buyer:            {users['buyer'][0]} / {PASSWORD}
  organizer token:  {org}
  buyer token:      {buyer}
  try:  curl -s -H 'authorization: Bearer <buyer token>' -H 'content-type: application/json' \\
          -d '{{"seats":["A-3-1"]}}' {command}/api/v1/events/{events[0]['id']}/holds
""")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
