"""GitHubClient against the fake GitHub over real HTTP, and its shared cache on real Redis.

Every row of the classification tables of spec/api.md §3.3-3.5 (with the G-4 fix, the G-22 and
G-23 changes): the outcome, and whether it was cached, read from the fake's request log.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, cast

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from artemis.errors import (
    ArtemisError,
    InsufficientScope,
    RateLimited,
    Unauthenticated,
    UpstreamUnavailable,
)
from artemis.github import GitHubClient, RedisSharedCache, SharedCache, token_hash
from artemis_local.fake_github import Directory, FakeGitHub, Identity

ORG = "freeCodeCamp"
STAFF = "local-staff-token"
DEV = "local-dev-token"
MEMBERSHIP = "/orgs/freeCodeCamp/teams"
NO_RETRY = Retry(NoBackoff(), 0)  # redis-py retries a refused connection for seconds by default
THROTTLES = [
    pytest.param(429, {}, id="429"),
    pytest.param(403, {"Retry-After": "60"}, id="403-retry-after"),
    pytest.param(403, {"X-RateLimit-Remaining": "0"}, id="403-remaining-0"),
    pytest.param(502, {"X-RateLimit-Remaining": "0"}, id="502-remaining-0"),
]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def client(fake: FakeGitHub, clock: Clock) -> GitHubClient:
    return GitHubClient(fake.url, ORG, 300, timeout=5, clock=clock)


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    conn = redis.Redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2)
    try:
        yield conn
    finally:
        conn.close()


@pytest.fixture
def shared(redis_client: redis.Redis) -> Iterator[RedisSharedCache]:
    """A shared cache on real Redis under a prefix of this test's own."""
    prefix = f"artemis-test:{uuid.uuid4().hex}:"
    try:
        yield RedisSharedCache(redis_client, prefix=prefix)
    finally:
        keys = list(redis_client.scan_iter(match=prefix + "*"))
        if keys:
            redis_client.delete(*keys)


def shared_key(cache: RedisSharedCache, key: str) -> str:
    return cache._prefix + key


def rget(conn: redis.Redis, key: str | bytes) -> bytes | None:
    return cast("bytes | None", conn.get(key))


def rttl(conn: redis.Redis, key: str) -> int:
    return cast(int, conn.ttl(key))


def user_calls(fake: FakeGitHub) -> int:
    return fake.count("/user", exact=True)


def probe_path(team: str, login: str) -> str:
    return f"{MEMBERSHIP}/{team}/memberships/{login}"


def add_identity(fake: FakeGitHub, token: str, login: str, teams: list[str]) -> None:
    fake.directory.identities[token] = Identity(token, login, 9000 + len(teams), tuple(teams))


# --- identity (§3.3) --------------------------------------------------------------------------


def test_identity_sends_the_github_headers(client: GitHubClient, fake: FakeGitHub) -> None:
    assert client.identity(STAFF) == "local-staff"
    headers = fake.request_headers[-1]
    assert headers["authorization"] == f"Bearer {STAFF}"
    assert headers["accept"] == "application/vnd.github+json"
    assert headers["x-github-api-version"] == "2022-11-28"
    assert headers["user-agent"]


def test_identity_200_is_cached_for_the_ttl(
    client: GitHubClient, fake: FakeGitHub, clock: Clock
) -> None:
    assert client.identity(STAFF) == "local-staff"
    clock.advance(299)
    assert client.identity(STAFF) == "local-staff"
    assert user_calls(fake) == 1
    clock.advance(1)
    assert client.identity(STAFF) == "local-staff"
    assert user_calls(fake) == 2


def test_identity_200_with_throttle_headers_still_authenticates(
    client: GitHubClient, fake: FakeGitHub
) -> None:
    fake.fail("/user", 200, {"X-RateLimit-Remaining": "0"}, '{"login": "octo"}', exact=True)
    assert client.identity(STAFF) == "octo"


@pytest.mark.parametrize(
    ("status", "headers"),
    [
        pytest.param(401, {}, id="401"),
        pytest.param(401, {"X-RateLimit-Remaining": "0"}, id="401-is-never-a-throttle"),
        pytest.param(403, {}, id="403"),
        pytest.param(404, {}, id="404"),
    ],
)
def test_identity_refusal_is_unauthenticated_and_negative_cached_30s(
    client: GitHubClient, fake: FakeGitHub, clock: Clock, status: int, headers: dict[str, str]
) -> None:
    fake.fail("/user", status, headers, exact=True)
    with pytest.raises(Unauthenticated):
        client.identity(STAFF)
    clock.advance(29.9)
    with pytest.raises(Unauthenticated):
        client.identity(STAFF)
    assert user_calls(fake) == 1
    fake.clear_faults()
    clock.advance(0.1)
    assert client.identity(STAFF) == "local-staff"
    assert user_calls(fake) == 2


