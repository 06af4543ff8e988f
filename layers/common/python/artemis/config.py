"""The settings models: the environment variables, validated once at start.

A bad value stops start-up with one line naming the variable and the rule it broke; secret
values never appear in a message. Each function loads the model of what its code reads (see
the table above `DatabaseSettings`), so it neither validates nor fetches anything else.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from functools import cached_property
from ipaddress import ip_address
from typing import Any, ClassVar, Literal, Self, TypeVar, overload
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from artemis.durations import DurationError, format_duration, parse_duration
from artemis.keys import (
    KeyLayout,
    KeyLayoutError,
    check_deploy_prefix_format,
    check_named_url_format,
    check_url_format,
)
from artemis.site_names import DEFAULT_RESERVED_SLUGS

LogLevel = Literal["debug", "info", "warn", "error"]
_INT = re.compile(r"-?[0-9]+")
_DIGITS = re.compile(r"[0-9]+")
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_PEM_HEADERS = ("-----BEGIN RSA PRIVATE KEY-----", "-----BEGIN PRIVATE KEY-----")
# An OIDC audience is compared byte for byte with a token's `aud`: printable ASCII, no spaces.
_AUDIENCE = re.compile(r"[\x21-\x7e]{1,255}")


# Key types an HMAC secret must not look like (the JWT library's own list).
_SSH_KEY_PREFIXES = (
    "ssh-ed25519", "ssh-rsa", "ssh-dss",
    "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521",
)  # fmt: skip


class ConfigError(Exception):
    """One invalid variable. str() is the single line printed at start-up."""

    def __init__(self, variable: str, rule: str) -> None:
        super().__init__(f"invalid configuration: {variable}: {rule}")
        self.variable = variable
        self.rule = rule


class _Invalid(ValueError):
    """Raised inside validators; carries the variable so model-level checks can name it."""

    def __init__(self, variable: str, rule: str) -> None:
        super().__init__(rule)
        self.variable = variable
        self.rule = rule


# --- value parsers (each returns the typed value or raises ValueError with the rule) -------


def _integer(raw: str, *, minimum: int, maximum: int | None = None) -> int:
    if not _INT.fullmatch(raw):
        raise ValueError("must be a base-10 integer")
    value = int(raw)
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
        raise ValueError(f"must be an integer {bound} (got {value})")
    return value


def _duration(raw: str, *, positive: bool) -> float:
    try:
        seconds = parse_duration(raw)
    except DurationError:
        raise ValueError("must be a Go duration such as 45s, 72h or 1h30m") from None
    if seconds < 0 or (positive and seconds == 0):
        raise ValueError("must be a duration > 0" if positive else "must be a duration >= 0")
    return seconds


def _boolean(raw: str) -> bool:
    return raw.lower() in ("1", "true")


def _not_blank(raw: str) -> str:
    if not raw.strip():
        raise ValueError("must not be whitespace only")
    return raw


def _http_url(raw: str, *, loopback_http_only: bool) -> str:
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an absolute http(s) URL with a host")
    if parts.username is not None or parts.password is not None:
        raise ValueError("must not carry user info")
    if loopback_http_only and parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise ValueError("http is allowed only for localhost or a loopback address")
    return raw.rstrip("/")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False


def _field(default: Any, env: str, *, secret: bool = False) -> Any:
    return Field(default=default, alias=env, json_schema_extra={"secret": secret})


# --- the settings models -------------------------------------------------------------------
#
# One model per kind of function, each a subclass of the one below it, so a function loads,
# validates and fetches (for `<VAR>_PARAM`) only what its code reads:
#
#   DatabaseSettings    migrate                 the database
#   JobSettings         relay, tombstone_purge, + the bucket and its key layout, retention,
#                       drift_detect, reconcile, the site-events queues
#                       backfill
#   SiteWorkerSettings  site_worker             + RepoSettings: the repo-request App and the
#                                                 cache of its installation token (the worker
#                                                 finishes approved repo requests)
#   Settings            api (and the local      + GitHub's identity and membership checks, the
#                       runtime, preflight)       deploy session key, the repo, registry and
#                                                 audit teams, upload limits
#
# RepoSettings is a section, not a function's model: what finishing a repo approval reads,
# included by both SiteWorkerSettings and Settings. A larger model is-a smaller one, so code
# written for JobSettings (or RepoSettings) runs with Settings.


class DatabaseSettings(BaseModel):
    """What every function needs: the database, logging, the environment's name."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True, defer_build=True)

    port: int = _field(8080, "PORT")  # the local runtime's HTTP port
    log_level: LogLevel = _field("info", "LOG_LEVEL")
    environment: str = _field("", "ENVIRONMENT")
    database_url: str = _field(..., "DATABASE_URL", secret=True)
    pg_connect_retry_window: float = _field(45.0, "PG_CONNECT_RETRY_WINDOW")
    # Connections one process may hold. A Lambda environment serves one request at a time;
    # the local runtime serves every request from one process, and a digests or bundle
    # request holds its connection while it copies or writes, so it sets more.
    db_pool_size: int = _field(4, "DB_POOL_SIZE")

    # Variables whose empty value means "use the default" (a template parameter left empty).
    _EMPTY_IS_DEFAULT: ClassVar[frozenset[str]] = frozenset(
        {
            "bucket_name",
            "aws_endpoint_url",
            "log_level",
            "gh_org",
            "gh_api_base",
            "gh_oidc_issuer",
            "gh_oidc_audience",
            "redis_url",
            "registry_authz_team",
            "deploy_prefix_format",
            "alias_production_key_format",
            "alias_preview_key_format",
            "public_url_production_format",
            "public_url_preview_format",
            "alias_named_key_format",
            "public_url_named_format",
            "gh_repo_org",
            "repo_create_authz_team",
            "repo_approve_authz_team",
            "audit_read_authz_team",
            "cleanup_trash_prefix",
            "site_events_queue_url",
            "site_events_dlq_url",
            "notifications_queue_url",
            "notifications_dlq_url",
        }
    )

    @field_validator("port", mode="before")
    @classmethod
    def _port(cls, v: Any) -> Any:
        return _integer(v, minimum=1, maximum=65535) if isinstance(v, str) else v

    @field_validator("log_level", mode="before")
    @classmethod
    def _log_level(cls, v: Any) -> Any:
        if isinstance(v, str):
            lowered = v.lower()
            if lowered not in ("debug", "info", "warn", "error"):
                raise ValueError("must be one of debug, info, warn, error")
            return lowered
        return v

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("required, must not be empty")
        if urlsplit(v).scheme not in ("postgres", "postgresql") and "=" not in v:
            raise ValueError("must be a postgresql:// URL or a libpq key=value string")
        return v

    @field_validator("db_pool_size", mode="before")
    @classmethod
    def _pool_size(cls, v: Any) -> Any:
        return _integer(v, minimum=1, maximum=64) if isinstance(v, str) else v

    @field_validator("pg_connect_retry_window", mode="before")
    @classmethod
    def _retry_window(cls, v: Any) -> Any:
        return _duration(v, positive=False) if isinstance(v, str) else v


