"""The fake GitHub answers like GitHub for the calls Artemis makes."""

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from artemis_local.fake_github import FakeGitHub


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    fake = FakeGitHub().start()
    try:
        yield fake
    finally:
        fake.stop()


def get(github: FakeGitHub, path: str, token: str | None) -> tuple[int, Any]:
    req = urllib.request.Request(github.url + path)
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_user_by_token(github: FakeGitHub) -> None:
    assert get(github, "/user", "local-staff-token") == (
        200,
        {"login": "local-staff", "id": 1001, "type": "User"},
    )
    status, body = get(github, "/user", "wrong")
    assert status == 401 and body["message"] == "Bad credentials"
    status, body = get(github, "/user", None)
    assert status == 401 and body["message"] == "Requires authentication"


def test_team_listing(github: FakeGitHub) -> None:
    status, teams = get(github, "/user/teams", "local-dev-token")
    assert status == 200
    assert {(t["organization"]["login"], t["slug"]) for t in teams} == {
        ("freeCodeCamp", "web"),
        ("freeCodeCamp-Universe", "web"),
    }
    assert get(github, "/user/teams", "local-outsider-token") == (200, [])


def test_membership_probe(github: FakeGitHub) -> None:
    status, body = get(
        github, "/orgs/freeCodeCamp/teams/staff/memberships/local-staff", "local-staff-token"
    )
    assert status == 200 and body["state"] == "active"
    assert (
        get(github, "/orgs/freeCodeCamp/teams/staff/memberships/local-dev", "local-staff-token")[0]
        == 404
    )
    assert (
        get(github, "/orgs/other-org/teams/staff/memberships/local-staff", "local-staff-token")[0]
        == 404
    )
    assert get(github, "/orgs/freeCodeCamp/teams/staff/memberships/local-staff", "bad")[0] == 401
    assert ("GET", "/orgs/freeCodeCamp/teams/staff/memberships/local-staff") in github.requests
