"""Every sample event in `events/` through its function's real handler, against real stores.

The files are discovered with a glob, and the scenario below names each of them: a new event
file without a step fails `test_every_sample_event_has_a_step`, and the scenario test asserts at
the end that it invoked every file. Each file runs through `artemis_local.functions.load_handler`
with a Lambda-like context, against real stores: a fresh Postgres database (empty: the migrate
event is the first step), a bucket and FIFO queues of the test's own on the moto server, and
the fake GitHub.

The scenario seeds what a later event needs through the earlier events themselves, in a fixed
order: register the site, three deploys (A, B, C) through init/upload/finalize, promote,
roll back, delete/restore, the background jobs, and finally the site's delete and purge.
Placeholders (events/README.md) are filled by `artemis_local.admin.fill_placeholders`, the
same code as `artemis-admin invoke --set`: `{{site}}` with a slug unique to the run,
`{{deploy_id}}` and `{{session}}` with the id and session JWT that init returned for the
deploy the step names.
"""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest

from artemis import runtime
from artemis.config import Settings
from artemis_local.admin import fill_placeholders, placeholders
from artemis_local.fake_github import FakeApp, FakeGitHub
from artemis_local.functions import Handler, LocalContext, function_names, load_handler
from tests.conftest import REPO_ROOT, TEST_SIGNING_KEY, base_env, sqs_client
from tests.integration.test_admin import run_admin

EVENTS_DIR = REPO_ROOT / "events"
SQL_FILES = sorted(p.name for p in (REPO_ROOT / "sql").glob("*.sql"))

# The functions' Lambda timeouts (template.yaml): the jobs budget their work from the remaining
# time, less a reserve (30 s for the nightly purge). The relay gets 13 s: its 10 s reserve
# leaves a 3 s budget, so one invocation is one drain instead of a minute of 5 s ticks.
TIMEOUT_MS = {
    "api": 29_000,
    "relay": 13_000,
    "site_worker": 300_000,
    "tombstone_purge": 900_000,
    "drift_detect": 900_000,
    "reconcile": 900_000,
    "backfill": 900_000,
    "migrate": 300_000,
}


@dataclass(frozen=True)
class Step:
    """One invocation of `file`. `status`: the HTTP status the route documents for success
    (API events). `deploy`: the deploy, by label, whose id and session fill `{{deploy_id}}` and
    `{{session}}`; on `api-deploy-init.json` the label names the deploy the reply starts."""

    file: str
    status: int | None = None
    deploy: str | None = None


def _lifecycle(label: str, *, presign: bool = False) -> list[Step]:
    """init → upload (→ direct-upload presign) → finalize onto the preview alias."""
    steps = [Step("api-deploy-init.json", 200, label), Step("api-deploy-upload.json", 200, label)]
    if presign:
        steps.append(Step("api-deploy-uploads.json", 200, label))
    return [*steps, Step("api-deploy-finalize.json", 200, label)]


SCENARIO: list[Step] = [
    Step("migrate-invoke.json"),  # the test database starts empty: this applies sql/
    Step("api-healthz.json", 200),
    Step("api-readyz.json", 200),
    Step("api-openapi.json", 200),
    Step("api-metrics.json", 200),
    Step("api-whoami.json", 200),
    Step("api-site-register.json", 201),  # teams [staff]
    Step("api-sites-list.json", 200),
    Step("api-site-update.json", 200),  # teams [staff, web]: the dev token may deploy
    *_lifecycle("A", presign=True),  # preview = A
    Step("api-alias-read.json", 200),
    Step("api-site-promote.json", 200, "A"),  # production = A
    *_lifecycle("B"),  # preview = B
    Step("api-site-promote.json", 200, "B"),  # production = B
    Step("api-site-rollback.json", 200, "A"),  # production = A
    *_lifecycle("C"),  # preview = C: B is no longer aliased
    Step("api-deploys-list.json", 200),
    Step("api-deploy-delete.json", 200, "B"),
    Step("api-site-trash.json", 200),
    Step("api-deploy-restore.json", 200, "B"),
    Step("api-audit.json", 200),
    Step("api-repo-create.json", 201),
    Step("api-repo-list.json", 200),
    Step("relay-scheduled.json"),  # publishes the site.changed rows the API wrote
    Step("site_worker-sqs.json"),  # www.example.org: no state there, an empty gc-site run
    Step("site_worker-two-sites.json"),  # {{site}} (twice: coalesced) and docs
    Step("reconcile-invoke.json"),
    Step("backfill-invoke.json"),
    Step("drift_detect-scheduled.json"),
    Step("tombstone_purge-scheduled.json"),
    Step("migrate-invoke.json"),  # again: nothing left to apply
    Step("api-site-delete.json", 204),  # bare delete: unpublished and deregistered
    Step("api-site-purge.json", 200),  # an orphaned site can still be purged
]


def event_files() -> list[str]:
    return sorted(p.name for p in EVENTS_DIR.glob("*.json"))


def function_of(file: str) -> str:
    return file.split("-", 1)[0]


@dataclass
class Session:
    deploy_id: str
    jwt: str


