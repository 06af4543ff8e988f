"""The deploy lifecycle: init, upload (through the API or presigned POSTs), finalize, and the
deploy list. A finalized deploy is immutable; only finalize writes the completion marker."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from artemis import (
    bodies,
    content_types,
    deploy_ids,
    deploy_metadata,
    deploy_mode,
    frameworks,
    session,
    upload_paths,
)
from artemis.db import aliases as aliases_db
from artemis.db import audit as audit_db
from artemis.db import content as content_db
from artemis.db import deploy_lock
from artemis.db import deploys as deploys_db
from artemis.db import sites as sites_db
from artemis.db.content import FileDigest
from artemis.db.lock import site_lock
from artemis.errors import (
    ArtemisError,
    BadRequest,
    DependencyError,
    DeployBusy,
    DeployDeleted,
    DeployFinalized,
    InvalidMetadata,
    ManifestRequired,
    MissingIndex,
    PreviewLimit,
    SiteGone,
    TooLarge,
    VerifyFailed,
)
from artemis.keys import (
    MARKER_DIGESTS,
    MARKER_FILES,
    MARKER_NAME,
    AliasName,
    Dirname,
    Slug,
    finalize_record,
)
from artemis.observability import logger
from artemis.runtime import Runtime
from artemis.services import audit
from artemis.services.aliases import parse_named_alias, record_alias_move
from artemis.services.auth import require_publish, require_site_member, require_workflow
from artemis.services.context import Caller, RequestContext, WorkflowToken
from artemis.times import rfc3339_seconds, utcnow

# The answer's models are imported where it is built: off the cold init (see __init__).
if TYPE_CHECKING:
    from artemis.oidc_claims import OidcClaims
    from artemis.responses import (
        DeployRow,
        FinalizeResponse,
        InitResponse,
        PresignResponse,
        UploadResponse,
    )
    from artemis.trust_rules import TrustRule

MAX_ID_ATTEMPTS = 30  # advance the id by a second per collision, this many times at most
MAX_PRESIGN_FILES = 1000
# A presigned POST cannot be recalled once issued (a finalize or delete cannot stop it), so its
# window is short; drift reports any object that lands in a finalized deploy afterwards.
PRESIGN_MAX_EXPIRY_SECONDS = 900


def site_of(rt: Runtime, slug: str) -> tuple[Slug, Dirname]:
    """The site's slug and its storage dirname."""
    return Slug(slug), rt.settings.key_layout.dirname(Slug(slug))


def init(
    rt: Runtime, ctx: RequestContext, caller: Caller | WorkflowToken, raw_body: bytes
) -> InitResponse:
    """Start a deploy for a member of one of the site's teams, or for a GitHub Actions run one
    of the site's trust rules admits (its token verified and spent here)."""
    from artemis.responses import InitResponse

    body = bodies.parse(bodies.InitBody, raw_body, limit=bodies.MANIFEST_LIMIT)
    site, sha = body.site, body.sha
    if not site or not sha or not deploy_ids.is_sha(sha):
        raise BadRequest("site and sha are required; sha must match ^[A-Za-z0-9-]{1,64}$")
    meta = check_metadata(body)  # a shape check, answered before authorization as sha's is
    detail: dict[str, Any] = {"sha": sha, **meta.as_json()}
    if isinstance(caller, WorkflowToken):
        run, rule = require_workflow(rt, caller, Slug(site))
        actor, team = run.actor, None
        grant = session.WorkflowGrant(rule=rule.id, event=run.event_name, aliases=rule.aliases)
        detail["trust"] = _trust_detail(run, rule)
    else:
        actor, team, grant = caller.login, require_site_member(rt, caller, site), None
    slug, dirname = site_of(rt, site)
    now = utcnow()
    deploy_id = _unique_deploy_id(rt, dirname, now, sha, meta)
    token, claims = session.issue(
        login=actor, site=slug, deploy_id=deploy_id, team=team, workflow=grant,
        key=rt.settings.jwt_signing_key.encode(), ttl_seconds=rt.settings.jwt_ttl_seconds,
        now=now.timestamp(),
    )  # fmt: skip
    audit.record(rt, ctx, "deploy.init", site=slug, deploy_id=deploy_id, actor=actor,
                 detail=detail)  # fmt: skip
    expires = datetime.fromtimestamp(claims.exp, tz=now.tzinfo)
    return InitResponse(deployId=deploy_id, jwt=token, expiresAt=rfc3339_seconds(expires))


