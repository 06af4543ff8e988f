"""The site-worker Lambda: the SQS FIFO event source of the site-events queue, with
`ReportBatchItemFailures`. Each batch goes to `artemis.jobs.site_worker.process_batch`, which
runs gc-site once per site (or finishes a repository request) and answers which records failed;
that module describes the failure classes, the backoff and the dead-letter copies.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from artemis import invocation, runtime
from artemis.config import SiteWorkerSettings
from artemis.jobs.common import Clock, system_clock
from artemis.jobs.site_worker import (
    MAX_RECEIVES,
    MIN_RUN_SECONDS,
    RESERVE_SECONDS,
    GcRunner,
    Policy,
    backoff_seconds,
    process_batch,
)
from artemis.observability import logger
from artemis.runtime import Runtime

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


def make_handler(
    *,
    rt: Runtime[SiteWorkerSettings] | None = None,
    run: GcRunner | None = None,
    clock: Clock = system_clock,
    reserve_seconds: float = RESERVE_SECONDS,
    min_run_seconds: float = MIN_RUN_SECONDS,
    max_receives: int = MAX_RECEIVES,
    backoff: Callable[[int], int] = backoff_seconds,
) -> Handler:
    """The Lambda handler. `rt` defaults to the process Runtime and `run` to gc-site; both
    are read per call, so the Runtime is built on the first invocation, not at import. Its
    settings model has no session key: the worker never signs or verifies a deploy session."""
    policy = Policy(clock, reserve_seconds, min_run_seconds, max_receives, backoff)

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        with invocation.running(context):  # the site-lock waits of a run end in time
            the_rt = rt if rt is not None else runtime.current(SiteWorkerSettings)
            return process_batch(the_rt, event, context, run=run, policy=policy)

    return handler


handler = logger.inject_lambda_context(make_handler())
