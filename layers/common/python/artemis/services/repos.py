"""The repo-request queue's routes: staff request a repository, an approver approves
(Artemis creates it in GH_REPO_ORG through the GitHub App) or rejects.

Gates: creating needs REPO_CREATE_AUTHZ_TEAM, approving/rejecting/deleting
REPO_APPROVE_AUTHZ_TEAM, both in GH_REPO_ORG; reading needs any GitHub identity. Actor fields
(`requestedBy`, `approver`) are shown to audit-team members and blank for everyone else.

Approve runs the creation in the request. If GitHub fails transiently (on a first or a
resumed attempt) the row stays `approved` and the caller gets `503 repo_create_retryable`:
approving again resumes (an "already exists" on a resumed attempt counts as created, with the
existing repo's URL).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from artemis import bodies
from artemis.config import RepoSettings
from artemis.db import outbox
from artemis.db import repo_requests as store
from artemis.db.lock import LockKey, advisory_lock
from artemis.deadlines import Deadline
from artemis.errors import (
    AlreadyExists,
    AlreadyResolved,
    DependencyError,
    InvalidDescription,
    InvalidName,
    InvalidReason,
    InvalidStatus,
    InvalidTemplate,
    InvalidVisibility,
    NotFound,
    RepoCreateRetryable,
)
from artemis.github_app import GENERIC_FAILURE, RepoCreateError
from artemis.observability import logger
from artemis.runtime import Runtime
from artemis.services import audit
from artemis.services.auth import require_team, sees_actors
from artemis.services.context import Caller, RequestContext
from artemis.site_names import REPO_NAME_RE
from artemis.times import rfc3339

# The answer's models are imported where it is built: off the cold init (see __init__).
if TYPE_CHECKING:
    from artemis.responses import RepoApproval, RepoRow, RepoTemplates

Outcome = Literal["ok", "approved_failed"]  # what creating an approved repository came to
TEXT_MAX = 350  # description and reject reason, in code points
LIST_STATUSES = frozenset({*store.STATUSES, "all"})
# An approval creates the repository within this many seconds, keeping headroom under API
# Gateway's 30 s integration limit; a creation needing longer is left to the worker.
APPROVE_BUDGET_SECONDS = 20.0
RESERVE_SECONDS = 5.0
VANISHED = "the repository no longer exists on GitHub; its name was reclaimed by a new request"


def repo_json(row: store.RepoRequest, *, show_actor: bool) -> RepoRow:
    """Empty optional columns (and a hidden approver) are left out (None is omitted);
    `requestedBy` is always present, "" when hidden."""
    from artemis.responses import RepoRow

    return RepoRow(
        id=row.id,
        name=row.name,
        owner=row.owner,
        visibility=row.visibility,
        status=row.status,
        requestedBy=row.requested_by if show_actor else "",
        createdAt=rfc3339(row.created_at),
        updatedAt=rfc3339(row.updated_at),
        description=row.description or None,
        template=row.template or None,
        url=row.url or None,
        error=row.error or None,
        approver=(row.approver if show_actor else "") or None,
        rejectReason=row.reject_reason or None,
    )


def _store_failed(err: Exception) -> DependencyError:
    logger.error("repo.store_failed", extra={"error": f"{type(err).__name__}: {err}"})
    return DependencyError("repo_store_failed")


# --- create -----------------------------------------------------------------------------------


def create(rt: Runtime, ctx: RequestContext, caller: Caller, raw_body: bytes) -> RepoRow:
    require_team(rt.repo_github, caller, rt.settings.repo_create_authz_team)
    body = bodies.parse(bodies.RepoCreateBody, raw_body)
    if not REPO_NAME_RE.match(body.name):
        raise InvalidName()
    visibility = body.visibility or "private"
    if visibility not in ("public", "private"):
        raise InvalidVisibility()
    if body.template and not REPO_NAME_RE.match(body.template):
        raise InvalidTemplate()
    if len(body.description) > TEXT_MAX:
        raise InvalidDescription()
    fields = {
        "name": body.name, "owner": rt.settings.gh_repo_org, "description": body.description,
        "template": body.template, "visibility": visibility, "requested_by": caller.login,
    }  # fmt: skip
    try:
        row = _insert(rt, fields)
        if row is None and _reclaim_vanished(rt, body.name):
            row = _insert(rt, fields)
    except store.NameClaimed:
        row = None
    except Exception as err:
        raise _store_failed(err) from err
    if row is None:
        raise AlreadyExists(f"a request for {body.name!r} is pending, approved or active")
    audit.record(rt, ctx, "repo.create", detail={"id": row.id, "name": row.name})
    return repo_json(row, show_actor=True)


def _insert(rt: Runtime, fields: dict[str, str]) -> store.RepoRequest | None:
    try:
        with rt.db.transaction() as conn:
            return store.insert(conn, **fields)
    except store.NameClaimed:
        return None


def _reclaim_vanished(rt: Runtime, name: str) -> bool:
    """Stale-claim reconcile, when a new request's name is already claimed: an `active`
    holder whose repository GitHub no longer has is marked failed, freeing the name.
    Anything else keeps the claim."""
    try:
        with rt.db.transaction() as conn:
            holder = store.claim_holder(conn, name)
        if holder is None:
            return True  # released meanwhile: try the insert again
        if holder.status != "active" or rt.github_app.repo_url(holder.name) is not None:
            return False
        with rt.db.transaction() as conn:
            store.transition(conn, holder.id, "active", "failed", error=VANISHED)
        logger.info("repo.claim_reclaimed", extra={"id": holder.id, "repo": holder.name})
        return True
    except Exception:
        logger.warning("repo.reclaim_failed", exc_info=True, extra={"repo": name})
        return False


# --- reads ------------------------------------------------------------------------------------


def list_requests(
    rt: Runtime, caller: Caller, status: str | None, mine: str | None
) -> list[RepoRow]:
    wanted = status or "pending"
    if wanted not in LIST_STATUSES:
        raise InvalidStatus()
    only_mine = (mine or "").lower() in ("1", "true")
    try:
        with rt.db.transaction() as conn:
            rows = store.list_all(conn)
    except Exception as err:
        raise _store_failed(err) from err
    rows = [
        r for r in rows
        if (wanted == "all" or r.status == wanted)
        and (not only_mine or r.requested_by == caller.login)
    ]  # fmt: skip
    show = sees_actors(rt, caller) if rows else False
    return [repo_json(r, show_actor=show) for r in rows]


def get(rt: Runtime, caller: Caller, request_id: str) -> RepoRow:
    row = _read(rt, request_id)
    return repo_json(row, show_actor=sees_actors(rt, caller))


def templates(rt: Runtime) -> RepoTemplates:
    from artemis.responses import RepoTemplates

    try:
        return RepoTemplates(templates=rt.github_app.templates())
    except Exception:  # never fails: the CLI falls back to free-text entry
        logger.warning("repo.templates_failed", exc_info=True)
        return RepoTemplates(templates=[])


def _read(rt: Runtime, request_id: str) -> store.RepoRequest:
    try:
        with rt.db.transaction() as conn:
            row = store.get(conn, request_id)
    except Exception as err:
        raise _store_failed(err) from err
    if row is None:
        raise NotFound("no such repo request")
    return row


# --- approve / reject / delete ------------------------------------------------------------------


def approve_budget(remaining_seconds: float) -> float:
    """Seconds an approval may spend on GitHub, given the invocation's remaining time."""
    return max(1.0, min(APPROVE_BUDGET_SECONDS, remaining_seconds - RESERVE_SECONDS))


