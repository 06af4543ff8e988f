"""Trusted publishing over HTTP (issue 15 item 2): a GitHub Actions run presents the OIDC token
its runner mints, instead of a person's GitHub token, and deploys where the site's trust rules
let it.

Black box: every request goes through the local gateway to the real handler, real Postgres,
moto S3 and the fake GitHub, which is the OIDC issuer too (its own key, its own JWKS). The
fake's default run: `freeCodeCamp/example-site` (id 100001), `.github/workflows/deploy.yml`,
a push to `refs/heads/main`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import jwt
import pytest

from artemis.keys import MARKER_NAME
from artemis_local.fake_github import FakeGitHub
from tests.integration.api.conftest import DEV, STAFF, Api, Reply
from tests.integration.oidc_forgery import alg_none, hs256_with_public_key

SITE, OTHER = "shipit", "elsewhere"
DIRNAME = f"{SITE}.example.org"  # the API tests' key template (SLUG_NOT_DIRNAME)
REPOSITORY, REPOSITORY_ID = "freeCodeCamp/example-site", 100001
WORKFLOW = ".github/workflows/deploy.yml"
ACTOR_RUN = f"repo:{REPOSITORY}:{WORKFLOW}@run/"
PULL_REQUEST = {"event_name": "pull_request", "ref": "refs/pull/7/merge"}
RULES: list[dict[str, Any]] = [
    # pushes to main publish to production or preview
    {"repository": REPOSITORY, "repositoryId": REPOSITORY_ID, "workflow": WORKFLOW,
     "ref": "refs/heads/main", "aliases": ["production", "preview"]},
    # pull requests publish to their named previews, whatever the rule might say of production
    {"repository": REPOSITORY, "repositoryId": REPOSITORY_ID, "workflow": WORKFLOW,
     "ref": "refs/pull/*/merge", "aliases": ["production", "pr-*"]},
]  # fmt: skip
FILES = {"index.html": b"<h1>shipped by a workflow</h1>"}


def mint(api: Api, *, audience: str = "artemis", **claims: Any) -> str:
    return api.github.oidc.mint(claims, audience=audience)


def init(api: Api, token: str, site: str = SITE, **body: Any) -> Reply:
    sha = uuid.uuid4().hex[:7]
    return api.call(
        "POST", "/api/deploy/init", token=token, json_body={"site": site, "sha": sha, **body}
    )


def publish(api: Api, session: dict[str, Any], mode: str, alias: str | None = None) -> Reply:
    for path, data in FILES.items():
        assert api.upload(session, path, data).status == 200
    return api.call(
        "POST", f"/api/deploy/{session['deployId']}/finalize", token=session["jwt"],
        json_body={"mode": mode, "files": list(FILES), **({"alias": alias} if alias else {})},
    )  # fmt: skip


def audit_of(api: Api, reply: Reply) -> list[tuple[Any, ...]]:
    return api.sql(
        "SELECT actor, action, site, detail FROM audit_log WHERE request_id = %s",
        [reply.headers["x-request-id"]],
    )


def spent(api: Api, token: str) -> bool:
    jti = jwt.decode(token, options={"verify_signature": False})["jti"]
    return bool(api.sql("SELECT 1 FROM oidc_replay WHERE jti = %s", [jti]))


def nothing_written(api: Api, reply: Reply, token: str | None = None) -> None:
    """A refusal leaves no deploy row, no audit row, no object, and (for a token that could
    be fixed by a rule) does not spend the token."""
    assert api.sql("SELECT count(*) FROM deploys") == [(0,)]
    assert audit_of(api, reply) == []
    assert api.rt.bucket.list_keys(f"{DIRNAME}/") == []
    if token is not None:
        assert not spent(api, token)


@pytest.fixture
def site(api: Api) -> str:
    api.register(SITE, ["web"])
    api.register(OTHER, ["web"])
    for rule in RULES:
        added = api.call("POST", f"/api/site/{SITE}/trust", token=STAFF, json_body=rule)
        assert added.status == 201, added.raw
    return SITE


# --- the happy paths --------------------------------------------------------------------------


def test_a_push_to_main_deploys_and_goes_to_production(api: Api, site: str) -> None:
    token = mint(api)
    started = init(api, token)
    assert started.status == 200, started.raw
    done = publish(api, started.body, "production")
    assert done.status == 200, done.raw
    deploy_id = started.body["deployId"]
    assert done.body["mode"] == "production" and done.body["deployId"] == deploy_id
    assert api.alias_object(DIRNAME, "production") == deploy_id
    # the actor is the run, in the audit log and on the alias row
    [(actor, action, audited_site, detail)] = audit_of(api, started)
    assert (action, audited_site) == ("deploy.init", SITE)
    assert actor.startswith(ACTOR_RUN) and actor[len(ACTOR_RUN) :].isdigit()
    assert detail["trust"]["repository"] == REPOSITORY
    assert detail["trust"]["event"] == "push" and detail["trust"]["ref"] == "refs/heads/main"
    assert [row[0] for row in audit_of(api, done)] == [actor]
    assert api.sql("SELECT updated_by FROM aliases WHERE name = 'production'") == [(actor,)]
    assert spent(api, token)


def test_a_pull_request_deploys_to_its_named_preview(api: Api, site: str) -> None:
    started = init(api, mint(api, **PULL_REQUEST), pr=7)
    assert started.status == 200, started.raw
    done = publish(api, started.body, "preview", alias="pr-7")
    assert done.status == 200, done.raw
    assert done.body["alias"] == "pr-7"
    assert api.alias_object(DIRNAME, "previews/pr-7") == started.body["deployId"]
    assert api.alias_object(DIRNAME, "production") is None


def test_a_persons_token_still_deploys_as_before(api: Api, site: str) -> None:
    assert api.alias_object(DIRNAME, "preview") is None
    deploy_id = api.deploy(SITE)
    assert api.alias_object(DIRNAME, "preview") == deploy_id


# --- the hostile corpus: refused before a session exists ---------------------------------------


def _expired(api: Api) -> str:
    return mint(api, iat=_now() - 900, nbf=_now() - 900, exp=_now() - 600)


def _not_yet_valid(api: Api) -> str:
    return mint(api, iat=_now() - 10, nbf=_now() + 600)


def _now() -> int:
    import time

    return int(time.time())


REFUSED_AT_INIT: list[Any] = [
    pytest.param(lambda api: mint(api, iss="https://token.example.com"), "oidc_issuer", 401,
                 id="wrong-issuer"),
    pytest.param(lambda api: mint(api, audience="https://github.com/freeCodeCamp"),
                 "oidc_audience", 401, id="wrong-audience"),
    pytest.param(_expired, "oidc_expired", 401, id="expired"),
    pytest.param(_not_yet_valid, "oidc_not_yet_valid", 401, id="not-yet-valid"),
    pytest.param(lambda api: alg_none(api.github.oidc, "artemis"), "oidc_alg", 401,
                 id="alg-none"),
    pytest.param(lambda api: hs256_with_public_key(api.github.oidc, "artemis"), "oidc_alg", 401,
                 id="hs256-with-the-public-key"),
    pytest.param(lambda api: api.github.oidc.mint(audience="artemis",
                                                  headers={"kid": "not-published"}),
                 "oidc_unknown_key", 401, id="key-not-in-the-jwks"),
    pytest.param(lambda api: mint(api, repository="someone-else/example-site",
                                  repository_owner="someone-else"),
                 "trust_repository", 403, id="another-repository"),
    pytest.param(lambda api: mint(api, repository_id=str(REPOSITORY_ID + 1)),
                 "trust_repository_id", 403, id="same-name-another-id"),
    pytest.param(lambda api: mint(api, job_workflow_ref=f"{REPOSITORY}/.github/workflows/"
                                  "other.yml@refs/heads/main"),
                 "trust_workflow", 403, id="workflow-not-in-the-rule"),
    pytest.param(lambda api: mint(api, ref="refs/heads/feature"), "trust_ref", 403,
                 id="ref-not-in-the-rule"),
]  # fmt: skip


@pytest.mark.parametrize(("forge", "code", "status"), REFUSED_AT_INIT)
def test_a_refused_token_starts_nothing(
    api: Api, site: str, forge: Callable[[Api], str], code: str, status: int
) -> None:
    token = forge(api)
    refused = init(api, token)
    assert (refused.status, refused.code) == (status, code), refused.raw
    nothing_written(api, refused, token)


def test_a_token_for_one_site_is_refused_on_another(api: Api, site: str) -> None:
    token = mint(api)
    refused = init(api, token, site=OTHER)  # the same team owns it; no rule trusts the run
    assert (refused.status, refused.code) == (403, "trust_no_rules")
    nothing_written(api, refused, token)
    assert init(api, token).status == 200  # not spent: it still starts a deploy of its site


def test_a_replayed_token_is_refused(api: Api, site: str) -> None:
    token = mint(api)
    assert init(api, token).status == 200
    replayed = init(api, token)
    assert (replayed.status, replayed.code) == (401, "oidc_replayed")
    assert audit_of(api, replayed) == []
    assert api.sql("SELECT count(*) FROM deploys") == [(1,)]


def test_the_issuer_down_with_no_cached_key_is_503(api: Api, site: str) -> None:
    token = mint(api)
    api.github.fail("/.well-known/", 0)  # every connection to the discovery or keys dropped
    refused = init(api, token)
    assert (refused.status, refused.code) == (503, "oidc_issuer_unavailable")
    nothing_written(api, refused, token)


def test_a_rule_on_production_alone_admits_no_pull_request(api: Api) -> None:
    api.register(SITE, ["web"])
    only = {**RULES[1], "aliases": ["production"]}
    assert api.call("POST", f"/api/site/{SITE}/trust", token=STAFF, json_body=only).status == 201
    token = mint(api, **PULL_REQUEST)
    refused = init(api, token)
    assert (refused.status, refused.code) == (403, "trust_pull_request")
    nothing_written(api, refused, token)


def test_an_environment_rule_wants_the_environment(api: Api) -> None:
    api.register(SITE, ["web"])
    rule = {**RULES[0], "environment": "production"}
    assert api.call("POST", f"/api/site/{SITE}/trust", token=STAFF, json_body=rule).status == 201
    refused = init(api, mint(api))
    assert (refused.status, refused.code) == (403, "trust_environment")
    nothing_written(api, refused)
    assert init(api, mint(api, environment="Production")).status == 200  # case-insensitive


# --- the hostile corpus: refused at finalize -----------------------------------------------------


def _refused_finalize(api: Api, reply: Reply, code: str) -> None:
    assert (reply.status, reply.code) == (403, code), reply.raw
    assert audit_of(api, reply) == []
    assert api.sql("SELECT count(*) FROM aliases") == [(0,)]
    keys = api.rt.bucket.list_keys(f"{DIRNAME}/")
    assert keys and all(not k.key.endswith("/" + MARKER_NAME) for k in keys)  # no marker
    assert api.alias_object(DIRNAME, "production") is None


def test_a_pull_request_never_publishes_to_production(api: Api, site: str) -> None:
    started = init(api, mint(api, **PULL_REQUEST))
    assert started.status == 200  # its rule lists production: still not for a pull request
    _refused_finalize(api, publish(api, started.body, "production"), "trust_pull_request")


@pytest.mark.parametrize(
    ("claims", "mode", "alias"),
    [
        pytest.param(PULL_REQUEST, "preview", None, id="pr-to-the-preview-alias"),
        pytest.param(PULL_REQUEST, "preview", "feature-x", id="pr-to-an-unlisted-name"),
        pytest.param({}, "preview", "pr-7", id="main-to-a-named-preview"),
    ],
)
def test_an_alias_the_rule_does_not_list_is_refused(
    api: Api, site: str, claims: dict[str, Any], mode: str, alias: str | None
) -> None:
    started = init(api, mint(api, **claims))
    assert started.status == 200
    refused = publish(api, started.body, mode, alias)
    _refused_finalize(api, refused, "trust_alias")
    assert refused.body["error"]["alias"] == (alias or mode)


def test_removing_the_rule_ends_its_sessions(api: Api, site: str) -> None:
    started = init(api, mint(api))
    assert started.status == 200
    rules = api.call("GET", f"/api/site/{SITE}/trust", token=STAFF).body
    for rule in rules:
        assert api.call("DELETE", f"/api/site/{SITE}/trust/{rule['id']}", token=STAFF).status == 200
    refused = api.upload(started.body, "index.html", b"x")
    assert (refused.status, refused.code) == (403, "trust_rule_removed")
    assert api.rt.bucket.list_keys(f"{DIRNAME}/") == []


# --- a workflow token is not a person -----------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/whoami"),
        ("GET", f"/api/site/{SITE}/deploys"),
        ("POST", f"/api/site/{SITE}/promote"),
        ("GET", f"/api/site/{SITE}/trust"),
    ],
)
def test_every_other_bearer_route_refuses_a_workflow_token(
    api: Api, site: str, fake_requests: Callable[[], int], method: str, path: str
) -> None:
    token = mint(api)
    before = fake_requests()
    refused = api.call(method, path, token=token, json_body={} if method == "POST" else None)
    assert (refused.status, refused.code) == (403, "oidc_route")
    assert fake_requests() == before  # never sent on to GitHub
    assert not spent(api, token)


@pytest.fixture
def fake_requests(api: Api) -> Callable[[], int]:
    github: FakeGitHub = api.github
    return lambda: len(github.requests)


def test_a_session_token_is_not_an_init_credential(api: Api, site: str) -> None:
    session = api.init(SITE, token=DEV)
    refused = init(api, session["jwt"])  # Artemis's own JWS keeps the GitHub path, as before
    assert (refused.status, refused.code) == (401, "unauthenticated")


def test_a_jws_of_another_issuer_on_another_route_is_refused_unsent(
    api: Api, site: str, fake_requests: Callable[[], int]
) -> None:
    before = fake_requests()
    refused = api.call("GET", "/api/whoami", token=mint(api, iss="https://token.example.com"))
    assert (refused.status, refused.code) == (403, "oidc_route")
    assert fake_requests() == before
