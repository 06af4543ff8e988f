"""artemis.session: the deploy-session token's layout, its claims (the granting team included;
every claim required and typed), the algorithm pin, expiry, and every refusal."""

import base64
import hashlib
import hmac
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from artemis import errors
from artemis.session import ISSUER, SessionClaims, WorkflowGrant, issue, verify

# Some tests sign with deliberately short keys (the configuration refuses keys under 32 bytes).
pytestmark = pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")

KEY = b"k" * 32
OTHER_KEY = b"j" * 32
NOW = 1_776_694_522.75  # 2026-04-20T14:15:22.75Z
TTL = 900
DEPLOY = "20260420-141522-abc1234"
HEADER = {"alg": "HS256", "typ": "JWT"}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def claims_json(**overrides: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "sub": "octocat",
        "site": "www",
        "deployId": DEPLOY,
        "team": "staff",
        "iss": ISSUER,
        "iat": 1_776_694_522,
        "exp": 1_776_694_522 + TTL,
    }
    for name, value in overrides.items():
        if value is ...:
            payload.pop(name, None)
        else:
            payload[name] = value
    return payload


def forge(
    payload: dict[str, Any] | bytes,
    *,
    header: dict[str, Any] | bytes | None = None,
    key: bytes = KEY,
    alg: str = "sha256",
) -> str:
    """A token signed with `key`, whatever its header and payload say."""
    if header is None:
        header = HEADER
    head = header if isinstance(header, bytes) else json.dumps(header).encode()
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    signing_input = b64(head) + "." + b64(body)
    signature = hmac.new(key, signing_input.encode(), alg).digest()
    return signing_input + "." + b64(signature)


def mint(**overrides: Any) -> tuple[str, SessionClaims]:
    args: dict[str, Any] = {
        "login": "octocat",
        "site": "www",
        "deploy_id": DEPLOY,
        "team": "staff",
        "key": KEY,
        "ttl_seconds": TTL,
        "now": NOW,
    }
    args.update(overrides)
    return issue(**args)


def assert_invalid(token: str, key: bytes = KEY, now: float = NOW) -> None:
    with pytest.raises(errors.JwtInvalid) as caught:
        verify(token, key, now=now)
    assert caught.value.status == 403
    assert caught.value.code == "jwt_invalid"


# --- issue ------------------------------------------------------------------------------------


def test_round_trip() -> None:
    token, claims = mint()
    assert claims == SessionClaims(
        sub="octocat",
        site="www",
        deploy_id=DEPLOY,
        team="staff",
        iat=1_776_694_522,
        exp=1_776_694_522 + TTL,
    )
    assert verify(token, KEY, now=NOW) == claims


def test_token_layout_matches_the_spec() -> None:
    token, _ = mint()
    header, payload, signature = token.split(".")
    assert unb64(header) == b'{"alg":"HS256","typ":"JWT"}'
    assert json.loads(unb64(payload)) == claims_json()
    assert "=" not in token
    expected = hmac.new(KEY, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    assert unb64(signature) == expected


def test_iat_and_exp_are_integers() -> None:
    token, claims = mint(now=100.999, ttl_seconds=60)
    body = json.loads(unb64(token.split(".")[1]))
    assert (body["iat"], body["exp"]) == (100, 160)
    assert type(body["iat"]) is int and type(body["exp"]) is int
    assert (claims.iat, claims.exp) == (100, 160)


# --- a workflow run's session: granted by a trust rule, not a team ---------------------------

GRANT = WorkflowGrant(rule="tr_0123456789abcdef0123", event="pull_request", aliases=("pr-*",))
RUN = "repo:octo/www:.github/workflows/deploy.yml@run/42"


def grant_json(**overrides: Any) -> dict[str, Any]:
    grant = {"team": ..., "sub": RUN, "rule": GRANT.rule, "event": GRANT.event,
             "aliases": list(GRANT.aliases), **overrides}  # fmt: skip
    return claims_json(**grant)


def test_a_trust_rule_grant_round_trips() -> None:
    token, claims = mint(login=RUN, team=None, workflow=GRANT)
    assert (claims.team, claims.workflow) == (None, GRANT)
    assert verify(token, KEY, now=NOW) == claims
    body = json.loads(unb64(token.split(".")[1]))
    assert "team" not in body and body["aliases"] == ["pr-*"] and body["rule"] == GRANT.rule


@pytest.mark.parametrize(
    "grant", [{"team": "staff", "workflow": GRANT}, {"team": None}], ids=["both", "neither"]
)
def test_a_session_has_exactly_one_grant_when_issued(grant: dict[str, Any]) -> None:
    with pytest.raises(errors.JwtSignFailed):
        mint(**grant)


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({"team": "staff"}, id="a-team-beside-the-rule"),
        pytest.param({"rule": ...}, id="no-rule"),
        pytest.param({"event": ...}, id="no-event"),
        pytest.param({"aliases": ...}, id="no-aliases"),
        pytest.param({"rule": ""}, id="empty-rule"),
        pytest.param({"event": 1}, id="event-not-a-string"),
        pytest.param({"aliases": []}, id="no-alias-listed"),
        pytest.param({"aliases": "pr-*"}, id="aliases-not-a-list"),
        pytest.param({"aliases": ["pr-*", ""]}, id="an-empty-alias"),
        pytest.param({"aliases": ["a"] * 21}, id="too-many-aliases"),
    ],
)
def test_a_malformed_rule_grant_is_invalid(overrides: dict[str, Any]) -> None:
    assert verify(forge(grant_json()), KEY, now=NOW).workflow == GRANT  # the control
    assert_invalid(forge(grant_json(**overrides)))


