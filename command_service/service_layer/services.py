"""The wiring every handler gets: the unit of work, the Redis seat locks, the settings and the catalog cache."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

import structlog

from common.settings import Settings
from command_service.adapters.seat_locks import SeatLocks
from command_service.service_layer.catalog import EventCatalog
from command_service.service_layer.unit_of_work import UnitOfWork

log = structlog.get_logger()


@dataclass
class Services:
    """Everything a handler needs (built once per process by entrypoints.app.services_ctx)."""

    uow: Callable[[], UnitOfWork]
    locks: SeatLocks
    settings: Settings
    redis: Any = None  # the Redis client (token revocations, rate limits)
    payments: Any = None  # the payment provider (adapters.payments.PaymentProvider)
    ticket_keys: Any = None  # adapters.ticket_keys.TicketKeys
    catalog: EventCatalog = field(init=False)

    def __post_init__(self) -> None:
        self.catalog = EventCatalog(self.uow, self.settings.event_cache_seconds)


async def best_effort(event_id: str, redis_call: Awaitable[Any]) -> None:
    """Redis bookkeeping after PostgreSQL decided: PostgreSQL stays the arbiter, so a failure here is logged."""
    try:
        await redis_call
    except Exception as exc:  # noqa: BLE001 - a missed lock release only costs a refused attempt until TTL
        log.warning("seat_locks_settle_failed", event_id=event_id, error=repr(exc))
