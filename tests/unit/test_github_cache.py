"""The GitHub client's pure parts: token hashing, the bounded TTL map, single-flight."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from artemis.github import GitHubClient, _SingleFlight, _TTLCache, token_hash

REPO_ROOT = Path(__file__).resolve().parents[2]


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


# --- token_hash ------------------------------------------------------------------------------


@pytest.mark.parametrize("token", ["ghp_" + "a" * 36, "x", "token with spaces", "ü-token"])
def test_token_hash_is_32_hex_chars_of_sha256_and_hides_the_token(token: str) -> None:
    digest = token_hash(token)
    assert len(digest) == 32
    assert all(c in "0123456789abcdef" for c in digest)
    assert digest == hashlib.sha256(token.encode()).hexdigest()[:32]
    assert token not in digest


def test_token_hash_is_stable_and_distinguishes_tokens() -> None:
    assert token_hash("one") == token_hash("one")
    assert token_hash("one") != token_hash("two")


# --- _TTLCache ---------------------------------------------------------------------------------


def test_cache_miss_is_none_and_hit_returns_the_value() -> None:
    cache: _TTLCache[str, str] = _TTLCache(4, Clock())
    assert cache.get("k") is None
    cache.set("k", "v", 10)
    assert cache.get("k") == "v"


def test_cache_keeps_falsy_values_distinguishable_from_a_miss() -> None:
    cache: _TTLCache[str, object] = _TTLCache(4, Clock())
    cache.set("no", False, 10)
    cache.set("empty", "", 10)
    cache.set("none-yet", (), 10)
    assert cache.get("no") is False
    assert cache.get("empty") == ""
    assert cache.get("none-yet") == ()


def test_cache_entry_expires_exactly_at_its_ttl() -> None:
    clock = Clock()
    cache: _TTLCache[str, str] = _TTLCache(4, clock)
    cache.set("k", "v", 30)
    clock.advance(29.999)
    assert cache.get("k") == "v"
    clock.advance(0.001)
    assert cache.get("k") is None
    assert len(cache) == 0  # an expired entry found by get is dropped


def test_cache_overwrite_replaces_value_and_restarts_ttl() -> None:
    clock = Clock()
    cache: _TTLCache[str, str] = _TTLCache(4, clock)
    cache.set("k", "old", 10)
    clock.advance(8)
    cache.set("k", "new", 10)
    clock.advance(8)
    assert cache.get("k") == "new"


@pytest.mark.parametrize("ttl", [0, -1])
def test_cache_non_positive_ttl_stores_nothing_and_drops_the_key(ttl: float) -> None:
    cache: _TTLCache[str, str] = _TTLCache(4, Clock())
    cache.set("k", "v", 10)
    cache.set("k", "other", ttl)
    assert cache.get("k") is None
    assert len(cache) == 0


def test_cache_pop_drops_one_key() -> None:
    cache: _TTLCache[str, str] = _TTLCache(4, Clock())
    cache.set("a", "1", 10)
    cache.set("b", "2", 10)
    cache.pop("a")
    cache.pop("missing")
    assert cache.get("a") is None
    assert cache.get("b") == "2"


def test_full_cache_drops_expired_entries_first() -> None:
    clock = Clock()
    cache: _TTLCache[str, int] = _TTLCache(3, clock)
    cache.set("short-1", 1, 5)
    cache.set("long", 2, 100)
    cache.set("short-2", 3, 5)
    clock.advance(5)
    cache.set("new", 4, 100)
    # both expired entries went; the live one, though inserted before "short-2", stayed
    assert len(cache) == 2
    assert cache.get("long") == 2
    assert cache.get("new") == 4


def test_full_cache_without_expired_entries_drops_arbitrary_ones_to_stay_bounded() -> None:
    cache: _TTLCache[int, int] = _TTLCache(3, Clock())
    for i in range(10):
        cache.set(i, i, 100)
        assert len(cache) <= 3
    assert len(cache) == 3
    assert cache.get(9) == 9  # the entry just inserted is always kept


def test_updating_a_key_of_a_full_cache_evicts_nothing() -> None:
    cache: _TTLCache[str, int] = _TTLCache(2, Clock())
    cache.set("a", 1, 100)
    cache.set("b", 2, 100)
    cache.set("a", 3, 100)
    assert (cache.get("a"), cache.get("b")) == (3, 2)


def test_cache_needs_room_for_one_entry() -> None:
    with pytest.raises(ValueError):
        _TTLCache(0)


def test_cache_stays_bounded_under_concurrent_writers() -> None:
    cache: _TTLCache[tuple[int, int], int] = _TTLCache(50, Clock())
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for i in range(2000):
                cache.set((n, i), i, 100)
                cache.get((n, i - 1))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert errors == []
    assert len(cache) == 50


# --- _SingleFlight ---------------------------------------------------------------------------


def _waiting_on_event(thread: threading.Thread) -> bool:
    """Whether `thread` is blocked inside threading's wait (a single-flight waiter)."""
    frame = sys._current_frames().get(thread.ident or -1)
    while frame is not None:
        if frame.f_code.co_name == "wait" and frame.f_code.co_filename == threading.__file__:
            return True
        frame = frame.f_back
    return False