def test_g2_team_claim_is_carried() -> None:
    token, claims = mint(team="release-team")
    assert claims.team == "release-team"
    assert verify(token, KEY, now=NOW).team == "release-team"


def test_non_ascii_claims_round_trip() -> None:
    token, claims = mint(login="ōctocat", site="café")
    assert verify(token, KEY, now=NOW) == claims


@pytest.mark.parametrize(
    "overrides",
    [
        {"login": ""},
        {"site": ""},
        {"deploy_id": ""},
        {"team": ""},
        {"key": b""},
        {"ttl_seconds": 0},
        {"ttl_seconds": -1},
        {"now": float("nan")},
        {"now": float("inf")},
    ],
)
def test_issue_refuses_what_verify_would_refuse(overrides: dict[str, Any]) -> None:
    with pytest.raises(errors.JwtSignFailed) as caught:
        mint(**overrides)
    assert caught.value.status == 500


@given(
    st.text(min_size=1),
    st.text(min_size=1),
    st.text(min_size=1),
    st.text(min_size=1),
    st.binary(min_size=1, max_size=100),
    st.integers(min_value=1, max_value=10**6),
    st.integers(min_value=0, max_value=4 * 10**9),
)
def test_round_trip_property(
    login: str, site: str, deploy_id: str, team: str, key: bytes, ttl: int, now: int
) -> None:
    token, claims = issue(
        login=login, site=site, deploy_id=deploy_id, team=team, key=key, ttl_seconds=ttl, now=now
    )
    assert verify(token, key, now=now) == claims
    assert (claims.sub, claims.site, claims.deploy_id, claims.team) == (
        login,
        site,
        deploy_id,
        team,
    )


# --- expiry ----------------------------------------------------------------------------------


def test_expired_token_raises_jwt_expired() -> None:
    token, claims = mint()
    with pytest.raises(errors.JwtExpired) as caught:
        verify(token, KEY, now=claims.exp + 1)
    assert caught.value.status == 401
    assert caught.value.code == "jwt_expired"


def test_no_leeway_at_exp() -> None:
    token, claims = mint()
    assert verify(token, KEY, now=claims.exp - 0.001) == claims
    with pytest.raises(errors.JwtExpired):
        verify(token, KEY, now=claims.exp)


def test_nan_clock_fails_closed() -> None:
    token, _ = mint()
    with pytest.raises(errors.JwtExpired):
        verify(token, KEY, now=float("nan"))


def test_expired_and_badly_signed_is_invalid_not_expired() -> None:
    """Expiry is judged only after the signature verifies."""
    token, claims = mint()
    assert_invalid(token, key=OTHER_KEY, now=claims.exp + 10)
    assert_invalid(forge(claims_json(exp=1), key=OTHER_KEY))


def test_expired_with_wrong_issuer_is_invalid() -> None:
    assert_invalid(forge(claims_json(exp=1, iss="other")))


def test_forged_expired_token_with_correct_key_is_expired() -> None:
    with pytest.raises(errors.JwtExpired):
        verify(forge(claims_json(exp=1)), KEY, now=NOW)


# --- tampering, keys -------------------------------------------------------------------------


def test_tampered_payload_is_invalid() -> None:
    token, _ = mint()
    header, _, signature = token.split(".")
    evil = b64(json.dumps(claims_json(site="other-site")).encode())
    assert_invalid(f"{header}.{evil}.{signature}")


def test_tampered_header_is_invalid() -> None:
    token, _ = mint()
    _, payload, signature = token.split(".")
    other_header = b64(b'{"typ":"JWT","alg":"HS256"}')
    assert_invalid(f"{other_header}.{payload}.{signature}")


def test_tampered_signature_is_invalid() -> None:
    token, _ = mint()
    header, payload, signature = token.split(".")
    raw = bytearray(unb64(signature))
    raw[0] ^= 1
    assert_invalid(f"{header}.{payload}.{b64(bytes(raw))}")
    assert_invalid(f"{header}.{payload}.{b64(bytes(raw[:-1]))}")  # truncated
    assert_invalid(f"{header}.{payload}.")  # empty


