"""The site worker: one SQS FIFO batch of site events, processed with Powertools'
`SqsFifoPartialProcessor` and answered as a partial batch response (`batchItemFailures`).

The queue has one message group per site, so at most one message of a site is in flight and
gc-site runs one at a time per site. With `skip_group_on_error`, once a record fails the later
records of its group in the batch are reported failed without running (never acknowledged:
they must not overtake it); other groups go on.

Per record (a `repo.approved` event, group `repo-request.<id>`, finishes that repo request's
approval through `artemis.services.repos.finish_approval` with the same retry and DLQ rules;
everything below is about `site.changed`):
* **Malformed** (not JSON, unknown topic, no usable site, group ≠ site): permanent. A copy goes
  to the DLQ with the error and receive count and the record is acknowledged, so its group
  unblocks at once instead of being retried forever.
* **Coalesced**: a later record of a site that already ran successfully in this batch is
  acknowledged without running. Safe: every message of the batch was sent before the batch
  was received, so that run started after every change those messages announce committed.
* **Run**: `run_gc_site(rt, site, now=clock(), deadline=…)`, the deadline being the remaining
  invocation time less a reserve, read per record.
* **Transient** failure (`is_transient`: site lock contended, Postgres connection loss or lock
  timeout, S3 5xx/SlowDown/throttling, a run that stopped for time): the message's visibility
  becomes a backoff (30 s x receive count, ≤ 300 s) and the record is reported failed; the
  records of its group skipped behind it are made visible again at once, so that only the
  backoff blocks the group (they stay behind the failed one: FIFO delivers nothing of a group
  while one of its messages is in flight).
* **Any other error**: transient on the first receive, permanent from the second (DLQ +
  acknowledge). A transient failure on the last allowed receive (`max_receives`, the redrive
  policy's maxReceiveCount) is dead-lettered the same way, so the DLQ copy carries the error.
* **Crash or timeout**: nothing can be reported; the message returns after the queue's
  visibility timeout (so the function's timeout is kept short).
If a DLQ copy cannot be sent (or no DLQ is configured), the record is reported failed instead:
never acknowledged without a copy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any, NoReturn, Protocol

from aws_lambda_powertools.utilities.batch import (
    SqsFifoPartialProcessor,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from artemis.db import connection as db_connection
from artemis.db.outbox import REPO_APPROVED
from artemis.deadlines import Deadline
from artemis.errors import RepoCreateRetryable, SiteLocked, SiteLockFailed
from artemis.jobs.common import Clock, system_clock
from artemis.keys import Dirname
from artemis.observability import emit_metric, flush_metrics, logger
from artemis.queue import MalformedEvent, SiteEvent, SiteEventsQueue
from artemis.storage import s3 as storage

if TYPE_CHECKING:
    from artemis.config import SiteWorkerSettings
    from artemis.runtime import Runtime

RESERVE_SECONDS = 30.0  # the work's budget is the invocation's remaining time less this
MIN_RUN_SECONDS = 5.0  # a run is not started with less time than this left
MAX_RECEIVES = 5  # the queue's redrive maxReceiveCount


def backoff_seconds(receive_count: int) -> int:
    """Visibility backoff after a transient failure: 30 s x receive count, at most 5 min."""
    return min(30 * max(1, receive_count), 300)


class GcOutcome(Protocol):
    @property
    def incomplete(self) -> bool: ...


class GcRunner(Protocol):
    """`artemis.jobs.gc_site.run_gc_site`'s signature."""

    def __call__(
        self,
        rt: Runtime[SiteWorkerSettings],
        site: Dirname,
        *,
        now: datetime,
        deadline: Deadline,
        dry_run: bool | None = None,
    ) -> GcOutcome: ...


class RetryLater(Exception):
    """Raised for a record that will come back after a backoff (reported as a failure)."""


class Incomplete(Exception):
    """The run stopped early for time; the next delivery resumes it."""


class OutOfTime(Exception):
    """Too little of the invocation left to start a run."""


_ALWAYS_TRANSIENT = (SiteLocked, SiteLockFailed, Incomplete, OutOfTime, RepoCreateRetryable)


