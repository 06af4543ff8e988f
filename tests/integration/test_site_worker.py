"""The site worker against a moto FIFO queue + FIFO DLQ and real Postgres: real Lambda SQS events
built from received messages. The gc function is injected only through `make_handler(run=…)`;
one test runs the real `run_gc_site`. FIFO exclusivity across workers and dedup after delete
are tested on LocalStack (tests/system/test_fifo_pipeline.py)."""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
import pytest
from botocore.exceptions import ClientError

from artemis import runtime as process_runtime
from artemis.config import Settings, SiteWorkerSettings, load_settings, variables
from artemis.db.connection import Database
from artemis.db.outbox import OutboxMessage
from artemis.deadlines import Deadline
from artemis.errors import SiteLocked, StorageError
from artemis.jobs.site_worker import backoff_seconds, is_transient
from artemis.keys import Dirname
from artemis.queue import SqsPublisher
from artemis.runtime import Runtime
from artemis_local.functions import LocalContext
from artemis_local.sqs_source import lambda_event, poll_once, queue_arn
from functions.site_worker.app import make_handler
from tests.conftest import REPO_ROOT, base_env, sqs_client

CONTEXT = LocalContext("site_worker", timeout_ms=120_000)


@dataclass
class Queues:
    client: Any
    url: str
    dlq_url: str
    arn: str
    next_id: int = 1

    def publish(self, *sites: str) -> list[int]:
        ids = list(range(self.next_id, self.next_id + len(sites)))
        self.next_id += len(sites)
        messages = [
            OutboxMessage(i, "site.changed", {"site": s}) for i, s in zip(ids, sites, strict=True)
        ]
        assert SqsPublisher(self.client, self.url).publish(messages).published == ids
        return ids

    def send_raw(self, body: str, group: str) -> str:
        reply = self.client.send_message(
            QueueUrl=self.url,
            MessageBody=body,
            MessageGroupId=group,
            MessageDeduplicationId=uuid.uuid4().hex,
        )
        return str(reply["MessageId"])

    def receive(self, url: str | None = None, n: int = 10) -> list[Any]:
        reply = self.client.receive_message(
            QueueUrl=url or self.url,
            MaxNumberOfMessages=n,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        return list(reply.get("Messages", []))

    def event(self, messages: list[Any]) -> dict[str, Any]:
        return lambda_event(messages, self.arn)

    def redeliver(self, messages: list[Any]) -> list[Any]:
        """Make `messages` visible again and receive them (receive count + 1)."""
        for m in messages:
            self.client.change_message_visibility(
                QueueUrl=self.url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0
            )
        return self.receive()


def make_queues(client: Any, *, visibility: int = 30) -> Queues:
    name = f"worker-{uuid.uuid4().hex[:10]}"
    fifo = {"FifoQueue": "true", "ContentBasedDeduplication": "false"}
    dlq_url = client.create_queue(QueueName=f"{name}-dlq.fifo", Attributes=fifo)["QueueUrl"]
    dlq_arn = queue_arn(client, dlq_url)
    url = client.create_queue(
        QueueName=f"{name}.fifo",
        Attributes={
            **fifo,
            "VisibilityTimeout": str(visibility),
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 5}),
        },
    )["QueueUrl"]
    return Queues(client, url, dlq_url, queue_arn(client, url))


@pytest.fixture
def queues(moto_url: str) -> Queues:
    return make_queues(sqs_client(moto_url))


def runtime_for(database_url: str, moto_url: str, queues: Queues, **env: str) -> Runtime:
    values = {
        "DATABASE_URL": database_url,
        "AWS_ENDPOINT_URL": moto_url,
        "SITE_EVENTS_QUEUE_URL": queues.url,
        "SITE_EVENTS_DLQ_URL": queues.dlq_url,
        **env,
    }
    return Runtime(load_settings(base_env(**values)))


@pytest.fixture
def rt(database_url: str, moto_url: str, queues: Queues) -> Iterator[Runtime]:
    runtime = runtime_for(database_url, moto_url, queues)
    try:
        yield runtime
    finally:
        runtime.close()


