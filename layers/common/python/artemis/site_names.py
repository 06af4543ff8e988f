"""Site slugs, GitHub team slugs and repository names: which names a site may be registered
under, which teams may own it, which repositories may be requested. Pure: stdlib only, no I/O.

Every pattern is compiled with `re.ASCII` and anchored with `\\Z` rather than `$`, so
`.match()` cannot accept a trailing newline.
"""

from __future__ import annotations

import re

SLUG_RE: re.Pattern[str] = re.compile(r"^[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?\Z", re.ASCII)
"""A DNS label (1-63 characters, no trailing hyphen) that starts with a letter, so the slug can
name a host (`<slug>.preview.<domain>`) and never looks like a number."""

TEAM_RE: re.Pattern[str] = re.compile(r"^[a-z0-9][a-z0-9_-]{0,38}\Z", re.ASCII)
"""A GitHub team slug, 1-39 characters."""

REPO_NAME_RE: re.Pattern[str] = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9._-]{0,99}\Z", re.ASCII)
"""A repository name a repo request may ask for (GitHub's own limit is 100 characters)."""

DEFAULT_RESERVED_SLUGS: frozenset[str] = frozenset(
    {
        # `preview.<domain>` is the parent domain of every preview URL (`<site>.preview.<domain>`).
        "preview",
        # Labels of the service's own hosts (the API and its console) and the service name.
        "api",
        "admin",
        "artemis",
        # Conventional shared-asset hosts: a site under these names would be mistaken for
        # (or block) a platform-wide asset host.
        "static",
        "assets",
    }
)
"""Names no new site may take. Deliberately small: `www` is an ordinary site. Names beginning
with `_` need no entry: the slug pattern already refuses them, and the bucket keeps such
top-level prefixes for its trash and its probes."""


def is_slug(value: str, reserved: frozenset[str] = DEFAULT_RESERVED_SLUGS) -> bool:
    """The DNS-label pattern and not a reserved name (register, PATCH, DELETE)."""
    return SLUG_RE.fullmatch(value) is not None and value not in reserved


def is_team(value: str) -> bool:
    return TEAM_RE.fullmatch(value) is not None
