"""PostgreSQL repository: every read and conditional write of the command side.

It runs on one connection inside a unit of work. Statements are bound client-side and sent as
one multi-statement batch per round trip (simple query protocol): a write whose result nobody
reads (``add_hold``, ``add_order``, outbox rows, ``BEGIN``) is ``queue``-d and travels with the
next statement that returns rows, or with COMMIT. A hold is thus two round trips
(``BEGIN; UPDATE seats; SELECT terms`` and ``INSERT hold; INSERT outbox; COMMIT``), a checkout
too, each one send and one receive. Every statement still gets its own snapshot (READ COMMITTED),
and a failing statement aborts the transaction and the rest of its batch. The hot statements of a
hold and a checkout (``PREPARED``) are PREPAREd once per connection (in front of its first batch)
and travel as ``EXECUTE name(<literals>)``, so PostgreSQL does not parse and plan them every time.

Inventory arbitration lives here. The rules (README.md "PostgreSQL is the arbiter"):

* A seat or GA section only changes through an UPDATE whose WHERE clause states the expected
  current state (``status = 'available'``, ``hold_id = <hold>``, ``held + sold + n <= capacity``),
  so of two racing transactions the second finds nothing to update.
* Lock order: hold/order row first, then inventory rows. A new hold has no row yet, so it
  locks inventory only. Event cancellation waits for every in-flight inventory transaction
  (the "barrier") before it cancels orders and resets. PostgreSQL breaks the rare deadlock left
  (an event and one of its orders cancelled at the same moment; overlapping multi-seat holds
  after a Redis flush) and the message bus retries the loser.
* A new hold reads the event's sale terms *after* locking its inventory rows, in a later
  statement (fresh snapshot): a cancellation that committed first is seen, and one that did not
  yet commit waits on the barrier for this transaction and then undoes it. A checkout needs no
  such read: cancellation releases holds first, so it either waits for the checkout (and then
  cancels the new order) or the checkout finds its hold released.
"""
from __future__ import annotations

import re
import weakref
from datetime import datetime
from typing import Any

from psycopg import AsyncClientCursor, AsyncConnection
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from command_service.domain.model import (Event, GASectionState, Hold, InventoryChange, Layout, Order, OrderPayment,
                                          OrderRefund, PromoCode, SaleInfo, SaleTerms, Scanner, SeatChange, Ticket,
                                          User, Venue, WaitlistEntry)

SEAT_CHANGE = "RETURNING s.seat_id, s.status, s.version"
GA_STATE = "RETURNING g.section, g.capacity, g.held, g.sold, g.version"


def _seats(rows: list[dict[str, Any]]) -> InventoryChange:
    return InventoryChange(seats=tuple(SeatChange(r["seat_id"], r["status"], r["version"]) for r in rows))


def _ga(rows: list[dict[str, Any]]) -> InventoryChange:
    return InventoryChange(ga_sections=tuple(
        GASectionState(r["section"], r["capacity"], r["held"], r["sold"], r["version"]) for r in rows))


def _user(r: dict[str, Any] | None) -> User | None:
    if r is None:
        return None
    return User(str(r["id"]), r["email"], r["name"], r["role"], r["password_hash"], r["disabled"], r["version"],
                r["created_at"], r["updated_at"], r["mail_reminders"], r["mail_marketing"])


def _hold(r: dict[str, Any]) -> Hold:
    entry = r.get("waitlist_entry_id")
    return Hold(str(r["id"]), str(r["event_id"]), str(r["buyer_id"]), tuple(r["seats"]) if r["seats"] else None,
                r["section"], r["quantity"], r["expires_at"], r["total"], r["currency"], r["status"],
                str(entry) if entry else None)


def _entry(r: dict[str, Any]) -> WaitlistEntry:
    return WaitlistEntry(str(r["id"]), str(r["event_id"]), str(r["buyer_id"]), r["section"], r["quantity"], r["seq"],
                         r["status"], str(r["offer_hold_id"]) if r["offer_hold_id"] else None, r["offer_expires_at"],
                         r["version"], r["created_at"], r["updated_at"])


def _order(r: dict[str, Any]) -> Order:
    """An ``orders`` row (plus, when the query joined it, its refund as ``refund_*`` columns)."""
    payment = (OrderPayment(r["payment_provider"], r["payment_id"], r["payment_status"], r["checkout_url"],
                            r["payment_expires_at"]) if r.get("payment_id") else None)
    refund = (OrderRefund(r["refund_status"], r["refund_amount"], r["refund_reason"])
              if r.get("refund_status") else None)
    return Order(str(r["id"]), str(r["event_id"]), str(r["buyer_id"]), str(r["hold_id"]),
                 tuple(r["seats"]) if r["seats"] else None, r["section"], r["quantity"], r["total"],
                 r["currency"], r["status"], r["created_at"], r["cancelled_at"], r.get("subtotal"),
                 r.get("discount") or 0, str(r["promo_code_id"]) if r.get("promo_code_id") else None,
                 r.get("version") or 1, r.get("confirmed_at"), r.get("cancel_reason"), payment, refund,
                 r.get("seats_released_at") is not None)


# An order with its refund (the read every lifecycle step starts from).
ORDER_SQL = ("SELECT o.*, r.status AS refund_status, r.amount AS refund_amount, r.reason AS refund_reason, "
             "e.organizer_id FROM orders o JOIN events e ON e.id = o.event_id "
             "LEFT JOIN refunds r ON r.order_id = o.id WHERE {where}")


def _ticket(r: dict[str, Any]) -> Ticket:
    return Ticket(str(r["id"]), str(r["order_id"]), str(r["event_id"]), str(r["buyer_id"]), r["seat"], r["section"],
                  r["code"], r["status"], r["checked_in_at"], r["version"])


def _promo(r: dict[str, Any]) -> PromoCode:
    return PromoCode(str(r["id"]), str(r["event_id"]), r["code"], r["percent_off"], r["amount_off"], r["max_uses"],
                     r["uses"], r["valid_from"], r["valid_until"],
                     tuple(r["sections"]) if r["sections"] is not None else None, r["created_at"])


Rows = list[dict[str, Any]]

# Hot statements (a hold, a checkout, an outbox row), PREPAREd once per connection: a batch sends
# ``EXECUTE name(<literals>)`` instead of the statement text, so PostgreSQL neither parses nor (once
# it settles on a generic plan) plans them again. Parameter types are inferred from the statement.
END_HOLD_SQL = (
    "WITH h AS (UPDATE holds SET status = {status} WHERE id = {hold} AND status = 'active'{buyer} RETURNING *), "
    "s AS (UPDATE seats s SET {seat_set}, version = s.version + 1 FROM h WHERE s.seat_id = ANY(h.seats) "
    "AND s.event_id = h.event_id AND s.hold_id = h.id AND s.status = 'held' " + SEAT_CHANGE + "), "
    "g AS (UPDATE ga_sections g SET held = g.held - h.quantity{ga_sold}, version = g.version + 1 FROM h "
    "WHERE g.event_id = h.event_id AND g.section = h.section AND g.held >= h.quantity " + GA_STATE + ") "
    "SELECT h.*, (SELECT coalesce(json_agg(s), '[]') FROM s) AS seat_rows, "
    "(SELECT coalesce(json_agg(g), '[]') FROM g) AS ga_rows FROM h")
