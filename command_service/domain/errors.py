"""Domain errors. Each carries a CONTRACT error code; the HTTP layer maps codes to statuses."""
from __future__ import annotations

from typing import Any


class DomainError(Exception):
    code = "ERROR"

    def __init__(self, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}


class ValidationError(DomainError):
    code = "VALIDATION_ERROR"


class Unauthenticated(DomainError):
    code = "UNAUTHENTICATED"


class Forbidden(DomainError):
    code = "FORBIDDEN"


class NotFound(DomainError):
    code = "NOT_FOUND"


class EmailExists(DomainError):
    code = "EMAIL_EXISTS"


class InvalidState(DomainError):
    """The command does not apply to the aggregate's current state (e.g. publishing a cancelled event)."""

    code = "INVALID_STATE"


class EventNotOnSale(DomainError):
    code = "EVENT_NOT_ON_SALE"


class SeatsUnavailable(DomainError):
    code = "SEATS_UNAVAILABLE"

    def __init__(self, seats: list[str]) -> None:
        super().__init__("some of the requested seats are taken", {"seats": sorted(seats)})


class SoldOut(DomainError):
    code = "SOLD_OUT"


class LimitExceeded(DomainError):
    code = "LIMIT_EXCEEDED"


class AdmissionRequired(DomainError):
    code = "ADMISSION_REQUIRED"


class HoldExpired(DomainError):
    code = "HOLD_EXPIRED"


class IdempotencyInProgress(DomainError):
    code = "IDEMPOTENCY_IN_PROGRESS"


class IdempotencyKeyReused(DomainError):
    code = "IDEMPOTENCY_KEY_REUSED"


class SeatsAvailable(DomainError):
    """A waitlist join while enough seats are on sale: hold them instead."""

    code = "SEATS_AVAILABLE"


class AlreadyWaiting(DomainError):
    """The buyer already has an active (waiting or offered) entry on this event's waitlist."""

    code = "ALREADY_ON_WAITLIST"


class DependencyUnavailable(DomainError):
    """An outside system the command needs (the payment provider) did not answer: 503 with ``Retry-After``."""

    code = "DEPENDENCY_UNAVAILABLE"

    def __init__(self, dependency: str, message: str) -> None:
        super().__init__(message, {"dependency": dependency})


class InvalidPromoCode(DomainError):
    code = "INVALID_PROMO_CODE"


class InvalidTicket(DomainError):
    code = "INVALID_TICKET"


class WrongEvent(DomainError):
    code = "WRONG_EVENT"


class TicketVoid(DomainError):
    code = "TICKET_VOID"


class AlreadyCheckedIn(DomainError):
    code = "ALREADY_CHECKED_IN"