def approve(
    rt: Runtime, ctx: RequestContext, caller: Caller, request_id: str, *, deadline: Deadline
) -> RepoApproval:
    """`deadline` bounds the creation so the answer beats the API Gateway limit; a creation
    that needs longer is left to the worker (503 retryable)."""
    from artemis.responses import RepoApproval

    require_team(rt.repo_github, caller, rt.settings.repo_approve_authz_team)
    # One approval of a request at a time: a concurrent approval waits here,
    # then finds the request resolved, so GitHub never sees two creations of one repository
    # and a created repository is never recorded as failed by the loser.
    with advisory_lock(rt.settings.database_url, LockKey.repo_request(request_id)):
        resumed = False
        try:
            with rt.db.transaction() as conn:
                row = store.transition(
                    conn, request_id, "pending", "approved", approver=caller.login
                )
                # With the transition, so an approval cut short is always finished by the
                # worker (a no-op when this request completes it first).
                outbox.enqueue(conn, outbox.REPO_APPROVED, {"request": request_id})
        except store.NotFound:
            raise NotFound("no such repo request") from None
        except store.WrongStatus:
            row = _read(rt, request_id)
            if row.status != "approved":
                raise AlreadyResolved(f"the request is {row.status}") from None
            resumed = True  # an earlier approval stopped after the transition
        except Exception as err:
            raise _store_failed(err) from err
        outcome, done = _create_repository(rt, ctx, row, resumed=resumed, deadline=deadline)
        show = sees_actors(rt, caller)
        return RepoApproval(outcome=outcome, request=repo_json(done, show_actor=show))


