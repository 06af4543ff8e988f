"""The OIDC verifier against the fake GitHub's issuer over real HTTP, remembering token ids in
real Postgres: the happy path and the hostile corpus, each refused with its own code."""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from artemis.db.connection import Database
from artemis.errors import ArtemisError, TrustRepository
from artemis.github_transport import GitHubTransport
from artemis.oidc import OidcVerifier, replay_in_database
from artemis.oidc_claims import looks_like_oidc
from artemis_local.fake_github import OIDC_JWKS_PATH, OIDC_KID, FakeGitHub
from tests.integration.oidc_forgery import alg_none, b64, hs256_with_public_key
from tests.integration.test_github_client import Clock

AUDIENCE = "artemis"
DISCOVERY = "/.well-known/openid-configuration"


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def transport() -> Iterator[GitHubTransport]:
    own = GitHubTransport()
    yield own
    own.close()


@pytest.fixture
def verifier(
    fake: FakeGitHub, db: Database, clock: Clock, transport: GitHubTransport
) -> OidcVerifier:
    return OidcVerifier(
        fake.url, AUDIENCE, remember=replay_in_database(db), transport=transport, clock=clock,
        timeout=2.0,
    )  # fmt: skip


def mint(fake: FakeGitHub, headers: dict[str, Any] | None = None, **overrides: Any) -> str:
    return fake.oidc.mint(overrides, audience=AUDIENCE, headers=headers)


def code_of(verifier: OidcVerifier, token: str) -> tuple[str, int]:
    with pytest.raises(ArtemisError) as info:
        verifier.verify(token)
    return info.value.code, info.value.status


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def key_fetches(fake: FakeGitHub) -> int:
    return fake.count(OIDC_JWKS_PATH, exact=True)


# --- the happy path -------------------------------------------------------------------------


def test_a_workflow_token_verifies_once(fake: FakeGitHub, verifier: OidcVerifier) -> None:
    token = mint(fake, repository="freeCodeCamp/news", run_id="4242")
    assert looks_like_oidc(token)
    identity = verifier.verify(token)
    assert identity.repository == "freeCodeCamp/news"
    assert identity.actor == "repo:freeCodeCamp/news:.github/workflows/deploy.yml@run/4242"
    assert identity.claims["aud"] == AUDIENCE
    assert code_of(verifier, token) == ("oidc_replayed", 401)
    # the keys were read once and kept
    verifier.verify(mint(fake))
    assert (fake.count(DISCOVERY, exact=True), key_fetches(fake)) == (1, 1)


def test_the_mint_endpoint_answers_like_actions(fake: FakeGitHub, verifier: OidcVerifier) -> None:
    """As a runner's ACTIONS_ID_TOKEN_REQUEST_URL: a bearer-authenticated request whose URL
    already carries a query, `&audience=` appended; the fake reads the run's claims from the
    other parameters, and a POST body may add more."""
    request = urllib.request.Request(
        f"{fake.url}/_oidc/token?api-version=2.0&event_name=workflow_dispatch&audience={AUDIENCE}",
        data=json.dumps({"repository": "freeCodeCamp/learn"}).encode(),
        headers={"Content-Type": "application/json", "Authorization": "bearer runner-token"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=5) as answer:
        value = json.load(answer)["value"]
    identity = verifier.verify(value)
    assert (identity.repository, identity.event_name) == ("freeCodeCamp/learn", "workflow_dispatch")
    assert identity.subject == "repo:freeCodeCamp/learn:ref:refs/heads/main"
    assert "api-version" not in identity.claims


def test_the_mint_endpoint_wants_the_runners_bearer(fake: FakeGitHub) -> None:
    request = urllib.request.Request(f"{fake.url}/_oidc/token?audience={AUDIENCE}")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=5)
    assert refused.value.code == 401


def test_an_audience_among_several_is_accepted(fake: FakeGitHub, verifier: OidcVerifier) -> None:
    verifier.verify(mint(fake, aud=["https://github.com/freeCodeCamp", AUDIENCE]))


# --- refused before any key is read ---------------------------------------------------------


def test_alg_none_is_refused_unread(fake: FakeGitHub, verifier: OidcVerifier) -> None:
    assert code_of(verifier, alg_none(fake.oidc, AUDIENCE)) == ("oidc_alg", 401)
    assert key_fetches(fake) == 0


def test_hs256_signed_with_the_public_key_is_refused(
    fake: FakeGitHub, verifier: OidcVerifier
) -> None:
    assert code_of(verifier, hs256_with_public_key(fake.oidc, AUDIENCE)) == ("oidc_alg", 401)
    assert key_fetches(fake) == 0


