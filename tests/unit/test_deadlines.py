"""artemis.deadlines: the one form of a time budget, on a clock the tests move by hand; and the
code that holds one (the invocation's deadline, the lock wait cut to it, the connect retry, the
GitHub App's calls, the local Lambda context)."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from artemis import invocation
from artemis.db import connection
from artemis.db.lock import LOCK_TIMEOUT_SECONDS, LOCK_WORK_MARGIN_SECONDS, lock_wait_seconds
from artemis.deadlines import Deadline
from artemis.github_app import GitHubApp, RepoCreateError
from artemis.github_transport import GitHubTransport, Response
from artemis_local.functions import LocalContext


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Context:
    def __init__(self, remaining_ms: Any) -> None:
        self.remaining_ms = remaining_ms

    def get_remaining_time_in_millis(self) -> Any:
        return self.remaining_ms


# --- Deadline -----------------------------------------------------------------------------------


def test_after_counts_down_on_its_clock() -> None:
    clock = Clock()
    deadline = Deadline.after(10, clock=clock)
    assert deadline.ends_at == 1010.0
    assert deadline.remaining() == 10.0
    clock.now += 4
    assert deadline.remaining() == 6.0


def test_remaining_is_never_negative() -> None:
    clock = Clock()
    deadline = Deadline.after(1, clock=clock)
    clock.now += 5
    assert deadline.remaining() == 0.0
    assert Deadline.after(-3, clock=clock).remaining() == 0.0


def test_has_is_at_least_that_many_seconds_left() -> None:
    clock = Clock()
    deadline = Deadline.after(10, clock=clock)
    assert deadline.has(10)
    assert not deadline.has(10.001)
    clock.now += 9
    assert deadline.has(1)
    assert not deadline.has(1.5)
    clock.now += 100
    assert deadline.has(0)  # nothing asked, nothing needed
    assert not deadline.has(0.001)


def test_expired_from_the_instant_it_ends() -> None:
    clock = Clock()
    deadline = Deadline.after(2, clock=clock)
    assert not deadline.expired()
    clock.now += 1.999
    assert not deadline.expired()
    clock.now = deadline.ends_at
    assert deadline.expired()
    clock.now += 1
    assert deadline.expired()


def test_from_lambda_is_the_contexts_remaining_time_less_the_reserve() -> None:
    clock = Clock()
    assert Deadline.from_lambda(Context(45_000), 15.0, clock=clock).remaining() == 30.0
    assert Deadline.from_lambda(Context(45_000), reserve_seconds=0, clock=clock).remaining() == 45
    assert Deadline.from_lambda(Context(45_000), clock=clock).remaining() == 15.0  # 30 s reserve


def test_from_lambda_with_less_time_than_the_reserve_is_already_spent() -> None:
    clock = Clock()
    deadline = Deadline.from_lambda(Context(10_000), 30.0, clock=clock)
    assert deadline.ends_at == clock.now  # never before now
    assert deadline.remaining() == 0.0
    assert deadline.expired()


def test_from_lambda_raises_for_a_context_that_cannot_tell() -> None:
    with pytest.raises(AttributeError):
        Deadline.from_lambda(object())
    with pytest.raises(ValueError):
        Deadline.from_lambda(Context("soon"))
    with pytest.raises(TypeError):
        Deadline.from_lambda(Context(None))


def test_the_default_clock_is_the_monotonic_one() -> None:
    before = time.monotonic()
    deadline = Deadline.after(60)
    assert before + 60 <= deadline.ends_at <= time.monotonic() + 60
    assert 59 < deadline.remaining() <= 60
    assert 59 < Deadline(time.monotonic() + 60).remaining() <= 60


def test_sooner_is_whichever_ends_first() -> None:
    clock = Clock()
    short, long = Deadline.after(5, clock=clock), Deadline.after(50, clock=clock)
    assert short.sooner(long) is short
    assert long.sooner(short) is short
    assert long.sooner(None) is long
    tie = Deadline.after(5, clock=clock)
    assert short.sooner(tie) is short


def test_sooner_refuses_deadlines_on_different_clocks() -> None:
    with pytest.raises(ValueError, match="different clocks"):
        Deadline.after(5, clock=Clock()).sooner(Deadline.after(5, clock=Clock()))


def test_a_deadline_cannot_be_moved() -> None:
    deadline = Deadline.after(5, clock=Clock())
    with pytest.raises(dataclasses.FrozenInstanceError):
        deadline.ends_at = 0.0  # type: ignore[misc]


# --- the invocation's deadline ------------------------------------------------------------------


def test_outside_an_invocation_there_is_no_deadline() -> None:
    assert invocation.current() is None
    assert invocation.remaining_seconds() is None


def test_running_holds_the_contexts_remaining_time_as_a_deadline() -> None:
    with invocation.running(Context(20_000)):
        deadline = invocation.current()
        assert isinstance(deadline, Deadline)
        assert 19 < deadline.remaining() <= 20
        remaining = invocation.remaining_seconds()
        assert remaining is not None and 19 < remaining <= 20
    assert invocation.current() is None


def test_a_context_that_cannot_tell_sets_no_deadline() -> None:
    for context in (object(), Context("soon"), Context(None)):
        with invocation.running(context):
            assert invocation.current() is None


def test_until_sets_a_given_deadline_and_restores_the_outer_one() -> None:
    clock = Clock()
    outer, inner = Deadline.after(100, clock=clock), Deadline.after(10, clock=clock)
    with invocation.until(outer):
        with invocation.until(inner):
            assert invocation.current() is inner
            with invocation.until(None):
                assert invocation.current() is None
            assert invocation.remaining_seconds() == 10.0
        assert invocation.current() is outer
    assert invocation.current() is None


def test_the_lock_wait_is_cut_to_the_invocations_deadline_less_the_margin() -> None:
    clock = Clock()
    assert lock_wait_seconds() == LOCK_TIMEOUT_SECONDS
    with invocation.until(Deadline.after(LOCK_WORK_MARGIN_SECONDS + 2, clock=clock)):
        assert lock_wait_seconds() == 2.0
        assert lock_wait_seconds(1.0) == 1.0
        clock.now += 2
        assert lock_wait_seconds() == 0.05  # no time left: still try, briefly


# --- the connect retry --------------------------------------------------------------------------


def test_connect_with_retry_retries_until_the_next_wait_would_pass_the_deadline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = Clock()
    attempts: list[float] = []
    sleeps: list[float] = []

    def refuse(conninfo: str, *, autocommit: bool = False) -> psycopg.Connection:
        attempts.append(clock.now)
        raise psycopg.OperationalError("connection refused")

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        clock.now += seconds

    monkeypatch.setattr(connection, "connect", refuse)
    monkeypatch.setattr(time, "sleep", sleep)  # connect_with_retry waits with time.sleep
    with pytest.raises(psycopg.OperationalError, match="refused"):
        connection.connect_with_retry("postgresql://", Deadline.after(2.0, clock=clock))
    # 0.5 s fits in 2 s, 1 s in the 1.5 s left, 2 s not in the 0.5 s left
    assert sleeps == [0.5, 1.0]
    assert attempts == [1000.0, 1000.5, 1001.5]


def test_connect_with_retry_with_a_spent_deadline_tries_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[str] = []

    def refuse(conninfo: str, *, autocommit: bool = False) -> psycopg.Connection:
        calls.append(conninfo)
        raise psycopg.OperationalError("connection refused")

    monkeypatch.setattr(connection, "connect", refuse)
    monkeypatch.setattr(time, "sleep", lambda _: pytest.fail("slept"))
    with pytest.raises(psycopg.OperationalError):
        connection.connect_with_retry("postgresql://", Deadline.after(0, clock=Clock()))
    assert calls == ["postgresql://"]


# --- the GitHub App's calls ---------------------------------------------------------------------


class RecordingTransport(GitHubTransport):
    """Answers the token mint and a 404 for every repository, recording each call's timeout."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, str, float]] = []

    def request(
        self, method: str, url: str, authorization: str | None, timeout: float, body: Any = None
    ) -> Response:
        self.calls.append((method, url, timeout))
        if url.endswith("/access_tokens"):
            token = b'{"token": "t", "expires_at": "2099-01-01T00:00:00Z"}'
            return Response(201, {}, token)
        return Response(404, {}, b"{}")


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def test_each_github_call_is_bounded_by_the_deadline(key: rsa.RSAPrivateKey) -> None:
    transport = RecordingTransport()
    app = GitHubApp("http://github.test", "1", "2", key, "org", transport=transport, timeout=15)
    clock = Clock()
    assert app.repo_url("site", Deadline.after(4, clock=clock)) is None
    assert [timeout for _, _, timeout in transport.calls] == [4.0, 4.0]
    transport.calls.clear()
    assert app.repo_url("site", Deadline.after(60, clock=clock)) is None  # token cached
    assert [timeout for _, _, timeout in transport.calls] == [15.0]  # the client's own limit
    transport.calls.clear()
    assert app.repo_url("site") is None
    assert [timeout for _, _, timeout in transport.calls] == [15.0]


