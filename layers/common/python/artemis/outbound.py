"""The safe sender for user-supplied webhook URLs (SSRF defence).

A subscriber's URL is chosen by whoever creates the subscription, so it may point at anything
the sender can reach: the cloud metadata service (169.254.169.254, fd00:ec2::254), the VPC's
databases, localhost. The rules:

* `check_url` judges a URL: https only (http only to loopback, and only when the local dev
  stack allows it), no user-info, no fragment, a sane length and host; every address the host
  resolves to must be globally routable — one private answer refuses the whole name. An IPv6
  address that embeds an IPv4 one (mapped, 6to4, Teredo, NAT64) is judged by the embedded one
  too. A literal IP host, in any form the resolver accepts (`2130706433`, `0x7f.1`), is judged
  by the address the resolver makes of it.
* `post` checks the URL again at send time (a name that was public when the subscription was
  made may resolve privately now: DNS rebinding) and then connects to the first checked address
  itself, so no second resolution can happen between the check and the connection. TLS still
  sends the name (SNI) and verifies the certificate against it.
* a redirect is never followed (a 3xx is a status like any other); nothing is retried; the whole
  exchange has one deadline (a watchdog shuts the socket when it passes, so a server trickling
  bytes cannot hold the sender); at most `max_response_bytes` of the answer are read, then the
  connection is dropped; the answer's content is never decoded (no gzip bomb).
* network trouble is never raised: `post` returns a `Delivery` with a short `error` reason.
  Nothing here logs a response header or body.

urllib3 is imported on the first `post`, not with this module.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.client import HTTPException
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import urllib3.connection

__all__ = [
    "MAX_RESPONSE_BYTES",
    "MAX_URL_LENGTH",
    "USER_AGENT",
    "CheckedUrl",
    "Delivery",
    "OutboundRefused",
    "Resolver",
    "check_url",
    "default_resolve",
    "post",
]

MAX_URL_LENGTH = 2048
MAX_RESPONSE_BYTES = 65536
USER_AGENT = "artemis-webhooks"
_CHUNK = 16384

Resolver = Callable[[str, int], list[str]]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")  # deprecated ::a.b.c.d, never a destination
_HOST_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-._")
# Printable ASCII is kept as written in the request target; anything else is percent-encoded.
_TARGET_SAFE = "".join(chr(c) for c in range(0x21, 0x7F))
# Headers the sender sets itself: a caller's value for these is dropped.
_OWN_HEADERS = frozenset(
    {"host", "user-agent", "content-length", "transfer-encoding", "connection", "te", "upgrade"}
)


class _Hush(logging.Filter):
    """Drops urllib3's records while this thread is in `post`: they may quote what the
    receiver sent (a malformed header's text, its certificate), which is never logged."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(_posting, "on", False)


_posting = threading.local()
_hush = _Hush()
_HUSHED_LOGGERS = ("urllib3.connection", "urllib3.response", "urllib3.util.ssl_match_hostname")


def _hush_urllib3() -> None:
    for name in _HUSHED_LOGGERS:
        logger = logging.getLogger(name)
        if _hush not in logger.filters:
            logger.addFilter(_hush)


class OutboundRefused(Exception):
    """A URL the sender will not call; `code` is the envelope-style reason."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class CheckedUrl:
    scheme: str  # "https", or "http" (loopback only)
    host: str  # lower-case; IDNA (ASCII) form; an IPv6 literal without brackets
    port: int
    target: str  # path and query, as sent in the request line ("/" for an empty path)
    addresses: tuple[str, ...]  # every address the host resolved to, each checked

    @property
    def host_header(self) -> str:
        """The Host header: the name, with the port unless it is the scheme's default."""
        name = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return name if self.port == default else f"{name}:{self.port}"


@dataclass(frozen=True)
class Delivery:
    status: int | None  # the answer's status; None when there was no answer
    error: str | None  # None when answered; else "timeout", "connect_failed", "refused:<code>", …
    duration_ms: int
    response_excerpt: bytes  # at most max_response_bytes of the answer's body, undecoded

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def default_resolve(host: str, port: int) -> list[str]:
    """The host's addresses (getaddrinfo, TCP), each once, in the resolver's order.
    socket.gaierror when the name does not resolve."""
    seen: dict[str, None] = {}
    for _family, _type, _proto, _canon, sockaddr in socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM
    ):
        seen.setdefault(str(sockaddr[0]), None)
    return list(seen)


def _invalid(message: str) -> OutboundRefused:
    return OutboundRefused("hook_url_invalid", message)


