"""The running invocation's deadline, for code far below the handler that must not outlast it.

Lambda ends an invocation at its timeout whatever the code is doing, and behind API Gateway a
request that outlives the function gets the gateway's own 5xx instead of our answer. A handler
enters `running(context)`; anything under it (the site lock's wait, in particular) asks
`remaining_seconds()` and stops waiting in time. Outside a handler (the admin CLI, tests) there
is no deadline and `remaining_seconds()` is None.

A context variable, so concurrent requests in one process (the local gateway serves each on
its own thread) each see their own deadline.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

_ends_at: ContextVar[float | None] = ContextVar("artemis_invocation_ends_at", default=None)


@contextmanager
def running(context: Any) -> Iterator[None]:
    """Within this block the invocation ends when `context` (a Lambda context) says it does.
    A context that cannot tell its remaining time sets no deadline."""
    try:
        remaining_ms = float(context.get_remaining_time_in_millis())
    except (AttributeError, TypeError, ValueError):
        token = _ends_at.set(None)
    else:
        token = _ends_at.set(time.monotonic() + remaining_ms / 1000.0)
    try:
        yield
    finally:
        _ends_at.reset(token)


def remaining_seconds() -> float | None:
    """Seconds until the current invocation is ended (≥ 0), or None outside one."""
    ends_at = _ends_at.get()
    return None if ends_at is None else max(0.0, ends_at - time.monotonic())
