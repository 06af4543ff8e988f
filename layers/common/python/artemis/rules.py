"""Input rules shared by the API handlers: ids, slugs, teams, bearer headers, upload paths,
content types, finalize mode, the framework hint, query decoding and RFC 3339 times.

Pure: no I/O, stdlib only, cheap to import. Each function cites the rule it implements in
spec/api.md. Every pattern is compiled with `re.ASCII` (so `\\d` is `[0-9]`) and anchored with
`\\Z` rather than `$`, so `.match()` cannot accept a trailing newline.
"""

from __future__ import annotations

import posixpath
import re
import secrets
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta, timezone
from urllib.parse import unquote_to_bytes

from artemis.keys import MARKER_NAME, AliasName

# --- patterns -------------------------------------------------------------------------------

DEPLOY_ID_RE: re.Pattern[str] = re.compile(r"^\d{8}-\d{6}-[A-Za-z0-9-]{1,64}\Z", re.ASCII)
"""§7.2: ids taken from a URL or body (promote, rollback, delete, restore)."""

SHA_RE: re.Pattern[str] = re.compile(r"^[A-Za-z0-9-]{1,64}\Z", re.ASCII)
"""§7.3: the `sha` accepted at init; keeps the deploy id a single key segment."""

SLUG_RE: re.Pattern[str] = re.compile(r"^[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?\Z", re.ASCII)
"""§10.1 as fixed by G-19: a DNS label (1-63 chars, no trailing hyphen) starting with a letter."""

TEAM_RE: re.Pattern[str] = re.compile(r"^[a-z0-9][a-z0-9_-]{0,38}\Z", re.ASCII)
"""§10.1: a GitHub team slug, 1-39 characters."""

REQUEST_ID_RE: re.Pattern[str] = re.compile(r"^[A-Za-z0-9._:-]{1,128}\Z", re.ASCII)
"""G-5: the only inbound `X-Request-ID` values that are echoed, logged and audited."""

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
"""G-19 reserved names. Deliberately small: `www` is an ordinary site (the spec's own examples
deploy it). Names beginning with `_` need no entry: the slug pattern already refuses them,
and the bucket reserves them for trash and probes (§4.2)."""

# --- ids, slugs, teams ----------------------------------------------------------------------


def is_deploy_id(value: str) -> bool:
    return DEPLOY_ID_RE.fullmatch(value) is not None


def is_sha(value: str) -> bool:
    return SHA_RE.fullmatch(value) is not None


def is_slug(value: str, reserved: frozenset[str] = DEFAULT_RESERVED_SLUGS) -> bool:
    """G-19: the DNS-label pattern and not a reserved name (register, PATCH, DELETE)."""
    return SLUG_RE.fullmatch(value) is not None and value not in reserved


def is_team(value: str) -> bool:
    return TEAM_RE.fullmatch(value) is not None


def mint_deploy_id(now: datetime, sha: str) -> str:
    """§7.2: `YYYYMMDD-HHMMSS-<first 7 chars of sha>` on the UTC clock.

    An aware `now` is converted to UTC; a naive one is taken to be UTC already. A `sha` that
    fails SHA_RE raises ValueError: the handler validates it first (§7.3 step 3), and an id
    that is not a single key segment must never be minted.
    """
    if not is_sha(sha):
        raise ValueError("sha must match " + SHA_RE.pattern)
    when = now.astimezone(UTC) if now.tzinfo is not None else now
    return (
        f"{when.year:04d}{when.month:02d}{when.day:02d}-"
        f"{when.hour:02d}{when.minute:02d}{when.second:02d}-{sha[:7]}"
    )


def request_id(inbound: str | None, generate: Callable[[], str] | None = None) -> str:
    """§2.6 with G-5: echo the inbound id only if it matches REQUEST_ID_RE, else a new one
    (24 lowercase hex characters, 12 random bytes, unless `generate` is given)."""
    if inbound is not None and REQUEST_ID_RE.fullmatch(inbound) is not None:
        return inbound
    if generate is not None:
        return generate()
    return secrets.token_hex(12)


# --- Authorization header -------------------------------------------------------------------

_BEARER_PREFIX = "Bearer "
_TOKEN_FORBIDDEN = frozenset(" \t\r\n")


def bearer_token(header: str | None) -> str | None:
    """§3.2: the token of `Bearer <token>`, or None (→ 401 missing_bearer).

    Leading and trailing spaces/tabs are stripped first, as the reference's HTTP server does
    before the handler sees the value: `Bearer tok ` is accepted, `Bearer ` is refused.
    """
    if header is None:
        return None
    value = header.strip(" \t")
    if not value.startswith(_BEARER_PREFIX):
        return None
    token = value[len(_BEARER_PREFIX) :]
    if not token or any(ch in _TOKEN_FORBIDDEN for ch in token):
        return None
    return token


# --- upload paths ---------------------------------------------------------------------------

_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


