"""The deploy-session token: an HS256 JWT (PyJWT) that init returns and the session routes
(upload, presign, finalize) present instead of a GitHub token.

Pure: no I/O. `issue` mints the token; `verify` is the JWT middleware's check. Verification
raises only `errors.JwtExpired` (401: a token this key signed, otherwise valid, whose `exp` has
passed) or `errors.JwtInvalid` (403: everything else), for any input string.

Claims: `sub` (GitHub login, or the workflow run's audit actor), `site` (registry slug),
`deployId`, `iss` = "artemis", `iat`, `exp` = iat + ttl, and the grant, exactly one of:
`team` (the registry team whose membership granted the session, so the session ends with that
grant), or `rule`, `event` and `aliases` (the trust rule that let a GitHub Actions run in, the
run's event and the aliases the rule lists: finalize publishes only to those). Each is
required, of the right type: a token missing one is refused rather than guessed at.

PyJWT is imported on the first `issue` or `verify`, not with this module: the API imports this
module at every cold start, and `import jwt` loads cryptography's X.509 modules (~50-100 ms).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from artemis import errors

if TYPE_CHECKING:
    from jwt.types import Options

ISSUER = "artemis"
ALGORITHM = "HS256"
MAX_TOKEN_LENGTH = 8192
"""Longer strings are refused before any decoding (a real token is a few hundred chars)."""

# Three segments of unpadded base64url: padding, whitespace and any other character are refused
# before PyJWT sees the token (PyJWT tolerates `=` padding), so one token has one spelling.
_TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*", re.ASCII)
_STRING_CLAIMS = ("sub", "site", "deployId")
MAX_ALIASES = 20  # a trust rule lists at most this many
_INT_CLAIMS = ("iat", "exp")
_REQUIRED_CLAIMS = [*_STRING_CLAIMS, "iss", *_INT_CLAIMS]
# PyJWT checks the signature (HS256 only), the issuer and that every claim is present. It does
# not judge time: it would read the wall clock, not the caller's `now`, and judge expiry before
# the issuer, where expiry must be the last check (see `verify`). Claims this token does not
# use (aud, nbf, jti) are ignored, as they always were.
_DECODE_OPTIONS: Options = {
    "require": _REQUIRED_CLAIMS,
    "verify_signature": True,
    "verify_iss": True,
    "verify_exp": False,
    "verify_iat": False,
    "verify_nbf": False,
    "verify_aud": False,
    "verify_sub": False,
    "verify_jti": False,
}


@dataclass(frozen=True)
class WorkflowGrant:
    """What a trust rule granted a GitHub Actions run: the rule (the session ends when it is
    removed), the run's event, and the aliases the rule lists."""

    rule: str
    event: str
    aliases: tuple[str, ...]


@dataclass(frozen=True)
class SessionClaims:
    sub: str
    site: str
    deploy_id: str
    iat: int
    exp: int
    team: str | None = None  # a person's session: the granting team
    workflow: WorkflowGrant | None = None  # a workflow run's session: its trust rule


def issue(
    *,
    login: str,
    site: str,
    deploy_id: str,
    team: str | None = None,
    workflow: WorkflowGrant | None = None,
    key: bytes,
    ttl_seconds: int,
    now: float,
) -> tuple[str, SessionClaims]:
    """Mint a session token for `login` on `site`'s deploy `deploy_id`, granted by `team` or
    by a trust rule (`workflow`): exactly one.

    `iat` is `now` rounded down to a whole second. Raises errors.JwtSignFailed (500) rather
    than mint a token `verify` would refuse: an empty claim, an empty key or a ttl below 1.
    """
    values: dict[str, Any] = {"sub": login, "site": site, "deployId": deploy_id}
    if (team is None) == (workflow is None):
        raise errors.JwtSignFailed("a session is granted by a team or by a trust rule")
    if team is not None:
        values["team"] = team
    if any(not isinstance(v, str) or not v for v in values.values()):
        raise errors.JwtSignFailed("session claims must be non-empty strings")
    if workflow is not None:
        grant = {"rule": workflow.rule, "event": workflow.event, "aliases": list(workflow.aliases)}
        try:
            _workflow_grant(grant)
        except ValueError as exc:
            raise errors.JwtSignFailed(str(exc)) from None
        values.update(grant)
    if not key:
        raise errors.JwtSignFailed("empty signing key")
    if isinstance(ttl_seconds, bool) or not isinstance(ttl_seconds, int) or ttl_seconds < 1:
        raise errors.JwtSignFailed("session ttl must be a positive integer")
    if not math.isfinite(now):
        raise errors.JwtSignFailed("clock is not finite")
    iat = math.floor(now)
    exp = iat + ttl_seconds
    payload = {**values, "iss": ISSUER, "iat": iat, "exp": exp}
    # The payload's bytes are ours (compact, UTF-8 as is) so a token's spelling does not depend
    # on the library's JSON settings; PyJWT adds the header {"alg":"HS256","typ":"JWT"} and signs.
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    import jwt

    try:
        token = jwt.PyJWS().encode(body, key, algorithm=ALGORITHM)
    except jwt.InvalidKeyError as exc:  # a key that looks like a PEM, SSH or DER public key
        raise errors.JwtSignFailed("the signing key is not usable for HS256") from exc
    claims = SessionClaims(
        sub=login, site=site, deploy_id=deploy_id, iat=iat, exp=exp, team=team, workflow=workflow
    )
    return token, claims


