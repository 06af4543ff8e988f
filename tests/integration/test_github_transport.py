"""artemis.github_transport against the fake GitHub: GitHub calls reuse one keep-alive
connection (shared by the REST and App clients), a redirect is an answer and never followed,
bodies are capped, timeouts are bounded, nothing is retried."""

import time
from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from artemis.errors import UpstreamUnavailable
from artemis.github import GitHubClient
from artemis.github_app import GitHubApp, RepoCreateError
from artemis.github_transport import MAX_BODY_BYTES, GitHubTransport, TransportError
from artemis_local.fake_github import FakeApp, FakeGitHub

ORG = "freeCodeCamp"
STAFF = "local-staff-token"
DEV = "local-dev-token"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def transport() -> Iterator[GitHubTransport]:
    own = GitHubTransport()
    try:
        yield own
    finally:
        own.close()


def test_calls_through_the_client_reuse_one_connection(fake: FakeGitHub) -> None:
    """The default (process-wide) transport: every cache miss is a request, one connection."""
    client = GitHubClient(fake.url, ORG)
    assert client.identity(STAFF) == "local-staff"
    assert client.identity(DEV) == "local-dev"
    assert client.is_member("local-staff", "staff", STAFF)
    assert not client.is_member("local-dev", "staff", DEV)
    assert client.teams(STAFF) == ["staff"]
    assert len(fake.requests) == 5
    assert fake.connections == 1


def test_two_clients_given_one_transport_share_its_connection(
    fake: FakeGitHub, transport: GitHubTransport
) -> None:
    first = GitHubClient(fake.url, ORG, transport=transport)
    second = GitHubClient(fake.url, "", transport=transport)
    first.identity(STAFF)
    second.identity(DEV)
    assert fake.connections == 1


def test_rest_and_app_clients_share_the_pool(fake: FakeGitHub, transport: GitHubTransport) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    fake.app = FakeApp("4242", "77", public, ORG)
    app = GitHubApp(fake.url, "4242", "77", key, ORG, transport=transport)
    client = GitHubClient(fake.url, ORG, transport=transport)
    assert client.identity(STAFF) == "local-staff"
    assert app.repo_url("nothing-here") is None  # mints a token, then asks for the repo
    assert client.identity(DEV) == "local-dev"
    assert len(fake.requests) == 4
    assert fake.connections == 1


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_a_redirect_is_an_answer_and_never_followed(
    fake: FakeGitHub, transport: GitHubTransport, status: int
) -> None:
    fake.fail("/user", status, {"Location": fake.url + "/elsewhere"}, exact=True)
    resp = transport.request("GET", fake.url + "/user", f"Bearer {STAFF}", 5)
    assert resp.status == status
    assert resp.header("Location") == fake.url + "/elsewhere"
    assert fake.count("/elsewhere") == 0
    # the client classifies it as an unexpected answer, and the token went nowhere else
    with pytest.raises(UpstreamUnavailable):
        GitHubClient(fake.url, ORG, transport=transport).identity(STAFF)
    assert fake.count("/elsewhere") == 0


def test_the_app_client_follows_no_redirect_either(
    fake: FakeGitHub, transport: GitHubTransport
) -> None:
    fake.fail("/app/installations", 302, {"Location": fake.url + "/elsewhere"})
    app = GitHubApp(fake.url, "4242", "77", rsa.generate_private_key(65537, 2048), ORG,
                    transport=transport)  # fmt: skip
    with pytest.raises(RepoCreateError):
        app.installation_token()
    assert fake.count("/elsewhere") == 0


def test_a_body_at_the_limit_is_read(fake: FakeGitHub, transport: GitHubTransport) -> None:
    fake.fail("/user", 200, body="x" * MAX_BODY_BYTES, exact=True, times=1)
    resp = transport.request("GET", fake.url + "/user", f"Bearer {STAFF}", 5)
    assert len(resp.body) == MAX_BODY_BYTES
    transport.request("GET", fake.url + "/user", f"Bearer {STAFF}", 5)
    assert fake.connections == 1  # read to its end: the connection is reused


