"""The backfill Lambda: rebuild the index from the bucket (artemis.jobs.backfill), invoked by
an operator (or `artemis-admin backfill`).

Event: `{}` or `{"start_after": "<dirname>"}`. A bucket too large for one invocation returns
`complete: false` and `resume_after`; invoke again with `{"start_after": <resume_after>}`.
Content-index rows the run's hashing budget did not reach are counted `deferred`: invoke again
(from the start) until it is 0.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from artemis import runtime
from artemis.config import JobSettings
from artemis.deadlines import Deadline
from artemis.jobs.backfill import run_backfill
from artemis.jobs.common import system_clock
from artemis.observability import logger, metrics

# Validate configuration at cold start, so a bad value fails the init with its one line.
runtime.current(JobSettings)


@metrics.log_metrics
@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    start_after = event.get("start_after") if isinstance(event, dict) else None
    if start_after is not None and not isinstance(start_after, str):
        raise ValueError('"start_after" must be a dirname')
    result = run_backfill(
        runtime.current(JobSettings),
        now=system_clock(),
        deadline=Deadline.from_lambda(context, reserve_seconds=15.0),
        start_after=start_after or None,
    )
    for name in (
        "sites",
        "deploys",
        "aliases",
        "skipped_tombstoned",
        "size_probe_failures",
        "digests_from_marker",
        "hashed",
        "deferred",
    ):
        metrics.add_metric(
            name=f"backfill.{name}", unit=MetricUnit.Count, value=getattr(result, name)
        )
    metrics.add_metric(name="backfill.duration_s", unit=MetricUnit.Seconds, value=result.duration_s)
    return result.to_json()
