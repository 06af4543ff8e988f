"""What each API route promises: its summary and description, credential and gate, success
answer, every error code it can answer, its parameters and request body.

functions/api/app.py attaches one `Doc` to each route it registers, in the form the Powertools
resolver keeps (summary, description, tags, operation id, security, responses with their
models, and the OpenAPI extensions); artemis.openapi generates the OpenAPI document from those
routes. The document-wide text (the conventions, the tags, the request-body refinements) is
here too, so that everything the document says sits in one module.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from types import GenericAlias
from typing import Any, Literal

from pydantic import BaseModel

from artemis import (
    alias_names,
    bodies,
    deploy_ids,
    deploy_metadata,
    deploy_mode,
    errors,
    hook_events,
    request_headers,
    site_names,
    trust_rules,
)
from artemis.bundles import BUNDLE_MAX_BYTES, BUNDLE_MAX_MEMBERS
from artemis.config import Settings
from artemis.keys import MARKER_NAME
from artemis.services.audit import DEFAULT_LIMIT as AUDIT_DEFAULT_LIMIT
from artemis.services.audit import MAX_LIMIT as AUDIT_MAX_LIMIT
from artemis.services.content import COPY_BATCH, COPY_SECONDS, MAX_DIGEST_FILES
from artemis.services.deploys import MAX_PRESIGN_FILES, PRESIGN_MAX_EXPIRY_SECONDS

SCHEMA_REF = "#/components/schemas/{model}"


# The platform's request ceiling for the upload route (see UPLOAD_DESCRIPTION).
GATEWAY_MAX_PAYLOAD = 10 * 1000 * 1000  # API Gateway HTTP API: 10 MB
LAMBDA_MAX_EVENT = 6 * 1024 * 1024  # synchronous Lambda invocation request: 6 MB
DIRECT_UPLOAD_ABOVE = 4 * 1000 * 1000  # switch to presigned POSTs above ~4 MB of raw file


def _default(name: str) -> Any:
    return Settings.model_fields[name].default


UPLOAD_MAX_BYTES_DEFAULT: int = _default("upload_max_bytes")
JWT_TTL_DEFAULT: int = _default("jwt_ttl_seconds")
RECOVERY_DAYS_DEFAULT: int = _default("cleanup_recovery_days")
PREVIEW_MAX_DEFAULT: int = _default("preview_max_per_site")


def _ecma(pattern: re.Pattern[str]) -> str:
    """A rules.* pattern in the ECMA dialect JSON Schema uses (`\\Z` → `$`, `\\d` → [0-9])."""
    return pattern.pattern.replace("\\Z", "$").replace("\\d", "[0-9]")


DEPLOY_ID_PATTERN = _ecma(deploy_ids.DEPLOY_ID_RE)
SHA_PATTERN = _ecma(deploy_ids.SHA_RE)
SLUG_PATTERN = _ecma(site_names.SLUG_RE)
TEAM_PATTERN = _ecma(site_names.TEAM_RE)
REQUEST_ID_PATTERN = _ecma(request_headers.REQUEST_ID_RE)
NAMED_ALIAS_PATTERN = _ecma(alias_names.NAMED_ALIAS_RE)

# The declared constraints are the ones the server enforces, no stricter and no looser, so a
# generator (schemathesis in CI) may take the document at its word: what a schema admits gets
# past validation, what it refuses gets a 4xx.


def _class(chars: str) -> str:
    return "".join(f"\\u{ord(c):04x}" if ord(c) > 0x7E or ord(c) < 0x21 else c for c in chars)


def _anycase(word: str) -> str:
    return "".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else c for c in word)


# Python's str.strip() set (str.isspace) and Go's TrimSpace set (deploy_mode.parse_mode).
PY_SPACE = _class(
    "\t\n\v\f\r\x1c\x1d\x1e\x1f \x85\xa0\u1680"
    + "".join(chr(c) for c in range(0x2000, 0x200B))
    + "\u2028\u2029\u202f\u205f\u3000"
)
GO_SPACE = _class(deploy_mode._WHITESPACE)
_ID_CORE = DEPLOY_ID_PATTERN.removeprefix("^").removesuffix("$")
_MODES = f"{_anycase('preview')}|{_anycase('production')}"
MODE_PATTERN = f"^[{GO_SPACE}]*(?:{_MODES})[{GO_SPACE}]*$"
FINALIZE_MODE_PATTERN = f"^[{GO_SPACE}]*(?:{_MODES})?[{GO_SPACE}]*$"  # "" means preview
PRODUCTION_MODE_PATTERN = f"^[{GO_SPACE}]*{_anycase('production')}[{GO_SPACE}]*$"
STRIPPED_ID_PATTERN = f"^[{PY_SPACE}]*{_ID_CORE}[{PY_SPACE}]*$"  # promote and rollback strip
OPTIONAL_ID_PATTERN = f"^[{PY_SPACE}]*(?:{_ID_CORE})?[{PY_SPACE}]*$"
PURGE_PATTERN = f"^(?:{_anycase('true')}|{_anycase('false')})$"
REPO_NAME_PATTERN = _ecma(site_names.REPO_NAME_RE)
REPO_REQUEST_ID_PATTERN = "^req_[0-9a-f]{20}$"
# An upload path (upload_paths.upload_path_error): `/`-separated segments, none empty, `.` or `..`,
# without control characters or backslashes; the marker name is excluded separately.
_SEGMENT_CHAR = "[^/\\\\\\x00-\\x1f\\x7f]"
_SEGMENT_HEAD = "[^./\\\\\\x00-\\x1f\\x7f]"
_SEGMENT = (
    f"(?:{_SEGMENT_HEAD}{_SEGMENT_CHAR}*|\\.{_SEGMENT_HEAD}{_SEGMENT_CHAR}*|\\.\\.{_SEGMENT_CHAR}+)"
)
UPLOAD_PATH_SCHEMA: dict[str, Any] = {
    "type": "string",
    "pattern": f"^{_SEGMENT}(?:/{_SEGMENT})*$",
    "not": {"const": MARKER_NAME},
}


# --- error codes ----------------------------------------------------------------------------

DEPENDENCY_CODES: dict[str, tuple[int, str]] = {
    # DependencyError / StorageError codes name the failed operation; the bucket codes keep
    # the reference's `r2_` spelling (its store was R2) so existing clients keep matching them.
    "r2_put_failed": (502, "a bucket write (file, marker, alias) or a presigned POST failed"),
    "r2_get_failed": (502, "reading an alias object failed (other than not found)"),
    "r2_head_failed": (502, "the root index.html or completion-marker check failed"),
    "r2_list_failed": (502, "a bucket listing failed"),
    "r2_move_failed": (502, "a move to or from trash stopped part-way; repeat to resume it"),
    "r2_verify_failed": (502, "purge: the post-move emptiness probe failed; repeat the purge"),
    "r2_move_incomplete": (502, "purge: objects remain under the site; repeat the purge"),
    "r2_has_prefix_failed": (502, "restore: the probe for live bytes failed"),
    "tombstone_record_failed": (502, "the tombstone could not be written; nothing moved"),
    "restore_failed": (502, "restore moved the bytes back but could not update Postgres"),
    "index_write_failed": (
        502, "the alias moved (the deploy is live) but the index write failed; reconcile repairs it"
    ),
    "pg_read_failed": (502, "a Postgres read failed"),
    "oidc_replay_failed": (
        502, "recording the OIDC token's id (each token is accepted once) failed; retry"
    ),
    "content_index_failed": (502, "reading or writing the content index (file digests) failed"),
    "r2_copy_failed": (502, "a copy inside the bucket failed (other than a vanished source)"),
    "r2_delete_failed": (502, "deleting an alias object failed"),
    "deploy_lock_failed": (502, "taking or holding the deploy's lock failed"),
    "registry_read_failed": (502, "reading the site registry failed"),
    "registry_write_failed": (502, "writing the site registry failed"),
    "audit_read_failed": (502, "the audit query failed"),
    "repo_store_failed": (502, "the repo-request store failed"),
    # Readiness (artemis.health) answers this code directly, not through an exception.
    "r2_unreachable": (503, "readiness: the bucket probe failed"),
}  # fmt: skip


@functools.cache
def error_catalogue() -> dict[str, tuple[int, str]]:
    """Every error code the API answers: code → (status, default message).

    The fixed codes come from artemis.errors (one class per code); the dependency codes,
    whose class takes the code as an argument, from DEPENDENCY_CODES.
    """
    found: dict[str, tuple[int, str]] = {}
    for value in vars(errors).values():
        if (
            isinstance(value, type)
            and issubclass(value, errors.ArtemisError)
            and not issubclass(value, errors.DependencyError)
        ):
            found[value.code] = (value.status, value.default_message)
    for code, entry in DEPENDENCY_CODES.items():
        found.setdefault(code, entry)
    return dict(sorted(found.items(), key=lambda item: (item[1][0], item[0])))


# Error groups, in the order the checks run.
_BEARER = ("missing_bearer", "oidc_route", "unauthenticated", "rate_limited",
           "upstream_unavailable")  # fmt: skip
# A GitHub Actions OIDC token on init: verified, matched against the site's trust rules, spent.
_OIDC = ("oidc_invalid", "oidc_alg", "oidc_unknown_key", "oidc_signature", "oidc_issuer",
         "oidc_audience", "oidc_expired", "oidc_not_yet_valid", "oidc_claims",
         "oidc_issuer_unavailable", "oidc_replayed", "oidc_replay_failed")  # fmt: skip
_TRUST = ("trust_no_rules", "trust_repository", "trust_repository_id", "trust_workflow",
          "trust_environment", "trust_ref", "trust_pull_request")  # fmt: skip
_PROBE = ("user_unauthorized", "insufficient_scope", "unauthenticated", "rate_limited",
          "upstream_unavailable")  # fmt: skip
_SITE_GATE = ("site_unauthorized", "registry_read_failed", *_PROBE)
_TEAM_GATE = ("misconfigured", *_PROBE)
_SESSION = ("missing_bearer", "jwt_expired", "jwt_invalid", "site_unauthorized",
            "user_unauthorized", "trust_rule_removed", "jwt_wrong_deploy",
            "registry_read_failed")  # fmt: skip
_BODY = ("bad_request", "too_large")
_LOCK = ("site_locked", "site_lock_failed")
_ALWAYS = ("internal_error",)


# --- response shapes: artemis.responses ----------------------------------------------------

REQUEST_MODELS: tuple[type[BaseModel], ...] = (
    bodies.InitBody, bodies.UploadsBody, bodies.FinalizeBody, bodies.PromoteBody,
    bodies.RollbackBody, bodies.RegisterBody, bodies.TeamsBody, bodies.RepoCreateBody,
    bodies.RejectBody, bodies.DigestsBody, bodies.TrustRuleBody, bodies.HookBody,
)  # fmt: skip

# What the parser's models cannot say: field meanings and the fields the route itself requires
# (the models default them so that the route can answer its own, more specific, error).
BODY_NOTES: dict[str, dict[str, str]] = {
    "RepoCreateBody": {
        "name": "the repository name, `^[a-zA-Z0-9][a-zA-Z0-9._-]{0,99}$`",
        "visibility": "`public` or `private` (default)",
        "description": "at most 350 characters",
        "template": "a template repository of GH_REPO_ORG to generate from; empty: blank",
    },
    "RejectBody": {"reason": "why, at most 350 characters (optional)"},
    "InitBody": {
        "site": "the site's registry slug (not format-checked here; the per-site gate decides)",
        "sha": f"the commit or build id, `{SHA_PATTERN}`; its first 7 characters end the deploy id",
        "files": "accepted and ignored: the manifest is sent to finalize",
        "branch": f"optional: the git branch built, git's ref-name rules, at most "
        f"{deploy_metadata.BRANCH_MAX} characters, no control, format or space character",
        "message": "optional: the commit message; its first line is kept, trimmed and cut to "
        f"{deploy_metadata.MESSAGE_MAX} characters (never refused for its length)",
        "pr": f"optional: the pull request number, 1 to {deploy_metadata.PR_MAX}",
        "repo": "optional: the GitHub repository, `owner/name`",
        "ciUrl": f"optional: the CI run, an `https://` URL of at most {deploy_metadata.CI_URL_MAX}"
        " printable ASCII characters, without a user name or password",
    },
    "UploadsBody": {"files": f"1 to {MAX_PRESIGN_FILES} files to presign"},
    "UploadFile": {
        "path": "the file's path relative to the deploy root (the upload route's path rules)",
        "size": "the file's size in bytes, at most UPLOAD_MAX_BYTES",
        "contentType": "the object's Content-Type; default: guessed from the extension",
        "sha256": "optional: the file's SHA-256 (lowercase hex); the POST policy binds it, so "
        "S3 refuses other bytes, and the file is indexed for later deploys' copies",
    },
    "DigestsBody": {"files": f"1 to {MAX_DIGEST_FILES} files with their digests"},
    "DigestFile": {
        "path": "the file's path relative to the deploy root (the upload route's path rules)",
        "sha256": "the file's SHA-256, 64 lowercase hex digits",
        "size": "the file's size in bytes, at most UPLOAD_MAX_BYTES",
        "contentType": "the copy's Content-Type; default: guessed from the extension",
    },
    "FinalizeBody": {
        "mode": '`preview` (default, also for "") or `production`; trimmed, case-insensitive',
        "files": "every path uploaded (the manifest); must contain `index.html`",
        "alias": f"a named preview to publish to instead of the preview alias (mode `preview`): "
        f"`{NAMED_ALIAS_PATTERN}`, not `production` or `preview`",
    },
    "PromoteBody": {
        "deployId": "the deploy to promote; default: the one the preview alias names",
        "preview": "promote the deploy this named preview names now (with `deployId`: only "
        "while it still names that deploy)",
        "expectedCurrent": "compare-and-swap guard: the deploy production must name now",
        "expectNoCurrent": "guard: production must not name any deploy yet",
    },
    "RollbackBody": {
        "to": "the past deploy production should name",
        "expectedCurrent": "compare-and-swap guard: the deploy production must name now",
        "expectNoCurrent": "guard: production must not name any deploy yet",
    },
    "RegisterBody": {
        "slug": f"the new site's slug, `{SLUG_PATTERN}`, not a reserved name",
        "teams": f"GH_ORG team slugs, each `{TEAM_PATTERN}`; absent/empty: [REGISTRY_AUTHZ_TEAM]",
    },
    "TeamsBody": {"teams": f"the new team list: at least one, each `{TEAM_PATTERN}`"},
    "HookBody": {
        "url": "where deliveries are POSTed: `https`, a host resolving to public addresses",
        "events": "the event types to deliver, one or more",
    },
    "TrustRuleBody": {
        "repository": "the GitHub repository, `owner/name` by GitHub's rules",
        "repositoryId": "GitHub's numeric id of that repository (required with the name, so a "
        "re-created repository of the same name is not trusted)",
        "workflow": "the workflow file, directly in `.github/workflows/`, ending `.yml` or `.yaml`",
        "environment": f"optional: the GitHub environment the job must run in (1-"
        f"{trust_rules.ENVIRONMENT_MAX} printable ASCII characters, case-insensitive)",
        "ref": "optional: the ref pattern, e.g. `refs/heads/main`, `refs/heads/release/*`, "
        "`refs/tags/v*`; `*` matches within a segment, a `**` segment one or more segments",
        "aliases": f"1-{trust_rules.MAX_ALIASES} of `production`, `preview`, or a named preview "
        "or named-preview pattern (`*` matches any run of `a-z0-9-`, e.g. `pr-*`)",
    },
}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


_TEAMS: dict[str, Any] = {"type": "array", "items": {"type": "string", "pattern": TEAM_PATTERN}}
_RESERVED = sorted(site_names.DEFAULT_RESERVED_SLUGS)
_NAMED_ALIAS: dict[str, Any] = {
    "type": "string",
    "pattern": NAMED_ALIAS_PATTERN,
    "not": {"enum": list(alias_names.FIXED_ALIASES)},
}
# What each route checks beyond the parser's types: these replace the generated property
# schemas (the descriptions stay), so that the document states every constraint the server
# enforces. A field absent here is checked by type only.
BODY_SCHEMAS: dict[str, dict[str, dict[str, Any]]] = {
    "InitBody": {
        "site": {"type": "string", "minLength": 1},
        "sha": {"type": "string", "pattern": SHA_PATTERN},
        "branch": _nullable({
            "type": "string", "pattern": _ecma(deploy_metadata.BRANCH_RE),
            "maxLength": deploy_metadata.BRANCH_MAX,
            "not": {"pattern": _ecma(deploy_metadata.BRANCH_FORBIDDEN_RE)},
        }),
        "message": _nullable({"type": "string", "pattern": _ecma(deploy_metadata.MESSAGE_RE)}),
        "pr": _nullable({"type": "integer", "minimum": 1, "maximum": deploy_metadata.PR_MAX}),
        "repo": _nullable({
            "type": "string", "pattern": _ecma(deploy_metadata.REPO_RE),
            "not": {"pattern": _ecma(deploy_metadata.REPO_DOTS_RE)},
        }),
        "ciUrl": _nullable({
            "type": "string", "pattern": _ecma(deploy_metadata.CI_URL_RE),
            "maxLength": deploy_metadata.CI_URL_MAX,
        }),
    },
    "UploadsBody": {
        "files": {
            "type": "array", "minItems": 1, "maxItems": MAX_PRESIGN_FILES,
            "items": {"$ref": SCHEMA_REF.format(model="UploadFile")},
        },
    },
    "UploadFile": {
        "path": UPLOAD_PATH_SCHEMA,
        "size": {"type": "integer", "minimum": 0, "maximum": UPLOAD_MAX_BYTES_DEFAULT},
    },
    "DigestsBody": {
        "files": {
            "type": "array", "minItems": 1, "maxItems": MAX_DIGEST_FILES,
            "items": {"$ref": SCHEMA_REF.format(model="DigestFile")},
        },
    },
    "DigestFile": {
        "path": UPLOAD_PATH_SCHEMA,
        "size": {"type": "integer", "minimum": 0, "maximum": UPLOAD_MAX_BYTES_DEFAULT},
    },
    "FinalizeBody": {
        "mode": {"anyOf": [{"type": "string", "pattern": FINALIZE_MODE_PATTERN}, {"type": "null"}]},
        "alias": {"anyOf": [_NAMED_ALIAS, {"type": "null"}]},
        "files": {
            "type": "array", "minItems": 1, "items": {"type": "string"},
            "contains": {"const": "index.html"},
        },
    },
    "PromoteBody": {
        "deployId": {"type": "string", "pattern": OPTIONAL_ID_PATTERN},
        "preview": {"anyOf": [_NAMED_ALIAS, {"type": "string", "maxLength": 0}]},
    },
    "RollbackBody": {"to": {"type": "string", "pattern": STRIPPED_ID_PATTERN}},
    "RegisterBody": {
        "slug": {"type": "string", "pattern": SLUG_PATTERN, "not": {"enum": _RESERVED}},
        "teams": {"anyOf": [_TEAMS, {"type": "null"}]},
    },
    "TeamsBody": {"teams": {**_TEAMS, "minItems": 1}},
    "TrustRuleBody": {
        "repository": {"type": "string", "pattern": _ecma(trust_rules.REPOSITORY_RE),
                       "not": {"pattern": "/\\.\\.?$"}},
        "repositoryId": {"type": "integer", "minimum": 1,
                         "maximum": trust_rules.REPOSITORY_ID_MAX},
        "workflow": {"type": "string", "pattern": _ecma(trust_rules.WORKFLOW_RE),
                     "maxLength": trust_rules.WORKFLOW_MAX, "not": {"pattern": "\\.\\."}},
        "environment": _nullable({"type": "string",
                                  "pattern": _ecma(trust_rules.ENVIRONMENT_RE)}),
        "ref": _nullable({"type": "string", "pattern": _ecma(trust_rules.REF_RE),
                          "maxLength": trust_rules.REF_MAX,
                          "not": {"pattern": "\\.\\.|[^/]\\*\\*|\\*\\*[^/]"}}),
        "aliases": {
            "type": "array", "minItems": 1, "maxItems": trust_rules.MAX_ALIASES,
            "items": {"anyOf": [
                {"enum": list(alias_names.FIXED_ALIASES)},
                {"type": "string", "pattern": _ecma(trust_rules.ALIAS_PATTERN_RE)},
            ]},
        },
    },
    "HookBody": {
        "url": {"type": "string", "minLength": 1, "maxLength": hook_events.MAX_URL_CHARS},
        "events": {"type": "array", "minItems": 1,
                   "items": {"enum": list(hook_events.EVENT_TYPES)}},
    },
    "RepoCreateBody": {
        "name": {"type": "string", "pattern": REPO_NAME_PATTERN},
        "visibility": {"type": "string", "enum": ["", "public", "private"]},
        "description": {"type": "string", "maxLength": 350},
        "template": {"type": "string", "pattern": f"^(?:{REPO_NAME_PATTERN[1:-1]})?$"},
    },
    "RejectBody": {"reason": {"type": "string", "maxLength": 350}},
}  # fmt: skip
# Rules across fields of one body, added to its schema as they stand.
BODY_RULES: dict[str, dict[str, Any]] = {
    # A named preview is a preview: `alias` with mode production is 400 bad_request.
    "FinalizeBody": {
        "not": {
            "required": ["alias", "mode"],
            "properties": {
                "alias": {"type": "string"},
                "mode": {"type": "string", "pattern": PRODUCTION_MODE_PATTERN},
            },
        }
    },
}
ROUTE_REQUIRED: dict[str, tuple[str, ...]] = {
    "InitBody": ("site", "sha"),
    "UploadsBody": ("files",),
    "DigestsBody": ("files",),
    "FinalizeBody": ("files",),
    "RollbackBody": ("to",),
    "RegisterBody": ("slug",),
    "TeamsBody": ("teams",),
    "TrustRuleBody": ("repository", "repositoryId", "workflow", "aliases"),
    "HookBody": ("url", "events"),
    "RepoCreateBody": ("name",),
}


# --- the routes' promises ----------------------------------------------------------------------

Credential = Literal["github", "publisher", "session", "none"]


@dataclass(frozen=True)
class Query:
    name: str
    description: str
    schema: dict[str, Any]
    required: bool = False


@dataclass(frozen=True)
class Doc:
    """One route's promises. `route_options(path)` hands them to the resolver's `route()`."""

    operation_id: str
    tag: str
    summary: str
    description: str
    credential: Credential
    gate: str
    status: int
    # The success answer: a model of artemis.responses by name (imported when the document is
    # generated, never at a cold start), or a schema, or None for no body.
    response: str | dict[str, Any] | None
    example: Any
    errors: tuple[str, ...]
    many: bool = False
    body: type[BaseModel] | Literal["binary", "tar"] | None = None
    body_required: bool = True
    body_limit: int | None = None
    query: tuple[Query, ...] = ()
    response_description: str = ""
    alternative: tuple[int, str] | None = None  # a second success status without a body
    path_schemas: tuple[tuple[str, dict[str, Any]], ...] = ()  # overrides PATH_PARAMETERS
    media_type: str = "application/json"
    # OpenAPI links from the success answer: (name, target operationId, target parameter,
    # the answer's field that fills it), for clients and stateful test generators.
    links: tuple[tuple[str, str, str, str], ...] = ()

    def route_options(self, path: str) -> dict[str, Any]:
        """The OpenAPI operation, in the fields Powertools keeps per route (its `route()`
        arguments). A response's `model` (a pydantic class, or `list[...]` of one) becomes a
        schema reference when the document is generated; `openapi_extensions` carries the
        operation fields Powertools has no argument for."""
        extensions: dict[str, Any] = {
            "parameters": self._parameters(path),
            "x-credential": GATE_NOTE[self.credential],
            "x-gate": self.gate,
        }
        body = self._request_body()
        if body is not None:
            extensions["requestBody"] = body
        return {
            "summary": self.summary,
            "description": self.description.strip(),
            "tags": [self.tag],
            "operation_id": self.operation_id,
            "security": SECURITY[self.credential],
            "response_description": self.response_description or "success",
            "responses": self._responses(),
            "openapi_extensions": extensions,
        }

    def _responses(self) -> dict[int, dict[str, Any]]:
        from artemis import responses as models  # only the document needs them

        success: dict[str, Any] = {
            "description": self.response_description or "success",
            "headers": dict(_REQUEST_ID_HEADER),
        }
        if self.response is not None:
            media: dict[str, Any]
            if isinstance(self.response, dict):
                media = {"schema": dict(self.response)}
            else:
                model = getattr(models, self.response)
                media = {"model": GenericAlias(list, (model,)) if self.many else model}
            if self.example is not None:
                media["example"] = self.example
            success["content"] = {self.media_type: media}
        if self.links:
            success["links"] = {
                name: {"operationId": target, "parameters": {param: f"$response.body#/{field}"}}
                for name, target, param, field in self.links
            }
        responses: dict[int, dict[str, Any]] = {self.status: success}
        if self.alternative is not None:
            status, text = self.alternative
            responses[status] = {"description": text, "headers": dict(_REQUEST_ID_HEADER)}
        catalogue = error_catalogue()
        grouped: dict[int, list[str]] = {}
        for code in dict.fromkeys((*self.errors, *_ALWAYS)):
            grouped.setdefault(catalogue[code][0], []).append(code)
        for status, codes in grouped.items():
            lines = "\n".join(f"* `{code}`: {catalogue[code][1]}" for code in codes)
            responses[status] = {
                "description": f"One of:\n\n{lines}",
                "headers": dict(_REQUEST_ID_HEADER),
                "content": {"application/json": {"model": models.ErrorEnvelope}},
                "x-error-codes": codes,
            }
        return dict(sorted(responses.items()))

    def _request_body(self) -> dict[str, Any] | None:
        if self.body is None:
            return None
        if self.body == "binary":
            return {
                "required": False,
                "description": "the file's raw bytes (none: an empty file); about 4.5 MB at "
                "most through API Gateway and Lambda (see the description)",
                "content": {
                    "application/octet-stream": {
                        "schema": {"type": "string", "contentMediaType": "application/octet-stream"}
                    }
                },
            }
        if self.body == "tar":
            return {
                "required": True,
                "description": "a tar archive, optionally gzip-compressed (told apart by its "
                "first bytes; send either media type, or application/octet-stream); about "
                "4.5 MB at most through API Gateway and Lambda (see the description)",
                "content": {
                    media: {"schema": {"type": "string", "contentMediaType": media}}
                    for media in ("application/x-tar", "application/gzip")
                },
            }
        limit = self.body_limit or bodies.SMALL_LIMIT
        return {
            "required": self.body_required,
            "description": f"JSON, at most {_size(limit)}"
            + ("" if self.body_required else "; optional (an empty body means `{}`)"),
            "content": {"application/json": {"model": self.body}},
            "x-max-bytes": limit,
        }

    def _parameters(self, path: str) -> list[dict[str, Any]]:
        params: list[dict[str, Any]] = []
        overrides = dict(self.path_schemas)
        for name in re.findall(r"[{<](\w+)[}>]", path):
            param = {"name": name, "in": "path", "required": True, **PATH_PARAMETERS[name]}
            if name in overrides:
                param["schema"] = overrides[name]
            params.append(param)
        for q in self.query:
            params.append(
                {"name": q.name, "in": "query", "required": q.required,
                 "description": q.description, "schema": q.schema}
            )  # fmt: skip
        params.append({"$ref": "#/components/parameters/RequestId"})
        return params


def _size(limit: int) -> str:
    mib = 1024 * 1024
    if limit % mib == 0:
        return f"{limit // mib} MiB ({limit:,} bytes)"
    return f"{limit // 1024} KiB ({limit:,} bytes)"


_REQUEST_ID_HEADER = {"X-Request-ID": {"$ref": "#/components/headers/RequestId"}}
SECURITY: dict[Credential, list[dict[str, list[str]]]] = {
    "github": [{"githubToken": []}],
    "publisher": [{"githubToken": []}, {"githubActions": []}],
    "session": [{"deploySession": []}],
    "none": [],
}


_UPLOAD_PATH_RULES = (
    "relative (no leading `/`), already canonical (no `//`, `.` or `..` segments, no trailing"
    " `/`), no control characters (0x00 to 0x1F, 0x7F) or backslashes, and not the reserved"
    " completion-marker name `_artemis_meta.json` (only finalize writes it: it is the proof of"
    " a finished deploy); non-ASCII UTF-8 is fine. The whole object key (the deploy's prefix,"
    " e.g. `<site>/deploys/<deploy id>/`, then the path) must fit in S3's 1,024 bytes of"
    " UTF-8, else `400 bad_request` before anything is written. A `;` must be sent as `%3B`"
    " (a pair holding a raw `;` is dropped, so `path` reads as missing)"
)

UPLOAD_DESCRIPTION = f"""\
One call per file, in any order; repeating a call overwrites the same key. The body is the
file's raw bytes (not multipart). The stored object's content type is the request's
`Content-Type` verbatim, else one guessed from the extension, else `application/octet-stream`.

