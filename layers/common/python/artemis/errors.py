"""Domain errors. Each carries the HTTP status and the machine-readable code of the error
envelope (spec/api.md §2.4, §2.9); the API maps them to responses in exactly one place."""

from __future__ import annotations

from typing import Any


class ArtemisError(Exception):
    """Base of every error a client may see. `extra` adds fields to the envelope."""

    status: int = 500
    code: str = "internal_error"
    default_message: str = "internal error"

    def __init__(self, message: str | None = None, **extra: Any) -> None:
        super().__init__(message or self.default_message)
        self.message = message or self.default_message
        self.extra = extra


class SiteLocked(ArtemisError):
    status, code = 409, "site_locked"
    default_message = "another operation holds this site's lock; retry"


class SiteLockFailed(ArtemisError):
    status, code = 502, "site_lock_failed"
    default_message = "could not take the site lock"


class StorageError(ArtemisError):
    """A bucket call failed; `code` names the operation (r2_put_failed, r2_list_failed …)."""

    status = 502
    default_message = "object storage request failed"

    def __init__(self, code: str, message: str | None = None) -> None:
        super().__init__(message)
        self.code = code
