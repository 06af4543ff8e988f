"""Deploy ids and the commit sha they are minted from.

A deploy id is `YYYYMMDD-HHMMSS-<first 7 characters of the sha>` on the UTC clock, so ids sort
in time order and each is a single bucket-key segment. Pure: stdlib only, no I/O.

Every pattern is compiled with `re.ASCII` (so `\\d` is `[0-9]`) and anchored with `\\Z` rather
than `$`, so `.match()` cannot accept a trailing newline.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

DEPLOY_ID_RE: re.Pattern[str] = re.compile(r"^\d{8}-\d{6}-[A-Za-z0-9-]{1,64}\Z", re.ASCII)
"""Ids taken from a URL or a body (promote, rollback, delete, restore)."""

SHA_RE: re.Pattern[str] = re.compile(r"^[A-Za-z0-9-]{1,64}\Z", re.ASCII)
"""The `sha` accepted when a deploy starts; it keeps the deploy id a single key segment."""


def is_deploy_id(value: str) -> bool:
    return DEPLOY_ID_RE.fullmatch(value) is not None


def is_sha(value: str) -> bool:
    return SHA_RE.fullmatch(value) is not None


def mint_deploy_id(now: datetime, sha: str) -> str:
    """`YYYYMMDD-HHMMSS-<first 7 chars of sha>` on the UTC clock.

    An aware `now` is converted to UTC; a naive one is taken to be UTC already. A `sha` that
    fails SHA_RE raises ValueError: the caller validates it first (answering 400), and an id
    that is not a single key segment must never be minted.
    """
    if not is_sha(sha):
        raise ValueError("sha must match " + SHA_RE.pattern)
    when = now.astimezone(UTC) if now.tzinfo is not None else now
    return (
        f"{when.year:04d}{when.month:02d}{when.day:02d}-"
        f"{when.hour:02d}{when.minute:02d}{when.second:02d}-{sha[:7]}"
    )
