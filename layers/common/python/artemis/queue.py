"""The SQS side of the site-events pipeline: the relay publishes outbox rows to a FIFO queue,
the site worker consumes them and dead-letters what it cannot process.

* `SiteEvent`: the message body the relay sends and the site worker reads.
* `Publisher` / `SqsPublisher`: the relay's port and its FIFO adapter. Group id = the payload's
  site (one run per site at a time), deduplication id = the outbox id (a relay re-publish inside
  five minutes is dropped by SQS; later duplicates are harmless because every consumer reads
  the current state rather than the message). Content-based deduplication must stay off, or
  two announcements of the same site with equal bodies would be merged.
* `SiteEventsQueue`: the queue and its dead-letter queue at the URLs the settings name (the
  template gives both to every function that uses them, so nothing is looked up at run time):
  the relay's publisher, the worker's visibility changes and DLQ copies.

The event source mapping the local runtime uses in Lambda's place is in
`artemis_local.sqs_source`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from artemis.db.hooks import GITHUB_DEPLOYMENT, HOOK_DELIVERY
from artemis.db.outbox import REPO_APPROVED, SITE_CHANGED, OutboxMessage
from artemis.deadlines import Deadline
from artemis.keys import Dirname
from artemis.observability import logger

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import (
        MessageAttributeValueTypeDef,
        SendMessageBatchRequestEntryTypeDef,
    )

    from artemis.config import JobSettings
    from artemis.runtime import Runtime

TOPICS = frozenset({SITE_CHANGED, REPO_APPROVED, HOOK_DELIVERY, GITHUB_DEPLOYMENT})
# Topics published to the notifications queue rather than the site-events queue: a webhook
# that is slow or down must never hold back a site's GC, which shares no queue with it.
NOTIFICATION_TOPICS = frozenset({HOOK_DELIVERY, GITHUB_DEPLOYMENT})
_REQUEST_ID = re.compile(r"req_[0-9a-f]{20}")
_HOOK_ID = re.compile(r"hk_[0-9a-f]{20}")
_DELIVERY_ID = re.compile(r"dlv_[0-9a-f]{20}")
SEND_BATCH_MAX = 10  # SendMessageBatch / DeleteMessageBatch entry limit
MAX_VISIBILITY_SECONDS = 43_200  # SQS's ceiling (12 h)
# MessageGroupId: 1-128 characters, alphanumeric and punctuation (no spaces, ASCII only).
_GROUP_ID = re.compile(r"[!-~]{1,128}")
_ERROR_TEXT_MAX = 1_000


class MalformedEvent(ValueError):
    """A message body that can never be processed: a permanent failure, never retried."""


# --- the message body ------------------------------------------------------------------------


@dataclass(frozen=True)
class SiteEvent:
    """`{"topic": "site.changed", "payload": {"site": "<dirname>"}, "outbox_id": 7,
    "claimed_at": "<RFC 3339>"}`. `claimed_at` is the database clock read right after the
    claim statement: later than the commit of every row the claim saw, so a worker run that
    starts after it sees every change the message announces."""

    topic: str
    payload: dict[str, Any]
    outbox_id: int
    claimed_at: datetime | None = None

    @property
    def site(self) -> Dirname:
        return Dirname(self.payload["site"])

    @property
    def group(self) -> str:
        """The FIFO message group the relay sent it in."""
        return group_id(self.topic, self.payload)

    def to_json(self) -> str:
        return json.dumps(
            {
                "topic": self.topic,
                "payload": self.payload,
                "outbox_id": self.outbox_id,
                "claimed_at": self.claimed_at.isoformat() if self.claimed_at else None,
            },
            separators=(",", ":"),
            sort_keys=True,
        )

    @classmethod
    def parse(cls, body: str) -> SiteEvent:
        """The event in `body`, or MalformedEvent (bad JSON, unknown topic, missing site)."""
        try:
            data = json.loads(body)
        except (TypeError, ValueError) as err:
            raise MalformedEvent(f"body is not JSON: {err}") from None
        if not isinstance(data, dict):
            raise MalformedEvent("body is not a JSON object")
        topic = data.get("topic")
        if topic not in TOPICS:
            raise MalformedEvent(f"unknown topic {topic!r}")
        payload = data.get("payload")
        if not isinstance(payload, dict):
            raise MalformedEvent("payload is not an object")
        problem = payload_problem(topic, payload)
        if problem:
            raise MalformedEvent(problem)
        outbox_id = data.get("outbox_id")
        if not isinstance(outbox_id, int) or isinstance(outbox_id, bool):
            raise MalformedEvent("outbox_id is not an integer")
        claimed_at = data.get("claimed_at")
        try:
            stamp = datetime.fromisoformat(claimed_at) if claimed_at is not None else None
        except (TypeError, ValueError):
            raise MalformedEvent(f"claimed_at is not a timestamp: {claimed_at!r}") from None
        return cls(topic, payload, outbox_id, stamp)


def group_id(topic: str, payload: Mapping[str, Any]) -> str:
    """The FIFO message group of an event (one run at a time per group): the site's dirname
    for `site.changed`, `repo-request.<id>` for `repo.approved`, `hook.<id>` for a webhook's
    deliveries (in order per webhook, and one webhook's retries hold back no other).
    Call after the checks."""
    if topic == REPO_APPROVED:
        return f"repo-request.{payload['request']}"
    if topic == HOOK_DELIVERY:
        return f"hook.{payload['subscription']}"
    if topic == GITHUB_DEPLOYMENT:  # in order per site: an alias's statuses follow its moves
        return f"github.{payload['site']}"
    return str(payload["site"])


def payload_problem(topic: str, payload: Mapping[str, Any]) -> str | None:
    """Why `payload` cannot be an event of `topic` (None when it can)."""
    if topic == REPO_APPROVED:
        request = payload.get("request")
        if not isinstance(request, str) or not _REQUEST_ID.fullmatch(request):
            return "payload has no repo request id"
        return None
    if topic == HOOK_DELIVERY:
        subscription, delivery = payload.get("subscription"), payload.get("delivery")
        if not isinstance(subscription, str) or not _HOOK_ID.fullmatch(subscription):
            return "payload has no webhook id"
        if not isinstance(delivery, str) or not _DELIVERY_ID.fullmatch(delivery):
            return "payload has no delivery id"
    if topic == GITHUB_DEPLOYMENT:
        if not isinstance(payload.get("alias"), str) or not payload["alias"]:
            return "payload has no alias"
        problem = site_problem(payload)
        if problem is None and len(str(payload["site"])) > 120:
            return "site is too long for a github.<site> message group"
        return problem
    return site_problem(payload)


def site_problem(payload: Mapping[str, Any]) -> str | None:
    """Why `payload` cannot be a site event (None when it can)."""
    site = payload.get("site")
    if not isinstance(site, str) or not site:
        return "payload has no site"
    if not _GROUP_ID.fullmatch(site):
        return f"site {site!r} cannot be a message group id (1-128 printable ASCII, no spaces)"
    return None


# --- publishing --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClaimedMessage(OutboxMessage):
    """An outbox row as the relay claimed it: the row plus the claim's database timestamp."""

    claimed_at: datetime | None = None


@dataclass
class PublishOutcome:
    """What one `publish` call did. Rows in neither list were not attempted: a transport
    failure stops the batch (`stopped`): the rows after it are left for the next pass."""

    published: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    error: str | None = None  # the first error
    stopped: bool = False

    def fail(self, ids: Sequence[int], error: str, *, stop: bool = False) -> None:
        self.failed.extend(ids)
        if self.error is None:
            self.error = error
        self.stopped = self.stopped or stop


class Publisher(Protocol):
    def publish(self, messages: Sequence[OutboxMessage]) -> PublishOutcome: ...


def reject_reason(message: OutboxMessage) -> str | None:
    """Why `message` can never be published (None when it can)."""
    if message.topic not in TOPICS:
        return f"outbox {message.id}: unknown topic {message.topic!r}"
    problem = (
        payload_problem(message.topic, message.payload)
        if isinstance(message.payload, dict)
        else "no payload"
    )
    return f"outbox {message.id}: {problem}" if problem else None


class SqsPublisher:
    """Sends outbox rows to a FIFO queue in `SendMessageBatch` calls of at most 10, in id order.

    Two kinds of failure:
    * a **row fault** (unknown topic, payload without a usable site, or SQS refusing one entry
      with `SenderFault`): that row fails — it is never sent and never dropped; it stays in the
      outbox, unpublished, and keeps being reported — while the other rows go on. Stopping here
      would let one bad row block every later event of every site forever, and nothing relies on
      cross-event order;
    * a **transport fault** (the call fails, SQS reports a server-side entry failure, or the batch
      budget is spent): the batch stops at the first one; rows after it are not attempted.
    Entries SQS reports as Successful are published, even when they follow a failed entry of
    the same call.
    """

    def __init__(
        self, client: SQSClient, queue_url: str, *, batch_budget_seconds: float = 120.0,
        routes: Mapping[str, str | None] | None = None,
    ) -> None:  # fmt: skip
        self.client = client
        self.queue_url = queue_url
        self.batch_budget_seconds = batch_budget_seconds
        # topic -> its own queue (NOTIFICATION_TOPICS); a topic routed to None has no queue
        # here, so its rows are row faults: kept in the outbox, never dropped.
        self.routes: Mapping[str, str | None] = routes or {}

    def destination(self, topic: str) -> str | None:
        return self.routes.get(topic, self.queue_url)

    def publish(self, messages: Sequence[OutboxMessage]) -> PublishOutcome:
        outcome = PublishOutcome()
        budget = Deadline.after(self.batch_budget_seconds)
        chunk: list[OutboxMessage] = []
        queue_url = ""
        for message in sorted(messages, key=lambda m: m.id):
            reason = reject_reason(message)
            destination = self.destination(message.topic) if reason is None else None
            if reason is None and destination is None:
                reason = f"outbox {message.id}: no queue is configured for {message.topic!r}"
            if reason is not None or destination is None:
                logger.error(
                    "relay.publish_rejected", extra={"outbox_id": message.id, "error": reason}
                )
                outcome.fail([message.id], str(reason))
                continue
            # One SendMessageBatch goes to one queue: a change of queue sends the chunk.
            if chunk and (len(chunk) == SEND_BATCH_MAX or destination != queue_url):
                self._send(queue_url, chunk, outcome, budget)
                chunk = []
                if outcome.stopped:
                    return outcome
            queue_url = destination
            chunk.append(message)
        if chunk:
            self._send(queue_url, chunk, outcome, budget)
        return outcome

    def _send(
        self, queue_url: str, chunk: list[OutboxMessage], outcome: PublishOutcome, budget: Deadline
    ) -> None:
        if budget.expired():
            outcome.fail([], "publish batch budget spent", stop=True)
            return
        entries: list[SendMessageBatchRequestEntryTypeDef] = [
            {
                "Id": str(m.id),
                "MessageBody": _event_for(m).to_json(),
                "MessageGroupId": group_id(m.topic, m.payload),
                "MessageDeduplicationId": str(m.id),
            }
            for m in chunk
        ]
        try:
            reply = self.client.send_message_batch(QueueUrl=queue_url, Entries=entries)
        except (ClientError, BotoCoreError) as err:
            outcome.fail([m.id for m in chunk], f"SendMessageBatch failed: {err}", stop=True)
            return
        outcome.published.extend(int(ok["Id"]) for ok in reply.get("Successful", []))
        for bad in sorted(reply.get("Failed", []), key=lambda f: int(f["Id"])):
            error = f"outbox {bad['Id']}: {bad.get('Code')}: {bad.get('Message', '')}"
            # SenderFault: this entry's own fault (a row fault); otherwise SQS's (transport).
            outcome.fail([int(bad["Id"])], error, stop=not bad.get("SenderFault", False))


def _event_for(message: OutboxMessage) -> SiteEvent:
    claimed_at = message.claimed_at if isinstance(message, ClaimedMessage) else None
    return SiteEvent(message.topic, message.payload, message.id, claimed_at)


# --- what the worker does with a failed message ------------------------------------------------


def change_visibility(client: SQSClient, queue_url: str, receipt_handle: str, seconds: int) -> None:
    client.change_message_visibility(
        QueueUrl=queue_url,
        ReceiptHandle=receipt_handle,
        VisibilityTimeout=max(0, min(int(seconds), MAX_VISIBILITY_SECONDS)),
    )


def send_to_dlq(
    client: SQSClient,
    dlq_url: str,
    record: Mapping[str, Any],
    error: BaseException | str,
    receive_count: int,
) -> str:
    """Copy a Lambda SQS `record` to the FIFO DLQ; return the copy's message id.

    The body is sent unchanged, so a DLQ redrive puts the original message back; the error,
    its type, the receive count and the source go into message attributes. The group stays
    the original group; the deduplication id is the original message id, so a retried copy
    (a crash after the send, before the delete) is dropped by SQS within five minutes.
    """
    attributes = record.get("attributes") or {}
    text = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
    error_type = "str" if isinstance(error, str) else type(error).__name__
    message_attributes: dict[str, MessageAttributeValueTypeDef] = {
        "error": {"DataType": "String", "StringValue": text[:_ERROR_TEXT_MAX] or "-"},
        "error_type": {"DataType": "String", "StringValue": error_type},
        "receive_count": {"DataType": "Number", "StringValue": str(receive_count)},
        "source_message_id": {"DataType": "String", "StringValue": str(record["messageId"])},
    }
    if record.get("eventSourceARN"):
        message_attributes["source_arn"] = {
            "DataType": "String",
            "StringValue": str(record["eventSourceARN"]),
        }
    reply = client.send_message(
        QueueUrl=dlq_url,
        MessageBody=str(record.get("body") or "-"),
        MessageGroupId=str(attributes.get("MessageGroupId") or "unknown"),
        MessageDeduplicationId=str(record["messageId"])[:128],
        MessageAttributes=message_attributes,
    )
    return reply["MessageId"]


# --- the configured queues -------------------------------------------------------------------


@dataclass(frozen=True)
class SiteEventsQueue:
    """The site-events FIFO queue and its DLQ (`SITE_EVENTS_QUEUE_URL`, `SITE_EVENTS_DLQ_URL`).
    A missing URL is an error where it is needed, never looked up from SQS."""

    client: SQSClient
    url: str | None
    dlq_url: str | None
    notifications_url: str | None = None  # where the relay sends webhook deliveries

    @classmethod
    def of(cls, rt: Runtime[JobSettings]) -> SiteEventsQueue:
        s = rt.settings
        return cls(rt.sqs, s.site_events_queue_url, s.site_events_dlq_url,
                   s.notifications_queue_url)  # fmt: skip

    def require_url(self) -> str:
        if not self.url:
            raise RuntimeError("SITE_EVENTS_QUEUE_URL is not set: there is no site-events queue")
        return self.url

    def publisher(self) -> SqsPublisher:
        """Site events to this queue; webhook deliveries to the notifications queue."""
        routes = {topic: self.notifications_url for topic in NOTIFICATION_TOPICS}
        return SqsPublisher(self.client, self.require_url(), routes=routes)

    def change_visibility(self, receipt_handle: str, seconds: int) -> None:
        change_visibility(self.client, self.require_url(), receipt_handle, seconds)

    def dead_letter(
        self, record: Mapping[str, Any], error: BaseException | str, receive_count: int
    ) -> str:
        """Copy `record` to the DLQ (see `send_to_dlq`); the copy's message id."""
        if not self.dlq_url:
            raise RuntimeError("SITE_EVENTS_DLQ_URL is not set: there is no dead-letter queue")
        return send_to_dlq(self.client, self.dlq_url, record, error, receive_count)