def test_another_rsa_algorithm_is_refused(fake: FakeGitHub, verifier: OidcVerifier) -> None:
    token = jwt.encode(
        fake.oidc.claims(audience=AUDIENCE), fake.oidc.private_key, algorithm="RS512",
        headers={"kid": OIDC_KID},
    )  # fmt: skip
    assert code_of(verifier, token) == ("oidc_alg", 401)


@pytest.mark.parametrize("token", ["", "gho_abc", "a.b.c", "e30.e30"])
def test_a_malformed_token_is_refused(verifier: OidcVerifier, token: str) -> None:
    assert code_of(verifier, token) == ("oidc_invalid", 401)


def test_a_header_without_a_key_id_is_refused(fake: FakeGitHub, verifier: OidcVerifier) -> None:
    token = jwt.encode(
        fake.oidc.claims(audience=AUDIENCE), fake.oidc.private_key, algorithm="RS256"
    )
    assert code_of(verifier, token) == ("oidc_invalid", 401)


# --- refused by the signature or the claims -------------------------------------------------


def test_another_key_under_the_issuers_key_id_is_refused(
    fake: FakeGitHub, verifier: OidcVerifier
) -> None:
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = jwt.encode(
        fake.oidc.claims(audience=AUDIENCE), stranger, algorithm="RS256",
        headers={"kid": OIDC_KID},
    )  # fmt: skip
    assert code_of(verifier, token) == ("oidc_signature", 401)


@pytest.mark.parametrize("pointer", ["jku", "x5u"])
def test_a_header_pointing_at_other_keys_is_ignored(
    fake: FakeGitHub, verifier: OidcVerifier, pointer: str
) -> None:
    """Only the issuer's JWKS is read: a header naming keys elsewhere changes nothing."""
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = jwt.encode(
        fake.oidc.claims(audience=AUDIENCE), stranger, algorithm="RS256",
        headers={"kid": OIDC_KID, pointer: "http://127.0.0.1:9/jwks"},
    )  # fmt: skip
    assert code_of(verifier, token) == ("oidc_signature", 401)


def test_a_tampered_payload_is_refused(fake: FakeGitHub, verifier: OidcVerifier) -> None:
    header, _, signature = mint(fake).split(".")
    forged = b64(json.dumps(fake.oidc.claims({"repository": "evil/site"}, AUDIENCE)).encode())
    assert code_of(verifier, f"{header}.{forged}.{signature}") == ("oidc_signature", 401)


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        pytest.param(
            {"iss": "https://token.actions.githubusercontent.com"}, "oidc_issuer", id="iss"
        ),
        pytest.param({"iss": None}, "oidc_claims", id="no-iss"),
        pytest.param({"aud": "https://github.com/freeCodeCamp"}, "oidc_audience", id="aud"),
        pytest.param({"aud": ["other", "artemis-staging"]}, "oidc_audience", id="aud-list"),
        pytest.param({"aud": None}, "oidc_claims", id="no-aud"),
        pytest.param({"iat": -900, "nbf": -900, "exp": -61}, "oidc_expired", id="expired"),
        pytest.param({"nbf": 600, "exp": 900}, "oidc_not_yet_valid", id="nbf-future"),
        pytest.param({"iat": 600, "nbf": None, "exp": 900}, "oidc_not_yet_valid", id="iat-future"),
        pytest.param({"exp": 7200}, "oidc_claims", id="lifetime-too-long"),
        pytest.param({"exp": None}, "oidc_claims", id="no-exp"),
        pytest.param({"iat": None}, "oidc_claims", id="no-iat"),
        pytest.param({"jti": None}, "oidc_claims", id="no-jti"),
        pytest.param({"repository": None}, "oidc_claims", id="no-repository"),
        pytest.param({"repository_id": None}, "oidc_claims", id="no-repository_id"),
        pytest.param({"job_workflow_ref": None}, "oidc_claims", id="no-job_workflow_ref"),
        pytest.param({"ref": None}, "oidc_claims", id="no-ref"),
        pytest.param({"event_name": None}, "oidc_claims", id="no-event_name"),
        pytest.param({"run_id": None}, "oidc_claims", id="no-run_id"),
        pytest.param({"sub": None}, "oidc_claims", id="no-sub"),
    ],
)
def test_a_bad_claim_is_refused_with_its_code(
    fake: FakeGitHub, verifier: OidcVerifier, overrides: dict[str, Any], code: str
) -> None:
    now = int(time.time())
    for name in ("iat", "nbf", "exp"):  # times are given relative to now
        if overrides.get(name) is not None:
            overrides[name] += now
    assert code_of(verifier, mint(fake, **overrides)) == (code, 401)