def test_identity_unknown_token_is_a_real_401(client: GitHubClient, fake: FakeGitHub) -> None:
    with pytest.raises(Unauthenticated):
        client.identity("not-a-token")
    with pytest.raises(Unauthenticated):
        client.identity("not-a-token")
    assert user_calls(fake) == 1


def test_identity_negative_ttl_is_the_ttl_when_shorter_than_30s(
    fake: FakeGitHub, clock: Clock
) -> None:
    client = GitHubClient(fake.url, ORG, 10, clock=clock)
    with pytest.raises(Unauthenticated):
        client.identity("bad")
    clock.advance(9.9)
    with pytest.raises(Unauthenticated):
        client.identity("bad")
    assert user_calls(fake) == 1
    clock.advance(0.1)
    with pytest.raises(Unauthenticated):
        client.identity("bad")
    assert user_calls(fake) == 2


@pytest.mark.parametrize(("status", "headers"), THROTTLES)
def test_identity_throttle_is_rate_limited_and_never_cached(
    client: GitHubClient, fake: FakeGitHub, status: int, headers: dict[str, str]
) -> None:
    fake.fail("/user", status, headers, exact=True)
    for _ in range(2):
        with pytest.raises(RateLimited):
            client.identity(STAFF)
    assert user_calls(fake) == 2


def test_identity_404_with_remaining_0_is_a_throttle(
    client: GitHubClient, fake: FakeGitHub
) -> None:
    fake.fail("/user", 404, {"X-RateLimit-Remaining": "0"}, exact=True)
    with pytest.raises(RateLimited):
        client.identity(STAFF)


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_identity_5xx_is_unavailable_and_never_cached(
    client: GitHubClient, fake: FakeGitHub, status: int
) -> None:
    fake.fail("/user", status, exact=True)
    for _ in range(2):
        with pytest.raises(UpstreamUnavailable):
            client.identity(STAFF)
    assert user_calls(fake) == 2


@pytest.mark.parametrize("status", [201, 204, 301, 302, 400, 418, 422])
def test_g4_identity_unexpected_status_is_unavailable_not_unauthenticated(
    client: GitHubClient, fake: FakeGitHub, status: int
) -> None:
    fake.fail("/user", status, {"Location": fake.url + "/elsewhere"}, exact=True)
    for _ in range(2):
        with pytest.raises(UpstreamUnavailable):
            client.identity(STAFF)
    assert user_calls(fake) == 2  # never cached
    assert fake.count("/elsewhere") == 0  # a redirect is not followed with the token


@pytest.mark.parametrize(
    "body",
    [
        pytest.param("not json", id="unparsable"),
        pytest.param('{"login": ""}', id="empty-login"),
        pytest.param('{"id": 1}', id="no-login"),
        pytest.param('{"login": 42}', id="login-not-a-string"),
        pytest.param('["local-staff"]', id="not-an-object"),
        pytest.param("", id="empty-body"),
    ],
)
def test_g4_identity_bad_200_body_is_unavailable_and_never_cached(
    client: GitHubClient, fake: FakeGitHub, body: str
) -> None:
    fake.fail("/user", 200, body=body, exact=True)
    for _ in range(2):
        with pytest.raises(UpstreamUnavailable):
            client.identity(STAFF)
    assert user_calls(fake) == 2


def test_g4_identity_transport_error_is_unavailable(client: GitHubClient, fake: FakeGitHub) -> None:
    fake.disconnect("/user", exact=True)
    with pytest.raises(UpstreamUnavailable):
        client.identity(STAFF)
    fake.clear_faults()
    assert client.identity(STAFF) == "local-staff"  # the failure was not cached


def test_g4_identity_timeout_is_unavailable(fake: FakeGitHub) -> None:
    client = GitHubClient(fake.url, ORG, timeout=0.2)
    fake.delay("/user", 1.0, exact=True)
    with pytest.raises(UpstreamUnavailable):
        client.identity(STAFF)


def test_g4_identity_connection_refused_is_unavailable() -> None:
    client = GitHubClient("http://127.0.0.1:1", ORG, timeout=1)
    with pytest.raises(UpstreamUnavailable):
        client.identity(STAFF)


def test_forget_token_drops_the_cached_identity(client: GitHubClient, fake: FakeGitHub) -> None:
    client.identity(STAFF)
    client.forget_token(STAFF)
    client.identity(STAFF)
    assert user_calls(fake) == 2


