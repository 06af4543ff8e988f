"""X-Request-ID echo or replacement, and the bearer token of Authorization."""

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from artemis.request_headers import REQUEST_ID_RE, bearer_token, request_id

HEX24 = re.compile(r"[0-9a-f]{24}")


@pytest.mark.parametrize(
    "inbound",
    ["abc", "9f2c0e", "req-1.2:3_x", "A" * 128, "1-5759e988-bd862e3fe1be46a994272793", "a" * 24],
)
def test_g5_valid_inbound_id_is_echoed(inbound: str) -> None:
    assert request_id(inbound) == inbound


@pytest.mark.parametrize(
    "inbound",
    [
        None,
        "",
        "A" * 129,
        "has space",
        "line\nbreak",
        "trailing\n",
        "tab\t",
        "x/y",
        "é",
        "a;b",
        "k=v",
    ],
)
def test_g5_invalid_inbound_id_is_replaced_by_24_hex(inbound: str | None) -> None:
    generated = request_id(inbound)
    assert HEX24.fullmatch(generated)
    assert generated != inbound


def test_g5_generated_ids_differ() -> None:
    assert len({request_id(None) for _ in range(50)}) == 50


def test_g5_generator_is_used_only_when_needed() -> None:
    assert request_id("bad id", generate=lambda: "fixed") == "fixed"
    assert request_id("good", generate=lambda: "fixed") == "good"


@given(st.text(max_size=200))
def test_g5_output_always_matches_the_pattern(inbound: str) -> None:
    out = request_id(inbound)
    assert REQUEST_ID_RE.fullmatch(out)
    assert out == inbound or HEX24.fullmatch(out)


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("Bearer tok", "tok"),
        ("Bearer ghp_abc.DEF-123", "ghp_abc.DEF-123"),
        ("Bearer a.b.c", "a.b.c"),
        ("Bearer tok ", "tok"),  # trailing whitespace stripped by the server (wire behaviour)
        ("Bearer tok\t", "tok"),
        ("  Bearer tok", "tok"),
        ("\tBearer tok \t ", "tok"),
    ],
)
def test_bearer_accepted(header: str, token: str) -> None:
    assert bearer_token(header) == token


@pytest.mark.parametrize(
    "header",
    [
        None,  # missing header
        "",
        "Basic dXNlcjpwYXNz",  # other scheme
        "Token tok",
        "bearer tok",  # lower-case scheme
        "BEARER tok",
        "Bearer  tok",  # two spaces
        "Bearer\ttok",  # tab after the scheme
        "Bearer to k",  # whitespace inside the token
        "Bearer to\tk",
        "Bearer to\rk",
        "Bearer to\nk",
        "Bearer tok\r\n",
        "Bearer ",  # empty token: arrives as "Bearer"
        "Bearer",
        "Bearer \t",
        "Bearertok",
        "tok",
    ],
)
def test_bearer_refused(header: str | None) -> None:
    assert bearer_token(header) is None


@given(st.text(alphabet=st.characters(blacklist_characters=" \t\r\n"), min_size=1))
def test_bearer_round_trips_any_token_without_whitespace(token: str) -> None:
    assert bearer_token("Bearer " + token) == token


@given(st.text())
def test_bearer_result_never_contains_forbidden_whitespace(header: str) -> None:
    token = bearer_token(header)
    if token is not None:
        assert token and not any(ch in token for ch in " \t\r\n")
        assert header.strip(" \t") == "Bearer " + token
