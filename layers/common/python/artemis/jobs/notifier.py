"""The notifier: one SQS FIFO batch of webhook deliveries (`hook.delivery` messages of the
notifications queue), answered as a partial batch response.

Each message names one delivery: one event for one webhook, its bytes fixed in Postgres
(`hook_deliveries`). Per record:
* the delivery and its webhook are read; a delivery already finished, or whose webhook was
  removed, is acknowledged without a request (a duplicate message, a withdrawn URL);
* one attempt: a signed POST through artemis.outbound (the URL checked again, the checked
  address connected to, no redirect, 10 s, 64 KiB of answer read), logged in `hook_attempts`;
* a 2xx is delivered. Otherwise, within `HOOK_RETRY_WINDOW` of the event (or of its latest
  redelivery) the message's visibility becomes the backoff (`hook_events.retry_delay`) and the
  record is reported failed: its webhook's group waits behind it (deliveries stay in order per
  webhook), other groups go on. Past the window the delivery is recorded as failed, a copy
  goes to the notifications DLQ with the error, and the record is acknowledged.

The message groups of a batch (one per webhook) run in parallel, each in order, and each
message is deleted as soon as it is done (its group unblocks at once, not when the batch
returns), so a slow or dead receiver holds back no other webhook, not even one of the same
site; the records of a group stop at its first failure (Powertools' `SqsFifoPartialProcessor` with
`skip_group_on_error`), and those skipped are made visible again at once so only the
backoff blocks the group. A crash after a POST and before its log resends it after the
visibility timeout (at least once: the delivery id lets a receiver drop the copy).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.utilities.batch import (
    SqsFifoPartialProcessor,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from artemis import hook_events, invocation, outbound, webhook_signature
from artemis.config import RepoSettings
from artemis.db import deploys as deploys_db
from artemis.db import github_deployments as gh_db
from artemis.db import hooks as hooks_db
from artemis.deadlines import Deadline
from artemis.github_app import DeploymentError
from artemis.keys import Dirname
from artemis.observability import logger
from artemis.queue import MalformedEvent, SiteEvent, change_visibility, send_to_dlq
from artemis.times import utcnow

if TYPE_CHECKING:
    from artemis.config import JobSettings
    from artemis.github_app import GitHubApp
    from artemis.runtime import Runtime

MAX_PARALLEL_GROUPS = 10  # a batch holds at most 10 records
SEND_TIMEOUT_SECONDS = 10.0
RESERVE_SECONDS = SEND_TIMEOUT_SECONDS + 5.0  # no attempt is started with less time left
_COMMIT = re.compile(r"[0-9a-fA-F]{7,40}")  # what GitHub takes as a deployment's ref


class RetryLater(Exception):
    """The record comes back after its backoff (reported as a failure)."""


@dataclass(frozen=True)
class Policy:
    """What tests change: the clock the signature's timestamp reads, the send timeout."""

    clock: Callable[[], float] = time.time
    timeout: float = SEND_TIMEOUT_SECONDS


def process_batch(
    rt: Runtime[JobSettings], event: dict[str, Any], context: Any, *, policy: Policy = Policy()
) -> dict[str, Any]:
    records: list[dict[str, Any]] = list(event.get("Records", []))
    groups: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        group = str((record.get("attributes") or {}).get("MessageGroupId") or "")
        groups.setdefault(group, []).append(record)
    # Read here: the group threads do not see the invocation's context variable.
    batch = _Batch(rt, policy, context, invocation.current())
    if not groups:
        return {"batchItemFailures": []}
    with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL_GROUPS, len(groups))) as pool:
        answers = list(pool.map(batch.run_group, groups.values()))
    failures = [item for answer in answers for item in answer.get("batchItemFailures", [])]
    summary = {"records": len(records), "groups": len(groups), "failed": len(failures),
               "outcomes": batch.outcomes}  # fmt: skip
    logger.info("notifier.batch", extra=summary)
    return {"batchItemFailures": failures}


