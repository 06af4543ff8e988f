"""The HTTP side: JSON requests to the API with retries, and presigned POSTs to the bucket.

Retries: a 429, a 5xx or a network error is retried with exponential backoff and jitter
(honouring `Retry-After`), up to `attempts` tries; anything else is answered at once. Every
error the API returns carries the envelope `{"error": {"code", "message"}}`; an answer without
it (a proxy, API Gateway's own 413) becomes the code `http_<status>`.
"""

from __future__ import annotations

import http.client
import json
import random
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from artemis_cli import __version__
from artemis_cli.errors import SERVER, CliError, api_error

USER_AGENT = f"artemis-cli/{__version__}"
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    headers: Mapping[str, str]

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


class Retrying:
    """Backoff policy: `attempts` tries, delays base * 2^n (capped), full jitter."""

    def __init__(
        self, attempts: int = 5, base: float = 0.25, cap: float = 8.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:  # fmt: skip
        self.attempts, self.base, self.cap, self.sleep = attempts, base, cap, sleep

    def delay(self, attempt: int, retry_after: str | None) -> float:
        if retry_after and retry_after.isdigit():
            return min(float(retry_after), self.cap)
        return random.uniform(0, min(self.cap, self.base * 2**attempt))


_local = threading.local()


def _connection(scheme: str, netloc: str, timeout: float) -> http.client.HTTPConnection:
    """This thread's kept-alive connection to `netloc` (one TCP and TLS handshake per thread
    and host, not per file)."""
    pool: dict[tuple[str, str], http.client.HTTPConnection] = _local.__dict__.setdefault("pool", {})
    conn = pool.get((scheme, netloc))
    if conn is None:
        kind = http.client.HTTPSConnection if scheme == "https" else http.client.HTTPConnection
        conn = pool[(scheme, netloc)] = kind(netloc, timeout=timeout)
    return conn


def _drop(scheme: str, netloc: str) -> None:
    conn = _local.__dict__.get("pool", {}).pop((scheme, netloc), None)
    if conn is not None:
        conn.close()


def send(
    method: str, url: str, body: bytes | None, headers: Mapping[str, str], timeout: float
) -> Reply:
    """One request on a kept-alive connection; HTTP error statuses are replies, not
    exceptions. A connection the server closed meanwhile is reopened once."""
    parts = urllib.parse.urlsplit(url)
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    for attempt in (1, 2):
        conn = _connection(parts.scheme, parts.netloc, timeout)
        try:
            conn.request(method, target, body=body, headers=dict(headers))
            resp = conn.getresponse()
            data = resp.read()
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            _drop(parts.scheme, parts.netloc)
            if attempt == 2:
                raise
            continue
        except (OSError, http.client.HTTPException):
            _drop(parts.scheme, parts.netloc)
            raise
        if resp.will_close:
            _drop(parts.scheme, parts.netloc)
        return Reply(resp.status, data, dict(resp.getheaders()))
    raise AssertionError("unreachable")


def error_from(reply: Reply) -> CliError:
    try:
        data = reply.json()
    except ValueError:
        data = None
    envelope = data.get("error") if isinstance(data, dict) else None
    if isinstance(envelope, dict) and isinstance(envelope.get("code"), str):
        extra = {k: v for k, v in envelope.items() if k not in ("code", "message")}
        extra.update({k: v for k, v in data.items() if k != "error"})
        return api_error(reply.status, envelope["code"], str(envelope.get("message", "")), extra)
    text = reply.body[:200].decode("utf-8", "replace").strip()
    return api_error(reply.status, f"http_{reply.status}", text or f"HTTP {reply.status}", {})


class Api:
    """The Artemis API at `base_url`, as one caller (`token`)."""

    def __init__(
        self, base_url: str, token: str, *, timeout: float = 60.0, retrying: Retrying | None = None
    ) -> None:
        if urllib.parse.urlsplit(base_url).scheme not in ("http", "https"):
            raise CliError("usage", f"not an http(s) URL: {base_url}", 2)
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.retrying = retrying or Retrying()
        self._count_lock = threading.Lock()
        self.requests = 0  # every request sent, to the API or the bucket, retries included

    def _count(self) -> None:
        with self._count_lock:
            self.requests += 1

    def call(
        self, method: str, path: str, *, json_body: Any = None, raw: bytes | None = None,
        content_type: str | None = None, query: Mapping[str, str] | None = None,
        token: str | None = None, ok: tuple[int, ...] = (200, 201, 204),
    ) -> Any:  # fmt: skip
        """The decoded JSON answer (None for 204), or CliError."""
        url = self.base_url + path
        if query:
            url += "?" + urllib.parse.urlencode(
                {k: v for k, v in query.items() if v not in (None, "")}
            )
        headers = {
            "Authorization": f"Bearer {token or self.token}",
            "User-Agent": USER_AGENT,
            "X-Request-ID": uuid.uuid4().hex[:24],
        }
        body = raw
        if json_body is not None:
            body = json.dumps(json_body).encode()
            headers["Content-Type"] = "application/json"
        elif content_type:
            headers["Content-Type"] = content_type
        reply = self._with_retries(method, url, body, headers)
        if reply.status not in ok:
            raise error_from(reply)
        try:
            return reply.json()
        except ValueError:
            raise CliError("bad_answer", f"{method} {path}: answer is not JSON", SERVER) from None

    def _with_retries(
        self, method: str, url: str, body: bytes | None, headers: Mapping[str, str]
    ) -> Reply:
        last: Exception | None = None
        for attempt in range(self.retrying.attempts):
            self._count()
            try:
                reply = send(method, url, body, headers, self.timeout)
            except (OSError, http.client.HTTPException) as err:
                last = err
                if attempt + 1 < self.retrying.attempts:
                    self.retrying.sleep(self.retrying.delay(attempt, None))
                continue
            if reply.status not in RETRY_STATUSES or attempt + 1 == self.retrying.attempts:
                return reply
            self.retrying.sleep(self.retrying.delay(attempt, reply.headers.get("Retry-After")))
        raise CliError("network", f"{method} {url}: {last}", SERVER)

    def presigned_post(
        self, url: str, fields: Mapping[str, str], filename: str, data: bytes
    ) -> None:
        """Send one file to the bucket with a presigned POST (multipart/form-data, `file` last)."""
        boundary = uuid.uuid4().hex
        parts: list[bytes] = []
        for name, value in fields.items():
            parts.append(
                f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
                f"{value}\r\n".encode()
            )
        safe_name = filename.replace('"', "_").replace("\r", "_").replace("\n", "_")
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
            f'filename="{safe_name}"\r\nContent-Type: application/octet-stream\r\n\r\n'.encode()
        )
        body = b"".join(parts) + data + f"\r\n--{boundary}--\r\n".encode()
        headers = {
            "Content-Type": f"multipart/form-data; boundary={boundary}",
            "User-Agent": USER_AGENT,
        }
        reply = self._with_retries("POST", url, body, headers)
        if reply.status not in (200, 201, 204):
            text = reply.body[:300].decode("utf-8", "replace")
            code = "storage_refused" if reply.status < 500 else "storage_failed"
            raise CliError(code, f"direct upload refused ({reply.status}): {text}", SERVER,
                           status=reply.status)  # fmt: skip
