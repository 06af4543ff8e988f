"""Trust rules: which GitHub Actions workflow runs may publish to a site, and to which aliases.
Pure: stdlib only, no I/O.

A rule names a repository twice, by `owner/name` AND by GitHub's numeric id, so a repository
deleted and re-created (or renamed away and another created under the old name) does not
inherit the trust: the new one has a new id. It names the workflow file, optionally a GitHub
environment and a ref pattern, and the aliases it may publish to.

`match(rules, claims)` picks the first rule a token's claims satisfy; `allows(rule, alias,
event)` says whether that rule may publish to an alias. A `pull_request` or
`pull_request_target` run never publishes to production, whatever a rule says: such a run can
execute the code of someone else's branch.

Every pattern is anchored with `\\Z` (never `$`, which accepts a trailing newline) and
compiled with `re.ASCII` where it spells character classes.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

MAX_RULES_PER_SITE = 20
MAX_ALIASES = 20
REPOSITORY_ID_MAX = 2**63 - 1  # a bigint column; GitHub's ids are far below
WORKFLOW_MAX = 255
ENVIRONMENT_MAX = 255  # GitHub's own limit for an environment name
REF_MAX = 255

RULE_ID_RE: re.Pattern[str] = re.compile(r"^tr_[0-9a-f]{20}\Z", re.ASCII)

REPOSITORY_RE: re.Pattern[str] = re.compile(
    r"^[A-Za-z0-9](?:[A-Za-z0-9]|-(?=[A-Za-z0-9])){0,38}/[A-Za-z0-9._-]{1,100}\Z", re.ASCII
)
"""`owner/name` by GitHub's rules: an account of 1-39 alphanumerics and single inner hyphens,
and a repository name of 1-100 of `A-Za-z0-9._-` (not `.` or `..`, checked apart)."""

WORKFLOW_RE: re.Pattern[str] = re.compile(
    r"^\.github/workflows/[A-Za-z0-9_.-]{1,200}\.ya?ml\Z", re.ASCII
)
"""A workflow file: GitHub runs only files directly in `.github/workflows/`, so no deeper
path is admitted (and no `..` anywhere, checked apart)."""

ENVIRONMENT_RE: re.Pattern[str] = re.compile(r"^[\x21-\x7e](?:[\x20-\x7e]{0,253}[\x21-\x7e])?\Z")
"""An environment name: printable ASCII, no leading or trailing space, at most 255."""

REF_RE: re.Pattern[str] = re.compile(
    r"^refs/(?:[A-Za-z0-9_+@=,*-][A-Za-z0-9_.+@=,*-]*)(?:/[A-Za-z0-9_+@=,*-][A-Za-z0-9_.+@=,*-]*)*\Z",
    re.ASCII,
)
"""A ref pattern: `refs/` then `/`-separated segments, none empty or starting with `.`, of
the characters git refs commonly use plus `*`. `*` matches within a segment, a segment that
is exactly `**` matches one or more whole segments; `***`, or `**` beside other characters,
is refused (checked apart)."""

# Kept in step with artemis.alias_names (the layers contract keeps pure modules independent;
# tests/unit/test_trust_rules.py checks they agree).
FIXED_ALIASES: tuple[str, ...] = ("production", "preview")
_NAMED_ALIAS_RE: re.Pattern[str] = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?\Z", re.ASCII)
ALIAS_PATTERN_RE: re.Pattern[str] = re.compile(
    r"^[a-z0-9*](?:[a-z0-9*-]{0,38}[a-z0-9*])?\Z", re.ASCII
)
"""A named-preview pattern: a named preview's characters, `*` matching any run of them
(`pr-*`; `*` alone: every named preview, never production or preview)."""

PULL_REQUEST_EVENTS = frozenset({"pull_request", "pull_request_target"})

FIELDS = ("repository", "repositoryId", "workflow", "environment", "ref", "aliases")


class InvalidRuleField(ValueError):
    """A rule's field breaks its rule; `field` names it (the API's `error.field`)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class TrustRule:
    """What matching needs of a rule (the stored row adds who created it and when)."""

    id: str
    repository: str
    repository_id: int
    workflow: str
    environment: str | None
    ref: str | None
    aliases: tuple[str, ...]