`path` must be {_UPLOAD_PATH_RULES}.

Once the deploy is finalized it is immutable: uploads answer `409 deploy_finalized` (so a live
deploy never changes under its visitors); start a new deploy instead. A deleted deploy
takes no more files, even with a session that has not expired: `410 deploy_deleted`. While a
finalize or delete of the same deploy runs, uploads answer `409 deploy_busy` at once (retry: the
answer then says how it ended); an upload that was already writing finishes first, and nothing
this route writes lands after a finalize answered.

**Body ceiling: use `POST /api/deploy/{{deploy_id}}/uploads` for files above ~4 MB.** This
route can take only what one API Gateway request and one synchronous Lambda event carry:
API Gateway HTTP API accepts payloads up to 10 MB, but a synchronous Lambda request event is
limited to 6 MB, and a binary body reaches Lambda base64-encoded (4/3 larger), so about
4.5 MB of raw file is the most this route can receive. A larger request never reaches Artemis:
API Gateway or Lambda refuses it with their own status and a body that is not the Artemis error
envelope (clients should report it as `http_<status>`). The local gateway (`make run`) refuses
the same requests with `413 too_large` and a `hint` naming the direct uploads, so a client
tested locally fails where it would on AWS. `UPLOAD_MAX_BYTES` (default
{UPLOAD_MAX_BYTES_DEFAULT:,} bytes) still applies here (`413 too_large`), and is the per-file
limit of the direct uploads.
"""

BUNDLE_DESCRIPTION = f"""\
Many small files in one request. The body is a tar archive (ustar, pax or GNU), optionally
gzip-compressed: the compression is recognised by its first bytes, not by `Content-Type` (send
a binary media type such as `application/x-tar`, `application/gzip` or
`application/octet-stream`, so the bytes travel intact). Each regular-file member is one file
of the deploy, at its name, as if sent to `PUT /api/deploy/{{deploy_id}}/upload`: the same path
rules, at most `UPLOAD_MAX_BYTES` per file (`413 too_large`, with `member`), the content type
guessed from the extension. Directory members are skipped and one leading `./` is removed from
each name, so `tar -C build -czf - .` makes a bundle of the directory `build`.

