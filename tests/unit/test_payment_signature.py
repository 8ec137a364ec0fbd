"""contracts/payments.py: the Devpay-Signature scheme both sides use (CONTRACT: t=<unix>,v1=<hex HMAC-SHA256>)."""
from __future__ import annotations

import hashlib
import hmac

import pytest

from contracts import payments as P

SECRET = "whsec-test-0123456789abcdef0123456789"
BODY = b'{"id":"evt_1","type":"payment.succeeded"}'


def test_a_signed_body_verifies_and_the_header_is_the_contracts_format():
    header = P.sign(SECRET, BODY, t=1_800_000_000)
    expected = hmac.new(SECRET.encode(), b"1800000000." + BODY, hashlib.sha256).hexdigest()
    assert header == f"t=1800000000,v1={expected}"
    assert P.verify(SECRET, header, BODY, now=1_800_000_010) == 1_800_000_000


@pytest.mark.parametrize("case", ["other body", "other secret", "no header", "garbage", "no v1", "moved t"])
def test_anything_else_is_refused(case):
    header = P.sign(SECRET, BODY, t=1_800_000_000)
    secret, body = SECRET, BODY
    if case == "other body":
        body = BODY.replace(b"succeeded", b"failed")
    elif case == "other secret":
        secret = SECRET + "x"
    elif case == "no header":
        header = None
    elif case == "garbage":
        header = "nonsense"
    elif case == "no v1":
        header = "t=1800000000"
    elif case == "moved t":  # a captured signature with a fresh timestamp: t is inside the signed text
        header = header.replace("t=1800000000", "t=1800000005")
    with pytest.raises(P.BadSignature):
        P.verify(secret, header, body, now=1_800_000_010)


def test_too_old_or_too_far_ahead_is_refused():
    header = P.sign(SECRET, BODY, t=1_800_000_000)
    with pytest.raises(P.BadSignature, match="away from now"):
        P.verify(SECRET, header, BODY, now=1_800_000_000 + P.SIGNATURE_TOLERANCE_S + 1)
    with pytest.raises(P.BadSignature, match="away from now"):
        P.verify(SECRET, header, BODY, now=1_800_000_000 - P.SIGNATURE_TOLERANCE_S - 1)


def test_a_rotating_secret_may_send_two_signatures():
    old = P.sign("old-secret-0123456789abcdef0123", BODY, t=1_800_000_000)
    new = P.sign(SECRET, BODY, t=1_800_000_000)
    both = f"{old},v1={new.split('v1=')[1]}"
    assert P.verify(SECRET, both, BODY, now=1_800_000_000) == 1_800_000_000
