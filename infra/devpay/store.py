"""devpay's own database: one SQLite file in WAL mode. ``EVENTLY_DEVPAY_SYNCHRONOUS`` is ``NORMAL`` by default: a
payment that was answered survives a crash or ``kill -9`` of devpay, though not a power cut of the machine
(``FULL`` does; it cost 15-25% of the throughput in loadtests/RESULTS.md "devpay"). Payments, refunds, the webhook
events still to deliver, and the idempotency keys of the create calls.

Every method is one short transaction on the calling thread: devpay is a development stand-in serving one
stack, and each statement takes microseconds, so it runs them on the event loop rather than on a thread pool.
"""
from __future__ import annotations

import contextlib
import json
import secrets
import sqlite3
import time
from pathlib import Path
from typing import Any, Iterator

from contracts import payments as P

SCHEMA = """
CREATE TABLE IF NOT EXISTS payments (
    id          TEXT PRIMARY KEY,
    amount      INTEGER NOT NULL CHECK (amount > 0),
    currency    TEXT NOT NULL,
    reference   TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    return_url  TEXT,
    status      TEXT NOT NULL,
    refunded    INTEGER NOT NULL DEFAULT 0,
    created     REAL NOT NULL,
    updated     REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS payments_reference ON payments (reference);
CREATE TABLE IF NOT EXISTS refunds (
    id          TEXT PRIMARY KEY,
    payment_id  TEXT NOT NULL REFERENCES payments (id),
    amount      INTEGER NOT NULL CHECK (amount > 0),
    reason      TEXT NOT NULL DEFAULT '',
    status      TEXT NOT NULL,
    created     REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS refunds_payment ON refunds (payment_id);
CREATE TABLE IF NOT EXISTS events (
    id          TEXT PRIMARY KEY,
    seq         INTEGER NOT NULL,
    type        TEXT NOT NULL,
    body        TEXT NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    next_at     REAL NOT NULL,
    last_error  TEXT,
    delivered   REAL
);
CREATE INDEX IF NOT EXISTS events_due ON events (delivered, next_at);
CREATE UNIQUE INDEX IF NOT EXISTS events_seq ON events (seq);  -- max(seq) per new event: not a scan
CREATE TABLE IF NOT EXISTS idempotency (
    key         TEXT NOT NULL,
    endpoint    TEXT NOT NULL,
    request     TEXT NOT NULL,
    object_id   TEXT NOT NULL,
    PRIMARY KEY (key, endpoint)
);
CREATE TABLE IF NOT EXISTS flags (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class Conflict(Exception):
    """The call does not fit the object's state (HTTP 409)."""


class Invalid(Exception):
    """The call's data is wrong (HTTP 400)."""


class NotFound(Exception):
    pass


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


def _payment(row: sqlite3.Row, checkout_base: str) -> dict[str, Any]:
    return {"id": row["id"], "object": "payment", "amount": row["amount"], "currency": row["currency"],
            "reference": row["reference"], "description": row["description"], "status": row["status"],
            "amount_refunded": row["refunded"], "return_url": row["return_url"],
            "checkout_url": f"{checkout_base}/checkout/{row['id']}", "created": row["created"]}


def _refund(row: sqlite3.Row) -> dict[str, Any]:
    return {"id": row["id"], "object": "refund", "payment_id": row["payment_id"], "amount": row["amount"],
            "reason": row["reason"], "status": row["status"], "created": row["created"]}


