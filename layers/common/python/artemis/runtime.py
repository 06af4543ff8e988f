"""Process-wide dependencies, built on first use and reused across invocations.

Lambda keeps module state between invocations of one execution environment, so the settings,
the connection pool and the S3 client are made once per cold start, and only when a code path
needs them (a health check never opens a database connection).

A Runtime carries one settings model (`artemis.config`): each function asks `current()` for
its own, so a function whose code never reads the session key neither needs nor fetches it.
A client its model cannot configure is refused with a RuntimeError naming the model.
"""

from __future__ import annotations

import os
import threading
from functools import cached_property
from typing import TYPE_CHECKING, Generic, overload

from typing_extensions import TypeVar

from artemis.config import DatabaseSettings, JobSettings, RepoSettings, Settings, load_settings
from artemis.db.connection import Database

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from redis import Redis

    from artemis.db.registry_snapshot import RegistrySnapshot
    from artemis.github import GitHubClient
    from artemis.github_app import GitHubApp
    from artemis.oidc import OidcVerifier
    from artemis.storage.s3 import Bucket


def resolve_parameter(name: str) -> str:
    """A `<VAR>_PARAM`'s value: a Secrets Manager secret (an ARN or `secret:<name>`), else an
    SSM parameter, decrypted."""
    from aws_lambda_powertools.utilities import parameters  # deferred: rare path

    if name.startswith("arn:aws:secretsmanager:") or name.startswith("secret:"):
        return str(parameters.get_secret(name.removeprefix("secret:")))
    return str(parameters.get_parameter(name, decrypt=True))


# The settings model a Runtime carries; a bare `Runtime` is the API's (every setting). A
# Runtime of a larger model may stand in for one of a smaller (the local runtime runs every
# function on the API's).
S = TypeVar("S", bound=DatabaseSettings, covariant=True, default=Settings)
M = TypeVar("M", bound=DatabaseSettings)


class Runtime(Generic[S]):
    def __init__(self, settings: S) -> None:
        self._settings = settings

    @property
    def settings(self) -> S:
        return self._settings

    def _needs(self, model: type[M]) -> M:
        if not isinstance(self._settings, model):
            name = type(self._settings).__name__
            raise RuntimeError(f"this function's settings ({name}) are not {model.__name__}")
        return self._settings

    @cached_property
    def db(self) -> Database:
        return Database(self.settings.database_url, max_size=self.settings.db_pool_size)

    @cached_property
    def bucket(self) -> Bucket:
        from artemis.storage.s3 import Bucket, make_s3_client

        settings = self._needs(JobSettings)
        client = make_s3_client(settings.aws_endpoint_url, os.environ.get("AWS_REGION"))
        return Bucket(client, settings.bucket_name)

    @cached_property
    def sqs(self) -> SQSClient:
        import boto3
        from botocore.config import Config

        config = Config(
            retries={"mode": "standard", "max_attempts": 3}, connect_timeout=5, read_timeout=20
        )
        return boto3.client(
            "sqs", endpoint_url=self._needs(JobSettings).aws_endpoint_url,
            region_name=os.environ.get("AWS_REGION"), config=config,
        )  # fmt: skip

    @cached_property
    def redis(self) -> Redis | None:
        url = self._needs(RepoSettings).redis_url
        if not url:
            return None
        from redis import Redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        # A loss-safe cache: fail fast and fall back to GitHub rather than retry for seconds.
        return Redis.from_url(
            url, socket_timeout=2, socket_connect_timeout=2,
            retry=Retry(NoBackoff(), 0),
        )  # fmt: skip

    @cached_property
    def github(self) -> GitHubClient:
        """The GH_ORG client: identity, site and registry gates, whoami."""
        return self._github_client(self._needs(Settings).gh_org)

    @cached_property
    def repo_github(self) -> GitHubClient:
        """The GH_REPO_ORG client: audit gate, actor visibility, repo gates."""
        return self._github_client(self._needs(Settings).gh_repo_org)

    def _github_client(self, org: str) -> GitHubClient:
        from artemis.github import GitHubClient, RedisSharedCache

        s = self._needs(Settings)
        shared = RedisSharedCache(self.redis) if self.redis is not None else None
        return GitHubClient(s.gh_api_base, org, s.gh_membership_cache_ttl, shared=shared)

    @cached_property
    def github_app(self) -> GitHubApp:
        """The repo-request feature's App client (only when the feature is on)."""
        from artemis.github import RedisSharedCache
        from artemis.github_app import GitHubApp

        s = self._needs(RepoSettings)
        shared = RedisSharedCache(self.redis) if self.redis is not None else None
        return GitHubApp(
            s.gh_api_base, s.gh_app_id, s.gh_app_installation_id, s.gh_app_key, s.gh_repo_org,
            shared=shared,
        )  # fmt: skip

    @cached_property
    def oidc(self) -> OidcVerifier:
        """The GitHub Actions OIDC verifier: one per process, so its key cache is shared by
        every request; accepted token ids are remembered in Postgres."""
        from artemis.oidc import OidcVerifier, replay_in_database

        s = self._needs(Settings)
        return OidcVerifier(
            s.gh_oidc_issuer, s.gh_oidc_audience, remember=replay_in_database(self.db)
        )

    @cached_property
    def snapshot(self) -> RegistrySnapshot:
        from artemis.db.registry_snapshot import RegistrySnapshot

        return RegistrySnapshot(self.db)

    def close(self) -> None:
        if "db" in self.__dict__:
            self.db.close()


_runtimes: list[Runtime[DatabaseSettings]] = []
_lock = threading.Lock()


@overload
def current() -> Runtime[Settings]: ...
@overload
def current(model: type[M]) -> Runtime[M]: ...
def current(model: type[DatabaseSettings] = Settings) -> Runtime[DatabaseSettings]:
    """The process's Runtime for `model` (the API's Settings unless a function names its own);
    the first call validates the environment into it (ConfigError). A Runtime already built
    on a larger model serves a smaller one, so the local runtime, which runs every function in
    one process, shares one pool."""
    with _lock:
        for rt in _runtimes:
            if isinstance(rt.settings, model):
                return rt
        built: Runtime[DatabaseSettings] = Runtime(
            load_settings(os.environ, resolve_parameter, model)
        )
        _runtimes.append(built)
        return built


def reset() -> None:
    """Drop every Runtime so the next call re-reads the environment (local runtime, tests)."""
    with _lock:
        for rt in _runtimes:
            rt.close()
        _runtimes.clear()
