"""The CLI's deploy context: what GitHub Actions' environment and event payload say about a run
(branch, pull request, sha, message, repository, run link), the git fallback for the message,
the flags' precedence, the default preview alias, and the `artemis ls` line."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from artemis_cli.actions import (
    ALIAS_RE,
    MESSAGE_MAX,
    DeployContext,
    default_alias,
    deploy_context,
    first_line,
    from_actions,
)
from artemis_cli.main import build_parser, ls_line

HEAD = "0123456789abcdef0123456789abcdef01234567"
MERGE = "fedcba9876543210fedcba9876543210fedcba98"


def _env(tmp_path: Path, event: str, payload: dict[str, Any], **extra: str) -> dict[str, str]:
    path = tmp_path / "event.json"
    path.write_text(json.dumps(payload))
    return {
        "GITHUB_ACTIONS": "true", "GITHUB_EVENT_NAME": event, "GITHUB_EVENT_PATH": str(path),
        "GITHUB_REPOSITORY": "freeCodeCamp/www", "GITHUB_SERVER_URL": "https://github.com",
        "GITHUB_RUN_ID": "8813456", "GITHUB_SHA": MERGE, **extra,
    }  # fmt: skip


PR_PAYLOAD = {
    "number": 512,
    "pull_request": {"number": 512, "title": "Fix the footer links\n\nbody",
                     "head": {"sha": HEAD, "ref": "fix/footer-links"}},
}  # fmt: skip


def test_a_pull_request_event(tmp_path: Path) -> None:
    env = _env(tmp_path, "pull_request", PR_PAYLOAD, GITHUB_HEAD_REF="fix/footer-links",
               GITHUB_REF_NAME="512/merge", GITHUB_REF="refs/pull/512/merge")  # fmt: skip
    ctx = from_actions(env)
    assert ctx == DeployContext(
        branch="fix/footer-links", message="Fix the footer links", pr=512, repo="freeCodeCamp/www",
        ci_url="https://github.com/freeCodeCamp/www/actions/runs/8813456", sha=HEAD,
        event="pull_request",
    )  # fmt: skip
    assert ctx.metadata() == {
        "branch": "fix/footer-links", "message": "Fix the footer links", "pr": 512,
        "repo": "freeCodeCamp/www",
        "ciUrl": "https://github.com/freeCodeCamp/www/actions/runs/8813456",
    }  # fmt: skip
    assert default_alias(ctx) == "pr-512"


def test_a_pull_request_target_without_a_payload_number_reads_the_ref(tmp_path: Path) -> None:
    env = _env(tmp_path, "pull_request_target", {"pull_request": {"title": "T"}},
               GITHUB_HEAD_REF="x", GITHUB_REF="refs/pull/77/merge")  # fmt: skip
    ctx = from_actions(env)
    assert (ctx.pr, ctx.sha, default_alias(ctx)) == (77, None, "pr-77")


def test_a_push_event(tmp_path: Path) -> None:
    payload = {"head_commit": {"id": MERGE, "message": "Add the donation page\n\nLong body"}}
    env = _env(tmp_path, "push", payload, GITHUB_REF_NAME="main", GITHUB_REF="refs/heads/main",
               GITHUB_HEAD_REF="")  # fmt: skip
    ctx = from_actions(env)
    assert (ctx.branch, ctx.message, ctx.pr, ctx.sha) == ("main", "Add the donation page", None,
                                                          None)  # fmt: skip
    assert default_alias(ctx) == "main"


def test_outside_actions_nothing_is_read(tmp_path: Path) -> None:
    env = _env(tmp_path, "push", {"head_commit": {"message": "m"}}, GITHUB_REF_NAME="main")
    assert from_actions({**env, "GITHUB_ACTIONS": "false"}) == DeployContext()
    assert from_actions({}) == DeployContext()


@pytest.mark.parametrize("content", ["", "not json", "[1, 2]", '{"pull_request": 5}'])
def test_a_broken_event_file_leaves_values_unknown(tmp_path: Path, content: str) -> None:
    env = _env(tmp_path, "pull_request", {}, GITHUB_HEAD_REF="b")
    Path(env["GITHUB_EVENT_PATH"]).write_text(content)
    ctx = from_actions(env)
    assert (ctx.branch, ctx.pr, ctx.message, ctx.sha) == ("b", None, None, None)
    missing = from_actions({**env, "GITHUB_EVENT_PATH": str(tmp_path / "absent.json")})
    assert missing.branch == "b"


def test_a_plain_http_server_gets_no_run_link(tmp_path: Path) -> None:
    env = _env(tmp_path, "push", {}, GITHUB_SERVER_URL="http://ghes.example")
    assert from_actions(env).ci_url is None


def test_flags_override_each_detected_value(tmp_path: Path) -> None:
    ctx = from_actions(_env(tmp_path, "pull_request", PR_PAYLOAD, GITHUB_HEAD_REF="b"))
    changed = ctx.with_overrides(branch="other", message="Mine\nmore", pr=None, repo=None,
                                 ci_url=None)  # fmt: skip
    assert (changed.branch, changed.message, changed.pr) == ("other", "Mine", 512)


def test_the_message_falls_back_to_the_checkouts_last_subject(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    root.mkdir()
    for argv in (["init", "-q"], ["commit", "-q", "--allow-empty", "-m", "Subject line\n\nBody"]):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.org", *argv],
                       cwd=root, check=True, capture_output=True, timeout=30)  # fmt: skip
    assert deploy_context(root, {}).message == "Subject line"
    assert deploy_context(tmp_path, {}).message is None  # not a checkout
    env = _env(tmp_path, "push", {"head_commit": {"message": "From the event"}})
    assert deploy_context(root, env).message == "From the event"


def test_first_line() -> None:
    assert first_line("a\tb \x1b[31m\nc") == "a b [31m"
    assert first_line("evil\u202etxt.exe \u200bzero") == "eviltxt.exe zero"
    assert first_line("") is None and first_line("\n\nx") is None
    long = first_line("y" * 500)
    assert long is not None and len(long) == MESSAGE_MAX and long.endswith("…")


@pytest.mark.parametrize(
    ("branch", "alias"),
    [("main", "main"), ("Feature/Login_Page", "feature-login-page"), ("fix--x", "fix-x"),
     ("-x-", "x"), ("dependabot/npm_and_yarn/lodash-4.17.21", "dependabot-npm-and-yarn-lodash-4-17-21"),
     ("a" * 39 + "/b", "a" * 39), ("ü", None), ("///", None), ("production", None),
     ("Preview", None), ("PRODUCTION/", None), ("release/v2", "release-v2"), ("", None)],
)  # fmt: skip
def test_default_alias_of_a_branch(branch: str, alias: str | None) -> None:
    assert default_alias(DeployContext(branch=branch, event="push")) == alias


@given(st.text(max_size=80))
def test_default_alias_is_always_a_valid_alias_name(branch: str) -> None:
    alias = default_alias(DeployContext(branch=branch, event="push"))
    assert alias is None or (ALIAS_RE.match(alias) and alias not in ("production", "preview"))


def test_deploy_flags_parse() -> None:
    args = build_parser().parse_args(
        ["deploy", "--branch", "b", "--message", "m", "--pr", "5", "--repo", "o/r",
         "--ci-url", "https://h/x"]
    )  # fmt: skip
    assert (args.branch, args.message, args.pr, args.repo, args.ci_url) == (
        "b", "m", 5, "o/r", "https://h/x")  # fmt: skip


def test_ls_line_shows_state_age_branch_pr_aliases_and_message() -> None:
    now = datetime(2026, 4, 20, 16, 15, 22, tzinfo=UTC)
    row = {"deployId": "20260420-141522-abc1234", "actor": "octocat", "state": "live",
           "createdAt": "2026-04-20T14:15:22Z", "branch": "fix/footer", "pr": 512,
           "message": "Fix the footer", "aliases": ["preview"]}  # fmt: skip
    assert ls_line(row, ["preview"], now) == (
        "20260420-141522-abc1234  live  2h ago  by octocat  fix/footer #512  ← preview\n"
        "    Fix the footer"
    )
    assert ls_line({"deployId": "d"}, [], now) == "d  ?"  # an older server's row


@given(st.text(max_size=300))
def test_what_the_client_sends_as_a_message_the_server_keeps_as_is(text: str) -> None:
    from artemis import deploy_metadata

    sent = first_line(text)
    if sent is not None:
        assert deploy_metadata.normalize_message(sent) == sent
