"""Decoding a raw query string the way a Go server's `url.ParseQuery` does, so a client built
against one sees the same file names here. Pure: stdlib only, no I/O."""

from __future__ import annotations

import re
from urllib.parse import unquote_to_bytes

_BAD_ESCAPE_RE = re.compile(r"%(?![0-9A-Fa-f]{2})")


def _form_unescape(text: str) -> str | None:
    """Go's QueryUnescape: `+` → space, then %XX; None for a malformed escape or bytes that
    are not UTF-8 (a file name must be text; replacing bytes could merge distinct names)."""
    if _BAD_ESCAPE_RE.search(text):
        return None
    try:
        return unquote_to_bytes(text.replace("+", " ")).decode("utf-8")
    except UnicodeDecodeError:
        return None


def form_query(raw_query: str) -> dict[str, str]:
    """Decode a raw query string (without its `?`).

    Only `&` separates pairs; a pair holding a raw `;` is dropped, as is one whose key or value
    has a malformed escape; the first value of a repeated key wins; blank values are kept.
    """
    result: dict[str, str] = {}
    for pair in raw_query.split("&"):
        if pair == "" or ";" in pair:
            continue
        raw_key, _, raw_value = pair.partition("=")
        key = _form_unescape(raw_key)
        value = _form_unescape(raw_value)
        if key is None or value is None:
            continue
        result.setdefault(key, value)
    return result
