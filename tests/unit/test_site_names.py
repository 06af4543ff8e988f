"""Site slugs (DNS labels, reserved names) and team slugs."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from artemis.site_names import DEFAULT_RESERVED_SLUGS, SLUG_RE, TEAM_RE, is_slug, is_team


@pytest.mark.parametrize(
    "slug", ["www", "a", "a1", "my-site", "a-b-c", "x" * 63, "a" + "-" * 61 + "b", "learn2"]
)
def test_g19_accepted_slugs(slug: str) -> None:
    assert is_slug(slug)


@pytest.mark.parametrize(
    "slug",
    [
        "",
        "www-",  # trailing hyphen: not a DNS label
        "a-",
        "-www",
        "1www",
        "Www",
        "w_w",
        "w.w",
        "x" * 64,
        "www\n",
        "_trash",
        "wéw",
        " www",
    ],
)
def test_g19_refused_slugs(slug: str) -> None:
    assert not is_slug(slug)


@pytest.mark.parametrize("name", ["preview", "api", "admin", "static", "assets", "artemis"])
def test_g19_reserved_names_are_refused(name: str) -> None:
    assert name in DEFAULT_RESERVED_SLUGS
    assert SLUG_RE.fullmatch(name)  # shape alone would accept it
    assert not is_slug(name)


def test_g19_reserved_list_is_configurable() -> None:
    assert is_slug("preview", reserved=frozenset())
    assert not is_slug("www", reserved=frozenset({"www"}))
    assert is_slug("api", reserved=frozenset({"www"}))


def test_g19_reserved_list_is_small_and_leaves_www_free() -> None:
    assert "www" not in DEFAULT_RESERVED_SLUGS
    assert all(SLUG_RE.fullmatch(name) for name in DEFAULT_RESERVED_SLUGS)


@given(st.from_regex(SLUG_RE, fullmatch=True))
def test_g19_every_pattern_slug_is_a_dns_label(slug: str) -> None:
    assert 1 <= len(slug) <= 63
    assert slug[0].isalpha() and not slug.endswith("-")
    assert is_slug(slug) is (slug not in DEFAULT_RESERVED_SLUGS)


@pytest.mark.parametrize(
    ("team", "ok"),
    [
        ("staff", True),
        ("0", True),
        ("a_b-c", True),
        ("9lives", True),
        ("a" * 39, True),
        ("a" * 40, False),
        ("", False),
        ("-staff", False),
        ("_staff", False),
        ("Staff", False),
        ("st aff", False),
        ("staff\n", False),
        ("st.aff", False),
    ],
)
def test_team_pattern(team: str, ok: bool) -> None:
    assert is_team(team) is ok
    assert (TEAM_RE.match(team) is not None) is ok