def test_signature_with_stray_trailing_bits_is_invalid() -> None:
    token, _ = mint()
    header, payload, signature = token.split(".")
    # 32 bytes → 43 chars; the last char carries 2 unused bits. Set them.
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(signature[-1])
    variant = signature[:-1] + alphabet[last ^ 1]
    assert unb64(variant) == unb64(signature)  # same bytes, another spelling
    assert_invalid(f"{header}.{payload}.{variant}")


@pytest.mark.parametrize("suffix", ["=", "==", " ", "\n"])
def test_padding_or_whitespace_is_invalid(suffix: str) -> None:
    token, _ = mint()
    assert_invalid(token + suffix)


def test_wrong_key_is_invalid() -> None:
    token, _ = mint()
    assert_invalid(token, key=OTHER_KEY)


@pytest.mark.parametrize("key", [KEY + b"k", KEY[:-1], KEY * 3, b"k"])
def test_key_of_different_length_is_invalid(key: bytes) -> None:
    token, _ = mint()
    assert_invalid(token, key=key)


def test_empty_verification_key_refuses_everything() -> None:
    token, _ = mint(key=b"\x00")
    assert_invalid(forge(claims_json(), key=b""), key=b"")
    assert_invalid(token, key=b"")


# --- algorithm allow-list ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [
        {"alg": "none", "typ": "JWT"},
        {"alg": "None"},
        {"alg": "HS384", "typ": "JWT"},
        {"alg": "HS512"},
        {"alg": "RS256", "typ": "JWT"},
        {"alg": "ES256"},
        {"alg": "hs256"},
        {"alg": "HS256 "},
        {"alg": ["HS256"]},
        {"alg": None},
        {"typ": "JWT"},  # missing alg
        {},
    ],
)
def test_algorithm_other_than_hs256_is_invalid(header: dict[str, Any]) -> None:
    assert_invalid(forge(claims_json(), header=header))


def test_alg_none_with_empty_signature_is_invalid() -> None:
    head = b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    body = b64(json.dumps(claims_json()).encode())
    assert_invalid(f"{head}.{body}.")


def test_hs384_signed_with_the_key_is_invalid() -> None:
    assert_invalid(forge(claims_json(), header={"alg": "HS384", "typ": "JWT"}, alg="sha384"))


def test_header_without_typ_is_accepted() -> None:
    token = forge(claims_json(), header={"alg": "HS256"})
    assert verify(token, KEY, now=NOW).sub == "octocat"


# --- claims -----------------------------------------------------------------------------------


@pytest.mark.parametrize("iss", ["", "Artemis", "other", None, 1, ...])
def test_wrong_issuer_is_invalid(iss: Any) -> None:
    assert_invalid(forge(claims_json(iss=iss)))


@pytest.mark.parametrize("claim", ["sub", "site", "deployId", "team", "iat", "exp"])
def test_g33_missing_claim_is_invalid(claim: str) -> None:
    assert_invalid(forge(claims_json(**{claim: ...})))


@pytest.mark.parametrize("claim", ["sub", "site", "deployId", "team"])
@pytest.mark.parametrize("value", ["", None, 0, 1, True, [], ["x"], {}])
def test_g33_empty_or_non_string_claim_is_invalid(claim: str, value: Any) -> None:
    assert_invalid(forge(claims_json(**{claim: value})))


@pytest.mark.parametrize("claim", ["iat", "exp"])
@pytest.mark.parametrize(
    "value", [None, "1776694522", 1.7e10, 1_776_695_422.0, True, False, [], {}]
)
def test_g33_non_integer_time_claim_is_invalid(claim: str, value: Any) -> None:
    assert_invalid(forge(claims_json(**{claim: value})))


def test_g33_control_a_valid_forged_token_passes() -> None:
    """The forge helper itself produces acceptable tokens, so the G-33 failures are real."""
    claims = verify(forge(claims_json()), KEY, now=NOW)
    assert claims.deploy_id == DEPLOY and claims.team == "staff"


def test_extra_claims_are_ignored() -> None:
    assert verify(forge(claims_json(nbf=0, aud="x")), KEY, now=NOW).sub == "octocat"


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"not json",
        b"[]",
        b'"string"',
        b"null",
        b"\xff\xfe",
        json.dumps(claims_json()).replace('"exp": 1776695422', '"exp": NaN').encode(),
        json.dumps(claims_json()).replace('"exp": 1776695422', '"exp": Infinity').encode(),
        json.dumps(claims_json()).encode() + b" trailing",
        b"[" * 100_000 + b"]" * 100_000,
    ],
)
def test_signed_but_malformed_payload_is_invalid(payload: bytes) -> None:
    assert_invalid(forge(payload))


