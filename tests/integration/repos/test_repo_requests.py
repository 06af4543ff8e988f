"""The repo-request queue (spec/api.md §12) black-box through the local gateway: the real API
handler with the feature on, real Postgres, and the fake GitHub serving the App endpoints (it
verifies the App JWT's RS256 signature with the App's public key)."""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from artemis import runtime
from artemis.config import SiteWorkerSettings, load_settings
from artemis.deadlines import Deadline
from artemis.jobs.relay import drain
from artemis.queue import SqsPublisher
from artemis_local.fake_github import FakeApp, Identity
from artemis_local.functions import LocalContext
from artemis_local.runner import LocalSystem
from artemis_local.sqs_source import poll_once
from functions.site_worker.app import make_handler
from tests.conftest import base_env
from tests.integration.api.conftest import STAFF, Api, Reply, local_api_system

APPROVER = "repo-approver-token"
OUTSIDER = "local-outsider-token"
ORG = "freeCodeCamp-Universe"


@pytest.fixture(scope="module")
def app_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def repo_system(
    tmp_path_factory: pytest.TempPathFactory, migrated_database_url: str, moto_url: str,
    app_key: rsa.RSAPrivateKey,
) -> Iterator[LocalSystem]:  # fmt: skip
    pem = app_key.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption()).decode()  # fmt: skip
    env = base_env(
        DATABASE_URL=migrated_database_url, AWS_ENDPOINT_URL=moto_url, BUCKET_NAME="repo-tests",
        GH_APP_ID="4242", GH_APP_INSTALLATION_ID="77", GH_APP_PRIVATE_KEY=pem,
        REPO_APPROVE_AUTHZ_TEAM="approvers", GH_REPO_ORG=ORG,
    )  # fmt: skip
    with local_api_system(Path(tmp_path_factory.mktemp("repos")), env) as system:
        yield system


@pytest.fixture
def api(repo_system: LocalSystem, database_url: str, app_key: rsa.RSAPrivateKey) -> Iterator[Api]:
    runtime.reset()
    github = repo_system.github
    assert github is not None and repo_system.gateway is not None
    github.clear_faults()
    github.directory.identities[APPROVER] = Identity(APPROVER, "repo-approver", 3001,
                                                     ("approvers",))  # fmt: skip
    public = (
        app_key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    github.app = FakeApp("4242", "77", public, ORG)
    yield Api(repo_system.gateway.url, repo_system, database_url)
    runtime.reset()


def fake(api: Api) -> FakeApp:
    assert api.github.app is not None
    return api.github.app


def name() -> str:
    return f"repo-{uuid.uuid4().hex[:8]}"


def create(api: Api, body: dict[str, Any], token: str = STAFF) -> Reply:
    return api.call("POST", "/api/repo", token=token, json_body=body)


def approve(api: Api, request_id: str, token: str = APPROVER) -> Reply:
    return api.call("POST", f"/api/repo/{request_id}/approve", token=token)


# --- create --------------------------------------------------------------------------------


def test_create_answers_the_pending_row(api: Api) -> None:
    repo = name()
    reply = create(api, {"name": repo, "description": "docs", "visibility": "public"})
    assert reply.status == 201, reply.raw
    row = reply.body
    assert row["id"].startswith("req_") and len(row["id"]) == 24
    assert (row["name"], row["owner"], row["status"], row["visibility"]) == (
        repo, ORG, "pending", "public",
    )  # fmt: skip
    assert row["requestedBy"] == "local-staff" and row["description"] == "docs"
    audit = api.sql("SELECT action, detail->>'name' FROM audit_log WHERE detail->>'id' = %s",
                    [row["id"]])  # fmt: skip
    assert audit == [("repo.create", repo)]


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"name": "-bad"}, 400, "invalid_name"),
        ({"name": "x" * 101}, 400, "invalid_name"),
        ({"name": "ok", "visibility": "internal"}, 400, "invalid_visibility"),
        ({"name": "ok", "template": "no spaces"}, 400, "invalid_template"),
        ({"name": "ok", "description": "é" * 351}, 400, "invalid_description"),
        ({"name": 7}, 400, "bad_request"),
    ],
)
def test_create_validation(api: Api, body: dict[str, Any], status: int, code: str) -> None:
    reply = create(api, body)
    assert (reply.status, reply.code) == (status, code)


def test_create_needs_the_create_team(api: Api) -> None:
    reply = create(api, {"name": name()}, token=OUTSIDER)
    assert (reply.status, reply.code) == (403, "user_unauthorized")


