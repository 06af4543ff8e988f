"""A deploy's metadata (branch, message, pr, repo, ciUrl): the rules init applies, the message's
normalization, the list row's state and creation time; and the OpenAPI document declaring
exactly the rules the server applies."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from artemis import deploy_metadata as dm
from tests.unit.test_openapi_contract import SCHEMAS, _valid

NOW = datetime(2026, 4, 20, 14, 0, tzinfo=UTC)
INIT = SCHEMAS["InitBody"]["properties"]


def _check(**fields: Any) -> dm.DeployMetadata:
    values: dict[str, Any] = {"branch": None, "message": None, "pr": None, "repo": None,
                              "ci_url": None}  # fmt: skip
    values.update(fields)
    return dm.check(**values)


def _refused(field: str, **fields: Any) -> None:
    with pytest.raises(dm.InvalidMetadataValue) as caught:
        _check(**fields)
    assert caught.value.field == field


@pytest.mark.parametrize(
    "branch",
    ["main", "feature/x", "dependabot/npm_and_yarn/lodash-4.17.21", "v1.2", "fix#12", "ünï",
     "renovate/@types-node", "a" * 255, "x.lock.y", "a@b"],
)  # fmt: skip
def test_accepted_branches(branch: str) -> None:
    assert dm.branch_error(branch) is None
    assert _check(branch=branch).branch == branch


@pytest.mark.parametrize(
    "branch",
    ["", "a" * 256, "has space", "tab\there", "new\nline", "esc\x1b[31m", "nul\x00",
     "bidi\u202eevil", "zero\u200bwidth", "bom\ufeff", "del\x7f", "c1\x85", "a..b", "a//b",
     "-x", "/x", "x/", "x.", ".x", "a/.b", "x.lock", "a@{b", "@", "a~1", "a^", "a:b", "a?",
     "a*", "a[b", "a\\b", "lone\ud800"],
)  # fmt: skip
def test_refused_branches(branch: str) -> None:
    assert dm.branch_error(branch) is not None
    _refused("branch", branch=branch)


def test_message_keeps_the_first_line_trimmed_and_capped() -> None:
    assert dm.normalize_message("Fix the footer\n\nLong body\x1b") == "Fix the footer"
    assert dm.normalize_message("  tabs\there  \r\nrest") == "tabs here"
    assert dm.normalize_message("a\u2028b") == "a"  # every line break Python knows
    assert dm.normalize_message("") is None
    assert dm.normalize_message("   \nbody") is None
    long = dm.normalize_message("x" * 1000)
    assert long is not None and len(long) == dm.MESSAGE_MAX and long.endswith("…")
    assert dm.normalize_message("é" * 200) == "é" * 200  # characters, not bytes


@pytest.mark.parametrize(
    "message", ["esc\x1b[2J", "nul\x00", "bell\x07", "bidi\u202e", "zw\u200d", "c1\x9b", "\ud800"]
)
def test_message_with_control_characters_in_its_first_line_is_refused(message: str) -> None:
    _refused("message", message=message)


@pytest.mark.parametrize("pr", [1, 512, dm.PR_MAX])
def test_accepted_prs(pr: int) -> None:
    assert _check(pr=pr).pr == pr


@pytest.mark.parametrize("pr", [0, -1, dm.PR_MAX + 1, 10**40, True])
def test_refused_prs(pr: int) -> None:
    _refused("pr", pr=pr)


@pytest.mark.parametrize(
    "repo", ["freeCodeCamp/www", "o/.github", "a-b/c.d_e-f", "a/" + "r" * 100, "x" * 39 + "/y"]
)
def test_accepted_repos(repo: str) -> None:
    assert dm.repo_error(repo) is None


@pytest.mark.parametrize(
    "repo",
    ["", "www", "o/", "/r", "o/r/x", "-o/r", "o/.", "o/..", "x" * 40 + "/y", "a/" + "r" * 101,
     "o/r\n", "o/r ", "ö/r", "o/r\x00", "o\\r"],
)  # fmt: skip
def test_refused_repos(repo: str) -> None:
    _refused("repo", repo=repo)


@pytest.mark.parametrize(
    "url",
    ["https://github.com/o/r/actions/runs/1", "https://ci.example.com:8443/build?id=1#log",
     "https://host", "https://h/%E2%9C%93"],
)  # fmt: skip
def test_accepted_ci_urls(url: str) -> None:
    assert dm.ci_url_error(url) is None


@pytest.mark.parametrize(
    "url",
    ["http://github.com/x", "javascript:alert(1)", "JAVASCRIPT:alert(1)", "data:text/html,x",
     "https://user:pw@github.com/x", "https://user@github.com/", "https://", "https:///x",
     "https://h/ space", "https://h/\x1b", "https://h/\n", "https://h/✓", "https:\\\\h\\x",
     "https://h\\@evil/", "//github.com/x", "https://[::1]/", "ftp://h/",
     "https://h/" + "x" * dm.CI_URL_MAX],
)  # fmt: skip
def test_refused_ci_urls(url: str) -> None:
    assert dm.ci_url_error(url) is not None
    _refused("ciUrl", ci_url=url)


def test_nothing_sent_is_nothing_recorded() -> None:
    assert _check() == dm.DeployMetadata()
    assert dm.DeployMetadata().as_json() == {}
    meta = _check(branch="main", pr=3, ci_url="https://h/r")
    assert meta.as_json() == {"branch": "main", "pr": 3, "ciUrl": "https://h/r"}


@pytest.mark.parametrize(
    ("index_state", "age", "tombstoned", "state"),
    [("pending", 10, False, "pending"), ("pending", 901, False, "expired"),
     ("pending", 900, False, "pending"), ("active", 10**6, False, "live"),
     ("active", 0, True, "tombstoned"), (None, 0, True, "tombstoned"), (None, 0, False, None)],
)  # fmt: skip
def test_deploy_state(index_state: str | None, age: int, tombstoned: bool, state: str) -> None:
    created = NOW - timedelta(seconds=age)
    assert dm.deploy_state(index_state=index_state, created_at=created, tombstoned=tombstoned,
                           session_ttl_seconds=900, now=NOW) == state  # fmt: skip


def test_created_at_is_the_earlier_of_the_row_and_the_id() -> None:
    minted = datetime(2026, 4, 20, 14, 15, 22, tzinfo=UTC)
    assert dm.created_at(None, "20260420-141522-abc1234") == minted
    backfilled = minted + timedelta(days=3)  # a row written long after the init
    assert dm.created_at(backfilled, "20260420-141522-abc1234") == minted
    earlier = minted - timedelta(seconds=2)  # an id advanced past a collision
    assert dm.created_at(earlier, "20260420-141522-abc1234") == earlier
    assert dm.created_at(None, "20261399-999999-x") is None


# --- the document declares the rules, no looser, no stricter -----------------------------------

_TEXT = st.text(
    st.characters(codec="utf-8") | st.sampled_from("\x00\x1b\n\r\t\x85\u2028\u202e.-/@{~:"),
    max_size=40,
)


@given(_TEXT)
@example("a..b")
@example("main\n")
@example("x.lock")
def test_branch_schema_is_the_rule(value: str) -> None:
    assert _valid(INIT["branch"], value) == (dm.branch_error(value) is None)


@given(_TEXT)
@example("ok\x1b")
@example("ok\n\x1b")
@example("ok\x0c\x1b")
@example("\t")
def test_message_schema_is_the_rule(value: str) -> None:
    try:
        dm.normalize_message(value)
        accepted = True
    except dm.InvalidMetadataValue:
        accepted = False
    assert _valid(INIT["message"], value) == accepted


@given(st.from_regex(r"[a-zA-Z0-9._/-]{0,20}", fullmatch=True) | _TEXT)
@example("o/..")
@example("o/.github")
def test_repo_schema_is_the_rule(value: str) -> None:
    assert _valid(INIT["repo"], value) == (dm.repo_error(value) is None)


@given(st.builds(lambda rest: "https://" + rest, _TEXT) | _TEXT)
@example("https://u@h/")
@example("https://h:1/x")
def test_ci_url_schema_is_the_rule(value: str) -> None:
    assert _valid(INIT["ciUrl"], value) == (dm.ci_url_error(value) is None)


@pytest.mark.parametrize("value", [0, 1, dm.PR_MAX, dm.PR_MAX + 1, -5, None])
def test_pr_schema_is_the_rule(value: int | None) -> None:
    expected = value is None or dm.pr_error(value) is None
    assert _valid(INIT["pr"], value) == expected


def test_the_declared_patterns_compile_in_the_contract_runs_validator() -> None:
    """schemathesis validates with jsonschema_rs (a Rust regex engine), which refuses some
    patterns Python accepts (a surrogate range): a refused pattern is silently dropped."""
    import jsonschema_rs

    for schema in INIT.values():
        jsonschema_rs.validator_for(schema)  # raises on a pattern it cannot compile
