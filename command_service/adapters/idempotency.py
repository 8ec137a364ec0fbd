"""Idempotency keys (CONTRACT "Idempotency"), kept in PostgreSQL per user + key.

``claim`` either hands the request to the caller (first time, or the old record expired after
24 h, or its first run was abandoned: its process died, or 60 s passed) or answers for it: the stored response, 409
IDEMPOTENCY_IN_PROGRESS, or 409 IDEMPOTENCY_KEY_REUSED when the body differs.
"""
from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from command_service.domain import errors

from command_service.adapters.lease import OWNER_GONE, ProcessLease

RETENTION = "24 hours"
# A first run that never finished no longer blocks the key: at once when its process's lease is gone (the process
# died: adapters/lease.py), else after this long (a claim made while the lease was down has no owner).
ABANDONED_AFTER = "60 seconds"


@dataclass(frozen=True)
class StoredResponse:
    status: int
    body: Any


class IdempotencyStore:
    def __init__(self, pool: AsyncConnectionPool, secret: str, lease: ProcessLease | None = None) -> None:
        self.pool, self.lease = pool, lease
        # A key of its own, derived from the service secret: the fingerprints say nothing about the bodies
        # (which can hold personal data) to whoever reads the table, and cannot be precomputed.
        self._key = hmac.new(secret.encode(), b"evently idempotency fingerprint", hashlib.sha256).digest()

    def fingerprint(self, method: str, path: str, body: bytes) -> str:
        """What "the same request" means: same method, path (with query) and body bytes (HMAC-SHA256)."""
        return hmac.new(self._key, f"{method} {path}\n".encode() + body, hashlib.sha256).hexdigest()

    async def claim(self, user_id: str, key: str, request_hash: str) -> StoredResponse | None:
        """None: the caller runs the request and then calls ``complete`` or ``forget``."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "INSERT INTO idempotency_keys AS k (user_id, key, request_hash, owner) VALUES (%s, %s, %s, %s) "
                "ON CONFLICT (user_id, key) DO UPDATE SET request_hash = EXCLUDED.request_hash, "
                "response_status = NULL, response_body = NULL, created_at = now(), owner = EXCLUDED.owner "
                f"WHERE k.created_at < now() - interval '{RETENTION}' "
                f"OR (k.response_status IS NULL AND (k.created_at < now() - interval '{ABANDONED_AFTER}' "
                f"OR {OWNER_GONE})) "
                "RETURNING 1", (user_id, key, request_hash, self.lease.key if self.lease else None))
            if await cur.fetchone():
                return None
            cur = await conn.execute("SELECT request_hash, response_status, response_body FROM idempotency_keys "
                                     "WHERE user_id = %s AND key = %s", (user_id, key))
            row = await cur.fetchone()
        if row is None:  # expired and deleted between the two statements: rare, let the client retry
            raise errors.IdempotencyInProgress("the idempotency key is being reset; retry")
        stored_hash, status, body = row
        if stored_hash != request_hash:
            raise errors.IdempotencyKeyReused("this Idempotency-Key was used with a different request")
        if status is None:
            raise errors.IdempotencyInProgress("a request with this Idempotency-Key is still running")
        return StoredResponse(status, body)

    async def complete(self, user_id: str, key: str, status: int, body: Any) -> None:
        """Remember the answer. One that cannot be stored (PostgreSQL's jsonb refuses a NUL character, which an
        error's details may echo from a field name) frees the key instead: the caller still gets its answer,
        and a retry runs again rather than failing."""
        async with self.pool.connection() as conn:
            try:
                await conn.execute("UPDATE idempotency_keys SET response_status = %s, response_body = %s "
                                   "WHERE user_id = %s AND key = %s", (status, Jsonb(body), user_id, key))
            except psycopg.DataError:
                await conn.rollback()
                await conn.execute("DELETE FROM idempotency_keys WHERE user_id = %s AND key = %s", (user_id, key))

    async def forget(self, user_id: str, key: str) -> None:
        """The first run failed with a server-side error: let a retry run again."""
        async with self.pool.connection() as conn:
            await conn.execute("DELETE FROM idempotency_keys WHERE user_id = %s AND key = %s", (user_id, key))

    async def purge_expired(self) -> int:
        async with self.pool.connection() as conn:
            cur = await conn.execute(f"DELETE FROM idempotency_keys WHERE created_at < now() - interval '{RETENTION}'")
            return cur.rowcount