def test_the_name_claim_is_case_insensitive_and_released_by_reject_and_delete(api: Api) -> None:
    repo = name()
    first = create(api, {"name": repo}).body
    clash = create(api, {"name": repo.upper()})
    assert (clash.status, clash.code) == (409, "already_exists")
    rejected = api.call("POST", f"/api/repo/{first['id']}/reject", token=APPROVER,
                        json_body={"reason": "duplicate"})  # fmt: skip
    assert rejected.status == 200 and rejected.body["rejectReason"] == "duplicate"
    second = create(api, {"name": repo.upper()})
    assert second.status == 201
    assert api.call("DELETE", f"/api/repo/{second.body['id']}", token=APPROVER).status == 204
    assert create(api, {"name": repo}).status == 201


def test_a_vanished_repository_frees_its_name_on_the_next_create(api: Api) -> None:
    repo = name()
    request_id = create(api, {"name": repo}).body["id"]
    assert approve(api, request_id).body["outcome"] == "ok"
    assert create(api, {"name": repo}).code == "already_exists"  # still on GitHub
    del fake(api).repos[repo.lower()]  # deleted on GitHub
    again = create(api, {"name": repo})
    assert again.status == 201, again.raw
    old = api.call("GET", f"/api/repo/{request_id}", token=STAFF).body
    assert old["status"] == "failed" and "no longer exists" in old["error"]


# --- reads -----------------------------------------------------------------------------------


def test_list_by_status_and_mine(api: Api) -> None:
    mine = create(api, {"name": name()}).body
    theirs = create(api, {"name": name()}, token=APPROVER).body  # approvers may not create
    assert theirs.get("error", {}).get("code") == "user_unauthorized"
    listed = api.call("GET", "/api/repos", token=STAFF).body
    assert mine["id"] in [r["id"] for r in listed] and all(r["status"] == "pending" for r in listed)
    assert api.call("GET", "/api/repos?status=active", token=STAFF).body == []
    assert [r["id"] for r in api.call("GET", "/api/repos?mine=true", token=STAFF).body] == [
        mine["id"]
    ]
    assert api.call("GET", "/api/repos?mine=1", token=APPROVER).body == []
    bad = api.call("GET", "/api/repos?status=open", token=STAFF)
    assert (bad.status, bad.code) == (400, "invalid_status")


def test_get_and_actor_redaction(api: Api) -> None:
    row = create(api, {"name": name()}).body
    seen = api.call("GET", f"/api/repo/{row['id']}", token=STAFF).body  # staff: audit team
    assert seen["requestedBy"] == "local-staff"
    hidden = api.call("GET", f"/api/repo/{row['id']}", token="local-dev-token").body
    assert hidden["requestedBy"] == "" and "approver" not in hidden
    missing = api.call("GET", "/api/repo/req_00000000000000000000", token=STAFF)
    assert (missing.status, missing.code) == (404, "not_found")


def test_templates_are_the_readable_template_repos_sorted(api: Api) -> None:
    app = fake(api)
    app.add_template("zeta-template")
    app.add_template("alpha-template")
    app.add_template("secret-template", readable=False)
    reply = api.call("GET", "/api/repo/templates", token=OUTSIDER)
    assert reply.status == 200 and reply.body == {"templates": ["alpha-template", "zeta-template"]}


# --- approve / reject / delete --------------------------------------------------------------


def test_approve_creates_the_repository_once_and_the_row_goes_active(api: Api) -> None:
    repo = name()
    row = create(api, {"name": repo, "description": "d"}).body
    reply = approve(api, row["id"])
    assert reply.status == 200, reply.raw
    assert reply.body["outcome"] == "ok"
    done = reply.body["request"]
    assert done["status"] == "active" and done["url"] == f"https://github.com/{ORG}/{repo}"
    assert fake(api).created == [repo] and fake(api).actions_disabled == [repo]  # private
    again = approve(api, row["id"])
    assert (again.status, again.code) == (409, "already_resolved")


def test_approve_from_a_template(api: Api) -> None:
    fake(api).add_template("site-template")
    repo = name()
    row = create(api, {"name": repo, "template": "site-template", "visibility": "public"}).body
    assert approve(api, row["id"]).body["outcome"] == "ok"
    assert fake(api).created == [repo] and fake(api).actions_disabled == []


