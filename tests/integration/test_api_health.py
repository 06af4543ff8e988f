"""/healthz and /readyz through the real handler behind the local gateway."""

import json
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from artemis_local.runner import LocalSystem
from tests.conftest import base_env


def fetch(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=20) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


@pytest.fixture
def start_system(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Start LocalSystems on real Postgres and moto; stopping them (newest first) restores
    the environment."""
    systems: list[LocalSystem] = []

    def start(**env: str) -> str:
        system = LocalSystem(state_dir=tmp_path, base_env=env, port=0, workers=False).start()
        systems.append(system)
        assert system.gateway is not None
        return system.gateway.url

    try:
        yield start
    finally:
        for system in reversed(systems):
            system.stop()


def test_healthz_is_ok_without_touching_dependencies(
    start_system: Any, database_url: str, moto_url: str
) -> None:
    url = start_system(**base_env(DATABASE_URL=database_url, AWS_ENDPOINT_URL=moto_url))
    assert fetch(url + "/healthz") == (200, {"ok": True})


def test_readyz_ready_with_every_dependency(
    start_system: Any, database_url: str, moto_url: str, redis_url: str
) -> None:
    url = start_system(
        **base_env(DATABASE_URL=database_url, AWS_ENDPOINT_URL=moto_url, REDIS_URL=redis_url)
    )
    assert fetch(url + "/readyz") == (
        200,
        {"ready": True, "checks": {"bucket": "ok", "postgres": "ok", "redis": "ok"}},
    )


def test_readyz_degrades_when_postgres_or_redis_is_down(
    start_system: Any, database_url: str, moto_url: str
) -> None:
    url = start_system(
        **base_env(
            DATABASE_URL=database_url, AWS_ENDPOINT_URL=moto_url, REDIS_URL="redis://127.0.0.1:1/0"
        )
    )
    os.environ["DATABASE_URL"] = "postgresql://postgres@127.0.0.1:1/none?connect_timeout=1"
    from artemis import runtime

    runtime.reset()  # the next invocation reads the broken database URL
    status, body = fetch(url + "/readyz")
    assert status == 200
    assert body == {
        "ready": True,
        "degraded": True,
        "checks": {"bucket": "ok", "postgres": "unreachable", "redis": "unreachable"},
    }


def test_readyz_is_503_when_the_bucket_does_not_exist(
    start_system: Any, database_url: str, moto_url: str
) -> None:
    url = start_system(**base_env(DATABASE_URL=database_url, AWS_ENDPOINT_URL=moto_url))
    os.environ["BUCKET_NAME"] = "no-such-bucket-here"
    from artemis import runtime

    runtime.reset()
    status, body = fetch(url + "/readyz")
    assert (status, body["error"]["code"]) == (503, "r2_unreachable")


def test_readyz_is_503_when_the_bucket_is_unreachable(
    start_system: Any, database_url: str, moto_url: str
) -> None:
    url = start_system(**base_env(DATABASE_URL=database_url, AWS_ENDPOINT_URL=moto_url))
    os.environ["AWS_ENDPOINT_URL"] = "http://127.0.0.1:1"
    from artemis import runtime

    runtime.reset()
    status, body = fetch(url + "/readyz")
    assert status == 503
    assert body["error"]["code"] == "r2_unreachable"


def test_unknown_route_is_the_json_envelope(
    start_system: Any, database_url: str, moto_url: str
) -> None:
    url = start_system(**base_env(DATABASE_URL=database_url, AWS_ENDPOINT_URL=moto_url))
    assert fetch(url + "/api/nope") == (
        404,
        {"error": {"code": "not_found", "message": "no such route"}},
    )


def test_stopping_the_system_restores_the_process_environment(
    tmp_path: Path, database_url: str, moto_url: str
) -> None:
    before = dict(os.environ)
    system = LocalSystem(
        state_dir=tmp_path, base_env=base_env(DATABASE_URL=database_url, AWS_ENDPOINT_URL=moto_url),
        port=0, workers=False,
    ).start()  # fmt: skip
    try:
        assert os.environ["DATABASE_URL"] == database_url and "GH_API_BASE" in os.environ
    finally:
        system.stop()
    assert dict(os.environ) == before