def upload_path_error(path: str) -> str | None:
    """§7.4 path rules plus G-6; None when `path` is acceptable, else a short reason.

    Applied to the value as received (after query decoding, before anything else).
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


# --- content types --------------------------------------------------------------------------

CONTENT_TYPES: dict[str, str] = {
    # The reference's built-in table (§7.4) ...
    ".avif": "image/avif",
    ".css": "text/css; charset=utf-8",
    ".gif": "image/gif",
    ".htm": "text/html; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".jpeg": "image/jpeg",
    ".jpg": "image/jpeg",
    ".js": "text/javascript; charset=utf-8",
    ".json": "application/json",
    ".mjs": "text/javascript; charset=utf-8",
    ".pdf": "application/pdf",
    ".png": "image/png",
    ".svg": "image/svg+xml",
    ".wasm": "application/wasm",
    ".webp": "image/webp",
    ".xml": "text/xml; charset=utf-8",
    # ... plus what a static site commonly ships, instead of a host MIME database.
    ".txt": "text/plain; charset=utf-8",
    ".md": "text/markdown; charset=utf-8",
    ".csv": "text/csv; charset=utf-8",
    ".ico": "image/x-icon",
    ".woff": "font/woff",
    ".woff2": "font/woff2",
    ".ttf": "font/ttf",
    ".otf": "font/otf",
    ".map": "application/json",
    ".webmanifest": "application/manifest+json",
    ".mp4": "video/mp4",
    ".webm": "video/webm",
    ".mp3": "audio/mpeg",
}
DEFAULT_CONTENT_TYPE = "application/octet-stream"


def _extension(path: str) -> str:
    """The suffix from the last `.` of the last segment, `.` included (Go's `path.Ext`)."""
    name = path.rsplit("/", 1)[-1]
    dot = name.rfind(".")
    return name[dot:] if dot >= 0 else ""


def content_type_for(path: str, declared: str | None) -> str:
    """§7.4 step 4: the declared Content-Type verbatim; else the table by extension (exact,
    then lower-cased); else application/octet-stream. Never the platform `mimetypes` module.

    A declared value of only spaces/tabs counts as absent (the wire would deliver it empty).
    """
    if declared and declared.strip(" \t"):
        return declared
    ext = _extension(path)
    if not ext:
        return DEFAULT_CONTENT_TYPE
    return CONTENT_TYPES.get(ext) or CONTENT_TYPES.get(ext.lower()) or DEFAULT_CONTENT_TYPE


# --- finalize -------------------------------------------------------------------------------

# Go's strings.TrimSpace set (Unicode White_Space); Python's str.strip() also strips \x1c-\x1f.
_WHITESPACE = (
    "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009"
    "\u200a\u2028\u2029\u202f\u205f\u3000"
)


def parse_mode(raw: str | None) -> AliasName | None:
    """§7.5: trimmed, case-insensitive; absent/""/preview → preview; production → production;
    anything else → None (→ 400 bad_request)."""
    mode = (raw or "").strip(_WHITESPACE).lower()
    if mode in ("", "preview"):
        return "preview"
    if mode == "production":
        return "production"
    return None


_FRAMEWORK_PREFIXES = ("_app/immutable/", ".next/", ".nuxt/", ".svelte-kit/", ".output/")

FRAMEWORK_HINT = (
    "This looks like an unexported framework build. Configure a static export (for example "
    "Next.js output: 'export', nuxi generate, or SvelteKit's static adapter) and point the "
    "build output at the export directory, which contains index.html."
)


def looks_like_framework_build(files: Sequence[str]) -> bool:
    """§7.6: whether finalize's missing_index answer carries FRAMEWORK_HINT."""
    entries = [entry.replace("\\", "/") for entry in files]
    for entry in entries:
        if entry == "nitro.json" or entry.startswith(_FRAMEWORK_PREFIXES):
            return True
    return "BUILD_ID" in entries and "build-manifest.json" in entries


# --- query strings --------------------------------------------------------------------------

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
    """§7.4 step 2, §17.1: decode a raw query string (without its `?`) like the reference.

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


# --- times ----------------------------------------------------------------------------------

_RFC3339_RE = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(?:(Z)|([+-])(\d{2}):(\d{2}))",
    re.ASCII,
)


def parse_rfc3339(value: str) -> datetime | None:
    """§13.4 `since`: `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)` → an aware datetime, else None.

    As the reference (Go's time.RFC3339): upper-case `T` and `Z` only, any number of fraction
    digits (kept to microseconds), second 60 refused, offsets below 24:00. Year 0000 is
    refused because datetime cannot hold it.
    """
    match = _RFC3339_RE.fullmatch(value)
    if match is None:
        return None
    year, month, day, hour, minute, second = (int(match.group(i)) for i in range(1, 7))
    fraction, zulu, sign, off_hour, off_minute = match.group(7, 8, 9, 10, 11)
    micro = int((fraction or "0")[:6].ljust(6, "0"))
    if zulu:
        tz = UTC
    else:
        oh, om = int(off_hour), int(off_minute)
        if oh > 23 or om > 59:
            return None
        offset = timedelta(hours=oh, minutes=om)
        tz = timezone(-offset if sign == "-" else offset)
    try:
        return datetime(year, month, day, hour, minute, second, micro, tzinfo=tz)
    except ValueError:
        return None