class JobSettings(DatabaseSettings):
    """The background jobs': the bucket, its key layout, retention and the site-events queues.
    No secret beyond the database URL."""

    bucket_name: str = _field("artemis-sites", "BUCKET_NAME")
    aws_endpoint_url: str | None = _field(None, "AWS_ENDPOINT_URL")
    deploy_prefix_format: str = _field("<site>/deploys/<ts>-<sha>/", "DEPLOY_PREFIX_FORMAT")
    alias_production_key_format: str = _field("<site>/production", "ALIAS_PRODUCTION_KEY_FORMAT")
    alias_preview_key_format: str = _field("<site>/preview", "ALIAS_PREVIEW_KEY_FORMAT")
    public_url_production_format: str = _field(
        "https://<site>.freecode.camp", "PUBLIC_URL_PRODUCTION_FORMAT"
    )
    public_url_preview_format: str = _field(
        "https://<site>.preview.freecode.camp", "PUBLIC_URL_PREVIEW_FORMAT"
    )
    # Empty: `previews/<alias>` under the deploy template's first segment (`<site>/previews/…`).
    alias_named_key_format: str = _field("", "ALIAS_NAMED_KEY_FORMAT")
    public_url_named_format: str = _field(
        "https://<alias>--<site>.preview.freecode.camp", "PUBLIC_URL_NAMED_FORMAT"
    )
    # A named preview not moved for this long is removed by its site's GC run.
    preview_ttl: float = _field(14 * 86400.0, "PREVIEW_TTL")
    # Retention keeps a deploy for at least a session's lifetime and a serve cache's TTL, so
    # both are read here, without the session's key.
    jwt_ttl_seconds: int = _field(900, "JWT_TTL_SECONDS")
    site_events_queue_url: str | None = _field(None, "SITE_EVENTS_QUEUE_URL")
    site_events_dlq_url: str | None = _field(None, "SITE_EVENTS_DLQ_URL")
    # Webhook deliveries: their FIFO queue (one message group per webhook) and its DLQ, the
    # retry schedule (base x 2^n, at most an hour apart, for the window), and whether plain
    # http to a loopback address is allowed (the local stack's receivers; never on AWS).
    notifications_queue_url: str | None = _field(None, "NOTIFICATIONS_QUEUE_URL")
    notifications_dlq_url: str | None = _field(None, "NOTIFICATIONS_DLQ_URL")
    hook_retry_base: float = _field(10.0, "HOOK_RETRY_BASE")
    hook_retry_window: float = _field(24 * 3600.0, "HOOK_RETRY_WINDOW")
    hook_allow_loopback_http: bool = _field(False, "HOOK_ALLOW_LOOPBACK_HTTP")
    cleanup_retention_days: int = _field(7, "CLEANUP_RETENTION_DAYS")
    cleanup_recent_keep: int = _field(3, "CLEANUP_RECENT_KEEP")
    cleanup_grace: float = _field(72 * 3600.0, "CLEANUP_GRACE")
    cleanup_blast_cap: int = _field(10, "CLEANUP_BLAST_CAP")
    cleanup_trash_prefix: str = _field("_trash/", "CLEANUP_TRASH_PREFIX")
    cleanup_recovery_days: int = _field(7, "CLEANUP_RECOVERY_DAYS")
    cleanup_outbox_retention_days: int = _field(30, "CLEANUP_OUTBOX_RETENTION_DAYS")
    cleanup_dry_run: bool = _field(False, "CLEANUP_DRY_RUN")
    serve_cache_ttl: float = _field(15.0, "SERVE_CACHE_TTL")

    @field_validator("bucket_name")
    @classmethod
    def _bucket(cls, v: str) -> str:
        if not _BUCKET.fullmatch(v) or ".." in v:
            raise ValueError("must be a valid S3 bucket name (3-63 of a-z 0-9 . -)")
        return v

    @field_validator("aws_endpoint_url")
    @classmethod
    def _endpoint(cls, v: str | None) -> str | None:
        return None if v is None else _http_url(v, loopback_http_only=False)

    @field_validator(
        "jwt_ttl_seconds",
        "cleanup_retention_days",
        "cleanup_recovery_days",
        "cleanup_outbox_retention_days",
        mode="before",
    )
    @classmethod
    def _job_positive_int(cls, v: Any) -> Any:
        return _integer(v, minimum=1) if isinstance(v, str) else v

    @field_validator("cleanup_recent_keep", "cleanup_blast_cap", mode="before")
    @classmethod
    def _non_negative_int(cls, v: Any) -> Any:
        return _integer(v, minimum=0) if isinstance(v, str) else v

    @field_validator("deploy_prefix_format")
    @classmethod
    def _deploy_prefix(cls, v: str) -> str:
        check_deploy_prefix_format(v)
        return v

    @field_validator("public_url_production_format", "public_url_preview_format")
    @classmethod
    def _url_format(cls, v: str) -> str:
        check_url_format("", v)
        return v

    @field_validator("public_url_named_format")
    @classmethod
    def _named_url_format(cls, v: str) -> str:
        check_named_url_format(v)
        return v

    @field_validator(
        "cleanup_grace", "serve_cache_ttl", "preview_ttl", "hook_retry_base", "hook_retry_window",
        mode="before",
    )  # fmt: skip
    @classmethod
    def _positive_duration(cls, v: Any) -> Any:
        return _duration(v, positive=True) if isinstance(v, str) else v

    @field_validator(
        "site_events_queue_url", "site_events_dlq_url", "notifications_queue_url",
        "notifications_dlq_url",
    )  # fmt: skip
    @classmethod
    def _queue_url(cls, v: str | None) -> str | None:
        if v is not None and not v.endswith(".fifo"):
            raise ValueError("must be the URL of a FIFO queue (ending in .fifo)")
        return v

    @field_validator("cleanup_dry_run", "hook_allow_loopback_http", mode="before")
    @classmethod
    def _bool(cls, v: Any) -> Any:
        return _boolean(v) if isinstance(v, str) else v

    @model_validator(mode="after")
    def _job_checks(self) -> Self:
        try:
            _ = self.key_layout
        except KeyLayoutError as err:
            raise _Invalid(err.variable, err.rule) from None
        if self.cleanup_grace < self.jwt_ttl_seconds:
            raise _Invalid("CLEANUP_GRACE", "must be >= JWT_TTL_SECONDS")
        if self.cleanup_grace < self.serve_cache_ttl:
            raise _Invalid(
                "CLEANUP_GRACE",
                f"must be >= SERVE_CACHE_TTL ({format_duration(self.serve_cache_ttl)})",
            )
        return self

    @cached_property
    def key_layout(self) -> KeyLayout:
        return KeyLayout(
            deploy_prefix_format=self.deploy_prefix_format,
            alias_production_format=self.alias_production_key_format,
            alias_preview_format=self.alias_preview_key_format,
            public_url_production_format=self.public_url_production_format,
            public_url_preview_format=self.public_url_preview_format,
            alias_named_format=self.alias_named_key_format,
            public_url_named_format=self.public_url_named_format,
            trash_prefix=self.cleanup_trash_prefix,
        )


