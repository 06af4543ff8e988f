"""The shapes of the API's JSON answers: the services return these models, the HTTP layer
serializes them, and the OpenAPI document describes them.

A field typed `X | _Omitted` is left out of the JSON when it is None (never sent as null), which
is how the answers have always looked. Models defer building their validators and serializers
to first use, so a cold start pays only for defining the classes.
"""

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

_Omitted = SkipJsonSchema[None]  # left out of the JSON when it has no value


def _is_none(value: Any) -> bool:
    return value is None


def _omitted(description: str) -> Any:
    return Field(None, description=description, exclude_if=_is_none)


class _Shape(BaseModel):
    """A response shape. Extra fields stay allowed: responses may gain fields."""

    model_config = ConfigDict(defer_build=True)


class Health(_Shape):
    ok: Literal[True] = Field(description="always true")


class Readiness(_Shape):
    ready: Literal[True] = Field(description="always true on 200 (a 503 carries the envelope)")
    degraded: Literal[True] | _Omitted = _omitted(
        "present when Postgres or Redis is unreachable (the bucket is fine)"
    )
    checks: dict[str, Literal["ok", "unreachable", "unconfigured"]] = Field(
        description="each probe's verdict: bucket, postgres, redis"
    )


class Whoami(_Shape):
    login: str = Field(description="the caller's GitHub login")
    authorizedSites: list[str] = Field(
        description="registered sites one of the caller's teams owns, sorted; advisory"
    )


class InitResponse(_Shape):
    deployId: str = Field(description="`YYYYMMDD-HHMMSS-<first 7 chars of sha>`, UTC")
    jwt: str = Field(description="the deploy-session token for upload, uploads and finalize")
    expiresAt: str = Field(description="the token's expiry, RFC 3339, second precision")


class UploadResponse(_Shape):
    received: str = Field(description="the path as stored, relative to the deploy root")
    key: str = Field(description="the object's bucket key")


class DigestsResponse(_Shape):
    upload: list[str] = Field(
        description="send these files' bytes (bundle, upload or presigned POST): the site holds "
        "no verified copy of their content, or the copy failed"
    )
    copied: list[str] = Field(
        description="the deploy now holds these files with the given digest (copied inside the "
        "bucket by this call, or already held): do not send them"
    )
    remaining: list[str] = Field(
        description="not handled by this call (its copy budget ran out): send these entries again"
    )


class BundleResponse(_Shape):
    received: list[str] = Field(
        description="the paths written, relative to the deploy root, in archive order"
    )
    files: int = Field(description="how many files were written")
    bytes: int = Field(description="their total size, unpacked")
    remaining: list[str] = Field(
        description="paths of the bundle not written within this request's time: send them"
        " again (in another bundle)"
    )


class PresignedUpload(_Shape):
    path: str = Field(description="the file's path, as requested")
    key: str = Field(description="the exact bucket key the POST may write")
    url: str = Field(description="where to send the multipart/form-data POST")
    fields: dict[str, str] = Field(
        description="form fields to send, in any order, before the `file` field"
    )


class PresignResponse(_Shape):
    uploads: list[PresignedUpload] = Field(
        description="one presigned POST per file, in request order"
    )
    expiresAt: str = Field(
        description="when every POST policy expires (≤ the session's expiry, ≤ 1 h)"
    )
    maxBytes: int = Field(description="the largest file each POST accepts (UPLOAD_MAX_BYTES)")


class FinalizeResponse(_Shape):
    url: str = Field(description="the public URL of the alias that now names the deploy")
    deployId: str = Field(description="the finalized deploy")
    mode: Literal["preview", "production"] = Field(description="the alias that now names it")
    alias: str | _Omitted = _omitted("the named preview that now names it, when one was asked for")


class DeployRow(_Shape):
    deployId: str = Field(description="the deploy's id")
    actor: str | _Omitted = _omitted("login of the latest finalizer, when known")
    state: Literal["pending", "expired", "live", "tombstoned"] | _Omitted = _omitted(
        "pending: initialized, not finalized, its session may still be valid; expired: "
        "pending past the session's lifetime; live: finalized; tombstoned: deleted, "
        "restorable. Omitted for a deploy the index does not know yet (reconcile adds it)"
    )
    createdAt: str | _Omitted = _omitted("when the deploy was initialized, RFC 3339 seconds")
    finalizedAt: str | _Omitted = _omitted("when it was (first) finalized, RFC 3339 seconds")
    files: int | _Omitted = _omitted("how many files it holds, as counted at finalize")
    bytes: int | _Omitted = _omitted("its size: at finalize (live) or at deletion (tombstoned)")
    aliases: list[str] = Field(
        default_factory=list, description="every alias of the site naming this deploy, sorted"
    )
    branch: str | _Omitted = _omitted("the git branch it was built from, as sent at init")
    message: str | _Omitted = _omitted("the commit message's first line (≤ 200 characters)")
    pr: int | _Omitted = _omitted("the pull request number")
    repo: str | _Omitted = _omitted("the GitHub repository, `owner/name`")
    ciUrl: str | _Omitted = _omitted("the CI run that deployed it (https)")


