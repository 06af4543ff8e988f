"""The running invocation's deadline, for code far below the handler that must not outlast it.

Lambda ends an invocation at its timeout whatever the code is doing, and behind API Gateway a
request that outlives the function gets the gateway's own 5xx instead of our answer. A handler
enters `running(context)`; anything under it (the site lock's wait, in particular) asks
`current()` for the Deadline and stops waiting in time. Outside a handler (the admin CLI,
tests) there is no deadline: `current()` and `remaining_seconds()` are None.

A context variable, so concurrent requests in one process (the local gateway serves each on
its own thread) each see their own deadline.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from artemis.deadlines import Deadline

_deadline: ContextVar[Deadline | None] = ContextVar("artemis_invocation_deadline", default=None)


@contextmanager
def running(context: Any) -> Iterator[None]:
    """Within this block the invocation ends when `context` (a Lambda context) says it does.
    A context that cannot tell its remaining time sets no deadline."""
    try:
        deadline: Deadline | None = Deadline.from_lambda(context, reserve_seconds=0.0)
    except (AttributeError, TypeError, ValueError):
        deadline = None
    with until(deadline):
        yield


@contextmanager
def until(deadline: Deadline | None) -> Iterator[None]:
    """Within this block the invocation ends at `deadline` (None: no deadline)."""
    token = _deadline.set(deadline)
    try:
        yield
    finally:
        _deadline.reset(token)


def current() -> Deadline | None:
    """The current invocation's deadline, or None outside one."""
    return _deadline.get()


def remaining_seconds() -> float | None:
    """Seconds until the current invocation is ended (≥ 0), or None outside one."""
    deadline = _deadline.get()
    return None if deadline is None else deadline.remaining()


def stop_time(seconds: float, reserve_seconds: float) -> float:
    """The `time.monotonic()` value by which a request's parallel work must have started:
    `seconds` from now, or sooner when the invocation ends first, keeping `reserve_seconds`
    for the work under way and the answer. Read it on the request's own thread: worker
    threads do not see the invocation's deadline."""
    budget = seconds
    deadline = current()
    if deadline is not None:
        budget = min(budget, deadline.remaining() - reserve_seconds)
    return time.monotonic() + budget