class RepoSettings(DatabaseSettings):
    """A section: the repo-request feature's GitHub App, in GH_REPO_ORG, and Redis, which shares
    the App's installation token between environments. Validated together (all three App
    variables or none; the key is read at start)."""

    gh_api_base: str = _field("https://api.github.com", "GH_API_BASE")
    redis_url: str | None = _field(None, "REDIS_URL", secret=True)
    gh_repo_org: str = _field("freeCodeCamp-Universe", "GH_REPO_ORG")
    gh_app_id: str = _field("", "GH_APP_ID")
    gh_app_installation_id: str = _field("", "GH_APP_INSTALLATION_ID")
    gh_app_private_key: str = _field("", "GH_APP_PRIVATE_KEY", secret=True)

    @field_validator("gh_repo_org")
    @classmethod
    def _repo_org(cls, v: str) -> str:
        return _not_blank(v)

    @field_validator("gh_api_base")
    @classmethod
    def _gh_api_base(cls, v: str) -> str:
        return _http_url(v, loopback_http_only=True)

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, v: str | None) -> str | None:
        if v is not None and urlsplit(v).scheme not in ("redis", "rediss", "unix"):
            raise ValueError("must be a redis://, rediss:// or unix:// URL")
        return v

    @field_validator("gh_app_id", "gh_app_installation_id")
    @classmethod
    def _digits(cls, v: str) -> str:
        if v and not _DIGITS.fullmatch(v):
            raise ValueError("must be digits only")
        return v

    @field_validator("gh_app_private_key")
    @classmethod
    def _pem(cls, v: str) -> str:
        if v and not any(v.strip().startswith(h) for h in _PEM_HEADERS):
            raise ValueError("must be a PEM RSA private key (PKCS#1 or PKCS#8)")
        return v

    @model_validator(mode="after")
    def _repo_checks(self) -> Self:
        app = (self.gh_app_id, self.gh_app_installation_id, self.gh_app_private_key)
        if any(app) and not all(app):
            raise _Invalid(
                "GH_APP_ID", "GH_APP_ID, GH_APP_INSTALLATION_ID and GH_APP_PRIVATE_KEY go together"
            )
        if all(app):
            self._check_repo_feature()
        return self

    def _check_repo_feature(self) -> None:
        """The repo-request feature is on: its key must really be an RSA private key (read
        now, not at the first approval)."""
        try:
            _ = self.gh_app_key
        except ValueError:
            raise _Invalid(
                "GH_APP_PRIVATE_KEY", "must be a PEM RSA private key (PKCS#1 or PKCS#8)"
            ) from None

    @cached_property
    def gh_app_key(self) -> Any:
        """The App's RSA private key, read once (start-up checks it; the App client signs
        with it). ValueError if it is not one."""
        from artemis.github_app import load_private_key  # only when the feature is on

        return load_private_key(self.gh_app_private_key)

    @property
    def repo_feature_enabled(self) -> bool:
        return bool(self.gh_app_id)