# --- membership (§3.4) ----------------------------------------------------------------------


def test_membership_active_is_true_cached_for_the_ttl(
    client: GitHubClient, fake: FakeGitHub, clock: Clock
) -> None:
    assert client.is_member("local-staff", "staff", STAFF) is True
    clock.advance(299)
    assert client.is_member("local-staff", "staff", STAFF) is True
    assert fake.count(probe_path("staff", "local-staff")) == 1
    clock.advance(1)
    assert client.is_member("local-staff", "staff", STAFF) is True
    assert fake.count(probe_path("staff", "local-staff")) == 2


def test_membership_probe_uses_the_callers_token(client: GitHubClient, fake: FakeGitHub) -> None:
    client.is_member("local-staff", "staff", DEV)
    assert fake.requests[-1] == ("GET", probe_path("staff", "local-staff"))
    assert fake.request_headers[-1]["authorization"] == f"Bearer {DEV}"


def test_membership_cache_key_lower_cases_the_login(client: GitHubClient, fake: FakeGitHub) -> None:
    assert client.is_member("LOCAL-Staff", "staff", STAFF) is True
    assert client.is_member("local-staff", "staff", STAFF) is True
    assert fake.count(f"{MEMBERSHIP}/staff/memberships/") == 1


def test_membership_path_segments_are_escaped(client: GitHubClient, fake: FakeGitHub) -> None:
    assert client.is_member("odd/login", "team name", STAFF) is False
    assert fake.requests[-1] == ("GET", f"{MEMBERSHIP}/team%20name/memberships/odd%2Flogin")


def test_membership_other_state_is_false_and_cached(
    client: GitHubClient, fake: FakeGitHub, clock: Clock
) -> None:
    fake.set_membership_state("staff", "local-dev", "pending")
    assert client.is_member("local-dev", "staff", DEV) is False
    clock.advance(29)
    assert client.is_member("local-dev", "staff", DEV) is False
    assert fake.count(probe_path("staff", "local-dev")) == 1


def test_membership_404_is_false_and_cached(
    client: GitHubClient, fake: FakeGitHub, clock: Clock
) -> None:
    assert client.is_member("local-dev", "staff", DEV) is False
    clock.advance(29)
    assert client.is_member("local-dev", "staff", DEV) is False
    assert fake.count(probe_path("staff", "local-dev")) == 1


def test_membership_404_with_throttle_headers_is_not_a_member(
    client: GitHubClient, fake: FakeGitHub
) -> None:
    fake.fail(MEMBERSHIP, 404, {"X-RateLimit-Remaining": "0", "Retry-After": "5"})
    assert client.is_member("local-staff", "staff", STAFF) is False


def test_g23_negative_membership_is_capped_at_30s(
    client: GitHubClient, fake: FakeGitHub, clock: Clock
) -> None:
    """A user just added to a team is let in within 30 s, not after the full 5-minute TTL."""
    assert client.is_member("local-dev", "staff", DEV) is False
    add_identity(fake, DEV, "local-dev", ["web", "staff"])  # added to staff on GitHub
    clock.advance(29.9)
    assert client.is_member("local-dev", "staff", DEV) is False  # still the cached answer
    clock.advance(0.1)
    assert client.is_member("local-dev", "staff", DEV) is True
    assert fake.count(probe_path("staff", "local-dev")) == 2


def test_g23_pending_membership_is_capped_at_30s_too(
    client: GitHubClient, fake: FakeGitHub, clock: Clock
) -> None:
    fake.set_membership_state("staff", "local-dev", "pending")
    assert client.is_member("local-dev", "staff", DEV) is False
    fake.set_membership_state("staff", "local-dev", "active")  # the invitation was accepted
    clock.advance(30)
    assert client.is_member("local-dev", "staff", DEV) is True


def test_g23_negative_membership_cap_is_the_ttl_when_shorter(
    fake: FakeGitHub, clock: Clock
) -> None:
    client = GitHubClient(fake.url, ORG, 10, clock=clock)
    client.is_member("local-dev", "staff", DEV)
    clock.advance(10)
    client.is_member("local-dev", "staff", DEV)
    assert fake.count(probe_path("staff", "local-dev")) == 2