def test_a_github_call_past_the_deadline_is_a_transient_failure_and_not_sent(
    key: rsa.RSAPrivateKey,
) -> None:
    transport = RecordingTransport()
    app = GitHubApp("http://github.test", "1", "2", key, "org", transport=transport)
    clock = Clock()
    deadline = Deadline.after(5, clock=clock)
    clock.now += 5
    with pytest.raises(RepoCreateError) as caught:
        app.create("site", description="", private=False, template="", deadline=deadline)
    assert caught.value.transient and caught.value.internal
    assert "time budget is spent" in str(caught.value)
    assert transport.calls == []


# --- the local Lambda context -------------------------------------------------------------------


def test_a_local_invocation_context_counts_down_from_its_creation() -> None:
    context = LocalContext.invocation("api", timeout_ms=5_000)
    assert isinstance(context.deadline, Deadline)
    assert 4_900 < context.get_remaining_time_in_millis() <= 5_000
    assert Deadline.from_lambda(context, reserve_seconds=1).remaining() <= 4.0
    spent = dataclasses.replace(context, deadline=Deadline.after(-1))
    assert spent.get_remaining_time_in_millis() == 0
    assert LocalContext("api", timeout_ms=7_000).get_remaining_time_in_millis() == 7_000


def test_stop_time_is_the_budget_or_the_invocations_end_less_its_reserve() -> None:
    start = time.monotonic()
    assert start + 9.9 <= invocation.stop_time(10.0, 5.0) <= time.monotonic() + 10.0
    with invocation.until(Deadline.after(8.0)):
        stop = invocation.stop_time(10.0, 5.0)
    assert start + 2.9 <= stop <= time.monotonic() + 3.0  # 8 s left, 5 kept in reserve