@dataclass(frozen=True)
class RuleSpec:
    """A validated rule before it has an id."""

    repository: str
    repository_id: int
    workflow: str
    environment: str | None
    ref: str | None
    aliases: tuple[str, ...]

    def with_id(self, rule_id: str) -> TrustRule:
        return TrustRule(rule_id, self.repository, self.repository_id, self.workflow,
                         self.environment, self.ref, self.aliases)  # fmt: skip


# --- validation ---------------------------------------------------------------------------


def check_repository(value: str) -> str:
    if REPOSITORY_RE.fullmatch(value) is None or value.split("/")[1] in (".", ".."):
        raise InvalidRuleField("repository", "repository must be owner/name by GitHub's rules")
    return value


def check_repository_id(value: int) -> int:
    if isinstance(value, bool) or not 1 <= value <= REPOSITORY_ID_MAX:
        raise InvalidRuleField(
            "repositoryId", f"repositoryId must be an integer from 1 to {REPOSITORY_ID_MAX}"
        )
    return value


def check_workflow(value: str) -> str:
    if WORKFLOW_RE.fullmatch(value) is None or ".." in value or len(value) > WORKFLOW_MAX:
        raise InvalidRuleField(
            "workflow",
            "workflow must be a file directly in .github/workflows/ ending in .yml or .yaml "
            "(A-Z a-z 0-9 _ . - only, no ..)",
        )
    return value


def check_environment(value: str | None) -> str | None:
    if value is None:
        return None
    if ENVIRONMENT_RE.fullmatch(value) is None:
        raise InvalidRuleField(
            "environment",
            f"environment must be 1-{ENVIRONMENT_MAX} printable ASCII characters, "
            "not starting or ending with a space (omit it for any environment)",
        )
    return value


def check_ref(value: str | None) -> str | None:
    if value is None:
        return None
    bad = (
        len(value) > REF_MAX
        or REF_RE.fullmatch(value) is None
        or ".." in value
        or any("**" in seg and seg != "**" for seg in value.split("/"))
    )
    if bad:
        raise InvalidRuleField(
            "ref",
            "ref must be a pattern like refs/heads/main, refs/heads/release/* or refs/tags/v*: "
            "refs/ then non-empty segments, * within a segment, ** as a whole segment",
        )
    return value


def check_aliases(values: Sequence[str]) -> tuple[str, ...]:
    if not values:
        raise InvalidRuleField("aliases", "aliases must list at least one alias")
    if len(values) > MAX_ALIASES:
        raise InvalidRuleField("aliases", f"aliases may list at most {MAX_ALIASES}")
    for value in values:
        if not is_alias_item(value):
            raise InvalidRuleField(
                "aliases",
                f"alias {value!r}: each must be production, preview, or a named-preview "
                "pattern (a-z 0-9 - and *, 1-40 characters)",
            )
    return tuple(dict.fromkeys(values))  # duplicates say nothing more: keep the first


def is_alias_item(value: str) -> bool:
    """production, preview, a named preview, or a named-preview pattern with `*`."""
    if value in FIXED_ALIASES:
        return True
    if "*" in value:
        return ALIAS_PATTERN_RE.fullmatch(value) is not None
    return _NAMED_ALIAS_RE.fullmatch(value) is not None


def check_rule(
    *,
    repository: str,
    repository_id: int | None,
    workflow: str,
    environment: str | None,
    ref: str | None,
    aliases: Sequence[str] | None,
) -> RuleSpec:
    """Every field checked, in FIELDS order; the first bad one raises InvalidRuleField."""
    if repository_id is None:
        raise InvalidRuleField("repositoryId", "repositoryId is required")
    return RuleSpec(
        repository=check_repository(repository),
        repository_id=check_repository_id(repository_id),
        workflow=check_workflow(workflow),
        environment=check_environment(environment),
        ref=check_ref(ref),
        aliases=check_aliases(aliases or ()),
    )


def is_rule_id(value: str) -> bool:
    return RULE_ID_RE.fullmatch(value) is not None


# --- matching -----------------------------------------------------------------------------


@lru_cache(maxsize=256)
def _ref_regex(pattern: str) -> re.Pattern[str]:
    parts = []
    for seg in pattern.split("/"):
        if seg == "**":
            parts.append("[^/]+(?:/[^/]+)*")
        else:
            parts.append("[^/]*".join(re.escape(piece) for piece in seg.split("*")))
    return re.compile("/".join(parts) + r"\Z")


