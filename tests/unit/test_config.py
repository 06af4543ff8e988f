"""Every bad value of spec/api.md §16 (as adapted to AWS) stops start-up with one line that
names the variable and the rule; secrets never appear in it."""

import pytest

from artemis.config import ConfigError, SiteWorkerSettings, load_settings, secret_variables
from tests.conftest import base_env

BAD_VALUES = [
    # (variable, value, the exact line)
    ("PORT", "", "PORT: must be a base-10 integer"),
    ("PORT", "http", "PORT: must be a base-10 integer"),
    ("PORT", "0", "PORT: must be an integer between 1 and 65535 (got 0)"),
    ("PORT", "65536", "PORT: must be an integer between 1 and 65535 (got 65536)"),
    (
        "BUCKET_NAME",
        "Has_Upper",
        "BUCKET_NAME: must be a valid S3 bucket name (3-63 of a-z 0-9 . -)",
    ),
    ("BUCKET_NAME", "ab", "BUCKET_NAME: must be a valid S3 bucket name (3-63 of a-z 0-9 . -)"),
    (
        "AWS_ENDPOINT_URL",
        "localhost:4566",
        "AWS_ENDPOINT_URL: must be an absolute http(s) URL with a host",
    ),
    ("UPLOAD_MAX_BYTES", "0", "UPLOAD_MAX_BYTES: must be an integer >= 1 (got 0)"),
    ("UPLOAD_MAX_BYTES", "10MB", "UPLOAD_MAX_BYTES: must be a base-10 integer"),
    ("UPLOAD_MAX_BYTES", "0x10", "UPLOAD_MAX_BYTES: must be a base-10 integer"),
    ("LOG_LEVEL", "verbose", "LOG_LEVEL: must be one of debug, info, warn, error"),
    ("GH_ORG", "   ", "GH_ORG: must not be whitespace only"),
    (
        "GH_API_BASE",
        "ftp://github.example",
        "GH_API_BASE: must be an absolute http(s) URL with a host",
    ),
    ("GH_API_BASE", "/api", "GH_API_BASE: must be an absolute http(s) URL with a host"),
    ("GH_API_BASE", "https://u:p@github.example", "GH_API_BASE: must not carry user info"),
    (
        "GH_API_BASE",
        "http://github.example",
        "GH_API_BASE: http is allowed only for localhost or a loopback address",
    ),
    (
        "GH_OIDC_ISSUER",
        "token.actions.githubusercontent.com",
        "GH_OIDC_ISSUER: must be an absolute http(s) URL with a host",
    ),
    (
        "GH_OIDC_ISSUER",
        "http://issuer.example",
        "GH_OIDC_ISSUER: http is allowed only for localhost or a loopback address",
    ),
    ("GH_OIDC_ISSUER", "https://u:p@issuer.example", "GH_OIDC_ISSUER: must not carry user info"),
    (
        "GH_OIDC_ISSUER",
        "https://issuer.example/?x=1",
        "GH_OIDC_ISSUER: must not carry a query or fragment",
    ),
    (
        "GH_OIDC_AUDIENCE",
        "two words",
        "GH_OIDC_AUDIENCE: must be 1 to 255 printable ASCII characters without spaces",
    ),
    (
        "GH_OIDC_AUDIENCE",
        "a" * 256,
        "GH_OIDC_AUDIENCE: must be 1 to 255 printable ASCII characters without spaces",
    ),
    (
        "GH_OIDC_AUDIENCE",
        "art\u00e9mis",
        "GH_OIDC_AUDIENCE: must be 1 to 255 printable ASCII characters without spaces",
    ),
    ("GH_MEMBERSHIP_CACHE_TTL", "0", "GH_MEMBERSHIP_CACHE_TTL: must be an integer >= 1 (got 0)"),
    ("GH_MEMBERSHIP_CACHE_TTL", "5m", "GH_MEMBERSHIP_CACHE_TTL: must be a base-10 integer"),
    ("REDIS_URL", "127.0.0.1:6379", "REDIS_URL: must be a redis://, rediss:// or unix:// URL"),
    ("REGISTRY_AUTHZ_TEAM", " ", "REGISTRY_AUTHZ_TEAM: must not be whitespace only"),
    ("JWT_SIGNING_KEY", "too-short-secret", "JWT_SIGNING_KEY: must be at least 32 bytes"),
    (
        "JWT_SIGNING_KEY",
        "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----",
        "JWT_SIGNING_KEY: must be a shared secret, not a PEM block or an SSH public key",
    ),
    (
        "JWT_SIGNING_KEY",
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHk4bW9yZSBieXRlcyBoZXJl user@host",
        "JWT_SIGNING_KEY: must be a shared secret, not a PEM block or an SSH public key",
    ),
    ("JWT_TTL_SECONDS", "-1", "JWT_TTL_SECONDS: must be an integer >= 1 (got -1)"),
    ("JWT_TTL_SECONDS", "15m", "JWT_TTL_SECONDS: must be a base-10 integer"),
    (
        "DEPLOY_PREFIX_FORMAT",
        "<site>/deploys/",
        "DEPLOY_PREFIX_FORMAT: must contain <site> and <ts>-<sha>",
    ),
    (
        "DEPLOY_PREFIX_FORMAT",
        "sites/<site>/<ts>-<sha>/",
        "DEPLOY_PREFIX_FORMAT: <site> must be in the first path segment, followed by /",
    ),
    (
        "DEPLOY_PREFIX_FORMAT",
        "<ts>-<sha>/<site>/",
        "DEPLOY_PREFIX_FORMAT: <site> must come before <ts>-<sha>",
    ),
    (
        "DEPLOY_PREFIX_FORMAT",
        "_<site>/d/<ts>-<sha>/",
        "DEPLOY_PREFIX_FORMAT: the site segment must not begin with _ (reserved names)",
    ),
    (
        "ALIAS_PRODUCTION_KEY_FORMAT",
        "production",
        "ALIAS_PRODUCTION_KEY_FORMAT: must contain <site> and a /",
    ),
    (
        "ALIAS_PREVIEW_KEY_FORMAT",
        "<site>.x/preview",
        "ALIAS_PREVIEW_KEY_FORMAT: first segment must equal DEPLOY_PREFIX_FORMAT's first segment",
    ),
    (
        "ALIAS_PREVIEW_KEY_FORMAT",
        "<site>/<site>",
        "ALIAS_PREVIEW_KEY_FORMAT: must not contain <site> after the first segment",
    ),
    (
        "PUBLIC_URL_PRODUCTION_FORMAT",
        "https://example.org",
        "PUBLIC_URL_PRODUCTION_FORMAT: must contain <site>",
    ),
    (
        "PUBLIC_URL_PREVIEW_FORMAT",
        "https://preview.example.org",
        "PUBLIC_URL_PREVIEW_FORMAT: must contain <site>",
    ),
    ("GH_REPO_ORG", "\t", "GH_REPO_ORG: must not be whitespace only"),
    ("REPO_CREATE_AUTHZ_TEAM", " ", "REPO_CREATE_AUTHZ_TEAM: must not be whitespace only"),
    ("REPO_APPROVE_AUTHZ_TEAM", " ", "REPO_APPROVE_AUTHZ_TEAM: must not be whitespace only"),
    ("AUDIT_READ_AUTHZ_TEAM", "  ", "AUDIT_READ_AUTHZ_TEAM: must not be whitespace only"),
    ("GH_APP_ID", "1e+06", "GH_APP_ID: must be digits only"),
    ("GH_APP_INSTALLATION_ID", "12a", "GH_APP_INSTALLATION_ID: must be digits only"),
    (
        "GH_APP_PRIVATE_KEY",
        "not a key",
        "GH_APP_PRIVATE_KEY: must be a PEM RSA private key (PKCS#1 or PKCS#8)",
    ),
    (
        "GH_APP_ID",
        "123",
        "GH_APP_ID: GH_APP_ID, GH_APP_INSTALLATION_ID and GH_APP_PRIVATE_KEY go together",
    ),
    ("DATABASE_URL", "", "DATABASE_URL: required, must not be empty"),
    (
        "DATABASE_URL",
        "mysql://db/x",
        "DATABASE_URL: must be a postgresql:// URL or a libpq key=value string",
    ),
    (
        "PG_CONNECT_RETRY_WINDOW",
        "45",
        "PG_CONNECT_RETRY_WINDOW: must be a Go duration such as 45s, 72h or 1h30m",
    ),
    ("PG_CONNECT_RETRY_WINDOW", "-1s", "PG_CONNECT_RETRY_WINDOW: must be a duration >= 0"),
    ("DB_POOL_SIZE", "0", "DB_POOL_SIZE: must be an integer between 1 and 64 (got 0)"),
    ("DB_POOL_SIZE", "65", "DB_POOL_SIZE: must be an integer between 1 and 64 (got 65)"),
    (
        "SITE_EVENTS_QUEUE_URL",
        "https://sqs.example/1/q",
        "SITE_EVENTS_QUEUE_URL: must be the URL of a FIFO queue (ending in .fifo)",
    ),
    ("CLEANUP_RETENTION_DAYS", "0", "CLEANUP_RETENTION_DAYS: must be an integer >= 1 (got 0)"),
    ("CLEANUP_RETENTION_DAYS", "7d", "CLEANUP_RETENTION_DAYS: must be a base-10 integer"),
    ("CLEANUP_RECENT_KEEP", "-1", "CLEANUP_RECENT_KEEP: must be an integer >= 0 (got -1)"),
    ("CLEANUP_GRACE", "72", "CLEANUP_GRACE: must be a Go duration such as 45s, 72h or 1h30m"),
    ("CLEANUP_GRACE", "0", "CLEANUP_GRACE: must be a duration > 0"),
    ("CLEANUP_GRACE", "10m", "CLEANUP_GRACE: must be >= JWT_TTL_SECONDS"),
    ("CLEANUP_BLAST_CAP", "-3", "CLEANUP_BLAST_CAP: must be an integer >= 0 (got -3)"),
    ("CLEANUP_BLAST_CAP", "ten", "CLEANUP_BLAST_CAP: must be a base-10 integer"),
    ("CLEANUP_TRASH_PREFIX", "trash/", "CLEANUP_TRASH_PREFIX: must begin with _ (reserved names)"),
    ("CLEANUP_RECOVERY_DAYS", "0", "CLEANUP_RECOVERY_DAYS: must be an integer >= 1 (got 0)"),
    (
        "CLEANUP_OUTBOX_RETENTION_DAYS",
        "-30",
        "CLEANUP_OUTBOX_RETENTION_DAYS: must be an integer >= 1 (got -30)",
    ),
    ("SERVE_CACHE_TTL", "15", "SERVE_CACHE_TTL: must be a Go duration such as 45s, 72h or 1h30m"),
    ("SERVE_CACHE_TTL", "0s", "SERVE_CACHE_TTL: must be a duration > 0"),
]


