"""Each event's Ed25519 ticket-signing keys, stored encrypted at rest (issue 14; README "Tickets": rotation).

The private key is kept in ``event_keys`` as a Fernet token (AES-128-CBC + HMAC-SHA256, from ``cryptography``)
under the secrets of ``EVENTLY_TICKET_KEY_SECRETS``: a comma-separated list, the first encrypts, every one
decrypts (``MultiFernet``), so the secret rotates by putting a new one first and running
``cli rotate-ticket-secrets`` (re-encrypts every key with it), then dropping the old one. Each secret is any string
of at least 32 bytes; its SHA-256 is the Fernet key.

An event gets key 1 the first time a ticket of it is signed (``signing_key``: created in the caller's transaction,
``ON CONFLICT`` against a concurrent creator). ``cli rotate-event-key`` makes key n+1 the active one: new tickets
are signed with it, and the tickets signed before keep verifying with theirs (the code names its key).
Decrypted keys are cached per process: signing a ticket costs one Ed25519 signature, no database read. The
active key is looked up again after ``ACTIVE_KEY_TTL_S``, so a rotation reaches every process within a minute (a
ticket signed meanwhile with the old key stays valid).
"""
from __future__ import annotations

import base64
import hashlib
import time

from cryptography.fernet import Fernet, MultiFernet
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

MIN_SECRET_BYTES = 32
ACTIVE_KEY_TTL_S = 60.0


def fernet(secrets: list[str]) -> MultiFernet:
    if not secrets or any(len(s.encode()) < MIN_SECRET_BYTES for s in secrets):
        raise ValueError(f"EVENTLY_TICKET_KEY_SECRETS needs one or more secrets of at least {MIN_SECRET_BYTES} bytes")
    return MultiFernet([Fernet(base64.urlsafe_b64encode(hashlib.sha256(s.encode()).digest())) for s in secrets])


class TicketKeys:
    def __init__(self, secrets: str) -> None:
        self.box = fernet([x.strip() for x in secrets.split(",") if x.strip()])
        self._signing: dict[str, tuple[float, str, Ed25519PrivateKey]] = {}
        self._public: dict[tuple[str, str], Ed25519PublicKey] = {}

    def seal(self, key: Ed25519PrivateKey) -> bytes:
        return self.box.encrypt(key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption()))

    def open(self, sealed: bytes) -> Ed25519PrivateKey:
        return Ed25519PrivateKey.from_private_bytes(self.box.decrypt(bytes(sealed)))

    @staticmethod
    def new_key() -> tuple[Ed25519PrivateKey, bytes]:
        key = Ed25519PrivateKey.generate()
        return key, key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    async def signing_key(self, repo, event_id: str) -> tuple[str, Ed25519PrivateKey]:
        """(key id, private key) of the event's active key, made now if the event has none."""
        cached = self._signing.get(event_id)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1], cached[2]
        row = await repo.active_event_key(event_id)
        if row is None:
            key, public = self.new_key()
            await repo.add_event_key(event_id, 1, public, self.seal(key))
            row = await repo.active_event_key(event_id)
        key_id, key = str(row["key_id"]), self.open(row["private_key"])
        self._signing[event_id] = (time.monotonic() + ACTIVE_KEY_TTL_S, key_id, key)
        return key_id, key

    async def public_key(self, repo, event_id: str, key_id: str) -> Ed25519PublicKey | None:
        """The public half of one of the event's keys (active or not), or None."""
        cached = self._public.get((event_id, key_id))
        if cached is None:
            if not key_id.isdigit():
                return None
            raw = await repo.event_public_key(event_id, int(key_id))
            if raw is None:
                return None
            cached = self._public[(event_id, key_id)] = Ed25519PublicKey.from_public_bytes(bytes(raw))
        return cached

    def forget(self, event_id: str) -> None:
        self._signing.pop(event_id, None)