def _trust_detail(run: OidcClaims, rule: TrustRule) -> dict[str, Any]:
    """What the audit keeps of the run a trust rule admitted: the verified claims that matter
    to a reader asking "which run shipped this, and why was it allowed"."""
    seen = {name: run.claims.get(name) for name in ("sha", "environment")}
    return {
        "rule": rule.id, "repository": run.repository, "repositoryId": run.repository_id,
        "workflow": run.job_workflow_ref, "ref": run.ref, "event": run.event_name,
        "runId": run.run_id, **{k: v for k, v in seen.items() if isinstance(v, str)},
    }  # fmt: skip


def check_metadata(body: bodies.InitBody) -> deploy_metadata.DeployMetadata:
    try:
        return deploy_metadata.check(
            branch=body.branch, message=body.message, pr=body.pr, repo=body.repo,
            ci_url=body.ci_url,
        )  # fmt: skip
    except deploy_metadata.InvalidMetadataValue as err:
        raise InvalidMetadata(str(err), detail={"field": err.field}) from None


def _unique_deploy_id(
    rt: Runtime, site: Dirname, now: datetime, sha: str, meta: deploy_metadata.DeployMetadata
) -> str:
    """Two inits in one second with one sha would mint one id: the pending row claims the id,
    and on a collision the next second is tried (the id keeps its pattern)."""
    candidate = deploy_ids.mint_deploy_id(now, sha)
    for attempt in range(MAX_ID_ATTEMPTS):
        candidate = deploy_ids.mint_deploy_id(now + timedelta(seconds=attempt), sha)
        try:
            with rt.db.transaction() as conn:
                conn.execute("SET LOCAL statement_timeout = 5000")
                if deploys_db.begin(conn, site, candidate, now, meta, sha):
                    return candidate
        except Exception:  # the pending row is best effort: init still succeeds
            logger.exception("deploy.init pending row failed", extra={"site": site})
            return candidate
    logger.warning("deploy id collisions exhausted", extra={"site": site, "id": candidate})
    return candidate


def refuse_closed(status: deploy_lock.DeployStatus) -> None:
    """A deleted deploy takes no more bytes (its tombstone ends every session of it, durably:
    the session tokens are stateless, so the routes look the tombstone up); a finalized one is
    immutable (a live deploy never changes under its visitors); a finalize or delete in
    progress holds the deploy lock."""
    if status.tombstoned:
        raise DeployDeleted()
    if not status.locked:
        raise DeployBusy()
    if status.state == "active":
        raise DeployFinalized()


def check_path(path: str | None) -> str:
    if not path:
        raise BadRequest("the path query parameter is required")
    problem = upload_paths.upload_path_error(path)
    if problem:
        raise BadRequest(f"invalid path: {problem}")
    return path


def check_key(rt: Runtime, claims: session.SessionClaims, deploy_id: str, path: str) -> None:
    """Refuse, before any write, a path whose full key S3 would reject as too long."""
    _, site = site_of(rt, claims.site)
    problem = upload_paths.key_length_error(
        rt.settings.key_layout.deploy_prefix(site, deploy_id), path
    )
    if problem:
        raise BadRequest(f"invalid path: {problem}")


def upload(
    rt: Runtime, claims: session.SessionClaims, deploy_id: str, path: str | None,
    content_type: str | None, body: bytes,
) -> UploadResponse:  # fmt: skip
    from artemis.responses import UploadResponse

    path = check_path(path)
    check_key(rt, claims, deploy_id, path)
    if len(body) > rt.settings.upload_max_bytes:
        raise TooLarge(
            f"file over UPLOAD_MAX_BYTES ({rt.settings.upload_max_bytes})",
            detail={"hint": "UPLOAD_MAX_BYTES limits each file on this route and on POST "
                    "/api/deploy/{id}/uploads (presigned direct uploads, the route for files "
                    "above about 4.5 MB, which this one cannot carry)"},
        )  # fmt: skip
    _, site = site_of(rt, claims.site)
    key = rt.settings.key_layout.deploy_prefix(site, deploy_id) + path
    # The check and the write are one critical section under the deploy lock (shared): a
    # finalize or delete waits for this PUT, and once either committed no upload gets past
    # the check, so no API upload lands in a finalized or deleted deploy.
    # The server saw these bytes, so their digest enters the content index with them (in the
    # same transaction: a failed PUT records nothing).
    digest = FileDigest(path, hashlib.sha256(body).digest(), len(body))
    try:
        with rt.db.transaction() as conn:
            refuse_closed(deploy_lock.share(conn, site, deploy_id))
            rt.bucket.put(key, body, content_types.content_type_for(path, content_type))
            content_db.record(conn, site, deploy_id, [digest])
    except ArtemisError:
        raise
    except Exception as err:
        raise DependencyError("pg_read_failed") from err
    return UploadResponse(received=path, key=key)


