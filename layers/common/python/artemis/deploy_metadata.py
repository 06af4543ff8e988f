"""What a deploy records about where it came from (branch, commit message, pull request,
repository, CI run), the rules each field must meet at `POST /api/deploy/init`, and the state a
deploy list row shows. Pure: stdlib only, no I/O.

Every value is shown back to people (the deploy list, `artemis ls`, the audit log) and some in a
terminal, so no field may carry control or format characters (an ANSI escape, a bidi override)
and each is bounded. A branch, a repository or a URL is an identifier: a bad one is refused. A
commit message is prose: it is cut to its first line and to MESSAGE_MAX characters rather than
refused, since a long subject is an ordinary commit, not a client error; only characters no
subject line legitimately holds (controls other than tab, format characters) refuse it.

Every pattern is anchored with `\\Z` rather than `$`, so it cannot accept a trailing newline;
route_docs declares each in the OpenAPI document as it is (the server's rule, no looser).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

BRANCH_MAX = 255  # git allows longer refs; 255 is what a filesystem path component holds
MESSAGE_MAX = 200
PR_MAX = 2**31 - 1  # an integer column; GitHub's numbers are far below
CI_URL_MAX = 2048

REPO_RE: re.Pattern[str] = re.compile(
    r"^[A-Za-z0-9][A-Za-z0-9-]{0,38}/[A-Za-z0-9._-]{1,100}\Z", re.ASCII
)
"""`owner/name` as GitHub spells them: an account (1-39 alphanumerics and hyphens, not
starting with one) and a repository name (1-100 of `A-Za-z0-9._-`, not `.` or `..`; names may
start with a dot: `.github`)."""

REPO_DOTS_RE: re.Pattern[str] = re.compile(r"/\.\.?\Z")

UNSAFE_CHARS = r"\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff"
"""What no shown field may hold (a regex character class body): C0 and C1 controls and DEL;
the invisible and direction-changing format characters (Arabic letter mark, zero-width
characters, the bidi marks, embeddings, overrides and isolates, the byte-order mark); the
Unicode line and paragraph separators."""

SURROGATE_RE: re.Pattern[str] = re.compile(r"[\ud800-\udfff]")
"""Lone surrogates, refused too: JSON can spell them (`"\\ud800"`), no database text holds
them. Not in UNSAFE_CHARS, which the OpenAPI document declares: its readers' regex engines
refuse a surrogate range, and Unicode text (what a JSON Schema string is) holds none."""

BRANCH_RE: re.Pattern[str] = re.compile(rf"^[^{UNSAFE_CHARS} ~^:?*\[\\]{{1,{BRANCH_MAX}}}\Z")
"""The characters of a branch: none of the unsafe ones, no space, none of git's `~^:?*[\\`."""

BRANCH_FORBIDDEN_RE: re.Pattern[str] = re.compile(r"\.\.|//|@\{|/\.|^[-/.]|[/.]\Z|\.lock\Z|^@\Z")
"""What git's check-ref-format refuses besides characters: `..`, `//`, `@{`, a component
starting with `.`, a leading `-`, `/` or `.`, a trailing `/`, `.` or `.lock`, the name `@`."""

# str.splitlines' line boundaries (the message is cut at the first one).
LINE_BREAKS = r"\n\x0b\x0c\r\x1c-\x1e\x85\u2028\u2029"
_MESSAGE_UNSAFE = UNSAFE_CHARS.replace(r"\x00-\x1f", r"\x00-\x08\x0a-\x1f")  # the tab is fine
MESSAGE_RE: re.Pattern[str] = re.compile(rf"^[^{_MESSAGE_UNSAFE}]*(?:[{LINE_BREAKS}][\s\S]*)?\Z")
"""A message is accepted when its first line holds no unsafe character but the tab (what
follows the first line break is dropped unread)."""

CI_URL_RE: re.Pattern[str] = re.compile(
    r"^https://[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?(?::[0-9]{1,5})?(?:[/?#][!-\[\]-~]*)?\Z",
    re.ASCII,
)
"""`https://host[:port][/path][?query][#fragment]` in printable ASCII: a DNS host (no user
name or password, no IP literal in brackets), no backslash (browsers read it as `/`). Any
other scheme (http, javascript:, data:) is refused, and so is an IRI: percent-encode it."""

DeployState = Literal["pending", "expired", "live", "tombstoned"]


