"""Forged GitHub Actions tokens, made by hand because no JWT library will sign them: the
unsigned `alg: none` token, and the HS256 token keyed with the issuer's public key (the
algorithm-confusion attack on verifiers that take the algorithm from the token)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

from cryptography.hazmat.primitives import serialization

from artemis_local.fake_github import FakeOidcIssuer


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _segments(header: dict[str, Any], claims: dict[str, Any]) -> str:
    return f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"


def alg_none(issuer: FakeOidcIssuer, audience: str, **overrides: Any) -> str:
    signed = _segments({"alg": "none", "kid": issuer.kid}, issuer.claims(overrides, audience))
    return signed + "."


def hs256_with_public_key(issuer: FakeOidcIssuer, audience: str, **overrides: Any) -> str:
    public_pem = issuer.private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    signed = _segments(
        {"alg": "HS256", "kid": issuer.kid, "typ": "JWT"}, issuer.claims(overrides, audience)
    )
    signature = hmac.new(public_pem, signed.encode(), hashlib.sha256).digest()
    return f"{signed}.{b64(signature)}"
