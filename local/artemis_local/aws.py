"""The AWS side of the local runtime: an in-process moto server unless AWS_ENDPOINT_URL is set,
and the resources Artemis expects (the bucket, the site-events FIFO queue and its FIFO DLQ)."""

from __future__ import annotations

import json
import logging
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import boto3

if TYPE_CHECKING:
    from mypy_boto3_sqs.literals import QueueAttributeNameType

REGION = "us-east-1"
QUEUE_NAME = "site-events.fifo"
DLQ_NAME = "site-events-dlq.fifo"
MAX_RECEIVE_COUNT = 5
VISIBILITY_TIMEOUT_SECONDS = 360


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class MotoServer:
    """moto's threaded server on 127.0.0.1 (a free port)."""

    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
        self.port = free_port()
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> MotoServer:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()


@dataclass(frozen=True)
class Resources:
    bucket: str
    queue_url: str
    dlq_url: str


def ensure_resources(endpoint_url: str | None, bucket: str, env: dict[str, str]) -> Resources:
    """Create the bucket and queues if absent (idempotent), with the credentials in `env`."""
    kwargs: dict[str, Any] = {
        "endpoint_url": endpoint_url,
        "region_name": env.get("AWS_REGION", REGION),
        "aws_access_key_id": env.get("AWS_ACCESS_KEY_ID"),
        "aws_secret_access_key": env.get("AWS_SECRET_ACCESS_KEY"),
    }
    s3 = boto3.client("s3", **kwargs)
    existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
    if bucket not in existing:
        s3.create_bucket(Bucket=bucket)
    sqs = boto3.client("sqs", **kwargs)
    fifo: dict[QueueAttributeNameType, str] = {
        "FifoQueue": "true",
        "ContentBasedDeduplication": "false",
    }
    dlq_url = sqs.create_queue(QueueName=DLQ_NAME, Attributes=fifo)["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    queue_url = sqs.create_queue(
        QueueName=QUEUE_NAME,
        Attributes={
            **fifo,
            "VisibilityTimeout": str(VISIBILITY_TIMEOUT_SECONDS),
            "RedrivePolicy": json.dumps(
                {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": MAX_RECEIVE_COUNT}
            ),
        },
    )["QueueUrl"]
    return Resources(bucket=bucket, queue_url=queue_url, dlq_url=dlq_url)
