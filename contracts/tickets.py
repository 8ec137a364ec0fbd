"""A ticket's signed code (CONTRACT v2 "Tickets and check-in"), defined once: the command side signs and verifies
it, the read side shows it (and its QR code), a door device verifies it offline with the event's public key
(``GET /api/v1/events/{id}/checkin-key``).

``code = <payload>.<signature>``, both base64url without padding. The payload is 35 bytes:

    version (1 byte, 1) | key number (2 bytes, big endian) | ticket id (16 bytes) | event id (16 bytes)

and the signature is Ed25519 over the ASCII bytes of the base64url payload, with the event's key number ``n``
(its ``key_id`` is ``str(n)``). No personal data. A code is 47 + 1 + 86 = 134 characters (CONTRACT: at most 200).
"""
from __future__ import annotations

import base64
import binascii
import struct
import uuid
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

VERSION = 1
ALGORITHM = "Ed25519"
_LAYOUT = struct.Struct(">BH16s16s")
MAX_CODE_LENGTH = 200


class BadCode(ValueError):
    """Not a ticket code, or its signature does not verify."""


@dataclass(frozen=True)
class TicketClaim:
    """What a code names."""
    ticket_id: str
    event_id: str
    key_id: str


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def public_key_b64(public_key: Ed25519PublicKey) -> str:
    """The raw 32-byte key, standard base64 (as CONTRACT's checkin-key answer gives it)."""
    return base64.b64encode(public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()


def load_public_key(raw_b64: str) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(base64.b64decode(raw_b64))


def sign(private_key: Ed25519PrivateKey, key_id: str, ticket_id: str, event_id: str) -> str:
    payload = b64(_LAYOUT.pack(VERSION, int(key_id), uuid.UUID(ticket_id).bytes, uuid.UUID(event_id).bytes))
    return f"{payload}.{b64(private_key.sign(payload.encode()))}"


def read(code: str) -> TicketClaim:
    """What the code names, unverified (to pick the key to verify it with). BadCode if it is not a code."""
    if not isinstance(code, str) or len(code) > MAX_CODE_LENGTH or code.count(".") != 1:
        raise BadCode("not a ticket code")
    payload, _ = code.split(".")
    try:
        version, key_no, ticket, event = _LAYOUT.unpack(unb64(payload))
    except (binascii.Error, struct.error, ValueError) as exc:
        raise BadCode("not a ticket code") from exc
    if version != VERSION:
        raise BadCode(f"unknown code version {version}")
    return TicketClaim(str(uuid.UUID(bytes=ticket)), str(uuid.UUID(bytes=event)), str(key_no))


def verify(code: str, public_key: Ed25519PublicKey) -> TicketClaim:
    """The claim, if ``public_key`` signed this code; BadCode otherwise."""
    claim = read(code)
    payload, signature = code.split(".")
    try:
        public_key.verify(unb64(signature), payload.encode())
    except (InvalidSignature, binascii.Error, ValueError) as exc:
        raise BadCode("the signature does not verify") from exc
    return claim