def test_a_template_the_app_cannot_read_fails_with_the_user_facing_message(api: Api) -> None:
    fake(api).add_template("locked-template", readable=False)
    repo = name()
    row = create(api, {"name": repo, "template": "locked-template"}).body
    reply = approve(api, row["id"])
    assert reply.status == 200 and reply.body["outcome"] == "approved_failed"
    assert reply.body["request"]["error"] == "the GitHub App cannot read the template repository"
    assert create(api, {"name": repo.upper()}).status == 201  # a failed request frees the name


def test_an_existing_repository_on_a_first_approval_fails_the_request(api: Api) -> None:
    repo = name()
    fake(api)._create(repo, private=False)
    row = create(api, {"name": repo}).body
    body = approve(api, row["id"]).body
    assert body["outcome"] == "approved_failed" and "already exists" in body["request"]["error"]


def test_transient_failures_answer_retryable_and_a_later_approve_resumes(api: Api) -> None:
    repo = name()
    row = create(api, {"name": repo}).body
    api.github.fail(f"/orgs/{ORG}/repos", 502, times=2, exact=True)
    for _ in range(2):
        reply = approve(api, row["id"])
        assert (reply.status, reply.code) == (503, "repo_create_retryable")
        assert api.call("GET", f"/api/repo/{row['id']}", token=STAFF).body["status"] == "approved"
    done = approve(api, row["id"])
    assert done.status == 200 and done.body["request"]["status"] == "active"
    assert fake(api).created == [repo]


