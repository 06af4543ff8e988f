"""Fixtures shared by the integration tests of the background jobs."""

from collections.abc import Iterator

import pytest

from tests.integration.test_drift import Fleet, make_fleet


@pytest.fixture
def fleet(database_url: str, moto_url: str, bucket_name: str) -> Iterator[Fleet]:
    """A runtime on the test database and bucket, with helpers to plant sites and drift."""
    f = make_fleet(database_url, moto_url, bucket_name)
    try:
        yield f
    finally:
        f.rt.close()
