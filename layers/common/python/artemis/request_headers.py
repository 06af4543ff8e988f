"""The two request headers every route reads: `X-Request-ID` and `Authorization: Bearer`.
Pure: stdlib only, no I/O."""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable

REQUEST_ID_RE: re.Pattern[str] = re.compile(r"^[A-Za-z0-9._:-]{1,128}\Z", re.ASCII)
"""The only inbound `X-Request-ID` values that are echoed, logged and audited: anything else
could forge log lines or smuggle markup into the audit trail."""


def request_id(inbound: str | None, generate: Callable[[], str] | None = None) -> str:
    """Echo the inbound id only if it matches REQUEST_ID_RE, else a new one (24 lowercase hex
    characters, 12 random bytes, unless `generate` is given)."""
    if inbound is not None and REQUEST_ID_RE.fullmatch(inbound) is not None:
        return inbound
    if generate is not None:
        return generate()
    return secrets.token_hex(12)


_BEARER_PREFIX = "Bearer "
_TOKEN_FORBIDDEN = frozenset(" \t\r\n")


def bearer_token(header: str | None) -> str | None:
    """The token of `Bearer <token>`, or None (→ 401 missing_bearer).

    Leading and trailing spaces/tabs are stripped first, as the HTTP servers clients already
    deploy against do before a handler sees the value: `Bearer tok ` is accepted, `Bearer ` is
    refused.
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
