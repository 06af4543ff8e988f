"""The HTTP API Lambda (HTTP API, payload v2): the one route table. Each route carries its promises
(artemis.route_docs, whence the OpenAPI document), parses the request, calls a service, answers."""

from __future__ import annotations

import time
from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.utilities.typing import LambdaContext

from artemis import health, http, openapi, runtime
from artemis import route_docs as docs
from artemis.api_resolver import ApiResolver
from artemis.db import outbox
from artemis.http import current_request_id, json_response, no_content
from artemis.observability import logger
from artemis.services import (
    aliases,
    audit,
    auth,
    bundles,
    content,
    deletion,
    deploys,
    hooks,
    previews,
    registry,
    trust,
    whoami,
)
from artemis.services.context import Caller, RequestContext, WorkflowToken
from artemis.session import SessionClaims

# Validate configuration at cold start, so a bad value fails the init with its one line.
runtime.current()
app = ApiResolver()
ok = json_response


def _caller() -> tuple[runtime.Runtime, RequestContext, Caller]:
    rt = runtime.current()
    caller = auth.authenticate(rt.github, app.header("authorization"))
    return rt, RequestContext(current_request_id.get(), caller), caller


def _publisher() -> tuple[runtime.Runtime, RequestContext, Caller | WorkflowToken]:
    """Init's caller: a person, or a GitHub Actions run whose token init itself verifies (it
    needs the site the body names), so the context names no caller yet."""
    rt = runtime.current()
    caller = auth.authenticate_publisher(rt.github, app.header("authorization"))
    return rt, RequestContext(current_request_id.get()), caller


def _session(deploy_id: str) -> tuple[runtime.Runtime, RequestContext, SessionClaims]:
    rt = runtime.current()
    claims = auth.authenticate_session(rt, app.header("authorization"), deploy_id, now=time.time())
    return rt, RequestContext(current_request_id.get(), Caller(claims.sub, "")), claims


# --- health and meta ----------------------------------------------------------------------
@app.add("GET", "/healthz", docs.HEALTHZ)
def healthz() -> Response[str]:
    return ok(200, {"ok": True})  # documented as responses.Health


@app.add("GET", "/readyz", docs.READYZ)
def readyz() -> Response[str]:
    verdict = health.readiness(runtime.current())
    if not verdict.ready:
        return http.error_response(503, verdict.failed_code or "unavailable", "service not ready")
    return ok(200, verdict.body())


@app.add("GET", "/metrics", docs.METRICS)
def prometheus_metrics() -> Response[str]:
    from artemis.metrics import CONTENT_TYPE, exposition  # scrapes only: off the cold path

    body = exposition(runtime.current()).decode()
    return Response(status_code=200, content_type=CONTENT_TYPE, body=body)


@app.add("GET", "/api/openapi.json", docs.OPENAPI_DOCUMENT)
def openapi_document() -> Response[str]:
    return ok(200, openapi.document())  # read on first request: never on the cold path


# --- identity and the deploy lifecycle ----------------------------------------------------
@app.add("GET", "/api/whoami", docs.WHOAMI)
def get_whoami() -> Response[str]:
    rt, _, caller = _caller()
    return ok(200, whoami.whoami(rt, caller))


@app.add("POST", "/api/deploy/init", docs.DEPLOY_INIT)
def deploy_init() -> Response[str]:
    rt, ctx, caller = _publisher()
    return ok(200, deploys.init(rt, ctx, caller, app.body()))


@app.add("PUT", "/api/deploy/<deploy_id>/upload", docs.DEPLOY_UPLOAD)
def deploy_upload(deploy_id: str) -> Response[str]:
    rt, _, claims = _session(deploy_id)
    path, content_type = app.query().get("path"), app.header("content-type")
    return ok(200, deploys.upload(rt, claims, deploy_id, path, content_type, app.body()))


@app.add("PUT", "/api/deploy/<deploy_id>/bundle", docs.DEPLOY_BUNDLE)
def deploy_bundle(deploy_id: str) -> Response[str]:
    rt, _, claims = _session(deploy_id)
    return ok(200, bundles.upload_bundle(rt, claims, deploy_id, app.body()))


@app.add("POST", "/api/deploy/<deploy_id>/uploads", docs.DEPLOY_PRESIGN_UPLOADS)
def deploy_presign(deploy_id: str) -> Response[str]:
    rt, _, claims = _session(deploy_id)
    return ok(200, deploys.presign_uploads(rt, claims, deploy_id, app.body(), now=time.time()))


@app.add("POST", "/api/deploy/<deploy_id>/digests", docs.DEPLOY_DIGESTS)
def deploy_digests(deploy_id: str) -> Response[str]:
    rt, _, claims = _session(deploy_id)
    return ok(200, content.digests(rt, claims, deploy_id, app.body()))


