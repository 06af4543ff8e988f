"""An SQS event source mapping in miniature, for the local runtime and the tests: receive
from a queue, call a function's handler with the Lambda SQS event those messages make, and
delete every message the handler did not report in `batchItemFailures` (the contract of
`ReportBatchItemFailures`). On AWS, Lambda's own event source mapping does this, so none of it
ships in the layer.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from artemis.observability import guard_flushes, logger
from artemis.queue import SEND_BATCH_MAX

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import MessageTypeDef

SqsHandler = Callable[[dict[str, Any], Any], Any]

# Lambda runs one invocation per process at a time; here pollers call handlers on threads of
# one process, so two site-worker invocations could flush the shared metric set at once.
_FLUSH_LOCK = threading.Lock()
guard_flushes(_FLUSH_LOCK)


def queue_arn(client: SQSClient, queue_url: str) -> str:
    attrs = client.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])
    return attrs["Attributes"]["QueueArn"]


def lambda_record(message: MessageTypeDef, source_arn: str, region: str) -> dict[str, Any]:
    """One received message in the shape Lambda's SQS event source gives a function."""
    attributes: dict[str, str] = {str(k): v for k, v in (message.get("Attributes") or {}).items()}
    message_attributes = {
        name: {
            "stringValue": value.get("StringValue"),
            "binaryValue": value.get("BinaryValue"),
            "stringListValues": list(value.get("StringListValues") or []),
            "binaryListValues": list(value.get("BinaryListValues") or []),
            "dataType": value["DataType"],
        }
        for name, value in (message.get("MessageAttributes") or {}).items()
    }
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message.get("Body", ""),
        "attributes": attributes,
        "messageAttributes": message_attributes,
        "md5OfBody": message.get("MD5OfBody", ""),
        "eventSource": "aws:sqs",
        "eventSourceARN": source_arn,
        "awsRegion": region,
    }


def lambda_event(messages: Sequence[MessageTypeDef], source_arn: str) -> dict[str, Any]:
    region = source_arn.split(":")[3] if source_arn.count(":") >= 5 else "us-east-1"
    return {"Records": [lambda_record(m, source_arn, region) for m in messages]}


@dataclass
class PollResult:
    received: int = 0
    acknowledged: int = 0
    failed: int = 0
    handler_error: str | None = None


def poll_once(
    client: SQSClient,
    queue_url: str,
    handler: SqsHandler,
    context: Any,
    *,
    source_arn: str | None = None,
    max_messages: int = 10,
    wait_seconds: int = 1,
) -> PollResult:
    """Receive up to `max_messages`, call `handler` with a Lambda SQS event, and delete every
    message it did not report in `batchItemFailures` (the event source mapping's contract with
    `ReportBatchItemFailures`). If the handler raises, nothing is deleted: the messages come back
    after their visibility timeout, as with a failed invocation."""
    reply = client.receive_message(
        QueueUrl=queue_url,
        MaxNumberOfMessages=max_messages,
        WaitTimeSeconds=wait_seconds,
        AttributeNames=["All"],
        MessageAttributeNames=["All"],
    )
    messages = reply.get("Messages", [])
    result = PollResult(received=len(messages))
    if not messages:
        return result
    arn = source_arn or queue_arn(client, queue_url)
    try:
        response = handler(lambda_event(messages, arn), context)
    except Exception as err:
        logger.exception("poller.handler_failed", extra={"queue_url": queue_url})
        result.failed = len(messages)
        result.handler_error = f"{type(err).__name__}: {err}"
        return result
    failures = {item["itemIdentifier"] for item in (response or {}).get("batchItemFailures", [])}
    done = [m for m in messages if m["MessageId"] not in failures]
    for start in range(0, len(done), SEND_BATCH_MAX):
        chunk = done[start : start + SEND_BATCH_MAX]
        client.delete_message_batch(
            QueueUrl=queue_url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(chunk)
            ],
        )
    result.acknowledged = len(done)
    result.failed = len(messages) - len(done)
    return result


class Poller:
    """A thread that keeps calling `poll_once` until `stop()` (the local runtime's worker)."""

    def __init__(
        self,
        client: SQSClient,
        queue_url: str,
        handler: SqsHandler,
        context_factory: Callable[[], Any],
        *,
        max_messages: int = 10,
        wait_seconds: int = 1,
        name: str = "sqs-poller",
    ) -> None:
        self.client = client
        self.queue_url = queue_url
        self.handler = handler
        self.context_factory = context_factory
        self.max_messages = max_messages
        self.wait_seconds = wait_seconds
        self.totals = PollResult()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> Poller:
        self._thread.start()
        return self

    def signal_stop(self) -> None:
        self._stop.set()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        arn = queue_arn(self.client, self.queue_url)
        while not self._stop.is_set():
            try:
                got = poll_once(
                    self.client, self.queue_url, self.handler, self.context_factory(),
                    source_arn=arn, max_messages=self.max_messages,
                    wait_seconds=self.wait_seconds,
                )  # fmt: skip
            except (ClientError, BotoCoreError):
                logger.exception("poller.receive_failed", extra={"queue_url": self.queue_url})
                self._stop.wait(1.0)
                continue
            self.totals.received += got.received
            self.totals.acknowledged += got.acknowledged
            self.totals.failed += got.failed
