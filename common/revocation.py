"""Revoked access tokens, checked by both services (CONTRACT "Auth": a disabled user's tokens and a logged-out
token stop working within 5 s).

Decision: access tokens stay stateless JWTs (no store lookup per request), and what is revoked before its
expiry goes into one small Redis sorted set (contracts.keys.REVOKED_TOKENS):
- ``jti:<id>``: one token (logout, a refresh-token family revoked after reuse);
- ``sub:<user>:<t>``: every token of that user issued before ``t`` (disabled, role changed).
Each entry's score is when it may be forgotten: the latest expiry of a token it can match, so the set holds
at most one access-token lifetime of revocations. Every process keeps a copy in memory, re-read every
``POLL_SECONDS`` (one ZRANGE, whatever the request rate), so a check costs a dict lookup and a revocation
takes effect everywhere within ``POLL_SECONDS`` plus one Redis round trip. If Redis is unreachable a process
keeps its last copy (logged) rather than refusing every token; PostgreSQL still refuses a disabled user's
login and refresh, so such a user cannot get a new token either way.
"""
from __future__ import annotations

import asyncio
import time

import structlog

from common.auth import InvalidToken, Principal
from contracts import keys

log = structlog.get_logger("auth.revocation")
POLL_SECONDS = 1.0


async def revoke_tokens(redis, expiries: dict[str, float]) -> None:
    """Revoke these token ids (jti -> its expiry, unix s) in one call."""
    if expiries:
        await redis.zadd(keys.REVOKED_TOKENS, {f"jti:{jti}": exp for jti, exp in expiries.items()})


async def revoke_user(redis, user_id: str, ttl_seconds: int) -> None:
    """Every token of ``user_id`` issued until now stops working."""
    now = time.time()
    await redis.zadd(keys.REVOKED_TOKENS, {f"sub:{user_id}:{now:.3f}": now + ttl_seconds + 1})


class Revocations:
    """The in-memory copy of the revocation set: ``revoked(principal)`` is what a request checks."""

    def __init__(self) -> None:
        self.tokens: set[str] = set()
        self.users: dict[str, float] = {}  # user id -> tokens issued before this are revoked
        self.loaded = False

    def revoked(self, p: Principal) -> bool:
        return p.jti in self.tokens or p.issued_at < self.users.get(p.user_id, 0.0)

    def check(self, p: Principal) -> Principal:
        """``p``, or InvalidToken when it was revoked: both services' token check raises it like any other
        invalid token, so a revoked one gets the same 401."""
        if self.revoked(p):
            raise InvalidToken("this token was revoked (logged out or account changed)")
        return p

    def load(self, members: list[bytes | str]) -> None:
        tokens: set[str] = set()
        users: dict[str, float] = {}
        for m in members:
            m = m.decode() if isinstance(m, bytes) else m
            kind, _, rest = m.partition(":")
            if kind == "jti":
                tokens.add(rest)
            elif kind == "sub":
                user, _, at = rest.rpartition(":")
                users[user] = max(users.get(user, 0.0), float(at))
        self.tokens, self.users, self.loaded = tokens, users, True

    async def refresh(self, redis) -> None:
        async with redis.pipeline(transaction=False) as pipe:
            pipe.zremrangebyscore(keys.REVOKED_TOKENS, "-inf", time.time())
            pipe.zrange(keys.REVOKED_TOKENS, 0, -1)
            _, members = await pipe.execute()
        self.load(members)

    async def follow(self, redis, interval: float = POLL_SECONDS) -> None:
        """Run for the process's lifetime (a background task)."""
        failing = False
        while True:
            try:
                await self.refresh(redis)
                if failing:
                    log.info("revocation list reachable again")
                failing = False
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - keep the last copy; say so once per outage
                if not failing:
                    log.warning("revocation list unreachable; keeping the last copy", error=repr(exc)[:300])
                failing = True
            await asyncio.sleep(interval)
