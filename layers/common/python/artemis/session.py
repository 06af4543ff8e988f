"""The deploy-session token (spec/api.md §3.11): an HS256 JWT built on hmac, no JWT library.

Pure: no I/O, stdlib only. `issue` mints the token init returns; `verify` is the JWT
middleware's check. Verification raises only `errors.JwtExpired` (401: a token this key signed,
otherwise valid, whose `exp` has passed) or `errors.JwtInvalid` (403: everything else), for
any input string.

Claims: `sub` (GitHub login), `site` (registry slug), `deployId`, `team` (the registry team
whose membership granted the session, G-2), `iss` = "artemis", `iat`, `exp` = iat + ttl. All
of `sub`, `site`, `deployId`, `team`, `iat` and `exp` are required (G-33).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import math
import re
from dataclasses import dataclass
from typing import Any

from artemis import errors

ISSUER = "artemis"
ALGORITHM = "HS256"
MAX_TOKEN_LENGTH = 8192
"""Longer strings are refused before any decoding (a real token is a few hundred chars)."""

_HEADER_JSON = b'{"alg":"HS256","typ":"JWT"}'
_SEGMENT_RE = re.compile(r"[A-Za-z0-9_-]*", re.ASCII)
_STRING_CLAIMS = ("sub", "site", "deployId", "team")
_INT_CLAIMS = ("iat", "exp")


@dataclass(frozen=True)
class SessionClaims:
    sub: str
    site: str
    deploy_id: str
    team: str
    iat: int
    exp: int


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(segment: str) -> bytes:
    """Strict unpadded base64url: alphabet only, and the canonical encoding of its bytes (no
    stray trailing bits), so one token has exactly one spelling. ValueError otherwise."""
    if _SEGMENT_RE.fullmatch(segment) is None or len(segment) % 4 == 1:
        raise ValueError("not base64url")
    data = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    if _b64encode(data) != segment:
        raise ValueError("non-canonical base64url")
    return data


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _json_object(data: bytes) -> dict[str, Any]:
    value = json.loads(data.decode("utf-8"), parse_constant=_reject_constant)
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    return value


def _sign(signing_input: bytes, key: bytes) -> bytes:
    return hmac.new(key, signing_input, hashlib.sha256).digest()


def issue(
    *,
    login: str,
    site: str,
    deploy_id: str,
    team: str,
    key: bytes,
    ttl_seconds: int,
    now: float,
) -> tuple[str, SessionClaims]:
    """Mint a session token for `login` on `site`'s deploy `deploy_id`, granted by `team`.

    `iat` is `now` rounded down to a whole second. Raises errors.JwtSignFailed (500) rather
    than mint a token `verify` would refuse: an empty claim, an empty key or a ttl below 1.
    """
    values = {"sub": login, "site": site, "deployId": deploy_id, "team": team}
    if any(not isinstance(v, str) or not v for v in values.values()):
        raise errors.JwtSignFailed("session claims must be non-empty strings")
    if not key:
        raise errors.JwtSignFailed("empty signing key")
    if isinstance(ttl_seconds, bool) or not isinstance(ttl_seconds, int) or ttl_seconds < 1:
        raise errors.JwtSignFailed("session ttl must be a positive integer")
    if not math.isfinite(now):
        raise errors.JwtSignFailed("clock is not finite")
    iat = math.floor(now)
    exp = iat + ttl_seconds
    payload = {**values, "iss": ISSUER, "iat": iat, "exp": exp}
    signing_input = (
        _b64encode(_HEADER_JSON)
        + "."
        + _b64encode(json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode())
    )
    signature = _b64encode(_sign(signing_input.encode("ascii"), key))
    claims = SessionClaims(sub=login, site=site, deploy_id=deploy_id, team=team, iat=iat, exp=exp)
    return signing_input + "." + signature, claims


def _claims(payload: dict[str, Any]) -> SessionClaims:
    """The claims of a payload whose signature verified; ValueError if any is wrong (G-33)."""
    if payload.get("iss") != ISSUER:
        raise ValueError("wrong issuer")
    for name in _STRING_CLAIMS:
        value = payload.get(name)
        if not isinstance(value, str) or not value:
            raise ValueError(f"claim {name} must be a non-empty string")
    for name in _INT_CLAIMS:
        value = payload.get(name)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"claim {name} must be an integer")
    return SessionClaims(
        sub=payload["sub"],
        site=payload["site"],
        deploy_id=payload["deployId"],
        team=payload["team"],
        iat=payload["iat"],
        exp=payload["exp"],
    )


def verify(token: str, key: bytes, *, now: float) -> SessionClaims:
    """§3.11 step 2, §17.1: the claims of a valid, unexpired token.

    Order: shape → header (alg exactly HS256) → signature (constant-time) → claims → expiry.
    Expiry (`exp <= now`, no leeway) is judged only for a token that passed every other
    check, so JwtExpired (401) means "a genuine session that ran out"; every other failure
    is JwtInvalid (403).
    """
    try:
        if not key or not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH:
            raise ValueError("unusable token or key")
        parts = token.split(".")
        if len(parts) != 3:
            raise ValueError("a JWT has three segments")
        header_segment, payload_segment, signature_segment = parts
        header = _json_object(_b64decode(header_segment))
        alg = header.get("alg")
        if not isinstance(alg, str) or alg != ALGORITHM:
            raise ValueError("algorithm must be HS256")
        signature = _b64decode(signature_segment)
        expected = _sign(f"{header_segment}.{payload_segment}".encode("ascii"), key)
        if not hmac.compare_digest(signature, expected):
            raise ValueError("bad signature")
        claims = _claims(_json_object(_b64decode(payload_segment)))
    except (ValueError, TypeError, RecursionError, binascii.Error) as exc:
        raise errors.JwtInvalid() from exc
    if not claims.exp > now:  # also refuses a NaN clock
        raise errors.JwtExpired()
    return claims
