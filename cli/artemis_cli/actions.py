"""Where a deploy comes from: the branch, commit message, pull request, repository and CI run
`artemis deploy` sends at init, read from GitHub Actions' environment (`GITHUB_ACTIONS=true`)
and, outside Actions, from the git checkout. Flags override each value (main.cmd_deploy).

The sha of a pull_request event is the payload's `pull_request.head.sha`, the commit the
author pushed and sees in the PR, not `GITHUB_SHA`, which names the merge commit GitHub made
for the run (no one sees it in the PR, and it changes whenever the base moves). With
actions/checkout's default ref the bytes are built from that merge, so the deploy is "the PR
at its head commit, merged into its base"; `--sha` overrides.

Everything here reads and never fails: a missing or malformed variable or event file leaves
the value unknown, and the deploy goes ahead without it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

PR_EVENTS = frozenset({"pull_request", "pull_request_target"})
MESSAGE_MAX = 200  # the server keeps this much of a message (longer ones it cuts)
ALIAS_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?\Z")
RESERVED_ALIASES = frozenset({"production", "preview"})
_PULL_REF = re.compile(r"^refs/pull/([0-9]+)/(?:merge|head)\Z")
_SHA = re.compile(r"^[A-Za-z0-9-]{1,64}\Z")
# What the server refuses in a message's first line (artemis.deploy_metadata): controls,
# invisible and direction-changing format characters, lone surrogates. A PR title holding one
# must not fail the deploy, so the client drops them.
_CONTROLS = re.compile(
    r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff\ud800-\udfff]"
)


@dataclass(frozen=True)
class DeployContext:
    branch: str | None = None
    message: str | None = None
    pr: int | None = None
    repo: str | None = None
    ci_url: str | None = None
    sha: str | None = None  # None: main's default_sha decides (GITHUB_SHA, git HEAD, local)
    event: str | None = None  # GITHUB_EVENT_NAME

    def metadata(self) -> dict[str, Any]:
        """The init body's metadata fields that are known, under their JSON names."""
        fields = {"branch": self.branch, "message": self.message, "pr": self.pr,
                  "repo": self.repo, "ciUrl": self.ci_url}  # fmt: skip
        return {name: value for name, value in fields.items() if value is not None}

    def with_overrides(self, **values: Any) -> DeployContext:
        """The context with each value given (not None) in place of the detected one."""
        given = {name: value for name, value in values.items() if value is not None}
        if "message" in given:
            given["message"] = first_line(given["message"])
        return replace(self, **given)


def first_line(text: str) -> str | None:
    """A commit message as the deploy records it: the first line, tabs as spaces, controls
    dropped, trimmed, cut to MESSAGE_MAX characters (the last then `…`); None when empty."""
    lines = text.splitlines()
    line = _CONTROLS.sub("", (lines[0] if lines else "").replace("\t", " ")).strip()
    if len(line) > MESSAGE_MAX:
        line = line[: MESSAGE_MAX - 1].rstrip() + "…"
    return line or None


def _event(env: dict[str, str]) -> dict[str, Any]:
    path = env.get("GITHUB_EVENT_PATH")
    if not path:
        return {}
    try:
        payload = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return payload if isinstance(payload, dict) else {}


def _dig(payload: dict[str, Any], *keys: str) -> Any:
    value: Any = payload
    for key in keys:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def _pr_number(env: dict[str, str], payload: dict[str, Any]) -> int | None:
    number = _dig(payload, "pull_request", "number")
    if isinstance(number, int) and not isinstance(number, bool) and number > 0:
        return number
    match = _PULL_REF.match(env.get("GITHUB_REF", ""))
    return int(match.group(1)) if match else None


def from_actions(environ: dict[str, str] | None = None) -> DeployContext:
    """The context GitHub Actions gives a run; empty outside Actions (`GITHUB_ACTIONS` is not
    `true`)."""
    env = dict(os.environ if environ is None else environ)
    if env.get("GITHUB_ACTIONS") != "true":
        return DeployContext()
    event = env.get("GITHUB_EVENT_NAME") or None
    payload = _event(env)
    is_pr = event in PR_EVENTS
    branch = (env.get("GITHUB_HEAD_REF") if is_pr else None) or env.get("GITHUB_REF_NAME")
    pr = _pr_number(env, payload) if is_pr else None
    head_sha = _dig(payload, "pull_request", "head", "sha") if is_pr else None
    raw_message = _dig(payload, "head_commit", "message") or (
        _dig(payload, "pull_request", "title") if is_pr else None
    )
    repo = env.get("GITHUB_REPOSITORY") or None
    server, run_id = env.get("GITHUB_SERVER_URL", ""), env.get("GITHUB_RUN_ID", "")
    # The server takes https links only: a GitHub Enterprise on plain http gets no link.
    ci_url = (
        f"{server.rstrip('/')}/{repo}/actions/runs/{run_id}"
        if server.startswith("https://") and repo and run_id
        else None
    )
    return DeployContext(
        branch=branch or None,
        message=first_line(raw_message) if isinstance(raw_message, str) else None,
        pr=pr,
        repo=repo,
        ci_url=ci_url,
        sha=head_sha if isinstance(head_sha, str) and _SHA.match(head_sha) else None,
        event=event,
    )


def git_subject(directory: Path) -> str | None:
    """`git log -1 --format=%s` of the checkout holding `directory`, or None outside one."""
    # As main's default_sha: the directory decides which checkout is asked.
    git_env = {k: v for k, v in os.environ.items() if k not in ("GIT_DIR", "GIT_WORK_TREE")}
    try:
        done = subprocess.run(
            ["git", "log", "-1", "--format=%s"],  # noqa: S607 - git from PATH, as a user runs it
            cwd=directory, env=git_env, capture_output=True, text=True, timeout=10, check=False,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return first_line(done.stdout) if done.returncode == 0 else None


def deploy_context(directory: Path, environ: dict[str, str] | None = None) -> DeployContext:
    """Actions' context; the message, when Actions gave none (or outside Actions), is the
    checkout's last commit subject."""
    ctx = from_actions(environ)
    if ctx.message is None:
        ctx = replace(ctx, message=git_subject(directory))
    return ctx


def is_alias_name(name: str) -> bool:
    """A name a named preview may take (the server's rule, checked before any upload)."""
    return ALIAS_RE.match(name) is not None and name not in RESERVED_ALIASES


def default_alias(ctx: DeployContext) -> str | None:
    """The preview alias a CI deploy would take: `pr-<number>` for a pull request event, else
    the branch name made an alias name (`^[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?$`: lower-cased,
    each run of other characters one `-`, cut to 40, no `-` at either end). None when nothing
    remains, or when the result names one of the fixed aliases (production, preview)."""
    # A pull request's number: from its event in Actions, or given with --pr anywhere.
    if ctx.pr is not None and (ctx.event in PR_EVENTS or not ctx.event):
        return f"pr-{ctx.pr}"
    if not ctx.branch:
        return None
    name = re.sub(r"[^a-z0-9]+", "-", ctx.branch.lower())[:40].strip("-")
    return name if is_alias_name(name) else None
