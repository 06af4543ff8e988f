"""The gc-site worker Lambda: SQS FIFO event source with `ReportBatchItemFailures`
(spec/durable.md §9.1, §11.3).

One message group per site, so at most one message of a site is in flight and gc-site runs
one at a time per site (V7, E2). Records are processed with Powertools'
`SqsFifoPartialProcessor(skip_group_on_error=True)`: once a record fails, the later records of
its group in the batch are reported failed without running (§11.3 item 2); other groups go on.

Per record (a `repo.approved` event, group `repo-request.<id>`, finishes that repo request's
approval through `artemis.services.repos.finish_approval` with the same retry and DLQ rules;
everything below is about `site.changed`):
* **Malformed** (not JSON, unknown topic, no usable site, group ≠ site): permanent. A copy goes
  to the DLQ with the error and receive count and the record is acknowledged, so its group
  unblocks at once (§11.3 item 1: "fail, alert, free the key").
* **Coalesced**: a later record of a site that already ran successfully in this batch is
  acknowledged without running. Safe: every message of the batch was sent before the batch
  was received, so that run started after every change those messages announce committed
  (§9.1.3: no lost trailing change). The watermark of §9.1.3 is not implemented (optional).
* **Run**: `run_gc_site(rt, site, now=clock(), deadline=…)`, the deadline being the remaining
  invocation time less a reserve, read per record.
* **Transient** failure (site lock contended, Postgres connection loss or lock timeout, S3
  5xx/SlowDown/throttling, a run that stopped for time): the message's visibility becomes a
  backoff (30 s x receive count, ≤ 300 s) and the record is reported failed; the records of
  its group skipped behind it are made visible again at once, so that only the backoff blocks
  the group (they stay behind the failed one: FIFO delivers nothing of a group while one of
  its messages is in flight).
* **Any other error**: transient on the first receive, permanent from the second (DLQ +
  acknowledge). A transient failure on the last allowed receive (`max_receives`, the redrive
  policy's maxReceiveCount) is dead-lettered the same way, so the DLQ copy carries the error.
* **Crash or timeout**: nothing can be reported; the message returns after the queue's
  visibility timeout (keep the function timeout short; §11.3 item 1).
If a DLQ copy cannot be sent, the record is reported failed instead (never acknowledged
without a copy).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, NoReturn, Protocol

import psycopg
from aws_lambda_powertools.utilities.batch import (
    SqsFifoPartialProcessor,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from botocore.exceptions import ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

from artemis import invocation, runtime
from artemis.db.outbox import REPO_APPROVED
from artemis.errors import RepoCreateRetryable, SiteLocked, SiteLockFailed
from artemis.jobs.common import Clock, Deadline, system_clock
from artemis.keys import Dirname
from artemis.observability import logger, metrics
from artemis.queue import (
    MalformedEvent,
    SiteEvent,
    backoff_seconds,
    change_visibility,
    send_to_dlq,
)

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

    from artemis.runtime import Runtime

RESERVE_SECONDS = 30.0  # internal budget = function timeout - 30 s (§11.4)
MIN_RUN_SECONDS = 5.0  # a run is not started with less time than this left
MAX_RECEIVES = 5  # the queue's redrive maxReceiveCount
# Throttling and server-side error codes of S3 (and other AWS services) worth a retry.
TRANSIENT_AWS_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "RequestThrottled",
        "RequestTimeout",
        "RequestTimeoutException",
        "InternalError",
        "ServiceUnavailable",
        "503",
        "500",
    }
)


class GcOutcome(Protocol):
    @property
    def incomplete(self) -> bool: ...


class GcRunner(Protocol):
    """`artemis.jobs.gc_site.run_gc_site`'s signature."""

    def __call__(
        self,
        rt: Runtime,
        site: Dirname,
        *,
        now: datetime,
        deadline: Deadline,
        dry_run: bool | None = None,
    ) -> GcOutcome: ...


Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


class RetryLater(Exception):
    """Raised for a record that will come back after a backoff (reported as a failure)."""


class Incomplete(Exception):
    """The run stopped early for time; the next delivery resumes it."""


class OutOfTime(Exception):
    """Too little of the invocation left to start a run."""