def test_times_within_the_leeway_pass(fake: FakeGitHub, verifier: OidcVerifier) -> None:
    now = int(time.time())
    verifier.verify(mint(fake, iat=now - 300, nbf=now - 300, exp=now - 30))
    verifier.verify(mint(fake, iat=now + 30, nbf=now + 30, exp=now + 300))


def test_a_refused_token_is_not_spent(fake: FakeGitHub, verifier: OidcVerifier) -> None:
    """Only an accepted token's jti is remembered: a refusal leaves nothing behind."""
    jti = "same-jti-for-both"
    assert code_of(verifier, mint(fake, jti=jti, aud="other")) == ("oidc_audience", 401)
    verifier.verify(mint(fake, jti=jti))
    assert code_of(verifier, mint(fake, jti=jti)) == ("oidc_replayed", 401)


def test_a_token_the_check_refuses_is_not_spent(fake: FakeGitHub, verifier: OidcVerifier) -> None:
    """The caller's own check (the trust rules) runs before the token is spent, and what it
    returns is verify's answer."""
    token = mint(fake)

    def refuse(identity: Any) -> None:
        raise TrustRepository()

    with pytest.raises(TrustRepository):
        verifier.verify(token, refuse)
    assert verifier.verify(token, lambda identity: identity.repository) == (
        "freeCodeCamp/example-site"
    )
    assert code_of(verifier, token) == ("oidc_replayed", 401)


def test_an_unrecorded_token_is_refused(fake: FakeGitHub, transport: GitHubTransport) -> None:
    """When the id cannot be recorded the token could be replayed later: refuse it, 502."""
    down = Database(f"postgresql://postgres@127.0.0.1:{closed_port()}/postgres", max_size=1,
                    timeout=2.0)  # fmt: skip
    verifier = OidcVerifier(fake.url, AUDIENCE, remember=replay_in_database(down),
                            transport=transport)  # fmt: skip
    try:
        assert code_of(verifier, mint(fake)) == ("oidc_replay_failed", 502)
    finally:
        down.close()


def test_a_replay_is_refused_by_another_verifier_too(
    fake: FakeGitHub, verifier: OidcVerifier, db: Database, transport: GitHubTransport
) -> None:
    """The remembered ids are in Postgres: every environment sees them."""
    token = mint(fake)
    verifier.verify(token)
    other = OidcVerifier(fake.url, AUDIENCE, remember=replay_in_database(db), transport=transport)
    assert code_of(other, token) == ("oidc_replayed", 401)


def test_expired_ids_are_purged(fake: FakeGitHub, verifier: OidcVerifier, db: Database) -> None:
    with db.transaction() as conn:
        conn.execute(
            "INSERT INTO oidc_replay (jti, expires_at) VALUES ('old', now() - interval '1 minute')"
        )
    verifier.verify(mint(fake))
    with db.transaction() as conn:
        row = conn.execute("SELECT count(*) FROM oidc_replay WHERE jti = 'old'").fetchone()
    assert row == (0,)


# --- keys: unknown ids, refreshes, an issuer that is down or misconfigured --------------------


def test_an_unknown_key_id_refreshes_once_then_fails(
    fake: FakeGitHub, verifier: OidcVerifier, clock: Clock
) -> None:
    verifier.verify(mint(fake))
    assert key_fetches(fake) == 1
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    claims = fake.oidc.claims(audience=AUDIENCE)
    unknown = jwt.encode(claims, stranger, algorithm="RS256", headers={"kid": "rotated-key"})
    clock.advance(11)
    assert code_of(verifier, unknown) == ("oidc_unknown_key", 401)
    assert key_fetches(fake) == 2  # one refresh for the unknown id
    for _ in range(5):  # garbage ids within the interval do not reach the issuer
        assert code_of(verifier, unknown) == ("oidc_unknown_key", 401)
    assert key_fetches(fake) == 2
    verifier.verify(mint(fake))  # known keys still serve
    clock.advance(11)
    assert code_of(verifier, unknown) == ("oidc_unknown_key", 401)
    assert key_fetches(fake) == 3


def test_a_rotated_key_is_fetched_on_first_sight(
    fake: FakeGitHub, verifier: OidcVerifier, clock: Clock
) -> None:
    old = mint(fake)
    verifier.verify(mint(fake))
    fake.oidc.rotate("fake-oidc-key-2")
    clock.advance(11)
    identity = verifier.verify(mint(fake))  # its key id is new: one refresh finds it
    assert identity.repository == "freeCodeCamp/example-site"
    assert key_fetches(fake) == 2
    # the withdrawn key stays trusted only until the cache is due a refresh
    clock.advance(3601)
    assert code_of(verifier, old) == ("oidc_unknown_key", 401)