The whole bundle is checked before anything is written, and a bundle with one bad member is
refused whole, with nothing written:

* `400 bundle_member_invalid` (`member` and `reason` in `error`): a symbolic or hard link, a
  device, fifo, sparse or other special member, an absolute name, a `..` segment, a name the
  path rules refuse (for directory members too), or a key over S3's 1,024 bytes;
* `400 bundle_duplicate` (`path` in `error`): two members with one path (`a` and `./a` too);
* `413 bundle_too_many_members` (`limit`): over {BUNDLE_MAX_MEMBERS:,} members
  (`BUNDLE_MAX_MEMBERS`), directory members included;
* `413 bundle_too_large` (`limit`): over {BUNDLE_MAX_BYTES:,} bytes (`BUNDLE_MAX_BYTES`,
  {BUNDLE_MAX_BYTES // (1024 * 1024)} MiB) of files, unpacked;
* `400 bundle_invalid`: an empty body; bytes that are neither a tar archive nor a gzip stream
  of one; a corrupt or truncated gzip stream; a header with a wrong checksum; a member whose
  data is shorter than its header declares, or is followed by anything but zero padding and
  the next header (its declared size is too small); an archive without its end-of-archive
  block, or with anything but zeros after it.

Sizes are checked from the headers before any data is read, and a gzip body is inflated only as
far as those limits allow, so a compression bomb is refused after bounded work.

Then, as for the upload route: under the deploy's lock, refused with `409 deploy_finalized`
once the deploy is finalized, `410 deploy_deleted` once it was deleted and `409 deploy_busy`
while a finalize or delete of it runs; the files are written in parallel and the SHA-256 of
each, computed while unpacking, is recorded in the content index. Sending a file again (in a
bundle or alone) overwrites it. A `502 r2_put_failed` may leave some of the files written:
send the bundle again. The writes are bounded in time, so the request ends well inside the
API's limit however slow the bucket: a file not written by then is listed in `remaining`
(neither written nor indexed); send those files again, in another bundle.

**Body ceiling:** the upload route's. A binary body reaches Lambda base64-encoded within a
synchronous Lambda event of at most 6 MB, so about 4.5 MB of (compressed) bundle is the most
one request carries; larger requests are refused by API Gateway or Lambda with their own
status and body, and by the local gateway (`make run`) with `413 too_large` and a `hint`.
Split a large set of files into several bundles, and send files above `UPLOAD_MAX_BYTES`
through `POST /api/deploy/{{deploy_id}}/uploads`.
"""

PRESIGN_DESCRIPTION = f"""\
Direct uploads to the bucket, for files too large for the upload route's body ceiling (any file
above ~4 MB) or to upload without passing bytes through Lambda. List 1 to {MAX_PRESIGN_FILES}
files with their sizes; each `path` follows the upload route's rules and each `size` must be at
most `UPLOAD_MAX_BYTES` (`413 too_large` otherwise).

For each file the answer carries a presigned POST: send a `multipart/form-data` POST to `url`
with every entry of `fields` as a form field, followed by the file itself as the last field,
named `file`. The policy pins the exact key, a content length of 0..`maxBytes` and the
`Content-Type` (`contentType` if given, else guessed from the extension), and expires at
`expiresAt`: the session's expiry, at most {PRESIGN_MAX_EXPIRY_SECONDS // 60} minutes away.
Files uploaded this way are verified by finalize like any other. Refused with
`409 deploy_finalized` once the deploy is finalized, `410 deploy_deleted` once it was deleted
and `409 deploy_busy` while a finalize or delete of it runs. A presigned POST cannot be
recalled: one sent after finalize still lands, and the nightly drift sweep reports it
(`written_after_finalize`), since finalize records every file's ETag in the completion marker.
"""

FINALIZE_DESCRIPTION = f"""\
Checks, in order: `mode` (`preview`, the default, or `production`; trimmed, case-insensitive);
a non-empty `files` list (`400 manifest_required`); the exact entry `index.html` in `files`
(`422 missing_index`, with `error.hint` when the list looks like an unexported framework
build); every entry short enough to be an S3 key under the deploy's prefix (1,024 bytes,
`400 bad_request`); every entry present under the deploy prefix (one paginated listing, never
one request per file; `422 verify_failed` with `error.missing`).

