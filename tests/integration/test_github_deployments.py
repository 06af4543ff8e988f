"""GitHub deployments and their statuses through GitHubApp, against the fake GitHub over HTTP:
what GitHub records (read back through its GET endpoints), and how each failure is classified
(DeploymentError's `transient`). The fake's access rule: the App sees its org's repositories
and those granted with `FakeApp.grant`."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from artemis.github_app import DeploymentError, GitHubApp
from artemis.github_transport import GitHubTransport, Response
from artemis_local.fake_github import FakeApp, FakeGitHub

ORG = "freeCodeCamp-Universe"
REPO = "freeCodeCamp/news"
SHA = "0123456789abcdef0123456789abcdef01234567"
OTHER_SHA = "fedcba9876543210fedcba9876543210fedcba98"
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
PUBLIC = (
    KEY.public_key()
    .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    .decode()
)


@pytest.fixture
def transport() -> Iterator[GitHubTransport]:
    own = GitHubTransport()
    try:
        yield own
    finally:
        own.close()


@pytest.fixture
def app_fake(fake: FakeGitHub) -> FakeApp:
    fake.app = FakeApp("4242", "77", PUBLIC, ORG)
    fake.app.grant(REPO)
    return fake.app


@pytest.fixture
def app(fake: FakeGitHub, app_fake: FakeApp, transport: GitHubTransport) -> GitHubApp:
    return GitHubApp(fake.url, "4242", "77", KEY, ORG, transport=transport, timeout=5)


def deploy(app: GitHubApp, environment: str = "production", sha: str = SHA,
           repo: str = REPO) -> int:  # fmt: skip
    production = environment == "production"
    return app.create_deployment(repo, sha, environment, description=f"deploy to {environment}",
                                 transient=not production, production=production)  # fmt: skip


def get(transport: GitHubTransport, app: GitHubApp, path: str) -> Response:
    return transport.request("GET", app.base_url + path, f"token {app.installation_token()}", 5)


def test_a_deployment_and_its_statuses_round_trip(
    app: GitHubApp, app_fake: FakeApp, transport: GitHubTransport
) -> None:
    first = deploy(app)
    preview = deploy(app, "pr-12", OTHER_SHA)
    assert (first, preview) == (1, 2)
    app.post_deployment_status(
        REPO,
        first,
        "success",
        environment_url="https://news.example",
        log_url="https://artemis.example/d/1",
        description="live",
    )
    app.post_deployment_status(REPO, preview, "in_progress")
    app.post_deployment_status(REPO, preview, "success",
                               environment_url="https://pr-12.news.example")  # fmt: skip

    listing = get(transport, app, f"/repos/{REPO}/deployments")
    assert listing.status == 200
    assert [d["id"] for d in listing.json()] == [2, 1]  # newest first
    only = get(transport, app, f"/repos/{REPO}/deployments?environment=pr-12").json()
    assert [(d["id"], d["sha"], d["environment"]) for d in only] == [(2, OTHER_SHA, "pr-12")]
    assert only[0]["transient_environment"] is True
    assert only[0]["production_environment"] is False
    assert only[0]["description"] == "deploy to pr-12"
    production = get(transport, app, f"/repos/{REPO}/deployments?environment=production").json()
    assert production[0]["production_environment"] is True
    assert production[0]["transient_environment"] is False

    statuses = get(transport, app, f"/repos/{REPO}/deployments/{preview}/statuses").json()
    assert [s["state"] for s in statuses] == ["success", "in_progress"]  # newest first
    assert statuses[0]["environment_url"] == "https://pr-12.news.example"
    live = get(transport, app, f"/repos/{REPO}/deployments/{first}/statuses").json()
    assert [(s["state"], s["log_url"], s["description"]) for s in live] == [
        ("success", "https://artemis.example/d/1", "live")
    ]

    # the in-process view agrees, and records what the client sent
    with app_fake.lock:
        recorded = [(d["id"], d["repo"], d["auto_merge"], d["required_contexts"],
                     [s["state"] for s in d["statuses"]]) for d in app_fake.deployments]  # fmt: skip
    assert recorded == [(1, REPO, False, [], ["success"]),
                        (2, REPO, False, [], ["in_progress", "success"])]  # fmt: skip
    assert [d["id"] for d in app_fake.deployments_of(REPO, "pr-12")] == [2]


def test_moving_an_alias_on_leaves_the_inactive_status_to_the_caller(
    app: GitHubApp, app_fake: FakeApp
) -> None:
    """auto_inactive is off: a new success does not touch the old deployment; the caller's own
    `inactive` does."""
    old = deploy(app, "pr-3")
    app.post_deployment_status(REPO, old, "success", environment_url="https://pr-3.example")
    new = deploy(app, "pr-3", OTHER_SHA)
    app.post_deployment_status(REPO, new, "success", environment_url="https://pr-3.example")
    [newest, oldest] = app_fake.deployments_of(REPO, "pr-3")
    assert [s["state"] for s in oldest["statuses"]] == ["success"]
    app.post_deployment_status(REPO, old, "inactive")
    [newest, oldest] = app_fake.deployments_of(REPO, "pr-3")
    assert [s["state"] for s in oldest["statuses"]] == ["inactive", "success"]
    assert [s["state"] for s in newest["statuses"]] == ["success"]


def test_the_fakes_auto_inactive_default_is_githubs(
    app: GitHubApp, app_fake: FakeApp, transport: GitHubTransport
) -> None:
    """A client that leaves auto_inactive on would see GitHub mark the earlier success of a
    persistent (neither transient nor production) environment."""
    old, new = (
        app.create_deployment(REPO, sha, "staging", description="", transient=False,
                              production=False)
        for sha in (SHA, OTHER_SHA)
    )  # fmt: skip
    app.post_deployment_status(REPO, old, "success")
    token = f"token {app.installation_token()}"
    resp = transport.request("POST", f"{app.base_url}/repos/{REPO}/deployments/{new}/statuses",
                             token, 5, {"state": "success"})  # fmt: skip
    assert resp.status == 201
    assert [s["state"] for s in app_fake.deployments_of(REPO, "staging")[1]["statuses"]] == [
        "inactive", "success"
    ]  # fmt: skip


def test_the_org_repositories_are_visible_and_others_are_not(
    app: GitHubApp, app_fake: FakeApp
) -> None:
    app.create(  # the org's repositories: the ones the App created
        "site", description="", private=False, template=""
    )
    assert deploy(app, repo=f"{ORG}/site") == 1
    with pytest.raises(DeploymentError) as caught:
        deploy(app, repo="someone/else")
    assert not caught.value.transient
    assert "cannot see the repository" in caught.value.detail
    app_fake.revoke(REPO)
    with pytest.raises(DeploymentError) as caught:
        app.post_deployment_status(REPO, 1, "success")
    assert not caught.value.transient


def test_an_unknown_deployment_is_permanent(app: GitHubApp, app_fake: FakeApp) -> None:
    app_fake.grant("freeCodeCamp/other")
    mine = deploy(app)
    with pytest.raises(DeploymentError) as caught:
        app.post_deployment_status(REPO, mine + 1, "success")
    assert not caught.value.transient and "HTTP 404" in caught.value.detail
    with pytest.raises(DeploymentError):  # another repository's deployment id
        app.post_deployment_status("freeCodeCamp/other", mine, "success")


def test_a_sha_not_in_the_repository_is_permanent(app: GitHubApp, app_fake: FakeApp) -> None:
    app_fake.grant(REPO, shas=[SHA])
    assert deploy(app, sha=SHA[:7]) == 1  # an abbreviation of a known commit
    with pytest.raises(DeploymentError) as caught:
        deploy(app, sha=OTHER_SHA)
    assert not caught.value.transient
    assert "HTTP 422" in caught.value.detail and "No ref found" in caught.value.detail
    assert app_fake.deployments_of(REPO)[0]["sha"] == SHA


@pytest.mark.parametrize(
    ("status", "headers", "transient"),
    [
        (422, {}, False),
        (403, {}, False),
        (409, {}, False),
        (500, {}, True),
        (502, {}, True),
        (429, {}, True),
        (403, {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "1800000000"}, True),
        (403, {"Retry-After": "30"}, True),
    ],
)
def test_injected_failures_are_classified(
    fake: FakeGitHub, app: GitHubApp, status: int, headers: dict[str, str], transient: bool
) -> None:
    fake.fail(f"/repos/{REPO}/deployments", status, headers, times=1, exact=True)
    with pytest.raises(DeploymentError) as caught:
        deploy(app)
    assert caught.value.transient is transient
    assert f"HTTP {status}" in caught.value.detail
    assert deploy(app) == 1  # the fault answered once; GitHub records nothing for it
    fake.fail(f"/repos/{REPO}/deployments/1/statuses", status, headers, times=1)
    with pytest.raises(DeploymentError) as caught:
        app.post_deployment_status(REPO, 1, "success")
    assert caught.value.transient is transient


def test_a_dropped_connection_is_transient_and_not_retried(
    fake: FakeGitHub, app: GitHubApp
) -> None:
    app.installation_token()
    fake.disconnect(f"/repos/{REPO}/deployments", times=1)
    with pytest.raises(DeploymentError) as caught:
        deploy(app)
    assert caught.value.transient
    assert fake.count(f"/repos/{REPO}/deployments") == 1


@pytest.mark.parametrize(("status", "transient"), [(500, True), (503, True), (404, False)])
def test_a_failing_token_endpoint_is_a_deployment_error(
    fake: FakeGitHub, app: GitHubApp, status: int, transient: bool
) -> None:
    fake.fail("/app/installations/77/access_tokens", status, times=1)
    with pytest.raises(DeploymentError) as caught:
        deploy(app)
    assert caught.value.transient is transient
    assert "installation token" in caught.value.detail
    assert fake.count("/repos/") == 0
    assert deploy(app) == 1


def test_a_token_endpoint_out_of_reach_is_transient(fake: FakeGitHub, app: GitHubApp) -> None:
    fake.disconnect("/app/installations/", times=1)
    with pytest.raises(DeploymentError) as caught:
        deploy(app)
    assert caught.value.transient


def test_an_app_signed_with_another_key_gets_a_permanent_failure(
    fake: FakeGitHub, app_fake: FakeApp, transport: GitHubTransport
) -> None:
    stranger = GitHubApp(fake.url, "4242", "77", rsa.generate_private_key(65537, 2048), ORG,
                         transport=transport)  # fmt: skip
    with pytest.raises(DeploymentError) as caught:
        deploy(stranger)
    assert not caught.value.transient
    assert app_fake.deployments == []


def test_a_revoked_token_is_transient_and_the_retry_mints_another(
    fake: FakeGitHub, app: GitHubApp, app_fake: FakeApp
) -> None:
    app.installation_token()
    with app_fake.lock:
        app_fake.tokens.clear()  # GitHub no longer honours the cached token
    with pytest.raises(DeploymentError) as caught:
        deploy(app)
    assert caught.value.transient and "HTTP 401" in caught.value.detail
    assert deploy(app) == 1
    assert fake.count("/app/installations/77/access_tokens") == 2


def test_the_endpoints_need_an_installation_token(
    fake: FakeGitHub, app_fake: FakeApp, transport: GitHubTransport
) -> None:
    url = f"{fake.url}/repos/{REPO}/deployments"
    for authorization in (None, "token ghs_forged", "Bearer local-staff-token"):
        assert transport.request("POST", url, authorization, 5, {"ref": SHA}).status == 401
        assert transport.request("GET", url, authorization, 5).status == 401
    assert app_fake.deployments == []


def test_bad_input_is_refused_before_any_request(fake: FakeGitHub, app: GitHubApp) -> None:
    calls: list[Any] = [
        lambda: deploy(app, repo="news"),
        lambda: deploy(app, sha="main"),
        lambda: deploy(app, environment=""),
        lambda: app.post_deployment_status(REPO, 1, "done"),
        lambda: app.post_deployment_status(REPO, 0, "success"),
        lambda: app.post_deployment_status(REPO, 1, "success", environment_url="news.example"),
    ]
    for call in calls:
        with pytest.raises(ValueError):
            call()
    assert fake.requests == []


def test_concurrent_creations_get_distinct_increasing_ids(
    app: GitHubApp, app_fake: FakeApp
) -> None:
    ids: list[int] = []
    lock = threading.Lock()

    def one(n: int) -> None:
        made = deploy(app, f"pr-{n}")
        app.post_deployment_status(REPO, made, "success")
        with lock:
            ids.append(made)

    threads = [threading.Thread(target=one, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(ids) == list(range(1, 9))
    assert all(len(d["statuses"]) == 1 for d in app_fake.deployments_of(REPO))
