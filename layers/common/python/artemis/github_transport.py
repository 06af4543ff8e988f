"""The HTTP transport of the GitHub clients: one pool of keep-alive connections (urllib3),
shared by the REST client (`artemis.github`) and the App client (`artemis.github_app`).

A GitHub call that misses the caches reuses an open connection instead of paying a new TCP
and TLS handshake. The rules every call keeps:

* a redirect is never followed (it would carry the caller's token to wherever it points): a
  3xx is returned as an answer like any other non-2xx;
* a body over MAX_BODY_BYTES is an error, and its connection is dropped rather than reused;
* every connect and every read waits at most the call's timeout;
* nothing is retried: a dropped connection is a `TransportError`, as a refused one is;
* a connection left idle longer than MAX_IDLE_SECONDS is not reused (a NAT or a load balancer
  may have dropped it silently; an environment frozen between invocations wakes up to stale
  connections).

urllib3 is imported when the first call is made, not with this module, so importing a GitHub
client costs nothing at a cold start that makes no GitHub call.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.client import HTTPException
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import urllib3

__all__ = [
    "API_VERSION",
    "MAX_BODY_BYTES",
    "USER_AGENT",
    "GitHubTransport",
    "Response",
    "TransportError",
    "quote",
    "shared_transport",
]

MAX_BODY_BYTES = 8 * 1024 * 1024
API_VERSION = "2022-11-28"
USER_AGENT = "artemis-deploy-proxy"
MAX_IDLE_SECONDS = 30.0
POOLS = 4  # distinct hosts kept: the GitHub API, and in tests a few fake servers
CONNECTIONS_PER_HOST = 8  # kept open per host; more may be opened meanwhile, then closed


class TransportError(Exception):
    """No answer: refused or dropped connection, timeout, malformed or over-long answer.
    `kind` names the underlying failure (for logs)."""

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class Response:
    status: int
    headers: Mapping[str, str]  # names lower-cased
    body: bytes

    def header(self, name: str) -> str | None:
        value = self.headers.get(name.lower())
        return None if value is None else value.strip()

    @property
    def throttled(self) -> bool:
        """429; or `X-RateLimit-Remaining: 0` with any status; or 403 with `Retry-After`."""
        if self.status == 429 or self.header("X-RateLimit-Remaining") == "0":
            return True
        return self.status == 403 and self.header("Retry-After") is not None

    def json(self) -> Any:
        """The parsed body; ValueError if it is not JSON."""
        return json.loads(self.body)


def quote(segment: str) -> str:
    """One path segment, every reserved character escaped (a `/` in a name stays inside it)."""
    return urllib.parse.quote(segment, safe="")


class GitHubTransport:
    """A thread-safe pool of keep-alive connections. `clock` (monotonic seconds) judges idleness;
    `max_idle_seconds` is how long an unused connection may still be reused."""

    def __init__(
        self,
        *,
        max_idle_seconds: float = MAX_IDLE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._max_idle = max_idle_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._pool: urllib3.PoolManager | None = None
        self._last_used = 0.0

    def request(
        self, method: str, url: str, authorization: str | None, timeout: float, body: Any = None
    ) -> Response:
        """One GitHub REST call (JSON `body`, if any); `authorization` None sends none (the
        OIDC issuer's public documents). Non-2xx answers, 3xx included, are returned, not
        raised; anything that is not an answer within the limits raises TransportError."""
        headers = {
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": API_VERSION,
            "User-Agent": USER_AGENT,
        }
        if authorization is not None:
            headers["Authorization"] = authorization
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        import urllib3

        pool = self._pool_for_now()
        try:
            raw = pool.request(
                method, url, body=data, headers=headers,
                timeout=urllib3.Timeout(connect=timeout, read=timeout),
                retries=False, redirect=False, preload_content=False, decode_content=False,
            )  # fmt: skip
            try:
                content = raw.read(MAX_BODY_BYTES + 1, decode_content=False)
                if len(content) > MAX_BODY_BYTES:
                    raw.close()  # the rest is never read: the connection cannot be reused
                    raise TransportError("GitHub answer exceeds the body limit", "BodyTooLarge")
            finally:
                raw.release_conn()
        except (urllib3.exceptions.HTTPError, OSError, HTTPException, ValueError) as exc:
            raise TransportError(
                f"{method} {url.split('?', 1)[0]}: {exc}", type(exc).__name__
            ) from exc
        finally:
            with self._lock:
                self._last_used = self._clock()
        return Response(raw.status, {k.lower(): v for k, v in raw.headers.items()}, content)

    def _pool_for_now(self) -> urllib3.PoolManager:
        import urllib3

        with self._lock:
            now = self._clock()
            if self._pool is not None and now - self._last_used > self._max_idle:
                self._pool.clear()  # every kept connection has been idle too long
            if self._pool is None:
                self._pool = urllib3.PoolManager(
                    num_pools=POOLS, maxsize=CONNECTIONS_PER_HOST, block=False, retries=False
                )
            self._last_used = now
            return self._pool

    def close(self) -> None:
        """Close every kept connection (the next call opens new ones)."""
        with self._lock:
            if self._pool is not None:
                self._pool.clear()


_shared: GitHubTransport | None = None
_shared_lock = threading.Lock()


def shared_transport() -> GitHubTransport:
    """The process's transport, used by every GitHub client not given one of its own."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = GitHubTransport()
        return _shared
