"""`GET /metrics`: a Prometheus text exposition computed from durable state: outbox backlog
and age, queue and DLQ depth, tombstones pending and overdue, job runs by name and outcome, the
last drift verdict. Postgres is read through artemis.readonly's view, in one READ ONLY
transaction, so a scrape can never write. Each source that cannot be read is reported as a scrape
error gauge instead of failing the scrape."""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from artemis.db import job_runs, outbox, stats
from artemis.observability import logger
from artemis.readonly import ReadOnlyDatabase

if TYPE_CHECKING:
    from artemis.runtime import Runtime

CONTENT_TYPE = CONTENT_TYPE_LATEST
DRIFT_VERDICTS = (
    "clean", "reclaimable", "alias_mismatch", "unreadable", "aliased_missing", "selfcheck",
)  # fmt: skip


def exposition(rt: Runtime) -> bytes:
    registry = CollectorRegistry()
    errors = Gauge(
        "artemis_metrics_source_up",
        "1 when the source could be read",
        ["source"],
        registry=registry,
    )
    for source, collect in (("postgres", _postgres), ("sqs", _queues)):
        try:
            collect(rt, registry)
            errors.labels(source).set(1)
        except Exception:
            logger.exception("metrics source failed", extra={"source": source})
            errors.labels(source).set(0)
    return generate_latest(registry)


def _postgres(rt: Runtime, registry: CollectorRegistry) -> None:
    with ReadOnlyDatabase(rt.db).transaction() as conn:
        backlog = outbox.backlog(conn)
        tombs = stats.tombstone_stats(conn, rt.settings.cleanup_recovery_days)
        runs = job_runs.outcome_counts(conn)
        drift = stats.last_run(conn, "drift-detect", with_count="verdict")

    def gauge(name: str, doc: str, *labels: str) -> Gauge:
        return Gauge(name, doc, list(labels), registry=registry)

    gauge("artemis_outbox_unpublished", "outbox rows not yet published").set(backlog.unpublished)
    gauge(
        "artemis_outbox_oldest_unpublished_age_seconds", "age of the oldest unpublished outbox row"
    ).set(backlog.oldest_age_seconds)
    gauge("artemis_tombstones", "tombstone rows").set(tombs.total)
    gauge("artemis_tombstones_pending_move", "tombstones whose byte move has not completed").set(
        tombs.pending_moves
    )
    gauge(
        "artemis_tombstones_overdue", "tombstones a day past the recovery window (purge behind)"
    ).set(tombs.overdue)
    by_outcome = gauge("artemis_job_runs", "background runs in job_runs", "job", "outcome")
    for job, outcome, count in runs:
        by_outcome.labels(job, outcome).set(count)
    verdict = gauge("artemis_drift_last_verdict", "1 for the last drift verdict", "verdict")
    last = gauge("artemis_drift_last_run_timestamp_seconds", "when the last drift sweep finished")
    if drift is not None:
        finished_at, _, counts = drift
        current = str(counts.get("verdict", ""))
        for name in DRIFT_VERDICTS:
            verdict.labels(name).set(1 if name == current else 0)
        last.set(finished_at.timestamp())


def _queues(rt: Runtime, registry: CollectorRegistry) -> None:
    depth = Gauge(
        "artemis_queue_messages", "approximate SQS messages", ["queue", "state"], registry=registry
    )
    queues = {
        "site-events": rt.settings.site_events_queue_url,
        "site-events-dlq": rt.settings.site_events_dlq_url,
    }
    for name, url in queues.items():
        if not url:
            continue
        attrs = rt.sqs.get_queue_attributes(
            QueueUrl=url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        depth.labels(name, "visible").set(float(attrs.get("ApproximateNumberOfMessages", 0)))
        depth.labels(name, "in_flight").set(
            float(attrs.get("ApproximateNumberOfMessagesNotVisible", 0))
        )