def is_transient(err: BaseException) -> bool:
    """True for failures a later attempt can get past: the site lock, a run out of time, a
    repository creation GitHub may still finish, and what the database and storage adapters
    call transient — looked for along the exception's cause chain (a StorageError wraps the
    botocore error that caused it)."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, _ALWAYS_TRANSIENT):
            return True
        if db_connection.is_transient(current) or storage.is_transient(current):
            return True
        current = current.__cause__ or current.__context__
    return False


@dataclass(frozen=True)
class Policy:
    """The worker's retry policy; tests shorten the backoff or the receive limit."""

    clock: Clock = system_clock
    reserve_seconds: float = RESERVE_SECONDS
    min_run_seconds: float = MIN_RUN_SECONDS
    max_receives: int = MAX_RECEIVES
    backoff: Callable[[int], int] = backoff_seconds


def process_batch(
    rt: Runtime[SiteWorkerSettings],
    event: dict[str, Any],
    context: Any,
    *,
    run: GcRunner | None = None,
    policy: Policy = Policy(),
) -> dict[str, Any]:
    """Process one Lambda SQS event; the partial batch response. `run` defaults to
    `artemis.jobs.gc_site.run_gc_site` (imported on first use)."""
    batch = _Batch(rt, run if run is not None else _default_runner(), context, policy)
    processor = SqsFifoPartialProcessor(skip_group_on_error=True)
    # Report failures item by item even when every record failed: an orderly partial
    # response, not a function error (with BatchSize 1 every retry would count as one).
    processor.raise_on_entire_batch_failure = False
    try:
        response: dict[str, Any] = dict(
            process_partial_response(
                event=event, record_handler=batch.process, processor=processor, context=context
            )
        )
        batch.release_skipped(event, response)
    finally:
        flush_metrics()  # what gc-site added to the shared metric set
    logger.info(
        "site_worker.batch",
        extra={
            "records": len(event.get("Records", [])),
            "failed": len(response.get("batchItemFailures", [])),
            "outcomes": batch.outcomes,
        },
    )
    return response


def _default_runner() -> GcRunner:
    from artemis.jobs.gc_site import run_gc_site  # lazily: the module is optional at import

    runner: GcRunner = run_gc_site
    return runner


