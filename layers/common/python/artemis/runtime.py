"""Process-wide dependencies, built on first use and reused across invocations.

Lambda keeps module state between invocations of one execution environment, so the settings,
the connection pool and the S3 client are made once per cold start, and only when a code path
needs them (a health check never opens a database connection).
"""

from __future__ import annotations

import os
import threading
from functools import cached_property
from typing import TYPE_CHECKING

from artemis.config import Settings, load_settings
from artemis.db.connection import Database

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from redis import Redis

    from artemis.github import GitHubClient
    from artemis.github_app import GitHubApp
    from artemis.services.registry import RegistrySnapshot
    from artemis.storage.s3 import Bucket


def _resolve_parameter(name: str) -> str:
    from aws_lambda_powertools.utilities import parameters  # deferred: rare path

    if name.startswith("arn:aws:secretsmanager:") or name.startswith("secret:"):
        return str(parameters.get_secret(name.removeprefix("secret:")))
    return str(parameters.get_parameter(name, decrypt=True))


class Runtime:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @cached_property
    def db(self) -> Database:
        return Database(self.settings.database_url)

    @cached_property
    def bucket(self) -> Bucket:
        from artemis.storage.s3 import Bucket, make_s3_client

        client = make_s3_client(self.settings.aws_endpoint_url, os.environ.get("AWS_REGION"))
        return Bucket(client, self.settings.bucket_name)

    @cached_property
    def sqs(self) -> SQSClient:
        import boto3
        from botocore.config import Config

        config = Config(
            retries={"mode": "standard", "max_attempts": 3}, connect_timeout=5, read_timeout=20
        )
        return boto3.client(
            "sqs", endpoint_url=self.settings.aws_endpoint_url,
            region_name=os.environ.get("AWS_REGION"), config=config,
        )  # fmt: skip

    @cached_property
    def redis(self) -> Redis | None:
        if not self.settings.redis_url:
            return None
        from redis import Redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        # A loss-safe cache: fail fast and fall back to GitHub rather than retry for seconds.
        return Redis.from_url(
            self.settings.redis_url, socket_timeout=2, socket_connect_timeout=2,
            retry=Retry(NoBackoff(), 0),
        )  # fmt: skip

    @cached_property
    def github(self) -> GitHubClient:
        """The GH_ORG client: identity, site and registry gates, whoami."""
        return self._github_client(self.settings.gh_org)

    @cached_property
    def repo_github(self) -> GitHubClient:
        """The GH_REPO_ORG client: audit gate, actor visibility, repo gates."""
        return self._github_client(self.settings.gh_repo_org)

    def _github_client(self, org: str) -> GitHubClient:
        from artemis.github import GitHubClient, RedisSharedCache

        shared = RedisSharedCache(self.redis) if self.redis is not None else None
        return GitHubClient(
            self.settings.gh_api_base, org, self.settings.gh_membership_cache_ttl, shared=shared
        )

    @cached_property
    def github_app(self) -> GitHubApp:
        """The repo-request feature's App client (only when the feature is on)."""
        from artemis.github import RedisSharedCache
        from artemis.github_app import GitHubApp

        s = self.settings
        shared = RedisSharedCache(self.redis) if self.redis is not None else None
        return GitHubApp(
            s.gh_api_base, s.gh_app_id, s.gh_app_installation_id, s.gh_app_key, s.gh_repo_org,
            shared=shared,
        )  # fmt: skip

    @cached_property
    def snapshot(self) -> RegistrySnapshot:
        from artemis.services.registry import RegistrySnapshot

        return RegistrySnapshot(self.db)

    def close(self) -> None:
        if "db" in self.__dict__:
            self.db.close()


_current: Runtime | None = None
_lock = threading.Lock()


def current() -> Runtime:
    """The process's Runtime; the first call validates the environment (ConfigError)."""
    global _current
    with _lock:
        if _current is None:
            _current = Runtime(load_settings(os.environ, _resolve_parameter))
        return _current


def reset() -> None:
    """Drop the Runtime so the next call re-reads the environment (local runtime, tests)."""
    global _current
    with _lock:
        if _current is not None:
            _current.close()
        _current = None
