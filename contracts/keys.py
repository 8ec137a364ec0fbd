"""Redis key names shared by the services (one definition each).

Per event, the command side's seat gate keeps its keys in one Redis Cluster hash slot (the ``{event_id}`` tag):
- ``evently:{E}:lock:<seat>``: hold id, expiring with the hold (command_service/adapters/seat_locks.py);
- ``evently:{E}:seats``: hash seat -> ``<version>:S`` (sold) or ``<version>:A`` (available again).
The projector writes, and the query service reads:
- ``feed:<event_id>``: the Redis Stream of an event's seat changes (SSE ``seats`` frames; the entry id is the SSE id).
The notifier writes, and the query service reads:
- ``notify:<user_id>``: the stream of a user's notifications, ``notify-seen:<user_id>`` the notification ids
  already appended to it (each notification goes out once).
Both services read the token revocation set ``evently:auth:revoked`` (below).
A rebuild pauses the live projectors:
- ``evently:projector:pause`` (value = rebuild id, with a TTL) and ``evently:projector:paused:<group>`` (ack).
"""
from __future__ import annotations

PROJECTOR_PAUSE = "evently:projector:pause"


def seat_lock(event_id: str, seat_id: str) -> str:
    return f"evently:{{{event_id}}}:lock:{seat_id}"


def seat_states(event_id: str) -> str:
    return f"evently:{{{event_id}}}:seats"


def seat_feed(event_id: str) -> str:
    return f"feed:{event_id}"


# Fields of a seat-feed entry (written by projectors/store.py FEED_LUA, read by query_service/feed.py): ``off``
# the Kafka offset of the entry's last message, ``prev`` the ``off`` of the entry it follows, ``data`` the SSE
# frame's JSON. When the stream was empty, ``prev`` says why: FEED_PREV_FIRST, this is the event's first entry;
# FEED_PREV_LOST, the event had entries before and Redis lost them (FLUSHALL, a restart without its data), so
# nobody may resume across this entry, not even from "0-0" (a map fetched before the loss).
FEED_OFF, FEED_PREV, FEED_DATA = "off", "prev", "data"
FEED_PREV_FIRST, FEED_PREV_LOST = -1, -2


def notifications(user_id: str) -> str:
    return f"notify:{user_id}"


def notifications_seen(user_id: str) -> str:
    return f"notify-seen:{user_id}"


def projector_paused_ack(group: str) -> str:
    return f"evently:projector:paused:{group}"


# Revoked access tokens (common/revocation.py): a sorted set, score = when the entry may be forgotten (unix s);
# members ``jti:<token id>`` (a logout) or ``sub:<user id>:<unix s>`` (every token of that user issued before).
# The member ``complete`` (score +inf) says the set holds every revocation: the command service writes it when it
# rebuilds the set from PostgreSQL (table revoked_tokens), so a set without it was lost (FLUSHALL) and is not trusted.
REVOKED_TOKENS = "evently:auth:revoked"
REVOKED_TOKENS_COMPLETE = "complete"


# The waiting room of an event (issue 16; command_service/service_layer/waiting_room.py writes, the query service
# reads). PostgreSQL's queue_entries is the record; these are rebuilt from it when lost (no ``built`` marker).
def queue_waiting(event_id: str) -> str:
    """Sorted set: entry id -> order key (pre-open joiners: their random draw in [0, 1); later: 1 + arrival seq)."""
    return f"evently:{{{event_id}}}:queue"


def queue_entries(event_id: str) -> str:
    """Hash: entry id -> buyer id (every entry, waiting or admitted)."""
    return f"evently:{{{event_id}}}:queue:entries"


def queue_admitted(event_id: str) -> str:
    """Hash: entry id -> JSON {token, expires_at} of its admission."""
    return f"evently:{{{event_id}}}:queue:admitted"


def queue_built(event_id: str) -> str:
    """Present while the three keys above hold the whole queue (set after a rebuild from PostgreSQL)."""
    return f"evently:{{{event_id}}}:queue:built"
