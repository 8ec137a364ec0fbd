"""Issue 11: every endpoint of both services against every role, with the status each one gets.

The table is here, keyed by (service, method, path); ``test_the_table_covers_every_endpoint`` fails when an
endpoint is added (or removed) without its row. Roles: anonymous, buyer (who owns the buyer-side resources),
another buyer, organizer (who owns the event), another organizer, admin (made with the CLI) and a disabled
buyer, and a scanner (a door credential for the shared event, issue 14: it reaches that event's check-in endpoints
and attendee list, and nothing else).
Mutating endpoints get fresh resources for every role, so one role's success never changes another's answer."""
from __future__ import annotations

import subprocess
import sys
import uuid
from dataclasses import dataclass
from typing import Any, Callable

import httpx
import pytest

from command_service.entrypoints import app as command_app
from query_service import app as query_app
from tests.e2e.conftest import eventually

pytestmark = pytest.mark.e2e
PASSWORD = "correct horse battery"
ROLES = ("anonymous", "buyer", "other_buyer", "organizer", "other_organizer", "admin", "disabled", "scanner")
ALL = lambda status: (status,) * len(ROLES)  # noqa: E731
SIGNED_IN = lambda ok: (401, ok, ok, ok, ok, ok, 401, ok)  # noqa: E731
BUYERS = lambda ok, other=None: (401, ok, other or ok, 403, 403, 403, 401, 403)  # noqa: E731
ADMINS = (401, 403, 403, 403, 403, 200, 401, 403)
OWNER = lambda ok, admin=403, scanner=403: (401, 403, 403, ok, 403, admin, 401, scanner)  # noqa: E731
USERS = lambda ok: (401, ok, ok, ok, ok, ok, 401, 403)  # noqa: E731 - every account; a scanner is a door credential


@dataclass
class Setup:
    """What one request needs: path parameters, a body, and (for logout) a token of its own."""
    params: dict[str, str]
    body: Any = None
    token: str | None = None


class World:
    def __init__(self, c: httpx.Client, q: httpx.Client) -> None:
        self.c, self.q = c, q
        self.users: dict[str, dict[str, Any]] = {}

    def register(self, role: str) -> dict[str, Any]:
        email = f"{role}-{uuid.uuid4().hex}@example.com"
        r = self.c.post("/api/v1/auth/register", json={"email": email, "password": PASSWORD, "name": role,
                                                      "role": role})
        assert r.status_code == 201, r.text
        return {**r.json(), **self.login(email)}

    def login(self, email: str) -> dict[str, Any]:
        r = self.c.post("/api/v1/auth/token", json={"email": email, "password": PASSWORD})
        assert r.status_code == 200, r.text
        return r.json()

    def as_(self, role: str, method: str, path: str, body: Any = None, token: str | None = None) -> httpx.Response:
        token = token or (self.users[role]["access_token"] if role != "anonymous" else None)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return self.c.request(method, path, json=body, headers=headers)

    def venue(self, sections: list[dict] | None = None) -> str:
        sections = sections or [{"code": "A", "name": "Stalls", "kind": "seated", "rows": [{"label": "1", "seats": 4}]}]
        r = self.as_("organizer", "POST", "/api/v1/venues", {"name": "Hall", "city": "Porto", "sections": sections})
        assert r.status_code == 201, r.text
        return r.json()["id"]

    def event(self, *, publish: bool = True, seats: int = 4) -> str:
        venue = self.venue([{"code": "A", "name": "Stalls", "kind": "seated", "rows": [{"label": "1", "seats": seats}]}])
        r = self.as_("organizer", "POST", "/api/v1/events", event_body(venue))
        assert r.status_code == 201, r.text
        if publish:
            assert self.as_("organizer", "POST", f"/api/v1/events/{r.json()['id']}/publish").status_code == 200
        return r.json()["id"]

    def hold(self, event_id: str, seat: str = "A-1-1", role: str = "buyer") -> str:
        r = self.as_(role, "POST", f"/api/v1/events/{event_id}/holds", {"seats": [seat]})
        assert r.status_code == 201, r.text
        return r.json()["id"]

    def order(self) -> str:
        ev = self.event()
        r = self.as_("buyer", "POST", "/api/v1/orders", {"hold_id": self.hold(ev)})
        assert r.status_code == 201, r.text
        return r.json()["id"]

    def scanner(self) -> str:
        """A fresh scanner token for the shared event."""
        r = self.as_("organizer", "POST", f"/api/v1/events/{self.shared}/scanners", {"name": "door"})
        assert r.status_code == 201, r.text
        return r.json()["token"]

    def sold_out(self) -> str:
        ev = self.event(seats=1)
        r = self.as_("other_buyer", "POST", "/api/v1/orders", {"hold_id": self.hold(ev, role="other_buyer")})
        assert r.status_code == 201, r.text
        return ev