# RepoSettings comes first among the bases so that JobSettings' variables are validated (and a
# bad one reported) before the App's, as in Settings.
class SiteWorkerSettings(RepoSettings, JobSettings):
    """The site worker's: gc-site and the queues (JobSettings), and the repo-request App, with
    which it finishes the approvals the API could not finish in time. No session key: the
    worker never signs or verifies a deploy session."""


class Settings(SiteWorkerSettings):
    """The API's settings, which is every variable: the site worker's, plus GitHub's identity
    and membership checks, the deploy session's signing key, the repo, registry and audit teams
    and the upload limits. Build it (or any model here) with `load_settings()`, never from raw
    input."""

    gh_org: str = _field("freeCodeCamp", "GH_ORG")
    gh_membership_cache_ttl: int = _field(300, "GH_MEMBERSHIP_CACHE_TTL")
    repo_create_authz_team: str = _field("staff", "REPO_CREATE_AUTHZ_TEAM")
    repo_approve_authz_team: str = _field("none", "REPO_APPROVE_AUTHZ_TEAM")
    upload_max_bytes: int = _field(104_857_600, "UPLOAD_MAX_BYTES")
    preview_max_per_site: int = _field(50, "PREVIEW_MAX_PER_SITE")
    gh_client_id: str = _field("", "GH_CLIENT_ID")
    # GitHub Actions' OIDC tokens: who issues them (its discovery document and keys are read
    # from there) and the audience a token must name to be accepted here.
    gh_oidc_issuer: str = _field("https://token.actions.githubusercontent.com", "GH_OIDC_ISSUER")
    gh_oidc_audience: str = _field("artemis", "GH_OIDC_AUDIENCE")
    # The fast path: the API sends the outbox rows a request committed before answering. Off,
    # only the relay sends them (for comparing the two; there is no other reason to turn it off).
    outbox_fast_path: bool = _field(True, "OUTBOX_FAST_PATH")
    registry_authz_team: str = _field("staff", "REGISTRY_AUTHZ_TEAM")
    jwt_signing_key: str = _field(..., "JWT_SIGNING_KEY", secret=True)
    audit_read_authz_team: str = _field("staff", "AUDIT_READ_AUTHZ_TEAM")
    reserved_slugs: frozenset[str] = _field(DEFAULT_RESERVED_SLUGS, "RESERVED_SLUGS")

    @field_validator("gh_membership_cache_ttl", "upload_max_bytes", mode="before")
    @classmethod
    def _api_positive_int(cls, v: Any) -> Any:
        return _integer(v, minimum=1) if isinstance(v, str) else v

    @field_validator("preview_max_per_site", mode="before")
    @classmethod
    def _preview_cap(cls, v: Any) -> Any:
        return _integer(v, minimum=0) if isinstance(v, str) else v

    @field_validator(
        "gh_org",
        "repo_create_authz_team",
        "repo_approve_authz_team",
        "registry_authz_team",
        "audit_read_authz_team",
    )
    @classmethod
    def _api_names(cls, v: str) -> str:
        return _not_blank(v)

    @field_validator("outbox_fast_path", mode="before")
    @classmethod
    def _fast_path(cls, v: Any) -> Any:
        return _boolean(v) if isinstance(v, str) else v

    @field_validator("gh_oidc_issuer")
    @classmethod
    def _oidc_issuer(cls, v: str) -> str:
        url = _http_url(v, loopback_http_only=True)
        parts = urlsplit(url)
        # A token's `iss` is compared with this exactly: a query or fragment could never match.
        if parts.query or parts.fragment:
            raise ValueError("must not carry a query or fragment")
        return url

    @field_validator("gh_oidc_audience")
    @classmethod
    def _oidc_audience(cls, v: str) -> str:
        if not _AUDIENCE.fullmatch(v):
            raise ValueError("must be 1 to 255 printable ASCII characters without spaces")
        return v

    @field_validator("jwt_signing_key")
    @classmethod
    def _jwt_key(cls, v: str) -> str:
        if len(v.encode()) < 32:
            raise ValueError("must be at least 32 bytes")
        # The JWT library refuses an asymmetric key as an HMAC secret (it would let a token
        # signed with the public key pass); refuse it here, at start-up, not at the first init.
        if "-----BEGIN " in v or v.startswith(_SSH_KEY_PREFIXES):
            raise ValueError("must be a shared secret, not a PEM block or an SSH public key")
        return v

    @field_validator("reserved_slugs", mode="before")
    @classmethod
    def _reserved(cls, v: Any) -> Any:
        if isinstance(v, str):
            return frozenset(name.strip().lower() for name in v.split(",") if name.strip())
        return v

    def _check_repo_feature(self) -> None:
        """The API gates approvals: with the feature on it needs a real approvers' team (the
        default "none" is a placeholder that would let nobody approve), checked before the
        key."""
        if self.repo_approve_authz_team.strip().lower() == "none":
            raise _Invalid(
                "REPO_APPROVE_AUTHZ_TEAM",
                'must name the approvers\' team when the GitHub App is configured ("none" is'
                " a placeholder)",
            )
        super()._check_repo_feature()