Finalize holds the deploy's lock throughout: uploads of the deploy that are writing finish
first, later ones are refused until it ends (`409 deploy_busy`; `409 deploy_busy` here too when
uploads keep it waiting 30 s). A deleted deploy cannot be finalized (`410 deploy_deleted`).
The completion marker records every file's ETag as listed.

Then, under the site lock: re-reads the registry (`410 site_gone` if the site was deregistered
meanwhile), writes the completion marker, and points the mode's alias at the deploy, **which
makes it live**, then records the move in the Postgres index with its `site.changed` event in
one transaction. If that index write still fails after retries the answer is
`502 index_write_failed`, but the deploy is already live (reconcile repairs the index).

With `alias` (mode `preview`) the deploy goes live under that **named preview** instead of
the preview alias: its own alias object and URL (`PUBLIC_URL_NAMED_FORMAT`, e.g.
`https://pr-12--www.preview.freecode.camp`), so concurrent pull requests never overwrite each
other's preview. The name must match `{NAMED_ALIAS_PATTERN}` and not be `production` or
`preview` (`400 invalid_alias`; with mode `production`, `400 bad_request`). Finalizing to an
existing name moves it; a new name beyond `PREVIEW_MAX_PER_SITE` (default
{PREVIEW_MAX_DEFAULT}) named previews of the site is refused with `409 preview_limit`
(`error.limit` is the cap), under the site lock, so two finalizes cannot both take the last
place. A named preview not moved for `PREVIEW_TTL` is removed by the site's GC run.

A session a GitHub Actions run started through a trust rule publishes only to the aliases the
rule lists (`403 trust_alias`), and never to production from a `pull_request` or
`pull_request_target` run (`403 trust_pull_request`), checked before anything is read or
written. Removing the rule ends its sessions (`403 trust_rule_removed`).

May be repeated with the same token until it expires, e.g. to preview and then to production.
"""

PROMOTE_DESCRIPTION = """\
Moves the **production** alias. The body is optional: with `deployId` production moves to that
deploy (which must match the deploy-id pattern); with `preview` (a named preview's name,
`400 invalid_alias` otherwise) to the deploy that named preview names, read under the lock
(`404 no_alias` when it does not exist; given both, the preview must still name `deployId`,
else `409 preview_moved` with `preview` and `current` beside `error`); without either (a legacy
bare promote) to the deploy the preview alias names (`422 no_preview` when there is none, or it
is not a valid id).

Under the site lock, in order: the guard (`expectedCurrent` must equal the deploy production
names now; `expectNoCurrent: true` requires that it names none; otherwise `409 alias_drift`
with `site` and `current` beside `error`), the target, its root `index.html`
(`422 missing_index`), its completion marker (`422 deploy_incomplete`: a never-finalized deploy
cannot go live), then the alias write and the index transaction (`502 index_write_failed` means
the alias already moved). A promote that reached the lock completes even if the client goes
away: read the alias to learn the outcome of a timed-out request.
"""

ROLLBACK_DESCRIPTION = """\
Moves the **production** alias to a named past deploy. Under the site lock, in order: the
deploy prefix holds objects (`422 deploy_missing`), its root `index.html`
(`422 missing_index`), its completion marker (`422 deploy_incomplete`), then the guard
(`409 alias_drift`) — after the existence checks, unlike promote — then the alias
write and the index transaction (`502 index_write_failed` means the alias already moved).
"""

DELETE_DEPLOY_DESCRIPTION = f"""\
Moves a deploy into trash. `deploy_id` must match `{DEPLOY_ID_PATTERN}` (`400 bad_request`).
Under the site lock: refused with `409 deploy_aliased` (with `site`, `deployId` and `alias`
beside `error`) while production, preview or a named preview names the deploy;
`404 deploy_not_found` when it has
neither objects nor a tombstone (nothing is written then). First the deploy's lock is taken
(uploads of it that are writing finish; `409 deploy_busy` after 30 s): once the tombstone is
written, the deploy's sessions can upload, presign and finalize no more (`410 deploy_deleted`).
The tombstone is written before any byte moves; the move copies in parallel and deletes in
batches. Repeating the call resumes a partial move (`moved` counts this call's objects, 0 once
complete) and keeps the original recovery clock. Restorable for `CLEANUP_RECOVERY_DAYS` (default
{RECOVERY_DAYS_DEFAULT} days).
"""

RESTORE_DESCRIPTION = f"""\
Reverses a deploy delete while its trash exists. `deploy_id` must match `{DEPLOY_ID_PATTERN}`.
Under the site lock: `410 site_gone` if the site is no longer registered; `409 deploy_aliased`
if an alias names the trashed deploy; `409 restore_target_occupied` if objects sit at the
deploy's live prefix (a delete whose move did not finish — repeat the delete first — or bytes
written after the delete): a restore never writes over them. Then it moves the trashed
objects back, measures the deploy and marks it finalized in the index. Without a tombstone it
answers from the live bytes: `200` with `moved: 0` when the deploy is in place,
`410 already_purged` when it is gone. No alias changes: promote or roll back to serve it again.
"""

SITE_DELETE_DESCRIPTION = f"""\
Registry gate first; then `purge` must be absent, `true` or `false` in any case
(`400 bad_request` otherwise); then the slug rule `{SLUG_PATTERN}` (`400 invalid_slug`;
reserved names are allowed here, so an existing reserved site can be removed).

**Bare delete** (no `purge`, or `purge=false`) answers `204`. Under the site lock it moves both
alias objects into trash, so the site stops serving within the serve cache TTL, then removes the
alias rows and the registry row (`404 not_found` for an unregistered slug). Deploy bytes stay:
registering the slug again and promoting brings the site back.