class Store:
    def __init__(self, path: Path | str, checkout_base: str, synchronous: str = "FULL") -> None:
        self.path, self.checkout_base = Path(path), checkout_base.rstrip("/")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute(f"PRAGMA synchronous={'FULL' if synchronous == 'FULL' else 'NORMAL'}")
        self.db.executescript(SCHEMA)

    def close(self) -> None:
        self.db.close()

    # ------------------------------------------------------------------ transactions
    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def _event(self, db: sqlite3.Connection, type_: str, obj: dict[str, Any]) -> None:
        """A webhook event in the same transaction as the change it tells (devpay's own outbox)."""
        now = time.time()
        seq = db.execute("SELECT coalesce(max(seq), 0) + 1 FROM events").fetchone()[0]
        event = {"id": new_id("evt"), "type": type_, "created": now, "data": {"object": obj}}
        db.execute("INSERT INTO events (id, seq, type, body, next_at) VALUES (?, ?, ?, ?, ?)",
                   (event["id"], seq, type_, json.dumps(event, separators=(",", ":")), now))

    def _idempotent(self, db: sqlite3.Connection, key: str | None, endpoint: str, request: dict[str, Any]) -> str | None:
        """The object id an earlier call with this key made, or None. The same key with other data is refused."""
        if not key:
            return None
        row = db.execute("SELECT request, object_id FROM idempotency WHERE key = ? AND endpoint = ?",
                         (key, endpoint)).fetchone()
        if row is None:
            return None
        if json.loads(row["request"]) != request:
            raise Conflict("this Idempotency-Key was used with different parameters")
        return row["object_id"]

    def _remember(self, db: sqlite3.Connection, key: str | None, endpoint: str, request: dict[str, Any],
                  object_id: str) -> None:
        if key:
            db.execute("INSERT INTO idempotency (key, endpoint, request, object_id) VALUES (?, ?, ?, ?)",
                       (key, endpoint, json.dumps(request, sort_keys=True), object_id))

    # ------------------------------------------------------------------ payments
    def create_payment(self, request: dict[str, Any], key: str | None) -> tuple[dict[str, Any], bool]:
        """(payment, created): a repeat with the same Idempotency-Key returns the first one."""
        with self._tx() as db:
            earlier = self._idempotent(db, key, "payments", request)
            if earlier is not None:
                return self._get_payment(db, earlier), False
            now = time.time()
            pid = new_id("pay")
            db.execute("INSERT INTO payments (id, amount, currency, reference, description, return_url, status, "
                       "created, updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (pid, request["amount"], request["currency"], request["reference"],
                        request.get("description") or "", request.get("return_url"), P.PENDING, now, now))
            self._remember(db, key, "payments", request, pid)
            return self._get_payment(db, pid), True

    def _get_payment(self, db: sqlite3.Connection, pid: str) -> dict[str, Any]:
        row = db.execute("SELECT * FROM payments WHERE id = ?", (pid,)).fetchone()
        if row is None:
            raise NotFound(f"no payment {pid}")
        return _payment(row, self.checkout_base)

    def payment(self, pid: str) -> dict[str, Any]:
        return self._get_payment(self.db, pid)

    def payments_for(self, reference: str) -> list[dict[str, Any]]:
        rows = self.db.execute("SELECT * FROM payments WHERE reference = ? ORDER BY created", (reference,)).fetchall()
        return [_payment(r, self.checkout_base) for r in rows]

    def settle(self, pid: str, status: str) -> dict[str, Any]:
        """pending -> succeeded | failed | canceled, once; the same outcome again is a no-op (no second webhook),
        a different one is a Conflict."""
        event_type = {P.SUCCEEDED: P.PAYMENT_SUCCEEDED, P.FAILED: P.PAYMENT_FAILED,
                      P.CANCELED: P.PAYMENT_CANCELED}[status]
        with self._tx() as db:
            payment = self._get_payment(db, pid)
            if payment["status"] == status:
                return payment
            if payment["status"] != P.PENDING:
                raise Conflict(f"payment is {payment['status']}")
            db.execute("UPDATE payments SET status = ?, updated = ? WHERE id = ?", (status, time.time(), pid))
            payment = self._get_payment(db, pid)
            self._event(db, event_type, payment)
            return payment

    # ------------------------------------------------------------------ refunds
    def create_refund(self, request: dict[str, Any], key: str | None) -> tuple[dict[str, Any], bool]:
        with self._tx() as db:
            earlier = self._idempotent(db, key, "refunds", request)
            if earlier is not None:
                return self._get_refund(db, earlier), False
            payment = self._get_payment(db, request["payment_id"])
            if payment["status"] != P.SUCCEEDED:
                raise Conflict(f"payment is {payment['status']}: only a succeeded payment can be refunded")
            left = payment["amount"] - payment["amount_refunded"]
            amount = request.get("amount") or left
            if amount > left:
                raise Invalid(f"amount {amount} is more than the {left} left to refund")
            if amount <= 0:
                raise Invalid("nothing left to refund")
            rid = new_id("re")
            db.execute("INSERT INTO refunds (id, payment_id, amount, reason, status, created) VALUES (?, ?, ?, ?, ?, ?)",
                       (rid, payment["id"], amount, request.get("reason") or "", P.SUCCEEDED, time.time()))
            db.execute("UPDATE payments SET refunded = refunded + ?, updated = ? WHERE id = ?",
                       (amount, time.time(), payment["id"]))
            self._remember(db, key, "refunds", request, rid)
            refund = self._get_refund(db, rid)
            self._event(db, P.REFUND_SUCCEEDED, refund)
            return refund, True

    def _get_refund(self, db: sqlite3.Connection, rid: str) -> dict[str, Any]:
        row = db.execute("SELECT * FROM refunds WHERE id = ?", (rid,)).fetchone()
        if row is None:
            raise NotFound(f"no refund {rid}")
        return _refund(row)

    def refund(self, rid: str) -> dict[str, Any]:
        return self._get_refund(self.db, rid)

    def refunds_for(self, payment_id: str) -> list[dict[str, Any]]:
        rows = self.db.execute("SELECT * FROM refunds WHERE payment_id = ? ORDER BY created", (payment_id,)).fetchall()
        return [_refund(r) for r in rows]

    # ------------------------------------------------------------------ webhook delivery
    def due_events(self, limit: int = 50) -> list[tuple[str, int, str]]:
        """(id, attempts, body) of undelivered events whose next attempt is due, oldest first."""
        rows = self.db.execute("SELECT id, attempts, body FROM events WHERE delivered IS NULL AND next_at <= ? "
                               "ORDER BY seq LIMIT ?", (time.time(), limit)).fetchall()
        return [(r["id"], r["attempts"], r["body"]) for r in rows]

    def delivered(self, event_id: str) -> None:
        self.db.execute("UPDATE events SET delivered = ?, attempts = attempts + 1 WHERE id = ?", (time.time(), event_id))

    def failed(self, event_id: str, attempts: int, error: str, retry_in: float) -> None:
        self.db.execute("UPDATE events SET attempts = ?, last_error = ?, next_at = ? WHERE id = ?",
                        (attempts, error[:500], time.time() + retry_in, event_id))

    def webhook_state(self) -> dict[str, Any]:
        row = self.db.execute("SELECT count(*) AS n, min(next_at) AS next_at FROM events WHERE delivered IS NULL").fetchone()
        return {"paused": self.paused(), "undelivered": row["n"], "next_attempt_at": row["next_at"],
                "delivered": self.db.execute("SELECT count(*) FROM events WHERE delivered IS NOT NULL").fetchone()[0]}

    def events(self, limit: int = 100) -> list[dict[str, Any]]:
        rows = self.db.execute("SELECT body, attempts, delivered, last_error FROM events ORDER BY seq DESC LIMIT ?",
                               (limit,)).fetchall()
        return [{**json.loads(r["body"]), "attempts": r["attempts"], "delivered": r["delivered"],
                 "last_error": r["last_error"]} for r in rows]

    def paused(self) -> bool:
        row = self.db.execute("SELECT value FROM flags WHERE name = 'webhooks_paused'").fetchone()
        return row is not None and row["value"] == "1"

    def set_paused(self, paused: bool) -> None:
        """Kept in the database: a restart does not resume what a fault test paused."""
        self.db.execute("INSERT INTO flags (name, value) VALUES ('webhooks_paused', ?) "
                        "ON CONFLICT (name) DO UPDATE SET value = excluded.value", ("1" if paused else "0",))