@dataclass
class Stack:
    """The stores the handlers run against, and what the scenario learned so far."""

    site: str
    sqs: Any
    queue_url: str
    dlq_url: str
    deploys: dict[str, Session] = field(default_factory=dict)
    handlers: dict[str, Handler] = field(default_factory=dict)
    migrations: int = 0

    def handler(self, function: str) -> Handler:
        if function not in self.handlers:  # loaded once the environment is set, as Lambda
            self.handlers[function] = load_handler(function)
        return self.handlers[function]

    def event(self, step: Step) -> dict[str, Any]:
        values = {"site": self.site}
        session = self.deploys.get(step.deploy or "")
        if session is not None:
            values.update(deploy_id=session.deploy_id, session=session.jwt)
        event: dict[str, Any] = fill_placeholders(
            json.loads((EVENTS_DIR / step.file).read_text()), values
        )
        return event

    def invoke(self, step: Step) -> Any:
        function = function_of(step.file)
        context = LocalContext(function, timeout_ms=TIMEOUT_MS[function])
        return self.handler(function)(self.event(step), context)


@functools.cache
def _app_key() -> tuple[str, str]:
    """A GitHub App key pair for the repo events: (private PEM, public PEM)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()  # fmt: skip
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


@pytest.fixture
def stack(
    empty_database_url: str, moto_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Stack]:
    """A fresh, empty database (the migrate event migrates it), a bucket and FIFO queue + DLQ
    of this test's own on the moto server, and the fake GitHub; the process environment set
    for them and the process Runtime rebuilt from it (and dropped at the end)."""
    name = f"events-{uuid.uuid4().hex[:10]}"
    boto3.client("s3", endpoint_url=moto_url, region_name="us-east-1").create_bucket(Bucket=name)
    sqs = sqs_client(moto_url)
    fifo = {"FifoQueue": "true", "ContentBasedDeduplication": "false"}
    dlq_url = sqs.create_queue(QueueName=f"{name}-dlq.fifo", Attributes=fifo)["QueueUrl"]
    queue_url = sqs.create_queue(QueueName=f"{name}.fifo", Attributes=fifo)["QueueUrl"]
    github = FakeGitHub().start()
    app_key = _app_key()
    github.app = FakeApp("11", "22", app_key[1], "freeCodeCamp-Universe")  # repo events
    for spec in Settings.model_fields.values():  # nothing leaks in from the outer environment
        if spec.alias:
            monkeypatch.delenv(spec.alias, raising=False)
            monkeypatch.delenv(f"{spec.alias}_PARAM", raising=False)
    env = base_env(
        DATABASE_URL=empty_database_url,
        JWT_SIGNING_KEY=TEST_SIGNING_KEY,
        AWS_ENDPOINT_URL=moto_url,
        AWS_REGION="us-east-1",
        BUCKET_NAME=name,
        GH_API_BASE=github.url,
        SITE_EVENTS_QUEUE_URL=queue_url,
        SITE_EVENTS_DLQ_URL=dlq_url,
        GH_APP_ID="11",
        GH_APP_INSTALLATION_ID="22",
        GH_APP_PRIVATE_KEY=app_key[0],
        REPO_APPROVE_AUTHZ_TEAM="staff",
    )
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    runtime.reset()
    try:
        yield Stack(f"sample-{uuid.uuid4().hex[:8]}", sqs, queue_url, dlq_url)
    finally:
        runtime.reset()  # closes the pool before the database is dropped
        github.stop()


# --- what success means per background function ---------------------------------------------


def check_migrate(stack: Stack, result: Any) -> None:
    stack.migrations += 1
    if stack.migrations == 1:  # the empty database
        assert result == {"applied": SQL_FILES, "skipped": []}
    else:
        assert result == {"applied": [], "skipped": SQL_FILES}


def check_relay(stack: Stack, result: Any) -> None:
    # The relay raises RelayFailed on any failure. The site.changed rows the API events wrote
    # went out with their requests (the fast path): the relay finds them published, and the
    # FIFO queue holds them, grouped by site.
    assert result["failed"] == 0 and result["errors"] == [], result
    assert result["claimed"] == 0, result
    got = stack.sqs.receive_message(
        QueueUrl=stack.queue_url, MaxNumberOfMessages=10, AttributeNames=["All"]
    ).get("Messages", [])
    assert {m["Attributes"]["MessageGroupId"] for m in got} == {stack.site}


def check_site_worker(stack: Stack, result: Any) -> None:
    # No record to retry, and none dead-lettered (a permanent failure is acknowledged, so it
    # shows only as a DLQ copy).
    assert result == {"batchItemFailures": []}
    dlq = stack.sqs.receive_message(QueueUrl=stack.dlq_url, MaxNumberOfMessages=10)
    assert dlq.get("Messages", []) == []


def check_reconcile(stack: Stack, result: Any) -> None:
    assert result["site"] == stack.site and result["dry_run"] is True, result
    assert result["complete"] is True and result["error"] is None, result
    assert result["aliased_missing"] == [], result


def check_backfill(stack: Stack, result: Any) -> None:
    assert result["complete"] is True and result["resume_after"] is None, result
    assert result["sites"] == 1 and result["deploys"] == 3 and result["aliases"] == 2, result


def check_drift(stack: Stack, result: Any) -> None:
    assert result["complete"] is True and result["failed"] is False, result
    assert result["verdict"] == "clean" and result["selfcheck"] == [], result


def check_purge(stack: Stack, result: Any) -> None:
    assert result["errors"] == [], result
    purge = result["purge"]
    assert purge is not None and purge["failed"] == {} and purge["incomplete"] is False, result


CHECKS: dict[str, Callable[[Stack, Any], None]] = {
    "migrate-invoke.json": check_migrate,
    "relay-scheduled.json": check_relay,
    "site_worker-sqs.json": check_site_worker,
    "site_worker-two-sites.json": check_site_worker,
    "reconcile-invoke.json": check_reconcile,
    "backfill-invoke.json": check_backfill,
    "drift_detect-scheduled.json": check_drift,
    "tombstone_purge-scheduled.json": check_purge,
}


def check_api(stack: Stack, step: Step, result: Any) -> None:
    body_text = result.get("body") or ""
    assert result["statusCode"] == step.status, f"{step.file}: {result['statusCode']} {body_text}"
    if step.status == 204:
        assert body_text == ""
        return
    if step.file == "api-metrics.json":
        assert "# TYPE" in body_text
        return
    body = json.loads(body_text)
    session = stack.deploys.get(step.deploy or "")
    if step.file == "api-deploy-init.json":
        assert step.deploy is not None and step.deploy not in stack.deploys
        stack.deploys[step.deploy] = Session(body["deployId"], body["jwt"])
    elif step.file in {"api-site-promote.json", "api-site-rollback.json"}:
        assert session is not None and body["deployId"] == session.deploy_id
    elif step.file == "api-deploy-delete.json":
        assert body["status"] == "tombstoned" and body["moved"] > 0
    elif step.file == "api-deploy-restore.json":
        assert body["status"] == "restored" and body["moved"] > 0
    elif step.file == "api-site-purge.json":
        assert body["status"] == "purged" and body["slug"] == stack.site


# --- the tests ----------------------------------------------------------------------------------


def test_every_sample_event_has_a_step() -> None:
    """Every file in events/ is in the scenario (a new file needs a step), every step names a
    file, every file is valid JSON for an existing function, and only the documented
    placeholders occur; API steps name their success status, other steps have a check."""
    files = event_files()
    assert files, "no sample events"
    assert sorted({s.file for s in SCENARIO}) == files
    for name in files:
        assert function_of(name) in function_names(), name
        used = placeholders(json.loads((EVENTS_DIR / name).read_text()))
        assert used <= {"site", "deploy_id", "session"}, (name, used)
    for step in SCENARIO:
        if function_of(step.file) == "api":
            assert step.status is not None, step
        else:
            assert step.file in CHECKS, step
    readme = (EVENTS_DIR / "README.md").read_text()
    for name in files:
        assert f"`{name}`" in readme, f"{name} is not described in events/README.md"


def test_every_sample_event_succeeds_against_the_local_stack(stack: Stack) -> None:
    invoked: set[str] = set()
    for step in SCENARIO:
        result = stack.invoke(step)
        if function_of(step.file) == "api":
            check_api(stack, step, result)
        else:
            CHECKS[step.file](stack, result)
        invoked.add(step.file)
    assert sorted(invoked) == event_files()
    assert sorted(stack.deploys) == ["A", "B", "C"]


def test_invoke_fills_placeholders_from_set(
    tmp_path: Path, database_url: str, moto_url: str
) -> None:
    """`artemis-admin invoke --set` fills the placeholders (here in an SQS body and a group id);
    a missing one is a clear error, before anything runs."""
    env = base_env(DATABASE_URL=database_url, AWS_ENDPOINT_URL=moto_url, AWS_REGION="us-east-1",
                   AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test")  # fmt: skip
    site = f"sample-{uuid.uuid4().hex[:8]}"
    event = "events/site_worker-two-sites.json"
    # site_worker keeps 30 s in reserve: the default 30 s context would leave it no time.
    done = run_admin("invoke", "site_worker", event, "--set", f"site={site}", "--timeout", "300",
                     env=env, state_dir=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    # stdout is exactly the result: the function's log goes to stderr
    assert json.loads(done.stdout) == {"batchItemFailures": []}, done.stderr
    missing = run_admin("invoke", "api", "events/api-deploy-upload.json", "--set", f"site={site}",
                        env=env, state_dir=tmp_path)  # fmt: skip
    assert missing.returncode == 2
    assert missing.stderr.strip() == (
        "artemis-admin invoke: events/api-deploy-upload.json needs"
        " --set deploy_id=... --set session=..."
    )
    bad = run_admin("invoke", "api", "events/api-healthz.json", "--set", "site", env=env,
                    state_dir=tmp_path)  # fmt: skip
    assert bad.returncode == 2 and "--set wants NAME=VALUE" in bad.stderr