@pytest.mark.parametrize(
    "header",
    [b"", b"not json", b"[]", b"\xff", b"[" * 5000, b'{"alg": NaN}'],
)
def test_malformed_header_is_invalid(header: bytes) -> None:
    assert_invalid(forge(claims_json(), header=header))


# --- malformed strings ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "token",
    [
        "",
        ".",
        "..",
        "...",
        "a.b",
        "a.b.c.d",
        "a.b.c",
        "!!!.!!!.!!!",
        "eyJ.eyJ.sig",
        "Bearer x.y.z",
        "é.é.é",
        "\x00.\x00.\x00",
        "\ud800.\ud800.\ud800",  # lone surrogates
        "eyJhbGciOiJIUzI1NiJ9.\udcff.AAAA",
        "a" * 100_000,
    ],
)
def test_malformed_token_is_invalid(token: str) -> None:
    assert_invalid(token)


def test_token_with_extra_segment_is_invalid() -> None:
    token, _ = mint()
    assert_invalid(token + ".x")
    assert_invalid(token + ".")


def test_oversized_token_is_invalid_even_if_signed() -> None:
    token = forge(claims_json(padding="x" * 10_000))
    assert_invalid(token)


@given(st.text())
def test_fuzz_arbitrary_strings_only_raise_jwt_errors(token: str) -> None:
    with pytest.raises((errors.JwtInvalid, errors.JwtExpired)):
        verify(token, KEY, now=NOW)


SEGMENT = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=")


@given(SEGMENT, SEGMENT, SEGMENT)
def test_fuzz_base64_shaped_segments(a: str, b: str, c: str) -> None:
    with pytest.raises((errors.JwtInvalid, errors.JwtExpired)):
        verify(f"{a}.{b}.{c}", KEY, now=NOW)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=10,
)


@given(st.dictionaries(st.sampled_from(["alg", "typ", "kid"]), JSON), JSON)
def test_fuzz_signed_json_never_raises_anything_else(header: dict[str, Any], body: Any) -> None:
    token = forge(json.dumps(body).encode(), header=json.dumps(header).encode())
    with pytest.raises((errors.JwtInvalid, errors.JwtExpired)):
        verify(token, KEY, now=NOW)


@given(
    st.fixed_dictionaries(
        {},
        optional={
            "sub": JSON,
            "site": JSON,
            "deployId": JSON,
            "team": JSON,
            "iss": st.just(ISSUER) | JSON,
            "iat": st.integers() | JSON,
            "exp": st.integers() | JSON,
        },
    )
)
def test_fuzz_signed_claims_are_accepted_only_when_complete(payload: dict[str, Any]) -> None:
    complete = (
        payload.get("iss") == ISSUER
        and all(
            isinstance(payload.get(c), str) and payload[c]
            for c in ("sub", "site", "deployId", "team")
        )
        and all(type(payload.get(c)) is int for c in ("iat", "exp"))
    )
    token = forge(payload)
    if not complete:
        assert_invalid(token)
    elif payload["exp"] <= NOW:
        with pytest.raises(errors.JwtExpired):
            verify(token, KEY, now=NOW)
    else:
        assert verify(token, KEY, now=NOW).sub == payload["sub"]


@given(st.data())
def test_fuzz_mutating_one_character_of_a_valid_token(data: st.DataObject) -> None:
    token, _ = mint()
    index = data.draw(st.integers(min_value=0, max_value=len(token) - 1))
    replacement = data.draw(st.characters())
    mutated = token[:index] + replacement + token[index + 1 :]
    if mutated == token:
        return
    assert_invalid(mutated)


# --- PyJWT ------------------------------------------------------------------------------------


def test_a_session_token_is_a_standard_hs256_jwt() -> None:
    import jwt

    token, _ = mint()
    decoded = jwt.decode(
        token, KEY, algorithms=["HS256"], issuer=ISSUER, options={"verify_exp": False}
    )
    assert decoded == claims_json()
    assert jwt.get_unverified_header(token) == HEADER


@pytest.mark.parametrize(
    "key",
    [
        b"-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----\n",
        b"ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7 someone@example",
    ],
)
def test_a_key_that_looks_like_a_public_key_signs_nothing_and_verifies_nothing(key: bytes) -> None:
    """PyJWT refuses such an HMAC key (a public key must never verify an HS256 token):
    issuing is a 500, verifying a 403."""
    with pytest.raises(errors.JwtSignFailed):
        mint(key=key)
    assert_invalid(forge(claims_json(), key=key), key=key)


def test_importing_the_module_does_not_import_pyjwt() -> None:
    """The API imports session at every cold start; PyJWT (and cryptography's X.509 modules)
    load on the first issue or verify."""
    import subprocess
    import sys

    code = "import sys, artemis.session; sys.exit('jwt' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