def is_transient(err: BaseException) -> bool:
    """True for failures a later attempt can get past: the site lock, Postgres connection or
    lock-timeout errors, AWS throttling, 5xx and connection errors — looked for along the
    exception's cause chain (storage errors wrap the botocore error)."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(
            current, (SiteLocked, SiteLockFailed, Incomplete, OutOfTime, RepoCreateRetryable)
        ):
            return True
        if isinstance(current, psycopg.OperationalError):
            return True  # connection loss, pool timeout, lock timeout (55P03)
        if isinstance(current, (BotoConnectionError, HTTPClientError)):
            return True  # botocore: endpoint unreachable, connection closed, read timeout
        if isinstance(current, ClientError):
            error = current.response.get("Error", {})
            status = current.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            if error.get("Code") in TRANSIENT_AWS_CODES or status >= 500 or status == 429:
                return True
        current = current.__cause__ or current.__context__
    return False


def make_handler(
    *,
    rt: Runtime | None = None,
    run: GcRunner | None = None,
    clock: Clock = system_clock,
    reserve_seconds: float = RESERVE_SECONDS,
    min_run_seconds: float = MIN_RUN_SECONDS,
    max_receives: int = MAX_RECEIVES,
    backoff: Callable[[int], int] = backoff_seconds,
) -> Handler:
    """The Lambda handler. `rt` defaults to the process Runtime and `run` to
    `artemis.jobs.gc_site.run_gc_site` (imported on first use); both are read per call."""
    queue_urls: dict[str, str] = {}

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        the_rt = rt if rt is not None else runtime.current()
        the_run = run if run is not None else _default_runner()
        batch = _Batch(
            the_rt, the_run, context, clock, reserve_seconds, min_run_seconds,
            max_receives, backoff, queue_urls,
        )  # fmt: skip
        processor = SqsFifoPartialProcessor(skip_group_on_error=True)
        # Report failures item by item even when every record failed: an orderly partial
        # response, not a function error (with BatchSize 1 every retry would count as one).
        processor.raise_on_entire_batch_failure = False
        try:
            with invocation.running(context):  # the site-lock waits of a run end in time
                response: dict[str, Any] = dict(
                    process_partial_response(
                        event=event,
                        record_handler=batch.process,
                        processor=processor,
                        context=context,
                    )
                )
            batch.release_skipped(event, response)
        finally:
            _flush_metrics()
        logger.info(
            "site_worker.batch",
            extra={
                "records": len(event.get("Records", [])),
                "failed": len(response.get("batchItemFailures", [])),
                "outcomes": batch.outcomes,
            },
        )
        return response

    return handler


def _default_runner() -> GcRunner:
    from artemis.jobs.gc_site import run_gc_site  # lazily: the module is optional at import

    runner: GcRunner = run_gc_site
    return runner


class _Batch:
    """The state of one invocation: which sites ran, which records were answered."""

    def __init__(
        self,
        rt: Runtime,
        run: GcRunner,
        context: Any,
        clock: Clock,
        reserve_seconds: float,
        min_run_seconds: float,
        max_receives: int,
        backoff: Callable[[int], int],
        queue_urls: dict[str, str],
    ) -> None:
        self.rt = rt
        self.run = run
        self.context = context
        self.clock = clock
        self.reserve_seconds = reserve_seconds
        self.min_run_seconds = min_run_seconds
        self.max_receives = max_receives
        self.backoff = backoff
        self.queue_urls = queue_urls
        self.done_sites: set[str] = set()
        self.handled: set[str] = set()  # records whose visibility this batch already set
        self.outcomes: dict[str, int] = {}

    @property
    def sqs(self) -> SQSClient:
        return self.rt.sqs

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
            result = self.run(self.rt, site, now=self.clock(), deadline=deadline)
        except Exception as err:
            return self._failed(record, err, count, log)
        if result.incomplete:
            stopped = Incomplete(f"gc-site for {site} stopped early for time")
            if count < self.max_receives:
                self._retry(record, self.backoff(count), stopped, log)
            return self._dead_letter(record, stopped, count, log)
        self.done_sites.add(site)
        logger.info("site_worker.ran", extra=log)
        return self._outcome("ran")

    def _finish_repo_request(
        self, record: SQSRecord, request_id: str, count: int, log: dict[str, Any]
    ) -> str:
        """A `repo.approved` event: finish the approval if it is still open (§12.9, the
        durable half). GitHub's transient failures come back after a backoff."""
        from artemis.services.repos import finish_approval  # only for this topic

        log.update(repo_request=request_id)
        deadline = self._start_deadline(record, log)
        try:
            outcome = finish_approval(
                self.rt, request_id, deadline=time.monotonic() + deadline.remaining()
            )
        except Exception as err:
            return self._failed(record, err, count, log)
        logger.info("site_worker.repo_request", extra={**log, "outcome": outcome})
        return self._outcome(f"repo_{outcome}")

    def _start_deadline(self, record: SQSRecord, log: dict[str, Any]) -> Deadline:
        """The work's deadline (the invocation's time less the reserve); a record that cannot
        start with `min_run_seconds` left is retried at once instead."""
        deadline = Deadline.from_lambda(self.context, reserve_seconds=self.reserve_seconds)
        if not deadline.has(self.min_run_seconds):
            self._retry(record, 0, OutOfTime("too little time left to start"), log)
        return deadline

    def _failed(
        self, record: SQSRecord, err: BaseException, count: int, log: dict[str, Any]
    ) -> str:
        """A transient error, or any error on a first receive, is retried after a backoff
        while receives remain; anything else goes to the DLQ."""
        if (is_transient(err) or count < 2) and count < self.max_receives:
            self._retry(record, self.backoff(count), err, log)
        return self._dead_letter(record, err, count, log)

    def _retry(
        self, record: SQSRecord, seconds: int, err: BaseException, log: dict[str, Any]
    ) -> NoReturn:
        self.handled.add(record.message_id)
        try:
            change_visibility(self.sqs, self._queue_url(record), record.receipt_handle, seconds)
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
        dlq_url = self._dlq_url(record)
        if dlq_url is None:
            logger.error("site_worker.no_dlq", extra={**log, "op": "gc.site.run"})
            self._retry(record, self.backoff(count), err, log)
        try:
            copy_id = send_to_dlq(self.sqs, dlq_url, record.raw_event, err, count)
        except Exception as send_err:
            logger.exception("site_worker.dlq_send_failed", extra=log)
            self._retry(record, self.backoff(count), send_err, log)
        logger.error(
            "site_worker.dead_lettered",
            extra={**log, "op": "gc.site.run", "dlq_message_id": copy_id,
                   "error": f"{type(err).__name__}: {err}"},
        )  # fmt: skip
        _metric("gc.run_failed", 1)
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
                    change_visibility(self.sqs, self._queue_url(record), record.receipt_handle, 0)
                except Exception:
                    logger.exception(
                        "site_worker.visibility_failed", extra={"message_id": record.message_id}
                    )

    # --- queue addresses -----------------------------------------------------------------------

    def _queue_url(self, record: SQSRecord) -> str:
        arn = record.event_source_arn
        url = self.queue_urls.get(arn)
        if url is None:
            _, _, _, _, account, name = arn.split(":", 5)
            configured = self.rt.settings.site_events_queue_url
            if configured and configured.rstrip("/").endswith("/" + name):
                url = configured
            else:
                url = self.sqs.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)[
                    "QueueUrl"
                ]
            self.queue_urls[arn] = url
        return url

    def _dlq_url(self, record: SQSRecord) -> str | None:
        """SITE_EVENTS_DLQ_URL, else the source queue's redrive target."""
        if self.rt.settings.site_events_dlq_url:
            return self.rt.settings.site_events_dlq_url
        key = "dlq:" + record.event_source_arn
        if key not in self.queue_urls:
            try:
                attrs = self.sqs.get_queue_attributes(
                    QueueUrl=self._queue_url(record), AttributeNames=["RedrivePolicy"]
                )["Attributes"]
                target = json.loads(attrs["RedrivePolicy"])["deadLetterTargetArn"]
                _, _, _, _, account, name = str(target).split(":", 5)
                self.queue_urls[key] = self.sqs.get_queue_url(
                    QueueName=name, QueueOwnerAWSAccountId=account
                )["QueueUrl"]
            except Exception:
                logger.exception("site_worker.dlq_lookup_failed")
                return None
        return self.queue_urls[key]


_flush_lock = threading.Lock()


def _flush_metrics() -> None:
    """Publish what gc-site added to the shared Powertools metric set, once per invocation.
    Only when there is something (an empty flush warns), under a lock (the local runtime
    calls handlers from several threads), never raising, and clearing the set even when
    metrics are disabled (POWERTOOLS_DEV), so it cannot grow across invocations."""
    with _flush_lock:
        try:
            if metrics.metric_set:
                metrics.flush_metrics()
                metrics.clear_metrics()
        except Exception:
            logger.exception("metrics.flush_failed")


def _metric(name: str, value: float) -> None:
    """One EMF line (no shared metric set to flush between invocations or threads)."""
    try:
        from aws_lambda_powertools import single_metric
        from aws_lambda_powertools.metrics import MetricUnit

        with single_metric(name=name, unit=MetricUnit.Count, value=value, namespace="Artemis") as m:
            m.add_dimension(name="service", value="artemis")
    except Exception:
        logger.exception("metric.failed", extra={"metric": name})


# The Lambda entry point (the Runtime is read on the first invocation, not at import).
handler = logger.inject_lambda_context(make_handler())