**Purge** (`purge=true`) answers `200`. Under the site lock it records a site-wide tombstone,
unpublishes the aliases, moves the whole site prefix into trash, verifies nothing is left, and
removes the registry row. It is resumable: on a `502` (notably `r2_move_incomplete`) repeat the
request. An orphaned site (already deregistered) can still be purged. Each failed stage writes
one `site.purge` audit row with outcome `failure`.
"""

_REPO_GATED = (
    " Exists only when the GitHub App is configured (`GH_APP_ID`, `GH_APP_INSTALLATION_ID`,"
    " `GH_APP_PRIVATE_KEY`); otherwise `404 not_found`."
)
_REPO_EXAMPLE: dict[str, Any] = {
    "id": "req_0123456789abcdef0123", "name": "docs-site", "owner": "freeCodeCamp-Universe",
    "visibility": "private", "status": "pending", "requestedBy": "octocat",
    "createdAt": "2026-11-27T10:00:00.123456Z", "updatedAt": "2026-11-27T10:00:00.123456Z",
    "description": "the docs",
}  # fmt: skip

REPO_CREATE_DESCRIPTION = (
    "Files a `pending` request for a repository in `GH_REPO_ORG`: `name` "
    "`^[a-zA-Z0-9][a-zA-Z0-9._-]{0,99}$` (`400 invalid_name`), `visibility` public or private "
    "(default private), `template` a repository name or empty (existence not checked), "
    "`description` at most 350 characters. One pending, approved or active request per name, "
    "case-insensitively (`409 already_exists`); if the holder is `active` but its repository "
    "is gone from GitHub, the holder is marked failed and the name reclaimed." + _REPO_GATED
)

REPO_APPROVE_DESCRIPTION = (
    "Moves a `pending` request to `approved` (with a `repo.approved` outbox event in the same "
    "transaction) and creates the repository with the GitHub App within a time budget under "
    "the API Gateway limit: `200` with `outcome: ok` and the `active` request, or "
    "`outcome: approved_failed` with the user-facing `error` (permission, unreadable "
    "template, name taken). If GitHub fails transiently or the budget runs out the request "
    "stays `approved`, the answer is `503 repo_create_retryable`, and the site worker "
    "finishes the creation from the event (approving again also resumes). Approvals of one "
    "request are serialized: concurrent ones wait, then answer `409 already_resolved`; "
    "the repository is never created twice." + _REPO_GATED
)

AUDIT_DESCRIPTION = f"""\
The cross-site audit trail, newest first (`occurredAt`, then `id`, descending). The caller must
be a member of `AUDIT_READ_AUTHZ_TEAM` in `GH_REPO_ORG`, checked before the query is parsed, so
nothing about the log or its configuration reaches anyone else. Filters are exact matches except
`since`; `limit` 0 or absent means {AUDIT_DEFAULT_LIMIT} and values above {AUDIT_MAX_LIMIT} are
clamped. `site`, `deployId`, `requestId` and `detail` are omitted when empty.
"""

_EMPTY = {"type": "string", "maxLength": 0}  # an empty query value counts as absent
_INT_QUERY = {"anyOf": [{"type": "integer", "minimum": 0, "maximum": 2**63 - 1}, _EMPTY]}

HEALTHZ = Doc(
        "healthz", "Health", "Liveness",
        "Always `200 {\"ok\": true}`; touches no dependency.",
        "none", "—", 200, "Health", {"ok": True}, (),
)  # fmt: skip

READYZ = Doc(
        "readyz", "Health", "Readiness",
        "Probes the bucket (a one-key listing of a prefix that never exists), Postgres (ping) "
        "and Redis (`PING`, only when `REDIS_URL` is set) concurrently, each within 5 s. The "
        "bucket decides: its failure answers `503 r2_unreachable`. A Postgres or Redis failure "
        "only degrades the answer (`\"degraded\": true`). GitHub is not probed.",
        "none", "—", 200, "Readiness",
        {"ready": True, "checks": {"bucket": "ok", "postgres": "ok", "redis": "unconfigured"}},
        ("r2_unreachable",),
)  # fmt: skip

OPENAPI_DOCUMENT = Doc(
        "openapiDocument", "Meta", "This API description",
        "The OpenAPI 3.1 document of every route (the source of `docs/api.md`). Built on the "
        "first request and cached for the life of the execution environment.",
        "none", "—", 200, {"type": "object", "description": "an OpenAPI 3.1 document"},
        None, (),
)  # fmt: skip

METRICS = Doc(
        "metrics", "Meta", "Prometheus metrics",
        "Prometheus text exposition computed from durable state: outbox backlog and the age of "
        "the oldest unpublished row, work-queue and DLQ depth, tombstones (pending moves, "
        "overdue), background runs by job and outcome, the last drift verdict. A source that "
        "cannot be read sets `artemis_metrics_source_up{source}` to 0 instead of failing.",
        "none", "—", 200, {"type": "string", "description": "the Prometheus text format"},
        None, (), media_type="text/plain",
)  # fmt: skip

WHOAMI = Doc(
        "whoami", "Identity",
        "The caller's login and the sites their teams own",
        "Lists the caller's teams in `GH_ORG` (cached) and returns every registered site that "
        "has one of them. `authorizedSites` is advisory: it counts any listed "
        "membership, while the per-site gate probes for an active one, and it covers per-site "
        "rights only, not the registry or audit gates.",
        "github", "any GitHub user", 200, "Whoami",
        {"login": "octocat", "authorizedSites": ["learn", "www"]},
        (*_BEARER, "insufficient_scope", "registry_read_failed"),
)  # fmt: skip

DEPLOY_INIT = Doc(
        "deployInit", "Deploys",
        "Start a deploy: a deploy id and its session token",
        "Validates `site` and `sha` first (so a malformed `sha` is reported before any "
        "authorization answer), then applies the per-site gate, mints the deploy id "
        "`YYYYMMDD-HHMMSS-<first 7 characters of sha>` on the UTC clock (on a collision with a "
        "pending deploy of the same site the time advances a second, up to 30 times) and signs "
        "the deploy-session token for it. Nothing is written to the bucket. Not idempotent: "
        "every call mints a new token, and usually a new id.\n\n"
        "The optional metadata (`branch`, `message`, `pr`, `repo`, `ciUrl`: where the deploy "
        "comes from) is checked with `site` and `sha`, before authorization: a field breaking "
        "its rule answers `400 invalid_metadata` naming it in `error.field` (a wrong JSON type, "
        "`400 bad_request`), and nothing is recorded. A message is never refused for its "
        "length: its first line is kept, cut to "
        f"{deploy_metadata.MESSAGE_MAX} characters. The metadata is recorded in the "
        "`deploy.init` audit detail and on the deploy's pending index row, which the deploy "
        "list shows (that row is best effort, as the audit row is: when its write fails the "
        "init still succeeds, and the deploy is listed without its metadata).\n\n"
        "Trusted publishing: the bearer may instead be a GitHub Actions OIDC token. It is "
        "verified against the issuer's published keys (RS256 only; `iss`, `aud`, `exp`, "
        "`nbf`, `iat` with a minute of leeway; each refusal has its own `oidc_*` code, and "
        "`503 oidc_issuer_unavailable` when the issuer's keys cannot be read), then its "
        "claims must match one of the site's trust rules (the repository by name and id, the "
        "workflow file, the environment and the ref pattern when the rule names them; a miss "
        "is `403 trust_*`, naming the first check the closest rule failed). Only then is the "
        "token spent: each token starts one deploy (`401 oidc_replayed` after). The session "
        "carries the rule, and finalize publishes only to the aliases the rule lists, never "
        "to production from a `pull_request` run (`403 trust_pull_request`, also answered "
        "here when the rule lists production alone). The audit actor is the run, "
        "`repo:<owner>/<name>:<workflow file>@run/<run id>`.",
        "publisher", "per-site (a member of one of the site's registry teams), or a trust rule "
        "of the site", 200,
        "InitResponse",
        {"deployId": "20260420-141522-abc1234", "jwt": "<token>",
         "expiresAt": "2026-04-20T14:30:22Z"},
        ("missing_bearer", "unauthenticated", "rate_limited", "upstream_unavailable", *_BODY,
         "invalid_metadata", *_OIDC, *_TRUST, "pg_read_failed", *_SITE_GATE,
         "jwt_sign_failed"),
        body=bodies.InitBody, body_limit=bodies.MANIFEST_LIMIT,
)  # fmt: skip

DEPLOY_UPLOAD = Doc(
        "deployUpload", "Deploys",
        "Upload one file (raw bytes, small files)", UPLOAD_DESCRIPTION,
        "session", "the token's site still has teams, and the granting team is one of them",
        200, "UploadResponse",
        {"received": "assets/app.js", "key": "www/deploys/20260420-141522-abc1234/assets/app.js"},
        (*_SESSION, "bad_request", "too_large", "pg_read_failed", "deploy_deleted",
         "deploy_busy", "deploy_finalized", "r2_put_failed"),
        body="binary",
        query=(
            Query("path", f"the file's path relative to the deploy root: {_UPLOAD_PATH_RULES}",
                  UPLOAD_PATH_SCHEMA, required=True),
        ),
)  # fmt: skip

DEPLOY_BUNDLE = Doc(
        "deployBundle", "Deploys",
        "Upload many small files in one tar archive", BUNDLE_DESCRIPTION,
        "session", "the token's site still has teams, and the granting team is one of them",
        200, "BundleResponse",
        {"received": ["index.html", "assets/app.js", "assets/app.css"], "files": 3,
         "bytes": 48213, "remaining": []},
        (*_SESSION, "bundle_invalid", "bundle_member_invalid", "bundle_duplicate",
         "bundle_too_many_members", "bundle_too_large", "too_large", "pg_read_failed",
         "deploy_deleted", "deploy_busy", "deploy_finalized", "r2_put_failed"),
        body="tar",
)  # fmt: skip

DEPLOY_PRESIGN_UPLOADS = Doc(
        "deployPresignUploads", "Deploys",
        "Presign direct uploads to the bucket (large files)", PRESIGN_DESCRIPTION,
        "session", "the token's site still has teams, and the granting team is one of them",
        200, "PresignResponse",
        {"uploads": [{"path": "media/intro.mp4",
                      "key": "www/deploys/20260420-141522-abc1234/media/intro.mp4",
                      "url": "https://s3.us-east-1.amazonaws.com/artemis-sites",
                      "fields": {"Content-Type": "video/mp4",
                                 "key": "www/deploys/20260420-141522-abc1234/media/intro.mp4",
                                 "policy": "<base64 policy>", "x-amz-signature": "<signature>"}}],
         "expiresAt": "2026-04-20T14:30:22Z", "maxBytes": UPLOAD_MAX_BYTES_DEFAULT},
        (*_SESSION, *_BODY, "pg_read_failed", "deploy_deleted", "deploy_busy",
         "deploy_finalized", "r2_put_failed"),
        body=bodies.UploadsBody, body_limit=bodies.MANIFEST_LIMIT,
)  # fmt: skip

DIGESTS_DESCRIPTION = f"""\
Incremental deploys: list files with their SHA-256 (lowercase hex) and size, 1 to
{MAX_DIGEST_FILES} per request (send a large manifest in several requests). For every file whose
content the site already holds in a finalized deploy that is not deleted, the server copies the
bytes inside the bucket into this deploy; the answer says which files it still needs.

- `copied`: the deploy now holds these files with these digests (copied by this call, or already
  held from an earlier upload or call). Do not send them.
- `upload`: send these files' bytes (a bundle, the upload route, or presigned POSTs with their
  `sha256`): no verified copy of their content exists in this site, or the copy failed (its
  source was deleted meanwhile, or no longer holds that content).
- `remaining`: this call's copy budget (at most {COPY_BATCH} copies or about
  {COPY_SECONDS:.0f} seconds) ran out before these; send them again.