def presign_uploads(
    rt: Runtime, claims: session.SessionClaims, deploy_id: str, raw_body: bytes, *, now: float
) -> PresignResponse:
    """One presigned POST per file: exact key, 0..UPLOAD_MAX_BYTES, expiring with the session
    (at most 15 minutes). For files above what API Gateway and Lambda accept in one request."""
    from artemis.responses import PresignedUpload, PresignResponse

    files = bodies.parse(bodies.UploadsBody, raw_body, limit=bodies.MANIFEST_LIMIT).files
    if not files or len(files) > MAX_PRESIGN_FILES:
        raise BadRequest(f"files must list 1 to {MAX_PRESIGN_FILES} entries")
    limit = rt.settings.upload_max_bytes
    for spec in files:
        check_path(spec.path)
        check_key(rt, claims, deploy_id, spec.path)
        if spec.size < 0:
            raise BadRequest("size must be >= 0")
        if spec.size > limit:
            raise TooLarge(f"{spec.path}: over UPLOAD_MAX_BYTES ({limit})")
    _, site = site_of(rt, claims.site)
    # A file sent with its digest is indexed now: S3 will refuse any other bytes for its POST.
    # One sent without loses any digest its path had, since its new bytes are unknown.
    bound = [
        FileDigest(spec.path, bytes.fromhex(spec.sha256), spec.size)
        for spec in files
        if spec.sha256
    ]
    unbound = [spec.path for spec in files if not spec.sha256]
    try:
        with rt.db.transaction() as conn:
            refuse_closed(deploy_lock.share(conn, site, deploy_id))
            content_db.forget(conn, site, deploy_id, unbound)
            content_db.record(conn, site, deploy_id, bound)
    except ArtemisError:
        raise
    except Exception as err:
        raise DependencyError("pg_read_failed") from err
    expires_in = int(max(1, min(claims.exp - now, PRESIGN_MAX_EXPIRY_SECONDS)))
    prefix = rt.settings.key_layout.deploy_prefix(site, deploy_id)
    uploads = []
    for spec in files:
        key = prefix + spec.path
        ctype = content_types.content_type_for(spec.path, spec.content_type)
        post = rt.bucket.presigned_post(
            key, max_bytes=limit, expires_in=expires_in, content_type=ctype,
            sha256=bytes.fromhex(spec.sha256) if spec.sha256 else None,
        )  # fmt: skip
        uploads.append(PresignedUpload(path=spec.path, key=key, url=post.url, fields=post.fields))
    expires_at = datetime.fromtimestamp(now + expires_in, tz=UTC)
    return PresignResponse(uploads=uploads, expiresAt=rfc3339_seconds(expires_at), maxBytes=limit)