@pytest.mark.parametrize(
    "body",
    [
        pytest.param("not json", id="unparsable"),
        pytest.param("[]", id="not-an-object"),
        pytest.param('{"role": "member"}', id="no-state"),
        pytest.param('{"state": 1}', id="state-not-a-string"),
    ],
)
def test_membership_bad_200_body_is_unavailable_and_not_cached(
    client: GitHubClient, fake: FakeGitHub, body: str
) -> None:
    fake.fail(MEMBERSHIP, 200, body=body)
    for _ in range(2):
        with pytest.raises(UpstreamUnavailable):
            client.is_member("local-staff", "staff", STAFF)
    assert fake.count(MEMBERSHIP) == 2


@pytest.mark.parametrize(("status", "headers"), THROTTLES)
def test_membership_throttle_is_rate_limited_and_not_cached(
    client: GitHubClient, fake: FakeGitHub, status: int, headers: dict[str, str]
) -> None:
    fake.fail(MEMBERSHIP, status, headers)
    for _ in range(2):
        with pytest.raises(RateLimited):
            client.is_member("local-staff", "staff", STAFF)
    assert fake.count(MEMBERSHIP) == 2


@pytest.mark.parametrize("status", [500, 502, 503])
def test_membership_5xx_is_unavailable_and_not_cached(
    client: GitHubClient, fake: FakeGitHub, status: int
) -> None:
    fake.fail(MEMBERSHIP, status)
    for _ in range(2):
        with pytest.raises(UpstreamUnavailable):
            client.is_member("local-staff", "staff", STAFF)
    assert fake.count(MEMBERSHIP) == 2


@pytest.mark.parametrize("status", [204, 302, 400, 418])
def test_membership_other_status_is_unavailable_and_not_cached(
    client: GitHubClient, fake: FakeGitHub, status: int
) -> None:
    fake.fail(MEMBERSHIP, status)
    for _ in range(2):
        with pytest.raises(UpstreamUnavailable):
            client.is_member("local-staff", "staff", STAFF)
    assert fake.count(MEMBERSHIP) == 2


def test_g4_membership_transport_error_is_unavailable(
    client: GitHubClient, fake: FakeGitHub
) -> None:
    fake.disconnect(MEMBERSHIP)
    with pytest.raises(UpstreamUnavailable):
        client.is_member("local-staff", "staff", STAFF)


@pytest.mark.parametrize(
    "headers",
    [pytest.param({}, id="401"), pytest.param({"X-RateLimit-Remaining": "0"}, id="401-r0")],
)
def test_g4_membership_401_is_unauthenticated_and_drops_the_identity(
    client: GitHubClient, fake: FakeGitHub, headers: dict[str, str]
) -> None:
    assert client.identity(STAFF) == "local-staff"
    fake.fail(MEMBERSHIP, 401, headers)
    for _ in range(2):
        with pytest.raises(Unauthenticated):
            client.is_member("local-staff", "staff", STAFF)
    assert fake.count(MEMBERSHIP) == 2  # not cached
    client.identity(STAFF)
    assert user_calls(fake) == 2  # the cached identity of the token was dropped


def test_g4_membership_403_is_insufficient_scope_and_not_cached(
    client: GitHubClient, fake: FakeGitHub
) -> None:
    fake.fail(MEMBERSHIP, 403, body='{"message": "Resource protected by organization SAML"}')
    for _ in range(2):
        with pytest.raises(InsufficientScope):
            client.is_member("local-staff", "staff", STAFF)
    assert fake.count(MEMBERSHIP) == 2
    assert InsufficientScope.status == 403


def test_g4_membership_403_keeps_the_identity(client: GitHubClient, fake: FakeGitHub) -> None:
    client.identity(STAFF)
    fake.fail(MEMBERSHIP, 403)
    with pytest.raises(InsufficientScope):
        client.is_member("local-staff", "staff", STAFF)
    client.identity(STAFF)
    assert user_calls(fake) == 1


# --- several teams ------------------------------------------------------------------------


def test_first_team_member_of_probes_in_order_and_stops_at_the_first_grant(
    client: GitHubClient, fake: FakeGitHub
) -> None:
    assert client.first_team_member_of("local-staff", ["web", "staff", "other"], STAFF) == "staff"
    probes = [target for _, target in fake.requests if target.startswith(MEMBERSHIP)]
    assert probes == [probe_path("web", "local-staff"), probe_path("staff", "local-staff")]


def test_first_team_member_of_none_when_no_team_grants(
    client: GitHubClient, fake: FakeGitHub
) -> None:
    assert client.first_team_member_of("local-outsider", ["web", "staff"], STAFF) is None
    assert fake.count(MEMBERSHIP) == 2


def test_first_team_member_of_an_empty_list_never_grants(
    client: GitHubClient, fake: FakeGitHub
) -> None:
    assert client.first_team_member_of("local-staff", [], STAFF) is None
    assert fake.requests == []