def event_body(venue_id: str) -> dict[str, Any]:
    return {"venue_id": venue_id, "title": "Show", "category": "music", "starts_at": "2027-03-01T20:00:00Z",
            "currency": "EUR", "prices": {"A": 1000}}


def fresh_credentials(w: World, role: str) -> Setup:
    return Setup({}, {"email": w.register("buyer")["email"], "password": PASSWORD})


# (service, method, path) -> (setup(world, role) -> Setup, statuses in ROLES order)
Row = tuple[Callable[[World, str], Setup], tuple[int, ...]]
COMMAND: dict[tuple[str, str], Row] = {
    ("POST", "/api/v1/auth/register"): (
        lambda w, r: Setup({}, {"email": f"n-{uuid.uuid4().hex}@example.com", "password": PASSWORD, "name": "n",
                                "role": "buyer"}), ALL(201)),
    ("POST", "/api/v1/auth/token"): (fresh_credentials, ALL(200)),
    ("POST", "/api/v1/auth/refresh"): (lambda w, r: Setup({}, {"refresh_token": w.register("buyer")["refresh_token"]}),
                                       ALL(200)),
    # The provider's signature decides, not a role: unsigned, 400 for everyone (signed: test_payment_webhook.py).
    ("POST", "/api/v1/payments/{provider}/webhook"): (lambda w, r: Setup({"provider": "devpay"}, {}), ALL(400)),
    ("POST", "/api/v1/auth/logout"): (
        lambda w, r: Setup({}, token=w.scanner() if r == "scanner" else w.login(w.users[r]["email"])["access_token"]
                           if r not in ("anonymous", "disabled") else None), SIGNED_IN(204)),
    ("POST", "/api/v1/admin/users/{user_id}/role"): (
        lambda w, r: Setup({"user_id": w.register("buyer")["id"]}, {"role": "organizer"}), ADMINS),
    ("POST", "/api/v1/admin/users/{user_id}/disable"): (
        lambda w, r: Setup({"user_id": w.register("buyer")["id"]}), ADMINS),
    ("POST", "/api/v1/venues"): (
        lambda w, r: Setup({}, {"name": "Hall", "city": "Porto", "sections": [
            {"code": "GA", "name": "Floor", "kind": "ga", "capacity": 5}]}), (401, 403, 403, 201, 201, 403, 401, 403)),
    ("POST", "/api/v1/events"): (lambda w, r: Setup({}, event_body(w.venue())), OWNER(201)),
    ("PATCH", "/api/v1/events/{event_id}"): (
        lambda w, r: Setup({"event_id": w.event(publish=False)}, {"title": "New"}), OWNER(200)),
    ("POST", "/api/v1/events/{event_id}/publish"): (
        lambda w, r: Setup({"event_id": w.event(publish=False)}), OWNER(200)),
    ("POST", "/api/v1/events/{event_id}/promo-codes"): (
        lambda w, r: Setup({"event_id": w.event()}, {"code": "SAVE10", "percent_off": 10, "max_uses": 5}),
        OWNER(201)),
    ("POST", "/api/v1/events/{event_id}/cancel"): (
        lambda w, r: Setup({"event_id": w.event()}), OWNER(200, admin=200)),
    ("POST", "/api/v1/events/{event_id}/holds"): (
        lambda w, r: Setup({"event_id": w.event()}, {"seats": ["A-1-1"]}), BUYERS(201)),
    ("DELETE", "/api/v1/holds/{hold_id}"): (
        lambda w, r: Setup({"hold_id": w.hold(w.event())}), BUYERS(204, 404)),
    ("POST", "/api/v1/orders"): (lambda w, r: Setup({}, {"hold_id": w.hold(w.event())}), BUYERS(201, 404)),
    ("POST", "/api/v1/orders/{order_id}/cancel"): (
        lambda w, r: Setup({"order_id": w.order()}), (401, 200, 404, 200, 404, 200, 401, 404)),
    ("POST", "/api/v1/events/{event_id}/waitlist"): (
        lambda w, r: Setup({"event_id": w.sold_out()}, {"quantity": 1}), BUYERS(201)),
    ("DELETE", "/api/v1/waitlist/{entry_id}"): (
        lambda w, r: Setup({"entry_id": w.as_("buyer", "POST", f"/api/v1/events/{w.sold_out()}/waitlist",
                                              {"quantity": 1}).json()["id"]}), BUYERS(204, 404)),
    ("POST", "/api/v1/events/{event_id}/scanners"): (lambda w, r: Setup({"event_id": w.shared}, {"name": "door"}),
                                                     OWNER(201)),
    # a code that is not a ticket: those allowed at the door get its refusal, the others no further than the role
    ("POST", "/api/v1/events/{event_id}/checkins"): (
        lambda w, r: Setup({"event_id": w.shared}, {"code": "not-a-ticket"}), OWNER(400, scanner=400)),
    ("POST", "/api/v1/events/{event_id}/checkins/batch"): (
        lambda w, r: Setup({"event_id": w.shared}, {"scans": [{"code": "x", "scanned_at": "2026-12-01T19:00:00Z"}]}),
        OWNER(200, scanner=200)),
    ("GET", "/api/v1/events/{event_id}/checkin-key"): (
        lambda w, r: Setup({"event_id": w.shared}), OWNER(200, scanner=200)),
    ("POST", "/api/v1/events/{event_id}/queue"): (
        lambda w, r: Setup({"event_id": w.queued}), BUYERS(201)),
    ("PATCH", "/api/v1/me/preferences"): (lambda w, r: Setup({}, {"reminders": False}), USERS(200)),
    ("POST", "/api/v1/me/notifications/{notification_id}/read"): (
        lambda w, r: Setup({"notification_id": str(uuid.uuid4())}), USERS(204)),
    ("POST", "/api/v1/me/notifications/read-all"): (lambda w, r: Setup({}), USERS(204)),
    ("GET", "/health"): (lambda w, r: Setup({}), ALL(200)),
    ("GET", "/metrics"): (lambda w, r: Setup({}), ALL(200)),
    ("GET", "/openapi.json"): (lambda w, r: Setup({}), ALL(200)),
    ("GET", "/docs"): (lambda w, r: Setup({}), ALL(200)),
}
# Read-only: one shared on-sale event (the organizer's), projected before the walk.
SHARED = lambda w, r: Setup({"event_id": w.shared})  # noqa: E731
NONE = lambda w, r: Setup({})  # noqa: E731
QUERY: dict[tuple[str, str], Row] = {
    ("GET", "/"): (NONE, ALL(200)),
    ("GET", "/health"): (NONE, ALL(200)),
    ("GET", "/metrics"): (NONE, ALL(200)),
    ("GET", "/openapi.json"): (NONE, ALL(200)),
    ("GET", "/docs"): (NONE, ALL(200)),
    ("GET", "/api/v1/events"): (NONE, ALL(200)),
    ("GET", "/api/v1/events/suggest"): (NONE, ALL(400)),  # planned (CONTRACT): 400 for everyone until built
    ("GET", "/api/v1/events/{event_id}"): (SHARED, ALL(200)),
    ("GET", "/api/v1/events/{event_id}/seats"): (SHARED, ALL(200)),
    ("GET", "/api/v1/events/{event_id}/seats/stream"): (SHARED, ALL(200)),
    ("GET", "/api/v1/me/notifications/stream"): (NONE, BUYERS(200)),
    ("GET", "/api/v1/me/notifications"): (NONE, USERS(200)),
    ("GET", "/api/v1/events/{event_id}/queue/{entry_id}"): (
        lambda w, r: Setup({"event_id": w.queued, "entry_id": w.queue_entry}), BUYERS(200, 404)),
    ("GET", "/api/v1/events/{event_id}/queue/{entry_id}/stream"): (
        lambda w, r: Setup({"event_id": w.queued, "entry_id": w.queue_entry}), BUYERS(200, 404)),
    ("GET", "/api/v1/me/orders"): (NONE, BUYERS(200)),
    ("GET", "/api/v1/me/waitlist"): (NONE, BUYERS(200)),
    ("GET", "/api/v1/organizer/events/{event_id}/stats"): (SHARED, OWNER(200, admin=200)),
    ("GET", "/api/v1/organizer/events/{event_id}/attendees"): (SHARED, OWNER(200, admin=200, scanner=200)),
    ("GET", "/api/v1/organizer/events/{event_id}/stream"): (SHARED, OWNER(200, admin=200)),
    ("GET", "/api/v1/organizer/events"): (NONE, (401, 403, 403, 200, 200, 403, 401, 403)),
    ("GET", "/api/v1/organizer/venues"): (NONE, (401, 403, 403, 200, 200, 403, 401, 403)),
    ("GET", "/organizer"): (NONE, ALL(200)),
    ("GET", "/tickets"): (NONE, ALL(200)),
    ("GET", "/api/v1/me/orders/{order_id}"): (lambda w, r: Setup({"order_id": w.my_order}), BUYERS(200, 404)),
    ("GET", "/api/v1/me/tickets"): (NONE, BUYERS(200)),
    ("GET", "/api/v1/me/tickets/{ticket_id}/qr.svg"): (lambda w, r: Setup({"ticket_id": w.ticket}), BUYERS(200, 404)),
    ("GET", "/api/v1/me/tickets/{ticket_id}/qr.png"): (lambda w, r: Setup({"ticket_id": w.ticket}), BUYERS(200, 404)),
    ("GET", "/api/v1/admin/users"): (NONE, ADMINS),
    ("GET", "/api/v1/admin/analytics"): (NONE, ADMINS),
}


