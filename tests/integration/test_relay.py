"""The outbox relay on real Postgres and a moto FIFO queue (correctness only, not load: moto's
FIFO slows with depth). Dedup after delete and FIFO exclusivity are tested on LocalStack
(tests/system/test_fifo_pipeline.py)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest

from artemis.config import load_settings
from artemis.db import outbox
from artemis.db.connection import Database
from artemis.deadlines import Deadline
from artemis.jobs.relay import RelayFailed, RelayResult, drain
from artemis.keys import Dirname
from artemis.queue import SiteEvent, SqsPublisher
from artemis.runtime import Runtime
from artemis_local.functions import LocalContext
from functions.relay import app as relay_app
from tests.conftest import base_env, sqs_client

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@dataclass
class Queue:
    client: Any
    url: str

    def drain_messages(self) -> list[dict[str, Any]]:
        """Every message now in the queue, in receive order, deleting each batch."""
        got: list[dict[str, Any]] = []
        while True:
            reply = self.client.receive_message(
                QueueUrl=self.url, MaxNumberOfMessages=10, AttributeNames=["All"]
            )
            messages = reply.get("Messages", [])
            if not messages:
                return got
            got.extend(messages)
            self.client.delete_message_batch(
                QueueUrl=self.url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                    for i, m in enumerate(messages)
                ],
            )


@pytest.fixture
def queue(moto_url: str) -> Queue:
    client = sqs_client(moto_url)
    url = client.create_queue(
        QueueName=f"relay-{uuid.uuid4().hex[:12]}.fifo",
        Attributes={"FifoQueue": "true", "ContentBasedDeduplication": "false"},
    )["QueueUrl"]
    return Queue(client, url)


@pytest.fixture
def rt(database_url: str, moto_url: str, queue: Queue) -> Iterator[Runtime]:
    settings = load_settings(
        base_env(
            DATABASE_URL=database_url, AWS_ENDPOINT_URL=moto_url, SITE_EVENTS_QUEUE_URL=queue.url
        )
    )
    runtime = Runtime(settings)
    try:
        yield runtime
    finally:
        runtime.close()


def publisher(queue: Queue) -> SqsPublisher:
    return SqsPublisher(queue.client, queue.url)


def enqueue(db: Database, *sites: str) -> list[int]:
    with db.transaction() as conn:
        return [outbox.enqueue_site_changed(conn, Dirname(s)) for s in sites]


def rows(db: Database) -> dict[int, tuple[datetime | None, datetime | None]]:
    """id → (published_at, claim_expires_at)."""
    with db.transaction() as conn:
        got = conn.execute("SELECT id, published_at, claim_expires_at FROM outbox").fetchall()
    return {r[0]: (r[1], r[2]) for r in got}


def relay_runs(db: Database) -> list[tuple[str, dict[str, Any], str | None]]:
    with db.transaction() as conn:
        got = conn.execute(
            "SELECT outcome, counts, error FROM job_runs WHERE job = 'relay' ORDER BY id"
        ).fetchall()
    return [(r[0], r[1], r[2]) for r in got]


def soon() -> Deadline:
    return Deadline.after(60)


def test_drain_publishes_in_id_order_with_group_dirname_and_dedup_outbox_id(
    rt: Runtime, db: Database, queue: Queue
) -> None:
    sites = ["www.example.org", "docs.example.org", "www.example.org"] * 5
    ids = enqueue(db, *sites)
    result = drain(rt, publisher(queue), deadline=soon())
    assert result.ok and result.published == 15 and result.passes == 1
    by_group: dict[str, list[int]] = {}
    for message in queue.drain_messages():
        event = SiteEvent.parse(message["Body"])
        attrs = message["Attributes"]
        assert attrs["MessageGroupId"] == event.site == event.payload["site"]
        assert attrs["MessageDeduplicationId"] == str(event.outbox_id)
        assert event.topic == "site.changed" and event.claimed_at is not None
        by_group.setdefault(attrs["MessageGroupId"], []).append(event.outbox_id)
    expected: dict[str, list[int]] = {}
    for outbox_id, site in zip(ids, sites, strict=True):
        expected.setdefault(site, []).append(outbox_id)
    assert by_group == expected  # every row once, each site's rows in id order


def test_claimed_at_is_the_database_clock_after_the_claim(
    rt: Runtime, db: Database, queue: Queue
) -> None:
    enqueue(db, "www")
    with db.transaction() as conn:
        [[created_at]] = conn.execute("SELECT created_at FROM outbox").fetchall()
    drain(rt, publisher(queue), deadline=soon())
    [message] = queue.drain_messages()
    claimed_at = SiteEvent.parse(message["Body"]).claimed_at
    assert claimed_at is not None and claimed_at > created_at


def test_drain_marks_exactly_the_published_rows_with_the_pass_start_clock(
    rt: Runtime, db: Database, queue: Queue
) -> None:
    earlier = enqueue(db, "old")
    with db.transaction() as conn:
        outbox.mark_published(conn, earlier, datetime(2025, 1, 1, tzinfo=UTC))
    good = enqueue(db, "a", "b", "c")
    with db.transaction() as conn:
        bad = outbox.enqueue(conn, "site.renamed", {"site": "d"})
    more = enqueue(db, "e", "f")
    clock_calls: list[datetime] = []

    def clock() -> datetime:
        clock_calls.append(T0)
        return T0

    result = drain(rt, publisher(queue), deadline=soon(), clock=clock)
    assert result.published == 5 and result.failed == 1
    state = rows(db)
    for outbox_id in good + more:
        assert state[outbox_id][0] == T0
    assert state[bad] == (None, None)  # unpublished, and released at once
    assert state[earlier[0]][0] == datetime(2025, 1, 1, tzinfo=UTC)  # untouched
    assert len(clock_calls) == result.passes == 1  # one clock read, at the start of the pass
    assert sorted(SiteEvent.parse(m["Body"]).outbox_id for m in queue.drain_messages()) == sorted(
        good + more
    )


def test_unknown_topic_is_a_publish_failure(rt: Runtime, db: Database, queue: Queue) -> None:
    with db.transaction() as conn:
        unknown = outbox.enqueue(conn, "site.deleted", {"site": "www"})
        siteless = outbox.enqueue(conn, "site.changed", {"dirname": "www"})
    result = drain(rt, publisher(queue), deadline=soon())
    assert not result.ok
    assert result.published == 0 and result.failed == 2 and result.released == 2
    assert any("unknown topic 'site.deleted'" in e for e in result.errors)
    assert rows(db) == {unknown: (None, None), siteless: (None, None)}  # never dropped
    assert queue.drain_messages() == []  # never sent
    [(outcome, counts, error)] = relay_runs(db)
    assert outcome == "failed" and counts["failed"] == 2
    assert error is not None and "unknown topic" in error


def test_an_unpublishable_row_does_not_block_the_rows_behind_it(
    rt: Runtime, db: Database, queue: Queue
) -> None:
    with db.transaction() as conn:
        poison = outbox.enqueue(conn, "site.deleted", {"site": "www"})
    behind = enqueue(db, *[f"site-{i}" for i in range(25)])
    result = drain(rt, publisher(queue), deadline=soon(), limit=10)
    # Each pass re-claims the poison row and publishes the next rows; nothing is lost.
    assert result.published == 25 and result.failed == result.passes
    state = rows(db)
    assert all(state[i][0] is not None for i in behind)
    assert state[poison] == (None, None)


def test_d4_a_failed_publish_releases_the_rest_of_the_batch_at_once(
    rt: Runtime, db: Database, moto_url: str
) -> None:
    client = sqs_client(moto_url)
    missing = f"{moto_url}/123456789012/never-created-{uuid.uuid4().hex[:8]}.fifo"
    ids = enqueue(db, *[f"site-{i}" for i in range(25)])
    result = drain(rt, SqsPublisher(client, missing), deadline=soon())
    assert result.published == 0 and result.released == 25
    assert result.failed == 10  # the first SendMessageBatch; the 15 rows after it not attempted
    assert result.passes == 1 and result.stopped_by == "publish_failure"
    assert all(state == (None, None) for state in rows(db).values())
    with db.transaction() as conn:  # ready again now, not after the 5-minute lease
        assert [m.id for m in outbox.claim(conn)] == ids
    [(outcome, _counts, error)] = relay_runs(db)
    assert outcome == "failed" and error is not None and "SendMessageBatch failed" in error


def test_a_transport_failure_stops_the_batch_at_the_first_failed_call(moto_url: str) -> None:
    client = sqs_client(moto_url)
    missing = f"{moto_url}/123456789012/never-created-{uuid.uuid4().hex[:8]}.fifo"
    messages = [outbox.OutboxMessage(i, "site.changed", {"site": f"s{i}"}) for i in range(1, 26)]
    got = SqsPublisher(client, missing).publish(messages)
    assert got.published == [] and got.failed == list(range(1, 11)) and got.stopped


def test_one_drain_keeps_claiming_until_a_short_pass(
    rt: Runtime, db: Database, queue: Queue
) -> None:
    ids = enqueue(db, *[f"site-{i % 7}" for i in range(45)])
    result = drain(rt, publisher(queue), deadline=soon(), limit=20)
    assert result.ok and result.passes == 3 and result.published == 45
    assert result.stopped_by == "drained"
    assert all(rows(db)[i][0] is not None for i in ids)


def test_a_drain_stops_claiming_when_the_deadline_is_near(
    rt: Runtime, db: Database, queue: Queue
) -> None:
    [outbox_id] = enqueue(db, "www")
    result = drain(rt, publisher(queue), deadline=Deadline.after(0.5))
    assert result.passes == 0 and result.stopped_by == "budget"
    assert rows(db)[outbox_id] == (None, None)  # nothing claimed


def test_e5b_crash_after_publish_before_mark_republishes_after_claim_ttl(
    rt: Runtime, db: Database, queue: Queue
) -> None:
    ids = enqueue(db, "www", "docs")
    # A relay that claims and publishes, then dies before marking.
    with db.transaction() as conn:
        claimed = outbox.claim(conn, ttl_seconds=1.0)
    assert publisher(queue).publish(claimed).published == ids
    # While the lease holds, another relay finds nothing to do.
    assert drain(rt, publisher(queue), deadline=soon()).claimed == 0
    time.sleep(1.2)
    again = drain(rt, publisher(queue), deadline=soon())
    assert again.ok and again.published == 2
    assert all(rows(db)[i][0] is not None for i in ids)
    # Same deduplication id inside the window: the queue holds each event once.
    assert sorted(SiteEvent.parse(m["Body"]).outbox_id for m in queue.drain_messages()) == ids


def test_every_working_drain_writes_a_relay_job_run_and_idle_ticks_do_not(
    rt: Runtime, db: Database, queue: Queue
) -> None:
    enqueue(db, "a", "b", "c")
    drain(rt, publisher(queue), deadline=soon())
    idle = drain(rt, publisher(queue), deadline=soon())
    assert idle.stopped_by == "idle"
    # one row for the drain that worked; an idle tick every 5 s would be 17,000 rows a day
    assert relay_runs(db) == [
        (
            "succeeded",
            {"passes": 1, "claimed": 3, "published": 3, "failed": 0, "released": 0},
            None,
        ),
    ]


def test_a_drain_that_can_do_nothing_raises(empty_database_url: str, queue: Queue) -> None:
    runtime = Runtime(load_settings(base_env(DATABASE_URL=empty_database_url)))
    try:
        with pytest.raises(psycopg.errors.UndefinedTable):  # no job_runs, no outbox
            drain(runtime, publisher(queue), deadline=soon())
    finally:
        runtime.close()


def test_two_concurrent_drains_publish_each_row_once(
    rt: Runtime, db: Database, queue: Queue, database_url: str
) -> None:
    ids = enqueue(db, *[f"site-{i % 5}" for i in range(60)])
    other = Runtime(rt.settings)
    results: list[RelayResult] = []
    barrier = threading.Barrier(2)

    def relay(runtime: Runtime) -> None:
        barrier.wait()
        results.append(drain(runtime, publisher(queue), deadline=soon(), limit=5))

    threads = [threading.Thread(target=relay, args=(r,)) for r in (rt, other)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    other.close()
    assert sum(r.published for r in results) == 60  # no row published by both
    assert all(r.ok for r in results)
    assert sorted(SiteEvent.parse(m["Body"]).outbox_id for m in queue.drain_messages()) == ids


# --- the scheduled function -------------------------------------------------------------------


def test_one_invocation_drains_more_than_one_claim_limit(
    rt: Runtime, db: Database, queue: Queue
) -> None:
    ids = enqueue(db, *[f"site-{i % 9}" for i in range(230)])
    # moto's FIFO takes seconds for 230 messages (it slows with depth): a generous budget, and
    # an interval longer than it so the loop ends after the first drain.
    summary = relay_app.run(
        rt, LocalContext("relay", timeout_ms=60_000), interval_seconds=30.0,
        budget_seconds=20.0, min_drain_seconds=0.1,
    )  # fmt: skip
    assert summary["drains"] == 1 and summary["passes"] == 3 and summary["published"] == 230
    assert all(rows(db)[i][0] is not None for i in ids)
    attrs = queue.client.get_queue_attributes(
        QueueUrl=queue.url, AttributeNames=["ApproximateNumberOfMessages"]
    )["Attributes"]
    assert attrs["ApproximateNumberOfMessages"] == "230"


def test_the_invocation_loops_and_publishes_rows_committed_during_it(
    rt: Runtime, db: Database, queue: Queue
) -> None:
    enqueue(db, "first")
    later: list[int] = []

    def sleep(seconds: float) -> None:  # a finalize commits between two ticks
        if not later:
            later.extend(enqueue(db, "second"))
        time.sleep(seconds)

    summary = relay_app.run(
        rt, LocalContext("relay", timeout_ms=60_000), interval_seconds=0.1,
        budget_seconds=0.8, min_drain_seconds=0.1, sleep=sleep,
    )  # fmt: skip
    assert summary["drains"] >= 2 and summary["published"] == 2
    assert rows(db)[later[0]][0] is not None
    assert 1 <= len(relay_runs(db)) <= summary["drains"]  # a row per drain that had work


def test_the_invocation_fails_when_any_publish_failed(
    rt: Runtime, db: Database, queue: Queue
) -> None:
    with db.transaction() as conn:
        outbox.enqueue(conn, "site.deleted", {"site": "www"})
    enqueue(db, "www")
    with pytest.raises(RelayFailed) as failed:
        relay_app.run(
            rt, LocalContext("relay", timeout_ms=60_000), interval_seconds=0.05,
            budget_seconds=0.3, min_drain_seconds=0.1,
        )  # fmt: skip
    assert failed.value.result.published == 1 and failed.value.result.failed >= 1
    assert "unknown topic" in str(failed.value)


def test_the_handler_uses_the_lambda_budget_less_the_reserve(
    rt: Runtime, db: Database, queue: Queue
) -> None:
    enqueue(db, "www")
    started = time.monotonic()
    # 12.5 s left, 10 s reserved: 2.5 s of budget, one drain, no second tick.
    summary = relay_app.run(rt, LocalContext("relay", timeout_ms=12_500))
    assert summary["drains"] == 1 and summary["published"] == 1
    assert time.monotonic() - started < 2.5


def test_the_relay_refuses_to_run_without_a_queue(database_url: str) -> None:
    runtime = Runtime(load_settings(base_env(DATABASE_URL=database_url)))
    with pytest.raises(RuntimeError, match="SITE_EVENTS_QUEUE_URL"):
        relay_app.run(runtime, LocalContext("relay"))
    runtime.close()