class InvalidMetadataValue(ValueError):
    """A metadata field breaks its rule: `field` is its JSON name."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


@dataclass(frozen=True)
class DeployMetadata:
    branch: str | None = None
    message: str | None = None
    pr: int | None = None
    repo: str | None = None
    ci_url: str | None = None

    def as_json(self) -> dict[str, Any]:
        """The fields that are set, under their JSON names (the audit detail, the list row)."""
        fields = {"branch": self.branch, "message": self.message, "pr": self.pr,
                  "repo": self.repo, "ciUrl": self.ci_url}  # fmt: skip
        return {name: value for name, value in fields.items() if value is not None}


def branch_error(value: str) -> str | None:
    """Why `value` is not a branch name, or None: git's ref-name rules (check-ref-format),
    at most BRANCH_MAX characters, none of them unsafe to show."""
    if not value:
        return "must not be empty"
    if len(value) > BRANCH_MAX:
        return f"over {BRANCH_MAX} characters"
    if BRANCH_RE.fullmatch(value) is None or SURROGATE_RE.search(value):
        return "contains a control, format or space character, or one of ~ ^ : ? * [ \\"
    if BRANCH_FORBIDDEN_RE.search(value):
        return "is not a git branch name (.., //, @{, a leading - / or ., a trailing / . .lock)"
    return None


def normalize_message(value: str) -> str | None:
    """The commit message's first line, trimmed, tabs as spaces, cut to MESSAGE_MAX characters
    (the last one then `…`); None when nothing remains. Raises InvalidMetadataValue for a first
    line holding control or format characters."""
    lines = value.splitlines()
    first = lines[0] if lines else ""
    if MESSAGE_RE.fullmatch(value) is None or SURROGATE_RE.search(first):
        raise InvalidMetadataValue("message", "its first line has a control or format character")
    line = first.replace("\t", " ").strip()
    if not line:
        return None
    if len(line) > MESSAGE_MAX:
        line = line[: MESSAGE_MAX - 1].rstrip() + "…"
    return line


def pr_error(value: int) -> str | None:
    if isinstance(value, bool) or not 1 <= value <= PR_MAX:
        return f"must be an integer from 1 to {PR_MAX}"
    return None


def repo_error(value: str) -> str | None:
    if REPO_RE.fullmatch(value) is None or REPO_DOTS_RE.search(value):
        return "must be owner/name as GitHub spells them"
    return None


def ci_url_error(value: str) -> str | None:
    if len(value) > CI_URL_MAX:
        return f"over {CI_URL_MAX} characters"
    if CI_URL_RE.fullmatch(value) is None:
        return "must be an https://host/... URL of printable ASCII, without a user name"
    return None


def check(
    *, branch: str | None, message: str | None, pr: int | None, repo: str | None,
    ci_url: str | None,
) -> DeployMetadata:  # fmt: skip
    """The metadata as recorded, or InvalidMetadataValue for the first field breaking its rule
    (in the order branch, message, pr, repo, ciUrl). A field sent as null is absent."""
    if branch is not None and (problem := branch_error(branch)):
        raise InvalidMetadataValue("branch", problem)
    normalized = normalize_message(message) if message is not None else None
    if pr is not None and (problem := pr_error(pr)):
        raise InvalidMetadataValue("pr", problem)
    if repo is not None and (problem := repo_error(repo)):
        raise InvalidMetadataValue("repo", problem)
    if ci_url is not None and (problem := ci_url_error(ci_url)):
        raise InvalidMetadataValue("ciUrl", problem)
    return DeployMetadata(branch=branch, message=normalized, pr=pr, repo=repo, ci_url=ci_url)


def deploy_state(
    *, index_state: str | None, created_at: datetime | None, tombstoned: bool,
    session_ttl_seconds: int, now: datetime,
) -> DeployState | None:  # fmt: skip
    """A deploy list row's state: `tombstoned` (deleted, restorable) over anything else; an
    `active` index row is `live` (finalized); a `pending` one is `pending` while a session
    minted at its creation could still be valid, `expired` after. None when the index holds
    no row (a deploy only the bucket shows: reconcile indexes it)."""
    if tombstoned:
        return "tombstoned"
    if index_state == "active":
        return "live"
    if index_state == "pending":
        if created_at is not None and created_at + timedelta(seconds=session_ttl_seconds) < now:
            return "expired"
        return "pending"
    return None


def created_at(row_created_at: datetime | None, deploy_id: str) -> datetime | None:
    """When the deploy was initialized: the index row's creation, or the time the deploy id
    carries (`YYYYMMDD-HHMMSS-…`, minted at init) when that is earlier, as for a deploy the
    index learnt of later (reconcile, backfill) or not at all. None when neither is known."""
    try:
        minted: datetime | None = datetime.strptime(deploy_id[:15], "%Y%m%d-%H%M%S").replace(
            tzinfo=UTC
        )
    except ValueError:
        minted = None
    known = [at for at in (row_created_at, minted) if at is not None]
    return min(known) if known else None
