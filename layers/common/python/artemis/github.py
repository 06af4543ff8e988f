"""GitHub REST client for one org: identity, team membership, team listing.

Answers are cached in three bounded in-process maps (identity by token hash, membership by
(login, team), team list by token hash) and, when a `SharedCache` is given, in a cache shared by
every Lambda environment (Redis). Cache keys never hold a token, only `token_hash(token)`.

Classification: a transport error, timeout or unexpected answer is `UpstreamUnavailable` (503),
never `Unauthenticated` (GitHub being down must not look like a bad token); a GitHub 401 is
`Unauthenticated` everywhere (and drops the cached identity of that token); a non-throttle 403 on
a membership probe or team listing is `InsufficientScope`. Negative membership answers are cached
for at most 30 s, like negative identity answers, so a member just added is let in soon. A
shared-cache error is a miss: Redis is an optimisation, never a dependency.

Cheap to import: the HTTP pool (`artemis.github_transport`, shared with the App client), the
logger and `redis` are loaded when first needed.
"""

from __future__ import annotations

import copy
import hashlib
import json
import threading
import time
import urllib.parse
from collections.abc import Callable, Hashable, Sequence
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from artemis.errors import InsufficientScope, RateLimited, Unauthenticated, UpstreamUnavailable
from artemis.github_transport import GitHubTransport, Response, TransportError, shared_transport
from artemis.github_transport import quote as _quote

if TYPE_CHECKING:
    import redis

__all__ = [
    "GitHubClient",
    "RedisSharedCache",
    "SharedCache",
    "token_hash",
]

NEGATIVE_TTL_CAP = 30  # seconds: negative identity and membership answers
PAGE_SIZE = 100  # /user/teams page size (GitHub's maximum)
MAX_TEAM_PAGES = 100  # 10,000 teams: a guard against a server that never ends a listing

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
T = TypeVar("T")


def _log() -> Any:
    from artemis.observability import logger  # deferred: Powertools costs ~45 ms to import

    return logger


def token_hash(token: str) -> str:
    """The cache key of a token: hex of the first 16 bytes of SHA-256(token), 32 characters."""
    return hashlib.sha256(token.encode("utf-8")).digest()[:16].hex()


# --- shared cache ----------------------------------------------------------------------------


class SharedCache(Protocol):
    """A loss-safe cache shared across Lambda environments. Implementations should not raise;
    GitHubClient nonetheless treats a raising read as a miss and ignores a raising write."""

    def get(self, key: str) -> str | None: ...

    def set(self, key: str, value: str, ttl_seconds: int) -> None: ...


