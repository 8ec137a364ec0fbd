"""Password hashing (command_service/adapters/passwords.py): bounded concurrency and the parameters in use."""
from __future__ import annotations

import asyncio

from command_service.adapters import passwords


def test_password_hashing_is_bounded_per_process():
    """Twenty concurrent verifications never run more than CONCURRENCY hashes at once."""
    running, peak = 0, 0
    real = passwords.verify_sync

    def counting(*a):
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        try:
            return real(*a)
        finally:
            running -= 1

    async def go():
        passwords._slots = None
        passwords.verify_sync = counting
        try:
            await asyncio.gather(*(passwords.verify_password(None, "x") for _ in range(20)))
        finally:
            passwords.verify_sync = real
    asyncio.run(go())
    assert 1 <= peak <= passwords.CONCURRENCY


def test_hashes_use_argon2id_at_the_owasp_minimum_and_verify():
    h = asyncio.run(passwords.hash_password("correct horse battery"))
    assert h.startswith("$argon2id$") and "m=19456,t=2,p=1" in h
    assert asyncio.run(passwords.verify_password(h, "correct horse battery"))
    assert not asyncio.run(passwords.verify_password(h, "wrong"))
    assert not asyncio.run(passwords.verify_password(None, "correct horse battery"))  # unknown email