def _workflow_grant(payload: dict[str, Any]) -> WorkflowGrant:
    """The trust-rule grant of a payload; ValueError unless each part is well-formed."""
    rule, event, aliases = payload.get("rule"), payload.get("event"), payload.get("aliases")
    for name, value in (("rule", rule), ("event", event)):
        if not isinstance(value, str) or not value:
            raise ValueError(f"claim {name} must be a non-empty string")
    if (
        not isinstance(aliases, list)
        or not 1 <= len(aliases) <= MAX_ALIASES
        or not all(isinstance(a, str) and a for a in aliases)
    ):
        raise ValueError(f"claim aliases must list 1-{MAX_ALIASES} non-empty strings")
    return WorkflowGrant(rule=str(rule), event=str(event), aliases=tuple(aliases))


def _claims(payload: dict[str, Any]) -> SessionClaims:
    """The claims of a payload whose signature and issuer verified; ValueError if any claim is
    empty or of the wrong type (a float or a boolean is not a time)."""
    for name in _STRING_CLAIMS:
        value = payload.get(name)
        if not isinstance(value, str) or not value:
            raise ValueError(f"claim {name} must be a non-empty string")
    for name in _INT_CLAIMS:
        value = payload.get(name)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"claim {name} must be an integer")
    # Exactly one grant: a team, or a trust rule (whose claims then must all be there).
    team = payload.get("team")
    workflow = None
    if team is None:
        workflow = _workflow_grant(payload)
    elif not isinstance(team, str) or not team or "rule" in payload:
        raise ValueError("claim team must be a non-empty string, and the only grant")
    return SessionClaims(
        sub=payload["sub"],
        site=payload["site"],
        deploy_id=payload["deployId"],
        iat=payload["iat"],
        exp=payload["exp"],
        team=team,
        workflow=workflow,
    )


def verify(token: str, key: bytes, *, now: float) -> SessionClaims:
    """The claims of a valid, unexpired token.

    Order: shape → header (alg exactly HS256) → signature (constant-time) → claims → expiry.
    Expiry (`exp <= now`, no leeway) is judged only for a token that passed every other
    check, so JwtExpired (401) means "a genuine session that ran out"; every other failure
    is JwtInvalid (403). Every PyJWT refusal (DecodeError, InvalidSignatureError,
    InvalidAlgorithmError, MissingRequiredClaimError, InvalidIssuerError, InvalidKeyError …)
    is JwtInvalid.
    """
    if (
        not key
        or not isinstance(token, str)
        or len(token) > MAX_TOKEN_LENGTH
        or _TOKEN_SHAPE.fullmatch(token) is None
    ):
        raise errors.JwtInvalid()
    import jwt

    try:
        payload = jwt.decode(
            token, key, algorithms=[ALGORITHM], issuer=ISSUER, options=_DECODE_OPTIONS
        )
        claims = _claims(payload)
    except (jwt.PyJWTError, ValueError, TypeError, RecursionError) as exc:
        raise errors.JwtInvalid() from exc
    if not claims.exp > now:  # also refuses a NaN clock
        raise errors.JwtExpired()
    return claims