PREPARED = {
    "ev_reserve_seats": "UPDATE seats s SET status = 'held', hold_id = $1, version = s.version + 1 "
                        "WHERE s.event_id = $2 AND s.seat_id = ANY($3) AND s.status = 'available' " + SEAT_CHANGE,
    "ev_reserve_ga": "UPDATE ga_sections g SET held = g.held + $1, version = g.version + 1 "
                     "WHERE g.event_id = $2 AND g.section = $3 AND g.held + g.sold + $1 <= g.capacity " + GA_STATE,
    "ev_sale_terms": "SELECT status, currency, prices, sale_starts_at FROM events WHERE id = $1",
    "ev_add_hold": "INSERT INTO holds (id, event_id, buyer_id, seats, section, quantity, total, currency, status, "
                   "expires_at, waitlist_entry_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    "ev_checkout": END_HOLD_SQL.format(status="'converted'", hold="$1", buyer=" AND buyer_id = $2 AND expires_at > now()",
                                       seat_set="status = 'sold', order_id = $3", ga_sold=", sold = g.sold + h.quantity"),
    "ev_add_order": "INSERT INTO orders (id, event_id, buyer_id, hold_id, seats, section, quantity, total, currency, "
                    "status, created_at, subtotal, discount, promo_code_id, confirmed_at, payment_provider, "
                    "payment_id, payment_status, checkout_url, payment_expires_at, reconcile_at) "
                    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, "
                    "$20, $21)",
    # A paid checkout: the hold is converted, its seats stay held (by the hold) for the payment window.
    "ev_convert_hold": "UPDATE holds SET status = 'converted' WHERE id = $1 AND status = 'active' "
                       "AND buyer_id = $2 AND expires_at > now() RETURNING *",
    "ev_checkout_context": "SELECT h.*, o.id AS order_id FROM holds h LEFT JOIN orders o ON o.hold_id = h.id "
                           "WHERE h.id = $1",
    "ev_outbox": "INSERT INTO outbox (id, aggregatetype, aggregateid, type, payload) VALUES ($1, $2, $3, $4, $5)",
    "ev_sale_info": "SELECT e.status, v.sections, e.sale_starts_at, e.max_per_buyer, e.waiting_room FROM events e "
                    "JOIN venues v ON v.id = e.venue_id WHERE e.id = $1",
    # check-in: of any number of concurrent scans of one ticket, exactly one finds it valid
    "ev_check_in": "UPDATE tickets SET status = 'checked_in', checked_in_at = $4, checked_in_by = $3, "
                   "version = version + 1 WHERE id = $1 AND event_id = $2 AND status = 'valid' RETURNING *",
}
PREPARE_ALL = [f"PREPARE {name} AS {sql}" for name, sql in PREPARED.items()]
EXECUTE = {name: f"EXECUTE {name}(" + ", ".join(["%s"] * max(int(n) for n in re.findall(r"\$(\d+)", sql))) + ")"
           for name, sql in PREPARED.items()}