def test_issuer_unreachable_with_no_cached_key(db: Database, transport: GitHubTransport) -> None:
    issuer = f"http://127.0.0.1:{closed_port()}"
    verifier = OidcVerifier(issuer, AUDIENCE, remember=replay_in_database(db), transport=transport)
    claims = {"iss": issuer, "aud": AUDIENCE}
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = jwt.encode(claims, stranger, algorithm="RS256", headers={"kid": "k"})
    assert code_of(verifier, token) == ("oidc_issuer_unavailable", 503)
    assert verifier.last_error is not None
    # within the refresh interval it is not asked again, and the answer stays 503
    assert code_of(verifier, token) == ("oidc_issuer_unavailable", 503)


@pytest.mark.parametrize(
    "fault",
    [
        pytest.param((DISCOVERY, 500), id="discovery-500"),
        pytest.param((OIDC_JWKS_PATH, 503), id="jwks-503"),
        pytest.param((DISCOVERY, 0), id="discovery-dropped"),
        pytest.param((OIDC_JWKS_PATH, 0), id="jwks-dropped"),
        pytest.param((DISCOVERY, 302), id="discovery-redirect"),
    ],
)
def test_issuer_failing_with_no_cached_key(
    fake: FakeGitHub, verifier: OidcVerifier, clock: Clock, fault: tuple[str, int]
) -> None:
    path, status = fault
    fake.fail(path, status, headers={"Location": "https://elsewhere.example/"}, times=1)
    assert code_of(verifier, mint(fake)) == ("oidc_issuer_unavailable", 503)
    clock.advance(11)  # the issuer is back: the next refresh reads the keys
    verifier.verify(mint(fake))


def test_issuer_down_but_a_cached_key_fits(
    fake: FakeGitHub, verifier: OidcVerifier, clock: Clock
) -> None:
    verifier.verify(mint(fake))
    later = [mint(fake), mint(fake)]
    fake.disconnect("/")
    verifier.verify(later[0])
    clock.advance(7200)  # the cached keys are due a refresh, which fails: they still serve
    verifier.verify(later[1])
    assert verifier.last_error is not None


def test_a_stopped_issuer_with_a_cached_key(fake: FakeGitHub, db: Database, clock: Clock) -> None:
    transport = GitHubTransport()
    verifier = OidcVerifier(
        fake.url, AUDIENCE, remember=replay_in_database(db), transport=transport, clock=clock
    )
    verifier.verify(mint(fake))
    token = mint(fake)
    stranger = jwt.encode(
        fake.oidc.claims(audience=AUDIENCE),
        rsa.generate_private_key(public_exponent=65537, key_size=2048),
        algorithm="RS256",
        headers={"kid": "unknown"},
    )
    fake.stop()
    transport.close()  # a kept-alive connection would still reach the stopped server's thread
    try:
        verifier.verify(token)
        clock.advance(11)
        # an id not cached while the issuer is down: it cannot be vouched for
        assert code_of(verifier, stranger) == ("oidc_issuer_unavailable", 503)
    finally:
        transport.close()
        fake.start = lambda: fake  # type: ignore[method-assign]  # the fixture stops it again
        fake.stop = lambda: None  # type: ignore[method-assign]


def test_keys_on_another_origin_are_refused(fake: FakeGitHub, verifier: OidcVerifier) -> None:
    other = f"http://localhost:{fake.server.server_port}{OIDC_JWKS_PATH}"  # another host
    document = json.dumps({"issuer": fake.url, "jwks_uri": other})
    fake.fail(DISCOVERY, 200, body=document)
    assert code_of(verifier, mint(fake)) == ("oidc_issuer_unavailable", 503)
    assert verifier.last_error == "the jwks_uri is not on the issuer's origin"
    assert key_fetches(fake) == 0


def test_a_discovery_document_of_another_issuer_is_refused(
    fake: FakeGitHub, verifier: OidcVerifier
) -> None:
    document = json.dumps({"issuer": "https://evil.example", "jwks_uri": fake.url + OIDC_JWKS_PATH})
    fake.fail(DISCOVERY, 200, body=document)
    assert code_of(verifier, mint(fake)) == ("oidc_issuer_unavailable", 503)
    assert key_fetches(fake) == 0


def test_a_jwks_without_a_usable_key_is_refused(fake: FakeGitHub, verifier: OidcVerifier) -> None:
    jwk = fake.oidc.jwks()["keys"][0]
    keys = [
        {**jwk, "use": "enc"},
        {**jwk, "alg": "RS512"},
        {"kty": "oct", "kid": OIDC_KID, "k": "c2VjcmV0"},
    ]
    fake.fail(OIDC_JWKS_PATH, 200, body=json.dumps({"keys": keys}))
    assert code_of(verifier, mint(fake)) == ("oidc_issuer_unavailable", 503)
