"""Password hashing: argon2id at OWASP's minimum (m = 19 MiB, t = 2, p = 1), off the event loop, with at most
``CONCURRENCY`` hashes running per process.

Why these parameters: OWASP's Password Storage Cheat Sheet lists argon2id m=19456 KiB, t=2, p=1 as the minimum
configuration. argon2-cffi's defaults (RFC 9106 "low memory": 64 MiB, t=3, p=4) cost ~3.5x the CPU per login,
and a flash sale starts with thousands of logins in the same minute; loadtests/bench_passwords.py measures both.
Hashes made with other parameters still verify (the parameters are in the hash).

Why a bound: each running hash holds 19 MiB and a core. Without one, twenty parallel wrong logins ran twenty
hashes at once (1.3 GB, every request slow); with it, extra requests wait their turn (and the rate limiter in
common/ratelimit.py refuses floods before they get here).
"""
from __future__ import annotations

import asyncio
import os

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError

PARAMETERS = {"time_cost": 2, "memory_cost": 19 * 1024, "parallelism": 1, "type": Type.ID}
_hasher = PasswordHasher(**PARAMETERS)
CONCURRENCY = max(1, os.cpu_count() or 1)
_slots: asyncio.Semaphore | None = None
# Verified when the email is unknown, so a login costs the same whether or not the user exists.
_DUMMY_HASH = _hasher.hash("not-a-real-password")


def _semaphore() -> asyncio.Semaphore:
    global _slots
    if _slots is None:
        _slots = asyncio.Semaphore(CONCURRENCY)
    return _slots


def hash_sync(password: str) -> str:
    return _hasher.hash(password)


def verify_sync(password_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


async def hash_password(password: str) -> str:
    async with _semaphore():
        return await asyncio.to_thread(hash_sync, password)


async def verify_password(password_hash: str | None, password: str) -> bool:
    async with _semaphore():
        return await asyncio.to_thread(verify_sync, password_hash, password)
