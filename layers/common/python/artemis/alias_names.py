"""Alias names: the two fixed channels and the named previews a deploy may go live under.
Pure: stdlib only, no I/O.

A named preview's name becomes a DNS label in its public URL (`<alias>--<site>.preview…`), so
the rule is a lowercase label of 1-40 characters; compiled with `re.ASCII` and anchored with
`\\Z` so `.match()` cannot accept a trailing newline or a non-ASCII digit.
"""

from __future__ import annotations

import re

FIXED_ALIASES: tuple[str, ...] = ("production", "preview")

NAMED_ALIAS_RE: re.Pattern[str] = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?\Z", re.ASCII)

NAMED_ALIAS_RULE = (
    "must match ^[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?$ and not be production or preview"
)


def is_named_alias(value: str) -> bool:
    """A name a named preview may take: the label rule, and not one of the fixed channels."""
    return NAMED_ALIAS_RE.fullmatch(value) is not None and value not in FIXED_ALIASES


def is_alias_name(value: str) -> bool:
    """Any alias an alias row or object may carry: a fixed channel or a named preview."""
    return value in FIXED_ALIASES or is_named_alias(value)
