"""Which file paths a deploy may upload, and whether a path still fits in an S3 key.
Pure: stdlib only, no I/O."""

from __future__ import annotations

import posixpath
import re

from artemis.keys import MARKER_NAME

_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


def upload_path_error(path: str) -> str | None:
    """None when `path` is acceptable, else a short reason.

    A path is relative, canonical and contained in its deploy: no control characters (they
    forge log lines and confuse clients), no backslash (a second separator on Windows), no `..`
    segment, and not the deploy's completion marker, which only finalize writes. Applied to the
    value as received (after query decoding, before anything else).
    """
    if path == "":
        return "path is empty"
    if path == ".":
        return "path must name a file"
    if path.startswith("/"):
        return "path must be relative (no leading /)"
    if _CONTROL_RE.search(path):
        return "path contains a control character"
    if "\\" in path:
        return "path contains a backslash"
    if ".." in path.split("/"):
        return "path contains a .. segment"
    if posixpath.normpath(path) != path:
        return "path is not in canonical form (no //, . segments, .. or trailing /)"
    if path == MARKER_NAME:
        return f"{MARKER_NAME} is reserved"
    return None


S3_MAX_KEY_BYTES = 1024
"""S3 refuses an object key longer than this many bytes of UTF-8 (moto does not)."""


def key_length_error(prefix: str, path: str) -> str | None:
    """None when `prefix + path` fits in an S3 key, else a short reason. The limit counts the
    whole key, so what a path may spend depends on the site's dirname and the deploy id."""
    size = len((prefix + path).encode("utf-8", errors="surrogatepass"))  # counted, not refused
    if size <= S3_MAX_KEY_BYTES:
        return None
    room = S3_MAX_KEY_BYTES - len(prefix.encode("utf-8"))
    return (
        f"the object key would be {size} bytes, over S3's {S3_MAX_KEY_BYTES}; "
        f"paths of this deploy may take at most {room} bytes of UTF-8"
    )
