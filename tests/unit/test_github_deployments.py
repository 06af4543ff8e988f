"""GitHubApp.create_deployment and post_deployment_status without a network: what they send,
what they refuse before sending, and how every answer is classified (DeploymentError's
`transient`). The same calls against the fake GitHub over HTTP are in
tests/integration/test_github_deployments.py."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from artemis.deadlines import Deadline
from artemis.github_app import DeploymentError, GitHubApp
from artemis.github_transport import GitHubTransport, Response, TransportError

SHA = "0123456789abcdef0123456789abcdef01234567"
TOKEN = b'{"token": "ghs_t", "expires_at": "2099-01-01T00:00:00Z"}'
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
Answer = Callable[[str, str, Any], Response]


class ScriptedTransport(GitHubTransport):
    """Mints a token; answers every other call with `answer`; records each call."""

    def __init__(self, answer: Answer, token: Response | None = None) -> None:
        super().__init__()
        self.answer = answer
        self.token = token or Response(201, {}, TOKEN)
        self.calls: list[tuple[str, str, str | None, Any]] = []

    def request(
        self, method: str, url: str, authorization: str | None, timeout: float, body: Any = None
    ) -> Response:
        self.calls.append((method, url, authorization, body))
        if url.endswith("/access_tokens"):
            return self.token
        return self.answer(method, url, body)

    @property
    def api_calls(self) -> list[tuple[str, str, str | None, Any]]:
        return [c for c in self.calls if not c[1].endswith("/access_tokens")]


def answering(status: int, body: Any = None, headers: dict[str, str] | None = None) -> Answer:
    raw = body if isinstance(body, bytes) else json.dumps(body if body is not None else {})
    content = raw if isinstance(raw, bytes) else raw.encode()
    lowered = {k.lower(): v for k, v in (headers or {}).items()}  # as the transport has them
    return lambda method, url, sent: Response(status, lowered, content)


def app_with(transport: GitHubTransport) -> GitHubApp:
    return GitHubApp("http://github.test", "1", "2", KEY, "org", transport=transport)


def deploy(app: GitHubApp, **overrides: Any) -> int:
    args: dict[str, Any] = {"repo": "freeCodeCamp/news", "sha": SHA, "environment": "pr-12",
                            "description": "deploy d1", "transient": True,
                            "production": False}  # fmt: skip
    args.update(overrides)
    return app.create_deployment(args.pop("repo"), args.pop("sha"), args.pop("environment"), **args)


def test_create_sends_githubs_body_with_the_installation_token() -> None:
    transport = ScriptedTransport(answering(201, {"id": 42, "sha": SHA}))
    assert deploy(app_with(transport)) == 42
    [(method, url, auth, body)] = transport.api_calls
    assert (method, url, auth) == (
        "POST", "http://github.test/repos/freeCodeCamp/news/deployments", "token ghs_t",
    )  # fmt: skip
    assert body == {"ref": SHA, "environment": "pr-12", "auto_merge": False,
                    "required_contexts": [], "transient_environment": True,
                    "production_environment": False, "description": "deploy d1"}  # fmt: skip


def test_status_sends_githubs_body_and_omits_absent_urls() -> None:
    transport = ScriptedTransport(answering(201, {"id": 1, "state": "success"}))
    app = app_with(transport)
    app.post_deployment_status(
        "freeCodeCamp/news",
        42,
        "success",
        environment_url="https://pr-12.news.example",
        description="live",
    )
    app.post_deployment_status("freeCodeCamp/news", 42, "inactive",
                               log_url="https://artemis.example/deploys/d1")  # fmt: skip
    first, second = transport.api_calls
    assert first[1] == "http://github.test/repos/freeCodeCamp/news/deployments/42/statuses"
    assert first[3] == {"state": "success", "environment_url": "https://pr-12.news.example",
                        "description": "live", "auto_inactive": False}  # fmt: skip
    assert second[3] == {"state": "inactive", "log_url": "https://artemis.example/deploys/d1",
                         "description": "", "auto_inactive": False}  # fmt: skip


def test_a_long_status_description_is_cut_to_githubs_limit() -> None:
    transport = ScriptedTransport(answering(201, {}))
    app_with(transport).post_deployment_status("o/r", 1, "success", description="x" * 500)
    sent = transport.api_calls[0][3]["description"]
    assert len(sent) == 140 and sent.endswith("…")


def test_path_segments_are_quoted() -> None:
    transport = ScriptedTransport(answering(201, {"id": 7}))
    deploy(app_with(transport), repo="my.org-1/site_name.github.io")
    assert transport.api_calls[0][1].endswith("/repos/my.org-1/site_name.github.io/deployments")


@pytest.mark.parametrize(
    "overrides",
    [
        {"repo": "news"},
        {"repo": "a/b/c"},
        {"repo": "owner/"},
        {"repo": "/name"},
        {"repo": "owner/.."},
        {"repo": "own er/name"},
        {"repo": "owner/na%2Fme"},
        {"repo": "-owner/name"},
        {"sha": "abc123"},  # too short
        {"sha": "g" * 40},
        {"sha": SHA + "0"},  # 41
        {"sha": "main"},
        {"sha": SHA[:7] + "\n"},
        {"environment": ""},
        {"environment": "   "},
        {"environment": "e" * 256},
        {"environment": "pr-1\n"},
    ],
)
def test_create_refuses_a_malformed_argument_before_any_request(overrides: dict[str, Any]) -> None:
    transport = ScriptedTransport(answering(201, {"id": 1}))
    with pytest.raises(ValueError):
        deploy(app_with(transport), **overrides)
    assert transport.calls == []


@pytest.mark.parametrize(
    ("deployment_id", "state", "urls"),
    [
        (1, "done", {}),
        (1, "SUCCESS", {}),
        (1, "", {}),
        (0, "success", {}),
        (-3, "success", {}),
        (True, "success", {}),
        (1, "success", {"environment_url": "ftp://example"}),
        (1, "success", {"environment_url": "pr-12.example"}),
        (1, "success", {"log_url": "javascript:alert(1)"}),
    ],
)
def test_status_refuses_a_malformed_argument_before_any_request(
    deployment_id: Any, state: str, urls: dict[str, Any]
) -> None:
    transport = ScriptedTransport(answering(201, {}))
    with pytest.raises(ValueError):
        app_with(transport).post_deployment_status("o/r", deployment_id, state, **urls)
    assert transport.calls == []


@pytest.mark.parametrize(
    "state", ["success", "inactive", "failure", "error", "in_progress", "queued", "pending"]
)
def test_every_github_state_is_accepted(state: str) -> None:
    transport = ScriptedTransport(answering(201, {}))
    app_with(transport).post_deployment_status("o/r", 9, state)
    assert transport.api_calls[0][3]["state"] == state


@pytest.mark.parametrize(
    ("status", "headers", "transient", "words"),
    [
        (404, {}, False, "cannot see the repository"),
        (422, {}, False, "refused"),
        (403, {}, False, "lacks permission"),
        (409, {}, False, "conflict"),
        (400, {}, False, "unexpected"),
        (301, {"Location": "https://api.github.com/repositories/1"}, False, "unexpected"),
        (500, {}, True, "HTTP 500"),
        (502, {}, True, "HTTP 502"),
        (503, {}, True, "HTTP 503"),
        (429, {}, True, "rate limited"),
        (403, {"X-RateLimit-Remaining": "0"}, True, "rate limited"),
        (403, {"Retry-After": "60"}, True, "rate limited"),
        (401, {}, True, "token refused"),
    ],
)
def test_answers_are_classified(
    status: int, headers: dict[str, str], transient: bool, words: str
) -> None:
    message = {"message": "No ref found for: " + SHA}
    for call in (
        lambda app: deploy(app),
        lambda app: app.post_deployment_status("o/r", 5, "success"),
    ):
        transport = ScriptedTransport(answering(status, message, headers))
        with pytest.raises(DeploymentError) as caught:
            call(app_with(transport))
        assert caught.value.transient is transient
        assert words in caught.value.detail and f"HTTP {status}" in caught.value.detail
        assert "No ref found" in caught.value.detail  # GitHub's message, for the logs
        assert str(caught.value) == caught.value.detail
        assert len(caught.value.detail) <= 300
        assert len(transport.api_calls) == 1  # never retried here


@pytest.mark.parametrize(
    "answer",
    [
        answering(201, b"not json"),
        answering(201, {"sha": SHA}),
        answering(201, {"id": "42"}),
        answering(201, {"id": None}),
        answering(201, {"id": True}),
        answering(201, {"id": 0}),
        answering(201, [1, 2]),
        answering(200, {"id": 42}),  # not the creation answer
        answering(202, {"message": "Auto-merged main into topic branch."}),
    ],
)
def test_a_malformed_creation_answer_is_permanent(answer: Answer) -> None:
    with pytest.raises(DeploymentError) as caught:
        deploy(app_with(ScriptedTransport(answer)))
    assert not caught.value.transient


def test_a_transport_failure_is_transient() -> None:
    def drop(method: str, url: str, body: Any) -> Response:
        raise TransportError("connection reset", "ProtocolError")

    for call in (
        lambda app: deploy(app),
        lambda app: app.post_deployment_status("o/r", 5, "success"),
    ):
        with pytest.raises(DeploymentError) as caught:
            call(app_with(ScriptedTransport(drop)))
        assert caught.value.transient
        assert "connection reset" in caught.value.detail


@pytest.mark.parametrize(
    ("token", "transient"),
    [
        (Response(500, {}, b"{}"), True),
        (Response(503, {}, b"{}"), True),
        (Response(429, {}, b"{}"), True),
        (Response(403, {"x-ratelimit-remaining": "0"}, b"{}"), True),
        (Response(404, {}, b"{}"), False),  # the installation is gone
        (Response(401, {}, b"{}"), False),  # the App's key is not the one GitHub holds
        (Response(201, {}, b"{}"), False),  # no token in the answer
    ],
)
def test_a_failed_installation_token_is_a_deployment_error(
    token: Response, transient: bool
) -> None:
    transport = ScriptedTransport(answering(201, {"id": 1}), token=token)
    with pytest.raises(DeploymentError) as caught:
        deploy(app_with(transport))
    assert caught.value.transient is transient
    assert "installation token" in caught.value.detail
    assert transport.api_calls == []


def test_a_spent_deadline_is_transient_and_nothing_is_sent() -> None:
    transport = ScriptedTransport(answering(201, {"id": 1}))
    with pytest.raises(DeploymentError) as caught:
        deploy(app_with(transport), deadline=Deadline.after(-1))
    assert caught.value.transient and "time budget" in caught.value.detail
    assert transport.calls == []


class MemoryCache:
    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    def get(self, key: str) -> str | None:
        return self.values.get(key)

    def set(self, key: str, value: str, ttl_seconds: int) -> None:
        self.values[key] = value


def test_a_refused_token_is_forgotten_so_the_retry_mints_another() -> None:
    answers = iter([Response(401, {}, b'{"message": "Bad credentials"}'),
                    Response(201, {}, b'{"id": 3}')])  # fmt: skip
    transport = ScriptedTransport(lambda method, url, body: next(answers))
    cache = MemoryCache()
    app = GitHubApp("http://github.test", "1", "2", KEY, "org", transport=transport,
                    shared=cache)  # fmt: skip
    with pytest.raises(DeploymentError) as caught:
        deploy(app)
    assert caught.value.transient
    assert deploy(app) == 3
    assert sum(url.endswith("/access_tokens") for _, url, _, _ in transport.calls) == 2