M = TypeVar("M", bound=DatabaseSettings)


def secret_variables(model: type[DatabaseSettings]) -> frozenset[str]:
    """The variables of `model` that hold secrets (each may be given as `<VAR>_PARAM`)."""
    return frozenset(
        _env_name(model, name)
        for name, field in model.model_fields.items()
        if isinstance(field.json_schema_extra, dict) and field.json_schema_extra.get("secret")
    )


def variables(model: type[DatabaseSettings]) -> frozenset[str]:
    """Every variable `model` reads."""
    return frozenset(_env_name(model, name) for name in model.model_fields)


def _env_name(model: type[DatabaseSettings], field_name: str) -> str:
    alias = model.model_fields[field_name].alias
    return alias or field_name.upper()


@overload
def load_settings(
    environ: Mapping[str, str], resolve_parameter: Callable[[str], str] | None = None
) -> Settings: ...
@overload
def load_settings(
    environ: Mapping[str, str], resolve_parameter: Callable[[str], str] | None, model: type[M]
) -> M: ...
def load_settings(
    environ: Mapping[str, str],
    resolve_parameter: Callable[[str], str] | None = None,
    model: type[DatabaseSettings] = Settings,
) -> DatabaseSettings:
    """Validate `environ` into `model` (the API's Settings unless a function names its own),
    or raise ConfigError for the first bad variable. Variables the model does not read are
    ignored, however they are set.

    A secret may instead be named by `<VAR>_PARAM` (an SSM/Secrets Manager name); it is
    fetched through `resolve_parameter` before validation — only the model's own secrets, so a
    function never fetches a secret it does not use.
    """
    values = dict(environ)
    for name in model._EMPTY_IS_DEFAULT & set(model.model_fields):
        if values.get(_env_name(model, name)) == "":
            del values[_env_name(model, name)]
    for env in sorted(secret_variables(model)):
        param = values.get(f"{env}_PARAM")
        if param and env not in values:
            if resolve_parameter is None:
                raise ConfigError(f"{env}_PARAM", "no parameter resolver in this process")
            values[env] = resolve_parameter(param)
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        raise _first_error(model, exc) from None


def _first_error(model: type[DatabaseSettings], exc: ValidationError) -> ConfigError:
    error = exc.errors()[0]
    cause = (error.get("ctx") or {}).get("error")
    if isinstance(cause, _Invalid):
        return ConfigError(cause.variable, cause.rule)
    variable = str(error["loc"][0]) if error["loc"] else "configuration"
    if variable in model.model_fields:
        variable = _env_name(model, variable)
    if error["type"] == "missing":
        return ConfigError(variable, "required, not set")
    if isinstance(cause, ValueError):
        return ConfigError(variable, str(cause))
    return ConfigError(variable, error["msg"])
