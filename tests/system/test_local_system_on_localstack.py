"""The local runtime wired to LocalStack and real Postgres: resources created on start, and
the API answers readiness through the gateway."""

import json
import os
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from artemis_local.runner import LocalSystem
from tests.conftest import base_env


@pytest.fixture
def system(tmp_path: Path, localstack_url: str, database_url: str) -> Iterator[LocalSystem]:
    saved = dict(os.environ)
    env = base_env(
        DATABASE_URL=database_url, AWS_ENDPOINT_URL=localstack_url, BUCKET_NAME="artemis-system"
    )
    started = LocalSystem(state_dir=tmp_path, base_env=env, port=0).start()
    try:
        yield started
    finally:
        started.stop()
        os.environ.clear()
        os.environ.update(saved)


def test_start_creates_the_fifo_queue_with_a_fifo_dlq(
    system: LocalSystem, localstack_url: str
) -> None:
    sqs = boto3.client("sqs", endpoint_url=localstack_url, region_name="us-east-1")
    attrs = sqs.get_queue_attributes(
        QueueUrl=system.env["SITE_EVENTS_QUEUE_URL"], AttributeNames=["All"]
    )["Attributes"]
    assert attrs["FifoQueue"] == "true"
    redrive = json.loads(attrs["RedrivePolicy"])
    dlq = sqs.get_queue_attributes(
        QueueUrl=system.env["SITE_EVENTS_DLQ_URL"], AttributeNames=["All"]
    )["Attributes"]
    assert redrive["deadLetterTargetArn"] == dlq["QueueArn"] and dlq["FifoQueue"] == "true"
    assert int(redrive["maxReceiveCount"]) == 5


def test_readyz_through_the_gateway(system: LocalSystem) -> None:
    assert system.gateway is not None
    with urllib.request.urlopen(system.gateway.url + "/readyz", timeout=20) as resp:
        body = json.loads(resp.read())
    assert body == {
        "ready": True,
        "checks": {"bucket": "ok", "postgres": "ok", "redis": "unconfigured"},
    }