class Repository:
    """Needs an autocommit connection: the unit of work queues BEGIN and sends COMMIT/ROLLBACK itself."""

    _prepared: weakref.WeakSet[AsyncConnection] = weakref.WeakSet()  # connections that have PREPARED

    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn
        self._cur = AsyncClientCursor(conn, row_factory=dict_row)
        self._pending: list[str] = []
        self._prepare = conn not in self._prepared

    @classmethod
    def forget_prepared(cls, conn: AsyncConnection) -> None:
        """The session lost its prepared statements (DEALLOCATE ALL): PREPARE again on next use."""
        cls._prepared.discard(conn)

    def queue_prepared(self, name: str, params: Any) -> None:
        """``queue`` for one of the PREPARED statements."""
        self._pending.append(self._cur.mogrify(EXECUTE[name], params))

    def prepared(self, name: str, params: Any) -> tuple[str, Any]:
        """A ``run`` statement for one of the PREPARED statements."""
        return EXECUTE[name], params

    def queue(self, sql: str, params: Any = None) -> None:
        """A statement whose result is not needed: sent with the next batch (a read, or COMMIT)."""
        self._pending.append(sql if params is None else self._cur.mogrify(sql, params))

    async def run(self, *statements: tuple[str, Any]) -> list[Rows]:
        """Send the queued statements plus ``statements`` in one round trip; the rows of each of ``statements``."""
        batch = self._pending + [self._cur.mogrify(sql, params) for sql, params in statements]
        self._pending = []
        if self._prepare:  # first batch on this connection: PREPARE the hot statements in front of it
            batch[:0] = PREPARE_ALL  # not transactional: a later failure in this batch does not undo them
            self._prepare = False
            self._prepared.add(self.conn)
        await self._cur.execute(";\n".join(batch))  # no params: sent as is, multi-statement
        for _ in range(len(batch) - len(statements)):  # skip the queued statements' results
            self._cur.nextset()
        results = []
        for _ in statements:
            results.append(await self._cur.fetchall() if self._cur.description is not None else [])
            self._cur.nextset()
        return results

    async def _execute(self, sql: str, params: Any = None) -> Rows:
        return (await self.run((sql, params)))[0]

    async def _one(self, sql: str, params: Any = None) -> dict[str, Any] | None:
        rows = await self._execute(sql, params)
        return rows[0] if rows else None

    # --- users ----------------------------------------------------------------------------
    async def add_user(self, user: User) -> bool:
        """False when the email is taken."""
        row = await self._one(
            "INSERT INTO users (id, email, name, role, password_hash) VALUES (%s, %s, %s, %s, %s) "
            "ON CONFLICT (email) DO NOTHING RETURNING id",
            (user.id, user.email, user.name, user.role, user.password_hash))
        return row is not None

    async def user_by_email(self, email: str) -> User | None:
        return _user(await self._one("SELECT * FROM users WHERE email = %s", (email,)))

    async def get_user(self, user_id: str, *, lock: bool = False) -> User | None:
        return _user(await self._one("SELECT * FROM users WHERE id = %s" + (" FOR UPDATE" if lock else ""),
                                     (user_id,)))

    async def save_user(self, u: User) -> None:
        self.queue("UPDATE users SET role = %s, disabled = %s, version = %s, updated_at = %s, mail_reminders = %s, "
                   "mail_marketing = %s WHERE id = %s",
                   (u.role, u.disabled, u.version, u.updated_at, u.mail_reminders, u.mail_marketing, u.id))

    # --- refresh tokens (stored as SHA-256; migrations/versions/0005_accounts.py) ----------------------------
    async def add_refresh_token(self, token_hash: str, family_id: str, user_id: str, access_jti: str,
                                access_expires_at: datetime, expires_at: datetime) -> None:
        self.queue("INSERT INTO refresh_tokens (token_hash, family_id, user_id, access_jti, access_expires_at, "
                   "expires_at) VALUES (%s, %s, %s, %s, %s, %s)",
                   (token_hash, family_id, user_id, access_jti, access_expires_at, expires_at))

    async def use_refresh_token(self, token_hash: str) -> tuple[dict[str, Any] | None, bool]:
        """(the row, True) when it was unused, unrevoked and unexpired, and is now used; (row, False) when it
        exists but may not be used (the row says why); (None, False) when there is no such token."""
        r = await self._one(
            "WITH t AS (SELECT * FROM refresh_tokens WHERE token_hash = %(h)s FOR UPDATE), "
            "u AS (UPDATE refresh_tokens r SET used_at = now() FROM t WHERE r.token_hash = t.token_hash "
            "AND t.used_at IS NULL AND t.revoked_at IS NULL AND t.expires_at > now() RETURNING r.token_hash) "
            "SELECT t.*, (SELECT count(*) FROM u) = 1 AS fresh FROM t", {"h": token_hash})
        return (r, bool(r["fresh"])) if r else (None, False)

    async def revoke_refresh_family(self, family_id: str) -> list[tuple[str, datetime]]:
        """Revoke every token of the family; returns the (jti, expiry) of its access tokens still unexpired."""
        rows = await self._execute(
            "WITH r AS (UPDATE refresh_tokens SET revoked_at = coalesce(revoked_at, now()) WHERE family_id = %s "
            "RETURNING access_jti, access_expires_at) "
            "SELECT access_jti, access_expires_at FROM r WHERE access_expires_at > now()", (family_id,))
        return [(r["access_jti"], r["access_expires_at"]) for r in rows]

    async def refresh_family_of(self, access_jti: str) -> str | None:
        r = await self._one("SELECT family_id FROM refresh_tokens WHERE access_jti = %s", (access_jti,))
        return str(r["family_id"]) if r else None

    async def revoke_user_refresh_tokens(self, user_id: str) -> None:
        self.queue("UPDATE refresh_tokens SET revoked_at = now() WHERE user_id = %s AND revoked_at IS NULL "
                   "AND expires_at > now()", (user_id,))

    async def record_revocations(self, members: dict[str, float]) -> None:
        """Revocations (common/revocation.py members -> when they may be forgotten, unix s), in this transaction."""
        for member, forget_at in members.items():
            self.queue("INSERT INTO revoked_tokens (member, forget_at) VALUES (%s, to_timestamp(%s)) "
                       "ON CONFLICT (member) DO UPDATE SET forget_at = greatest(revoked_tokens.forget_at, "
                       "excluded.forget_at)", (member, forget_at))

    async def live_revocations(self) -> dict[str, float]:
        rows = await self._execute("SELECT member, extract(epoch FROM forget_at)::float8 AS forget_at "
                                   "FROM revoked_tokens WHERE forget_at > now()")
        return {r["member"]: r["forget_at"] for r in rows}

    async def purge_revocations(self) -> None:
        self.queue("DELETE FROM revoked_tokens WHERE forget_at < now() - interval '1 hour'")

    # --- promo codes -----------------------------------------------------------------------
    async def add_promo_code(self, promo: PromoCode) -> bool:
        """False when the event already has this code (codes compare case-insensitively)."""
        row = await self._one(
            "INSERT INTO promo_codes (id, event_id, code, percent_off, amount_off, max_uses, valid_from, valid_until, "
            "sections, created_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (event_id, upper(code)) DO NOTHING RETURNING 1",
            (promo.id, promo.event_id, promo.code, promo.percent_off, promo.amount_off, promo.max_uses,
             promo.valid_from, promo.valid_until, list(promo.sections) if promo.sections is not None else None,
             promo.created_at))
        return row is not None

    async def redeem_promo_code(self, event_id: str, code: str) -> PromoCode | None:
        """Take one use of the event's code, if it is valid now and not used up: the conditional UPDATE holds
        ``max_uses`` under any concurrency. None: unknown, outside its dates, or used up."""
        r = await self._one(
            "UPDATE promo_codes SET uses = uses + 1 WHERE event_id = %s AND upper(code) = upper(%s) "
            "AND uses < max_uses AND (valid_from IS NULL OR valid_from <= now()) "
            "AND (valid_until IS NULL OR now() < valid_until) RETURNING *", (event_id, code))
        return _promo(r) if r else None

    async def find_promo_code(self, event_id: str, code: str) -> PromoCode | None:
        """The event's code if it could be redeemed now (valid dates, uses left); nothing is taken."""
        r = await self._one(
            "SELECT * FROM promo_codes WHERE event_id = %s AND upper(code) = upper(%s) AND uses < max_uses "
            "AND (valid_from IS NULL OR valid_from <= now()) AND (valid_until IS NULL OR now() < valid_until)",
            (event_id, code))
        return _promo(r) if r else None

    async def return_promo_use(self, promo_code_id: str) -> None:
        """A cancelled order gives its use back (the cancel's conditional update runs once per order)."""
        self.queue("UPDATE promo_codes SET uses = uses - 1 WHERE id = %s AND uses > 0", (promo_code_id,))

    # --- payments --------------------------------------------------------------------------
    async def record_payment_webhook(self, provider: str, event: Any, payload: dict[str, Any]) -> bool:
        """False when this provider event was recorded before (the provider sent it again)."""
        row = await self._one(
            "INSERT INTO payment_webhooks (provider, event_id, type, object_id, reference, status, payload) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (provider, event_id) DO NOTHING RETURNING 1",
            (provider, event.id, event.type, event.object_id, event.reference, event.status, Jsonb(payload)))
        return row is not None

    async def mark_webhook_processed(self, provider: str, event_id: str) -> None:
        self.queue("UPDATE payment_webhooks SET processed_at = now() WHERE provider = %s AND event_id = %s",
                   (provider, event_id))

    async def purge_refresh_tokens(self) -> int:
        rows = await self._execute("DELETE FROM refresh_tokens WHERE expires_at < now() - interval '1 day' "
                                   "RETURNING 1")
        return len(rows)

    # --- venues and events ----------------------------------------------------------------
    async def add_venue(self, venue: Venue) -> None:
        self.queue(
            "INSERT INTO venues (id, organizer_id, name, city, address, capacity, sections) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s)",
            (venue.id, venue.organizer_id, venue.name, venue.city, venue.address, venue.layout.capacity,
             Jsonb(venue.layout.to_json())))

    async def get_venue(self, venue_id: str) -> Venue | None:
        r = await self._one("SELECT * FROM venues WHERE id = %s", (venue_id,))
        return self._venue(r, "") if r else None

    @staticmethod
    def _venue(r: dict[str, Any], prefix: str) -> Venue:
        return Venue(str(r[prefix + "id"]), str(r[prefix + "organizer_id"]), r[prefix + "name"], r["city"],
                     r["address"], Layout.from_json(r["sections"]))

    async def add_event(self, event: Event) -> None:
        """The event row plus its inventory: one seat row per seat, one row per GA section."""
        layout = event.venue.layout
        self.queue(
            "INSERT INTO events (id, organizer_id, venue_id, title, description, category, starts_at, ends_at, "
            "currency, prices, status, version, created_at, updated_at, sale_starts_at, max_per_buyer, waiting_room) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (event.id, event.organizer_id, event.venue.id, event.title, event.description, event.category,
             event.starts_at, event.ends_at, event.currency, Jsonb(event.prices), event.status, event.version,
             event.created_at, event.updated_at, event.sale_starts_at, event.max_per_buyer,
             Jsonb(event.waiting_room) if event.waiting_room else None))
        self.queue("INSERT INTO seats (event_id, seat_id) SELECT %s, unnest(%s::text[])", (event.id, layout.seat_ids()))
        ga = layout.ga_sections()
        self.queue(
            "INSERT INTO ga_sections (event_id, section, capacity) SELECT %s, unnest(%s::text[]), unnest(%s::int[])",
            (event.id, [s.code for s in ga], [s.capacity for s in ga]))

    async def get_event(self, event_id: str, *, for_update: bool = False) -> Event | None:
        r = await self._one(
            "SELECT e.*, v.id AS v_id, v.organizer_id AS v_organizer_id, v.name AS v_name, v.city, v.address, "
            "v.sections FROM events e JOIN venues v ON v.id = e.venue_id WHERE e.id = %s"
            + (" FOR UPDATE OF e" if for_update else ""), (event_id,))
        if r is None:
            return None
        return Event(str(r["id"]), str(r["organizer_id"]), self._venue(r, "v_"), r["title"], r["description"],
                     r["category"], r["starts_at"], r["ends_at"], r["currency"], r["prices"], r["status"],
                     r["version"], r["created_at"], r["updated_at"], r["sale_starts_at"], r["max_per_buyer"],
                     r["waiting_room"])

    # --- the waiting room (service_layer/waiting_room.py) -------------------------------------------------
    async def join_queue(self, entry_id: str, event_id: str, buyer_id: str) -> tuple[dict[str, Any], bool]:
        """The buyer's entry (a new one, or the one they have: one per buyer and event); True when new. Joining
        before ``sale_starts_at`` draws a random place among the early joiners (``draw``); later joiners have draw
        0 and queue by ``seq``."""
        r = await self._one(
            "INSERT INTO queue_entries (id, event_id, buyer_id, pre_open, draw) SELECT %(id)s, e.id, %(b)s, o.pre, "
            "CASE WHEN o.pre THEN random() ELSE 0 END FROM events e, "
            "LATERAL (SELECT e.sale_starts_at IS NOT NULL AND now() < e.sale_starts_at AS pre) o WHERE e.id = %(e)s "
            "ON CONFLICT (event_id, buyer_id) DO NOTHING RETURNING *", {"id": entry_id, "e": event_id, "b": buyer_id})
        if r is not None:
            return r, True
        return await self._one("SELECT * FROM queue_entries WHERE event_id = %s AND buyer_id = %s",
                               (event_id, buyer_id)), False

    async def queue_of(self, event_id: str) -> list[dict[str, Any]]:
        return await self._execute("SELECT * FROM queue_entries WHERE event_id = %s", (event_id,))

    async def queue_record_counts(self, event_id: str, settled_s: float) -> dict[str, int]:
        """The record's sizes, to compare with Redis's: ``entries`` in all, and of those older than ``settled_s``
        (whose Redis writes, made right after their commit, must have landed): ``settled`` entries and
        ``settled_admitted`` admissions."""
        rows = await self._execute(
            "SELECT count(*) AS entries, "
            "count(*) FILTER (WHERE joined_at < now() - make_interval(secs => %s)) AS settled, "
            "count(*) FILTER (WHERE admitted_at < now() - make_interval(secs => %s)) AS settled_admitted "
            "FROM queue_entries WHERE event_id = %s", (settled_s, settled_s, event_id))
        return dict(rows[0])

    async def claim_admitting_events(self, limit: int = 200) -> list[dict[str, Any]]:
        """On-sale waiting-room events, locked (SKIP LOCKED: one admitter per event at once, whichever process),
        the ``active`` ones first: someone waiting, or admitted within the last minute. (Ordered by id alone, a
        stack with more rooms than ``limit`` never admitted anyone in the later ones: a test found it.)"""
        return await self._execute(
            "SELECT e.id, e.sale_starts_at, e.waiting_room, e.admitted, EXISTS (SELECT 1 FROM queue_entries q "
            "WHERE q.event_id = e.id AND (q.admitted_at IS NULL OR q.admitted_at > now() - interval '1 minute')) "
            "AS active FROM events e WHERE e.status = 'on_sale' AND e.waiting_room IS NOT NULL "
            "ORDER BY active DESC, e.id LIMIT %s FOR UPDATE OF e SKIP LOCKED", (limit,))

    async def admit(self, event_id: str, n: int, admission_s: int, admitted_before: int) -> list[dict[str, Any]]:
        """Admit the next ``n`` waiting entries in queue order; ``events.admitted`` becomes ``admitted_before``
        plus those admitted."""
        rows = await self._execute(
            "UPDATE queue_entries SET admitted_at = now(), admission_expires_at = now() + make_interval(secs => %s) "
            "WHERE id IN (SELECT id FROM queue_entries WHERE event_id = %s AND admitted_at IS NULL "
            "ORDER BY pre_open DESC, draw, seq LIMIT %s) RETURNING *", (admission_s, event_id, n))
        self.queue("UPDATE events SET admitted = %s WHERE id = %s", (admitted_before + len(rows), event_id))
        return rows

    # --- notices to ticket holders (service_layer/notices.py) -----------------------------------------------
    async def claim_due_reminders(self, within_s: float, limit: int) -> list[dict[str, Any]]:
        """On-sale events starting within ``within_s`` whose holders were not yet reminded of this start time,
        locked (SKIP LOCKED: another sweeper takes others or none)."""
        return await self._execute(
            "SELECT id, title, starts_at, ends_at, version FROM events WHERE status = 'on_sale' "
            "AND starts_at > now() AND starts_at <= now() + make_interval(secs => %s) "
            "AND reminded_for IS DISTINCT FROM starts_at ORDER BY starts_at LIMIT %s FOR UPDATE SKIP LOCKED",
            (within_s, limit))

    def set_reminded(self, event_id: str, starts_at: datetime) -> None:
        self.queue("UPDATE events SET reminded_for = %s WHERE id = %s", (starts_at, event_id))

    async def ticket_holders(self, event_id: str, *, reminders: bool = False) -> list[tuple[str, int]]:
        """(buyer id, tickets not void) of an event; ``reminders``: only buyers who take reminder mail."""
        rows = await self._execute(
            "SELECT t.buyer_id, count(*) AS n FROM tickets t "
            + ("JOIN users u ON u.id = t.buyer_id AND u.mail_reminders " if reminders else "")
            + "WHERE t.event_id = %s AND t.status <> 'void' GROUP BY t.buyer_id ORDER BY t.buyer_id", (event_id,))
        return [(str(r["buyer_id"]), r["n"]) for r in rows]

    async def save_event(self, event: Event) -> None:
        self.queue(
            "UPDATE events SET title = %s, description = %s, category = %s, starts_at = %s, ends_at = %s, "
            "prices = %s, status = %s, version = %s, updated_at = %s, sale_starts_at = %s, max_per_buyer = %s, "
            "waiting_room = %s WHERE id = %s",
            (event.title, event.description, event.category, event.starts_at, event.ends_at, Jsonb(event.prices),
             event.status, event.version, event.updated_at, event.sale_starts_at, event.max_per_buyer,
             Jsonb(event.waiting_room) if event.waiting_room else None, event.id))

    async def sale_info(self, event_id: str) -> SaleInfo | None:
        r = await self._one(*self.prepared("ev_sale_info", (event_id,)))
        return SaleInfo(event_id, r["status"], Layout.from_json(r["sections"]), r["sale_starts_at"],
                        r["max_per_buyer"], r["waiting_room"]) if r else None

    # --- holds ----------------------------------------------------------------------------
    async def reserve(self, hold: Hold) -> tuple[InventoryChange, SaleTerms | None]:
        """Take the hold's seats (all still available) or GA places (if they fit); empty change when not.

        Also returns the event's sale terms, read after the inventory rows are locked.
        """
        if hold.seats:
            inventory = self.prepared("ev_reserve_seats", (hold.id, hold.event_id, list(hold.seats)))
        else:
            inventory = self.prepared("ev_reserve_ga", (hold.quantity, hold.event_id, hold.section))
        # A later statement of the same batch, so read with a snapshot taken after the rows were locked.
        terms = self.prepared("ev_sale_terms", (hold.event_id,))
        rows, found = await self.run(inventory, terms)
        t = found[0] if found else None
        change = _seats(rows) if hold.seats else _ga(rows)
        return change, SaleTerms(t["status"], t["currency"], t["prices"], t["sale_starts_at"]) if t else None

    async def buyer_places(self, event_id: str, buyer_id: str) -> int:
        """A buyer's held + sold places on an event (active holds, pending and confirmed orders), read under a
        transaction-scoped lock on (event, buyer): the buyer's concurrent holds on the event take turns here, and
        each counts what the one before committed. PostgreSQL alone decides (no Redis). The count is a later
        statement than the lock, so its snapshot is taken once the lock is held (one round trip for both)."""
        params = {"e": event_id, "b": buyer_id}
        _, rows = await self.run(
            ("SELECT pg_advisory_xact_lock(hashtextextended(%(e)s || ':' || %(b)s, 0))", params),
            ("SELECT (SELECT coalesce(sum(coalesce(array_length(seats, 1), quantity)), 0) FROM holds "
             " WHERE event_id = %(e)s AND buyer_id = %(b)s AND status = 'active' AND expires_at > now())"
             " + (SELECT coalesce(sum(coalesce(array_length(seats, 1), quantity)), 0) FROM orders "
             " WHERE event_id = %(e)s AND buyer_id = %(b)s AND status IN ('pending_payment', 'confirmed')) AS n",
             params))
        return int(rows[0]["n"])

    async def seat_states(self, event_id: str, seat_ids: list[str]) -> list[SeatChange]:
        rows = await self._execute(
            "SELECT seat_id, status, version FROM seats WHERE event_id = %s AND seat_id = ANY(%s)",
            (event_id, seat_ids))
        return list(_seats(rows).seats)

    async def add_hold(self, hold: Hold) -> None:
        self.queue_prepared(
            "ev_add_hold",
            (hold.id, hold.event_id, hold.buyer_id, list(hold.seats) if hold.seats else None, hold.section,
             hold.quantity, hold.total, hold.currency, hold.status, hold.expires_at, hold.waitlist_entry_id))

    async def get_hold(self, hold_id: str) -> Hold | None:
        r = await self._one("SELECT * FROM holds WHERE id = %s", (hold_id,))
        return _hold(r) if r else None

    async def end_hold(self, hold_id: str, status: str, *, buyer_id: str | None = None,
                       order_id: str | None = None) -> tuple[Hold | None, InventoryChange]:
        """Move an active hold to ``status`` and its inventory along, in one statement.

        ``converted`` (checkout, needs ``order_id``): only an unexpired hold of ``buyer_id``; its
        seats become sold. ``released`` / ``expired``: its seats or GA places become available.
        Returns (None, empty change) when the hold was not active (or not the buyer's, or expired).
        The hold row is locked first, then the inventory rows (lock order).
        """
        if status == "converted":
            row = await self._one(*self.prepared("ev_checkout", (hold_id, buyer_id, order_id)))
        else:
            row = await self._one(END_HOLD_SQL.format(
                status="%(status)s", hold="%(hold)s", buyer="", seat_set="status = 'available', hold_id = NULL",
                ga_sold=""), {"status": status, "hold": hold_id})
        if row is None:
            return None, InventoryChange()
        change = InventoryChange(_seats(row["seat_rows"]).seats, _ga(row["ga_rows"]).ga_sections)
        return _hold(row), change

    async def claim_expired_holds(self, limit: int) -> list[Hold]:
        """Sweeper: claim up to ``limit`` expired active holds; SKIP LOCKED lets several processes sweep."""
        rows = await self._execute(
            "UPDATE holds SET swept_at = now() WHERE id IN (SELECT id FROM holds WHERE status = 'active' "
            "AND expires_at <= now() AND (swept_at IS NULL OR swept_at < now() - interval '5 seconds') "
            "ORDER BY expires_at LIMIT %s FOR UPDATE SKIP LOCKED) RETURNING *", (limit,))
        return [_hold(r) for r in rows]

    async def extend_hold(self, hold: Hold, seats: list[str], added_total: int) -> tuple[Hold | None, InventoryChange]:
        """A pending waitlist offer takes more seats that came back. The hold row changes only if every seat
        was still available; (None, the seats taken) otherwise, and the caller must fail the transaction."""
        rows, = await self.run((
            "WITH s AS (UPDATE seats s SET status = 'held', hold_id = %(hold)s, version = s.version + 1 "
            "WHERE s.event_id = %(event)s AND s.seat_id = ANY(%(seats)s) AND s.status = 'available' " + SEAT_CHANGE
            + "), h AS (UPDATE holds SET seats = seats || %(seats)s::text[], quantity = quantity + %(n)s, "
            "total = total + %(total)s WHERE id = %(hold)s AND status = 'active' "
            "AND (SELECT count(*) FROM s) = %(n)s RETURNING *) "
            "SELECT (SELECT row_to_json(h) FROM h) AS hold, (SELECT coalesce(json_agg(s), '[]') FROM s) AS seat_rows",
            {"hold": hold.id, "event": hold.event_id, "seats": seats, "n": len(seats), "total": added_total}))
        r = rows[0]
        if r["hold"] is None:
            return None, _seats(r["seat_rows"])
        h = r["hold"]
        h["expires_at"] = datetime.fromisoformat(h["expires_at"])
        return _hold(h), _seats(r["seat_rows"])

    async def set_hold_expiry(self, hold_id: str, expires_at: datetime) -> None:
        self.queue("UPDATE holds SET expires_at = %s WHERE id = %s", (expires_at, hold_id))

    # --- waitlist -------------------------------------------------------------------------
    async def add_waitlist_entry(self, entry_id: str, event_id: str, buyer_id: str, section: str | None,
                                 quantity: int) -> tuple[WaitlistEntry | None, int]:
        """The next FIFO ticket (under the event row's lock) and the entry; (None, 0) when the buyer already
        has an active entry. Also the position: the rank among the event's waiting entries."""
        rows, = await self.run((
            "WITH t AS (UPDATE events SET waitlist_seq = waitlist_seq + 1 WHERE id = %(event)s "
            "RETURNING waitlist_seq) "
            "INSERT INTO waitlist_entries (id, event_id, buyer_id, section, quantity, seq, status) "
            "SELECT %(id)s, %(event)s, %(buyer)s, %(section)s, %(quantity)s, waitlist_seq, 'waiting' FROM t "
            "ON CONFLICT (event_id, buyer_id) WHERE status IN ('waiting', 'offered') DO NOTHING RETURNING *",
            {"id": entry_id, "event": event_id, "buyer": buyer_id, "section": section, "quantity": quantity}))
        if not rows:
            return None, 0
        entry = _entry(rows[0])
        return entry, await self.waitlist_position(entry)

    async def active_entries(self, event_id: str) -> list[WaitlistEntry]:
        rows = await self._execute("SELECT * FROM waitlist_entries WHERE event_id = %s AND status IN "
                                   "('waiting', 'offered') ORDER BY seq FOR UPDATE", (event_id,))
        return [_entry(r) for r in rows]

    async def sale_terms(self, event_id: str) -> SaleTerms | None:
        r = await self._one(*self.prepared("ev_sale_terms", (event_id,)))
        return SaleTerms(r["status"], r["currency"], r["prices"], r["sale_starts_at"]) if r else None

    async def waitlist_position(self, entry: WaitlistEntry) -> int:
        r = await self._one("SELECT count(*) AS n FROM waitlist_entries WHERE event_id = %s AND status = 'waiting' "
                            "AND seq <= %s", (entry.event_id, entry.seq))
        return r["n"]

    async def get_waitlist_entry(self, entry_id: str) -> WaitlistEntry | None:
        r = await self._one("SELECT * FROM waitlist_entries WHERE id = %s FOR UPDATE", (entry_id,))
        return _entry(r) if r else None

    async def waiting_entries(self, event_id: str, limit: int = 100) -> list[WaitlistEntry]:
        """The head of the queue, locked: concurrent releases on one event offer to one entry at a time."""
        rows = await self._execute(
            "SELECT * FROM waitlist_entries WHERE event_id = %s AND status = 'waiting' ORDER BY seq LIMIT %s "
            "FOR UPDATE", (event_id, limit))
        return [_entry(r) for r in rows]

    async def entry_for_hold(self, hold_id: str) -> WaitlistEntry | None:
        r = await self._one("SELECT * FROM waitlist_entries WHERE offer_hold_id = %s FOR UPDATE", (hold_id,))
        return _entry(r) if r else None

    async def save_waitlist_entry(self, e: WaitlistEntry) -> None:
        self.queue("UPDATE waitlist_entries SET status = %s, offer_hold_id = %s, offer_expires_at = %s, version = %s, "
                   "updated_at = %s WHERE id = %s",
                   (e.status, e.offer_hold_id, e.offer_expires_at, e.version, e.updated_at, e.id))

    async def available_places(self, event_id: str, seat_ids: list[str] | None, section: str | None) -> int:
        """Seats of ``seat_ids`` still available, or the GA section's free places."""
        if seat_ids is not None:
            r = await self._one("SELECT count(*) AS n FROM seats WHERE event_id = %s AND seat_id = ANY(%s) "
                                "AND status = 'available'", (event_id, seat_ids))
        else:
            r = await self._one("SELECT capacity - held - sold AS n FROM ga_sections WHERE event_id = %s "
                                "AND section = %s", (event_id, section))
        return r["n"] if r else 0

    # --- orders ---------------------------------------------------------------------------
    async def add_order(self, order: Order, reconcile_at: datetime | None = None) -> None:
        p = order.payment
        self.queue_prepared(
            "ev_add_order",
            (order.id, order.event_id, order.buyer_id, order.hold_id, list(order.seats) if order.seats else None,
             order.section, order.quantity, order.total, order.currency, order.status, order.created_at,
             order.subtotal, order.discount, order.promo_code_id, order.confirmed_at,
             p.provider if p else None, p.id if p else None, p.status if p else None, p.checkout_url if p else None,
             p.expires_at if p else None, reconcile_at))

    async def checkout_context(self, hold_id: str) -> tuple[Hold | None, str | None]:
        """The hold and the id of the order already made from it, if any (a repeated checkout)."""
        r = await self._one(*self.prepared("ev_checkout_context", (hold_id,)))
        return (_hold(r), str(r["order_id"]) if r["order_id"] else None) if r else (None, None)

    async def convert_hold(self, hold_id: str, buyer_id: str) -> Hold | None:
        """A paid checkout takes the buyer's live hold; its inventory stays held. None: not active, not the
        buyer's, or expired."""
        r = await self._one(*self.prepared("ev_convert_hold", (hold_id, buyer_id)))
        return _hold(r) if r else None

    async def get_order(self, order_id: str, *, lock: bool = False) -> tuple[Order, str] | None:
        """The order (with its refund) and its event's organizer id; ``lock``: the order row FOR UPDATE (every
        change of an order is made under this lock, taken before any inventory row)."""
        read = (ORDER_SQL.format(where="o.id = %s"), (order_id,))
        if lock:  # lock first, then read in a later statement: its fresh snapshot sees what the last holder wrote
            _, rows = await self.run(("SELECT 1 FROM orders WHERE id = %s FOR UPDATE", (order_id,)), read)
        else:
            rows = await self._execute(*read)
        return (_order(rows[0]), str(rows[0]["organizer_id"])) if rows else None

    async def order_for_payment(self, provider: str, payment_id: str, *, lock: bool = False) -> Order | None:
        where = "o.payment_provider = %s AND o.payment_id = %s"
        read = (ORDER_SQL.format(where=where), (provider, payment_id))
        if lock:  # as get_order
            _, rows = await self.run((f"SELECT 1 FROM orders o WHERE {where} FOR UPDATE", (provider, payment_id)), read)
        else:
            rows = await self._execute(*read)
        return _order(rows[0]) if rows else None

    async def save_order(self, o: Order, *, reconcile_at: datetime | None = None, reconcile_now: bool = False) -> None:
        """Write an order's state (its row is locked: ``get_order(lock=True)``)."""
        self.queue(
            "UPDATE orders SET status = %s, version = %s, confirmed_at = %s, cancelled_at = %s, cancel_reason = %s, "
            "payment_status = %s, seats_released_at = CASE WHEN %s THEN coalesce(seats_released_at, now()) END, "
            "reconcile_at = " + ("now()" if reconcile_now else "coalesce(%s, reconcile_at)") + " WHERE id = %s",
            (o.status, o.version, o.confirmed_at, o.cancelled_at, o.cancel_reason,
             o.payment.status if o.payment else None, o.seats_released,
             *(() if reconcile_now else (reconcile_at,)), o.id))

    # --- an order's inventory (the order row is locked first) -------------------------------
    async def _move_ga(self, o: Order, change: str, guard: str) -> InventoryChange:
        """The order's GA places: one conditional counter update (``change`` if ``guard`` holds, else nothing)."""
        return _ga(await self._execute(
            f"UPDATE ga_sections g SET {change}, version = g.version + 1 WHERE g.event_id = %(event)s "
            f"AND g.section = %(section)s AND {guard} " + GA_STATE,
            {"n": o.quantity, "event": o.event_id, "section": o.section}))

    async def sell_held(self, o: Order) -> InventoryChange:
        """The order's seats, held by its hold, become sold; or its GA places move from held to sold."""
        if o.seats:
            rows = await self._execute(
                "UPDATE seats s SET status = 'sold', order_id = %s, version = s.version + 1 WHERE s.event_id = %s "
                "AND s.seat_id = ANY(%s) AND s.hold_id = %s AND s.status = 'held' " + SEAT_CHANGE,
                (o.id, o.event_id, list(o.seats), o.hold_id))
            return _seats(rows)
        return await self._move_ga(o, "held = g.held - %(n)s, sold = g.sold + %(n)s", "g.held >= %(n)s")

    async def release_held(self, o: Order) -> InventoryChange:
        """The order's seats or GA places, still held for its payment, go back on sale."""
        if o.seats:
            return _seats(await self._execute(
                "UPDATE seats s SET status = 'available', hold_id = NULL, version = s.version + 1 "
                "WHERE s.event_id = %s AND s.seat_id = ANY(%s) AND s.hold_id = %s AND s.status = 'held' " + SEAT_CHANGE,
                (o.event_id, list(o.seats), o.hold_id)))
        return await self._move_ga(o, "held = g.held - %(n)s", "g.held >= %(n)s")

    async def release_sold(self, o: Order) -> InventoryChange:
        """A cancelled confirmed order's seats or GA places go back on sale."""
        if o.seats:
            return _seats(await self._execute(
                "UPDATE seats s SET status = 'available', hold_id = NULL, order_id = NULL, version = s.version + 1 "
                "WHERE s.event_id = %s AND s.seat_id = ANY(%s) AND s.order_id = %s AND s.status = 'sold' "
                + SEAT_CHANGE, (o.event_id, list(o.seats), o.id)))
        return await self._move_ga(o, "sold = g.sold - %(n)s", "g.sold >= %(n)s")

    async def retake(self, o: Order) -> InventoryChange:
        """A payment that succeeded after its window: hold the order's seats again for its hold, all of them or
        none (a savepoint undoes a partial take); GA places if they still fit. Empty change: not all free."""
        if not o.seats:
            return await self._move_ga(o, "held = g.held + %(n)s", "g.held + g.sold + %(n)s <= g.capacity")
        self.queue("SAVEPOINT retake")
        change = _seats(await self._execute(
            "UPDATE seats s SET status = 'held', hold_id = %s, version = s.version + 1 WHERE s.event_id = %s "
            "AND s.seat_id = ANY(%s) AND s.status = 'available' " + SEAT_CHANGE, (o.hold_id, o.event_id, list(o.seats))))
        if len(change.seats) == len(o.seats):
            self.queue("RELEASE SAVEPOINT retake")
            return change
        self.queue("ROLLBACK TO SAVEPOINT retake")
        return InventoryChange()

    # --- the sweeper's work lists (several processes sweep: SKIP LOCKED, and a claim pushes the row's time) -----
    async def claim_ended_windows(self, limit: int) -> list[str]:
        """Orders still pending_payment whose payment window ended with their seats still held."""
        rows = await self._execute(
            "SELECT id FROM orders WHERE status = 'pending_payment' AND seats_released_at IS NULL "
            "AND payment_expires_at <= now() ORDER BY payment_expires_at LIMIT %s FOR UPDATE SKIP LOCKED", (limit,))
        return [str(r["id"]) for r in rows]

    async def claim_reconciliations(self, limit: int, retry_in_s: float) -> list[str]:
        """Orders whose payment is still pending at its reconciliation time (window + grace, or at once for an
        order that no longer waits for it); each claim moves the time on by ``retry_in_s``."""
        rows = await self._execute(
            "UPDATE orders SET reconcile_at = now() + make_interval(secs => %s) WHERE id IN (SELECT id FROM orders "
            "WHERE payment_status = 'pending' AND reconcile_at <= now() ORDER BY reconcile_at LIMIT %s "
            "FOR UPDATE SKIP LOCKED) RETURNING id", (retry_in_s, limit))
        return [str(r["id"]) for r in rows]

    # --- refunds ---------------------------------------------------------------------------
    async def add_refund(self, o: Order, *, first_attempt_in_s: float = 0.0) -> None:
        """The order's refund, once (an order has at most one): ``o.refund`` as the order now says."""
        assert o.refund is not None and o.payment is not None
        self.queue("INSERT INTO refunds (order_id, payment_id, amount, reason, next_attempt_at) "
                   "VALUES (%s, %s, %s, %s, now() + make_interval(secs => %s)) ON CONFLICT (order_id) DO NOTHING",
                   (o.id, o.payment.id, o.refund.amount, o.refund.reason, first_attempt_in_s))

    async def claim_refunds(self, limit: int, retry_in_s: float) -> list[str]:
        rows = await self._execute(
            "UPDATE refunds SET next_attempt_at = now() + make_interval(secs => %s), attempts = attempts + 1 "
            "WHERE order_id IN (SELECT order_id FROM refunds WHERE status = 'pending' AND next_attempt_at <= now() "
            "ORDER BY next_attempt_at LIMIT %s FOR UPDATE SKIP LOCKED) RETURNING order_id", (retry_in_s, limit))
        return [str(r["order_id"]) for r in rows]

    async def save_refund(self, order_id: str, status: str, *, provider_refund_id: str | None = None,
                          error: str | None = None) -> None:
        self.queue("UPDATE refunds SET status = %s, provider_refund_id = coalesce(%s, provider_refund_id), "
                   "last_error = %s, updated_at = now() WHERE order_id = %s",
                   (status, provider_refund_id, error, order_id))

    # --- tickets --------------------------------------------------------------------------
    async def active_event_key(self, event_id: str) -> dict[str, Any] | None:
        return await self._one("SELECT key_id, private_key FROM event_keys WHERE event_id = %s AND active",
                               (event_id,))

    async def add_event_key(self, event_id: str, key_id: int, public_key: bytes, sealed: bytes) -> None:
        """A concurrent creator wins: nothing happens (the caller reads the active key again)."""
        await self._execute("INSERT INTO event_keys (event_id, key_id, public_key, private_key) "
                            "VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING", (event_id, key_id, public_key, sealed))

    async def event_public_key(self, event_id: str, key_id: int) -> bytes | None:
        r = await self._one("SELECT public_key FROM event_keys WHERE event_id = %s AND key_id = %s",
                            (event_id, key_id))
        return r["public_key"] if r else None

    async def rotate_event_key(self, event_id: str, public_key: bytes, sealed: bytes) -> int:
        """Key n+1 becomes the event's active key; the old ones keep verifying their tickets."""
        self.queue("UPDATE event_keys SET active = false WHERE event_id = %s AND active", (event_id,))
        r = await self._one(
            "INSERT INTO event_keys (event_id, key_id, public_key, private_key) SELECT %(e)s, "
            "coalesce((SELECT max(key_id) FROM event_keys WHERE event_id = %(e)s), 0) + 1, %(p)s, %(k)s "
            "RETURNING key_id", {"e": event_id, "p": public_key, "k": sealed})
        return r["key_id"]

    async def all_event_keys(self) -> list[dict[str, Any]]:
        return await self._execute("SELECT event_id, key_id, private_key FROM event_keys FOR UPDATE")

    async def reseal_event_key(self, event_id: str, key_id: int, sealed: bytes) -> None:
        self.queue("UPDATE event_keys SET private_key = %s WHERE event_id = %s AND key_id = %s",
                   (sealed, event_id, key_id))

    async def add_tickets(self, tickets: list[Ticket]) -> None:
        self.queue(
            "INSERT INTO tickets (id, order_id, event_id, buyer_id, seat, section, code) SELECT unnest(%s::uuid[]), "
            "%s, %s, %s, unnest(%s::text[]), unnest(%s::text[]), unnest(%s::text[])",
            ([t.id for t in tickets], tickets[0].order_id, tickets[0].event_id, tickets[0].buyer_id,
             [t.seat for t in tickets], [t.section for t in tickets], [t.code for t in tickets]))

    async def void_tickets(self, order_id: str) -> list[Ticket]:
        rows = await self._execute("UPDATE tickets SET status = 'void', version = version + 1 WHERE order_id = %s "
                                   "AND status <> 'void' RETURNING *", (order_id,))
        return [_ticket(r) for r in rows]

    async def void_event_tickets(self, event_id: str) -> list[Ticket]:
        rows = await self._execute("UPDATE tickets SET status = 'void', version = version + 1 WHERE event_id = %s "
                                   "AND status <> 'void' RETURNING *", (event_id,))
        return [_ticket(r) for r in rows]

    async def tickets_of(self, order_id: str) -> list[Ticket]:
        rows = await self._execute("SELECT * FROM tickets WHERE order_id = %s ORDER BY seat, id", (order_id,))
        return [_ticket(r) for r in rows]

    async def check_in(self, ticket_id: str, event_id: str, by: str, at: datetime) -> Ticket | None:
        """Admit a valid ticket of the event (None: it was not valid, or not this event's)."""
        r = await self._one(*self.prepared("ev_check_in", (ticket_id, event_id, by, at)))
        return _ticket(r) if r else None

    async def get_ticket(self, ticket_id: str) -> Ticket | None:
        r = await self._one("SELECT * FROM tickets WHERE id = %s", (ticket_id,))
        return _ticket(r) if r else None

    async def add_scanner(self, scanner: Scanner) -> None:
        self.queue("INSERT INTO scanners (id, event_id, organizer_id, name, expires_at) VALUES (%s, %s, %s, %s, %s)",
                   (scanner.id, scanner.event_id, scanner.organizer_id, scanner.name, scanner.expires_at))

    async def event_organizer(self, event_id: str) -> str | None:
        r = await self._one("SELECT organizer_id FROM events WHERE id = %s", (event_id,))
        return str(r["organizer_id"]) if r else None

    # --- event cancellation ---------------------------------------------------------------
    async def cancel_event_inventory(self, event: Event) -> tuple[list[Hold], list[Order], InventoryChange]:
        """Release every active hold, cancel every confirmed order and reset all inventory of the event.

        Call after the event row is marked cancelled, in the same transaction.
        """
        e = {"event": event.id, "seats": event.venue.layout.seat_ids()}
        release = "UPDATE holds SET status = 'released' WHERE {} RETURNING *"
        in_event = "seat_id = ANY(%(seats)s) AND event_id = %(event)s"
        holds, _, _, late, orders, seats, ga = await self.run(
            (release.format("event_id = %(event)s AND status = 'active'"), e),
            # Barrier: wait for every in-flight hold/checkout on this event's inventory to finish...
            (f"SELECT 1 FROM seats WHERE {in_event} FOR UPDATE", e),
            ("SELECT 1 FROM ga_sections WHERE event_id = %(event)s FOR UPDATE", e),
            # ... then catch holds that committed meanwhile (one being checked out right now is skipped:
            # its checkout fails on the reset inventory and the sweeper expires it), and every order,
            # including those checked out meanwhile.
            (release.format("id IN (SELECT id FROM holds WHERE event_id = %(event)s AND status = 'active' "
                            "FOR UPDATE SKIP LOCKED)"), e),
            # a pending payment is cancelled at the provider by the sweeper's reconciliation (at once)
            ("UPDATE orders SET status = 'cancelled', cancelled_at = now(), cancel_reason = 'event_cancelled', "
             "version = version + 1, seats_released_at = coalesce(seats_released_at, now()), "
             "reconcile_at = CASE WHEN payment_status = 'pending' THEN now() END "
             "WHERE event_id = %(event)s AND status IN ('confirmed', 'pending_payment') RETURNING *", e),
            ("UPDATE seats s SET status = 'available', hold_id = NULL, order_id = NULL, version = s.version + 1 "
             f"WHERE {in_event} AND s.status <> 'available' " + SEAT_CHANGE, e),
            ("UPDATE ga_sections g SET held = 0, sold = 0, version = g.version + 1 "
             "WHERE g.event_id = %(event)s AND (g.held > 0 OR g.sold > 0) " + GA_STATE, e))
        released = [_hold(r) for r in holds + late]
        cancelled = [_order(r) for r in orders]
        change = InventoryChange(_seats(seats).seats, _ga(ga).ga_sections)
        return released, cancelled, change