class AliasResponse(_Shape):
    site: str = Field(description="the site, as in the path")
    mode: Literal["preview", "production"] = Field(description="the alias read (normalized)")
    deployId: str = Field(description="the deploy the alias names")
    url: str = Field(description="the alias's public URL")


class Preview(_Shape):
    name: str = Field(description="the named preview")
    deployId: str = Field(description="the deploy it names")
    url: str = Field(description="its public URL (PUBLIC_URL_NAMED_FORMAT)")
    updatedAt: str | _Omitted = _omitted("when it last moved, RFC 3339 (omitted when unknown)")
    updatedBy: str | _Omitted = _omitted("who moved it last (omitted when unknown)")
    expiresAt: str | _Omitted = _omitted(
        "updatedAt + PREVIEW_TTL: the site's first GC run after it removes the preview"
    )


class PreviewRemoved(_Shape):
    name: str = Field(description="the removed named preview")
    deployId: str = Field(description="the deploy it named (kept; normal retention applies)")
    status: Literal["removed"] = Field(description="the preview no longer serves")


class AliasMove(_Shape):
    url: str = Field(description="the production URL")
    deployId: str = Field(description="the deploy production now names")


class DeployDeleted(_Shape):
    site: str = Field(description="the site, as in the path")
    deployId: str = Field(description="the deleted deploy")
    status: Literal["tombstoned"] = Field(description="the deploy is in trash, restorable")
    moved: int = Field(description="objects moved to trash by this call (0 when already done)")


class DeployRestored(_Shape):
    site: str = Field(description="the site, as in the path")
    deployId: str = Field(description="the restored deploy")
    status: Literal["restored"] = Field(description="back in place; serves nothing until promoted")
    moved: int = Field(description="objects moved back by this call")
    bytes: int = Field(description="the restored deploy's size")


class TrashEntry(_Shape):
    deployId: str = Field(description='the trashed deploy; "" for a site-wide purge tombstone')
    trashedAt: str = Field(description="RFC 3339, second precision")
    expiresAt: str = Field(
        description="trashedAt + CLEANUP_RECOVERY_DAYS: the earliest hard delete"
    )
    bytes: int = Field(description="the deploy's size when it was deleted")


class SiteRow(_Shape):
    slug: str = Field(description="the site's registry name")
    teams: list[str] = Field(
        description="the GH_ORG teams whose members manage the site, in probe order"
    )
    createdAt: str = Field(description="RFC 3339, full precision")
    updatedAt: str = Field(description="RFC 3339, full precision")
    createdBy: str = Field(
        description='the registrant; "" unless the caller is in one of the site\'s teams or in '
        "AUDIT_READ_AUTHZ_TEAM (register always shows it)"
    )


class TrustRule(_Shape):
    id: str = Field(description="the rule's id, `tr_` + 20 lower-case hex characters")
    site: str = Field(description="the site's registry slug")
    repository: str = Field(description="the GitHub repository, `owner/name`")
    repositoryId: int = Field(
        description="GitHub's numeric id of the repository (a re-created repository has another)"
    )
    workflow: str = Field(description="the workflow file, `.github/workflows/<name>.yml`")
    environment: str | _Omitted = _omitted(
        "the GitHub environment the job must run in (omitted: any or none)"
    )
    ref: str | _Omitted = _omitted("the ref pattern the run's ref must match (omitted: any ref)")
    aliases: list[str] = Field(
        description="what the rule may publish to: production, preview, named-preview patterns"
    )
    createdAt: str = Field(description="RFC 3339, full precision")
    createdBy: str = Field(description="who added the rule")


class Hook(_Shape):
    id: str = Field(description="the webhook's id, `hk_` + 20 lower-case hex characters")
    site: str = Field(description="the site's registry slug")
    url: str = Field(description="where deliveries are POSTed")
    events: list[str] = Field(description="the event types delivered")
    createdAt: str = Field(description="RFC 3339, full precision")
    createdBy: str = Field(description="who added the webhook")


class HookCreated(Hook):
    secret: str = Field(
        description="the signing secret (`X-Artemis-Signature`): answered here once, never again"
    )


class HookAttempt(_Shape):
    attempt: int = Field(description="1 for the first attempt")
    at: str = Field(description="when it was made, RFC 3339")
    status: int | _Omitted = _omitted("the receiver's HTTP status (omitted: no answer)")
    error: str | _Omitted = _omitted("why it failed: a status, timeout, connect_failed, ...")
    durationMs: int = Field(description="how long the attempt took")


