"""The fake GitHub answers like GitHub for the calls Artemis makes."""

import http.client
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from artemis_local.fake_github import FakeGitHub, Identity


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


def get_raw(github: FakeGitHub, path: str, token: str) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(github.url + path, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def test_team_listing_pages(github: FakeGitHub) -> None:
    teams = tuple(f"t{i}" for i in range(120))
    github.directory.identities["many"] = Identity("many", "many", 7, teams)
    slugs = [
        t["slug"] for t in get(github, "/user/teams?per_page=100&page=1", "many")[1]
    ]  # two orgs → 240 entries
    assert slugs == list(teams[:100])
    page3 = get(github, "/user/teams?per_page=100&page=3", "many")[1]
    assert [(t["organization"]["login"], t["slug"]) for t in page3[:1]] == [
        ("freeCodeCamp-Universe", "t80")
    ]
    assert len(page3) == 40
    assert get(github, "/user/teams?per_page=100&page=4", "many") == (200, [])
    assert len(get(github, "/user/teams", "many")[1]) == 30  # GitHub's default page size
    assert len(get(github, "/user/teams?per_page=500", "many")[1]) == 100  # and its maximum


def test_fail_answers_with_the_injected_status_headers_and_body(github: FakeGitHub) -> None:
    github.fail("/user", 429, {"Retry-After": "7"}, times=1, exact=True)
    status, headers, body = get_raw(github, "/user", "local-staff-token")
    assert status == 429 and headers["Retry-After"] == "7"
    assert json.loads(body)["message"] == "Too Many Requests"
    assert get(github, "/user", "local-staff-token")[0] == 200  # `times` ran out
    github.fail("/user", 200, body="not json", exact=True)
    assert get_raw(github, "/user", "local-staff-token")[2] == b"not json"
    assert get(github, "/user/teams", "local-staff-token")[0] == 200  # exact: not a prefix
    github.clear_faults()
    assert get(github, "/user", "local-staff-token")[0] == 200


def test_fail_by_prefix_matches_path_and_query(github: FakeGitHub) -> None:
    github.fail("/user/teams?per_page=100&page=2", 500)
    assert get(github, "/user/teams?per_page=100&page=1", "local-staff-token")[0] == 200
    assert get(github, "/user/teams?per_page=100&page=2", "local-staff-token")[0] == 500
    github.fail("/user", 502)  # the newest matching fault wins
    assert get(github, "/user/teams?per_page=100&page=2", "local-staff-token")[0] == 502


def test_disconnect_closes_without_an_answer(github: FakeGitHub) -> None:
    github.disconnect("/user", times=1, exact=True)
    with pytest.raises((urllib.error.URLError, ConnectionError, http.client.HTTPException)):
        get(github, "/user", "local-staff-token")
    assert get(github, "/user", "local-staff-token")[0] == 200


def test_delay_slows_matching_answers(github: FakeGitHub) -> None:
    github.delay("/user/teams", 0.3)
    started = time.monotonic()
    get(github, "/user", "local-staff-token")
    assert time.monotonic() - started < 0.3
    started = time.monotonic()
    get(github, "/user/teams", "local-staff-token")
    assert time.monotonic() - started >= 0.3


def test_membership_state_override_and_escaped_segments(github: FakeGitHub) -> None:
    github.set_membership_state("staff", "Local-Dev", "pending")
    status, body = get(
        github, "/orgs/freeCodeCamp/teams/staff/memberships/local-dev", "local-dev-token"
    )
    assert status == 200 and body["state"] == "pending"
    github.directory.identities["odd"] = Identity("odd", "odd", 8, ("a team",))
    path = "/orgs/freeCodeCamp/teams/a%20team/memberships/odd"
    assert get(github, path, "odd")[0] == 200
    assert github.count("/orgs/freeCodeCamp/teams/a%20team") == 1


def test_request_headers_are_recorded(github: FakeGitHub) -> None:
    get(github, "/user", "local-staff-token")
    assert github.request_headers[-1]["authorization"] == "Bearer local-staff-token"
    assert github.count("/user", exact=True) == 1
