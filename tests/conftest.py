"""Shared fixtures: real Postgres, real Redis, an in-process moto server, the settings env.

Postgres: ARTEMIS_TEST_PG_URL, else the machine's server on 127.0.0.1:5432, else an embedded
server (pgserver). Each test session gets its own database, migrated once and dropped at the
end; each test starts with empty tables (the append-only audit log excepted: tests that read
it use values of their own).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import psycopg
import pytest

from artemis.db.connection import Database
from artemis.db.migrate import migrate

REPO_ROOT = Path(__file__).resolve().parent.parent
MACHINE_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
MACHINE_REDIS = "redis://127.0.0.1:6379/15"
TEST_SIGNING_KEY = "test-signing-key-0123456789abcdef0123456789"
TRUNCATE = "TRUNCATE deploys, aliases, tombstones, outbox, trust_rules, hook_attempts, hook_deliveries, hook_subscriptions, github_deployments, sites, repo_requests, job_runs, deploy_files RESTART IDENTITY"


def _answers(url: str) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=2):
            return True
    except psycopg.Error:
        return False


def with_database(url: str, name: str) -> str:
    return psycopg.conninfo.make_conninfo(url, dbname=name)


@pytest.fixture(scope="session")
def pg_admin_url() -> Iterator[str]:
    url = os.environ.get("ARTEMIS_TEST_PG_URL")
    if url:
        yield url
        return
    if _answers(MACHINE_PG):
        yield MACHINE_PG
        return
    from pgserver.postgres_server import (
        get_server,
    )  # the embedded fallback for machines without a server

    data = Path(tempfile.mkdtemp(prefix="artemis-pg-"))
    data.chmod(0o755)  # pgserver runs postgres as its own OS user when we are root
    server = get_server(data, cleanup_mode="delete")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()
        shutil.rmtree(data, ignore_errors=True)


def create_database(admin_url: str, template: str | None = None) -> str:
    name = f"artemis_test_{uuid.uuid4().hex[:12]}"
    copy = f' TEMPLATE "{template}"' if template else ""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"{copy}'.encode())
    return with_database(admin_url, name)


def drop_database(admin_url: str, url: str) -> None:
    name = psycopg.conninfo.conninfo_to_dict(url)["dbname"]
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())


@pytest.fixture
def empty_database_url(pg_admin_url: str) -> Iterator[str]:
    """A database with nothing in it (migration tests)."""
    url = create_database(pg_admin_url)
    try:
        yield url
    finally:
        drop_database(pg_admin_url, url)


@pytest.fixture(scope="session")
def migrated_database_url(pg_admin_url: str) -> Iterator[str]:
    """A migrated database for the session. ARTEMIS_TEST_PG_TEMPLATE names an already migrated
    database to copy instead (mutation runs start a test session per mutant)."""
    template = os.environ.get("ARTEMIS_TEST_PG_TEMPLATE")
    url = create_database(pg_admin_url, template)
    if not template:
        migrate(url)
    try:
        yield url
    finally:
        drop_database(pg_admin_url, url)


@pytest.fixture
def database_url(migrated_database_url: str) -> str:
    """The session's migrated database, emptied for this test."""
    with psycopg.connect(migrated_database_url, autocommit=True) as conn:
        conn.execute(TRUNCATE)
        fresh_outbox_ids(conn)
    return migrated_database_url


def fresh_outbox_ids(conn: psycopg.Connection) -> None:
    """Outbox ids are the queues' deduplication ids, and the queues outlive a test: ids a
    test writes must never have been sent before, as in production, where they never
    restart (TRUNCATE ... RESTART IDENTITY would start them at 1 again)."""
    conn.execute(
        "SELECT setval(pg_get_serial_sequence('outbox', 'id'), %s)", [time.time_ns() // 1000]
    )


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database(database_url)
    try:
        yield database
    finally:
        database.close()


@pytest.fixture
def conn(database_url: str) -> Iterator[psycopg.Connection]:
    """A connection whose work is committed at the end of each `with conn.transaction()`."""
    with psycopg.connect(database_url, autocommit=True) as connection:
        yield connection


# --- Redis ---------------------------------------------------------------------------


def _redis_answers(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    url = os.environ.get("ARTEMIS_TEST_REDIS_URL")
    if url:
        yield url
        return
    if _redis_answers(MACHINE_REDIS):
        yield MACHINE_REDIS
        return
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail(
            "no Redis: set ARTEMIS_TEST_REDIS_URL, run one on 127.0.0.1:6379, or install redis-server"
        )
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 10
    while not _redis_answers(url):
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("redis-server did not start")
        time.sleep(0.05)
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# --- AWS through moto ------------------------------------------------------------------


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    """A moto server for the session; ARTEMIS_TEST_MOTO_URL names a running one to share
    instead (mutation runs start a test session per mutant)."""
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "test")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "test")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    shared = os.environ.get("ARTEMIS_TEST_MOTO_URL")
    if shared:
        yield shared
        return
    from artemis_local.aws import MotoServer

    server = MotoServer().start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def s3_client(moto_url: str):  # type: ignore[no-untyped-def]
    from artemis.storage.s3 import make_s3_client

    return make_s3_client(moto_url, "us-east-1")


@pytest.fixture
def bucket_name(s3_client) -> str:  # type: ignore[no-untyped-def]
    name = f"test-{uuid.uuid4().hex[:16]}"
    s3_client.create_bucket(Bucket=name)
    return name


@pytest.fixture
def bucket(s3_client, bucket_name: str):  # type: ignore[no-untyped-def]
    from artemis.storage.s3 import Bucket

    return Bucket(s3_client, bucket_name)


# A production-like key layout where slug and dirname differ (`www` → `www.example.org`):
# a code path that skips the slug→dirname conversion finds nothing under it.
SLUG_NOT_DIRNAME = {
    "DEPLOY_PREFIX_FORMAT": "<site>.example.org/deploys/<ts>-<sha>/",
    "ALIAS_PRODUCTION_KEY_FORMAT": "<site>.example.org/production",
    "ALIAS_PREVIEW_KEY_FORMAT": "<site>.example.org/preview",
    "PUBLIC_URL_PRODUCTION_FORMAT": "https://<site>.example.org",
    "PUBLIC_URL_PREVIEW_FORMAT": "https://<site>.preview.example.org",
    "PUBLIC_URL_NAMED_FORMAT": "https://<alias>--<site>.preview.example.org",
}


def base_env(**overrides: str) -> dict[str, str]:
    """A valid settings environment for tests; pass overrides to change one variable."""
    env = {"JWT_SIGNING_KEY": TEST_SIGNING_KEY, "DATABASE_URL": "postgresql://127.0.0.1/unused"}
    env.update(overrides)
    return env


def sqs_client(url: str):  # type: ignore[no-untyped-def]
    return boto3.client("sqs", endpoint_url=url, region_name="us-east-1")
