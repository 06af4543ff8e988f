"""One place for logging and metrics: Powertools Logger (JSON) and Metrics (EMF).

Two ways to publish a metric:
* `metrics.add_metric(...)` adds to the process's shared metric set, which the function
  publishes once at the end of its invocation (`@metrics.log_metrics`, or `flush_metrics()`);
* `emit_metric(...)` writes one EMF line at once from a metric set of its own, for code that
  must not depend on who flushes (the relay's drain, the site worker's dead-letter count).
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from aws_lambda_powertools import Logger, Metrics

SERVICE = "artemis"
NAMESPACE = "Artemis"

logger = Logger(service=SERVICE)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)

# Lambda runs one invocation per process at a time, so flushing the shared set needs no
# lock there; a process that runs several handlers on threads installs one (guard_flushes).
_flush_guard: AbstractContextManager[Any] = nullcontext()


def guard_flushes(guard: AbstractContextManager[Any]) -> None:
    """Serialise `flush_metrics` under `guard` (a lock) from now on, in this process."""
    global _flush_guard
    _flush_guard = guard


def flush_metrics() -> None:
    """Publish and clear the shared metric set. Only when it holds something (an empty flush
    warns), never raising, and clearing it even when metrics are disabled (POWERTOOLS_DEV),
    so it cannot grow across invocations."""
    with _flush_guard:
        try:
            if metrics.metric_set:
                metrics.flush_metrics()
                metrics.clear_metrics()
        except Exception:
            logger.exception("metrics.flush_failed")


def emit_metric(name: str, value: float, unit: str = "Count", more: Iterable[float] = ()) -> None:
    """One EMF line for `name` whose values array holds `value` and `more`, published now
    from a metric set of its own: nothing shared to flush, nothing leaks between invocations
    or threads, and a failure is logged, never raised."""
    try:
        from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

        line = EphemeralMetrics(namespace=NAMESPACE, service=SERVICE)
        for each in (value, *more):
            line.add_metric(name=name, unit=MetricUnit(unit), value=each)
        line.flush_metrics()
    except Exception:
        logger.exception("metric.failed", extra={"metric": name})