def _create_repository(
    rt: Runtime[RepoSettings], ctx: RequestContext, row: store.RepoRequest, *,
    resumed: bool, deadline: Deadline | None, actor: str | None = None,
) -> tuple[Outcome, store.RepoRequest]:  # fmt: skip
    """Create an approved request's repository and record the result: the outcome (`ok` or
    `approved_failed`) and the request's row after it. It needs only RepoSettings (the
    database and the App), so the site worker, which loads no API settings, finishes
    approvals through it too."""
    try:
        url = rt.github_app.create(
            row.name, description=row.description, private=row.visibility == "private",
            template=row.template, deadline=deadline,
        )  # fmt: skip
    except RepoCreateError as err:
        if resumed and err.already_exists:
            url = err.existing_url
        elif err.transient:  # the row stays approved; approving again resumes
            logger.warning("repo.create_retryable", extra={"id": row.id, "error": str(err)})
            raise RepoCreateRetryable() from None
        else:
            return _fail(rt, ctx, row, err, actor=actor)
    try:
        with rt.db.transaction() as conn:
            done = store.transition(conn, row.id, "approved", "active", url=url)
    except Exception as err:  # including a row deleted meanwhile
        raise _store_failed(err) from err
    audit.record(rt, ctx, "repo.approve", detail={"id": done.id, "name": done.name, "url": url},
                 actor=actor)  # fmt: skip
    return "ok", done


def _fail(
    rt: Runtime[RepoSettings], ctx: RequestContext, row: store.RepoRequest,
    err: RepoCreateError, *, actor: str | None = None,
) -> tuple[Outcome, store.RepoRequest]:  # fmt: skip
    if err.internal:
        logger.error("repo.create_failed", extra={"id": row.id, "error": str(err)})
    message = GENERIC_FAILURE if err.internal else err.user_message
    try:
        with rt.db.transaction() as conn:
            failed = store.transition(conn, row.id, "approved", "failed", error=message)
    except Exception as store_err:
        raise _store_failed(store_err) from store_err
    audit.record(rt, ctx, "repo.approve", outcome="approved_failed",
                 detail={"id": failed.id, "name": failed.name}, actor=actor)  # fmt: skip
    return "approved_failed", failed


WORKER_ACTOR = "system:repo-worker"


def finish_approval(rt: Runtime[RepoSettings], request_id: str, *, deadline: Deadline) -> str:
    """The durable half of an approval (the `repo.approved` event): finish a request still
    `approved` — create the repository, or record the failure. Returns what happened: `done`
    (nothing left to do), `active` or `failed`; raises RepoCreateRetryable when GitHub failed
    transiently (the worker retries the message after a backoff)."""
    ctx = RequestContext(request_id=f"repo-worker-{request_id}", caller=None)
    with advisory_lock(rt.settings.database_url, LockKey.repo_request(request_id)):
        with rt.db.transaction() as conn:
            row = store.get(conn, request_id)
        if row is None or row.status != "approved":
            return "done"  # finished (or rejected, or deleted) meanwhile
        outcome, _ = _create_repository(rt, ctx, row, resumed=True, deadline=deadline,
                                        actor=WORKER_ACTOR)  # fmt: skip
    return "active" if outcome == "ok" else "failed"


def reject(
    rt: Runtime, ctx: RequestContext, caller: Caller, request_id: str, raw_body: bytes
) -> RepoRow:
    require_team(rt.repo_github, caller, rt.settings.repo_approve_authz_team)
    body = bodies.parse(bodies.RejectBody, raw_body, required=False)
    if len(body.reason) > TEXT_MAX:
        raise InvalidReason()
    try:
        with rt.db.transaction() as conn:
            row = store.transition(conn, request_id, "pending", "rejected",
                                   approver=caller.login, reject_reason=body.reason)  # fmt: skip
    except store.NotFound:
        raise NotFound("no such repo request") from None
    except store.WrongStatus as err:
        raise AlreadyResolved(f"the request is {err.current}") from None
    except Exception as err:
        raise _store_failed(err) from err
    audit.record(rt, ctx, "repo.reject",
                 detail={"id": row.id, "name": row.name, "reason": body.reason})  # fmt: skip
    return repo_json(row, show_actor=sees_actors(rt, caller))


def delete(rt: Runtime, ctx: RequestContext, caller: Caller, request_id: str) -> None:
    require_team(rt.repo_github, caller, rt.settings.repo_approve_authz_team)
    row = _read(rt, request_id)
    try:
        with rt.db.transaction() as conn:
            gone = store.delete(conn, request_id)
    except Exception as err:
        raise _store_failed(err) from err
    if not gone:
        raise NotFound("no such repo request")
    audit.record(rt, ctx, "repo.delete", detail={"id": row.id, "name": row.name})