@pytest.mark.parametrize(
    ("status", "error"),
    [(500, UpstreamUnavailable), (403, InsufficientScope), (429, RateLimited)],
)
def test_first_team_member_of_stops_at_the_first_probe_error(
    client: GitHubClient, fake: FakeGitHub, status: int, error: type[ArtemisError]
) -> None:
    fake.fail(probe_path("web", "local-staff"), status)
    with pytest.raises(error):
        client.first_team_member_of("local-staff", ["web", "staff"], STAFF)
    assert fake.count(probe_path("staff", "local-staff")) == 0  # staff would have granted


# --- team listing (§3.5) ---------------------------------------------------------------------


def test_teams_lists_the_callers_teams_in_the_org_and_caches_them(
    client: GitHubClient, fake: FakeGitHub, clock: Clock
) -> None:
    assert client.teams(STAFF) == ["staff"]
    assert client.teams(STAFF) == ["staff"]
    assert fake.requests == [("GET", "/user/teams?per_page=100&page=1")]
    clock.advance(300)
    client.teams(STAFF)
    assert fake.count("/user/teams") == 2


def test_teams_filters_by_org_case_insensitively(fake: FakeGitHub) -> None:
    page = [
        {"slug": "a", "organization": {"login": "freeCodeCamp"}},
        {"slug": "b", "organization": {"login": "FREECODECAMP"}},
        {"slug": "c", "organization": {"login": "freeCodeCamp-Universe"}},
        {"slug": "d", "organization": None},
        {"slug": "e"},
        {"name": "no-slug", "organization": {"login": "freeCodeCamp"}},
    ]
    fake.fail("/user/teams", 200, body=json.dumps(page))
    assert GitHubClient(fake.url, "freecodecamp").teams(STAFF) == ["a", "b"]
    assert GitHubClient(fake.url, "").teams(STAFF) == ["a", "b", "c", "d", "e"]


def test_teams_pages_through_250_teams_until_an_empty_page(fake: FakeGitHub) -> None:
    teams = [f"team-{i:03d}" for i in range(250)]
    add_identity(fake, "many-token", "many", teams)
    # two orgs in the fake → 500 entries: five full pages, then an empty sixth
    assert GitHubClient(fake.url, ORG).teams("many-token") == teams
    assert [t for _, t in fake.requests] == [
        f"/user/teams?per_page=100&page={n}" for n in range(1, 7)
    ]


def test_teams_stops_at_a_short_page(fake: FakeGitHub) -> None:
    fake.directory = Directory(orgs=(ORG,), identities=fake.directory.identities)
    teams = [f"team-{i:03d}" for i in range(250)]
    add_identity(fake, "many-token", "many", teams)
    assert GitHubClient(fake.url, ORG).teams("many-token") == teams
    assert fake.count("/user/teams") == 3  # 100, 100, 50


def test_teams_failure_on_a_later_page_caches_nothing(fake: FakeGitHub) -> None:
    teams = [f"team-{i:03d}" for i in range(250)]
    add_identity(fake, "many-token", "many", teams)
    client = GitHubClient(fake.url, ORG)
    fake.fail("/user/teams?per_page=100&page=2", 500, times=1)
    with pytest.raises(UpstreamUnavailable):
        client.teams("many-token")
    assert client.teams("many-token") == teams
    assert fake.count("/user/teams?per_page=100&page=1") == 2


def _assert_teams_fails(
    client: GitHubClient, fake: FakeGitHub, error: type[ArtemisError], calls: int = 2
) -> None:
    for _ in range(2):
        with pytest.raises(error):
            client.teams(STAFF)
    assert fake.count("/user/teams") == calls  # nothing cached
    fake.clear_faults()
    assert client.teams(STAFF) == ["staff"]


@pytest.mark.parametrize(
    "headers",
    [pytest.param({}, id="401"), pytest.param({"X-RateLimit-Remaining": "0"}, id="401-r0")],
)
def test_g4_teams_401_is_unauthenticated_and_drops_the_identity(
    client: GitHubClient, fake: FakeGitHub, headers: dict[str, str]
) -> None:
    client.identity(STAFF)
    fake.fail("/user/teams", 401, headers)
    _assert_teams_fails(client, fake, Unauthenticated)
    client.identity(STAFF)
    assert user_calls(fake) == 2


@pytest.mark.parametrize(("status", "headers"), THROTTLES)
def test_teams_throttle_is_rate_limited(
    client: GitHubClient, fake: FakeGitHub, status: int, headers: dict[str, str]
) -> None:
    fake.fail("/user/teams", status, headers)
    _assert_teams_fails(client, fake, RateLimited)