Digests are never trusted: content is looked up only within the token's site, S3 computes the
digest of every copy and a copy that does not match is removed and asked for instead, and a
digest enters the site's content index only for bytes the server hashed itself (uploads,
bundles), S3 checked (presigned POSTs sent with `sha256`) or a verified copy. Finalize checks
copied files like uploaded ones. Paths follow the upload route's rules; a path listed twice
in one request takes its last entry. Refused like an upload once the deploy is finalized or deleted,
or while a finalize or delete of it runs.
"""

DEPLOY_DIGESTS = Doc(
        "deployDigests", "Deploys",
        "Send file digests; the server copies what the site already holds", DIGESTS_DESCRIPTION,
        "session", "the token's site still has teams, and the granting team is one of them",
        200, "DigestsResponse",
        {"upload": ["assets/app.4f2a.js"], "copied": ["index.html", "assets/logo.svg"],
         "remaining": []},
        (*_SESSION, *_BODY, "deploy_deleted", "deploy_busy", "deploy_finalized",
         "content_index_failed", "r2_copy_failed"),
        body=bodies.DigestsBody, body_limit=bodies.MANIFEST_LIMIT,
)  # fmt: skip

DEPLOY_FINALIZE = Doc(
        "deployFinalize", "Deploys",
        "Verify the manifest and publish the deploy to an alias", FINALIZE_DESCRIPTION,
        "session", "the token's site still has teams, and the granting team is one of them",
        200, "FinalizeResponse",
        {"url": "https://www.preview.freecode.camp", "deployId": "20260420-141522-abc1234",
         "mode": "preview"},
        (*_SESSION, *_BODY, "invalid_alias", "trust_pull_request", "trust_alias",
         "manifest_required", "missing_index",
         "deploy_busy", "deploy_lock_failed", "deploy_deleted", "verify_failed",
         "r2_list_failed", *_LOCK, "site_gone", "pg_read_failed", "preview_limit",
         "r2_put_failed", "index_write_failed", "content_index_failed"),
        body=bodies.FinalizeBody, body_limit=bodies.MANIFEST_LIMIT,
)  # fmt: skip

DEPLOY_LIST = Doc(
        "deployList", "Deploys", "List a site's deploys",
        "Every deploy of the site, oldest first (by id: ids start with their UTC time): those "
        "the bucket holds under the site's prefix (one delimited listing, so the cost follows "
        "the number of deploys, not of files), those only the index knows (an initialized "
        "deploy with no bytes yet), and deleted ones still restorable (in trash). A deploy "
        "purged for good is not listed.\n\n"
        "`deployId` and `actor` come first, as they always have. `state` is `pending` "
        "(initialized, not finalized, within the session's lifetime, JWT_TTL_SECONDS), "
        "`expired` (pending past it: nothing can finalize it, cleanup reclaims it), `live` "
        "(finalized; it serves only when an alias names it) or `tombstoned` (deleted, "
        "restorable); it is omitted for a deploy only the bucket shows, until reconcile "
        "indexes it. `aliases` lists every alias of the site naming the deploy. `createdAt`, "
        "`finalizedAt`, `files` and `bytes` are omitted when unknown (deploys from before "
        "they were recorded); `bytes` is the size at finalize (live) or at deletion "
        "(tombstoned). `branch`, `message`, `pr`, `repo` and `ciUrl` are what init was sent, "
        "omitted when not sent. `actor` is the latest finalizer's login (from the audit log, "
        "shown to members of the site's teams and of the audit team). When Postgres cannot "
        "be read the answer is the bucket's ids alone.",
        "github", "per-site", 200, "DeployRow",
        [{"deployId": "20260419-110000-old1234", "actor": "octocat", "state": "tombstoned",
          "createdAt": "2026-04-19T11:00:00Z", "finalizedAt": "2026-04-19T11:00:41Z",
          "files": 118, "bytes": 2048311, "aliases": [], "branch": "main",
          "message": "Add the donation page", "repo": "freeCodeCamp/www",
          "ciUrl": "https://github.com/freeCodeCamp/www/actions/runs/8812345"},
         {"deployId": "20260420-141522-abc1234", "actor": "octocat", "state": "live",
          "createdAt": "2026-04-20T14:15:22Z", "finalizedAt": "2026-04-20T14:16:03Z",
          "files": 120, "bytes": 2051977, "aliases": ["preview", "production"],
          "branch": "fix/footer-links", "message": "Fix the footer links", "pr": 512,
          "repo": "freeCodeCamp/www",
          "ciUrl": "https://github.com/freeCodeCamp/www/actions/runs/8813456"},
         {"deployId": "20260420-150102-def5678", "state": "pending",
          "createdAt": "2026-04-20T15:01:02Z", "aliases": [], "branch": "main"}],
        (*_BEARER, *_SITE_GATE, "r2_list_failed"),
        many=True,
)  # fmt: skip

ALIAS_READ = Doc(
        "aliasRead", "Aliases", "Read an alias",
        "`mode` is trimmed and lower-cased and must be `preview` or `production` "
        "(`400 bad_request`, checked before authorization). `404 no_alias` when the alias "
        "object is absent or empty. Read-only, takes no lock: use it to learn the outcome of a "
        "timed-out mutation and to obtain the value for `expectedCurrent`.",
        "github", "per-site", 200, "AliasResponse",
        {"site": "www", "mode": "production", "deployId": "20260420-141522-abc1234",
         "url": "https://www.freecode.camp"},
        (*_BEARER, "bad_request", *_SITE_GATE, "no_alias", "r2_get_failed"),
)  # fmt: skip

ALIAS_PROMOTE = Doc(
        "aliasPromote", "Aliases",
        "Point production at a deploy (default: the preview deploy)", PROMOTE_DESCRIPTION,
        "github", "per-site", 200, "AliasMove",
        {"url": "https://www.freecode.camp", "deployId": "20260420-141522-abc1234"},
        (*_BEARER, *_SITE_GATE, *_BODY, "invalid_alias", *_LOCK, "alias_drift", "r2_get_failed",
         "no_preview", "no_alias", "preview_moved", "missing_index", "deploy_incomplete",
         "r2_head_failed", "r2_put_failed", "index_write_failed"),
        body=bodies.PromoteBody, body_required=False, body_limit=bodies.SMALL_LIMIT,
)  # fmt: skip

ALIAS_ROLLBACK = Doc(
        "aliasRollback", "Aliases",
        "Point production at a past deploy", ROLLBACK_DESCRIPTION,
        "github", "per-site", 200, "AliasMove",
        {"url": "https://www.freecode.camp", "deployId": "20260419-110000-old1234"},
        (*_BEARER, *_SITE_GATE, *_BODY, *_LOCK, "deploy_missing", "r2_list_failed",
         "missing_index", "deploy_incomplete", "r2_head_failed", "alias_drift", "r2_get_failed",
         "r2_put_failed", "index_write_failed"),
        body=bodies.RollbackBody, body_limit=bodies.SMALL_LIMIT,
)  # fmt: skip

_PREVIEW_EXAMPLE = {
    "name": "pr-12", "deployId": "20260420-141522-abc1234",
    "url": "https://pr-12--www.preview.freecode.camp", "updatedAt": "2026-04-20T14:15:40Z",
    "updatedBy": "octocat", "expiresAt": "2026-05-04T14:15:40Z",
}  # fmt: skip

PREVIEW_LIST = Doc(
        "previewList", "Aliases", "List a site's named previews",
        "The site's named previews (the per-branch and per-pull-request aliases a finalize "
        "with `alias` publishes), by name, from the index: what each names, its URL, when and "
        "by whom it last moved, and `expiresAt` (`updatedAt` + `PREVIEW_TTL`), after which the "
        "site's next GC run removes it.",
        "github", "per-site", 200, "Preview", [_PREVIEW_EXAMPLE],
        (*_BEARER, *_SITE_GATE, "pg_read_failed"), many=True,
)  # fmt: skip

PREVIEW_READ = Doc(
        "previewRead", "Aliases", "Read a named preview",
        "The deploy the named preview's alias object names (what visitors are served), with "
        "its history from the index when the index agrees with the object (omitted otherwise). "
        "`404 no_alias` when the alias object is absent or empty. Read-only, takes no lock.",
        "github", "per-site", 200, "Preview", _PREVIEW_EXAMPLE,
        (*_BEARER, "invalid_alias", *_SITE_GATE, "no_alias", "r2_get_failed", "pg_read_failed"),
)  # fmt: skip

PREVIEW_REMOVE = Doc(
        "previewRemove", "Aliases", "Unpublish a named preview",
        "Under the site lock: deletes the named preview's alias object (it stops serving within "
        "the serve cache TTL), then its row, stamping its deploy released and writing the "
        "`site.changed` event in one transaction (`502 index_write_failed`: the preview is "
        "already unpublished; repeating the call, or reconcile, finishes the index). The deploy "
        "stays, under normal retention. `404 no_alias` when neither the object nor a row exists.",
        "github", "per-site", 200, "PreviewRemoved",
        {"name": "pr-12", "deployId": "20260420-141522-abc1234", "status": "removed"},
        (*_BEARER, "invalid_alias", *_SITE_GATE, *_LOCK, "r2_get_failed", "pg_read_failed",
         "no_alias", "r2_delete_failed", "index_write_failed"),
)  # fmt: skip

DEPLOY_DELETE = Doc(
        "deployDelete", "Deletion",
        "Move a deploy to trash", DELETE_DEPLOY_DESCRIPTION,
        "github", "per-site", 200, "DeployDeleted",
        {"site": "www", "deployId": "20260419-110000-old1234", "status": "tombstoned",
         "moved": 42},
        (*_BEARER, *_SITE_GATE, "bad_request", "deploy_busy", "deploy_lock_failed", *_LOCK,
         "deploy_aliased", "r2_get_failed", "deploy_not_found", "tombstone_record_failed",
         "r2_move_failed"),
)  # fmt: skip

DEPLOY_RESTORE = Doc(
        "deployRestore", "Deletion",
        "Bring a trashed deploy back", RESTORE_DESCRIPTION,
        "github", "per-site", 200, "DeployRestored",
        {"site": "www", "deployId": "20260419-110000-old1234", "status": "restored",
         "moved": 42, "bytes": 123456},
        (*_BEARER, *_SITE_GATE, "bad_request", *_LOCK, "registry_read_failed", "site_gone",
         "already_purged", "deploy_aliased", "r2_get_failed", "pg_read_failed",
         "restore_target_occupied", "r2_has_prefix_failed", "tombstone_record_failed",
         "r2_move_failed", "r2_list_failed", "restore_failed"),
)  # fmt: skip

TRASH_LIST = Doc(
        "trashList", "Deletion", "List a site's trash",
        "The site's tombstones, newest first. `expiresAt` is `trashedAt` + "
        "`CLEANUP_RECOVERY_DAYS`: the earliest time the hard delete may remove the bytes. After "
        "a purge and re-registration the site-wide tombstone appears with `deployId: \"\"`.",
        "github", "per-site", 200, "TrashEntry",
        [{"deployId": "20260419-110000-old1234", "trashedAt": "2026-04-20T14:15:22Z",
          "expiresAt": "2026-04-27T14:15:22Z", "bytes": 123456}],
        (*_BEARER, *_SITE_GATE, "pg_read_failed"), many=True,
)  # fmt: skip

SITES_LIST = Doc(
        "sitesList", "Registry", "List registered sites",
        "Reads the registry itself (not the 60 s snapshot), sorted by slug. Members of "
        "`REGISTRY_AUTHZ_TEAM` see every site; other callers only sites with a team they "
        "belong to. `createdBy` is shown to members of the site's teams and of "
        "`AUDIT_READ_AUTHZ_TEAM`, and is `\"\"` for everyone else (a failed visibility probe "
        "blanks it, never fails the list).",
        "github", "any GitHub user (rows filtered by team)", 200, "SiteRow",
        [{"slug": "www", "teams": ["staff"], "createdAt": "2026-04-20T14:15:22.123456Z",
          "updatedAt": "2026-04-20T14:15:22.123456Z", "createdBy": "octocat"}],
        (*_BEARER, "registry_read_failed", "insufficient_scope"), many=True,
)  # fmt: skip

SITE_REGISTER = Doc(
        "siteRegister", "Registry", "Register a site",
        f"Registers `slug` (`{SLUG_PATTERN}` and not a reserved name, else "
        f"`400 invalid_slug`) with its teams (each `{TEAM_PATTERN}`, else `400 invalid_team`; "
        "absent or empty means `[REGISTRY_AUTHZ_TEAM]`). `409 already_exists` for a registered "
        "slug. The site can be deployed to at once through any Lambda environment. The answer "
        "always carries "
        "`createdBy` (the caller). Registering a bare-deleted slug adopts the deploys still in "
        "the bucket.",
        "github", "registry (`REGISTRY_AUTHZ_TEAM`)", 201, "SiteRow",
        {"slug": "www", "teams": ["staff"], "createdAt": "2026-04-20T14:15:22.123456Z",
         "updatedAt": "2026-04-20T14:15:22.123456Z", "createdBy": "octocat"},
        (*_BEARER, *_TEAM_GATE, *_BODY, "invalid_slug", "invalid_team", "already_exists",
         "registry_write_failed"),
        body=bodies.RegisterBody, body_limit=bodies.SMALL_LIMIT,
)  # fmt: skip

SITE_UPDATE = Doc(
        "siteUpdate", "Registry", "Replace a site's teams",
        f"The slug must match `{SLUG_PATTERN}` and not be reserved (`400 invalid_slug`); "
        f"`teams` must list at least one team, each `{TEAM_PATTERN}` (`400 invalid_team`; "
        "removing a site is DELETE's job). Under the site lock, replaces the list and sets "
        "`updatedAt`; `404 not_found` for an unregistered slug. `createdBy` follows the "
        "visibility rule of `GET /api/sites` (the site's teams and the audit team).",
        "github", "registry (`REGISTRY_AUTHZ_TEAM`)", 200, "SiteRow",
        {"slug": "www", "teams": ["staff", "web"], "createdAt": "2026-04-20T14:15:22.123456Z",
         "updatedAt": "2026-04-21T09:00:00.5Z", "createdBy": ""},
        (*_BEARER, *_TEAM_GATE, "invalid_slug", *_BODY, "invalid_team", *_LOCK,
         "registry_write_failed", "not_found"),
        body=bodies.TeamsBody, body_limit=bodies.SMALL_LIMIT,
        path_schemas=(("slug", {"type": "string", "pattern": SLUG_PATTERN,
                                "not": {"enum": _RESERVED}}),),
)  # fmt: skip

SITE_DELETE = Doc(
        "siteDelete", "Registry",
        "Deregister a site, or purge it with ?purge=true", SITE_DELETE_DESCRIPTION,
        "github", "registry (`REGISTRY_AUTHZ_TEAM`)", 200, "SitePurged",
        {"slug": "www", "status": "purged", "moved": 812},
        (*_BEARER, *_TEAM_GATE, "bad_request", "invalid_slug", *_LOCK, "registry_read_failed",
         "not_found", "tombstone_record_failed", "r2_move_failed", "r2_verify_failed",
         "r2_move_incomplete", "registry_write_failed"),
        query=(
            Query("purge", "`true` (any case): purge the site; absent or `false`: bare delete; "
                  "anything else: `400 bad_request`", {"type": "string", "pattern": PURGE_PATTERN}),
        ),
        response_description="purge=true: the site's tree moved to trash and deregistered",
        alternative=(204, "bare delete: the site is unpublished and deregistered; no body"),
)  # fmt: skip

_TRUST_EXAMPLE: dict[str, Any] = {
    "id": "tr_0123456789abcdef0123", "site": "www", "repository": "octo-org/www",
    "repositoryId": 123456789, "workflow": ".github/workflows/deploy.yml",
    "ref": "refs/heads/main", "aliases": ["production", "preview", "pr-*"],
    "createdAt": "2026-04-20T14:15:22.123456Z", "createdBy": "octocat",
}  # fmt: skip

TRUST_LIST = Doc(
        "trustList", "Registry", "List a site's trust rules",
        "The rules that will let GitHub Actions runs publish to the site, oldest first (the "
        "order a token is matched in). Readable by `REGISTRY_AUTHZ_TEAM` and by the site's "
        f"teams. The slug must match `{SLUG_PATTERN}` (`400 invalid_slug`). Callers outside "
        "the registry team pass the per-site gate (so an unregistered slug is "
        "`403 site_unauthorized` for them); for the registry team it is `404 not_found`.",
        "github", "registry (`REGISTRY_AUTHZ_TEAM`) or the site's teams", 200, "TrustRule",
        [_TRUST_EXAMPLE],
        (*_BEARER, "invalid_slug", *_SITE_GATE, "not_found"), many=True,
)  # fmt: skip

TRUST_ADD = Doc(
        "trustAdd", "Registry", "Add a trust rule to a site",
        "Adds a rule: a workflow run of `repository` (matched by name and by `repositoryId`), "
        "from `workflow`, optionally only in `environment` and on a ref matching `ref`, may "
        "publish to the listed `aliases`. Whatever a rule lists, a `pull_request` or "
        "`pull_request_target` run never publishes to production. A refused field is "
        "`400 invalid_trust_rule` with `error.field` naming it; `409 already_exists` for an "
        f"identical rule; `409 trust_rule_limit` past {trust_rules.MAX_RULES_PER_SITE} rules; "
        "`404 not_found` for an unregistered slug. Writes a `site.trust.add` audit row.",
        "github", "registry (`REGISTRY_AUTHZ_TEAM`)", 201, "TrustRule", _TRUST_EXAMPLE,
        (*_BEARER, *_TEAM_GATE, "invalid_slug", *_BODY, "invalid_trust_rule", "not_found",
         "already_exists", "trust_rule_limit", "registry_write_failed"),
        body=bodies.TrustRuleBody, body_limit=bodies.SMALL_LIMIT,
        links=(("remove", "trustRemove", "rule_id", "id"),),
)  # fmt: skip

TRUST_REMOVE = Doc(
        "trustRemove", "Registry", "Remove a trust rule",
        "Removes the rule and answers it. `404 not_found` for an unregistered slug, "
        "`404 trust_rule_not_found` for an id the site does not hold (any id not "
        "`^tr_[0-9a-f]{20}$` included). Writes a `site.trust.remove` audit row.",
        "github", "registry (`REGISTRY_AUTHZ_TEAM`)", 200, "TrustRule", _TRUST_EXAMPLE,
        (*_BEARER, *_TEAM_GATE, "invalid_slug", "registry_write_failed", "not_found",
         "trust_rule_not_found"),
)  # fmt: skip

_HOOK_EXAMPLE: dict[str, Any] = {
    "id": "hk_0123456789abcdef0123", "site": "www", "url": "https://ci.example.org/artemis",
    "events": ["deploy.finalized", "alias.moved"], "createdAt": "2026-04-20T14:15:22.123456Z",
    "createdBy": "octocat",
}  # fmt: skip
_HOOK_GATE = ("invalid_slug", *_TEAM_GATE, *_SITE_GATE)
_HOOK_URL_CODES = ("hook_url_invalid", "hook_url_scheme", "hook_url_unresolvable",
                   "hook_url_forbidden_address")  # fmt: skip
_HOOK_GATE_NOTE = (
    "For the site's teams (the per-site gate) and the registry team (`REGISTRY_AUTHZ_TEAM`). "
    f"The slug must match `{SLUG_PATTERN}` (`400 invalid_slug`); an unregistered one is "
    "`404 not_found` for the registry team, `403 site_unauthorized` for others. "
)

HOOK_LIST = Doc(
        "hookList", "Webhooks", "List a site's webhooks",
        _HOOK_GATE_NOTE + "Oldest first. The signing secret is never shown again after the "
        "add.",
        "github", "the site's teams or the registry team", 200, "Hook", [_HOOK_EXAMPLE],
        (*_BEARER, *_HOOK_GATE, "not_found", "registry_read_failed"), many=True,
)  # fmt: skip

HOOK_ADD = Doc(
        "hookAdd", "Webhooks", "Add a webhook to a site",
        _HOOK_GATE_NOTE + "Events are delivered as signed POSTs to `url`, at least once, in "
        "order per webhook, retried with exponential backoff for `HOOK_RETRY_WINDOW` (24 h), "
        "then recorded as failed. `events` lists any of `deploy.finalized`, `alias.moved`, "
        "`deploy.deleted`, `deploy.restored`, `site.deleted` (`400 invalid_hook_events`). "
        "`url` must be an absolute URL without user info or fragment (`422 hook_url_invalid`), "
        "`https` (`422 hook_url_scheme`; plain `http` to a loopback address only where "
        "`HOOK_ALLOW_LOOPBACK_HTTP` is set), and its host must resolve (`422 "
        "hook_url_unresolvable`) to public addresses only: private, loopback, link-local, "
        "cloud-metadata and other non-public ranges, IPv4 and IPv6 (IPv4-mapped included), "
        "are `422 hook_url_forbidden_address`; the notifier checks again at every attempt. "
        f"At most {hook_events.MAX_HOOKS_PER_SITE} per site (`409 hook_limit`). The answer "
        "carries `secret`, the signing key of `X-Artemis-Signature`, this once. Writes a "
        "`site.hook.add` audit row (without the secret).",
        "github", "the site's teams or the registry team", 201, "HookCreated",
        {**_HOOK_EXAMPLE, "secret": "whsec_…"},
        (*_BEARER, *_HOOK_GATE, *_BODY, "invalid_hook_events", *_HOOK_URL_CODES, "not_found",
         "hook_limit", "registry_write_failed"),
        body=bodies.HookBody, body_limit=bodies.SMALL_LIMIT,
        links=(("remove", "hookRemove", "hook_id", "id"), ("ping", "hookPing", "hook_id", "id"),
               ("deliveries", "hookDeliveries", "hook_id", "id")),
)  # fmt: skip

HOOK_REMOVE = Doc(
        "hookRemove", "Webhooks", "Remove a webhook",
        _HOOK_GATE_NOTE + "Removes the webhook and answers it; its pending deliveries are "
        "dropped, its delivery log goes with it. `404 hook_not_found` for an id the site does "
        "not hold (any id not `^hk_[0-9a-f]{20}$` included). Writes a `site.hook.remove` "
        "audit row.",
        "github", "the site's teams or the registry team", 200, "Hook", _HOOK_EXAMPLE,
        (*_BEARER, *_HOOK_GATE, "not_found", "hook_not_found", "registry_write_failed"),
)  # fmt: skip

HOOK_PING = Doc(
        "hookPing", "Webhooks", "Send a test event",
        _HOOK_GATE_NOTE + "Queues a `ping` event (`data`: `hookId`, `actor`) for this webhook "
        "alone, through the same durable, signed delivery; the delivery log shows how it went. "
        "Writes a `site.hook.ping` audit row.",
        "github", "the site's teams or the registry team", 202, "HookQueued",
        {"deliveryId": "dlv_0123456789abcdef0123", "status": "queued"},
        (*_BEARER, *_HOOK_GATE, "not_found", "hook_not_found", "registry_write_failed"),
)  # fmt: skip

HOOK_DELIVERIES = Doc(
        "hookDeliveries", "Webhooks", "A webhook's recent deliveries",
        _HOOK_GATE_NOTE + "The latest 50 deliveries, newest first, each with every attempt: "
        "when, the receiver's status or the error, and how long it took.",
        "github", "the site's teams or the registry team", 200, "HookDelivery",
        [{"id": "dlv_0123456789abcdef0123", "eventId": "evt_0123456789abcdef0123",
          "event": "deploy.finalized", "createdAt": "2026-04-20T14:15:22.123456Z",
          "state": "delivered", "attempts": 2, "finishedAt": "2026-04-20T14:15:33.5Z",
          "log": [{"attempt": 1, "at": "2026-04-20T14:15:22.9Z", "status": 500,
                   "error": "status 500", "durationMs": 41},
                  {"attempt": 2, "at": "2026-04-20T14:15:33.5Z", "status": 200,
                   "durationMs": 38}]}],
        (*_BEARER, *_HOOK_GATE, "not_found", "hook_not_found", "registry_read_failed"),
        many=True,
)  # fmt: skip

HOOK_REDELIVER = Doc(
        "hookRedeliver", "Webhooks", "Deliver again",
        _HOOK_GATE_NOTE + "Sends a delivery again, with the same `X-Artemis-Delivery` id and "
        "the same body (a receiver that has it can drop it), as a new round of attempts. "
        "`404 delivery_not_found` for a delivery the webhook does not hold. Writes a "
        "`site.hook.redeliver` audit row.",
        "github", "the site's teams or the registry team", 202, "HookQueued",
        {"deliveryId": "dlv_0123456789abcdef0123", "status": "queued"},
        (*_BEARER, *_HOOK_GATE, "not_found", "hook_not_found", "delivery_not_found",
         "registry_write_failed"),
)  # fmt: skip

REPO_CREATE = Doc(
        "repoCreate", "Repos", "Request a repository", REPO_CREATE_DESCRIPTION,
        "github", "repo create (`REPO_CREATE_AUTHZ_TEAM` in `GH_REPO_ORG`)", 201, "RepoRow",
        _REPO_EXAMPLE,
        (*_BEARER, *_TEAM_GATE, *_BODY, "invalid_name", "invalid_visibility", "invalid_template",
         "invalid_description", "already_exists", "repo_store_failed", "not_found"),
        body=bodies.RepoCreateBody, body_limit=bodies.SMALL_LIMIT,
        links=(("read", "repoGet", "request_id", "id"),
               ("approve", "repoApprove", "request_id", "id"),
               ("reject", "repoReject", "request_id", "id"),
               ("delete", "repoDelete", "request_id", "id")),
)  # fmt: skip

REPO_LIST = Doc(
        "repoList", "Repos", "List repo requests",
        "Oldest first. `status` filters (default `pending`; `all` for every row); `mine=1` or "
        "`true` keeps the caller's own requests. Actor fields are blank unless the caller is "
        "in `AUDIT_READ_AUTHZ_TEAM`." + _REPO_GATED,
        "github", "any GitHub user", 200, "RepoRow", [_REPO_EXAMPLE],
        (*_BEARER, "invalid_status", "repo_store_failed", "not_found"), many=True,
        query=(
            Query("status", "pending (default, also for an empty value), approved, active, "
                  "rejected, failed or all",
                  {"type": "string",
                   "enum": ["", "pending", "approved", "active", "rejected", "failed", "all"]}),
            Query("mine", "`1` or `true`: only the caller's requests", {"type": "string"}),
        ),
)  # fmt: skip

REPO_TEMPLATES = Doc(
        "repoTemplates", "Repos", "List template repositories",
        "Template repositories of `GH_REPO_ORG` the App can read, sorted, cached 5 minutes. "
        "Never fails: any error answers an empty list, so clients fall back to free text."
        + _REPO_GATED,
        "github", "any GitHub user", 200, "RepoTemplates", {"templates": ["site-template"]},
        (*_BEARER, "not_found"),
)  # fmt: skip

REPO_GET = Doc(
        "repoGet", "Repos", "Read a repo request",
        "One request; actor fields blank unless the caller is in the audit team." + _REPO_GATED,
        "github", "any GitHub user", 200, "RepoRow", _REPO_EXAMPLE,
        (*_BEARER, "not_found", "repo_store_failed"),
)  # fmt: skip

REPO_APPROVE = Doc(
        "repoApprove", "Repos",
        "Approve a request: create the repository", REPO_APPROVE_DESCRIPTION,
        "github", "repo approve (`REPO_APPROVE_AUTHZ_TEAM` in `GH_REPO_ORG`)", 200, "RepoApproval",
        {"outcome": "ok", "request": {**_REPO_EXAMPLE, "status": "active",
                                      "url": "https://github.com/freeCodeCamp-Universe/docs-site",
                                      "approver": "octocat"}},
        (*_BEARER, *_TEAM_GATE, "not_found", "already_resolved", "repo_create_retryable",
         "repo_store_failed", *_LOCK),
)  # fmt: skip

REPO_REJECT = Doc(
        "repoReject", "Repos", "Reject a request",
        "Optional body `{reason}` (at most 350 characters, else `400 invalid_reason`); only a "
        "`pending` request (`409 already_resolved` otherwise). Releases the name." + _REPO_GATED,
        "github", "repo approve (`REPO_APPROVE_AUTHZ_TEAM` in `GH_REPO_ORG`)", 200, "RepoRow",
        {**_REPO_EXAMPLE, "status": "rejected", "rejectReason": "duplicate"},
        (*_BEARER, *_TEAM_GATE, *_BODY, "invalid_reason", "not_found", "already_resolved",
         "repo_store_failed"),
        body=bodies.RejectBody, body_required=False, body_limit=bodies.SMALL_LIMIT,
)  # fmt: skip

REPO_DELETE = Doc(
        "repoDelete", "Repos", "Delete a request",
        "Removes the row whatever its status, releasing the name; never touches GitHub."
        + _REPO_GATED,
        "github", "repo approve (`REPO_APPROVE_AUTHZ_TEAM` in `GH_REPO_ORG`)", 204, None, None,
        (*_BEARER, *_TEAM_GATE, "not_found", "repo_store_failed"),
)  # fmt: skip

AUDIT_LIST = Doc(
        "auditList", "Audit", "Read the audit log", AUDIT_DESCRIPTION,
        "github", "audit read (`AUDIT_READ_AUTHZ_TEAM` in `GH_REPO_ORG`)", 200, "AuditRow",
        [{"id": 7177, "occurredAt": "2026-08-21T10:00:00.123456Z", "actor": "octocat",
          "action": "deploy.finalize", "site": "www", "deployId": "20260821-095955-abc1234",
          "outcome": "success", "requestId": "9f2c4e1a0b7d3c5e8f6a2b1c",
          "detail": {"mode": "production", "bytes": 12345, "files": 31}}],
        (*_BEARER, *_TEAM_GATE, "invalid_since", "invalid_limit", "invalid_offset",
         "audit_read_failed"),
        many=True,
        query=(
            Query("site", "exact match on the row's site (a slug)", {"type": "string"}),
            Query("actor", "exact match on the actor", {"type": "string"}),
            Query("action", "exact match on the action, e.g. `site.promote`", {"type": "string"}),
            Query("since", "rows with `occurredAt` ≥ since; RFC 3339 (a `+` offset must be "
                  "sent as `%2B`), else `400 invalid_since`",
                  {"anyOf": [{"type": "string", "format": "date-time"}, _EMPTY]}),
            Query("limit", f"page size; 0 or absent → {AUDIT_DEFAULT_LIMIT}, above "
                  f"{AUDIT_MAX_LIMIT} → {AUDIT_MAX_LIMIT}; not an integer ≥ 0 → "
                  "`400 invalid_limit`", _INT_QUERY),
            Query("offset", "rows to skip (default 0); not an integer ≥ 0 → "
                  "`400 invalid_offset`", _INT_QUERY),
        ),
)  # fmt: skip


PATH_PARAMETERS: dict[str, dict[str, Any]] = {
    "request_id": {
        "description": "the repo request's id, `req_` + 20 lower-case hex characters (any "
        "other value is `404 not_found`)",
        "schema": {"type": "string", "pattern": REPO_REQUEST_ID_PATTERN},
    },
    "deploy_id": {
        "description": "the deploy id (`YYYYMMDD-HHMMSS-<sha prefix>`); on the session routes "
        "it must equal the token's `deployId` (`403 jwt_wrong_deploy`)",
        "schema": {"type": "string", "pattern": DEPLOY_ID_PATTERN},
    },
    "site": {
        "description": "the site's registry slug, taken as given (the per-site gate decides)",
        "schema": {"type": "string"},
    },
    "hook_id": {
        "description": "the webhook's id, `hk_` + 20 lower-case hex characters (any other "
        "value is `404 hook_not_found`)",
        "schema": {"type": "string", "pattern": _ecma(hook_events.HOOK_ID_RE)},
    },
    "delivery_id": {
        "description": "the delivery's id, `dlv_` + 20 lower-case hex characters (any other "
        "value is `404 delivery_not_found`)",
        "schema": {"type": "string", "pattern": _ecma(hook_events.DELIVERY_ID_RE)},
    },
    "rule_id": {
        "description": "the trust rule's id, `tr_` + 20 lower-case hex characters (any other "
        "value is `404 trust_rule_not_found`)",
        "schema": {"type": "string", "pattern": _ecma(trust_rules.RULE_ID_RE)},
    },
    "slug": {
        "description": f"the site's registry slug, `{SLUG_PATTERN}`",
        "schema": {"type": "string", "pattern": SLUG_PATTERN},
    },
    "mode": {
        "description": "`preview` or `production` (trimmed, case-insensitive)",
        "schema": {"type": "string", "pattern": MODE_PATTERN},
    },
    "name": {
        "description": f"a named preview, `{NAMED_ALIAS_PATTERN}`, not `production` or `preview` "
        "(anything else is `400 invalid_alias`, checked before authorization)",
        "schema": _NAMED_ALIAS,
    },
}

SECURITY_SCHEMES: dict[str, dict[str, str]] = {
    "githubToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "a GitHub token (PAT, OAuth or device-flow token), validated "
        "with GitHub on every request (cached by token hash)",
    },
    "githubActions": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "a GitHub Actions OIDC token (RS256, from `GH_OIDC_ISSUER`, audience "
        "`GH_OIDC_AUDIENCE`), accepted once: starts a deploy for a site one of whose trust "
        "rules the run's claims match; any other route refuses it (`403 oidc_route`)",
    },
    "deploySession": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "the deploy-session token `POST /api/deploy/init` returns",
    },
}
REQUEST_ID_PARAMETER: dict[str, Any] = {
    "name": "X-Request-ID",
    "in": "header",
    "required": False,
    "description": f"echoed when it matches `{REQUEST_ID_PATTERN}`; any other "
    "value is replaced by a minted id, never refused",
    "schema": {"type": "string"},
}

GATE_NOTE = {
    "github": "GitHub token",
    "publisher": "GitHub token, or a GitHub Actions OIDC token a trust rule admits",
    "session": "deploy-session token",
    "none": "none",
}

INFO_DESCRIPTION = f"""\
Artemis deploys static sites to S3: a client starts a deploy (`POST /api/deploy/init`),
uploads its files, and finalizes it onto the site's preview or production alias; aliases,
deletion, the site registry and the audit log have their own routes. This description is
generated from the routes (`artemis.openapi`); `GET /api/openapi.json` serves it.

