"""Without the GitHub App settings the repo-request feature is off: every `/api/repo*` route
answers 404 (spec/api.md §12.1)."""

from __future__ import annotations

import pytest

from tests.integration.api.conftest import STAFF, Api


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/repo"),
        ("GET", "/api/repos"),
        ("GET", "/api/repo/templates"),
        ("GET", "/api/repo/req_00000000000000000000"),
        ("POST", "/api/repo/req_00000000000000000000/approve"),
        ("POST", "/api/repo/req_00000000000000000000/reject"),
        ("DELETE", "/api/repo/req_00000000000000000000"),
    ],
)
def test_every_repo_route_is_absent_when_the_feature_is_off(
    api: Api, method: str, path: str
) -> None:
    reply = api.call(method, path, token=STAFF, json_body={} if method == "POST" else None)
    assert (reply.status, reply.code) == (404, "not_found")