class HookDelivery(_Shape):
    id: str = Field(description="`X-Artemis-Delivery`: the same on every attempt")
    eventId: str = Field(description="the event's id (the body's `id`)")
    event: str = Field(description="the event type")
    createdAt: str = Field(description="when the event happened, RFC 3339")
    state: str = Field(description="`pending` (being retried), `delivered` or `failed`")
    attempts: int = Field(description="attempts made so far")
    finishedAt: str | _Omitted = _omitted("when it was delivered or given up")
    lastError: str | _Omitted = _omitted("the last attempt's failure")
    log: list[HookAttempt] = Field(description="every attempt, oldest first")


class HookQueued(_Shape):
    deliveryId: str = Field(description="the delivery queued")
    status: str = Field(description="`queued`")


class SitePurged(_Shape):
    slug: str = Field(description="the purged site")
    status: Literal["purged"] = Field(description="offline, moved to trash and deregistered")
    moved: int = Field(description="objects moved to trash by this call")


class AuditRow(_Shape):
    id: int = Field(description="the row's id")
    occurredAt: str = Field(description="RFC 3339, full precision (database clock)")
    actor: str = Field(description="GitHub login, session subject, or system:<job>")
    action: str = Field(description="e.g. deploy.finalize, site.promote, site.purge")
    outcome: str = Field(description="success, or failure / idempotent for some actions")
    site: str | _Omitted = _omitted("the slug (omitted when empty)")
    deployId: str | _Omitted = _omitted("omitted when empty")
    requestId: str | _Omitted = _omitted("the request's X-Request-ID (omitted when empty)")
    detail: dict[str, Any] | _Omitted = _omitted("action-specific (omitted when empty)")


class RepoRow(_Shape):
    id: str = Field(description="`req_` + 20 lower-case hex characters")
    name: str = Field(description="the repository name")
    owner: str = Field(description="GH_REPO_ORG")
    visibility: Literal["public", "private"] = Field(description="public or private")
    status: Literal["pending", "approved", "active", "rejected", "failed"] = Field(
        description="pending → approved → active or failed; pending → rejected"
    )
    requestedBy: str = Field(description='the requester; "" unless the caller may see actors')
    createdAt: str = Field(description="RFC 3339, full precision")
    updatedAt: str = Field(description="RFC 3339, full precision")
    description: str | _Omitted = _omitted("omitted when empty")
    template: str | _Omitted = _omitted("the template repository, if any")
    url: str | _Omitted = _omitted("the repository, once active")
    error: str | _Omitted = _omitted("why it failed (user-facing text)")
    approver: str | _Omitted = _omitted("who approved or rejected; omitted when empty or hidden")
    rejectReason: str | _Omitted = _omitted("omitted when empty")


class RepoApproval(_Shape):
    outcome: Literal["ok", "approved_failed"] = Field(
        description="ok: the repository exists; approved_failed: creation failed (see error)"
    )
    request: RepoRow = Field(description="the request after the approval")


class RepoTemplates(_Shape):
    templates: list[str] = Field(description="template repositories the App can read, sorted")


class ErrorBody(BaseModel):
    model_config = ConfigDict(extra="allow", defer_build=True)

    code: str = Field(description="the machine-readable code: this is the contract")
    message: str = Field(description="human-readable; may change; never parse it")
    missing: list[str] | _Omitted = _omitted(
        "verify_failed: manifest entries absent from storage, in manifest order"
    )
    hint: str | _Omitted = _omitted(
        "missing_index on finalize: advice for an unexported framework build",
    )
    field: str | _Omitted = _omitted(
        "invalid_metadata on init: the field refused (branch, message, pr, repo or ciUrl);"
        " invalid_trust_rule: the rule field refused (repository, repositoryId, workflow,"
        " environment, ref or aliases)"
    )


class ErrorEnvelope(BaseModel):
    model_config = ConfigDict(extra="allow", defer_build=True)

    error: ErrorBody
    site: str | _Omitted = _omitted("alias_drift and deploy_aliased: the site")
    current: str | _Omitted = _omitted(
        'alias_drift: the deploy production names now ("" when none)'
    )
    deployId: str | _Omitted = _omitted("deploy_aliased: the deploy")
    alias: str | _Omitted = _omitted(
        "deploy_aliased: the first alias found naming the deploy (production, preview, then"
        " the named previews by name)"
    )


RESPONSE_MODELS: tuple[type[BaseModel], ...] = (
    Health, Readiness, Whoami, InitResponse, UploadResponse, BundleResponse, PresignResponse,
    FinalizeResponse, DeployRow, AliasResponse, AliasMove, DeployDeleted, DeployRestored,
    TrashEntry, SiteRow, TrustRule, Hook, HookCreated, HookDelivery, HookQueued, SitePurged,
    AuditRow, RepoRow, RepoApproval, RepoTemplates, ErrorEnvelope,
)  # fmt: skip