### Credentials

Two credentials, two disjoint route groups, no fallback between them: a GitHub token on a
session route fails as `403 jwt_invalid`, a session token on a GitHub route as
`401 unauthenticated`.

* **GitHub token** (`githubToken`): a PAT, OAuth/device-flow or Actions-derived token, on every
  `/api` route except the three deploy-session routes. It is validated with GitHub
  (`GET /user`) before anything else, including body parsing: `401 unauthenticated`,
  `429 rate_limited` or `503 upstream_unavailable`. Then the route's gate probes team
  membership (`403 user_unauthorized`, `403 insufficient_scope` when the token cannot read
  membership, `429`, `503`). Answers are cached by token hash (positive for
  `GH_MEMBERSHIP_CACHE_TTL`, default 5 min; negative for 30 s).
* **Deploy-session token** (`deploySession`): the `jwt` returned by `POST /api/deploy/init`,
  an HS256 JWT for one login, site, deploy id and the registry team that granted it, valid
  for `JWT_TTL_SECONDS` (default {JWT_TTL_DEFAULT} s) until `expiresAt`. It authorizes
  `PUT …/upload`, `POST …/uploads` and `POST …/finalize` of that deploy only
  (`403 jwt_wrong_deploy` for another id), never contacts GitHub, and fails as
  `401 jwt_expired` once expired or `403 jwt_invalid` otherwise. Each use re-checks that the
  site still has teams (`403 site_unauthorized`) and that the granting team is still one of
  them (`403 user_unauthorized`).

