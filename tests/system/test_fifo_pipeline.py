"""The site-events pipeline on LocalStack SQS FIFO and real Postgres: outbox → relay → FIFO queue
→ site worker. LocalStack, not moto: FIFO exclusivity under concurrent receivers and dedup after
delete are what these tests prove, and moto gets both wrong (NOTES.md).

Lambda cannot run here, so `artemis_local.sqs_source.poll_once` / `Poller` play the event source mapping:
receive (AttributeNames=All), call the real handler with a real SQS event, delete what it
acknowledged."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import boto3
import pytest

from artemis.config import SiteWorkerSettings, load_settings
from artemis.db import outbox
from artemis.db.connection import Database
from artemis.deadlines import Deadline
from artemis.jobs.relay import drain
from artemis.keys import Dirname
from artemis.queue import SqsPublisher
from artemis.runtime import Runtime
from artemis_local.aws import site_events_queues
from artemis_local.functions import LocalContext
from artemis_local.sqs_source import Poller, poll_once, queue_arn
from functions.relay import app as relay_app
from functions.site_worker.app import make_handler
from tests.conftest import base_env

if TYPE_CHECKING:
    from mypy_boto3_sqs.literals import QueueAttributeNameType

CONTEXT = LocalContext("site_worker", timeout_ms=120_000)


@dataclass
class Pipeline:
    sqs: Any
    url: str
    dlq_url: str
    arn: str
    rt: Runtime
    db: Database

    def enqueue(self, *sites: str) -> list[int]:
        """What finalize/promote/rollback do in their transaction (spec §7.1)."""
        with self.db.transaction() as conn:
            return [outbox.enqueue_site_changed(conn, Dirname(s)) for s in sites]

    def relay(self) -> None:
        assert drain(self.rt, self.publisher(), deadline=Deadline.after(30)).ok

    def publisher(self) -> SqsPublisher:
        return SqsPublisher(self.sqs, self.url)

    def poll(self, handler: Any, **kwargs: Any) -> Any:
        return poll_once(self.sqs, self.url, handler, CONTEXT, source_arn=self.arn, **kwargs)

    def depth(self, url: str | None = None) -> tuple[int, int]:
        attrs = self.sqs.get_queue_attributes(
            QueueUrl=url or self.url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return (
            int(attrs["ApproximateNumberOfMessages"]),
            int(attrs["ApproximateNumberOfMessagesNotVisible"]),
        )

    def dlq(self) -> list[Any]:
        reply = self.sqs.receive_message(
            QueueUrl=self.dlq_url,
            MaxNumberOfMessages=10,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        return list(reply.get("Messages", []))

    def gc_runs(self, site: str) -> list[str]:
        with self.db.transaction() as conn:
            rows = conn.execute(
                "SELECT outcome FROM job_runs WHERE job = 'gc-site' AND site = %s ORDER BY id",
                [site],
            ).fetchall()
        return [r[0] for r in rows]


@pytest.fixture
def pipeline(localstack_url: str, database_url: str, db: Database) -> Iterator[Pipeline]:
    """A FIFO queue and FIFO DLQ of this test's own (redrive as local/artemis_local/aws.py),
    a bucket, and a Runtime pointing at them."""
    name = f"events-{uuid.uuid4().hex[:10]}"
    sqs = boto3.client("sqs", endpoint_url=localstack_url, region_name="us-east-1")
    fifo: dict[QueueAttributeNameType, str] = {
        "FifoQueue": "true",
        "ContentBasedDeduplication": "false",
    }
    dlq_url = sqs.create_queue(QueueName=f"{name}-dlq.fifo", Attributes=fifo)["QueueUrl"]
    redrive = {
        "deadLetterTargetArn": queue_arn(sqs, dlq_url),
        "maxReceiveCount": site_events_queues().max_receive_count,
    }
    url = sqs.create_queue(
        QueueName=f"{name}.fifo",
        Attributes={**fifo, "VisibilityTimeout": "30", "RedrivePolicy": json.dumps(redrive)},
    )["QueueUrl"]
    bucket = name
    boto3.client("s3", endpoint_url=localstack_url, region_name="us-east-1").create_bucket(
        Bucket=bucket
    )
    settings = load_settings(
        base_env(
            DATABASE_URL=database_url,
            AWS_ENDPOINT_URL=localstack_url,
            BUCKET_NAME=bucket,
            SITE_EVENTS_QUEUE_URL=url,
            SITE_EVENTS_DLQ_URL=dlq_url,
        )
    )
    rt = Runtime(settings)
    try:
        yield Pipeline(sqs, url, dlq_url, queue_arn(sqs, url), rt, db)
    finally:
        rt.close()
        sqs.delete_queue(QueueUrl=url)
        sqs.delete_queue(QueueUrl=dlq_url)


@dataclass
class Outcome:
    incomplete: bool = False


@dataclass
class SlowRun:
    """A gc function that takes `seconds` and records when each run started and ended; `fail`
    makes the first `failures` calls for a site raise."""

    seconds: float = 0.0
    fail: dict[str, BaseException] = field(default_factory=dict)
    failures: int = 0
    spans: list[tuple[str, float, float]] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(
        self,
        rt: Runtime[SiteWorkerSettings],
        site: Dirname,
        *,
        now: datetime,
        deadline: Deadline,
        dry_run: bool | None = None,
    ) -> Outcome:
        started = time.monotonic()
        with self.lock:
            self.calls.append(site)
            failing = site in self.fail and self.calls.count(site) <= self.failures
        if failing:
            raise self.fail[site]
        time.sleep(self.seconds)
        with self.lock:
            self.spans.append((site, started, time.monotonic()))
        return Outcome()


def wait_for(condition: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def overlaps(a: tuple[str, float, float], b: tuple[str, float, float]) -> bool:
    return a[1] < b[2] and b[1] < a[2]


def test_a_site_changed_travels_outbox_relay_fifo_worker_and_runs_gc(pipeline: Pipeline) -> None:
    [outbox_id] = pipeline.enqueue("www")
    summary = relay_app.run(
        pipeline.rt, LocalContext("relay", timeout_ms=60_000), interval_seconds=0.1,
        budget_seconds=0.5, min_drain_seconds=0.1,
    )  # fmt: skip
    assert summary["published"] == 1
    handler = make_handler(rt=pipeline.rt)  # the real run_gc_site
    got = pipeline.poll(handler, wait_seconds=5)
    assert got.received == 1 and got.acknowledged == 1
    assert pipeline.gc_runs("www") == ["succeeded"]
    with pipeline.db.transaction() as conn:
        [[published_at]] = conn.execute(
            "SELECT published_at FROM outbox WHERE id = %s", [outbox_id]
        ).fetchall()
    assert published_at is not None
    assert pipeline.depth() == (0, 0)


def test_e2_v7_two_workers_never_run_one_site_at_once(pipeline: Pipeline) -> None:
    # A hot site with a backlog and a quiet one: once beta is done, the second worker is free
    # while alpha still has messages queued, and only the FIFO group keeps it away from them.
    pipeline.enqueue("alpha", "beta", "alpha", "alpha", "beta", "alpha")
    pipeline.relay()
    run = SlowRun(seconds=0.5)
    handler = make_handler(rt=pipeline.rt, run=run)
    # One message per receive: every message is its own run (nothing coalesces), so the only
    # thing keeping one site's runs apart is the FIFO group.
    workers = [
        Poller(pipeline.sqs, pipeline.url, handler, lambda: CONTEXT, max_messages=1, name=f"w{i}")
        for i in range(2)
    ]
    for w in workers:
        w.start()
    try:
        wait_for(lambda: len(run.spans) == 6)
    finally:
        for w in workers:
            w.stop()
    by_site = {s: [span for span in run.spans if span[0] == s] for s in ("alpha", "beta")}
    assert {s: len(spans) for s, spans in by_site.items()} == {"alpha": 4, "beta": 2}
    for spans in by_site.values():
        assert not any(overlaps(x, y) for i, x in enumerate(spans) for y in spans[i + 1 :])
    assert any(overlaps(a, b) for a in by_site["alpha"] for b in by_site["beta"])
    assert all(w.totals.received > 0 for w in workers)  # both workers took part
    assert pipeline.depth() == (0, 0)


def test_e6_poison_message_reaches_dlq_and_later_messages_run(pipeline: Pipeline) -> None:
    poison = pipeline.sqs.send_message(
        QueueUrl=pipeline.url,
        MessageBody='{"topic": "site.changed", "payload": {"site": ""}}',
        MessageGroupId="www",
        MessageDeduplicationId="poison-1",
    )["MessageId"]
    pipeline.enqueue("www", "docs")
    pipeline.relay()
    run = SlowRun()
    handler = make_handler(rt=pipeline.rt, run=run)
    started = time.monotonic()
    while sorted(run.calls) != ["docs", "www"]:
        assert time.monotonic() - started < 5, "the poison message blocked its group"
        pipeline.poll(handler, wait_seconds=1)
    [copy] = pipeline.dlq()
    attrs = copy["MessageAttributes"]
    assert attrs["source_message_id"]["StringValue"] == poison
    assert "payload has no site" in attrs["error"]["StringValue"]
    assert attrs["receive_count"]["StringValue"] == "1"
    assert pipeline.depth() == (0, 0)


def test_e6_the_same_domain_error_twice_is_dead_lettered_and_frees_the_site(
    pipeline: Pipeline,
) -> None:
    pipeline.enqueue("www", "www", "docs")
    pipeline.relay()
    run = SlowRun(fail={"www": ValueError("cannot plan")}, failures=2)
    handler = make_handler(rt=pipeline.rt, run=run, backoff=lambda count: 1)
    started = time.monotonic()
    while pipeline.depth() != (0, 0):
        assert time.monotonic() - started < 15, "the failing message blocked its group"
        pipeline.poll(handler, wait_seconds=1)
    # www: fail (receive 1, backoff 1 s) → fail again (receive 2: permanent, dead-lettered)
    # → the next www message runs. docs was never held up.
    assert run.calls.count("www") == 3 and run.calls.count("docs") == 1
    assert [span[0] for span in run.spans].count("www") == 1
    [copy] = pipeline.dlq()
    attrs = copy["MessageAttributes"]
    assert attrs["error"]["StringValue"] == "ValueError: cannot plan"
    assert attrs["receive_count"]["StringValue"] == "2"


def test_e1_publishing_the_same_outbox_row_twice_changes_nothing(pipeline: Pipeline) -> None:
    [outbox_id] = pipeline.enqueue("www")
    handler = make_handler(rt=pipeline.rt)  # the real run_gc_site
    # A relay claims and publishes, then dies before marking.
    with pipeline.db.transaction() as conn:
        claimed = outbox.claim(conn, ttl_seconds=1.0)
    assert pipeline.publisher().publish(claimed).published == [outbox_id]
    assert pipeline.poll(handler, wait_seconds=5).acknowledged == 1  # processed and deleted
    # The lease lapses; the next relay publishes the row again, and twice at once for good
    # measure. Same deduplication id inside five minutes: SQS drops them, even though the
    # original is already deleted.
    time.sleep(1.2)
    pipeline.relay()
    threads = [
        threading.Thread(target=pipeline.publisher().publish, args=(claimed,)) for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert pipeline.poll(handler, wait_seconds=2).received == 0
    assert pipeline.gc_runs("www") == ["succeeded"]  # one run: the same as publishing once
    with pipeline.db.transaction() as conn:
        [[published_at]] = conn.execute(
            "SELECT published_at FROM outbox WHERE id = %s", [outbox_id]
        ).fetchall()
    assert published_at is not None
