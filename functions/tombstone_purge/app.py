"""The nightly cleanup Lambda (EventBridge schedule `cron(0 3 * * ? *)`, UTC).

Runs the tombstone purge, the outbox purge and the gc-site backstop (artemis.jobs.purge) inside
the invocation's remaining time, and returns a JSON summary. A failed part fails the invocation
(after the other parts ran), so the error alarm and the missing-success alarm fire.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from artemis import invocation, runtime
from artemis.config import JobSettings
from artemis.deadlines import Deadline
from artemis.jobs.common import system_clock
from artemis.jobs.purge import NightlyFailed, run_nightly
from artemis.observability import logger, metrics

# Validate configuration at cold start, so a bad value fails the init with its one line.
runtime.current(JobSettings)


@metrics.log_metrics
@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    deadline = Deadline.from_lambda(context)
    logger.info(
        "tombstone_purge.start", extra={"event_id": event.get("id"), "time": event.get("time")}
    )
    try:
        with invocation.running(context):  # the per-site lock waits end in time
            result = run_nightly(
                runtime.current(JobSettings), now=system_clock(), deadline=deadline
            )
    except NightlyFailed as failed:
        logger.error("tombstone_purge.failed", extra={"summary": failed.result.to_json()})
        raise
    summary = result.to_json()
    logger.info("tombstone_purge.done", extra={"summary": summary})
    return summary