Both travel as `Authorization: Bearer <token>`: exactly `Bearer`, capital B, one space, then a
non-empty token without spaces, tabs, CR or LF (spaces and tabs around the whole value are
ignored). Anything else, including a missing header, answers `401 missing_bearer`.

### Error envelope

Every error Artemis answers is JSON:

```json
{{"error": {{"code": "alias_drift", "message": "production alias changed since you read it"}},
 "site": "www", "current": "20260421-091807-def5678"}}
```

`code` is the contract; `message` is human text that may change. Some codes add fields inside
`error` (`missing` for `verify_failed`, `hint` for `missing_index` and some `too_large`) or
beside it (`site` and
`current` for `alias_drift`; `site`, `deployId` and `alias` for `deploy_aliased`). A failing
dependency (bucket, Postgres) answers `502` with a code naming the operation (`r2_put_failed`,
`registry_write_failed`, …) and a generic message. An unexpected failure answers
`500 internal_error`. Unknown paths answer `404 not_found`; a known path with another method
`405 method_not_allowed` with an `Allow` header.

### Request ids

Every response, errors included, carries `X-Request-ID`. A request's own `X-Request-ID` is
echoed when it matches `{REQUEST_ID_PATTERN}`; otherwise Artemis mints 24 lowercase hex
characters. The id is in the logs and in every audit row the request writes.

### Request bodies

JSON bodies are decoded whatever the `Content-Type`; unknown fields are ignored; only the first
JSON value is read. A body that is not a JSON object of the expected types answers
`400 bad_request`, as does an empty body where one is required (promote's is optional), a
body nesting arrays or objects more than {bodies.MAX_DEPTH} levels deep, and a number too long
to convert (over 4,300 digits).
Limits: {bodies.MANIFEST_LIMIT // (1024 * 1024)} MiB for init, finalize and uploads (they
may carry a file manifest), {bodies.SMALL_LIMIT // 1024} KiB for every other JSON body; over
the limit → `413 too_large`. Responses are `application/json`; `204` has no body. Timestamps are
RFC 3339 UTC, at second precision (`expiresAt`, `trashedAt`) or full precision (registry and
audit rows).

### Body ceiling and direct uploads

Every request passes through API Gateway (HTTP API, payloads up to 10 MB) into a synchronous
Lambda invocation (request events up to 6 MB, headers included), and binary bodies arrive
base64-encoded, 4/3 larger. So a single request can carry about 4.5 MB of binary file, or a
JSON body just under 6 MB, even where Artemis's own limit is higher (the 8 MiB manifest limit,
`UPLOAD_MAX_BYTES`). Requests above the ceiling are refused before Artemis sees them, with
API Gateway's or Lambda's own status and a body that is not the envelope. Clients (the
`artemis` CLI, universe-cli) should send any file above ~4 MB as a direct upload rather than
rely on that answer. The local gateway answers an upload above the ceiling with
`413 too_large` and a `hint`, so the mistake shows in a local run too.

Upload files above ~4 MB with **direct uploads**: `POST /api/deploy/{{deploy_id}}/uploads`
returns one presigned POST per file (exact key, 0..`UPLOAD_MAX_BYTES` bytes, expiring with the
session, at most an hour), and the client sends each file straight to the bucket. Finalize
verifies every file the same way whichever route uploaded it.

### Consistency

Mutations that reach the per-site lock (finalize, promote, rollback, PATCH, deletes, restore)
complete even if the client disconnects; after a timeout, read the alias or the registry to
learn the outcome. A lock held by another operation answers `409 site_locked` once the wait
ends: 30 s, or sooner so that the answer arrives before the function's time runs out.
A site or team added to the registry authorizes at once in every execution environment; a
removed one stops authorizing within 60 s.
"""

TAGS: tuple[tuple[str, str], ...] = (
    ("Health", "Liveness and readiness; no authentication."),
    ("Meta", "This description."),
    ("Identity", "Who the caller is."),
    ("Deploys", "The deploy lifecycle: init, upload (or direct uploads), finalize; the list."),
    ("Aliases", "Read, promote and roll back the production and preview aliases."),
    ("Deletion", "Deploy delete, restore and the trash listing."),
    ("Registry", "Sites and the teams that manage them."),
    ("Webhooks", "Signed deliveries of a site's events to URLs its teams choose."),
    ("Repos", "Self-service repository requests, created through a GitHub App (feature-gated)."),
    ("Audit", "The append-only audit log."),
)
