"""Ticket codes (contracts/tickets.py) and sealed signing keys (adapters/ticket_keys.py): pure, no I/O."""
from __future__ import annotations

import uuid

import pytest

from command_service.adapters.ticket_keys import TicketKeys
from contracts import tickets as codes

OLD, NEW = "old-secret-" + "o" * 32, "new-secret-" + "n" * 32


def test_a_code_is_compact_names_its_ticket_and_verifies_with_its_key_only():
    keys = TicketKeys(OLD)
    key, _ = keys.new_key()
    other, _ = keys.new_key()
    ticket, event = str(uuid.uuid4()), str(uuid.uuid4())
    code = codes.sign(key, "7", ticket, event)
    assert len(code) <= codes.MAX_CODE_LENGTH and code.count(".") == 1 and "=" not in code
    assert codes.verify(code, key.public_key()) == codes.TicketClaim(ticket, event, "7")
    with pytest.raises(codes.BadCode):
        codes.verify(code, other.public_key())
    payload, sig = code.split(".")
    tampered = codes.b64(bytes([1, 0, 7]) + uuid.UUID(str(uuid.uuid4())).bytes + uuid.UUID(event).bytes)
    with pytest.raises(codes.BadCode):
        codes.verify(f"{tampered}.{sig}", key.public_key())
    for junk in ("", "a.b.c", "!!!.???", "x" * 300, f"{payload}"):
        with pytest.raises(codes.BadCode):
            codes.read(junk) if junk != payload else codes.verify(junk, key.public_key())


def test_the_published_key_round_trips():
    key, _ = TicketKeys(OLD).new_key()
    assert codes.load_public_key(codes.public_key_b64(key.public_key())).public_bytes_raw() == \
        key.public_key().public_bytes_raw()


def test_sealed_keys_rotate_to_a_new_secret():
    old = TicketKeys(OLD)
    key, _ = old.new_key()
    sealed = old.seal(key)
    both = TicketKeys(f"{NEW},{OLD}")
    assert both.open(sealed).private_bytes_raw() == key.private_bytes_raw()  # the old secret still opens it
    resealed = both.box.rotate(sealed)
    assert TicketKeys(NEW).open(resealed).private_bytes_raw() == key.private_bytes_raw()
    with pytest.raises(Exception):
        TicketKeys(NEW).open(sealed)
    with pytest.raises(ValueError):
        TicketKeys("short")
