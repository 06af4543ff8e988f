"""Webhook events: the event types a subscription may ask for, the ids, the body every
attempt of a delivery sends, and the retry schedule. Pure: stdlib only, no I/O.

A delivery body is fixed when the event is written (the signature covers its bytes, and a
receiver de-duplicates on the delivery id, so every retry must send the same bytes):

    {"id": "evt_…", "type": "deploy.finalized", "createdAt": "<RFC 3339>", "site": "www",
     "data": {...}}
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

DEPLOY_FINALIZED = "deploy.finalized"
ALIAS_MOVED = "alias.moved"
DEPLOY_DELETED = "deploy.deleted"
DEPLOY_RESTORED = "deploy.restored"
SITE_DELETED = "site.deleted"
PING = "ping"  # sent by the ping route only; never subscribed to
EVENT_TYPES: tuple[str, ...] = (
    DEPLOY_FINALIZED, ALIAS_MOVED, DEPLOY_DELETED, DEPLOY_RESTORED, SITE_DELETED,
)  # fmt: skip

MAX_HOOKS_PER_SITE = 20
MAX_URL_CHARS = 2048
HOOK_ID_RE = re.compile(r"^hk_[0-9a-f]{20}\Z", re.ASCII)
DELIVERY_ID_RE = re.compile(r"^dlv_[0-9a-f]{20}\Z", re.ASCII)
SECRET_BYTES = 32

# Retries: base x 2^(attempt-1), at most RETRY_CAP_SECONDS apart, for RETRY_WINDOW_SECONDS
# after the event (then the delivery is recorded as failed and dead-lettered).
RETRY_BASE_SECONDS = 10.0
RETRY_CAP_SECONDS = 3600.0
RETRY_WINDOW_SECONDS = 24 * 3600.0


class InvalidEvents(ValueError):
    """An `events` list a subscription cannot have."""


def check_events(values: Sequence[str]) -> tuple[str, ...]:
    """The event types asked for, each once, in EVENT_TYPES order."""
    if not values:
        raise InvalidEvents(f"events must list at least one of {', '.join(EVENT_TYPES)}")
    unknown = [v for v in values if v not in EVENT_TYPES]
    if unknown:
        raise InvalidEvents(f"unknown event {unknown[0]!r}: events are {', '.join(EVENT_TYPES)}")
    return tuple(t for t in EVENT_TYPES if t in values)


def is_hook_id(value: str) -> bool:
    return HOOK_ID_RE.fullmatch(value) is not None


def is_delivery_id(value: str) -> bool:
    return DELIVERY_ID_RE.fullmatch(value) is not None


def mint_hook_id() -> str:
    return "hk_" + secrets.token_hex(10)


def mint_delivery_id() -> str:
    return "dlv_" + secrets.token_hex(10)


def mint_event_id() -> str:
    return "evt_" + secrets.token_hex(10)


def mint_secret() -> str:
    """A subscription's signing secret: shown once, at creation."""
    return "whsec_" + secrets.token_urlsafe(SECRET_BYTES)


def event_body(
    event_id: str, event_type: str, created_at: datetime, site: str, data: Mapping[str, Any]
) -> bytes:
    created = created_at.isoformat(timespec="seconds").replace("+00:00", "Z")
    document = {"id": event_id, "type": event_type, "createdAt": created, "site": site,
                "data": dict(data)}  # fmt: skip
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


def retry_delay(attempt: int, base: float = RETRY_BASE_SECONDS) -> int:
    """Seconds before the attempt after `attempt` (1-based): base x 2^(attempt-1), capped."""
    exponent = min(max(attempt, 1) - 1, 30)
    return int(min(base * 2**exponent, RETRY_CAP_SECONDS))
