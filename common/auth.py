"""JWT access tokens (HS256, CONTRACT "Auth"): shared by the command and the query service.

Claims: ``sub`` (user id), ``role``, ``exp``, ``iat`` (seconds, to the millisecond: a revocation of "every token
of this user issued before now" must not catch the token a user gets right after it), ``jti`` (this token's id,
what a logout revokes), ``iss`` and ``aud`` (both checked: a token minted for another system with the same
secret is refused). A ``scanner`` token (a door credential, issue 14) also carries ``evt``: the one event whose
tickets it may check in; ``sub`` is the scanner's id. Revocation (logout, disabled users) is common/revocation.py.
"""
from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from functools import lru_cache

import jwt

from contracts.vocabulary import ROLES

ALGORITHM = "HS256"
ISSUER = "evently"
AUDIENCE = "evently-api"


class InvalidToken(Exception):
    """The token is missing, malformed, expired, badly signed, revoked or carries unknown claims."""


@dataclass(frozen=True)
class Principal:
    user_id: str
    role: str
    jti: str = ""
    issued_at: float = 0.0
    expires_at: float = 0.0
    event_id: str | None = None  # a scanner's event

    def scans_for(self, event_id: str) -> bool:
        return self.role == "scanner" and self.event_id == event_id


def encode_token(user_id: str, role: str, secret: str, ttl_seconds: int, *, jti: str | None = None,
                 event_id: str | None = None) -> str:
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}")
    if (role == "scanner") != (event_id is not None):
        raise ValueError("a scanner token, and only one, names its event")
    now = time.time()
    claims = {"sub": user_id, "role": role, "iat": round(now, 3), "exp": int(now) + ttl_seconds,
              "jti": jti or uuid.uuid4().hex, "iss": ISSUER, "aud": AUDIENCE}
    if event_id is not None:
        claims["evt"] = event_id
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def decode_token(token: str, secret: str) -> Principal:
    principal = _verify(token, secret)
    if principal.expires_at <= time.time():
        raise InvalidToken("Signature has expired")
    return principal


@lru_cache(maxsize=16384)
def _verify(token: str, secret: str) -> Principal:
    """Signature and claims check, cached per token string (a client sends the same token many
    times); expiry is checked on every use by ``decode_token``. Failures are not cached."""
    try:
        claims = jwt.decode(token, secret, algorithms=[ALGORITHM], issuer=ISSUER, audience=AUDIENCE,
                            options={"require": ["sub", "role", "exp", "iat", "jti", "iss", "aud"]})
    except jwt.PyJWTError as exc:
        raise InvalidToken(str(exc)) from exc
    if claims["role"] not in ROLES or not isinstance(claims["sub"], str) or not isinstance(claims["jti"], str):
        raise InvalidToken("unknown role, subject or token id")
    event_id = claims.get("evt")
    if (claims["role"] == "scanner") != isinstance(event_id, str):
        raise InvalidToken("a scanner token names its event, and only a scanner token does")
    return Principal(claims["sub"], claims["role"], claims["jti"], float(claims["iat"]), float(claims["exp"]),
                     event_id)


def bearer_token(authorization: str | None) -> str:
    """The token from an ``Authorization: Bearer <JWT>`` header value."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise InvalidToken("expected 'Authorization: Bearer <token>'")
    return token.strip()


# --- waiting-room admissions (issue 16): minted by the command side's admitter, shown by the query service,
# checked by the hold path. A different audience from access tokens, so neither passes for the other.
ADMISSION_AUDIENCE = "evently-admission"


def encode_admission(entry_id: str, buyer_id: str, event_id: str, expires_at: float, secret: str) -> str:
    """Deterministic for one admission (same claims, same token), so any process can mint it again."""
    return jwt.encode({"sub": buyer_id, "evt": event_id, "jti": entry_id, "exp": int(expires_at), "iss": ISSUER,
                       "aud": ADMISSION_AUDIENCE}, secret, algorithm=ALGORITHM)


def admission_valid(token: str | None, buyer_id: str, event_id: str, secret: str) -> bool:
    """The token admits this buyer to this event now (signature, audience, binding and expiry)."""
    if not token:
        return False
    try:
        claims = jwt.decode(token, secret, algorithms=[ALGORITHM], issuer=ISSUER, audience=ADMISSION_AUDIENCE,
                            options={"require": ["sub", "evt", "jti", "exp"]})
    except jwt.PyJWTError:
        return False
    return claims["sub"] == buyer_id and claims["evt"] == event_id
