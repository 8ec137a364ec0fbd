"""Rate limits (CONTRACT "Rate limits"), counted in Redis with the ``limits`` library so every worker process of
every instance shares one count.

- The password endpoints (register, token) are limited per client address and per account (the email);
- every other state-changing request is limited per account (the token's user);
- the limits are settings (``EVENTLY_RATE_*``, "<n>/<period>" in ``limits`` notation); the defaults never
  throttle one person using the API by hand. The local stack raises them (infra/config.py), because its test and
  load suites run thousands of accounts from one address.

Strategy: sliding-window counter (two counters per key, one Lua call per hit): smoother than a fixed window and
cheaper than a moving window's per-hit log. If Redis is unreachable the request is let through and the outage is
logged: rate limiting protects capacity, PostgreSQL still decides every sale, so failing closed would turn a
Redis outage into a full one.
"""
from __future__ import annotations

import math
import time

import structlog
from limits import RateLimitItem, parse
from limits.aio.storage import RedisStorage
from limits.aio.strategies import SlidingWindowCounterRateLimiter

__all__ = ["RateLimited", "RateLimiter", "RateLimitItem"]
log = structlog.get_logger("ratelimit")


class RateLimited(Exception):
    def __init__(self, retry_after: int, scope: str) -> None:
        super().__init__(f"too many requests ({scope}); retry in {retry_after} s")
        self.retry_after, self.scope = retry_after, scope


class RateLimiter:
    def __init__(self, redis_url: str, *, prefix: str = "evently:rl", connection_pool=None) -> None:
        """``connection_pool``: the service's own redis-py pool, so the limiter opens no connections of its own."""
        options = {"connection_pool": connection_pool} if connection_pool is not None else \
            {"socket_timeout": 2, "socket_connect_timeout": 2}
        self.storage = RedisStorage("async+" + redis_url, implementation="redispy", key_prefix=prefix,
                                    wrap_exceptions=True, **options)
        self.limiter = SlidingWindowCounterRateLimiter(self.storage)
        self._failing = False

    @staticmethod
    def parse(text: str) -> RateLimitItem:
        return parse(text)

    async def hit(self, limit: RateLimitItem, scope: str, *identifiers: str) -> None:
        """Count one request against ``limit`` for ``scope`` + identifiers; RateLimited when over it."""
        try:
            allowed = await self.limiter.hit(limit, scope, *identifiers)
            if not allowed:
                stats = await self.limiter.get_window_stats(limit, scope, *identifiers)
        except Exception as exc:  # noqa: BLE001 - fail open, see the module docstring
            if not self._failing:
                log.warning("rate limiter unavailable; not limiting", error=repr(exc)[:300])
            self._failing = True
            return
        self._failing = False
        if not allowed:
            raise RateLimited(max(1, math.ceil(stats.reset_time - time.time())), scope)