@pytest.mark.parametrize(
    ("variable", "value", "line"), BAD_VALUES, ids=[f"{v}={x!r}" for v, x, _ in BAD_VALUES]
)
def test_bad_value_is_one_line_naming_the_variable(variable: str, value: str, line: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(base_env(**{variable: value}))
    assert str(info.value) == f"invalid configuration: {line}"
    assert info.value.variable == variable
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("variable", ["JWT_SIGNING_KEY", "DATABASE_URL"])
def test_required_variables(variable: str) -> None:
    env = base_env()
    del env[variable]
    with pytest.raises(ConfigError) as info:
        load_settings(env)
    assert str(info.value) == f"invalid configuration: {variable}: required, not set"


def test_grace_below_the_serve_cache_ttl_is_refused() -> None:
    env = base_env(JWT_TTL_SECONDS="1", CLEANUP_GRACE="10s", SERVE_CACHE_TTL="15s")
    with pytest.raises(ConfigError) as info:
        load_settings(env)
    assert (
        str(info.value) == "invalid configuration: CLEANUP_GRACE: must be >= SERVE_CACHE_TTL (15s)"
    )


@pytest.mark.parametrize(
    ("variable", "secret"),
    [
        ("JWT_SIGNING_KEY", "hunter2-but-short"),
        ("DATABASE_URL", "mysql://admin:s3cr3t-password@db/x"),
        ("REDIS_URL", "s3cr3t-password@redis-host"),
        ("GH_APP_PRIVATE_KEY", "s3cr3t-not-a-pem"),
    ],
)
def test_secrets_never_appear_in_the_message(variable: str, secret: str) -> None:
    env = base_env(**{variable: secret})
    if variable == "GH_APP_PRIVATE_KEY":
        env.update(GH_APP_ID="1", GH_APP_INSTALLATION_ID="2")
    with pytest.raises(ConfigError) as info:
        load_settings(env)
    assert info.value.variable == variable
    assert "s3cr3t" not in str(info.value) and "hunter2" not in str(info.value)


def test_first_invalid_variable_wins() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(base_env(PORT="x", CLEANUP_GRACE="y"))
    assert info.value.variable == "PORT"


def test_defaults_and_empty_means_default() -> None:
    s = load_settings(base_env(BUCKET_NAME="", LOG_LEVEL="", GH_ORG="", CLEANUP_TRASH_PREFIX=""))
    assert s.bucket_name == "artemis-sites"
    assert s.log_level == "info"
    assert s.gh_org == "freeCodeCamp"
    assert s.port == 8080
    assert s.upload_max_bytes == 104_857_600
    assert s.cleanup_grace == 72 * 3600
    assert s.cleanup_blast_cap == 10
    assert s.key_layout.trash_prefix == "_trash/"
    assert s.serve_cache_ttl == 15
    assert s.redis_url is None
    assert not s.repo_feature_enabled
    assert s.gh_oidc_issuer == "https://token.actions.githubusercontent.com"
    assert s.gh_oidc_audience == "artemis"
    empty = load_settings(base_env(GH_OIDC_ISSUER="", GH_OIDC_AUDIENCE=""))
    assert empty.gh_oidc_issuer == "https://token.actions.githubusercontent.com"
    assert empty.gh_oidc_audience == "artemis"


def test_values_are_parsed() -> None:
    s = load_settings(
        base_env(
            PORT="9000",
            LOG_LEVEL="WARN",
            CLEANUP_GRACE="1h30m",
            CLEANUP_DRY_RUN="TRUE",
            CLEANUP_TRASH_PREFIX="_bin",
            GH_API_BASE="http://127.0.0.1:9999/",
            GH_OIDC_ISSUER="http://localhost:9999/",
            GH_OIDC_AUDIENCE="https://github.com/freeCodeCamp",
            DEPLOY_PREFIX_FORMAT="<site>.freecode.camp/deploys/<ts>-<sha>/",
            ALIAS_PRODUCTION_KEY_FORMAT="<site>.freecode.camp/production",
            ALIAS_PREVIEW_KEY_FORMAT="<site>.freecode.camp/preview",
        )
    )
    assert s.port == 9000
    assert s.log_level == "warn"
    assert s.cleanup_grace == 5400
    assert s.cleanup_dry_run is True
    assert s.key_layout.trash_prefix == "_bin/"
    assert s.gh_api_base == "http://127.0.0.1:9999"
    assert s.gh_oidc_issuer == "http://localhost:9999"  # iss never ends in a slash
    assert s.gh_oidc_audience == "https://github.com/freeCodeCamp"
    assert s.key_layout.dirname("www") == "www.freecode.camp"  # type: ignore[arg-type]


@pytest.mark.parametrize("value", ["0", "false", "yes", ""])
def test_booleans_are_true_only_for_1_or_true(value: str) -> None:
    assert load_settings(base_env(CLEANUP_DRY_RUN=value)).cleanup_dry_run is False


def test_secret_from_a_parameter_name() -> None:
    env = base_env()
    del env["JWT_SIGNING_KEY"]
    env["JWT_SIGNING_KEY_PARAM"] = "/artemis/dev/jwt"
    fetched: list[str] = []

    def resolve(name: str) -> str:
        fetched.append(name)
        return "k" * 40

    assert load_settings(env, resolve).jwt_signing_key == "k" * 40
    assert fetched == ["/artemis/dev/jwt"]


def test_reserved_slugs_default_and_override() -> None:
    from artemis.site_names import DEFAULT_RESERVED_SLUGS

    assert load_settings(base_env()).reserved_slugs == DEFAULT_RESERVED_SLUGS
    assert load_settings(base_env(RESERVED_SLUGS=" Docs, api ,,")).reserved_slugs == frozenset(
        {"docs", "api"}
    )
    assert load_settings(base_env(RESERVED_SLUGS="")).reserved_slugs == frozenset()


# --- the repo-request feature (issue 7) -------------------------------------------------------


def _rsa_pem(fmt: str = "pkcs8") -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    if fmt == "ec":
        ec_key = ec.generate_private_key(ec.SECP256R1())
        return ec_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()  # fmt: skip
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_format = (
        serialization.PrivateFormat.PKCS8 if fmt == "pkcs8"
        else serialization.PrivateFormat.TraditionalOpenSSL
    )  # fmt: skip
    return key.private_bytes(
        serialization.Encoding.PEM, private_format, serialization.NoEncryption()
    ).decode()


def app_env(**overrides: str) -> dict[str, str]:
    app = {"GH_APP_ID": "12", "GH_APP_INSTALLATION_ID": "34", "GH_APP_PRIVATE_KEY": _rsa_pem(),
           "REPO_APPROVE_AUTHZ_TEAM": "approvers"}  # fmt: skip
    return base_env(**{**app, **overrides})


@pytest.mark.parametrize("fmt", ["pkcs8", "pkcs1"])
def test_a_complete_app_configuration_enables_the_feature(fmt: str) -> None:
    settings = load_settings(app_env(GH_APP_PRIVATE_KEY=_rsa_pem(fmt)))
    assert settings.repo_feature_enabled


def test_the_placeholder_approve_team_refuses_to_start() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(app_env(REPO_APPROVE_AUTHZ_TEAM="none"))
    assert str(info.value) == (
        "invalid configuration: REPO_APPROVE_AUTHZ_TEAM: must name the approvers' team when the"
        ' GitHub App is configured ("none" is a placeholder)'
    )


@pytest.mark.parametrize(
    "key",
    [
        "-----BEGIN PRIVATE KEY-----\nAAAAnot-base64-der\n-----END PRIVATE KEY-----\n",
        "-----BEGIN RSA PRIVATE KEY-----\nMIIBOgIBAAJBAK\n-----END RSA PRIVATE KEY-----\n",
        "ec",
    ],
)
def test_a_wrong_app_key_refuses_to_start(key: str) -> None:
    pem = _rsa_pem("ec") if key == "ec" else key
    with pytest.raises(ConfigError) as info:
        load_settings(app_env(GH_APP_PRIVATE_KEY=pem))
    assert str(info.value) == (
        "invalid configuration: GH_APP_PRIVATE_KEY: must be a PEM RSA private key (PKCS#1 or"
        " PKCS#8)"
    )


# --- the site worker's settings -----------------------------------------------------------------


def worker_env(**overrides: str) -> dict[str, str]:
    """The site worker's environment: no session key, no approvers' team."""
    env = {"DATABASE_URL": "postgresql://127.0.0.1/unused", "GH_APP_ID": "12",
           "GH_APP_INSTALLATION_ID": "34", "GH_APP_PRIVATE_KEY": _rsa_pem()}  # fmt: skip
    return {**env, **overrides}


def test_the_site_worker_settings_need_no_session_key_and_check_the_app() -> None:
    """The worker finishes approvals with the App but never signs a session or gates an
    approval: it starts without JWT_SIGNING_KEY and REPO_APPROVE_AUTHZ_TEAM, and refuses an
    App configuration the API would refuse."""
    settings = load_settings(worker_env(), None, SiteWorkerSettings)
    assert settings.repo_feature_enabled and settings.gh_app_key is not None
    assert not hasattr(settings, "jwt_signing_key")
    assert secret_variables(SiteWorkerSettings) == {
        "DATABASE_URL",
        "REDIS_URL",
        "GH_APP_PRIVATE_KEY",
    }
    with pytest.raises(ConfigError) as info:
        load_settings(worker_env(GH_APP_INSTALLATION_ID=""), None, SiteWorkerSettings)
    assert info.value.variable == "GH_APP_ID"
    with pytest.raises(ConfigError) as info:
        load_settings(worker_env(GH_APP_PRIVATE_KEY=_rsa_pem("ec")), None, SiteWorkerSettings)
    assert info.value.variable == "GH_APP_PRIVATE_KEY"
