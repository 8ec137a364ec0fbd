"""Redis seat locks: the fast, contention-absorbing gate in front of PostgreSQL.

Per event (one Redis Cluster hash slot thanks to the ``{event_id}`` tag; names in contracts/keys.py):

* ``evently:{E}:lock:<seat>`` = hold id, ``PX`` = hold TTL. The hold id is the fencing token:
  only the owning hold can drop its locks.
* ``evently:{E}:seats`` hash: seat -> ``<version>:S`` (sold) or ``<version>:A`` (available again),
  written after PostgreSQL commits. A newer version always wins, so out-of-order writers
  (a checkout and a fast cancel of the same order) cannot leave a stale "sold" behind.

One Lua call takes every lock of a hold or none, and refuses sold or locked seats; hammering a
sold-out event therefore costs one Redis round trip per attempt and no PostgreSQL work.
Redis only filters: PostgreSQL's conditional updates decide (see README.md), so a flushed
Redis or an expired lock can cost a wasted attempt, never a double sale.
"""
from __future__ import annotations

from typing import Iterable

from redis.asyncio import Redis

from command_service.domain.model import SeatChange
from contracts import keys

# KEYS[1] = seat-state hash, KEYS[2..] = one lock per seat
# ARGV[1] = hold id, ARGV[2] = TTL in ms, ARGV[3..] = seat ids (same order as the lock keys)
ACQUIRE = """
local states = redis.call('HMGET', KEYS[1], unpack(ARGV, 3))
local taken = {}
for i = 2, #KEYS do
  local state = states[i - 1]
  if state and string.sub(state, -1) == 'S' then
    taken[#taken + 1] = ARGV[i + 1]
  else
    local owner = redis.call('GET', KEYS[i])
    if owner and owner ~= ARGV[1] then taken[#taken + 1] = ARGV[i + 1] end
  end
end
if #taken == 0 then
  for i = 2, #KEYS do redis.call('SET', KEYS[i], ARGV[1], 'PX', ARGV[2]) end
end
return taken
"""

# KEYS[1] = seat-state hash, KEYS[2..] = locks to drop when they belong to ARGV[1]
# ARGV[1] = hold id ('' for none), then triples: seat id, version, 'S' | 'A'
SETTLE = """
for i = 2, #ARGV, 3 do
  local current = redis.call('HGET', KEYS[1], ARGV[i])
  if not current or tonumber(string.match(current, '^%d+')) < tonumber(ARGV[i + 1]) then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1] .. ':' .. ARGV[i + 2])
  end
end
for i = 2, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[1] then redis.call('DEL', KEYS[i]) end
end
return 1
"""


_state_key = keys.seat_states
_lock_key = keys.seat_lock


class SeatLocks:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._acquire = redis.register_script(ACQUIRE)
        self._settle = redis.register_script(SETTLE)

    async def acquire(self, event_id: str, seats: Iterable[str], hold_id: str, ttl_ms: int) -> list[str]:
        """Lock every seat for ``hold_id`` or none; returns the seats that are sold or locked by another hold."""
        seats = list(seats)
        keys = [_state_key(event_id), *(_lock_key(event_id, s) for s in seats)]
        taken = await self._acquire(keys=keys, args=[hold_id, ttl_ms, *seats])
        return [t.decode() if isinstance(t, bytes) else t for t in taken]

    async def settle(self, event_id: str, changes: Iterable[SeatChange] = (), *, hold_id: str = "",
                     unlock: Iterable[str] = ()) -> None:
        """After a PostgreSQL commit: record sold/available seat states and drop ``hold_id``'s locks on ``unlock``."""
        args: list[str | int] = [hold_id]
        for c in changes:
            if c.status != "held":
                args += [c.seat_id, c.version, "S" if c.status == "sold" else "A"]
        keys = [_state_key(event_id), *(_lock_key(event_id, s) for s in unlock)]
        if len(args) > 1 or len(keys) > 1:
            await self._settle(keys=keys, args=args)

    async def ping(self) -> bool:
        return await self.redis.ping()