@dataclass
class _Batch:
    """The state of one invocation: which sites ran, which records were answered."""

    rt: Runtime[SiteWorkerSettings]
    run: GcRunner
    context: Any
    policy: Policy
    done_sites: set[str] = field(default_factory=set)
    handled: set[str] = field(default_factory=set)  # records whose visibility was set
    outcomes: dict[str, int] = field(default_factory=dict)

    @cached_property
    def queue(self) -> SiteEventsQueue:
        return SiteEventsQueue.of(self.rt)

    # --- one record ----------------------------------------------------------------------

    def process(self, record: SQSRecord) -> str:
        count = int(record.attributes.approximate_receive_count or "1")
        log = {"message_id": record.message_id, "receive_count": count}
        try:
            event = SiteEvent.parse(record.body)
            group = record.attributes.message_group_id
            if group is not None and group != event.group:
                raise MalformedEvent(f"group {group!r} is not the event's group {event.group!r}")
        except MalformedEvent as err:
            return self._dead_letter(record, err, count, log)
        if event.topic == REPO_APPROVED:
            return self._finish_repo_request(record, str(event.payload["request"]), count, log)
        site = event.site
        log.update(site=site, outbox_id=event.outbox_id)
        if site in self.done_sites:
            logger.info("site_worker.coalesced", extra=log)
            return self._outcome("coalesced")
        deadline = self._start_deadline(record, log)
        try:
            result = self.run(self.rt, site, now=self.policy.clock(), deadline=deadline)
        except Exception as err:
            return self._failed(record, err, count, log)
        if result.incomplete:
            stopped = Incomplete(f"gc-site for {site} stopped early for time")
            if count < self.policy.max_receives:
                self._retry(record, self.policy.backoff(count), stopped, log)
            return self._dead_letter(record, stopped, count, log)
        self.done_sites.add(site)
        logger.info("site_worker.ran", extra=log)
        return self._outcome("ran")

    def _finish_repo_request(
        self, record: SQSRecord, request_id: str, count: int, log: dict[str, Any]
    ) -> str:
        """A `repo.approved` event: finish the approval if it is still open (the durable half
        of an approval whose creation the API could not finish in time). GitHub's transient
        failures come back after a backoff."""
        from artemis.services.repos import finish_approval  # only for this topic

        log.update(repo_request=request_id)
        deadline = self._start_deadline(record, log)
        try:
            outcome = finish_approval(self.rt, request_id, deadline=deadline)
        except Exception as err:
            return self._failed(record, err, count, log)
        logger.info("site_worker.repo_request", extra={**log, "outcome": outcome})
        return self._outcome(f"repo_{outcome}")

    def _start_deadline(self, record: SQSRecord, log: dict[str, Any]) -> Deadline:
        """The work's deadline (the invocation's time less the reserve); a record that cannot
        start with `min_run_seconds` left is retried at once instead."""
        deadline = Deadline.from_lambda(self.context, reserve_seconds=self.policy.reserve_seconds)
        if not deadline.has(self.policy.min_run_seconds):
            self._retry(record, 0, OutOfTime("too little time left to start"), log)
        return deadline

    def _failed(
        self, record: SQSRecord, err: BaseException, count: int, log: dict[str, Any]
    ) -> str:
        """A transient error, or any error on a first receive, is retried after a backoff
        while receives remain; anything else goes to the DLQ."""
        if (is_transient(err) or count < 2) and count < self.policy.max_receives:
            self._retry(record, self.policy.backoff(count), err, log)
        return self._dead_letter(record, err, count, log)

    def _retry(
        self, record: SQSRecord, seconds: int, err: BaseException, log: dict[str, Any]
    ) -> NoReturn:
        self.handled.add(record.message_id)
        try:
            self.queue.change_visibility(record.receipt_handle, seconds)
        except Exception:  # the queue's visibility timeout applies instead
            logger.exception("site_worker.visibility_failed", extra=log)
        logger.warning(
            "site_worker.retry",
            extra={**log, "backoff_s": seconds, "error": f"{type(err).__name__}: {err}"},
        )
        self._outcome("retry")
        raise RetryLater(f"{type(err).__name__}: {err}") from err

    def _dead_letter(
        self, record: SQSRecord, err: BaseException, count: int, log: dict[str, Any]
    ) -> str:
        queue = self.queue
        if not queue.dlq_url:
            # Without a copy the error would be lost: report it failed, and the queue's own
            # redrive policy moves the message once its receives are spent.
            logger.error("site_worker.no_dlq", extra={**log, "op": "gc.site.run"})
            self._retry(record, self.policy.backoff(count), err, log)
        try:
            copy_id = queue.dead_letter(record.raw_event, err, count)
        except Exception as send_err:
            logger.exception("site_worker.dlq_send_failed", extra=log)
            self._retry(record, self.policy.backoff(count), send_err, log)
        logger.error(
            "site_worker.dead_lettered",
            extra={**log, "op": "gc.site.run", "dlq_message_id": copy_id,
                   "error": f"{type(err).__name__}: {err}"},
        )  # fmt: skip
        emit_metric("gc.run_failed", 1)
        return self._outcome("dead_lettered")

    def _outcome(self, name: str) -> str:
        self.outcomes[name] = self.outcomes.get(name, 0) + 1
        return name

    # --- after the batch ---------------------------------------------------------------------

    def release_skipped(self, event: dict[str, Any], response: dict[str, Any]) -> None:
        """Make the records skipped behind a failed one of their group visible again now:
        otherwise they keep the group blocked for the queue's whole visibility timeout, and
        the failed record's shorter backoff would mean nothing."""
        failed = {item["itemIdentifier"] for item in response.get("batchItemFailures", [])}
        for raw in event.get("Records", []):
            record = SQSRecord(raw)
            if record.message_id in failed and record.message_id not in self.handled:
                self._outcome("skipped")
                try:
                    self.queue.change_visibility(record.receipt_handle, 0)
                except Exception:
                    logger.exception(
                        "site_worker.visibility_failed", extra={"message_id": record.message_id}
                    )