def test_an_over_long_body_is_refused_and_its_connection_dropped(
    fake: FakeGitHub, transport: GitHubTransport
) -> None:
    fake.fail("/user", 200, body="x" * (MAX_BODY_BYTES + 65536), exact=True, times=1)
    with pytest.raises(TransportError, match="body limit"):
        transport.request("GET", fake.url + "/user", f"Bearer {STAFF}", 5)
    resp = transport.request("GET", fake.url + "/user", f"Bearer {STAFF}", 5)
    assert resp.json()["login"] == "local-staff"  # not the rest of the long body
    assert fake.connections == 2


def test_an_over_long_body_is_unavailable_through_the_client(
    fake: FakeGitHub, transport: GitHubTransport
) -> None:
    fake.fail("/user", 200, body='{"login": "' + "x" * MAX_BODY_BYTES + '"}', exact=True)
    with pytest.raises(UpstreamUnavailable):
        GitHubClient(fake.url, ORG, transport=transport).identity(STAFF)


def test_a_silent_server_times_out_within_the_timeout_and_its_late_answer_is_never_read(
    fake: FakeGitHub, transport: GitHubTransport
) -> None:
    fake.delay("/user", 1.5, exact=True)
    started = time.monotonic()
    with pytest.raises(TransportError):
        transport.request("GET", fake.url + "/user", f"Bearer {STAFF}", 0.3)
    assert time.monotonic() - started < 1.2
    fake.clear_faults()
    # The first answer arrives late on the first connection; the next call must not read it.
    resp = transport.request("GET", fake.url + "/user", f"Bearer {DEV}", 5)
    assert resp.json()["login"] == "local-dev"
    assert fake.connections == 2


def test_a_refused_connection_is_a_transport_error(transport: GitHubTransport) -> None:
    with pytest.raises(TransportError):
        transport.request("GET", "http://127.0.0.1:1/user", f"Bearer {STAFF}", 1)


def test_a_dropped_connection_is_an_error_and_not_retried(
    fake: FakeGitHub, transport: GitHubTransport
) -> None:
    transport.request("GET", fake.url + "/user", f"Bearer {STAFF}", 5)
    fake.disconnect("/user", times=1, exact=True)
    with pytest.raises(TransportError):
        transport.request("GET", fake.url + "/user", f"Bearer {STAFF}", 5)
    assert fake.count("/user", exact=True) == 2  # the dropped request was not sent again
    assert transport.request("GET", fake.url + "/user", f"Bearer {STAFF}", 5).status == 200


def test_a_connection_idle_too_long_is_not_reused(fake: FakeGitHub) -> None:
    clock = Clock()
    transport = GitHubTransport(max_idle_seconds=30, clock=clock)
    try:
        transport.request("GET", fake.url + "/user", f"Bearer {STAFF}", 5)
        clock.now += 30
        transport.request("GET", fake.url + "/user", f"Bearer {STAFF}", 5)
        assert fake.connections == 1  # idle for exactly the limit: still reused
        clock.now += 30.5
        transport.request("GET", fake.url + "/user", f"Bearer {STAFF}", 5)
        assert fake.connections == 2
    finally:
        transport.close()


def test_a_request_sends_githubs_headers_and_no_compression(
    fake: FakeGitHub, transport: GitHubTransport
) -> None:
    transport.request("POST", fake.url + "/user", f"Bearer {STAFF}", 5, {"a": 1})
    sent = fake.request_headers[-1]
    assert sent["authorization"] == f"Bearer {STAFF}"
    assert sent["accept"] == "application/vnd.github+json"
    assert sent["x-github-api-version"] == "2022-11-28"
    assert sent["user-agent"] == "artemis-deploy-proxy"
    assert sent["content-type"] == "application/json"
    assert sent.get("accept-encoding", "identity") == "identity"
