"""The key-free rules of a GitHub Actions OIDC token: routing by shape, the claims, the actor."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from artemis.errors import OidcClaims as OidcClaimsError
from artemis.errors import OidcInvalid
from artemis.oidc_claims import (
    MAX_TOKEN_CHARS,
    REQUIRED_CLAIMS,
    audit_actor,
    claims_from,
    looks_like_oidc,
    split_token,
)

ISSUER = "https://token.actions.githubusercontent.com"


def segment(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


def token(header: Any, payload: Any, signature: str = "c2ln") -> str:
    return f"{segment(header)}.{segment(payload)}.{signature}"


def good_claims(**overrides: Any) -> dict[str, Any]:
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "aud": "artemis",
        "sub": "repo:freeCodeCamp/site:ref:refs/heads/main",
        "jti": "6f1f2b4e-0000-4000-8000-000000000001",
        "repository": "freeCodeCamp/site",
        "repository_id": "123",
        "job_workflow_ref": "freeCodeCamp/site/.github/workflows/deploy.yml@refs/heads/main",
        "ref": "refs/heads/main",
        "event_name": "push",
        "run_id": "987",
        "iat": 1_000,
        "exp": 1_300,
    }
    claims.update(overrides)
    return claims


@pytest.mark.parametrize(
    "candidate",
    [
        pytest.param(token({"alg": "RS256", "kid": "k"}, {"iss": ISSUER}), id="actions-token"),
        pytest.param(token({"alg": "HS256", "kid": "k"}, {"iss": ISSUER}), id="hs256"),
        pytest.param(token({"alg": "none"}, {"iss": ISSUER}), id="alg-none"),
        pytest.param(token({"alg": "RS256"}, {"iss": ISSUER}), id="no-kid"),
        pytest.param(token({"alg": "RS256", "kid": "k"}, {"iss": ISSUER + "/"}), id="other-iss"),
        pytest.param(token({"alg": "RS256", "kid": "k"}, {}), id="no-claims"),
    ],
)
def test_every_jws_is_routed_to_the_oidc_path(candidate: str) -> None:
    """Forged tokens too: they are refused there with their own code, never sent to GitHub."""
    assert looks_like_oidc(candidate)


@pytest.mark.parametrize(
    "candidate",
    [
        pytest.param("gho_16C7e42F292c6912E7710c838347Ae178B4a", id="github-oauth-token"),
        pytest.param("ghp_" + "a" * 36, id="github-pat"),
        pytest.param("ghs_abc.def.ghi", id="three-parts-not-json"),
        pytest.param(token({"kid": "k"}, {"iss": ISSUER}), id="no-alg"),
        pytest.param(token({"alg": 256}, {"iss": ISSUER}), id="alg-not-a-string"),
        pytest.param(token({"alg": "RS256", "kid": "k"}, ["not", "an", "object"]), id="array"),
        pytest.param(token({"alg": "RS256", "kid": "k"}, {"iss": ISSUER}) + ".x", id="4-parts"),
        pytest.param(token({"alg": "HS256", "typ": "JWT"}, {"iss": "artemis"}), id="a-session"),
        pytest.param("a" * (MAX_TOKEN_CHARS + 1), id="too-long"),
        pytest.param("", id="empty"),
    ],
)
def test_anything_else_keeps_the_github_token_path(candidate: str) -> None:
    assert not looks_like_oidc(candidate)


def test_split_token_refuses_what_is_not_a_jws() -> None:
    with pytest.raises(OidcInvalid):
        split_token("a.b")
    with pytest.raises(OidcInvalid):
        split_token("e30.e30.e3=0")  # '=' is not base64url
    header, payload = split_token(token({"alg": "RS256"}, {"iss": ISSUER}))
    assert header == {"alg": "RS256"} and payload == {"iss": ISSUER}


def test_claims_from_names_the_workflow_run() -> None:
    identity = claims_from(good_claims(), max_lifetime=3600)
    assert identity.repository == "freeCodeCamp/site"
    assert identity.run_id == "987"
    assert (identity.issued_at, identity.expires_at) == (1_000, 1_300)
    assert identity.actor == "repo:freeCodeCamp/site:.github/workflows/deploy.yml@run/987"
    assert identity.claims["aud"] == "artemis"


@pytest.mark.parametrize("name", REQUIRED_CLAIMS)
def test_each_required_claim_is_required(name: str) -> None:
    claims = good_claims()
    del claims[name]
    with pytest.raises(OidcClaimsError):
        claims_from(claims, max_lifetime=3600)
    with pytest.raises(OidcClaimsError):
        claims_from(good_claims(**{name: ""}), max_lifetime=3600)
    with pytest.raises(OidcClaimsError):
        claims_from(good_claims(**{name: 5}), max_lifetime=3600)


@pytest.mark.parametrize(
    "overrides",
    [
        {"repository": "no-owner"},
        {"repository": "a/b/c"},
        {"repository_id": "12a"},
        {"run_id": "-1"},
        {"iat": True},
        {"exp": 1_300.5},
        {"exp": 1_000 + 3601},  # lives longer than GitHub's tokens do
        {"jti": "x" * 513},
    ],
)
def test_malformed_claims_are_refused(overrides: dict[str, Any]) -> None:
    with pytest.raises(OidcClaimsError):
        claims_from(good_claims(**overrides), max_lifetime=3600)


def test_the_audit_actor() -> None:
    ref = "freeCodeCamp/site/.github/workflows/deploy.yml@refs/heads/main"
    assert audit_actor("freeCodeCamp/site", ref, "42") == (
        "repo:freeCodeCamp/site:.github/workflows/deploy.yml@run/42"
    )
    # a reusable workflow of another repository keeps its owner/name
    shared = "freeCodeCamp/workflows/.github/workflows/pages.yml@refs/tags/v1"
    assert audit_actor("freeCodeCamp/site", shared, "42") == (
        "repo:freeCodeCamp/site:freeCodeCamp/workflows/.github/workflows/pages.yml@run/42"
    )


def test_the_session_issuer_is_the_sessions() -> None:
    from artemis import oidc_claims, session

    assert oidc_claims.SESSION_ISSUER == session.ISSUER
