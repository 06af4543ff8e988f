"""`artemis-admin preflight` against real stores: Postgres, moto S3 and SQS, Redis and the fake
GitHub with its App endpoints. Run as the operator runs it (a subprocess); one line per check,
exit 1 when one fails, and nothing left behind in the bucket."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from artemis_local.aws import ensure_resources
from artemis_local.fake_github import FakeApp, FakeGitHub
from tests.conftest import REPO_ROOT, base_env, free_port

ADMIN = str(Path(sys.executable).with_name("artemis-admin"))
BUCKET = "artemis-preflight-tests"
AWS = {"AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}


@dataclass
class Stores:
    env: dict[str, str]
    github: FakeGitHub
    moto_url: str


def _pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()  # fmt: skip


@pytest.fixture(scope="module")
def app_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def stores(
    database_url: str, moto_url: str, redis_url: str, app_key: rsa.RSAPrivateKey
) -> Iterator[Stores]:
    made = ensure_resources(moto_url, BUCKET, AWS)
    github = FakeGitHub().start()
    public = app_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()  # fmt: skip
    github.app = FakeApp("4242", "77", public, "freeCodeCamp-Universe")
    env = base_env(
        DATABASE_URL=database_url, AWS_ENDPOINT_URL=moto_url, BUCKET_NAME=BUCKET,
        SITE_EVENTS_QUEUE_URL=made.queue_url, SITE_EVENTS_DLQ_URL=made.dlq_url,
        REDIS_URL=redis_url, GH_API_BASE=github.url, GH_APP_ID="4242",
        GH_APP_INSTALLATION_ID="77", GH_APP_PRIVATE_KEY=_pem(app_key),
        REPO_APPROVE_AUTHZ_TEAM="approvers", **AWS,
    )  # fmt: skip
    try:
        yield Stores(env, github, moto_url)
    finally:
        github.stop()


def preflight(env: dict[str, str], tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    inherited = {
        k: v
        for k, v in os.environ.items()
        if k not in base_env() and not k.startswith(("AWS_", "GH_", "REDIS_", "SITE_EVENTS_"))
    }
    return subprocess.run(
        [ADMIN, "preflight", *args], env={**inherited, **env, "ARTEMIS_STATE_DIR": str(tmp_path)},
        capture_output=True, text=True, timeout=120, cwd=REPO_ROOT,
    )  # fmt: skip


def lines(done: subprocess.CompletedProcess[str]) -> dict[str, tuple[str, str]]:
    """check name → (verdict, detail)"""
    found = {}
    for line in done.stdout.splitlines():
        verdict, name, detail = line.split(None, 2)
        found[name] = (verdict, detail)
    return found


def scratch_keys(moto_url: str) -> list[str]:
    s3 = boto3.client("s3", endpoint_url=moto_url, region_name="us-east-1")
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix="_preflight/")
    return [o["Key"] for o in listed.get("Contents", [])]


def test_every_check_passes_against_healthy_stores(stores: Stores, tmp_path: Path) -> None:
    done = preflight(stores.env, tmp_path, "--github-token", "local-staff-token")
    assert done.returncode == 0, done.stdout + done.stderr
    found = lines(done)
    assert list(found) == ["config", "database", "bucket", "queue", "github", "redis"]
    assert all(verdict == "OK" for verdict, _ in found.values()), done.stdout
    assert "migrations applied" in found["database"][1]
    assert "list, write and delete" in found["bucket"][1]
    assert "artemis-local-site-events" in found["queue"][1]
    assert "installation token minted" in found["github"][1]
    assert "login local-staff" in found["github"][1]
    assert stores.github.app is not None and len(stores.github.app.tokens) == 1
    assert scratch_keys(stores.moto_url) == []  # what the bucket check wrote is gone


def test_failing_dependencies_each_fail_their_line_and_the_exit_code(
    stores: Stores, empty_database_url: str, tmp_path: Path
) -> None:
    env = {
        **stores.env,
        "DATABASE_URL": empty_database_url,  # reachable, never migrated
        "BUCKET_NAME": "no-such-bucket-anywhere",
        "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",  # nothing listens there
    }
    done = preflight(env, tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    found = lines(done)
    assert found["database"] == (
        "FAIL", "reachable, but not migrated (no schema_migrations; run migrate)"
    )  # fmt: skip
    assert found["bucket"][0] == "FAIL" and "NoSuchBucket" in found["bucket"][1]
    assert found["redis"][0] == "FAIL" and "ConnectionError" in found["redis"][1]
    # the others still ran, and passed
    assert (found["config"][0], found["queue"][0], found["github"][0]) == ("OK", "OK", "OK")


def test_a_github_app_key_github_does_not_know_fails_the_github_line(
    stores: Stores, tmp_path: Path
) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    done = preflight({**stores.env, "GH_APP_PRIVATE_KEY": _pem(other)}, tmp_path)
    assert done.returncode == 1
    assert lines(done)["github"][0] == "FAIL"


def test_a_token_github_refuses_fails_the_github_line(stores: Stores, tmp_path: Path) -> None:
    done = preflight(stores.env, tmp_path, "--github-token", "not-a-token")
    assert done.returncode == 1
    verdict, detail = lines(done)["github"]
    assert verdict == "FAIL" and "Unauthenticated" in detail


def test_a_partly_migrated_database_names_the_missing_files(
    stores: Stores, empty_database_url: str, tmp_path: Path
) -> None:
    import psycopg

    with psycopg.connect(empty_database_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE schema_migrations (version text PRIMARY KEY)")
        conn.execute("INSERT INTO schema_migrations VALUES ('0001_initial.sql')")
    done = preflight({**stores.env, "DATABASE_URL": empty_database_url}, tmp_path)
    assert done.returncode == 1
    verdict, detail = lines(done)["database"]
    missing = sorted(p.name for p in (REPO_ROOT / "sql").glob("*.sql"))[1:]
    assert verdict == "FAIL" and detail.endswith(", ".join(missing))


def test_bad_configuration_is_one_failing_line_and_exit_2(tmp_path: Path) -> None:
    done = preflight(base_env(CLEANUP_GRACE="soon"), tmp_path)
    assert done.returncode == 2
    assert done.stdout.startswith("FAIL  config    invalid configuration: CLEANUP_GRACE")
