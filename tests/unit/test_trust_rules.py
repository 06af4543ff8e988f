"""artemis.trust_rules: field validation, the ref glob, alias patterns, match and allows."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from artemis import alias_names, trust_rules
from artemis.trust_rules import InvalidRuleField, TrustRule

RULE = TrustRule(
    id="tr_0123456789abcdef0123",
    repository="octo-org/site",
    repository_id=123456,
    workflow=".github/workflows/deploy.yml",
    environment=None,
    ref=None,
    aliases=("production", "preview", "pr-*"),
)
CLAIMS = {
    "repository": "octo-org/site",
    "repository_id": "123456",
    "job_workflow_ref": "octo-org/site/.github/workflows/deploy.yml@refs/heads/main",
    "ref": "refs/heads/main",
    "environment": "production",
    "event_name": "push",
}


def _spec(**over: object) -> trust_rules.RuleSpec:
    fields: dict[str, object] = {
        "repository": "octo-org/site", "repository_id": 1,
        "workflow": ".github/workflows/deploy.yml", "environment": None, "ref": None,
        "aliases": ["production"],
    }  # fmt: skip
    fields.update(over)
    return trust_rules.check_rule(**fields)  # type: ignore[arg-type]


def test_alias_rules_agree_with_alias_names() -> None:
    assert trust_rules._NAMED_ALIAS_RE.pattern == alias_names.NAMED_ALIAS_RE.pattern
    assert trust_rules.FIXED_ALIASES == alias_names.FIXED_ALIASES


def test_a_good_rule_is_accepted_and_aliases_deduplicated() -> None:
    spec = _spec(aliases=["preview", "pr-*", "preview"], ref="refs/heads/release/*",
                 environment="Production env")  # fmt: skip
    assert spec.aliases == ("preview", "pr-*")
    assert spec.with_id("tr_" + "0" * 20).id == "tr_" + "0" * 20


@pytest.mark.parametrize(
    ("field", "over"),
    [
        ("repository", {"repository": ""}),
        ("repository", {"repository": "octo-org"}),
        ("repository", {"repository": "octo-org/site/extra"}),
        ("repository", {"repository": "-octo/site"}),
        ("repository", {"repository": "octo--org/site"}),
        ("repository", {"repository": "octo/.."}),
        ("repository", {"repository": "octo/."}),
        ("repository", {"repository": "octo/sïte"}),
        ("repository", {"repository": "octo/site\n"}),
        ("repository", {"repository": "o" * 40 + "/site"}),
        ("repositoryId", {"repository_id": None}),
        ("repositoryId", {"repository_id": 0}),
        ("repositoryId", {"repository_id": -5}),
        ("repositoryId", {"repository_id": 2**63}),
        ("repositoryId", {"repository_id": True}),
        ("workflow", {"workflow": ""}),
        ("workflow", {"workflow": "deploy.yml"}),
        ("workflow", {"workflow": ".github/workflows/deploy.json"}),
        ("workflow", {"workflow": ".github/workflows/../../evil.yml"}),
        ("workflow", {"workflow": ".github/workflows/a..yml"}),
        ("workflow", {"workflow": ".github/workflows/sub/deploy.yml"}),
        ("workflow", {"workflow": ".github/workflows/dé.yml"}),
        ("workflow", {"workflow": ".github/workflows/d\x00.yml"}),
        ("workflow", {"workflow": ".github/workflows/" + "a" * 240 + ".yml"}),
        ("environment", {"environment": ""}),
        ("environment", {"environment": " prod"}),
        ("environment", {"environment": "prod\n"}),
        ("environment", {"environment": "pröd"}),
        ("environment", {"environment": "p\u202erod"}),
        ("environment", {"environment": "e" * 256}),
        ("ref", {"ref": ""}),
        ("ref", {"ref": "main"}),
        ("ref", {"ref": "refs/heads/"}),
        ("ref", {"ref": "refs//main"}),
        ("ref", {"ref": "refs/heads/../main"}),
        ("ref", {"ref": "refs/heads/.hidden"}),
        ("ref", {"ref": "refs/heads/a**"}),
        ("ref", {"ref": "refs/heads/***"}),
        ("ref", {"ref": "refs/heads/ma in"}),
        ("ref", {"ref": "refs/heads/[ab]"}),
        ("ref", {"ref": "refs/heads/" + "a" * 250}),
        ("aliases", {"aliases": []}),
        ("aliases", {"aliases": None}),
        ("aliases", {"aliases": ["PRODUCTION"]}),
        ("aliases", {"aliases": ["pr_*"]}),
        ("aliases", {"aliases": ["-pr"]}),
        ("aliases", {"aliases": ["pr-?"]}),
        ("aliases", {"aliases": ["a" * 41]}),
        ("aliases", {"aliases": [""]}),
        ("aliases", {"aliases": [f"p{i}" for i in range(21)]}),
    ],
)
def test_bad_fields_are_refused_by_name(field: str, over: dict[str, object]) -> None:
    with pytest.raises(InvalidRuleField) as caught:
        _spec(**over)
    assert caught.value.field == field


@pytest.mark.parametrize(
    ("pattern", "ref", "expected"),
    [
        ("refs/heads/main", "refs/heads/main", True),
        ("refs/heads/main", "refs/heads/main2", False),
        ("refs/heads/main", "refs/heads/main\n", False),
        ("refs/heads/release/*", "refs/heads/release/1.2", True),
        ("refs/heads/release/*", "refs/heads/release/1/2", False),
        ("refs/heads/release/**", "refs/heads/release/1/2", True),
        ("refs/heads/release/**", "refs/heads/release", False),
        ("refs/tags/v*", "refs/tags/v1.0.0", True),
        ("refs/tags/v*", "refs/heads/v1", False),
        ("refs/heads/*", "refs/heads/a/b", False),
        ("refs/heads/a.b", "refs/heads/axb", False),  # `.` is literal
        ("refs/**/main", "refs/heads/x/main", True),
    ],
)
def test_ref_glob(pattern: str, ref: str, expected: bool) -> None:
    assert trust_rules.check_ref(pattern) == pattern
    assert trust_rules.ref_matches(pattern, ref) is expected


_SEG = st.text(alphabet="abcXYZ019_-+", min_size=1, max_size=8)


@given(st.lists(_SEG, min_size=1, max_size=5))
def test_a_literal_ref_matches_only_itself(segments: list[str]) -> None:
    ref = "refs/" + "/".join(segments)
    assert trust_rules.check_ref(ref) == ref
    assert trust_rules.ref_matches(ref, ref)
    assert not trust_rules.ref_matches(ref, ref + "x")
    assert not trust_rules.ref_matches(ref, ref + "/x")


@given(st.lists(_SEG, min_size=1, max_size=5), _SEG)
def test_star_stays_within_a_segment(segments: list[str], tail: str) -> None:
    pattern = "refs/" + "/".join(segments) + "/*"
    assert trust_rules.ref_matches(pattern, pattern[:-1] + tail)
    assert not trust_rules.ref_matches(pattern, pattern[:-1] + tail + "/" + tail)
    assert trust_rules.ref_matches(pattern[:-1] + "**", pattern[:-1] + tail + "/" + tail)


@given(st.from_regex(alias_names.NAMED_ALIAS_RE, fullmatch=True))
def test_star_matches_every_named_preview_but_no_fixed_channel(name: str) -> None:
    rule = TrustRule(**{**RULE.__dict__, "aliases": ("*",)})
    assert trust_rules.allows(rule, name, "push") is alias_names.is_named_alias(name)
    assert not trust_rules.allows(rule, "production", "push")
    assert not trust_rules.allows(rule, "preview", "push")


@pytest.mark.parametrize(
    ("item", "alias", "expected"),
    [
        ("pr-*", "pr-12", True),
        ("pr-*", "pr-", False),  # not a named preview (trailing hyphen)
        ("pr-*", "xpr-1", False),
        ("*-docs", "v2-docs", True),
        ("production", "production", True),
        ("preview", "production", False),
        ("pr-1", "pr-1", True),
        ("pr-1", "pr-12", False),
        ("pr-*", "PR-1", False),
    ],
)
def test_alias_items(item: str, alias: str, expected: bool) -> None:
    assert trust_rules.is_alias_item(item)
    assert trust_rules.alias_item_matches(item, alias) is expected


@pytest.mark.parametrize("event", ["pull_request", "pull_request_target"])
def test_pull_request_events_never_publish_to_production(event: str) -> None:
    assert not trust_rules.allows(RULE, "production", event)
    assert trust_rules.allows(RULE, "preview", event)
    assert trust_rules.allows(RULE, "pr-7", event)
    assert trust_rules.allows(RULE, "production", "push")


def test_match_the_happy_path_and_order() -> None:
    other = TrustRule(**{**RULE.__dict__, "id": "tr_" + "1" * 20})
    assert trust_rules.match([RULE, other], CLAIMS) is RULE
    assert trust_rules.match([], CLAIMS) is None


@pytest.mark.parametrize(
    "over",
    [
        {"repository": "octo-org/other"},
        {"repository_id": "654321"},  # same name, re-created repository
        {"repository_id": 123456},  # not the string real tokens carry
        {"repository_id": "١٢٣٤٥٦"},  # non-ASCII digits
        {"repository_id": ""},
        {"job_workflow_ref": "octo-org/site/.github/workflows/other.yml@refs/heads/main"},
        {"job_workflow_ref": "evil/lib/.github/workflows/deploy.yml@refs/heads/main"},
        {"job_workflow_ref": "octo-org/site/.github/workflows/deploy.yml"},
        {"job_workflow_ref": None},
        {"repository": None},
    ],
)
def test_match_refuses_other_identities(over: dict[str, object]) -> None:
    claims = {k: v for k, v in {**CLAIMS, **over}.items() if v is not None}
    assert trust_rules.match([RULE], claims) is None


def test_repository_name_compares_case_insensitively_the_id_decides() -> None:
    claims = {
        **CLAIMS,
        "repository": "Octo-Org/Site",
        "job_workflow_ref": "Octo-Org/Site/.github/workflows/deploy.yml@refs/heads/main",
    }
    assert trust_rules.match([RULE], claims) is RULE


def test_environment_and_ref_constraints() -> None:
    rule = TrustRule(**{**RULE.__dict__, "environment": "Production", "ref": "refs/heads/main"})
    assert trust_rules.match([rule], CLAIMS) is rule  # environment names are case-insensitive
    assert trust_rules.match([rule], {**CLAIMS, "environment": "staging"}) is None
    no_env = {k: v for k, v in CLAIMS.items() if k != "environment"}
    assert trust_rules.match([rule], no_env) is None
    assert trust_rules.match([rule], {**CLAIMS, "ref": "refs/heads/dev"}) is None
    assert trust_rules.match([RULE], no_env) is RULE  # no constraint: any environment


@pytest.mark.parametrize(
    ("over", "reason"),
    [
        ({"repository": "octo-org/other"}, "repository"),
        ({"repository_id": "654321"}, "repository_id"),
        ({"job_workflow_ref": "octo-org/site/.github/workflows/x.yml@refs/heads/main"},
         "workflow"),
        ({"environment": "staging"}, "environment"),
        ({"ref": "refs/tags/v1"}, "ref"),
    ],
)  # fmt: skip
def test_mismatch_names_the_first_check_failed(over: dict[str, object], reason: str) -> None:
    rule = TrustRule(**{**RULE.__dict__, "environment": "production", "ref": "refs/heads/*"})
    assert trust_rules.match([rule], CLAIMS) is rule  # the control
    claims = {**CLAIMS, **over}
    assert trust_rules.match([rule], claims) is None
    assert trust_rules.mismatch([rule], claims) == reason


def test_mismatch_follows_the_closest_rule() -> None:
    other_repo = TrustRule(**{**RULE.__dict__, "repository": "octo-org/other"})
    main_only = TrustRule(**{**RULE.__dict__, "ref": "refs/heads/main"})
    claims = {**CLAIMS, "ref": "refs/heads/dev"}
    # whatever the order, the rule naming this repository decides why
    assert trust_rules.mismatch([other_repo, main_only], claims) == "ref"
    assert trust_rules.mismatch([main_only, other_repo], claims) == "ref"
    assert trust_rules.mismatch([other_repo], claims) == "repository"
    assert trust_rules.mismatch([], claims) == "no_rules"


@pytest.mark.parametrize(
    ("items", "event", "expected"),
    [
        (("production",), "push", True),
        (("production",), "pull_request", False),
        (("production",), "pull_request_target", False),
        (("production", "pr-*"), "pull_request", True),
        (("preview",), "pull_request", True),
    ],
)
def test_publishes_anywhere(items: tuple[str, ...], event: str, expected: bool) -> None:
    assert trust_rules.publishes_anywhere(items, event) is expected


def test_allows_aliases_is_allows_for_a_rules_list() -> None:
    for alias in ("production", "preview", "pr-7", "feature"):
        for event in ("push", "pull_request"):
            assert trust_rules.allows_aliases(RULE.aliases, alias, event) == trust_rules.allows(
                RULE, alias, event
            )
    assert not trust_rules.allows_aliases(("pr-*",), "feature", "push")


def test_rule_ids() -> None:
    assert trust_rules.is_rule_id("tr_0123456789abcdef0123")
    for bad in ("tr_0123456789ABCDEF0123", "tr_0123", "tr_0123456789abcdef0123\n", "x"):
        assert not trust_rules.is_rule_id(bad)
    assert re.fullmatch(r"\^tr_.*", trust_rules.RULE_ID_RE.pattern)