def test_eight_concurrent_approvals_create_one_repository(api: Api) -> None:
    repo = name()
    row = create(api, {"name": repo}).body
    api.github.delay(f"/orgs/{ORG}/repos", 0.3, exact=True)
    replies: list[Reply] = []
    lock = threading.Lock()

    def one() -> None:
        reply = approve(api, row["id"])
        with lock:
            replies.append(reply)

    threads = [threading.Thread(target=one) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert fake(api).created == [repo]
    outcomes = sorted((r.status, r.code or r.body.get("outcome")) for r in replies)
    assert outcomes == [(200, "ok")] + [(409, "already_resolved")] * 7
    final = api.call("GET", f"/api/repo/{row['id']}", token=STAFF).body
    assert final["status"] == "active"


def test_reject_and_delete_gates_and_codes(api: Api) -> None:
    row = create(api, {"name": name()}).body
    nope = api.call("POST", f"/api/repo/{row['id']}/reject", token=STAFF)
    assert (nope.status, nope.code) == (403, "user_unauthorized")
    long = api.call("POST", f"/api/repo/{row['id']}/reject", token=APPROVER,
                    json_body={"reason": "x" * 351})  # fmt: skip
    assert (long.status, long.code) == (400, "invalid_reason")
    bad = api.call("POST", f"/api/repo/{row['id']}/reject", token=APPROVER, body=b"{not json")
    assert (bad.status, bad.code) == (400, "bad_request")
    ok = api.call("POST", f"/api/repo/{row['id']}/reject", token=APPROVER)  # empty body
    assert ok.status == 200 and ok.body["status"] == "rejected"
    twice = api.call("POST", f"/api/repo/{row['id']}/reject", token=APPROVER)
    assert (twice.status, twice.code) == (409, "already_resolved")
    gone = api.call("DELETE", "/api/repo/req_11111111111111111111", token=APPROVER)
    assert (gone.status, gone.code) == (404, "not_found")
    actions = [a for (a,) in api.sql("SELECT action FROM audit_log WHERE detail->>'id' = %s"
                                     " ORDER BY id", [row["id"]])]  # fmt: skip
    assert actions == ["repo.create", "repo.reject"]


# --- the durable half: the repo.approved event and the worker -----------------------------------


def run_worker_until(
    api: Api, request_id: str, status: str, rounds: int = 10,
    worker: runtime.Runtime[SiteWorkerSettings] | None = None,
) -> None:  # fmt: skip
    """The relay publishes the outbox; the site worker's handler (on `worker`, else the
    process Runtime) consumes real SQS batches (backoff 0 so a retried message comes back at
    once) until the request reaches `status`."""
    rt = runtime.current()
    queue = rt.settings.site_events_queue_url
    assert queue is not None
    drain(rt, SqsPublisher(rt.sqs, queue), deadline=Deadline.after(30))
    handler = make_handler(rt=worker or rt, backoff=lambda count: 0)
    for _ in range(rounds):
        poll_once(rt.sqs, queue, handler, LocalContext("site_worker", timeout_ms=120_000))
        if api.call("GET", f"/api/repo/{request_id}", token=STAFF).body["status"] == status:
            return
    pytest.fail(f"request {request_id} never reached {status}")


def test_a_transiently_failing_approval_is_finished_by_the_worker(api: Api) -> None:
    repo = name()
    row = create(api, {"name": repo}).body
    api.github.fail(f"/orgs/{ORG}/repos", 503, times=3, exact=True)
    reply = approve(api, row["id"])
    assert (reply.status, reply.code) == (503, "repo_create_retryable")
    run_worker_until(api, row["id"], "active")  # two more 503s, then created
    assert fake(api).created == [repo]
    actors = api.sql("SELECT actor, outcome FROM audit_log WHERE action = 'repo.approve'"
                     " AND detail->>'id' = %s", [row["id"]])  # fmt: skip
    assert actors == [("system:repo-worker", "success")]


def worker_runtime() -> runtime.Runtime[SiteWorkerSettings]:
    """A Runtime on the site worker's own settings, from this system's environment less every
    JWT variable (the template gives the worker none)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JWT_")}
    return runtime.Runtime(load_settings(env, None, SiteWorkerSettings))


@pytest.mark.parametrize(
    ("worker_fault", "status", "outcome"),
    [(None, "active", "success"), (422, "failed", "approved_failed")],
)
def test_the_worker_finishes_an_approval_on_its_own_settings(
    api: Api, worker_fault: int | None, status: str, outcome: str
) -> None:
    """The worker's settings have the App and no API settings (no session key, no audit
    team): with them it creates the repository, or records the failure GitHub answers."""
    repo = name()
    row = create(api, {"name": repo}).body
    api.github.fail(f"/orgs/{ORG}/repos", 503, times=1, exact=True)  # left to the worker
    assert approve(api, row["id"]).code == "repo_create_retryable"
    if worker_fault is not None:
        api.github.fail(f"/orgs/{ORG}/repos", worker_fault, times=1, exact=True)
    worker = worker_runtime()
    try:
        run_worker_until(api, row["id"], status, worker=worker)
    finally:
        worker.close()
    actors = api.sql("SELECT actor, outcome FROM audit_log WHERE action = 'repo.approve'"
                     " AND detail->>'id' = %s", [row["id"]])  # fmt: skip
    assert actors == [("system:repo-worker", outcome)]


def test_the_event_of_a_completed_approval_changes_nothing(api: Api) -> None:
    repo = name()
    row = create(api, {"name": repo}).body
    assert approve(api, row["id"]).body["outcome"] == "ok"
    outbox = api.sql("SELECT topic, payload->>'request' FROM outbox")
    assert outbox == [("repo.approved", row["id"])]
    run_worker_until(api, row["id"], "active", rounds=2)
    assert fake(api).created == [repo]
    assert len(api.sql("SELECT 1 FROM audit_log WHERE action = 'repo.approve'"
                       " AND detail->>'id' = %s", [row["id"]])) == 1  # fmt: skip


def test_an_approval_out_of_time_is_left_to_the_worker(api: Api) -> None:
    """GitHub answers slower than the approval's budget: the caller gets 503 retryable at
    once, the row stays approved, and the worker creates the repository."""
    repo = name()
    row = create(api, {"name": repo}).body
    api.github.delay(f"/repos/{ORG}/{repo}", 1.5, exact=True)  # the existence check
    from artemis.services import repos as service

    saved = service.APPROVE_BUDGET_SECONDS
    service.APPROVE_BUDGET_SECONDS = 1.0
    try:
        reply = approve(api, row["id"])
    finally:
        service.APPROVE_BUDGET_SECONDS = saved
    assert (reply.status, reply.code) == (503, "repo_create_retryable")
    api.github.clear_faults()
    run_worker_until(api, row["id"], "active")
    assert fake(api).created == [repo]


def test_one_installation_token_serves_many_calls(api: Api) -> None:
    """The token is cached until 60 s before its expiry: two approvals, one mint."""
    mints = "/app/installations/77/access_tokens"
    before = api.github.count(mints, exact=True)  # the fake serves the whole module
    for _ in range(2):
        row = create(api, {"name": name()}).body
        assert approve(api, row["id"]).body["outcome"] == "ok"
    assert api.github.count(mints, exact=True) - before == 1
    assert len(fake(api).tokens) == 1


def test_an_app_jwt_signed_with_another_key_gets_no_token(api: Api) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = (
        other.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    api.github.app = FakeApp("4242", "77", public, ORG)  # GitHub knows another key
    row = create(api, {"name": name()}).body
    body = approve(api, row["id"]).body
    assert body["outcome"] == "approved_failed"
    assert body["request"]["error"] == "repository creation failed"  # internal text hidden