def finalize(
    rt: Runtime, ctx: RequestContext, claims: session.SessionClaims, deploy_id: str, raw_body: bytes
) -> FinalizeResponse:
    from artemis.responses import FinalizeResponse

    body = bodies.parse(bodies.FinalizeBody, raw_body, limit=bodies.MANIFEST_LIMIT)
    files = body.files
    mode = deploy_mode.parse_mode(body.mode)
    if mode is None:
        raise BadRequest("mode must be preview or production")
    named = parse_named_alias(body.alias) if body.alias is not None else None
    if named and mode != "preview":
        raise BadRequest("alias names a preview: use it with mode preview")
    require_publish(claims, named or mode)  # a workflow's session: only what its rule allows
    if not files:
        raise ManifestRequired()
    if "index.html" not in files:
        hint = (
            {"hint": frameworks.FRAMEWORK_HINT}
            if frameworks.looks_like_framework_build(files)
            else {}
        )
        raise MissingIndex(detail=hint)
    for name in dict.fromkeys(files):
        check_key(rt, claims, deploy_id, name)
    layout = rt.settings.key_layout
    slug, site = site_of(rt, claims.site)
    prefix = layout.deploy_prefix(site, deploy_id)
    try:
        with rt.db.transaction() as lock_conn:
            # The deploy lock (exclusive) for the whole finalize: the uploads in flight finish
            # first, none starts until the active row is committed, so the listing below is
            # everything the API will ever have written into the prefix.
            deploy_lock.hold(lock_conn, site, deploy_id)
            if deploy_lock.is_tombstoned(lock_conn, site, deploy_id):
                raise DeployDeleted()
            size = _publish(rt, slug, site, deploy_id, prefix, files, mode, named, by=claims.sub)
    except ArtemisError:
        raise
    except Exception as err:  # the lock connection failed; what ran under it stands
        raise DependencyError("deploy_lock_failed") from err
    detail: dict[str, object] = {"mode": mode, "bytes": size, "files": len(set(files))}
    if named:
        detail["alias"] = named
    audit.record(
        rt, ctx, "deploy.finalize", site=slug, deploy_id=deploy_id, actor=claims.sub,
        detail=detail,
    )  # fmt: skip
    return FinalizeResponse(
        url=layout.public_url(slug, named or mode), deployId=deploy_id, mode=mode, alias=named
    )


def _check_preview_cap(rt: Runtime, site: Dirname, name: str) -> None:
    """A new named preview beyond PREVIEW_MAX_PER_SITE is refused; moving an existing one is
    not. Called under the site lock, which every named preview's creation holds, so two
    finalizes cannot both take the last place."""
    cap = rt.settings.preview_max_per_site
    try:
        with rt.db.transaction() as conn:
            exists = aliases_db.get(conn, site, name) is not None
            count = 0 if exists else aliases_db.count_named(conn, site)
    except Exception as err:
        raise DependencyError("pg_read_failed") from err
    if not exists and count >= cap:
        raise PreviewLimit(
            f"the site holds {count} named previews, PREVIEW_MAX_PER_SITE is {cap}: "
            "remove one (DELETE /api/site/{site}/previews/{name}) first",
            detail={"limit": cap},
        )


def _publish(
    rt: Runtime, slug: Slug, site: Dirname, deploy_id: str, prefix: str, files: list[str],
    mode: AliasName, named: str | None, *, by: str,
) -> int:  # fmt: skip
    """Verify, then under the site lock: marker, alias, index. Returns the deploy's size."""
    layout = rt.settings.key_layout
    # One paginated listing verifies the manifest and measures the deploy (no HEAD per file).
    listing = rt.bucket.list_keys(prefix)
    present = {obj.key[len(prefix) :] for obj in listing}
    missing = [name for name in dict.fromkeys(files) if name not in present]
    if missing:
        raise VerifyFailed(detail={"missing": missing})
    held = {
        obj.key[len(prefix) :]: obj.etag for obj in listing if obj.key[len(prefix) :] != MARKER_NAME
    }
    # A repeated finalize keeps the first one's record: the deploy was complete then, and an
    # object a presigned POST wrote since must stay visible to drift, not be absorbed.
    if MARKER_NAME in present:
        held = finalize_record(rt.bucket.get(layout.marker_key(site, deploy_id))) or held
    size = sum(obj.size for obj in listing if obj.key[len(prefix) :] != MARKER_NAME)
    # The content index keeps only what the listing shows (a presigned POST that never came
    # leaves no digest behind); the marker carries the digests for a later backfill.
    try:
        with rt.db.transaction() as conn:
            content_db.keep_only(conn, site, deploy_id, list(held))
            digests = {
                p: d.sha256.hex() for p, d in content_db.for_deploy(conn, site, deploy_id).items()
            }
    except Exception as err:
        raise DependencyError("content_index_failed") from err
    now = utcnow()
    with site_lock(rt.db.conninfo, site):
        try:
            with rt.db.transaction() as conn:
                registered = sites_db.get(conn, slug)
        except Exception as err:
            raise DependencyError("registry_read_failed") from err
        if registered is None:
            raise SiteGone()
        if named:
            _check_preview_cap(rt, site, named)
        # The marker lands inside the lock, after the re-check, right before the alias: a finalize
        # that fails earlier must not leave a deploy the background jobs treat as complete.
        # It records what the deploy holds (path -> ETag, from the same listing), so drift can
        # tell any object written into the prefix afterwards (a presigned POST cannot be
        # recalled).
        record = {
            "site": slug,
            "deployId": deploy_id,
            "mode": mode,
            **({"alias": named} if named else {}),
            "finalizedAt": rfc3339_seconds(now),
            MARKER_FILES: held,
            MARKER_DIGESTS: digests,
        }
        marker = json.dumps(record, separators=(",", ":")).encode()
        rt.bucket.put(layout.marker_key(site, deploy_id), marker, "application/json")
        size += len(marker)
        alias = named or mode
        rt.bucket.put_alias(layout.alias_key(site, alias), deploy_id)
        record_alias_move(
            rt, site, alias, deploy_id, now, finalized_bytes=size, finalized_files=len(held),
            by=by,
        )  # fmt: skip
    return size


