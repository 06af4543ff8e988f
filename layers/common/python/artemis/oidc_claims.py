"""The rules of a GitHub Actions OIDC token that need no key and no network: the cheap shape
test that routes a bearer token here (`looks_like_oidc`), the checks of its verified claims
(`claims_from`) and the audit actor it acts as. The signature, `iss`, `aud` and times are
checked by artemis.oidc with the issuer's keys."""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from artemis.errors import OidcClaims as OidcClaimsError
from artemis.errors import OidcInvalid

# artemis.session.ISSUER (pure modules import no other; tests/unit/test_oidc_claims.py checks)
SESSION_ISSUER = "artemis"
ALGORITHM = "RS256"  # what GitHub signs with; any other is refused before a key is looked up
# Claims GitHub always sets that the auth layer and the trust rules read.
REQUIRED_CLAIMS = (
    "sub", "jti", "repository", "repository_id", "job_workflow_ref", "ref", "event_name",
    "run_id",
)  # fmt: skip
MAX_TOKEN_CHARS = 16 * 1024  # a GitHub token is ~1-2 KB; a bigger one is refused unread
MAX_CLAIM_CHARS = 512
_SEGMENT = re.compile(r"[A-Za-z0-9_-]+")
_REPOSITORY = re.compile(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+")
_DIGITS = re.compile(r"[0-9]{1,20}")


@dataclass(frozen=True)
class OidcClaims:
    """A verified token's identity: the workflow run that asked for it."""

    subject: str
    jti: str
    repository: str  # owner/name
    repository_id: str
    job_workflow_ref: str  # owner/name/.github/workflows/deploy.yml@refs/heads/main
    ref: str
    event_name: str
    run_id: str
    issued_at: int
    expires_at: int
    claims: Mapping[str, Any]  # every claim, for rules on ones not named above

    @property
    def actor(self) -> str:
        return audit_actor(self.repository, self.job_workflow_ref, self.run_id)


def _b64json(segment: str) -> Any:
    padded = segment + "=" * (-len(segment) % 4)
    return json.loads(base64.urlsafe_b64decode(padded))


def split_token(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The unverified header and payload of a compact JWS; OidcInvalid if it is not one."""
    if len(token) > MAX_TOKEN_CHARS:
        raise OidcInvalid("the OIDC token is too long")
    parts = token.split(".")
    # An empty signature is read (so that `alg: none` is refused as such, by its alg).
    if len(parts) != 3 or not all(_SEGMENT.fullmatch(p) for p in parts[:2]):
        raise OidcInvalid()
    if parts[2] and not _SEGMENT.fullmatch(parts[2]):
        raise OidcInvalid()
    try:
        header, payload = _b64json(parts[0]), _b64json(parts[1])
    except (ValueError, binascii.Error):  # JSONDecodeError and UnicodeDecodeError included
        raise OidcInvalid() from None
    if not isinstance(header, dict) or not isinstance(payload, dict):
        raise OidcInvalid()
    return header, payload


def looks_like_oidc(token: str) -> bool:
    """Whether a bearer token is meant for the OIDC path: a compact JWS, its header and payload
    JSON objects, the header naming an `alg`, and not Artemis's own deploy-session token (whose
    `iss` is SESSION_ISSUER: presented as a bearer it keeps the GitHub path and its 401, as it
    always has). No network, no signature check. A GitHub token (`gho_…`, `ghp_…`, `ghs_…`) is
    never a JWS, so it keeps its own path; every other JWS comes here, so a forged one
    (`alg: none`, another issuer, ...) is refused for what it is, with its own code, rather
    than sent on to GitHub."""
    try:
        header, payload = split_token(token)
    except OidcInvalid:
        return False
    return isinstance(header.get("alg"), str) and payload.get("iss") != SESSION_ISSUER


def _text(claims: Mapping[str, Any], name: str) -> str:
    value = claims.get(name)
    if not isinstance(value, str) or not value or len(value) > MAX_CLAIM_CHARS:
        raise OidcClaimsError(f"the OIDC token's {name} claim is missing or invalid")
    return value


def claims_from(claims: Mapping[str, Any], *, max_lifetime: float) -> OidcClaims:
    """The identity of a token whose signature, issuer, audience and times were verified;
    OidcClaims (the error) if a required claim is missing or malformed, or the token was
    issued to live longer than `max_lifetime` seconds (GitHub's live minutes: a long-lived
    one was not minted by a workflow run)."""
    values = {name: _text(claims, name) for name in REQUIRED_CLAIMS}
    if not _REPOSITORY.fullmatch(values["repository"]):
        raise OidcClaimsError("the OIDC token's repository claim is not owner/name")
    for name in ("repository_id", "run_id"):
        if not _DIGITS.fullmatch(values[name]):
            raise OidcClaimsError(f"the OIDC token's {name} claim is not a number")
    iat, exp = claims.get("iat"), claims.get("exp")
    if type(iat) is not int or type(exp) is not int:  # not a float, not a bool
        raise OidcClaimsError("the OIDC token's iat and exp must be integers")
    if exp - iat > max_lifetime:
        raise OidcClaimsError("the OIDC token was issued for too long a lifetime")
    return OidcClaims(
        subject=values["sub"],
        jti=values["jti"],
        repository=values["repository"],
        repository_id=values["repository_id"],
        job_workflow_ref=values["job_workflow_ref"],
        ref=values["ref"],
        event_name=values["event_name"],
        run_id=values["run_id"],
        issued_at=iat,
        expires_at=exp,
        claims=dict(claims),
    )


def audit_actor(repository: str, job_workflow_ref: str, run_id: str) -> str:
    """`repo:owner/name:.github/workflows/deploy.yml@run/123`: the repository, the workflow
    that ran (its path in the repository; a reusable workflow of another repository keeps its
    owner/name) and the run."""
    workflow = job_workflow_ref.split("@", 1)[0]
    prefix = repository + "/"
    if workflow.lower().startswith(prefix.lower()):
        workflow = workflow[len(prefix) :]
    return f"repo:{repository}:{workflow}@run/{run_id}"