@dataclass
class Outcome:
    incomplete: bool = False


@dataclass
class Recorder:
    """A gc function: records each call; `fail` maps a site to the exception it raises."""

    fail: dict[str, BaseException] = field(default_factory=dict)
    incomplete: set[str] = field(default_factory=set)
    calls: list[str] = field(default_factory=list)
    deadlines: list[float] = field(default_factory=list)

    def __call__(
        self,
        rt: Runtime[SiteWorkerSettings],
        site: Dirname,
        *,
        now: datetime,
        deadline: Deadline,
        dry_run: bool | None = None,
    ) -> Outcome:
        self.calls.append(site)
        self.deadlines.append(deadline.remaining())
        if site in self.fail:
            raise self.fail[site]
        return Outcome(incomplete=site in self.incomplete)


def failures(response: dict[str, Any]) -> list[str]:
    return [item["itemIdentifier"] for item in response["batchItemFailures"]]


def ids_of(messages: list[Any]) -> list[str]:
    return [m["MessageId"] for m in messages]


def dlq_messages(queues: Queues) -> list[Any]:
    return queues.receive(queues.dlq_url)


# --- group-aware short circuit and coalescing ----------------------------------------------


def test_a_failed_record_fails_the_rest_of_its_group_and_other_groups_run(
    rt: Runtime, queues: Queues
) -> None:
    queues.publish("a", "b", "a", "b", "a")
    run = Recorder(fail={"a": SiteLocked()})
    handler = make_handler(rt=rt, run=run, backoff=lambda count: 1)
    seen: list[tuple[dict[str, Any], dict[str, Any]]] = []

    def observed(event: dict[str, Any], context: Any) -> dict[str, Any]:
        response = handler(event, context)
        seen.append((event, response))
        return response

    got = poll_once(
        queues.client, queues.url, observed, CONTEXT, source_arn=queues.arn, wait_seconds=0
    )
    assert got.received == 5 and got.acknowledged == 2 and got.failed == 3
    [(event, response)] = seen
    a_ids = [r["messageId"] for r in event["Records"] if r["attributes"]["MessageGroupId"] == "a"]
    assert failures(response) == a_ids  # a's first failed, the two behind it were skipped
    assert run.calls == ["a", "b"]  # a ran once; b ran once (its second record coalesced)
    assert queues.receive() == []  # a's first message backs off, blocking its group
    time.sleep(1.3)
    # After the backoff the whole group is back, in order: the skipped records did not keep
    # their own (30 s) visibility timeout; b's records were deleted.
    assert ids_of(queues.receive()) == a_ids


def test_a_site_runs_once_per_batch_however_many_of_its_messages_it_holds(
    rt: Runtime, queues: Queues
) -> None:
    queues.publish("www", "www", "www", "docs")
    run = Recorder()
    handler = make_handler(rt=rt, run=run)
    got = poll_once(
        queues.client, queues.url, handler, CONTEXT, source_arn=queues.arn, wait_seconds=0
    )
    assert got.received == 4 and got.acknowledged == 4 and got.failed == 0
    assert sorted(run.calls) == ["docs", "www"]
    assert queues.receive() == []  # every message acknowledged and deleted


def test_coalescing_needs_a_successful_run(rt: Runtime, queues: Queues) -> None:
    queues.publish("www", "www")
    messages = queues.receive()
    run = Recorder(incomplete={"www"})  # ran out of time: not a success
    response = make_handler(rt=rt, run=run)(queues.event(messages), CONTEXT)
    assert failures(response) == ids_of(messages) and run.calls == ["www"]


def test_the_sample_event_runs_its_site_once() -> None:
    event = json.loads((REPO_ROOT / "events" / "site_worker-sqs.json").read_text())
    run = Recorder()
    runtime = Runtime(load_settings(base_env()))
    response = make_handler(rt=runtime, run=run)(event, CONTEXT)
    assert response == {"batchItemFailures": []}
    assert run.calls == ["www.example.org"]