def _host_of(parts: urllib.parse.SplitResult) -> str:
    """The host, IDNA-encoded and lower-cased; refuses what no DNS name or IP literal is."""
    netloc_host = parts.netloc.rpartition("@")[2]
    raw = parts.hostname
    if not raw:
        raise _invalid("the URL has no host")
    if netloc_host.startswith("["):
        if "%" in raw:
            raise _invalid("the IPv6 host must not carry a zone id")
        try:
            literal = ipaddress.IPv6Address(raw)
        except ValueError:
            raise _invalid("the bracketed host is not an IPv6 address") from None
        return str(literal)
    if not raw.isascii():
        try:
            raw = raw.encode("idna").decode("ascii").lower()
        except UnicodeError:
            raise _invalid("the host is not a valid internationalised name") from None
    name = raw.removesuffix(".")
    if not name or not set(name) <= _HOST_CHARS or len(name) > 253:
        raise _invalid("the host is not a valid name")
    if any(not label or len(label) > 63 for label in name.split(".")):
        raise _invalid("the host has an empty or over-long label")
    return raw


def _embedded_ipv4(addr: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 one carries: mapped, 6to4, Teredo (server and client), NAT64."""
    found: list[ipaddress.IPv4Address] = []
    if addr.ipv4_mapped is not None:
        found.append(addr.ipv4_mapped)
    if addr.sixtofour is not None:
        found.append(addr.sixtofour)
    if addr.teredo is not None:
        found.extend(addr.teredo)
    if any(addr in net for net in _NAT64):
        found.append(ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF))
    return found


def _routable(addr: IPAddress) -> bool:
    """Globally routable unicast, judged on the address and on any IPv4 address it embeds. A
    6to4 address (2002::/16) is judged by the IPv4 address it carries alone: Python's own
    verdict on the prefix changed between versions (3.13 calls all of it non-global)."""
    if isinstance(addr, ipaddress.IPv6Address) and addr.sixtofour is not None:
        return _routable(addr.sixtofour)
    if not addr.is_global or addr.is_multicast or (addr.version == 4 and addr.is_reserved):
        return False
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.is_site_local or addr in _IPV4_COMPATIBLE:
            return False
        return all(_routable(inner) for inner in _embedded_ipv4(addr))
    return True


def _is_loopback(addr: IPAddress) -> bool:
    """127/8 or ::1 as such (an IPv6 form embedding 127.0.0.1 is not counted)."""
    return addr.is_loopback and (addr.version == 4 or addr == ipaddress.IPv6Address("::1"))


def check_url(
    url: str, *, allow_loopback_http: bool, resolve: Resolver = default_resolve
) -> CheckedUrl:
    """The URL, checked and resolved; OutboundRefused (code `hook_url_invalid`,
    `hook_url_scheme`, `hook_url_unresolvable` or `hook_url_forbidden_address`) if the sender
    must not call it. `allow_loopback_http` (the local dev stack only) admits loopback
    addresses, and http when every address is loopback."""
    if not isinstance(url, str) or not url:
        raise _invalid("the URL is empty")
    if len(url) > MAX_URL_LENGTH:
        raise _invalid(f"the URL is longer than {MAX_URL_LENGTH} characters")
    if any(c.isspace() or not c.isprintable() for c in url):
        raise _invalid("the URL contains whitespace or control characters")
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError:
        raise _invalid("the URL cannot be parsed or its port is out of range") from None
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http"):
        raise OutboundRefused("hook_url_scheme", "the URL must be https")
    if scheme == "http" and not allow_loopback_http:
        raise OutboundRefused("hook_url_scheme", "the URL must be https")
    if "@" in parts.netloc:
        raise _invalid("the URL must not carry user information")
    if parts.fragment or "#" in url:
        raise _invalid("the URL must not have a fragment")
    host = _host_of(parts)
    if port is None:
        port = 443 if scheme == "https" else 80
    elif port == 0:
        raise _invalid("the URL's port is out of range")

    try:
        answers = resolve(host, port)
    except (OSError, UnicodeError):  # socket.gaierror is an OSError
        raise OutboundRefused("hook_url_unresolvable", "the URL's host does not resolve") from None
    if not answers:
        raise OutboundRefused("hook_url_unresolvable", "the URL's host does not resolve")
    addresses: list[IPAddress] = []
    for answer in answers:
        try:
            addresses.append(ipaddress.ip_address(answer.partition("%")[0]))
        except ValueError:
            raise OutboundRefused(
                "hook_url_forbidden_address", "the URL's host resolves to an unusable address"
            ) from None
    for addr in addresses:
        if _routable(addr) or (allow_loopback_http and _is_loopback(addr)):
            continue
        raise OutboundRefused(
            "hook_url_forbidden_address",
            "the URL's host resolves to an address that is not publicly routable",
        )
    if scheme == "http" and not all(_is_loopback(addr) for addr in addresses):
        raise OutboundRefused("hook_url_scheme", "the URL must be https")

    target = urllib.parse.quote(parts.path or "/", safe=_TARGET_SAFE)
    if parts.query:
        target += "?" + urllib.parse.quote(parts.query, safe=_TARGET_SAFE)
    return CheckedUrl(scheme, host, port, target, tuple(str(a) for a in addresses))


def _elapsed_ms(start: float) -> int:
    return int((time.monotonic() - start) * 1000)


def _connection(
    checked: CheckedUrl, timeout: float, tls_context: ssl.SSLContext | None
) -> urllib3.connection.HTTPConnection:
    """A connection to the first checked address (no resolution of the name)."""
    import urllib3.connection

    address = checked.addresses[0]
    if checked.scheme == "http":
        return urllib3.connection.HTTPConnection(address, checked.port, timeout=timeout)
    return urllib3.connection.HTTPSConnection(
        address, checked.port, timeout=timeout,
        server_hostname=checked.host, assert_hostname=checked.host, cert_reqs="CERT_REQUIRED",
        ssl_context=tls_context if tls_context is not None else ssl.create_default_context(),
    )  # fmt: skip


def _reason(exc: BaseException, connected: bool, deadline_passed: bool) -> str:
    """The Delivery's `error` for an exception raised after the URL was accepted."""
    from urllib3 import exceptions
    from urllib3.util.ssl_match_hostname import CertificateError

    if isinstance(exc, exceptions.NewConnectionError):  # urllib3 makes it a TimeoutError
        return "connect_failed"
    if deadline_passed or isinstance(exc, TimeoutError | exceptions.TimeoutError):
        return "timeout"
    tls = (ssl.SSLError, ssl.CertificateError, CertificateError, exceptions.SSLError)
    if isinstance(exc, tls):
        return "tls_failed"
    if not connected:
        return "connect_failed"
    if isinstance(exc, HTTPException | exceptions.ProtocolError):
        return "bad_response"
    return "connection_lost"


def post(
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    *,
    allow_loopback_http: bool,
    timeout: float = 10.0,
    max_response_bytes: int = MAX_RESPONSE_BYTES,
    resolve: Resolver = default_resolve,
    tls_context: ssl.SSLContext | None = None,
) -> Delivery:
    """POST `body` to `url`, checked again now and sent to the address the check saw. The whole
    exchange takes at most `timeout` seconds; a redirect is returned, never followed; nothing is
    retried; network trouble is a Delivery with `error` set, never an exception. `tls_context`
    (tests) replaces the system's trust roots; hostname verification stays on."""
    start = time.monotonic()
    deadline = start + timeout
    try:
        checked = check_url(url, allow_loopback_http=allow_loopback_http, resolve=resolve)
    except OutboundRefused as refused:
        return Delivery(None, f"refused:{refused.code}", _elapsed_ms(start), b"")

    sent = {k: v for k, v in headers.items() if k.lower() not in _OWN_HEADERS}
    sent.update({"Host": checked.host_header, "User-Agent": USER_AGENT, "Connection": "close"})

    _hush_urllib3()
    expired = threading.Event()
    watchdog: threading.Timer | None = None
    connected = False
    conn = _connection(checked, timeout, tls_context)
    _posting.on = True
    try:
        conn.connect()
        connected = True
        raw_socket = conn.sock

        def cut() -> None:  # wakes a blocked read: the deadline holds even against trickling
            expired.set()
            if raw_socket is not None:
                with contextlib.suppress(OSError):
                    socket.socket.shutdown(raw_socket, socket.SHUT_RDWR)

        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("the deadline passed while connecting")
        watchdog = threading.Timer(remaining, cut)
        watchdog.daemon = True
        watchdog.start()
        conn.request("POST", checked.target, body=body, headers=sent,
                     preload_content=False, decode_content=False)  # fmt: skip
        response = conn.getresponse()
        if expired.is_set():  # the watchdog cut the status line or the headers short
            raise TimeoutError("the deadline passed before the answer's headers ended")
        status = response.status
        excerpt = bytearray()
        with contextlib.suppress(Exception):  # answered: a body cut short is still an answer
            while len(excerpt) < max_response_bytes and not expired.is_set():
                chunk = response.read(
                    min(_CHUNK, max_response_bytes - len(excerpt)), decode_content=False
                )
                if not chunk:
                    break
                excerpt += chunk
        return Delivery(status, None, _elapsed_ms(start), bytes(excerpt))
    except Exception as exc:
        reason = _reason(exc, connected, expired.is_set() or time.monotonic() >= deadline)
        return Delivery(None, reason, _elapsed_ms(start), b"")
    finally:
        if watchdog is not None:
            watchdog.cancel()
        conn.close()  # never reused: the rest of a long answer is not read
        _posting.on = False
