"""Alias names: the two fixed channels and the named-preview label rule."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from artemis.alias_names import FIXED_ALIASES, NAMED_ALIAS_RE, is_alias_name, is_named_alias


@pytest.mark.parametrize(
    "name", ["pr-12", "a", "0", "feature-login", "x" * 40, "a" + "-" * 38 + "b", "123"]
)
def test_named_preview_names_accepted(name: str) -> None:
    assert is_named_alias(name)
    assert is_alias_name(name)


@pytest.mark.parametrize(
    "name",
    [
        "",
        "production",
        "preview",
        "PR-12",  # uppercase: a host name is case-insensitive, so one spelling only
        "..",
        "a/b",
        "pr-",
        "-pr",
        "pr_12",
        "pr.12",
        "x" * 41,
        "pr-12\n",
        "pr 12",
        "prévia",
        "pr-١٢",  # Arabic-Indic digits: not ASCII
        "\x00",
    ],
)
def test_hostile_named_preview_names_refused(name: str) -> None:
    assert not is_named_alias(name)


@pytest.mark.parametrize("name", FIXED_ALIASES)
def test_fixed_channels_are_alias_names_but_not_named_previews(name: str) -> None:
    assert is_alias_name(name)
    assert not is_named_alias(name)


@given(st.text(max_size=50))
def test_a_named_preview_name_is_a_lowercase_dns_label(value: str) -> None:
    if is_named_alias(value):
        assert 1 <= len(value) <= 40
        assert value == value.lower() and value.isascii()
        assert not value.startswith("-") and not value.endswith("-")
        assert NAMED_ALIAS_RE.fullmatch(value)