def test_g4_teams_403_is_insufficient_scope(client: GitHubClient, fake: FakeGitHub) -> None:
    fake.fail("/user/teams", 403)
    _assert_teams_fails(client, fake, InsufficientScope)


@pytest.mark.parametrize("status", [500, 503, 204, 302, 404, 418])
def test_teams_5xx_and_other_status_are_unavailable(
    client: GitHubClient, fake: FakeGitHub, status: int
) -> None:
    fake.fail("/user/teams", status)
    _assert_teams_fails(client, fake, UpstreamUnavailable)


@pytest.mark.parametrize("body", ["not json", '{"slug": "a"}', "null"])
def test_teams_unparsable_page_is_unavailable(
    client: GitHubClient, fake: FakeGitHub, body: str
) -> None:
    fake.fail("/user/teams", 200, body=body)
    _assert_teams_fails(client, fake, UpstreamUnavailable)


def test_g4_teams_transport_error_is_unavailable(client: GitHubClient, fake: FakeGitHub) -> None:
    fake.disconnect("/user/teams")
    _assert_teams_fails(client, fake, UpstreamUnavailable)


def test_forget_token_drops_the_cached_team_list(client: GitHubClient, fake: FakeGitHub) -> None:
    client.teams(STAFF)
    client.forget_token(STAFF)
    client.teams(STAFF)
    assert fake.count("/user/teams") == 2


# --- shared cache on real Redis -----------------------------------------------------------


def test_redis_shared_cache_round_trip_with_prefix_and_ttl(
    shared: RedisSharedCache, redis_client: redis.Redis
) -> None:
    assert shared.get("k") is None
    shared.set("k", "v", 60)
    assert shared.get("k") == "v"
    assert rget(redis_client, shared_key(shared, "k")) == b"v"
    assert 55 <= rttl(redis_client, shared_key(shared, "k")) <= 60
    shared.set("zero", "v", 0)
    assert shared.get("zero") is None


def test_redis_shared_cache_works_with_decoded_responses(redis_url: str) -> None:
    conn = redis.Redis.from_url(redis_url, decode_responses=True)
    cache = RedisSharedCache(conn, prefix=f"artemis-test:{uuid.uuid4().hex}:")
    try:
        cache.set("k", "ü", 10)
        assert cache.get("k") == "ü"
    finally:
        conn.delete(shared_key(cache, "k"))
        conn.close()


def dead_redis_cache() -> RedisSharedCache:
    conn = redis.Redis(
        host="127.0.0.1", port=1, socket_connect_timeout=0.2, socket_timeout=0.2, retry=NO_RETRY
    )
    return RedisSharedCache(conn)


def test_redis_shared_cache_swallows_errors_of_a_dead_redis() -> None:
    cache = dead_redis_cache()
    assert cache.get("k") is None
    cache.set("k", "v", 10)  # no exception


