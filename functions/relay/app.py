"""The outbox relay Lambda (spec/durable.md §7.5, §11.2, §11.4).

An EventBridge schedule invokes it every minute (timeout 60 s, reserved concurrency 1-2; more
than one is safe because claims use SKIP LOCKED). One invocation loops: a `drain` at least
every `interval_seconds` (5 s) until the budget — the remaining Lambda time less a 10 s reserve
(≈50 s) — is spent. A drain keeps claiming passes while they come back full, so a backlog is
cleared within the tick instead of at 100 rows per 5 s.

A failed drain is logged at error level (`relay.run`) and the loop goes on (§7.5); at the end
the invocation raises `RelayFailed` if any drain had a failure, so the function's Errors metric
and its alarm fire. Keep the schedule's asynchronous retries at 0: the next tick is the retry.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from artemis import runtime
from artemis.config import JobSettings
from artemis.db import outbox
from artemis.jobs.common import Deadline
from artemis.jobs.relay import PASS_RESERVE_SECONDS, RelayFailed, RelayResult, drain
from artemis.observability import logger
from artemis.queue import Publisher, SqsPublisher

INTERVAL_SECONDS = 5.0
RESERVE_SECONDS = 10.0


def publisher_for(rt: runtime.Runtime[JobSettings]) -> SqsPublisher:
    url = rt.settings.site_events_queue_url
    if not url:
        raise RuntimeError("SITE_EVENTS_QUEUE_URL is not set: the relay has nowhere to publish")
    return SqsPublisher(rt.sqs, url)


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
    """Drain every `interval_seconds` until the budget ends; `budget_seconds` caps the Lambda
    budget (tests and the local scheduler use a short one). Raises RelayFailed at the end if
    any drain failed; otherwise returns the totals."""
    deadline = Deadline.from_lambda(context, reserve_seconds=reserve_seconds)
    if budget_seconds is not None:
        deadline = Deadline(min(deadline.ends_at, Deadline.after(budget_seconds).ends_at))
    pub = publisher if publisher is not None else publisher_for(rt)
    total = RelayResult()
    drains = 0
    while True:
        tick = time.monotonic()
        drains += 1
        try:
            got = drain(
                rt, pub, deadline=deadline, limit=limit, pass_reserve_seconds=min_drain_seconds
            )
        except Exception as err:  # e.g. the database is unreachable; the next tick retries
            logger.exception("relay.drain_raised", extra={"op": "relay.run"})
            got = RelayResult(errors=[f"{type(err).__name__}: {err}"], stopped_by="error")
        _add(total, got)
        wait = max(0.0, tick + interval_seconds - time.monotonic())
        if got.stopped_by == "budget" or deadline.remaining() < wait + min_drain_seconds:
            break
        sleep(wait)
    summary = {"drains": drains, **total.counts(), "errors": total.errors[:10]}
    logger.info("relay.invocation", extra=summary)
    if not total.ok:
        raise RelayFailed(total)
    return summary


def _add(total: RelayResult, got: RelayResult) -> None:
    total.passes += got.passes
    total.claimed += got.claimed
    total.published += got.published
    total.failed += got.failed
    total.released += got.released
    total.errors.extend(got.errors)


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return run(runtime.current(JobSettings), context)