def _rsa_pem() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()  # fmt: skip


def test_the_handler_starts_its_runtime_without_any_jwt_setting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The worker never signs or verifies a deploy session: the Lambda handler builds its
    runtime from an environment without any JWT variable (as the template gives it), and its
    cold start fetches only the secrets it reads: the database URL and the App's key."""
    for var in list(os.environ):  # nothing leaks in from the outer environment
        if var.startswith("JWT_") or var.removesuffix("_PARAM") in variables(Settings):
            monkeypatch.delenv(var)
    monkeypatch.setenv("DATABASE_URL_PARAM", "/artemis/test/database-url")
    monkeypatch.setenv("GH_APP_ID", "12")
    monkeypatch.setenv("GH_APP_INSTALLATION_ID", "34")
    monkeypatch.setenv("GH_APP_PRIVATE_KEY_PARAM", "/artemis/test/app-key")
    secrets = {"/artemis/test/database-url": "postgresql://127.0.0.1/unused",
               "/artemis/test/app-key": _rsa_pem()}  # fmt: skip
    fetched: list[str] = []

    def resolve(name: str) -> str:
        fetched.append(name)
        return secrets[name]

    monkeypatch.setattr(process_runtime, "resolve_parameter", resolve)
    event = json.loads((REPO_ROOT / "events" / "site_worker-sqs.json").read_text())
    run = Recorder()
    process_runtime.reset()
    try:
        response = make_handler(run=run)(event, CONTEXT)
        built = process_runtime.current(SiteWorkerSettings).settings
    finally:
        process_runtime.reset()
    assert response == {"batchItemFailures": []}
    assert run.calls == ["www.example.org"]
    assert type(built) is SiteWorkerSettings and built.repo_feature_enabled
    assert sorted(fetched) == ["/artemis/test/app-key", "/artemis/test/database-url"]


# --- permanent failures ---------------------------------------------------------------------


def test_a_malformed_message_is_dead_lettered_with_its_error_and_acknowledged(
    rt: Runtime, queues: Queues
) -> None:
    bad = queues.send_raw("not json at all", group="www")
    queues.publish("www")
    run = Recorder()
    handler = make_handler(rt=rt, run=run)
    got = poll_once(
        queues.client, queues.url, handler, CONTEXT, source_arn=queues.arn, wait_seconds=0
    )
    assert got.acknowledged == 2 and got.failed == 0
    assert run.calls == ["www"]  # the group was not blocked by the poison message
    [copy] = dlq_messages(queues)
    assert copy["Body"] == "not json at all"
    attrs = copy["MessageAttributes"]
    assert "not JSON" in attrs["error"]["StringValue"]
    assert attrs["error_type"]["StringValue"] == "MalformedEvent"
    assert attrs["receive_count"]["StringValue"] == "1"
    assert attrs["source_message_id"]["StringValue"] == bad
    assert attrs["source_arn"]["StringValue"] == queues.arn
    assert copy["Attributes"]["MessageGroupId"] == "www"
    assert queues.receive() == []


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ('{"topic": "site.deleted", "payload": {"site": "www"}, "outbox_id": 1}', "unknown topic"),
        ('{"topic": "site.changed", "payload": {}, "outbox_id": 1}', "no site"),
        ('{"topic": "site.changed", "payload": {"site": "docs"}, "outbox_id": 1}', "group"),
        ('["site.changed"]', "not a JSON object"),
    ],
)
def test_unusable_events_are_permanent_failures(
    rt: Runtime, queues: Queues, body: str, error: str
) -> None:
    queues.send_raw(body, group="www")
    run = Recorder()
    response = make_handler(rt=rt, run=run)(queues.event(queues.receive()), CONTEXT)
    assert failures(response) == [] and run.calls == []
    [copy] = dlq_messages(queues)
    assert error in copy["MessageAttributes"]["error"]["StringValue"]


