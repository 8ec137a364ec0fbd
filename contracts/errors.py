"""The one error envelope (CONTRACT "Common rules"): ``{"error": {"code", "message", "details"}}``.

Both services answer every failure with :func:`error_body` and the status :data:`STATUS` gives its code.
"""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

# Every code a service may answer with, and its HTTP status. CONTRACT's table, plus the codes this
# implementation adds where CONTRACT is silent (EMAIL_EXISTS, INVALID_STATE, ALREADY_ON_WAITLIST, the
# method/size codes and INTERNAL_ERROR).
STATUS: dict[str, int] = {
    "VALIDATION_ERROR": 400, "INVALID_TICKET": 400, "INVALID_PROMO_CODE": 400,
    "UNAUTHENTICATED": 401,
    "FORBIDDEN": 403, "ADMISSION_REQUIRED": 403,
    "NOT_FOUND": 404,
    "METHOD_NOT_ALLOWED": 405,
    "SEATS_UNAVAILABLE": 409, "SOLD_OUT": 409, "EVENT_NOT_ON_SALE": 409, "SEATS_AVAILABLE": 409,
    "IDEMPOTENCY_IN_PROGRESS": 409, "IDEMPOTENCY_KEY_REUSED": 409, "LIMIT_EXCEEDED": 409,
    "ALREADY_CHECKED_IN": 409, "TICKET_VOID": 409, "WRONG_EVENT": 409,
    "EMAIL_EXISTS": 409, "INVALID_STATE": 409, "ALREADY_ON_WAITLIST": 409,
    "HOLD_EXPIRED": 410,
    "PAYLOAD_TOO_LARGE": 413,
    "RATE_LIMITED": 429,
    "INTERNAL_ERROR": 500,
    "DEPENDENCY_UNAVAILABLE": 503,
}
# The code for a bare HTTP status raised by a framework (router 404/405, body-size 413, ...).
CODE_FOR_STATUS: dict[int, str] = {400: "VALIDATION_ERROR", 401: "UNAUTHENTICATED", 403: "FORBIDDEN",
                                   404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED", 413: "PAYLOAD_TOO_LARGE",
                                   429: "RATE_LIMITED", 503: "DEPENDENCY_UNAVAILABLE"}


class ErrorDetail(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: str = Field(description="one of the CONTRACT error codes", examples=["VALIDATION_ERROR"])
    message: str
    details: dict[str, Any] = Field(default_factory=dict,
                                    description="VALIDATION_ERROR: one entry per bad field; "
                                                "SEATS_UNAVAILABLE: `seats`; DEPENDENCY_UNAVAILABLE: `dependency`")


class ErrorBody(BaseModel):
    """Every error response's body."""
    model_config = ConfigDict(extra="forbid")
    error: ErrorDetail


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details or {}}}


def status_of(code: str) -> int:
    return STATUS[code]
