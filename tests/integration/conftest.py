"""Fixtures shared by the integration tests of the background jobs."""

from collections.abc import Callable, Iterator

import pytest

from artemis.config import load_settings
from artemis.runtime import Runtime
from artemis_local.fake_github import FakeGitHub
from tests.conftest import SLUG_NOT_DIRNAME, base_env
from tests.integration.test_drift import Fleet, make_fleet

MakeRuntime = Callable[..., Runtime]


@pytest.fixture
def fleet(database_url: str, moto_url: str, bucket_name: str) -> Iterator[Fleet]:
    """A runtime on the test database and bucket, with helpers to plant sites and drift."""
    f = make_fleet(database_url, moto_url, bucket_name)
    try:
        yield f
    finally:
        f.rt.close()


@pytest.fixture
def runtimes() -> Iterator[Callable[[dict[str, str]], Runtime]]:
    """`runtimes(env)`: a Runtime built from `env`; every one is closed when the test ends."""
    made: list[Runtime] = []

    def make(env: dict[str, str]) -> Runtime:
        rt = Runtime(load_settings(env))
        made.append(rt)
        return rt

    yield make
    for rt in made:
        rt.close()


@pytest.fixture
def job_runtime(
    runtimes: Callable[[dict[str, str]], Runtime], database_url: str, moto_url: str,
    bucket_name: str,
) -> MakeRuntime:  # fmt: skip
    """`job_runtime(**env)`: a job's Runtime on the test database and bucket, with the
    slug-not-dirname layout and a blast cap of 10; keyword arguments set other variables."""
    env = base_env(
        DATABASE_URL=database_url, AWS_ENDPOINT_URL=moto_url, BUCKET_NAME=bucket_name,
        CLEANUP_BLAST_CAP="10", **SLUG_NOT_DIRNAME,
    )  # fmt: skip
    return lambda **overrides: runtimes({**env, **overrides})


@pytest.fixture
def fake() -> Iterator[FakeGitHub]:
    """A fake GitHub API on 127.0.0.1 for the GitHub client tests."""
    github = FakeGitHub().start()
    try:
        yield github
    finally:
        github.stop()