def test_a_domain_error_is_retried_once_then_dead_lettered(rt: Runtime, queues: Queues) -> None:
    queues.publish("www", "docs")
    run = Recorder(fail={"www": ValueError("plan refused")})
    handler = make_handler(rt=rt, run=run)
    first = queues.receive()
    response = handler(queues.event(first), CONTEXT)
    www = [m for m in first if m["Attributes"]["MessageGroupId"] == "www"]
    assert failures(response) == ids_of(www)  # first receive: maybe transient, retry
    assert dlq_messages(queues) == []
    again = queues.redeliver(www)
    assert [m["Attributes"]["ApproximateReceiveCount"] for m in again] == ["2"]
    response = handler(queues.event(again), CONTEXT)
    assert failures(response) == []  # the same error twice: permanent, acknowledged
    [copy] = dlq_messages(queues)
    attrs = copy["MessageAttributes"]
    assert attrs["error"]["StringValue"] == "ValueError: plan refused"
    assert attrs["receive_count"]["StringValue"] == "2"
    assert run.calls == ["www", "docs", "www"]


def test_without_a_configured_dlq_a_permanent_failure_is_reported_not_acknowledged(
    database_url: str, moto_url: str, queues: Queues
) -> None:
    """The DLQ is a setting, never looked up from the queue's redrive policy: without it the
    record is reported failed (never acknowledged without a copy), and the queue's own
    redrive policy moves it once its receives are spent."""
    runtime = runtime_for(database_url, moto_url, queues, SITE_EVENTS_DLQ_URL="")
    assert runtime.settings.site_events_dlq_url is None
    bad = queues.send_raw("{", group="www")
    response = make_handler(rt=runtime, run=Recorder())(queues.event(queues.receive()), CONTEXT)
    runtime.close()
    assert failures(response) == [bad]
    assert dlq_messages(queues) == []


# --- transient failures -----------------------------------------------------------------------


def test_a_transient_failure_backs_off_and_is_reported(
    rt: Runtime, moto_url: str, database_url: str
) -> None:
    queues = make_queues(sqs_client(moto_url), visibility=1)
    runtime = runtime_for(database_url, moto_url, queues)
    queues.publish("www")
    run = Recorder(fail={"www": SiteLocked()})
    messages = queues.receive()
    response = make_handler(rt=runtime, run=run)(queues.event(messages), CONTEXT)
    runtime.close()
    assert failures(response) == ids_of(messages)
    time.sleep(1.5)  # past the queue's 1 s visibility timeout: the backoff replaced it
    assert queues.receive() == []
    assert dlq_messages(queues) == []


def test_a_transient_failure_comes_back_after_its_backoff_and_is_not_dead_lettered(
    rt: Runtime, queues: Queues
) -> None:
    queues.publish("www")
    run = Recorder(fail={"www": SiteLocked()})
    handler = make_handler(rt=rt, run=run, backoff=lambda count: 1)
    messages = queues.receive()
    for count in ("1", "2", "3"):
        assert [m["Attributes"]["ApproximateReceiveCount"] for m in messages] == [count]
        assert failures(handler(queues.event(messages), CONTEXT)) == ids_of(messages)
        assert queues.receive() == []  # backing off
        time.sleep(1.2)
        messages = queues.receive()
    assert dlq_messages(queues) == [] and run.calls == ["www"] * 3


def test_a_transient_failure_on_the_last_receive_is_dead_lettered_with_its_error(
    rt: Runtime, queues: Queues
) -> None:
    queues.publish("www")
    handler = make_handler(rt=rt, run=Recorder(fail={"www": SiteLocked()}), max_receives=2)
    messages = queues.receive()
    assert failures(handler(queues.event(messages), CONTEXT)) == ids_of(messages)
    again = queues.redeliver(messages)
    assert failures(handler(queues.event(again), CONTEXT)) == []
    [copy] = dlq_messages(queues)
    assert copy["MessageAttributes"]["error_type"]["StringValue"] == "SiteLocked"


