"""The HTTP API Lambda (API Gateway HTTP API, payload v2).

Each route parses what the request carries, calls one service function, and returns its
result; every error becomes the envelope in artemis.http. Bearer routes authenticate the
GitHub token before anything else; the two session routes verify the deploy-session JWT.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.utilities.typing import LambdaContext

from artemis import health, invocation, runtime
from artemis.errors import ArtemisError, MethodNotAllowed, NotFound
from artemis.http import (
    begin_request,
    current_request_id,
    error_response,
    finish_response,
    header,
    json_response,
    no_content,
    query,
    raw_body,
    response_for,
)
from artemis.observability import logger
from artemis.services import aliases, audit, auth, deletion, deploys, registry, whoami
from artemis.services.context import Caller, RequestContext
from artemis.session import SessionClaims

# Validate configuration at cold start, so a bad value fails the init with its one line.
runtime.current()
app = APIGatewayHttpResolver()
Route = Callable[..., Response[str]]


def route(method: str, path: str) -> Callable[[Route], Route]:
    """Register a route whose path parameters arrive percent-decoded (API Gateway passes the
    raw path; `/alias/%20Production` must reach the handler as " Production")."""

    def register(fn: Route) -> Route:
        @functools.wraps(fn)
        def decoded(**params: str) -> Response[str]:
            # A fixed path (`/api/repo/templates`) is its own resource, even where a
            # parameterised route's pattern matches its text too (`DELETE /api/repo/<id>`).
            fixed = _fixed_path_methods(app.current_event.path) if params else []
            if fixed:
                return _method_not_allowed(fixed)
            return fn(**{name: unquote(value) for name, value in params.items()})

        app.route(path, method)(decoded)
        return fn

    return register


def _event() -> dict[str, Any]:
    return app.current_event.raw_event


def _caller() -> tuple[runtime.Runtime, RequestContext, Caller]:
    rt = runtime.current()
    caller = auth.authenticate(rt.github, header(_event(), "authorization"))
    return rt, RequestContext(current_request_id.get(), caller), caller


def _session(deploy_id: str) -> tuple[runtime.Runtime, RequestContext, SessionClaims]:
    rt = runtime.current()
    claims = auth.authenticate_session(
        rt, header(_event(), "authorization"), deploy_id, now=time.time()
    )
    return rt, RequestContext(current_request_id.get(), Caller(claims.sub, "")), claims


def ok(body: Any, status: int = 200) -> Response[str]:
    return json_response(status, body)


# --- health -------------------------------------------------------------------------------
@route("GET", "/healthz")
def healthz() -> Response[str]:
    return ok({"ok": True})


@route("GET", "/readyz")
def readyz() -> Response[str]:
    verdict = health.readiness(runtime.current())
    if not verdict.ready:
        return error_response(503, verdict.failed_code or "unavailable", "service not ready")
    body: dict[str, Any] = {"ready": True, "checks": verdict.checks}
    if verdict.degraded:
        body["degraded"] = True
    return ok(body)


@route("GET", "/metrics")
def prometheus_metrics() -> Response[str]:
    from artemis.metrics import CONTENT_TYPE, exposition  # scrapes only: off the cold path

    body = exposition(runtime.current()).decode()
    return Response(status_code=200, content_type=CONTENT_TYPE, body=body)


@route("GET", "/api/openapi.json")
def openapi_document() -> Response[str]:
    from artemis.openapi import document  # built on first request: never on the cold path

    return ok(document())


# --- identity -----------------------------------------------------------------------------
@route("GET", "/api/whoami")
def get_whoami() -> Response[str]:
    rt, _, caller = _caller()
    return ok(whoami.whoami(rt, caller))


# --- deploy lifecycle ----------------------------------------------------------------------
@route("POST", "/api/deploy/init")
def deploy_init() -> Response[str]:
    rt, ctx, caller = _caller()
    return ok(deploys.init(rt, ctx, caller, raw_body(_event())))


@route("PUT", "/api/deploy/<deploy_id>/upload")
def deploy_upload(deploy_id: str) -> Response[str]:
    rt, _, claims = _session(deploy_id)
    event = _event()
    return ok(
        deploys.upload(
            rt, claims, deploy_id, query(event).get("path"), header(event, "content-type"),
            raw_body(event),
        )
    )  # fmt: skip


@route("POST", "/api/deploy/<deploy_id>/uploads")
def deploy_presign(deploy_id: str) -> Response[str]:
    rt, _, claims = _session(deploy_id)
    return ok(deploys.presign_uploads(rt, claims, deploy_id, raw_body(_event()), now=time.time()))


@route("POST", "/api/deploy/<deploy_id>/finalize")
def deploy_finalize(deploy_id: str) -> Response[str]:
    rt, ctx, claims = _session(deploy_id)
    return ok(deploys.finalize(rt, ctx, claims, deploy_id, raw_body(_event())))


@route("GET", "/api/site/<site>/deploys")
def deploy_list(site: str) -> Response[str]:
    rt, _, caller = _caller()
    return ok(deploys.list_deploys(rt, caller, site))


# --- aliases ------------------------------------------------------------------------------
@route("GET", "/api/site/<site>/alias/<mode>")
def alias_read(site: str, mode: str) -> Response[str]:
    rt, _, caller = _caller()
    return ok(aliases.read(rt, caller, site, mode))


@route("POST", "/api/site/<site>/promote")
def alias_promote(site: str) -> Response[str]:
    rt, ctx, caller = _caller()
    return ok(aliases.promote(rt, ctx, caller, site, raw_body(_event())))


@route("POST", "/api/site/<site>/rollback")
def alias_rollback(site: str) -> Response[str]:
    rt, ctx, caller = _caller()
    return ok(aliases.rollback(rt, ctx, caller, site, raw_body(_event())))


# --- deletion and recovery ------------------------------------------------------------------
@route("DELETE", "/api/site/<site>/deploys/<deploy_id>")
def deploy_delete(site: str, deploy_id: str) -> Response[str]:
    rt, ctx, caller = _caller()
    return ok(deletion.delete_deploy(rt, ctx, caller, site, deploy_id))


@route("POST", "/api/site/<site>/deploys/<deploy_id>/restore")
def deploy_restore(site: str, deploy_id: str) -> Response[str]:
    rt, ctx, caller = _caller()
    return ok(deletion.restore(rt, ctx, caller, site, deploy_id))


@route("GET", "/api/site/<site>/trash")
def trash_list(site: str) -> Response[str]:
    rt, _, caller = _caller()
    return ok(deletion.trash(rt, caller, site))


# --- registry -----------------------------------------------------------------------------
@route("GET", "/api/sites")
def sites_list() -> Response[str]:
    rt, _, caller = _caller()
    return ok(registry.list_sites(rt, caller))


@route("POST", "/api/site/register")
def site_register() -> Response[str]:
    rt, ctx, caller = _caller()
    return ok(registry.register(rt, ctx, caller, raw_body(_event())), 201)


@route("PATCH", "/api/site/<slug>")
def site_update(slug: str) -> Response[str]:
    rt, ctx, caller = _caller()
    return ok(registry.update(rt, ctx, caller, slug, raw_body(_event())))


@route("DELETE", "/api/site/<slug>")
def site_delete(slug: str) -> Response[str]:
    rt, ctx, caller = _caller()
    purged = deletion.remove_site(rt, ctx, caller, slug, query(_event()).get("purge"))
    return no_content() if purged is None else ok(purged)


# --- audit --------------------------------------------------------------------------------
@route("GET", "/api/audit")
def audit_list() -> Response[str]:
    rt, _, caller = _caller()
    auth.require_team(rt.repo_github, caller, rt.settings.audit_read_authz_team)  # before the query
    return ok(audit.read(rt, audit.parse_query(query(_event()))))


# --- the repo-request queue: routes exist only when the App is configured
if runtime.current().settings.repo_feature_enabled:
    from artemis.deadlines import Deadline
    from artemis.services import repos  # imported only when the feature is on

    @route("POST", "/api/repo")
    def repo_create() -> Response[str]:
        rt, ctx, caller = _caller()
        return ok(repos.create(rt, ctx, caller, raw_body(_event())), 201)

    @route("GET", "/api/repos")
    def repo_list() -> Response[str]:
        rt, _, caller = _caller()
        params = query(_event())
        return ok(repos.list_requests(rt, caller, params.get("status"), params.get("mine")))

    @route("GET", "/api/repo/templates")
    def repo_templates() -> Response[str]:
        rt, _, _ = _caller()  # any authenticated user
        return ok(repos.templates(rt))

    @route("GET", "/api/repo/<request_id>")
    def repo_get(request_id: str) -> Response[str]:
        rt, _, caller = _caller()
        return ok(repos.get(rt, caller, request_id))

    @route("POST", "/api/repo/<request_id>/approve")
    def repo_approve(request_id: str) -> Response[str]:
        rt, ctx, caller = _caller()
        remaining = app.lambda_context.get_remaining_time_in_millis() / 1000.0
        deadline = Deadline.after(repos.approve_budget(remaining))
        return ok(repos.approve(rt, ctx, caller, request_id, deadline=deadline))

    @route("POST", "/api/repo/<request_id>/reject")
    def repo_reject(request_id: str) -> Response[str]:
        rt, ctx, caller = _caller()
        return ok(repos.reject(rt, ctx, caller, request_id, raw_body(_event())))

    @route("DELETE", "/api/repo/<request_id>")
    def repo_delete(request_id: str) -> Response[str]:
        rt, ctx, caller = _caller()
        repos.delete(rt, ctx, caller, request_id)
        return no_content()


# --- errors -------------------------------------------------------------------------------
@app.exception_handler(ArtemisError)
def _domain_error(err: ArtemisError) -> Response[str]:
    if err.status >= 500:
        logger.warning("request failed", extra={"code": err.code, "cause": repr(err.__cause__)})
    return response_for(err)


@app.exception_handler(Exception)
def _unexpected(err: Exception) -> Response[str]:
    logger.exception("unhandled exception")
    return error_response(500, "internal_error", "internal error")


@app.not_found
def _not_found(_: Exception) -> Response[str]:
    path = app.current_event.path
    allowed = _fixed_path_methods(path) or sorted(
        {r.method for r in app._dynamic_routes if r.rule.match(path)}
    )
    if allowed:
        return _method_not_allowed(allowed)
    return response_for(NotFound("no such route"))


def _fixed_path_methods(path: str) -> list[str]:
    return sorted({r.method for r in app._static_routes if r.rule.match(path)})


def _method_not_allowed(allowed: list[str]) -> Response[str]:
    err = MethodNotAllowed()
    return error_response(err.status, err.code, err.message, headers={"Allow": ", ".join(allowed)})


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request_id = begin_request(event)
    logger.append_keys(request_id=request_id)
    with invocation.running(context):  # waits below (the site lock) end before Lambda does
        return finish_response(app.resolve(event, context), request_id)
