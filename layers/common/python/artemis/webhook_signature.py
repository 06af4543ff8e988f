"""The signature a webhook delivery carries, and its check (pure; stdlib only).

The header value is `t=<unix seconds>,v1=<hex HMAC-SHA256>`; the MAC is computed under the
subscription's secret over `f"{t}."` followed by the exact body bytes, so a body cannot be
replayed under another timestamp. A receiver rotating its secret may be sent several `v1=`
entries (one per secret still valid); any one of them matching is enough.
"""

from __future__ import annotations

import hashlib
import hmac

__all__ = ["DEFAULT_TOLERANCE", "sign", "signature", "verify"]

DEFAULT_TOLERANCE = 300  # seconds either side of the receiver's clock
_MAX_HEADER = 4096  # a longer header is refused unread


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The hex HMAC-SHA256 of `f"{timestamp}."` + `body` under `secret`."""
    message = f"{timestamp}.".encode() + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The header value: `t=<timestamp>,v1=<signature>`."""
    return f"t={timestamp},v1={signature(secret, timestamp, body)}"


def verify(
    secret: str, header: str, body: bytes, *, now: int, tolerance: int = DEFAULT_TOLERANCE
) -> bool:
    """Whether `header` signs `body` under `secret` with a timestamp within `tolerance`
    seconds of `now` (older or newer is refused). Several `v1=` entries are accepted (secret
    rotation); every comparison is constant-time. A malformed header is False, never an error."""
    if not isinstance(header, str) or len(header) > _MAX_HEADER:
        return False
    timestamp: int | None = None
    candidates: list[str] = []
    for item in header.split(","):
        key, sep, value = item.strip().partition("=")
        if not sep:
            return False
        if key == "t":
            if timestamp is not None or not value.isascii() or not value.isdigit():
                return False
            timestamp = int(value)
        elif key == "v1":
            candidates.append(value)
        # other schemes (v0, v2, …) are ignored, as a receiver of a newer sender would
    if timestamp is None or not candidates or abs(now - timestamp) > tolerance:
        return False
    expected = signature(secret, timestamp, body).encode()
    matched = False
    for candidate in candidates:  # every entry compared: the time taken says nothing
        matched |= hmac.compare_digest(expected, candidate.encode("ascii", "replace"))
    return matched
