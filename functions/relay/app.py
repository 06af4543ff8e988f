"""The outbox relay Lambda. An EventBridge schedule invokes it every minute (timeout 60 s,
reserved concurrency 1-2; more than one is safe because claims skip locked rows). It drains
the outbox into the site-events queue until its remaining time less a 10 s reserve is spent
(`artemis.jobs.relay.run_relay`), and fails the invocation if any drain failed, so the
function's Errors metric and its alarm fire. The schedule's retries stay at 0: the next tick
is the retry.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from artemis import runtime
from artemis.config import JobSettings
from artemis.db import outbox
from artemis.deadlines import Deadline
from artemis.jobs.relay import INTERVAL_SECONDS, PASS_RESERVE_SECONDS, run_relay
from artemis.observability import logger
from artemis.queue import Publisher, SiteEventsQueue

RESERVE_SECONDS = 10.0


def run(
    rt: runtime.Runtime[JobSettings],
    context: Any,
    *,
    publisher: Publisher | None = None,
    interval_seconds: float = INTERVAL_SECONDS,
    budget_seconds: float | None = None,
    reserve_seconds: float = RESERVE_SECONDS,
    min_drain_seconds: float = PASS_RESERVE_SECONDS,
    limit: int = outbox.CLAIM_LIMIT,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """One invocation: the Lambda's remaining time less the reserve, capped by
    `budget_seconds` (tests and the local scheduler use a short one), spent draining."""
    deadline = Deadline.from_lambda(context, reserve_seconds=reserve_seconds)
    if budget_seconds is not None:
        deadline = deadline.sooner(Deadline.after(budget_seconds))
    return run_relay(
        rt,
        publisher if publisher is not None else SiteEventsQueue.of(rt).publisher(),
        deadline=deadline,
        interval_seconds=interval_seconds,
        min_drain_seconds=min_drain_seconds,
        limit=limit,
        sleep=sleep,
    )


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return run(runtime.current(JobSettings), context)
