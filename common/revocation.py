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

The Redis set is a copy. The record is the PostgreSQL table ``revoked_tokens``, written in the transaction that
revokes (the fault suite's FLUSHALL showed why: the set was the only copy, and logged-out tokens worked again).
The command service rebuilds the set from it (``follow(..., source=...)``): at once when the set lacks its
``complete`` member (it was lost), and every ``SYNC_SECONDS`` anyway (a revocation whose Redis write failed).
A process that finds the set incomplete keeps what it already knew and adds what the set has, until the rebuild.
"""
from __future__ import annotations

import asyncio
import time
from typing import Awaitable, Callable

import structlog

from common.auth import InvalidToken, Principal
from contracts import keys

log = structlog.get_logger("auth.revocation")
POLL_SECONDS = 1.0
SYNC_SECONDS = 5.0

Members = dict[str, float]  # member -> when it may be forgotten (unix s)


def token_members(expiries: dict[str, float]) -> Members:
    """These token ids (jti -> its expiry, unix s)."""
    return {f"jti:{jti}": exp for jti, exp in expiries.items()}


def user_member(user_id: str, ttl_seconds: int) -> Members:
    """Every token of ``user_id`` issued until now."""
    now = time.time()
    return {f"sub:{user_id}:{now:.3f}": now + ttl_seconds + 1}


async def publish(redis, members: Members) -> None:
    """Put revocations already recorded in PostgreSQL into the Redis set, so they apply within ``POLL_SECONDS``.
    A failure is logged, not raised: the revocation is committed, and the next sync brings it."""
    if not members:
        return
    try:
        await redis.zadd(keys.REVOKED_TOKENS, members)
    except Exception as exc:  # noqa: BLE001 - Redis down: the sync from PostgreSQL writes it within SYNC_SECONDS
        log.warning("revocation not published; the next sync from PostgreSQL will", error=repr(exc)[:300])


async def rebuild(redis, members: Members) -> None:
    """The whole set from PostgreSQL's rows, marked complete (several processes may do it at once: ZADD is)."""
    async with redis.pipeline(transaction=True) as pipe:
        if members:
            pipe.zadd(keys.REVOKED_TOKENS, members)
        pipe.zadd(keys.REVOKED_TOKENS, {keys.REVOKED_TOKENS_COMPLETE: float("inf")})
        await pipe.execute()


class Revocations:
    """The in-memory copy of the revocation set: ``revoked(principal)`` is what a request checks."""

    def __init__(self) -> None:
        self.tokens: set[str] = set()
        self.users: dict[str, float] = {}  # user id -> tokens issued before this are revoked
        self.loaded = False
        self.complete = False  # the last read of the set found its ``complete`` member

    def revoked(self, p: Principal) -> bool:
        return p.jti in self.tokens or p.issued_at < self.users.get(p.user_id, 0.0)

    def check(self, p: Principal) -> Principal:
        """``p``, or InvalidToken when it was revoked: both services' token check raises it like any other
        invalid token, so a revoked one gets the same 401."""
        if self.revoked(p):
            raise InvalidToken("this token was revoked (logged out or account changed)")
        return p

    def load(self, members: list[bytes | str]) -> None:
        """The set as read. Without its ``complete`` member it was lost and is being rebuilt: keep what this
        process knew, plus what the set has (entries are only forgotten from a complete set)."""
        members = [m.decode() if isinstance(m, bytes) else m for m in members]
        self.complete = keys.REVOKED_TOKENS_COMPLETE in members
        tokens: set[str] = set() if self.complete else set(self.tokens)
        users: dict[str, float] = {} if self.complete else dict(self.users)
        for m in members:
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

    async def sync(self, redis, source: Callable[[], Awaitable[Members]]) -> None:
        """Rebuild the Redis set from the record (``source``: PostgreSQL's live rows), then re-read it."""
        members = await source()
        await rebuild(redis, members)
        if not self.complete:
            log.info("revocation list rebuilt from PostgreSQL", entries=len(members))
        await self.refresh(redis)

    async def follow(self, redis, interval: float = POLL_SECONDS,
                     source: Callable[[], Awaitable[Members]] | None = None, sync_every: float = SYNC_SECONDS) -> None:
        """Run for the process's lifetime (a background task). With ``source`` (the command service), also keep
        the Redis set complete: rebuild it when it was lost, and every ``sync_every`` seconds."""
        failing = False
        synced = 0.0
        while True:
            try:
                await self.refresh(redis)
                if source is not None and (not self.complete or time.monotonic() - synced >= sync_every):
                    await self.sync(redis, source)
                    synced = time.monotonic()
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