def _run_coalesced(
    flight: _SingleFlight, fn: Callable[[], str], release: threading.Event, waiters: int
) -> tuple[list[object], list[threading.Thread]]:
    """Start a leader running `fn` (which blocks until `release`), then `waiters` more callers
    of the same key; release once every waiter is blocked; return every caller's outcome."""
    outcomes: list[object] = []
    lock = threading.Lock()

    def call() -> None:
        try:
            result: object = flight.do("key", fn)
        except Exception as exc:
            result = exc
        with lock:
            outcomes.append(result)

    leader = threading.Thread(target=call)
    leader.start()
    deadline = threading.Event()
    for _ in range(500):
        if flight.in_flight() == 1:
            break
        deadline.wait(0.01)
    others = [threading.Thread(target=call) for _ in range(waiters)]
    for t in others:
        t.start()
    for _ in range(500):
        if all(_waiting_on_event(t) for t in others):
            break
        deadline.wait(0.01)
    release.set()
    threads = [leader, *others]
    for t in threads:
        t.join(timeout=10)
    return outcomes, threads


def test_single_flight_coalesces_concurrent_calls_into_one() -> None:
    flight = _SingleFlight()
    release = threading.Event()
    calls: list[int] = []

    def fn() -> str:
        calls.append(1)
        release.wait(10)
        return "answer"

    outcomes, threads = _run_coalesced(flight, fn, release, waiters=7)
    assert not any(t.is_alive() for t in threads)
    assert calls == [1]
    assert outcomes == ["answer"] * 8
    assert flight.in_flight() == 0


def test_single_flight_leader_error_reaches_every_waiter_and_none_hangs() -> None:
    flight = _SingleFlight()
    release = threading.Event()
    calls: list[int] = []

    class Boom(Exception):
        pass

    def fn() -> str:
        calls.append(1)
        release.wait(10)
        raise Boom("upstream broke")

    outcomes, threads = _run_coalesced(flight, fn, release, waiters=5)
    assert not any(t.is_alive() for t in threads)  # nobody left waiting
    assert calls == [1]
    assert len(outcomes) == 6
    assert all(isinstance(o, Boom) and str(o) == "upstream broke" for o in outcomes)
    assert len({id(o) for o in outcomes}) == 6  # each caller raised its own copy
    assert flight.in_flight() == 0


def test_single_flight_remembers_nothing_after_the_call() -> None:
    flight = _SingleFlight()
    calls: list[int] = []

    def fn() -> int:
        calls.append(1)
        return len(calls)

    assert flight.do("k", fn) == 1
    assert flight.do("k", fn) == 2
    with pytest.raises(ZeroDivisionError):
        flight.do("k", lambda: 1 // 0)
    assert flight.do("k", fn) == 3  # a failure does not wedge the key


def test_single_flight_does_not_coalesce_different_keys() -> None:
    flight = _SingleFlight()
    both_running = threading.Barrier(2, timeout=5)
    results: list[str] = []

    def run(key: str) -> None:
        def fn() -> str:
            both_running.wait()  # breaks (BrokenBarrierError) if the keys were serialized
            return key

        results.append(flight.do(key, fn))

    threads = [threading.Thread(target=run, args=(k,)) for k in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert sorted(results) == ["a", "b"]


# --- the client's construction and import cost -------------------------------------------


@pytest.mark.parametrize("url", ["ftp://example.com", "file:///etc/passwd", "example.com"])
def test_client_refuses_a_non_http_base_url(url: str) -> None:
    with pytest.raises(ValueError):
        GitHubClient(url, "org")


def test_client_caps_negative_ttl_at_30_seconds() -> None:
    assert GitHubClient("https://api.github.com", "o", 300).negative_ttl == 30
    assert GitHubClient("https://api.github.com", "o", 10).negative_ttl == 10


def test_importing_the_client_loads_no_heavy_dependency() -> None:
    code = (
        "import sys, artemis.github\n"
        "heavy = {'boto3', 'botocore', 'pydantic', 'redis', 'aws_lambda_powertools', 'psycopg'}\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "layers/common/python")}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"
