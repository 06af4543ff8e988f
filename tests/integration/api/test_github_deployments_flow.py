"""GitHub deployments for deploys (issue 16 item 4): with the GitHub App configured, a deploy
that carries `repo` and its commit shows up on the fake GitHub as a deployment of its
environment, with a `success` status and the alias's URL; when the alias moves on, the one it
left goes `inactive`. A GitHub refusal never fails a deploy. Through the API, the fast path,
the notifications queue (moto) and the notifier's handler."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from artemis import runtime
from artemis_local.fake_github import FakeApp
from artemis_local.functions import LocalContext, load_handler
from artemis_local.sqs_source import poll_once
from tests.integration.api.conftest import DEV, Api

SITE = "ghsite"
REPO = "freeCodeCamp/ghsite"


@pytest.fixture
def app(api: Api, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeApp]:
    """The GitHub App configured for this test (as `make run` does), on the fake GitHub."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM,
                            serialization.PrivateFormat.TraditionalOpenSSL,
                            serialization.NoEncryption()).decode()  # fmt: skip
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    for name, value in {
        "GH_APP_ID": "4243",
        "GH_APP_INSTALLATION_ID": "78",
        "GH_APP_PRIVATE_KEY": pem,
        "REPO_APPROVE_AUTHZ_TEAM": "staff",
    }.items():
        monkeypatch.setenv(name, value)  # fmt: skip
    runtime.reset()
    fake = FakeApp("4243", "78", public, "freeCodeCamp-Universe")
    fake.grant(REPO)
    api.github.app = fake
    try:
        yield fake
    finally:
        api.github.app = None
        monkeypatch.undo()
        runtime.reset()


def deploy(api: Api, mode: str = "preview", alias: str | None = None, repo: str = REPO) -> str:
    sha = uuid.uuid4().hex  # 32 hex characters: a commit the fake GitHub accepts
    init = api.call("POST", "/api/deploy/init", token=DEV,
                    json_body={"site": SITE, "sha": sha, "repo": repo, "branch": "main",
                               "ciUrl": "https://github.com/x/y/actions/runs/1"})  # fmt: skip
    assert init.status == 200, init.raw
    session = init.body
    assert api.upload(session, "index.html", b"<h1>gh</h1>").status == 200
    body: dict[str, Any] = {"mode": mode, "files": ["index.html"]}
    if alias:
        body["alias"] = alias
    done = api.call("POST", f"/api/deploy/{session['deployId']}/finalize", token=session["jwt"],
                    json_body=body)  # fmt: skip
    assert done.status == 200, done.raw
    deploy_id: str = session["deployId"]
    return deploy_id


def notify(api: Api, done: Callable[[], bool], timeout: float = 30.0) -> None:
    handler = load_handler("notifier")
    url = api.rt.settings.notifications_queue_url
    assert url
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "GitHub was not told in time"
        poll_once(api.rt.sqs, url, handler, LocalContext("notifier", timeout_ms=120_000),
                  wait_seconds=1)  # fmt: skip


def states(deployment: dict[str, Any]) -> list[str]:
    return [s["state"] for s in deployment["statuses"]]  # newest first


def test_a_finalized_deploy_shows_up_with_its_url_and_moves_on(api: Api, app: FakeApp) -> None:
    api.register(SITE, ["web"])
    first = deploy(api, "production")
    notify(api, lambda: bool(app.deployments_of(REPO, "production")))
    [made] = app.deployments_of(REPO, "production")
    assert made["production_environment"] is True and made["transient_environment"] is False
    assert states(made) == ["success"]
    success = made["statuses"][0]
    assert success["environment_url"] == f"https://{SITE}.example.org"
    assert success["log_url"] == "https://github.com/x/y/actions/runs/1"
    assert first in made["description"]
    # the next production deploy: a new deployment, and the first one goes inactive
    deploy(api, "production")
    notify(api, lambda: len(app.deployments_of(REPO, "production")) == 2
           and states(app.deployments_of(REPO, "production")[1])[0] == "inactive")  # fmt: skip
    newest, older = app.deployments_of(REPO, "production")
    assert states(newest) == ["success"] and states(older) == ["inactive", "success"]


def test_a_named_preview_is_a_transient_environment(api: Api, app: FakeApp) -> None:
    api.register(SITE, ["web"])
    deploy(api, "preview", alias="pr-12")
    notify(api, lambda: bool(app.deployments_of(REPO, "pr-12")))
    [made] = app.deployments_of(REPO, "pr-12")
    assert made["transient_environment"] is True and made["production_environment"] is False
    assert made["statuses"][0]["environment_url"] == f"https://pr-12--{SITE}.preview.example.org"
    removed = api.call("DELETE", f"/api/site/{SITE}/previews/pr-12", token=DEV)
    assert removed.status == 200, removed.raw
    notify(api, lambda: states(app.deployments_of(REPO, "pr-12")[0])[0] == "inactive")


def test_a_repository_the_app_cannot_see_never_fails_the_deploy(api: Api, app: FakeApp) -> None:
    api.register(SITE, ["web"])
    deploy_id = deploy(api, "production", repo="someone-else/site")
    assert api.alias_object(f"{SITE}.example.org", "production") == deploy_id  # live anyway
    url = api.rt.settings.notifications_queue_url
    assert url
    for _ in range(3):  # the refusal is recorded and dropped, never retried
        poll_once(api.rt.sqs, url, load_handler("notifier"),
                  LocalContext("notifier", timeout_ms=120_000), wait_seconds=1)  # fmt: skip
    assert app.deployments_of("someone-else/site") == []
    assert api.sql("SELECT count(*) FROM github_deployments") == [(0,)]


def test_without_the_app_nothing_is_queued_for_github(api: Api) -> None:
    api.register(SITE, ["web"])
    deploy(api, "production")
    assert api.sql("SELECT count(*) FROM outbox WHERE topic = 'github.deployment'") == [(0,)]
