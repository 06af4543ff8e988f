"""The whole flow on LocalStack (S3, SQS, EventBridge) and real Postgres, through the real
handlers (issue 5, item 6).

One local runtime for the module, pointed at LocalStack: its schedule mode is detected
(EventBridge), and it creates the bucket, the site-events queues and the EventBridge rules
with the template's names for the stack `artemis-local`. Its background workers are off, so
each test decides what runs:

(a) the resources exist as the template declares them;
(c) deploy → promote → site.changed → relay → FIFO queue → site worker (gc-site tombstones
    what retention lets go) → tombstone purge past the recovery window → drift sweep: clean,
    with the bucket and the index checked after each step;
(b) the `rate(1 minute)` relay rule's tick, delivered by LocalStack to the ticks queue, reaches
    the real relay handler through the runtime's ScheduleTicks, which publishes an outbox row.
    It runs last: LocalStack fires a rate rule about a minute after it is created, and (c) uses
    that minute.

Lambda cannot run here, so time moves as in tests/integration/test_durable_scenario.py: the
site worker is the function's own handler built with an injected clock (`make_handler(clock=)`),
two days on, past grace and retention; the purge handler reads the wall clock, so the tombstones
are back-dated past the recovery window instead.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import psycopg
import pytest

from artemis.db import outbox
from artemis.keys import Dirname, KeyLayout, Slug
from artemis_local.functions import LocalContext
from artemis_local.runner import LocalSystem
from artemis_local.sqs_source import poll_once
from artemis_local.template import load_template, resources_of, stack_names
from artemis_local.workers import STOP_TIMEOUT_SECONDS, Dispatch, ScheduleTicks, Workers
from functions.site_worker.app import make_handler
from tests.conftest import SLUG_NOT_DIRNAME, TRUNCATE, base_env
from tests.integration.api.conftest import DEV, Api
from tests.system.test_fifo_pipeline import wait_for

STACK = "artemis-local"
SLUG = "flow"
TICK_WITHIN_SECONDS = 90.0
RETENTION_DAYS = 1
RECOVERY_DAYS = 1


@dataclass
class Flow:
    system: LocalSystem
    api: Api
    started: float  # monotonic time the runtime (and so its rules) came up
    database_url: str

    @property
    def env(self) -> dict[str, str]:
        return self.system.env

    def client(self, service: str) -> Any:
        return boto3.client(
            service,  # type: ignore[call-overload]
            endpoint_url=self.env["AWS_ENDPOINT_URL"],
            region_name="us-east-1",
            aws_access_key_id=self.env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=self.env["AWS_SECRET_ACCESS_KEY"],
        )

    @property
    def layout(self) -> KeyLayout:
        return self.api.rt.settings.key_layout

    @property
    def site(self) -> Dirname:
        return self.layout.dirname(Slug(SLUG))

    def keys(self, prefix: str) -> set[str]:
        return {o.key[len(prefix) :] for o in self.api.rt.bucket.list_keys(prefix)}

    def sql(self, statement: str, params: Any = None) -> list[tuple[Any, ...]]:
        return self.api.sql(statement, params)

    def ticks(self) -> ScheduleTicks:
        assert self.system.schedules is not None
        return ScheduleTicks(self.client("sqs"), self.system.schedules)

    def scheduled_event(self, rule_name: str, at: datetime) -> str:
        """The event an EventBridge schedule rule sends its target."""
        assert self.system.schedules is not None
        [rule] = [r for r in self.system.schedules.rules if r.schedule.rule_name == rule_name]
        return json.dumps({
            "version": "0", "id": str(uuid.uuid4()), "detail-type": "Scheduled Event",
            "source": "aws.events", "account": "000000000000",
            "time": at.strftime("%Y-%m-%dT%H:%M:%SZ"), "region": "us-east-1",
            "resources": [rule.arn], "detail": {},
        })  # fmt: skip


@pytest.fixture(scope="module")
def flow(
    tmp_path_factory: pytest.TempPathFactory, localstack_url: str, migrated_database_url: str
) -> Iterator[Flow]:
    with psycopg.connect(migrated_database_url, autocommit=True) as conn:
        conn.execute(TRUNCATE)
        conn.execute("TRUNCATE drift_runs, drift_site_results RESTART IDENTITY")
    env = base_env(
        DATABASE_URL=migrated_database_url,
        AWS_ENDPOINT_URL=localstack_url,
        BUCKET_NAME=f"artemis-flow-{uuid.uuid4().hex[:8]}",
        # Keep one finalized deploy besides the aliased ones; a deploy two days old is past
        # grace and retention, and a tombstone older than a day is past recovery.
        CLEANUP_RECENT_KEEP="1",
        CLEANUP_GRACE="1h",
        CLEANUP_RETENTION_DAYS=str(RETENTION_DAYS),
        CLEANUP_RECOVERY_DAYS=str(RECOVERY_DAYS),
        # This flow is the relay's: its EventBridge rule carries the events to the queue. The
        # API's fast path (which would have sent them already) is tested in
        # tests/integration/test_fast_path.py and test_notifications_on_localstack.py.
        OUTBOX_FAST_PATH="false",
        **SLUG_NOT_DIRNAME,
    )
    system = LocalSystem(
        state_dir=Path(tmp_path_factory.mktemp("flow")), base_env=env, port=0, workers=False
    ).start()
    started = time.monotonic()
    try:
        assert system.gateway is not None
        yield Flow(system, Api(system.gateway.url, system, migrated_database_url), started,
                   migrated_database_url)  # fmt: skip
    finally:
        system.stop()


# --- (a) ---------------------------------------------------------------------------------


def test_a_the_runtime_creates_the_template_resources_on_localstack(flow: Flow) -> None:
    assert flow.system.schedule_mode == "eventbridge"  # detected: LocalStack serves events
    names = stack_names(STACK)
    template_queues = resources_of(load_template(), "AWS::SQS::Queue")
    declared = template_queues["SiteEventsQueue"]["Properties"]

    flow.client("s3").head_bucket(Bucket=flow.env["BUCKET_NAME"])

    sqs = flow.client("sqs")
    queue_url = flow.env["SITE_EVENTS_QUEUE_URL"]
    dlq_url = flow.env["SITE_EVENTS_DLQ_URL"]
    assert queue_url == sqs.get_queue_url(QueueName=names.queue)["QueueUrl"]
    assert dlq_url == sqs.get_queue_url(QueueName=names.dead_letter_queue)["QueueUrl"]
    assert names.queue == f"{STACK}-site-events.fifo"
    attrs = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["All"])["Attributes"]
    dlq = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["All"])["Attributes"]
    assert attrs["FifoQueue"] == "true" and attrs["ContentBasedDeduplication"] == "false"
    assert attrs["VisibilityTimeout"] == str(declared["VisibilityTimeout"])
    assert attrs["MessageRetentionPeriod"] == str(declared["MessageRetentionPeriod"])
    redrive = json.loads(attrs["RedrivePolicy"])
    assert redrive["deadLetterTargetArn"] == dlq["QueueArn"]
    assert int(redrive["maxReceiveCount"]) == declared["RedrivePolicy"]["maxReceiveCount"] == 5
    assert dlq["FifoQueue"] == "true" and dlq["ContentBasedDeduplication"] == "false"

    schedules = flow.system.schedules
    assert schedules is not None
    ticks = sqs.get_queue_attributes(QueueUrl=schedules.ticks_queue_url, AttributeNames=["All"])[
        "Attributes"
    ]
    assert ticks["QueueArn"].endswith(f":{STACK}-schedule-ticks") and "FifoQueue" not in ticks

    events = flow.client("events")
    on_endpoint = {r["Name"]: r for r in events.list_rules(NamePrefix=f"{STACK}-")["Rules"]}
    assert {s.rule_name for s in names.schedules} <= set(on_endpoint)
    assert {r.schedule for r in schedules.rules} == set(names.schedules)
    for schedule in names.schedules:
        rule = on_endpoint[schedule.rule_name]
        assert rule["ScheduleExpression"] == schedule.expression and rule["State"] == "ENABLED"
        targets = events.list_targets_by_rule(Rule=schedule.rule_name)["Targets"]
        assert [t["Arn"] for t in targets] == [ticks["QueueArn"]]
    by_function = {s.function_dir: s for s in names.schedules}
    assert by_function["relay"].rule_name == f"{STACK}-relay"
    assert by_function["relay"].expression == "rate(1 minute)"
    assert {"tombstone_purge", "drift_detect"} <= set(by_function)


# --- (c) ---------------------------------------------------------------------------------


def test_c_deploy_promote_gc_purge_drift_through_the_real_handlers(flow: Flow) -> None:
    api, site, layout = flow.api, flow.site, flow.layout
    files = {"index.html": b"<h1>flow</h1>", "app.js": b"console.log(1)"}

    # Deploy four times (preview), then promote the third to production.
    api.register(SLUG, teams=["web"])
    ids = [api.deploy(SLUG, files=files) for _ in range(4)]
    promoted = api.call("POST", f"/api/site/{SLUG}/promote", token=DEV,
                        json_body={"deployId": ids[2]})  # fmt: skip
    assert promoted.status == 200, promoted.raw
    assert promoted.body["deployId"] == ids[2]

    for did in ids:
        assert flow.keys(layout.deploy_prefix(site, did)) >= set(files)
        assert api.rt.bucket.head(layout.marker_key(site, did)) is not None
    assert api.alias_object(site, "production") == ids[2]
    assert api.alias_object(site, "preview") == ids[3]
    assert {r[0] for r in flow.sql("SELECT id FROM deploys WHERE site = %s", [site])} == set(ids)
    assert dict(flow.sql("SELECT name, deploy_id FROM aliases WHERE site = %s", [site])) == {
        "production": ids[2], "preview": ids[3],
    }  # fmt: skip
    changes = flow.sql("SELECT topic, payload->>'site' FROM outbox WHERE published_at IS NULL")
    assert changes == [("site.changed", site)] * 5  # four finalizes and the promote

    # The relay's rule fires: the real relay handler publishes the outbox to the FIFO queue.
    ticks = flow.ticks()
    relayed = ticks.dispatch(flow.scheduled_event(f"{STACK}-relay", datetime.now(UTC)))
    assert relayed.ok and relayed.function == "relay", relayed.error
    assert relayed.result["published"] == 5
    assert flow.sql("SELECT count(*) FROM outbox WHERE published_at IS NULL") == [(0,)]

    # The event source mapping: the site worker's own handler, two days on.
    later = datetime.now(UTC) + timedelta(days=RETENTION_DAYS + 1)
    worker = make_handler(clock=lambda: later)
    sqs = flow.client("sqs")
    context = LocalContext("site_worker", timeout_ms=300_000)

    def gc_runs() -> list[tuple[Any, ...]]:
        return flow.sql(
            "SELECT outcome, counts FROM job_runs WHERE job = 'gc-site' AND site = %s", [site]
        )

    def drained() -> bool:  # until a run happened and the queue has nothing more
        got = poll_once(sqs, flow.env["SITE_EVENTS_QUEUE_URL"], worker, context, wait_seconds=1)
        assert got.failed == 0, got
        return got.received == 0 and bool(gc_runs())

    wait_for(drained, timeout=30)
    runs = gc_runs()  # five messages of one site: one run per batch (usually one batch)
    assert {outcome for outcome, _ in runs} == {"succeeded"}, runs
    assert sum(counts["tombstoned"] for _, counts in runs) == 2, runs

    # Retention: production (ids[2]) and preview (ids[3]) are aliased, and ids[3] is also the
    # newest finalized deploy (keep 1); ids[0] and ids[1] are past retention → trash.
    victims, kept = ids[:2], ids[2:]
    for did in victims:
        assert flow.keys(layout.deploy_prefix(site, did)) == set()
        assert flow.keys(layout.deploy_trash_prefix(site, did)) >= set(files)
    for did in kept:
        assert flow.keys(layout.deploy_prefix(site, did)) >= set(files)
    assert api.alias_object(site, "production") == ids[2]
    assert api.alias_object(site, "preview") == ids[3]
    assert {r[0] for r in flow.sql("SELECT id FROM deploys WHERE site = %s", [site])} == set(kept)
    tombs = flow.sql("SELECT id, move_state FROM tombstones WHERE site = %s", [site])
    assert set(tombs) == {(did, "moved") for did in victims}  # ids of one second sort by sha

    # The nightly purge, past the recovery window: the tombstones were stamped by the database
    # clock, so move them back (as test_durable_scenario does) and fire the purge's rule.
    flow.sql(
        "UPDATE tombstones SET trashed_at = now() - make_interval(days => %s) WHERE site = %s",
        [RECOVERY_DAYS + 1, site],
    )
    purged = ticks.dispatch(flow.scheduled_event(f"{STACK}-tombstone-purge", datetime.now(UTC)))
    assert purged.ok and purged.function == "tombstone_purge", purged.error
    assert sorted(purged.result["purge"]["purged"]) == sorted(f"{site}/{d}" for d in victims)
    assert purged.result["errors"] == []
    for did in victims:
        assert flow.keys(layout.deploy_trash_prefix(site, did)) == set()
        assert flow.keys(layout.deploy_prefix(site, did)) == set()
    for did in kept:
        assert flow.keys(layout.deploy_prefix(site, did)) >= set(files)
    assert flow.sql("SELECT id FROM tombstones WHERE site = %s", [site]) == []
    assert {r[0] for r in flow.sql("SELECT id FROM deploys WHERE site = %s", [site])} == set(kept)
    assert flow.sql(
        "SELECT outcome FROM job_runs WHERE job = 'tombstone-purge' ORDER BY id DESC LIMIT 1"
    ) == [("succeeded",)]

    # The drift sweep's rule: bucket and index agree.
    drift = ticks.dispatch(flow.scheduled_event(f"{STACK}-drift-detect", datetime.now(UTC)))
    assert drift.ok and drift.function == "drift_detect", drift.error
    assert drift.result["complete"] is True and drift.result["verdict"] == "clean", drift.result
    assert drift.result["selfcheck"] == []
    assert flow.sql("SELECT verdict FROM drift_runs ORDER BY id DESC LIMIT 1") == [("clean",)]
    assert flow.sql("SELECT count(*) FROM drift_site_results") == [(0,)]
    # and nothing was touched by the sweep
    for did in kept:
        assert flow.keys(layout.deploy_prefix(site, did)) >= set(files)
    assert api.alias_object(site, "production") == ids[2]


# --- (b) ---------------------------------------------------------------------------------


def published(dispatch: Dispatch) -> bool:
    """A relay invocation that published something."""
    return dispatch.function == "relay" and dispatch.ok and dispatch.result["published"] > 0


def test_b_a_rate_rule_tick_reaches_the_real_relay_handler(flow: Flow) -> None:
    """LocalStack → the ticks queue → ScheduleTicks → functions/relay: the outbox row is
    published, and only the tick could have done it (no relay loop runs here)."""
    relay_runs = flow.sql("SELECT count(*) FROM job_runs WHERE job = 'relay'")[0][0]
    with psycopg.connect(flow.database_url, autocommit=True) as conn, conn.transaction():
        outbox_id = outbox.enqueue_site_changed(conn, Dirname("tick-site"))  # as an API change
    assert flow.system.schedules is not None
    workers = Workers(schedules=flow.system.schedules, relay_loop=False, site_worker=False)
    workers.start()
    try:
        assert workers.relay is None and workers.poller is None and workers.scheduler is None
        assert workers.ticks is not None
        ticks = workers.ticks

        def relayed() -> bool:
            return any(published(d) for d in ticks.snapshot())

        remaining = TICK_WITHIN_SECONDS - (time.monotonic() - flow.started)
        wait_for(relayed, timeout=max(remaining, 5.0))
    finally:
        stopping = time.monotonic()
        workers.stop()
        stopped_in = time.monotonic() - stopping
    assert stopped_in < STOP_TIMEOUT_SECONDS
    assert workers.ticks_loop is not None and not workers.ticks_loop.alive
    [dispatch] = [d for d in ticks.snapshot() if published(d)]
    assert dispatch.rule == f"{STACK}-relay" and dispatch.event_id
    [(published_at,)] = flow.sql("SELECT published_at FROM outbox WHERE id = %s", [outbox_id])
    assert published_at is not None
    # the drain the tick ran left its job_runs row (an idle drain leaves none)
    assert flow.sql(
        "SELECT outcome FROM job_runs WHERE job = 'relay' ORDER BY id OFFSET %s", [relay_runs]
    ) == [("succeeded",)]
    # The relay really sent it: the site-events queue holds the tick-site message.
    sqs = flow.client("sqs")
    reply = sqs.receive_message(
        QueueUrl=flow.env["SITE_EVENTS_QUEUE_URL"], MaxNumberOfMessages=10, WaitTimeSeconds=2
    )
    bodies = [json.loads(m["Body"]) for m in reply.get("Messages", [])]
    assert {"site": "tick-site"} in [b.get("payload") for b in bodies], bodies
    for m in reply.get("Messages", []):
        sqs.delete_message(
            QueueUrl=flow.env["SITE_EVENTS_QUEUE_URL"], ReceiptHandle=m["ReceiptHandle"]
        )