@dataclass
class _Batch:
    rt: Runtime[JobSettings]
    policy: Policy
    context: Any
    deadline: Deadline | None
    outcomes: dict[str, int] = field(default_factory=dict)
    handled: set[str] = field(default_factory=set)  # records whose visibility was set

    def run_group(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        processor = SqsFifoPartialProcessor(skip_group_on_error=True)
        processor.raise_on_entire_batch_failure = False
        answer: dict[str, Any] = dict(
            process_partial_response(
                event={"Records": records},
                record_handler=self.process,
                processor=processor,
                context=self.context,
            )
        )
        # Records skipped behind a failure: visible again at once, so only the backoff of
        # the failed one holds the group (FIFO keeps them behind it).
        for item in answer.get("batchItemFailures", []):
            message_id = item["itemIdentifier"]
            if message_id in self.handled:
                continue
            record = next(r for r in records if r["messageId"] == message_id)
            try:
                self._visibility(record, 0)
            except Exception:
                logger.warning("notifier.release_failed", extra={"message_id": message_id})
        return answer

    def _count(self, outcome: str) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1

    def _visibility(self, record: dict[str, Any], seconds: int) -> None:
        url = self.rt.settings.notifications_queue_url
        if url:
            change_visibility(self.rt.sqs, url, record["receiptHandle"], seconds)

    def process(self, record: SQSRecord) -> str:
        raw = record.raw_event
        receive_count = int(record.attributes.approximate_receive_count or "1")
        try:
            message = SiteEvent.parse(record.body)
            if message.topic not in (hooks_db.HOOK_DELIVERY, hooks_db.GITHUB_DEPLOYMENT):
                raise MalformedEvent(f"the notifier does not take {message.topic!r}")
        except MalformedEvent as err:
            self._dead_letter(raw, str(err), receive_count)
            self._acknowledge(raw)
            self._count("malformed")
            return "malformed"
        if message.topic == hooks_db.GITHUB_DEPLOYMENT:
            sent_ms = int(record.attributes.sent_timestamp or 0)
            outcome = self.github(message.payload, raw, receive_count, sent_ms / 1000.0)
        else:
            outcome = self.attempt(str(message.payload["delivery"]), raw, receive_count)
        self._acknowledge(raw)
        self._count(outcome)
        return outcome

    def _acknowledge(self, raw: dict[str, Any]) -> None:
        """Delete a finished message now rather than when the whole batch returns: until it is
        deleted its group is blocked, so a slow receiver elsewhere in the batch would hold back
        this webhook's next event. (The event source mapping's own delete of it later is a
        no-op; if this one fails, that one still happens.)"""
        url = self.rt.settings.notifications_queue_url
        if not url:
            return
        try:
            self.rt.sqs.delete_message(QueueUrl=url, ReceiptHandle=raw["receiptHandle"])
        except Exception:
            logger.warning("notifier.early_ack_failed", extra={"message_id": raw["messageId"]})

    def attempt(self, delivery_id: str, raw: dict[str, Any], receive_count: int) -> str:
        settings = self.rt.settings
        with self.rt.db.transaction() as conn:
            target = hooks_db.target(conn, delivery_id)
        if target is None:
            return "dropped"  # the webhook was removed, and its deliveries with it
        if target.state != "pending":
            return "finished"  # a duplicate message, or a redelivery already made
        if self.deadline is not None and self.deadline.remaining() < RESERVE_SECONDS:
            self._visibility(raw, 0)
            self.handled.add(raw["messageId"])
            raise RetryLater("too little of the invocation left for an attempt")
        attempt = target.attempts + 1
        stamp = int(self.policy.clock())
        headers = {
            "Content-Type": "application/json",
            "X-Artemis-Event": target.event_type,
            "X-Artemis-Delivery": target.id,
            "X-Artemis-Signature": webhook_signature.sign(target.secret, stamp, target.body),
        }
        sent = outbound.post(
            target.url, target.body, headers,
            allow_loopback_http=settings.hook_allow_loopback_http, timeout=self.policy.timeout,
        )  # fmt: skip
        now = utcnow()
        error = None if sent.ok else (sent.error or f"status {sent.status}")
        expired = (now - target.retry_from).total_seconds() >= settings.hook_retry_window
        state = "delivered" if sent.ok else ("failed" if expired else "pending")
        with self.rt.db.transaction() as conn:
            hooks_db.record_attempt(conn, target.id, attempt, now, sent.status, error,
                                    sent.duration_ms, state=state)  # fmt: skip
        log = {"delivery": target.id, "webhook": target.subscription_id, "attempt": attempt,
               "status": sent.status, "error": error, "ms": sent.duration_ms}  # fmt: skip
        if sent.ok:
            logger.info("notifier.delivered", extra=log)
            return "delivered"
        if state == "failed":
            logger.error("notifier.gave_up", extra=log)
            self._dead_letter(raw, f"{target.id}: {error} after {attempt} attempts",
                              receive_count)  # fmt: skip
            return "failed"
        delay = hook_events.retry_delay(attempt, settings.hook_retry_base)
        logger.warning("notifier.retry", extra={**log, "retry_in": delay})
        self._visibility(raw, delay)
        self.handled.add(raw["messageId"])
        raise RetryLater(f"{target.id}: {error}; retry in {delay} s")

    # --- GitHub deployments ------------------------------------------------------------------

    def github(
        self, payload: dict[str, Any], raw: dict[str, Any], receive_count: int, sent_at: float
    ) -> str:
        """Tell GitHub of an alias move: `inactive` on the deployment the alias left, and for
        a deploy that carries `repo` and its commit, a deployment of the environment (created
        once) with a `success` status and the alias's URL. A refusal GitHub will repeat (no
        access to the repository, an unknown commit) is recorded and dropped: it never fails
        a deploy; a transient one is retried with the webhooks' backoff and window."""
        settings = self.rt.settings
        if not (isinstance(settings, RepoSettings) and settings.repo_feature_enabled):
            return "github_off"
        site, environment = Dirname(str(payload["site"])), str(payload["alias"])
        try:
            self._github_inactive(site, environment, payload.get("previousDeployId"))
            done = self._github_success(site, environment, payload)
        except DeploymentError as err:
            if not err.transient:
                logger.warning("notifier.github_refused", extra={"site": site, "error": err.detail})
                return "github_refused"
            if time.time() - sent_at >= settings.hook_retry_window:
                self._dead_letter(raw, f"github: {err.detail}", receive_count)
                return "github_failed"
            delay = hook_events.retry_delay(receive_count, settings.hook_retry_base)
            logger.warning("notifier.github_retry", extra={"site": site, "error": err.detail,
                                                           "retry_in": delay})  # fmt: skip
            self._visibility(raw, delay)
            self.handled.add(raw["messageId"])
            raise RetryLater(f"github: {err.detail}") from err
        return "github" if done else "github_nothing"

    def _github_inactive(self, site: Dirname, environment: str, previous: object) -> None:
        if not isinstance(previous, str) or not previous:
            return
        with self.rt.db.transaction() as conn:
            left = gh_db.get(conn, site, previous, environment)
        if left is None:
            return
        self._app().post_deployment_status(
            left.repo, left.deployment_id, "inactive",
            description=f"{environment} moved on from {previous}",
        )  # fmt: skip
        with self.rt.db.transaction() as conn:
            gh_db.record(conn, site, previous, environment, "inactive", None)

    def _github_success(self, site: Dirname, environment: str, payload: dict[str, Any]) -> bool:
        deploy_id = payload.get("deployId")
        if not isinstance(deploy_id, str) or not deploy_id:
            return False
        with self.rt.db.transaction() as conn:
            context = deploys_db.context(conn, site, deploy_id)
            made = gh_db.get(conn, site, deploy_id, environment)
        repo, sha = context.get("repo"), context.get("sha")
        if not isinstance(repo, str) or not isinstance(sha, str) or not _COMMIT.fullmatch(sha):
            return False  # not a deploy GitHub can place: no repository or no commit
        app = self._app()
        if made is None:
            number = app.create_deployment(
                repo, sha, environment, description=f"Artemis deploy {deploy_id}",
                transient=environment not in ("production", "preview"),
                production=environment == "production",
            )  # fmt: skip
            with self.rt.db.transaction() as conn:
                gh_db.insert(conn, site, deploy_id, environment, repo, number)
                made = gh_db.get(conn, site, deploy_id, environment)
            assert made is not None
        url, log_url = payload.get("url"), context.get("ciUrl")
        app.post_deployment_status(
            made.repo, made.deployment_id, "success",
            environment_url=url if isinstance(url, str) else None,
            log_url=log_url if isinstance(log_url, str) else None,
            description=f"{deploy_id} is live on {environment}",
        )  # fmt: skip
        with self.rt.db.transaction() as conn:
            gh_db.record(conn, site, deploy_id, environment, "success", None)
        return True

    def _app(self) -> GitHubApp:
        return self.rt.github_app

    def _dead_letter(self, raw: dict[str, Any], error: str, receive_count: int) -> None:
        dlq = self.rt.settings.notifications_dlq_url
        if not dlq:  # never acknowledged without a copy
            raise RuntimeError("NOTIFICATIONS_DLQ_URL is not set: there is no dead-letter queue")
        send_to_dlq(self.rt.sqs, dlq, raw, error, receive_count)