@app.add("POST", "/api/deploy/<deploy_id>/finalize", docs.DEPLOY_FINALIZE)
def deploy_finalize(deploy_id: str) -> Response[str]:
    rt, ctx, claims = _session(deploy_id)
    return ok(200, deploys.finalize(rt, ctx, claims, deploy_id, app.body()))


@app.add("GET", "/api/site/<site>/deploys", docs.DEPLOY_LIST)
def deploy_list(site: str) -> Response[str]:
    rt, _, caller = _caller()
    return ok(200, deploys.list_deploys(rt, caller, site))


# --- aliases, deletion and recovery, the registry, audit -----------------------------------
@app.add("GET", "/api/site/<site>/alias/<mode>", docs.ALIAS_READ)
def alias_read(site: str, mode: str) -> Response[str]:
    rt, _, caller = _caller()
    return ok(200, aliases.read(rt, caller, site, mode))


@app.add("POST", "/api/site/<site>/promote", docs.ALIAS_PROMOTE)
def alias_promote(site: str) -> Response[str]:
    rt, ctx, caller = _caller()
    return ok(200, aliases.promote(rt, ctx, caller, site, app.body()))


@app.add("POST", "/api/site/<site>/rollback", docs.ALIAS_ROLLBACK)
def alias_rollback(site: str) -> Response[str]:
    rt, ctx, caller = _caller()
    return ok(200, aliases.rollback(rt, ctx, caller, site, app.body()))


@app.add("GET", "/api/site/<site>/previews", docs.PREVIEW_LIST)
def preview_list(site: str) -> Response[str]:
    rt, _, caller = _caller()
    return ok(200, previews.list_previews(rt, caller, site))


@app.add("GET", "/api/site/<site>/previews/<name>", docs.PREVIEW_READ)
def preview_read(site: str, name: str) -> Response[str]:
    rt, _, caller = _caller()
    return ok(200, previews.read_preview(rt, caller, site, name))


@app.add("DELETE", "/api/site/<site>/previews/<name>", docs.PREVIEW_REMOVE)
def preview_remove(site: str, name: str) -> Response[str]:
    rt, ctx, caller = _caller()
    return ok(200, previews.remove_preview(rt, ctx, caller, site, name))


@app.add("DELETE", "/api/site/<site>/deploys/<deploy_id>", docs.DEPLOY_DELETE)
def deploy_delete(site: str, deploy_id: str) -> Response[str]:
    rt, ctx, caller = _caller()
    return ok(200, deletion.delete_deploy(rt, ctx, caller, site, deploy_id))


@app.add("POST", "/api/site/<site>/deploys/<deploy_id>/restore", docs.DEPLOY_RESTORE)
def deploy_restore(site: str, deploy_id: str) -> Response[str]:
    rt, ctx, caller = _caller()
    return ok(200, deletion.restore(rt, ctx, caller, site, deploy_id))


@app.add("GET", "/api/site/<site>/trash", docs.TRASH_LIST)
def trash_list(site: str) -> Response[str]:
    rt, _, caller = _caller()
    return ok(200, deletion.trash(rt, caller, site))


@app.add("GET", "/api/sites", docs.SITES_LIST)
def sites_list() -> Response[str]:
    rt, _, caller = _caller()
    return ok(200, registry.list_sites(rt, caller))


@app.add("POST", "/api/site/register", docs.SITE_REGISTER)
def site_register() -> Response[str]:
    rt, ctx, caller = _caller()
    return ok(201, registry.register(rt, ctx, caller, app.body()))


@app.add("PATCH", "/api/site/<slug>", docs.SITE_UPDATE)
def site_update(slug: str) -> Response[str]:
    rt, ctx, caller = _caller()
    return ok(200, registry.update(rt, ctx, caller, slug, app.body()))


@app.add("DELETE", "/api/site/<slug>", docs.SITE_DELETE)
def site_delete(slug: str) -> Response[str]:
    rt, ctx, caller = _caller()
    purged = deletion.remove_site(rt, ctx, caller, slug, app.query().get("purge"))
    return no_content() if purged is None else ok(200, purged)


@app.add("GET", "/api/site/<slug>/trust", docs.TRUST_LIST)
def trust_list(slug: str) -> Response[str]:
    rt, _, caller = _caller()
    return ok(200, trust.list_rules(rt, caller, slug))


@app.add("POST", "/api/site/<slug>/trust", docs.TRUST_ADD)
def trust_add(slug: str) -> Response[str]:
    rt, ctx, caller = _caller()
    return ok(201, trust.add_rule(rt, ctx, caller, slug, app.body()))


@app.add("DELETE", "/api/site/<slug>/trust/<rule_id>", docs.TRUST_REMOVE)
def trust_remove(slug: str, rule_id: str) -> Response[str]:
    rt, ctx, caller = _caller()
    return ok(200, trust.remove_rule(rt, ctx, caller, slug, rule_id))