class RedisSharedCache:
    """`SharedCache` over a redis.Redis client. Every Redis error (refused connection, timeout,
    a bad reply …) is logged and answered as a miss or an ignored write, never raised.

    After an error Redis is left alone for `cooldown_seconds` (every call is a miss or a dropped
    write meanwhile), so a dead Redis costs one timeout per cool-down rather than one per call.
    Give the client short socket timeouts and few retries: redis-py's default retry policy makes
    one call against a refused port take seconds.
    """

    def __init__(
        self,
        client: redis.Redis,
        prefix: str = "artemis:",
        *,
        cooldown_seconds: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._prefix = prefix
        self._cooldown = cooldown_seconds
        self._clock = clock
        self._down_until: float | None = None

    def get(self, key: str) -> str | None:
        if self._cooling_down():
            return None
        try:
            value = self._client.get(self._prefix + key)
        except Exception as exc:
            self._failed("read", key, exc)
            return None
        if value is None:
            return None
        if isinstance(value, bytes):
            try:
                return value.decode("utf-8")
            except UnicodeDecodeError:
                return None
        return str(value)

    def set(self, key: str, value: str, ttl_seconds: int) -> None:
        if ttl_seconds <= 0 or self._cooling_down():
            return
        try:
            self._client.set(self._prefix + key, value, ex=int(ttl_seconds))
        except Exception as exc:
            self._failed("write", key, exc)

    def _cooling_down(self) -> bool:
        down_until = self._down_until
        return down_until is not None and self._clock() < down_until

    def _failed(self, operation: str, key: str, exc: Exception) -> None:
        self._down_until = self._clock() + self._cooldown
        _log().warning(
            "shared cache %s failed; treated as a miss, Redis skipped for %ss",
            operation,
            self._cooldown,
            extra={"cache_key": key, "error": type(exc).__name__},
        )


# --- in-process cache and single-flight ------------------------------------------------------


class _TTLCache(Generic[K, V]):
    """A thread-safe map whose entries expire `ttl` seconds after insertion, holding at most
    `max_entries`. Inserting into a full map first drops expired entries, then arbitrary ones
    (oldest inserted first) until there is room."""

    def __init__(self, max_entries: int, clock: Callable[[], float] = time.monotonic) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self._max = max_entries
        self._clock = clock
        self._data: dict[K, tuple[float, V]] = {}
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._lock:
            entry = self._data.get(key)
            if entry is None:
                return None
            expires, value = entry
            if self._clock() >= expires:
                del self._data[key]
                return None
            return value

    def set(self, key: K, value: V, ttl: float) -> None:
        """Store `value` for `ttl` seconds; a ttl <= 0 stores nothing (and drops the key)."""
        with self._lock:
            if ttl <= 0:
                self._data.pop(key, None)
                return
            now = self._clock()
            if key not in self._data and len(self._data) >= self._max:
                for stale in [k for k, (exp, _) in self._data.items() if now >= exp]:
                    del self._data[stale]
                while len(self._data) >= self._max:
                    del self._data[next(iter(self._data))]
            self._data[key] = (now + ttl, value)

    def pop(self, key: K) -> None:
        with self._lock:
            self._data.pop(key, None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._data)


class _Call:
    __slots__ = ("done", "error", "result")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None


class _SingleFlight:
    """Coalesce concurrent calls for one key into one execution of `fn`.

    The first caller (leader) runs `fn`; callers arriving while it runs wait and receive the same
    result, or their own copy of the same exception. The leader always releases its waiters,
    whatever `fn` raises, so one failure never leaves a waiter hanging. Nothing is remembered
    once the call finishes: caching is the caller's business (re-check the cache inside `fn`).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: dict[Hashable, _Call] = {}

    def do(self, key: Hashable, fn: Callable[[], T]) -> T:
        with self._lock:
            call = self._calls.get(key)
            leader = call is None
            if call is None:
                call = self._calls[key] = _Call()
        if not leader:
            call.done.wait()
            if call.error is not None:
                raise _copy_error(call.error)
            result: T = call.result
            return result
        try:
            result = fn()
            call.result = result
            return result
        except BaseException as exc:
            call.error = exc
            raise
        finally:
            with self._lock:
                del self._calls[key]
            call.done.set()

    def in_flight(self) -> int:
        with self._lock:
            return len(self._calls)


def _copy_error(error: BaseException) -> BaseException:
    """A waiter's own copy of the leader's exception (its own traceback), else the original."""
    try:
        return copy.copy(error)
    except Exception:
        return error


# --- the client ----------------------------------------------------------------------------------


class GitHubClient:
    """GitHub identity, membership and team listing for `org`, with in-process and shared caches.

    One client is made per org and reused across invocations; it is thread-safe. The shared
    `ghteams:<login>` key names the login, not the org (a fixed key layout, which other readers
    of the cache expect): when clients of two orgs share one cache, call `teams()` on one of them
    only (whoami uses GH_ORG's). Calls go through `transport`, by default the process's shared
    pool of keep-alive connections.
    """

    def __init__(
        self,
        base_url: str,
        org: str,
        ttl_seconds: int = 300,
        *,
        shared: SharedCache | None = None,
        timeout: float = 10.0,
        max_entries: int = 4096,
        clock: Callable[[], float] = time.monotonic,
        transport: GitHubTransport | None = None,
    ) -> None:
        scheme = urllib.parse.urlsplit(base_url).scheme
        if scheme not in ("http", "https"):
            raise ValueError("base_url must be an http:// or https:// URL")
        self.base_url = base_url.rstrip("/")
        self.org = org
        self.ttl = int(ttl_seconds)
        self.negative_ttl = min(self.ttl, NEGATIVE_TTL_CAP)
        self.timeout = timeout
        self._shared = shared
        # One pool of keep-alive connections per process, unless the caller brings its own.
        self._transport = transport or shared_transport()
        # identity: login, or "" for a negative (not authenticated) answer
        self._identities: _TTLCache[str, str] = _TTLCache(max_entries, clock)
        self._memberships: _TTLCache[tuple[str, str], bool] = _TTLCache(max_entries, clock)
        self._team_lists: _TTLCache[str, tuple[str, ...]] = _TTLCache(max_entries, clock)
        self._flight = _SingleFlight()

    # --- identity ------------------------------------------------------------------------------

    def identity(self, token: str) -> str:
        """The token owner's login. Unauthenticated, RateLimited or UpstreamUnavailable."""
        key = token_hash(token)
        cached = self._identities.get(key)
        if cached is None:
            cached = self._flight.do(("identity", key), lambda: self._load_identity(token, key))
        if not cached:
            raise Unauthenticated()
        return cached

    def _load_identity(self, token: str, key: str) -> str:
        cached = self._identities.get(key)
        if cached is not None:
            return cached
        shared = self._shared_get(f"ghid:{key}")
        if shared:  # "" is forget_token's tombstone: a miss
            self._identities.set(key, shared, self.ttl)
            return shared
        resp = self._get("/user", token)
        if resp.status == 200:
            login = self._login_of(resp)
            self._identities.set(key, login, self.ttl)
            self._shared_set(f"ghid:{key}", login, self.ttl)
            return login
        if resp.status == 401:
            return self._negative_identity(key, resp)
        if resp.throttled:
            raise self._failure(RateLimited, "identity", resp)
        if resp.status in (403, 404):
            return self._negative_identity(key, resp)
        raise self._failure(UpstreamUnavailable, "identity", resp)

    def _login_of(self, resp: Response) -> str:
        try:
            body = resp.json()
        except ValueError:
            raise self._failure(UpstreamUnavailable, "identity", resp, "unparsable body") from None
        login = body.get("login") if isinstance(body, dict) else None
        if not isinstance(login, str) or not login:
            raise self._failure(UpstreamUnavailable, "identity", resp, "no login in body")
        return login

    def _negative_identity(self, key: str, resp: Response) -> str:
        self._identities.set(key, "", self.negative_ttl)
        _log().info("GitHub refused the token", extra={"github_status": resp.status})
        return ""

    def forget_token(self, token: str) -> None:
        """Drop what is cached for this token (identity, team list), here and in the shared
        cache, so the next call asks GitHub again. Membership answers are keyed by login and stay.
        """
        key = token_hash(token)
        self._identities.pop(key)
        self._team_lists.pop(key)
        # SharedCache has no delete: overwrite the login with a tombstone that reads as a miss.
        self._shared_set(f"ghid:{key}", "", self.ttl)

    # --- membership --------------------------------------------------------------------------

    def is_member(self, login: str, team: str, token: str) -> bool:
        """Whether `login` is an active member of `team` in the org, probed with the caller's
        token. Unauthenticated, InsufficientScope, RateLimited or UpstreamUnavailable."""
        key = (login.lower(), team)
        cached = self._memberships.get(key)
        if cached is not None:
            return cached
        # coalesce per token too: one caller's revoked or under-scoped token must not fail another
        flight_key = ("member", *key, token_hash(token))
        return self._flight.do(flight_key, lambda: self._load_membership(key, token))

    def _load_membership(self, key: tuple[str, str], token: str) -> bool:
        cached = self._memberships.get(key)
        if cached is not None:
            return cached
        login, team = key
        shared_key = f"ghmember:{self.org}:{login}:{team}"
        shared = self._shared_get(shared_key)
        if shared in ("1", "0"):
            member = shared == "1"
            self._memberships.set(key, member, self.ttl if member else self.negative_ttl)
            return member
        path = f"/orgs/{_quote(self.org)}/teams/{_quote(team)}/memberships/{_quote(login)}"
        resp = self._get(path, token)
        if resp.status == 200:
            try:
                body = resp.json()
            except ValueError:
                body = None
            state = body.get("state") if isinstance(body, dict) else None
            if not isinstance(state, str):
                raise self._failure(UpstreamUnavailable, "membership", resp, "unparsable body")
            member = state == "active"
        elif resp.status == 404:
            member = False
        else:
            raise self._probe_failure("membership", resp, token)
        ttl = self.ttl if member else self.negative_ttl
        self._memberships.set(key, member, ttl)
        self._shared_set(shared_key, "1" if member else "0", ttl)
        return member

    def first_team_member_of(self, login: str, teams: Sequence[str], token: str) -> str | None:
        """The first of `teams`, in order, that `login` is an active member of; None if none.
        The first probe error is raised even if a later team would have granted."""
        for team in teams:
            if self.is_member(login, team, token):
                return team
        return None

    # --- team listing ------------------------------------------------------------------------

    def teams(self, token: str) -> list[str]:
        """The caller's team slugs in the org (all orgs if `org` is empty), for whoami.
        Unauthenticated, InsufficientScope, RateLimited or UpstreamUnavailable."""
        key = token_hash(token)
        cached = self._team_lists.get(key)
        if cached is None:
            cached = self._flight.do(("teams", key), lambda: self._load_teams(token, key))
        return list(cached)

    def _load_teams(self, token: str, key: str) -> tuple[str, ...]:
        cached = self._team_lists.get(key)
        if cached is not None:
            return cached
        shared_key: str | None = None
        if self._shared is not None:
            shared_key = f"ghteams:{self.identity(token)}"
            slugs = _parse_slugs(self._shared_get(shared_key))
            if slugs is not None:
                self._team_lists.set(key, slugs, self.ttl)
                return slugs
        slugs = self._list_teams(token)
        self._team_lists.set(key, slugs, self.ttl)
        if shared_key is not None:
            self._shared_set(shared_key, json.dumps(list(slugs)), self.ttl)
        return slugs

    def _list_teams(self, token: str) -> tuple[str, ...]:
        org = self.org.lower()
        slugs: list[str] = []
        for page in range(1, MAX_TEAM_PAGES + 1):
            resp = self._get(f"/user/teams?per_page={PAGE_SIZE}&page={page}", token)
            if resp.status != 200:
                raise self._probe_failure("team listing", resp, token)
            try:
                entries = resp.json()
            except ValueError:
                entries = None
            if not isinstance(entries, list):
                raise self._failure(UpstreamUnavailable, "team listing", resp, "unparsable body")
            for entry in entries:
                if not isinstance(entry, dict):
                    continue
                slug = entry.get("slug")
                owner = entry.get("organization")
                owner_login = owner.get("login") if isinstance(owner, dict) else None
                if not isinstance(slug, str):
                    continue
                if org and not (isinstance(owner_login, str) and owner_login.lower() == org):
                    continue
                if slug not in slugs:
                    slugs.append(slug)
            if len(entries) < PAGE_SIZE:
                break
        else:
            _log().warning("team listing truncated", extra={"pages": MAX_TEAM_PAGES})
        return tuple(slugs)

    # --- shared plumbing ----------------------------------------------------------------------

    def _probe_failure(self, what: str, resp: Response, token: str) -> Exception:
        """Classify a failed membership probe or listing page. A 401 is never a throttle,
        as for identity (a revoked token must not look like a rate limit)."""
        if resp.status == 401:
            self.forget_token(token)
            return self._failure(Unauthenticated, what, resp)
        if resp.throttled:
            return self._failure(RateLimited, what, resp)
        if resp.status == 403:
            return self._failure(InsufficientScope, what, resp)
        return self._failure(UpstreamUnavailable, what, resp)

    @staticmethod
    def _failure(
        error: Callable[[], Exception], what: str, resp: Response, reason: str = ""
    ) -> Exception:
        _log().warning(
            "GitHub %s failed",
            what,
            extra={
                "github_status": resp.status,
                "github_request_id": resp.header("X-GitHub-Request-Id"),
                "reason": reason or None,
            },
        )
        return error()

    def _get(self, path: str, token: str) -> Response:
        """GET base_url + path; any transport failure (including a timeout or an over-long body)
        is UpstreamUnavailable. Non-2xx answers are returned, not raised."""
        try:
            return self._transport.request(
                "GET", self.base_url + path, f"Bearer {token}", self.timeout
            )
        except TransportError as exc:
            _log().warning(
                "GitHub request failed",
                extra={"github_path": path.split("?", 1)[0], "error": exc.kind},
            )
            raise UpstreamUnavailable() from exc

    def _shared_get(self, key: str) -> str | None:
        if self._shared is None:
            return None
        try:
            return self._shared.get(key)
        except Exception as exc:  # a read error is a miss
            _log().warning(
                "shared cache read failed; treating it as a miss",
                extra={"cache_key": key, "error": type(exc).__name__},
            )
            return None

    def _shared_set(self, key: str, value: str, ttl: int) -> None:
        if self._shared is None or ttl <= 0:
            return
        try:
            self._shared.set(key, value, ttl)
        except Exception as exc:
            _log().warning(
                "shared cache write failed; ignored",
                extra={"cache_key": key, "error": type(exc).__name__},
            )


def _parse_slugs(raw: str | None) -> tuple[str, ...] | None:
    """A shared `ghteams:` value (JSON array of slugs), or None (a miss) if absent or damaged."""
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
        return None
    return tuple(value)
