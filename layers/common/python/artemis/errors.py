"""Domain errors. Each carries the HTTP status and the machine-readable code of the error
envelope; the API maps them to responses in exactly one place
(artemis.http). `extra` adds fields beside `error` (alias_drift, deploy_aliased); `detail`
adds fields inside it (verify_failed's `missing`, missing_index's `hint`)."""

from __future__ import annotations

from typing import Any


class ArtemisError(Exception):
    status: int = 500
    code: str = "internal_error"
    default_message: str = "internal error"

    def __init__(
        self, message: str | None = None, *, detail: dict[str, Any] | None = None, **extra: Any
    ) -> None:
        super().__init__(message or self.default_message)
        self.message = message or self.default_message
        self.detail = detail or {}
        self.extra = extra


def _error(status: int, code: str, message: str) -> type[ArtemisError]:
    return type(
        "".join(part.title() for part in code.split("_")),
        (ArtemisError,),
        {"status": status, "code": code, "default_message": message},
    )


# --- request shape ------------------------------------------------------------------------
BadRequest = _error(400, "bad_request", "malformed request")
TooLarge = _error(413, "too_large", "request body too large")
ManifestRequired = _error(400, "manifest_required", "finalize needs a non-empty files list")
InvalidSlug = _error(400, "invalid_slug", "slug must match ^[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?$")
InvalidTeam = _error(400, "invalid_team", "team must match ^[a-z0-9][a-z0-9_-]{0,38}$")
InvalidSince = _error(400, "invalid_since", "since must be an RFC 3339 time")
InvalidLimit = _error(400, "invalid_limit", "limit must be an integer >= 0")
InvalidOffset = _error(400, "invalid_offset", "offset must be an integer >= 0")
# A bundle (PUT /api/deploy/{id}/bundle, artemis.bundles) is refused whole, before any write.
BundleInvalid = _error(
    400, "bundle_invalid", "the body is not a readable tar archive (optionally gzip-compressed)"
)
BundleMemberInvalid = _error(
    400, "bundle_member_invalid",
    "a member is a link or special file, or its path breaks the upload path rules",
)  # fmt: skip
BundleDuplicate = _error(400, "bundle_duplicate", "two members of the bundle have one path")
BundleTooManyMembers = _error(413, "bundle_too_many_members", "the bundle has too many members")
BundleTooLarge = _error(413, "bundle_too_large", "the bundle unpacks to too many bytes")
InvalidMetadata = _error(
    400, "invalid_metadata", "a deploy metadata field (branch, message, pr, repo, ciUrl) is invalid"
)
NotFound = _error(404, "not_found", "not found")
MethodNotAllowed = _error(405, "method_not_allowed", "method not allowed")

# --- identity and authorization -----------------------------------------------------------
MissingBearer = _error(401, "missing_bearer", "Authorization: Bearer <token> required")
Unauthenticated = _error(401, "unauthenticated", "GitHub did not accept the token")
RateLimited = _error(429, "rate_limited", "GitHub rate limit reached; retry later")
UpstreamUnavailable = _error(503, "upstream_unavailable", "GitHub is unavailable; retry later")
InsufficientScope = _error(
    403, "insufficient_scope", "the token cannot read team membership (scope or SSO)"
)
JwtExpired = _error(401, "jwt_expired", "deploy session expired")
JwtInvalid = _error(403, "jwt_invalid", "invalid deploy session token")
JwtWrongDeploy = _error(403, "jwt_wrong_deploy", "token is for another deploy")
SiteUnauthorized = _error(403, "site_unauthorized", "site is not registered or has no teams")
UserUnauthorized = _error(403, "user_unauthorized", "not a member of a team this needs")
Misconfigured = _error(500, "misconfigured", "server misconfigured")
JwtSignFailed = _error(500, "jwt_sign_failed", "could not sign the session token")

# --- GitHub Actions OIDC tokens (artemis.oidc): one code per reason a token is refused -------
OidcInvalid = _error(401, "oidc_invalid", "the OIDC token is malformed")
OidcAlg = _error(401, "oidc_alg", "the OIDC token is not signed with RS256")
OidcSignature = _error(401, "oidc_signature", "the OIDC token's signature does not verify")
OidcUnknownKey = _error(401, "oidc_unknown_key", "the OIDC token names a key the issuer lacks")
OidcIssuer = _error(401, "oidc_issuer", "the OIDC token is from another issuer")
OidcAudience = _error(401, "oidc_audience", "the OIDC token is not for this audience")
OidcExpired = _error(401, "oidc_expired", "the OIDC token has expired")
OidcNotYetValid = _error(401, "oidc_not_yet_valid", "the OIDC token is not valid yet")
OidcClaims = _error(401, "oidc_claims", "the OIDC token lacks a required claim or has a bad one")
OidcReplayed = _error(401, "oidc_replayed", "the OIDC token was already used")
OidcIssuerUnavailable = _error(
    503, "oidc_issuer_unavailable", "the OIDC issuer's keys cannot be read; retry later"
)
OidcWrongRoute = _error(
    403, "oidc_route", "a GitHub Actions OIDC token only starts a deploy (POST /api/deploy/init)"
)
# --- trusted publishing (artemis.trust_rules): why a verified workflow run may not publish ----
TrustNoRules = _error(403, "trust_no_rules", "the site trusts no GitHub Actions workflow")
TrustRepository = _error(
    403, "trust_repository", "no trust rule of the site names the token's repository"
)
TrustRepositoryId = _error(
    403, "trust_repository_id",
    "the site trusts a repository of this name with another id (deleted and re-created, or "
    "renamed): a rule must name the repository's current id",
)  # fmt: skip
TrustWorkflow = _error(
    403, "trust_workflow", "no trust rule for the repository names this workflow"
)
TrustEnvironment = _error(
    403, "trust_environment", "the trust rule asks for another GitHub environment"
)
TrustRef = _error(403, "trust_ref", "the run's ref does not match the trust rule's ref pattern")
TrustAlias = _error(403, "trust_alias", "the trust rule does not let the run publish to that alias")
TrustPullRequest = _error(
    403, "trust_pull_request", "a pull_request run never publishes to production"
)
TrustRuleRemoved = _error(
    403, "trust_rule_removed", "the trust rule that granted this session was removed"
)