@app.add("GET", "/api/site/<slug>/hooks", docs.HOOK_LIST)
def hook_list(slug: str) -> Response[str]:
    rt, _, caller = _caller()
    return ok(200, hooks.list_hooks(rt, caller, slug))


@app.add("POST", "/api/site/<slug>/hooks", docs.HOOK_ADD)
def hook_add(slug: str) -> Response[str]:
    rt, ctx, caller = _caller()
    return ok(201, hooks.add_hook(rt, ctx, caller, slug, app.body()))


@app.add("DELETE", "/api/site/<slug>/hooks/<hook_id>", docs.HOOK_REMOVE)
def hook_remove(slug: str, hook_id: str) -> Response[str]:
    rt, ctx, caller = _caller()
    return ok(200, hooks.remove_hook(rt, ctx, caller, slug, hook_id))


@app.add("POST", "/api/site/<slug>/hooks/<hook_id>/ping", docs.HOOK_PING)
def hook_ping(slug: str, hook_id: str) -> Response[str]:
    rt, ctx, caller = _caller()
    return ok(202, hooks.ping(rt, ctx, caller, slug, hook_id))


@app.add("GET", "/api/site/<slug>/hooks/<hook_id>/deliveries", docs.HOOK_DELIVERIES)
def hook_deliveries(slug: str, hook_id: str) -> Response[str]:
    rt, _, caller = _caller()
    return ok(200, hooks.deliveries(rt, caller, slug, hook_id))


@app.add(
    "POST", "/api/site/<slug>/hooks/<hook_id>/deliveries/<delivery_id>/redeliver",
    docs.HOOK_REDELIVER,
)  # fmt: skip
def hook_redeliver(slug: str, hook_id: str, delivery_id: str) -> Response[str]:
    rt, ctx, caller = _caller()
    return ok(202, hooks.redeliver(rt, ctx, caller, slug, hook_id, delivery_id))


@app.add("GET", "/api/audit", docs.AUDIT_LIST)
def audit_list() -> Response[str]:
    rt, _, caller = _caller()
    auth.require_team(rt.repo_github, caller, rt.settings.audit_read_authz_team)  # before the query
    return ok(200, audit.read(rt, audit.parse_query(app.query())))


# --- the repo-request queue: routes exist only when the App is configured ------------------
if runtime.current().settings.repo_feature_enabled:
    from artemis.deadlines import Deadline
    from artemis.services import repos  # imported only when the feature is on

    @app.add("POST", "/api/repo", docs.REPO_CREATE)
    def repo_create() -> Response[str]:
        rt, ctx, caller = _caller()
        return ok(201, repos.create(rt, ctx, caller, app.body()))

    @app.add("GET", "/api/repos", docs.REPO_LIST)
    def repo_list() -> Response[str]:
        rt, _, caller = _caller()
        status, mine = (app.query().get(name) for name in ("status", "mine"))
        return ok(200, repos.list_requests(rt, caller, status, mine))

    @app.add("GET", "/api/repo/templates", docs.REPO_TEMPLATES)
    def repo_templates() -> Response[str]:
        rt, _, _ = _caller()  # any authenticated user
        return ok(200, repos.templates(rt))

    @app.add("GET", "/api/repo/<request_id>", docs.REPO_GET)
    def repo_get(request_id: str) -> Response[str]:
        rt, _, caller = _caller()
        return ok(200, repos.get(rt, caller, request_id))

    @app.add("POST", "/api/repo/<request_id>/approve", docs.REPO_APPROVE)
    def repo_approve(request_id: str) -> Response[str]:
        rt, ctx, caller = _caller()
        deadline = Deadline.after(repos.approve_budget(app.remaining_seconds()))
        return ok(200, repos.approve(rt, ctx, caller, request_id, deadline=deadline))

    @app.add("POST", "/api/repo/<request_id>/reject", docs.REPO_REJECT)
    def repo_reject(request_id: str) -> Response[str]:
        rt, ctx, caller = _caller()
        return ok(200, repos.reject(rt, ctx, caller, request_id, app.body()))

    @app.add("DELETE", "/api/repo/<request_id>", docs.REPO_DELETE)
    def repo_delete(request_id: str) -> Response[str]:
        rt, ctx, caller = _caller()
        repos.delete(rt, ctx, caller, request_id)
        return no_content()


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    # The fast path: events this request committed go to their queue now, not at the relay's
    # next tick (the relay stays the backstop for any it could not send).
    with outbox.collecting() as written:
        answer = app.handle(event, context)
    rt = runtime.current()
    if written and rt.settings.outbox_fast_path:
        from artemis.jobs.relay import send_now  # with SQS's client: not at every cold start

        send_now(rt, written)
    return answer