def test_the_table_covers_every_endpoint():
    assert set(COMMAND) == {(o.method, o.path) for o in command_app.OPERATIONS}
    assert set(QUERY) == {(o.method.upper(), o.path) for o in query_app.OPERATIONS}
    assert all(len(statuses) == len(ROLES) for _, statuses in [*COMMAND.values(), *QUERY.values()])


@pytest.fixture(scope="module")
def world(settings) -> World:
    c = httpx.Client(base_url=f"http://{settings.command_host}:{settings.command_port}", timeout=30)
    q = httpx.Client(base_url=f"http://{settings.query_host}:{settings.query_port}", timeout=30)
    w = World(c, q)
    for role in ("buyer", "other_buyer", "organizer", "other_organizer"):
        w.users[role] = w.register(role.removeprefix("other_"))
    email = f"admin-{uuid.uuid4().hex}@example.com"
    out = subprocess.run([sys.executable, "-m", "command_service.entrypoints.cli", "create-admin", "--email", email,
                          "--password", PASSWORD], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    w.users["admin"] = {"id": out.stdout.strip(), "email": email, **w.login(email)}
    w.users["disabled"] = w.register("buyer")
    assert w.as_("admin", "POST", f"/api/v1/admin/users/{w.users['disabled']['id']}/disable").status_code == 200
    token = {"Authorization": f"Bearer {w.users['disabled']['access_token']}"}
    eventually(lambda: q.get("/api/v1/me/orders", headers=token).status_code == 401, timeout=10)
    w.shared = w.event()
    w.users["scanner"] = {"access_token": w.scanner()}
    venue = w.venue()
    r = w.as_("organizer", "POST", "/api/v1/events", {**event_body(venue), "waiting_room": {
        "admit_per_minute": 1, "admission_seconds": 60}, "sale_starts_at": "2030-01-01T00:00:00Z"})
    w.queued = r.json()["id"]  # a waiting room that stays closed: entries keep waiting
    assert w.as_("organizer", "POST", f"/api/v1/events/{w.queued}/publish").status_code == 200
    w.queue_entry = w.as_("buyer", "POST", f"/api/v1/events/{w.queued}/queue").json()["id"]
    free = w.venue()
    r = w.as_("organizer", "POST", "/api/v1/events", {**event_body(free), "prices": {"A": 0}})
    w.as_("organizer", "POST", f"/api/v1/events/{r.json()['id']}/publish")
    order = w.as_("buyer", "POST", "/api/v1/orders", {"hold_id": w.hold(r.json()["id"])}).json()
    assert order["status"] == "confirmed", order  # a free order: its tickets at once
    w.my_order = order["id"]
    buyer = {"Authorization": f"Bearer {w.users['buyer']['access_token']}"}
    w.ticket = eventually(lambda: (q.get("/api/v1/me/tickets", headers=buyer).json().get("items") or [{}])[0]
                          .get("id"), timeout=60)
    eventually(lambda: q.get(f"/api/v1/events/{w.shared}/seats").status_code == 200
               and q.get(f"/api/v1/organizer/events/{w.shared}/stats",
                         headers={"Authorization": f"Bearer {w.users['organizer']['access_token']}"}).status_code == 200,
               timeout=60)
    yield w
    c.close()
    q.close()


def status_of(client: httpx.Client, method: str, path: str, token: str | None, body: Any) -> int:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if path.endswith("/stream"):
        with client.stream(method, path, headers=headers) as r:
            return r.status_code
    return client.request(method, path, json=body, headers=headers).status_code


@pytest.mark.parametrize("service,method,path", [("command", *k) for k in COMMAND] + [("query", *k) for k in QUERY])
def test_each_role_gets_its_status(world, service, method, path):
    setup, expected = (COMMAND if service == "command" else QUERY)[(method, path)]
    client = world.c if service == "command" else world.q
    got = []
    for role in ROLES:
        s = setup(world, role)
        token = s.token or (world.users[role]["access_token"] if role != "anonymous" else None)
        got.append(status_of(client, method, path.format(**s.params), token, s.body))
    assert dict(zip(ROLES, got)) == dict(zip(ROLES, expected))
