"""JWT access tokens (HS256, CONTRACT "Auth"): shared by the command and the query service.

Claims: ``sub`` (user id), ``role`` (buyer | organizer | admin), ``exp``.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from functools import lru_cache

import jwt

from contracts.vocabulary import ROLES

ALGORITHM = "HS256"


class InvalidToken(Exception):
    """The token is missing, malformed, expired, badly signed or carries unknown claims."""


@dataclass(frozen=True)
class Principal:
    user_id: str
    role: str


def encode_token(user_id: str, role: str, secret: str, ttl_seconds: int) -> str:
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}")
    claims = {"sub": user_id, "role": role, "exp": int(time.time()) + ttl_seconds}
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def decode_token(token: str, secret: str) -> Principal:
    principal, exp = _verify(token, secret)
    if exp <= time.time():
        raise InvalidToken("Signature has expired")
    return principal


@lru_cache(maxsize=16384)
def _verify(token: str, secret: str) -> tuple[Principal, float]:
    """Signature and claims check, cached per token string (a client sends the same token many
    times); expiry is checked on every use by ``decode_token``. Failures are not cached."""
    try:
        claims = jwt.decode(token, secret, algorithms=[ALGORITHM], options={"require": ["sub", "role", "exp"]})
    except jwt.PyJWTError as exc:
        raise InvalidToken(str(exc)) from exc
    if claims["role"] not in ROLES or not isinstance(claims["sub"], str):
        raise InvalidToken("unknown role or subject")
    return Principal(user_id=claims["sub"], role=claims["role"]), float(claims["exp"])


def bearer_token(authorization: str | None) -> str:
    """The token from an ``Authorization: Bearer <JWT>`` header value."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise InvalidToken("expected 'Authorization: Bearer <token>'")
    return token.strip()
