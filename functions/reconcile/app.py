"""The reconcile Lambda: an operator-invoked repair of one site (artemis.jobs.reconcile).

Event: `{"site": "<slug or dirname>", "apply": false}` — a dry run unless `apply` is true.
The result is the report. A refused name, an empty-listing fault or a failed repair fails the
invocation (the partial report is logged); a run cut short by the invocation's time returns
`complete: false`, and invoking again resumes (every repair is guarded by its in-lock read).
The operator CLI (`artemis-admin reconcile <site> [--apply]`) runs the same code.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from artemis import invocation, runtime
from artemis.config import JobSettings
from artemis.deadlines import Deadline
from artemis.jobs.common import system_clock
from artemis.jobs.reconcile import ReconcileError, run_reconcile
from artemis.observability import logger, metrics

# Validate configuration at cold start, so a bad value fails the init with its one line.
runtime.current(JobSettings)


def parse_event(event: Any) -> tuple[str, bool]:
    if not isinstance(event, dict):
        raise ValueError("the event must be an object")
    site, apply = event.get("site"), event.get("apply", False)
    if not isinstance(site, str) or not site:
        raise ValueError('the event needs "site": a slug or dirname')
    if not isinstance(apply, bool):
        raise ValueError('"apply" must be true or false')
    return site, apply


@metrics.log_metrics
@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    site, apply = parse_event(event)
    try:
        with invocation.running(context):  # the repair's site-lock waits end in time
            report = run_reconcile(
                runtime.current(JobSettings),
                site,
                apply=apply,
                now=system_clock(),
                deadline=Deadline.from_lambda(context, reserve_seconds=15.0),
            )
    except ReconcileError as err:
        partial = err.report.to_json() if err.report else None
        logger.error("reconcile.failed", extra={"error": str(err), "report": partial})
        raise
    for name, value in report.counts().items():
        if isinstance(value, int) and not isinstance(value, bool):
            metrics.add_metric(name=f"reconcile.{name}", unit=MetricUnit.Count, value=value)
    return report.to_json()