def client_error(code: str, status: int) -> ClientError:
    response: Any = {"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}
    return ClientError(response, "CopyObject")


def slow_down() -> StorageError:
    """What the storage layer raises when S3 answers 503 SlowDown (the cause is chained)."""
    try:
        raise client_error("SlowDown", 503)
    except ClientError as err:
        try:
            raise StorageError("r2_move_failed") from err
        except StorageError as wrapped:
            return wrapped


@pytest.mark.parametrize(
    "error",
    [
        SiteLocked(),
        psycopg.OperationalError("server closed the connection unexpectedly"),
        psycopg.errors.LockNotAvailable("canceling statement due to lock timeout"),
        slow_down(),
    ],
    ids=["site-locked", "connection-lost", "lock-timeout-55P03", "s3-slowdown"],
)
def test_transient_errors_are_retried_even_on_a_redelivery(
    rt: Runtime, queues: Queues, error: BaseException
) -> None:
    assert is_transient(error)
    queues.publish("www")
    handler = make_handler(rt=rt, run=Recorder(fail={"www": error}))
    again = queues.redeliver(queues.receive())  # receive count 2
    assert failures(handler(queues.event(again), CONTEXT)) == ids_of(again)
    assert dlq_messages(queues) == []


def test_other_errors_are_not_transient() -> None:
    assert not is_transient(ValueError("x"))
    assert not is_transient(client_error("AccessDenied", 403))
    assert is_transient(client_error("InternalError", 500))


def test_a_run_that_stops_for_time_is_retried(rt: Runtime, queues: Queues) -> None:
    queues.publish("www")
    handler = make_handler(rt=rt, run=Recorder(incomplete={"www"}))
    again = queues.redeliver(queues.receive())
    assert failures(handler(queues.event(again), CONTEXT)) == ids_of(again)
    assert dlq_messages(queues) == []


def test_the_backoff_grows_with_the_receive_count_up_to_five_minutes() -> None:
    assert [backoff_seconds(n) for n in (1, 2, 3, 9, 10, 11, 50)] == [
        30,
        60,
        90,
        270,
        300,
        300,
        300,
    ]


def test_a_record_without_time_left_is_returned_at_once_without_running(
    rt: Runtime, queues: Queues
) -> None:
    queues.publish("www")
    run = Recorder()
    handler = make_handler(rt=rt, run=run)  # reserve 30 s, minimum 5 s per run
    messages = queues.receive()
    response = handler(queues.event(messages), LocalContext("site_worker", timeout_ms=33_000))
    assert failures(response) == ids_of(messages) and run.calls == []
    assert ids_of(queues.receive()) == ids_of(messages)  # visible again at once


def test_the_run_gets_the_remaining_time_less_the_reserve(rt: Runtime, queues: Queues) -> None:
    queues.publish("www")
    run = Recorder()
    make_handler(rt=rt, run=run)(queues.event(queues.receive()), CONTEXT)
    [remaining] = run.deadlines
    assert 85 < remaining <= 90  # 120 s left, 30 s reserved


# --- the real gc-site ----------------------------------------------------------------------


def test_the_default_runner_is_gc_site_and_records_its_run(
    database_url: str, moto_url: str, queues: Queues, db: Database, s3_client: Any
) -> None:
    bucket = f"worker-{uuid.uuid4().hex[:12]}"
    s3_client.create_bucket(Bucket=bucket)
    runtime = runtime_for(database_url, moto_url, queues, BUCKET_NAME=bucket)
    queues.publish("www")
    try:
        got = poll_once(
            queues.client, queues.url, make_handler(rt=runtime), CONTEXT,
            source_arn=queues.arn, wait_seconds=0,
        )  # fmt: skip
    finally:
        runtime.close()
    assert got.acknowledged == 1 and got.failed == 0
    with db.transaction() as conn:
        rows = conn.execute("SELECT site, outcome FROM job_runs WHERE job = 'gc-site'").fetchall()
    assert rows == [("www", "succeeded")]
