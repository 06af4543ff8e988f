"""The GitHub App's RS256 JWT (PyJWT): GitHub's claims, verifiable with RS256 only."""

import base64
import json

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from artemis.github_app import app_jwt

KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
NOW = 1_776_694_522.75


def unb64(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def test_header_and_claims_are_githubs() -> None:
    token = app_jwt("4242", KEY, NOW)
    header, payload, _ = token.split(".")
    assert unb64(header) == b'{"alg":"RS256","typ":"JWT"}'
    # issued a minute back (clock skew), valid for GitHub's maximum of ten minutes
    assert json.loads(unb64(payload)) == {"iss": "4242", "iat": 1_776_694_462, "exp": 1_776_695_062}


def test_it_verifies_with_the_public_key_pinned_to_rs256() -> None:
    token = app_jwt("4242", KEY, NOW)
    claims = jwt.decode(
        token, KEY.public_key(), algorithms=["RS256"], options={"verify_exp": False}
    )
    assert claims["iss"] == "4242"
    with pytest.raises(jwt.InvalidAlgorithmError):
        jwt.decode(token, KEY.public_key(), algorithms=["HS256"], options={"verify_exp": False})
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, other.public_key(), algorithms=["RS256"], options={"verify_exp": False})
