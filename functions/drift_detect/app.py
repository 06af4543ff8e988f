"""The drift-detect Lambda (EventBridge schedule `cron(0 4 * * ? *)`, UTC): the read-only fleet
sweep of artemis.jobs.drift, inside the invocation's remaining time.

A sweep that does not fit in one invocation returns `complete: false` with its `run_id`; the
next invocation (a later schedule tick, or a Step Functions loop that passes `{"run_id": N}`
back until `complete`) resumes after its cursor. A failing verdict (`drift.selfcheck`,
`drift.unreadable`, or aliased-missing together with an unread site) fails the invocation after
the verdict is recorded, so the error alarm fires.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from artemis import runtime
from artemis.config import JobSettings
from artemis.deadlines import Deadline
from artemis.drift_report import DriftReport
from artemis.jobs.common import system_clock
from artemis.jobs.drift import DriftFailed, run_drift
from artemis.observability import logger, metrics

# Validate configuration at cold start, so a bad value fails the init with its one line.
runtime.current(JobSettings)


def _run_id(event: Any) -> int | None:
    raw = event.get("run_id") if isinstance(event, dict) else None
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, int | str) or not str(raw).isdigit():
        raise ValueError(f"run_id must be a positive integer, got {raw!r}")
    return int(raw)


@metrics.log_metrics
@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    try:
        report = run_drift(
            runtime.current(JobSettings),
            now=system_clock(),
            deadline=Deadline.from_lambda(context, reserve_seconds=15.0),
            run_id=_run_id(event),
        )
    except DriftFailed as failed:
        _emit(failed.report)
        logger.error("drift_detect.failed", extra={"report": failed.report.to_json()})
        raise
    _emit(report)
    if report.complete and not report.skipped:  # the 26-hour "no sweep" alarm watches this
        metrics.add_metric(name="drift.run_succeeded", unit=MetricUnit.Count, value=1)
    return report.to_json()


def _emit(report: DriftReport) -> None:
    for name, value in report.metrics().items():
        unit = MetricUnit.Seconds if name.endswith("_s") else MetricUnit.Count
        metrics.add_metric(name=name, unit=unit, value=value)