def list_deploys(rt: Runtime, caller: Caller, slug: str) -> list[DeployRow]:
    """Every deploy a user would look for, oldest first (ids start with their UTC time): those
    the bucket holds (a delimited listing, so the cost follows the number of deploys, not of
    files), those only the index knows (a pending init with no bytes yet), and the deleted ones
    still restorable (per-deploy tombstones). One listing and three queries (index rows with
    tombstones, aliases, finalizers) for the whole list, never one per deploy.

    The latest finalizer is `actor` (shown to members of the site's teams and of the audit
    team). When Postgres fails the list is the bucket's ids alone, as it always was."""
    from artemis.responses import DeployRow

    require_site_member(rt, caller, slug)
    layout = rt.settings.key_layout
    _, site = site_of(rt, slug)
    site_prefix = layout.site_prefix(site)
    ids = {
        deploy_id
        for child in rt.bucket.list_children(site_prefix)
        if (deploy_id := layout.deploy_id_of(site, f"{site_prefix}{child}/"))
    }
    indexed: dict[str, deploys_db.ListedDeploy] = {}
    aliases: dict[str, list[str]] = {}
    actors: dict[str, str] = {}
    try:
        with rt.db.transaction() as conn:
            listed = deploys_db.listed_for_site(conn, site)
            targets = aliases_db.for_site(conn, site)  # ordered by name
            known = ids | {entry.id for entry in listed}
            found_actors = audit_db.deploy_actors(conn, slug, sorted(known))
    except Exception:
        logger.exception("deploy index lookup failed; listing the bucket's ids alone")
    else:
        # A tombstone wins over a row of the same id (a restore in progress).
        indexed = {entry.id: entry for entry in sorted(listed, key=lambda r: r.tombstoned)}
        for alias in targets:
            aliases.setdefault(alias.deploy_id, []).append(alias.name)
        ids, actors = known, found_actors
    now = utcnow()
    return [
        _deploy_row(DeployRow, i, indexed.get(i), aliases.get(i, []), actors.get(i),
                    rt.settings.jwt_ttl_seconds, now)
        for i in sorted(ids)
    ]  # fmt: skip


def _deploy_row(
    model: type[DeployRow], deploy_id: str, listed: deploys_db.ListedDeploy | None,
    aliases: list[str], actor: str | None, ttl: int, now: datetime,
) -> DeployRow:  # fmt: skip
    state = deploy_metadata.deploy_state(
        index_state=listed.state if listed else None,
        created_at=listed.created_at if listed else None,
        tombstoned=bool(listed and listed.tombstoned),
        session_ttl_seconds=ttl, now=now,
    )  # fmt: skip
    created = deploy_metadata.created_at(listed.created_at if listed else None, deploy_id)
    fields: dict[str, Any] = {
        "deployId": deploy_id, "actor": actor, "state": state, "aliases": aliases,
        "createdAt": rfc3339_seconds(created) if created else None,
    }  # fmt: skip
    if listed is not None:
        measured = state in ("live", "tombstoned")  # a pending deploy's size is not known yet
        fields.update(
            finalizedAt=rfc3339_seconds(listed.finalized_at) if listed.finalized_at else None,
            files=listed.files, bytes=listed.bytes if measured else None, branch=listed.branch,
            message=listed.message, pr=listed.pr, repo=listed.repo, ciUrl=listed.ci_url,
        )  # fmt: skip
    return model(**fields)