# --- deploy lifecycle and aliases -----------------------------------------------------------
MissingIndex = _error(422, "missing_index", "the deploy has no root index.html")
VerifyFailed = _error(422, "verify_failed", "files in the manifest are missing from storage")
NoPreview = _error(422, "no_preview", "no preview alias to promote")
DeployMissing = _error(422, "deploy_missing", "the deploy holds no objects")
DeployIncomplete = _error(422, "deploy_incomplete", "the deploy was never finalized")
DeployFinalized = _error(409, "deploy_finalized", "the deploy is finalized; start a new one")
DeployDeleted = _error(410, "deploy_deleted", "the deploy was deleted; start a new one")
DeployBusy = _error(409, "deploy_busy", "a finalize or delete of this deploy is in progress; retry")
RestoreTargetOccupied = _error(
    409, "restore_target_occupied",
    "objects exist under the deploy's live prefix; repeat the delete, then restore",
)  # fmt: skip
AliasDrift = _error(409, "alias_drift", "production alias changed since you read it")
DeployAliased = _error(409, "deploy_aliased", "an alias points at this deploy")
SiteGone = _error(410, "site_gone", "the site is no longer registered")
AlreadyPurged = _error(410, "already_purged", "the deploy's bytes are gone")
NoAlias = _error(404, "no_alias", "no such alias")
InvalidAlias = _error(
    400, "invalid_alias",
    "alias must match ^[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?$ and not be production or preview",
)  # fmt: skip
PreviewMoved = _error(409, "preview_moved", "the named preview no longer names deployId")
PreviewLimit = _error(409, "preview_limit", "the site holds as many named previews as it may")
DeployNotFound = _error(404, "deploy_not_found", "no such deploy")
AlreadyExists = _error(409, "already_exists", "already exists")
# Trust rules (artemis.trust_rules): `detail.field` names the refused field.
InvalidTrustRule = _error(
    400, "invalid_trust_rule",
    "a trust rule field (repository, repositoryId, workflow, environment, ref, aliases) is invalid",
)  # fmt: skip
TrustRuleLimit = _error(409, "trust_rule_limit", "the site holds as many trust rules as it may")
TrustRuleNotFound = _error(404, "trust_rule_not_found", "the site has no such trust rule")

# Webhooks (artemis.services.hooks). The URL refusals are artemis.outbound's codes, 422: the
# body is well-formed, the outbound policy refuses where it points.
HookUrlInvalid = _error(
    422, "hook_url_invalid",
    "url must be an absolute URL of at most 2,048 characters, without user info or fragment",
)  # fmt: skip
HookUrlScheme = _error(422, "hook_url_scheme", "url must be https")
HookUrlUnresolvable = _error(422, "hook_url_unresolvable", "url's host does not resolve")
HookUrlForbiddenAddress = _error(
    422, "hook_url_forbidden_address",
    "url's host resolves to a private, loopback, link-local or otherwise non-public address",
)  # fmt: skip
HOOK_URL_ERRORS: dict[str, type[ArtemisError]] = {
    e.code: e for e in (HookUrlInvalid, HookUrlScheme, HookUrlUnresolvable, HookUrlForbiddenAddress)
}
InvalidHookEvents = _error(
    400, "invalid_hook_events",
    "events must list one or more of deploy.finalized, alias.moved, deploy.deleted, "
    "deploy.restored, site.deleted",
)  # fmt: skip
HookLimit = _error(409, "hook_limit", "the site holds as many webhooks as it may")
HookNotFound = _error(404, "hook_not_found", "the site has no such webhook")
DeliveryNotFound = _error(404, "delivery_not_found", "the webhook has no such delivery")

# --- the repo-request queue -----------------------------------------------------------------
InvalidName = _error(400, "invalid_name", "name must match ^[a-zA-Z0-9][a-zA-Z0-9._-]{0,99}$")
InvalidVisibility = _error(400, "invalid_visibility", "visibility must be public or private")
InvalidTemplate = _error(400, "invalid_template", "template must be a repository name")
InvalidDescription = _error(400, "invalid_description", "description over 350 characters")
InvalidReason = _error(400, "invalid_reason", "reason over 350 characters")
InvalidStatus = _error(
    400, "invalid_status", "status must be pending, approved, active, rejected, failed or all"
)
AlreadyResolved = _error(409, "already_resolved", "the request is no longer pending")
RepoCreateRetryable = _error(
    503, "repo_create_retryable", "GitHub is temporarily unavailable; approve again to resume"
)

# --- locks ---------------------------------------------------------------------------------
SiteLocked = _error(409, "site_locked", "another operation holds this site's lock; retry")
SiteLockFailed = _error(502, "site_lock_failed", "could not take the site lock")


class DependencyError(ArtemisError):
    """A dependency (bucket, Postgres, registry) failed; `code` names the operation.

    The message is generic: a dependency's own error text never reaches the client.
    """

    status = 502
    default_message = "a dependency failed; retry"

    def __init__(self, code: str, message: str | None = None, **extra: Any) -> None:
        super().__init__(message, **extra)
        self.code = code


class StorageError(DependencyError):
    """A bucket call failed (r2_put_failed, r2_list_failed …, the reference's spelling)."""

    default_message = "object storage request failed"
