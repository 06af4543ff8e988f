"""`GET /metrics`: Prometheus text computed from durable state, no credentials, and a source
that cannot be read is reported, never a failed scrape."""

import re
from collections.abc import Iterator
from typing import Any

import pytest

from artemis.db import job_runs
from tests.integration.api.conftest import Api


def sample(text: str, name: str, **labels: str) -> float:
    label_text = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = (
        re.escape(name) + (r"\{" + re.escape(label_text) + r"\}" if labels else "") + r" (\S+)"
    )
    match = re.search(r"^" + pattern + r"$", text, re.MULTILINE)
    assert match, f"{name} {labels} not in exposition"
    return float(match.group(1))


def test_metrics_reflect_outbox_tombstones_jobs_and_queues(api: Api) -> None:
    api.register("www", ["web"])
    # The API sends what its requests commit (the fast path): a row only the relay would send
    # is one written elsewhere (a job's, or one the fast path missed).
    api.sql("INSERT INTO outbox (topic, payload) VALUES ('site.changed', '{\"site\": \"x\"}')")
    queue = api.rt.settings.site_events_queue_url
    assert queue
    api.rt.sqs.purge_queue(QueueUrl=queue)  # earlier tests' fast-path messages
    api.sql(
        "INSERT INTO tombstones (site, id, move_state, trashed_at) VALUES ('x', 'a', 'pending', now() - interval '30 days'), ('x', 'b', 'moved', now())"
    )
    with api.rt.db.transaction() as conn:
        run = job_runs.start(conn, "drift-detect")
        job_runs.finish(conn, run, "succeeded", {"verdict": "reclaimable"})
        partial = job_runs.start(conn, "drift-detect")  # a resumed batch without a verdict yet
        job_runs.finish(conn, partial, "succeeded", {"sites": 3})
        job_runs.finish(conn, job_runs.start(conn, "gc-site", "x"), "failed", error="boom")
    reply = api.call("GET", "/metrics")
    assert reply.status == 200
    assert reply.headers["content-type"].startswith("text/plain")
    text = reply.raw.decode()
    assert sample(text, "artemis_outbox_unpublished") == 1
    assert sample(text, "artemis_outbox_oldest_unpublished_age_seconds") >= 0
    assert sample(text, "artemis_tombstones") == 2
    assert sample(text, "artemis_tombstones_pending_move") == 1
    assert sample(text, "artemis_tombstones_overdue") == 1
    assert sample(text, "artemis_job_runs", job="gc-site", outcome="failed") == 1
    assert sample(text, "artemis_drift_last_verdict", verdict="reclaimable") == 1
    assert sample(text, "artemis_drift_last_verdict", verdict="clean") == 0
    assert sample(text, "artemis_queue_messages", queue="site-events", state="visible") == 0
    assert sample(text, "artemis_queue_messages", queue="site-events-dlq", state="visible") == 0
    assert sample(text, "artemis_metrics_source_up", source="postgres") == 1
    assert sample(text, "artemis_metrics_source_up", source="sqs") == 1


def test_an_unreadable_source_is_reported_not_fatal(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SITE_EVENTS_QUEUE_URL", "http://127.0.0.1:1/000000000000/gone.fifo")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
    from artemis import runtime

    runtime.reset()
    reply = api.call("GET", "/metrics")
    assert reply.status == 200
    text = reply.raw.decode()
    assert sample(text, "artemis_metrics_source_up", source="sqs") == 0
    assert sample(text, "artemis_metrics_source_up", source="postgres") == 1


def test_the_scrape_reads_postgres_through_the_read_only_view(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    from contextlib import contextmanager

    from artemis.readonly import ReadOnlyDatabase

    opened: list[bool] = []
    original = ReadOnlyDatabase.transaction

    @contextmanager
    def counted(self: ReadOnlyDatabase) -> Iterator[Any]:
        with original(self) as conn:
            opened.append(True)
            yield conn

    monkeypatch.setattr(ReadOnlyDatabase, "transaction", counted)
    reply = api.call("GET", "/metrics")
    assert sample(reply.raw.decode(), "artemis_metrics_source_up", source="postgres") == 1
    assert opened == [True]
