from __future__ import annotations

import time

import jwt
import pytest

from common.auth import InvalidToken, bearer_token, decode_token, encode_token

SECRET = "unit-test-secret-0123456789abcdef-0123"


def test_round_trip():
    token = encode_token("u1", "organizer", SECRET, 60)
    p = decode_token(token, SECRET)
    assert (p.user_id, p.role) == ("u1", "organizer") and len(p.jti) == 32
    assert time.time() - 5 < p.issued_at <= time.time() + 0.001 and p.expires_at > p.issued_at
    assert decode_token(encode_token("u1", "organizer", SECRET, 60), SECRET).jti != p.jti  # one id per token


def claims(**over):
    base = {"sub": "u1", "role": "buyer", "exp": int(time.time()) + 60, "iat": int(time.time()), "jti": "j1",
            "iss": "evently", "aud": "evently-api"}
    return {k: v for k, v in {**base, **over}.items() if v is not None}


@pytest.mark.parametrize("bad", [dict(iss="someone-else"), dict(aud="another-api"), dict(iss=None), dict(aud=None),
                                 dict(jti=None), dict(iat=None)])
def test_issuer_audience_and_ids_are_required_and_checked(bad):
    """A token signed with the right secret but minted for another system (or without the claims) is refused."""
    assert decode_token(jwt.encode(claims(), SECRET, algorithm="HS256"), SECRET).jti == "j1"
    with pytest.raises(InvalidToken):
        decode_token(jwt.encode(claims(**bad), SECRET, algorithm="HS256"), SECRET)


@pytest.mark.parametrize("token", [
    encode_token("u1", "buyer", SECRET, -1),                      # expired
    encode_token("u1", "buyer", SECRET + "-other", 60),            # wrong key
    "not.a.jwt",
])
def test_bad_tokens(token):
    with pytest.raises(InvalidToken):
        decode_token(token, SECRET)


def test_unknown_role_is_refused():
    forged = jwt.encode({"sub": "u1", "role": "root", "exp": 9999999999}, SECRET, algorithm="HS256")
    with pytest.raises(InvalidToken):
        decode_token(forged, SECRET)
    with pytest.raises(ValueError):
        encode_token("u1", "root", SECRET, 60)


def test_bearer_header():
    assert bearer_token("Bearer abc") == "abc"
    for header in (None, "", "Basic abc", "Bearer "):
        with pytest.raises(InvalidToken):
            bearer_token(header)
