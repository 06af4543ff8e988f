"""`artemis-admin preflight`: try every dependency with the configured settings and
credentials before traffic arrives, one verdict per dependency.

Each check does the smallest real operation the service itself will need: Postgres must answer
and hold every migration in `sql/`; the bucket must list, take a write and a delete (under a
scratch prefix no site can own, removed again); the site-events queues must return their
attributes; GitHub must mint the App's installation token, or accept an operator's token;
Redis (when configured) must answer a PING. Checks need only the Settings: no local runtime.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from artemis.config import Settings
from artemis.keys import Dirname
from artemis.site_names import is_slug

Verdict = Literal["ok", "fail", "skip"]
# Top-level names beginning with `_` are never sites (slugs begin with a letter; site listings
# skip them), so the scratch objects cannot be mistaken for, or collide with, a site's keys.
SCRATCH_PREFIX = "_preflight/"
TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True)
class Check:
    name: str
    verdict: Verdict
    detail: str

    def line(self) -> str:
        return f"{self.verdict.upper():<4}  {self.name:<9} {self.detail}"


class CheckFailed(Exception):
    """A check's own verdict: the message is the line's detail."""


def run(settings: Settings, *, github_token: str | None = None) -> list[Check]:
    """Every check, in a fixed order; a check's exception is its failure, never the run's."""
    checks: list[tuple[str, Callable[[], str | None]]] = [
        ("database", lambda: check_database(settings)),
        ("bucket", lambda: check_bucket(settings)),
        ("queue", lambda: check_queues(settings)),
        ("github", lambda: check_github(settings, github_token)),
        ("redis", lambda: check_redis(settings)),
    ]
    results = []
    for name, fn in checks:
        try:
            detail = fn()
        except CheckFailed as err:
            results.append(Check(name, "fail", str(err)))
        except Exception as err:  # any other error is that dependency's failure, said briefly
            results.append(Check(name, "fail", _describe(err)))
        else:
            if detail is None:
                results.append(Check(name, "skip", _SKIPPED[name]))
            else:
                results.append(Check(name, "ok", detail))
    return results


_SKIPPED = {
    "queue": "SITE_EVENTS_QUEUE_URL is not set (no background pipeline)",
    "github": "no GitHub App configured and no --github-token given",
    "redis": "REDIS_URL is not set (caches stay per environment)",
}


def _describe(err: BaseException) -> str:
    text = " ".join(str(err).split())[:300]
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


# --- the checks: each returns its detail, None when not configured, or raises -----------------


def check_database(settings: Settings) -> str:
    from artemis.db.connection import connect
    from artemis.db.migrate import default_sql_dir

    expected = sorted(p.name for p in default_sql_dir().glob("*.sql"))
    if not expected:
        raise CheckFailed(f"no migration files at {default_sql_dir()} (set ARTEMIS_SQL_DIR)")
    with connect(settings.database_url, autocommit=True, timeout=TIMEOUT_SECONDS) as conn:
        ledger = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
        if not ledger or not ledger[0]:
            raise CheckFailed("reachable, but not migrated (no schema_migrations; run migrate)")
        applied = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
    missing = [name for name in expected if name not in applied]
    if missing:
        raise CheckFailed(
            f"reachable, but {len(missing)} migration(s) not applied: {', '.join(missing)}"
        )
    return f"reachable; all {len(expected)} migrations applied"


def check_bucket(settings: Settings) -> str:
    from artemis.storage.s3 import make_s3_client

    layout = settings.key_layout
    scratch = f"{SCRATCH_PREFIX}{uuid.uuid4().hex}/"
    owner = layout.slug_for(Dirname(SCRATCH_PREFIX.rstrip("/")))
    if (owner is not None and is_slug(owner, frozenset())) or layout.trash_prefix == SCRATCH_PREFIX:
        raise CheckFailed(f"the scratch prefix {SCRATCH_PREFIX} could belong to a site here")
    client = make_s3_client(settings.aws_endpoint_url, os.environ.get("AWS_REGION"))
    bucket = settings.bucket_name
    key = scratch + "probe"
    client.list_objects_v2(Bucket=bucket, Prefix=scratch, MaxKeys=1)
    client.put_object(Bucket=bucket, Key=key, Body=b"artemis preflight\n")
    try:
        got = client.list_objects_v2(Bucket=bucket, Prefix=scratch, MaxKeys=2)
        if [o["Key"] for o in got.get("Contents", [])] != [key]:
            raise CheckFailed(f"wrote {key} but the listing does not show it")
    finally:
        client.delete_object(Bucket=bucket, Key=key)
    left = client.list_objects_v2(Bucket=bucket, Prefix=scratch, MaxKeys=1)
    if left.get("KeyCount", 0):
        raise CheckFailed(f"deleted {key} but it is still listed")
    return f"{bucket}: list, write and delete under {SCRATCH_PREFIX} work"


def check_queues(settings: Settings) -> str | None:
    import boto3
    from botocore.config import Config

    urls = [u for u in (settings.site_events_queue_url, settings.site_events_dlq_url) if u]
    if not settings.site_events_queue_url:
        return None
    client = boto3.client(
        "sqs", endpoint_url=settings.aws_endpoint_url, region_name=os.environ.get("AWS_REGION"),
        config=Config(retries={"max_attempts": 1}, connect_timeout=TIMEOUT_SECONDS,
                      read_timeout=TIMEOUT_SECONDS),
    )  # fmt: skip
    names = []
    for url in urls:
        attrs = client.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
        names.append(str(attrs["Attributes"]["QueueArn"]).rsplit(":", 1)[-1])
    return "attributes read: " + ", ".join(names)


def check_github(settings: Settings, token: str | None) -> str | None:
    done = []
    if settings.repo_feature_enabled:
        from artemis.github_app import GitHubApp

        app = GitHubApp(  # no shared cache: mint a token now, with these credentials
            settings.gh_api_base, settings.gh_app_id, settings.gh_app_installation_id,
            settings.gh_app_key, settings.gh_repo_org,
        )  # fmt: skip
        app.installation_token()
        done.append(f"App {settings.gh_app_id}: installation token minted")
    if token:
        from artemis.github import GitHubClient

        client = GitHubClient(settings.gh_api_base, settings.gh_org, timeout=TIMEOUT_SECONDS)
        done.append(f"token accepted (login {client.identity(token)})")
    return "; ".join(done) or None


def check_redis(settings: Settings) -> str | None:
    if not settings.redis_url:
        return None
    from redis import Redis

    client = Redis.from_url(
        settings.redis_url, socket_timeout=TIMEOUT_SECONDS, socket_connect_timeout=TIMEOUT_SECONDS
    )
    try:
        client.ping()
    finally:
        client.close()
    return "PING answered"