class BrokenRedis:
    """A TCP server that accepts connections and closes them at once, counting them."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]
        self.sock.settimeout(0.05)
        self.accepted = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()


def test_redis_shared_cache_skips_redis_for_a_cooldown_after_an_error() -> None:
    broken = BrokenRedis()
    clock = Clock()
    conn = redis.Redis(
        host="127.0.0.1",
        port=broken.port,
        socket_timeout=0.5,
        socket_connect_timeout=0.5,
        retry=NO_RETRY,
    )
    cache = RedisSharedCache(conn, cooldown_seconds=5, clock=clock)
    try:
        assert cache.get("k") is None
        attempts = broken.accepted
        assert attempts >= 1
        assert cache.get("k") is None
        cache.set("k", "v", 10)
        clock.advance(4.9)
        assert cache.get("k") is None
        assert broken.accepted == attempts  # Redis left alone during the cool-down
        clock.advance(0.1)
        cache.set("k", "v", 10)
        assert broken.accepted > attempts  # tried again afterwards
    finally:
        conn.close()
        broken.close()


def test_shared_cache_serves_a_second_client_without_github(
    fake: FakeGitHub, shared: RedisSharedCache
) -> None:
    first = GitHubClient(fake.url, ORG, shared=shared)
    answers = (
        first.identity(STAFF),
        first.is_member("local-staff", "staff", STAFF),
        first.is_member("local-staff", "web", STAFF),
        first.teams(STAFF),
    )
    assert answers == ("local-staff", True, False, ["staff"])
    calls = len(fake.requests)

    second = GitHubClient(fake.url, ORG, shared=shared)  # another Lambda environment
    assert (
        second.identity(STAFF),
        second.is_member("local-staff", "staff", STAFF),
        second.is_member("LOCAL-STAFF", "web", STAFF),
        second.teams(STAFF),
    ) == answers
    assert len(fake.requests) == calls


def test_shared_cache_keys_values_and_ttls(
    fake: FakeGitHub, shared: RedisSharedCache, redis_client: redis.Redis
) -> None:
    client = GitHubClient(fake.url, ORG, shared=shared)
    client.identity(STAFF)
    client.is_member("Local-Staff", "staff", STAFF)
    client.is_member("local-staff", "web", STAFF)
    client.teams(STAFF)

    def entry(key: str) -> tuple[bytes | None, int]:
        return rget(redis_client, shared_key(shared, key)), rttl(
            redis_client, shared_key(shared, key)
        )

    value, ttl = entry(f"ghid:{token_hash(STAFF)}")
    assert value == b"local-staff" and 290 <= ttl <= 300
    value, ttl = entry("ghmember:freeCodeCamp:local-staff:staff")
    assert value == b"1" and 290 <= ttl <= 300
    value, ttl = entry("ghmember:freeCodeCamp:local-staff:web")
    assert value == b"0" and 25 <= ttl <= 30  # G-23 cap in the shared cache too
    value, ttl = entry("ghteams:local-staff")
    assert value is not None and json.loads(value) == ["staff"] and 290 <= ttl <= 300


def test_g23_negative_membership_from_the_shared_cache_is_capped_at_30s_in_process(
    fake: FakeGitHub, shared: RedisSharedCache, redis_client: redis.Redis, clock: Clock
) -> None:
    GitHubClient(fake.url, ORG, shared=shared).is_member("local-dev", "staff", DEV)
    second = GitHubClient(fake.url, ORG, shared=shared, clock=clock)
    assert second.is_member("local-dev", "staff", DEV) is False  # the shared "0"
    assert fake.count(MEMBERSHIP) == 1
    add_identity(fake, DEV, "local-dev", ["web", "staff"])
    redis_client.delete(shared_key(shared, "ghmember:freeCodeCamp:local-dev:staff"))  # expired
    clock.advance(30)
    assert second.is_member("local-dev", "staff", DEV) is True
    assert fake.count(MEMBERSHIP) == 2


def test_shared_cache_never_holds_a_raw_token(
    fake: FakeGitHub, shared: RedisSharedCache, redis_client: redis.Redis
) -> None:
    client = GitHubClient(fake.url, ORG, shared=shared)
    client.identity(STAFF)
    client.teams(STAFF)
    client.is_member("local-staff", "staff", STAFF)
    keys = list(redis_client.scan_iter(match=shared._prefix + "*"))
    assert len(keys) == 3
    for key in keys:
        assert STAFF.encode() not in key
        assert STAFF.encode() not in (rget(redis_client, key) or b"")


def test_shared_cache_holds_no_negative_identity(
    fake: FakeGitHub, shared: RedisSharedCache, redis_client: redis.Redis
) -> None:
    client = GitHubClient(fake.url, ORG, shared=shared)
    with pytest.raises(Unauthenticated):
        client.identity("bad-token")
    assert rget(redis_client, shared_key(shared, f"ghid:{token_hash('bad-token')}")) is None


def test_forget_token_reaches_other_clients_through_the_shared_cache(
    fake: FakeGitHub, shared: RedisSharedCache
) -> None:
    first = GitHubClient(fake.url, ORG, shared=shared)
    first.identity(STAFF)
    first.forget_token(STAFF)
    second = GitHubClient(fake.url, ORG, shared=shared)
    assert second.identity(STAFF) == "local-staff"
    assert user_calls(fake) == 2  # the tombstone made the second client ask GitHub
    third = GitHubClient(fake.url, ORG, shared=shared)
    assert third.identity(STAFF) == "local-staff"
    assert user_calls(fake) == 2  # and the fresh answer is shared again


def test_damaged_shared_values_are_misses(fake: FakeGitHub, shared: RedisSharedCache) -> None:
    shared.set("ghteams:local-staff", "{not json", 60)
    shared.set("ghmember:freeCodeCamp:local-staff:staff", "maybe", 60)
    client = GitHubClient(fake.url, ORG, shared=shared)
    assert client.teams(STAFF) == ["staff"]
    assert client.is_member("local-staff", "staff", STAFF) is True
    assert fake.count("/user/teams") == 1 and fake.count(MEMBERSHIP) == 1
    assert shared.get("ghteams:local-staff") == '["staff"]'  # repaired


def test_teams_from_the_shared_cache_resolve_the_login_via_identity(
    fake: FakeGitHub, shared: RedisSharedCache
) -> None:
    shared.set("ghteams:local-staff", '["from-cache"]', 60)
    client = GitHubClient(fake.url, ORG, shared=shared)
    assert client.teams(STAFF) == ["from-cache"]
    assert fake.requests == [("GET", "/user")]


def test_g22_redis_error_is_a_miss(fake: FakeGitHub) -> None:
    client = GitHubClient(fake.url, ORG, shared=dead_redis_cache())
    assert client.identity(STAFF) == "local-staff"
    assert client.teams(STAFF) == ["staff"]
    assert client.is_member("local-staff", "staff", STAFF) is True
    assert fake.count("/user/teams") == 1


class ExplodingCache:
    """A SharedCache whose every call fails (a third-party implementation that raises)."""

    def get(self, key: str) -> str | None:
        raise ConnectionError("cache down")

    def set(self, key: str, value: str, ttl_seconds: int) -> None:
        raise ConnectionError("cache down")


def test_g22_a_raising_shared_cache_is_a_miss_and_its_write_is_ignored(fake: FakeGitHub) -> None:
    cache: SharedCache = ExplodingCache()
    client = GitHubClient(fake.url, ORG, shared=cache)
    assert client.teams(STAFF) == ["staff"]
    assert client.identity(STAFF) == "local-staff"
    assert client.is_member("local-staff", "web", STAFF) is False


# --- single-flight ------------------------------------------------------------------------


def _concurrently(n: int, fn: Callable[[], Any]) -> list[Any]:
    start = threading.Barrier(n, timeout=10)
    outcomes: list[Any] = []
    lock = threading.Lock()

    def run() -> None:
        start.wait()
        try:
            result = fn()
        except Exception as exc:
            result = exc
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=run) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=15)
    assert not any(t.is_alive() for t in threads), "a caller was left waiting"
    return outcomes


def test_single_flight_identity_makes_one_github_call(
    client: GitHubClient, fake: FakeGitHub
) -> None:
    fake.delay("/user", 0.3, exact=True)
    assert _concurrently(8, lambda: client.identity(STAFF)) == ["local-staff"] * 8
    assert user_calls(fake) == 1


def test_single_flight_membership_makes_one_github_call(
    client: GitHubClient, fake: FakeGitHub
) -> None:
    fake.delay(MEMBERSHIP, 0.3)
    outcomes = _concurrently(8, lambda: client.is_member("local-staff", "staff", STAFF))
    assert outcomes == [True] * 8
    assert fake.count(MEMBERSHIP) == 1


def test_single_flight_membership_never_hands_one_tokens_failure_to_another(
    client: GitHubClient, fake: FakeGitHub
) -> None:
    fake.delay(MEMBERSHIP, 0.4)
    outcomes: dict[str, object] = {}

    def probe(token: str) -> None:
        try:
            outcomes[token] = client.is_member("local-staff", "staff", token)
        except Exception as exc:
            outcomes[token] = exc

    revoked = threading.Thread(target=probe, args=("revoked-token",))
    revoked.start()
    time.sleep(0.1)  # the revoked token's probe is in flight
    probe(STAFF)
    revoked.join(timeout=5)
    assert isinstance(outcomes["revoked-token"], Unauthenticated)
    assert outcomes[STAFF] is True


def test_single_flight_teams_makes_one_github_call(client: GitHubClient, fake: FakeGitHub) -> None:
    fake.delay("/user/teams", 0.3)
    assert _concurrently(8, lambda: client.teams(STAFF)) == [["staff"]] * 8
    assert fake.count("/user/teams") == 1


def test_single_flight_failure_reaches_every_waiter(client: GitHubClient, fake: FakeGitHub) -> None:
    fake.delay("/user", 0.3, exact=True)
    fake.fail("/user", 503, exact=True)
    outcomes = _concurrently(8, lambda: client.identity(STAFF))
    assert len(outcomes) == 8
    assert all(isinstance(o, UpstreamUnavailable) for o in outcomes)
    assert user_calls(fake) == 1
    fake.clear_faults()
    assert client.identity(STAFF) == "local-staff"  # the failure was not cached


def test_single_flight_rechecks_the_cache_inside_the_coalesced_section(
    client: GitHubClient, fake: FakeGitHub
) -> None:
    """A caller that missed just before another filled the cache does not call GitHub again."""
    client.identity(STAFF)
    assert client._load_identity(STAFF, token_hash(STAFF)) == "local-staff"
    assert user_calls(fake) == 1
