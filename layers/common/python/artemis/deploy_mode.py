"""Finalize's `mode`: which alias a finished deploy moves. Pure: stdlib only, no I/O."""

from __future__ import annotations

from artemis.keys import AliasName

# Go's strings.TrimSpace set (Unicode White_Space), which clients built against a Go server
# expect; Python's str.strip() would also strip \x1c-\x1f.
_WHITESPACE = (
    "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009"
    "\u200a\u2028\u2029\u202f\u205f\u3000"
)


def parse_mode(raw: str | None) -> AliasName | None:
    """Trimmed, case-insensitive; absent/""/preview → preview; production → production;
    anything else → None (→ 400 bad_request)."""
    mode = (raw or "").strip(_WHITESPACE).lower()
    if mode in ("", "preview"):
        return "preview"
    if mode == "production":
        return "production"
    return None
