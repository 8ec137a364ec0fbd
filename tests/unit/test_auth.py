from __future__ import annotations

import jwt
import pytest

from common.auth import InvalidToken, Principal, bearer_token, decode_token, encode_token

SECRET = "unit-test-secret-0123456789abcdef-0123"


def test_round_trip():
    token = encode_token("u1", "organizer", SECRET, 60)
    assert decode_token(token, SECRET) == Principal("u1", "organizer")


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