def ref_matches(pattern: str, ref: str) -> bool:
    """`*` matches any run within one segment; a `**` segment one or more whole segments."""
    return _ref_regex(pattern).match(ref) is not None


@lru_cache(maxsize=256)
def _alias_regex(pattern: str) -> re.Pattern[str]:
    return re.compile("[a-z0-9-]*".join(re.escape(p) for p in pattern.split("*")) + r"\Z")


def alias_item_matches(item: str, alias: str) -> bool:
    """A fixed channel matches only itself; a pattern only named previews."""
    if item in FIXED_ALIASES or alias in FIXED_ALIASES:
        return item == alias
    if _NAMED_ALIAS_RE.fullmatch(alias) is None:
        return False
    return _alias_regex(item).match(alias) is not None


def allows(rule: TrustRule, alias: str, event: str) -> bool:
    """Whether a run of `event` matched to `rule` may publish to `alias`."""
    return allows_aliases(rule.aliases, alias, event)


def allows_aliases(items: Sequence[str], alias: str, event: str) -> bool:
    """`allows` for a rule's alias list (a deploy session carries the list, not the rule)."""
    if alias == "production" and event in PULL_REQUEST_EVENTS:
        return False
    return any(alias_item_matches(item, alias) for item in items)


def publishes_anywhere(items: Sequence[str], event: str) -> bool:
    """Whether a run of `event` could publish to any alias of `items`: a pull request's run
    under a rule that lists production alone could not."""
    return any(item != "production" or event not in PULL_REQUEST_EVENTS for item in items)


def workflow_of(claims: Mapping[str, object]) -> str | None:
    """The workflow file of `job_workflow_ref` (`owner/name/<path>@<ref>`), or None when the
    ref is not of the claims' own repository: a reusable workflow of another repository is
    not the workflow a rule names (fail closed)."""
    repository, job_ref = claims.get("repository"), claims.get("job_workflow_ref")
    if not isinstance(repository, str) or not isinstance(job_ref, str):
        return None
    head = f"{repository}/"
    if not job_ref.startswith(head) or "@" not in job_ref:
        return None
    return job_ref[len(head) :].split("@", 1)[0]


def _claim_id(claims: Mapping[str, object]) -> int | None:
    value = claims.get("repository_id")
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 19:
        return int(value)
    return None


# What a rule checks of a token's claims, in order (`mismatch` names the first one failed).
CHECKS = ("repository", "repository_id", "workflow", "environment", "ref")


def _checks(rule: TrustRule, claims: Mapping[str, object]) -> Iterator[bool]:
    """One verdict per CHECKS entry, lazily."""
    repository, environment, ref = (
        claims.get("repository"), claims.get("environment"), claims.get("ref"),
    )  # fmt: skip
    # GitHub's names are case-insensitive; the id is the identity.
    yield isinstance(repository, str) and repository.lower() == rule.repository.lower()
    yield _claim_id(claims) == rule.repository_id
    yield workflow_of(claims) == rule.workflow
    # GitHub environment names are case-insensitive too.
    yield rule.environment is None or (
        isinstance(environment, str) and environment.lower() == rule.environment.lower()
    )
    yield rule.ref is None or (isinstance(ref, str) and ref_matches(rule.ref, ref))


def _passed(rule: TrustRule, claims: Mapping[str, object]) -> int:
    """How many of the CHECKS, in order, the claims pass before the first failure."""
    count = 0
    for verdict in _checks(rule, claims):
        if not verdict:
            break
        count += 1
    return count


def rule_matches(rule: TrustRule, claims: Mapping[str, object]) -> bool:
    return _passed(rule, claims) == len(CHECKS)


def match(rules: Sequence[TrustRule], claims: Mapping[str, object]) -> TrustRule | None:
    """The first rule the claims satisfy, in the order given (the site's rules, oldest first)."""
    for rule in rules:
        if rule_matches(rule, claims):
            return rule
    return None


def mismatch(rules: Sequence[TrustRule], claims: Mapping[str, object]) -> str:
    """Why no rule matches: `no_rules`, or the CHECKS entry the closest rule (the one passing
    the most checks in order) fails first. Meaningful only when `match` found none."""
    if not rules:
        return "no_rules"
    return CHECKS[min(max(_passed(rule, claims) for rule in rules), len(CHECKS) - 1)]
