"""An HTTP server on 127.0.0.1 that turns each request into an API Gateway HTTP API (payload
v2) event, calls a Lambda handler, and writes its response back — the same handler code that
runs behind API Gateway. Binary bodies travel base64-encoded, as API Gateway sends them.

HTTP/1.1 parsing is h11's (the parser behind uvicorn and httpx), not `http.server`'s: request
framing is where a hand-rolled server goes wrong (chunked bodies, malformed lengths, request
smuggling). Around it, this module does what API Gateway does at its edge and what a local run
must reproduce so it fails where production would:

* chunked bodies are decoded; a malformed request (bad or conflicting lengths, both
  Content-Length and Transfer-Encoding, a bad chunk) is `400 bad_request`;
* the request line and headers must arrive within HEADER_TIMEOUT_SECONDS, and a body that
  stalls for BODY_IDLE_SECONDS is dropped (`408`), so a slow client cannot hold a connection;
* a body over MAX_BODY_BYTES is `413 too_large`, answered at once, and the rest of the body
  is read and dropped before the connection closes (up to a bound): a client still sending
  when the server closes would see a reset instead of the 413;
* on the routes whose body is raw bytes (PUT /api/deploy/{id}/upload and .../bundle), an
  event over LAMBDA_PAYLOAD_BYTES (Lambda's synchronous invoke limit, about 4.5 MB of body
  once base64-encoded) is `413 too_large` with a hint naming the way out (the presigned
  route, or smaller bundles): on AWS it never reaches the function. Other routes keep the
  10 MB body limit here, so the API's own JSON limits (up to 8 MiB) stay testable locally,
  although on AWS a JSON body above about 6 MB fails the same way.
* every answer the gateway makes itself carries the error envelope.
"""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import h11

from artemis.deadlines import Deadline
from artemis_local.functions import Handler, LocalContext, invocations_apart

# API Gateway HTTP APIs accept payloads up to 10 MB.
MAX_BODY_BYTES = 10 * 1024 * 1024
# A synchronous Lambda invocation takes a request event of at most 6 MB (6,291,456 bytes),
# headers and base64 included: about 4.5 MB of binary file.
LAMBDA_PAYLOAD_BYTES = 6 * 1024 * 1024
HEADER_TIMEOUT_SECONDS = 10.0
BODY_IDLE_SECONDS = 10.0
# After an answer the gateway makes itself (a 413 above all), what the client still sends is
# read and dropped, up to these bounds, before the connection closes.
DRAIN_LIMIT_BYTES = 64 * 1024 * 1024
LINGER_SECONDS = 30.0
LINGER_IDLE_SECONDS = 2.0
MAX_HEADER_BYTES = 32 * 1024
UPLOAD_ROUTE_HINT = (
    "PUT /api/deploy/{id}/upload takes files up to about 4.5 MB; upload larger files with "
    "POST /api/deploy/{id}/uploads (presigned direct uploads)"
)
BUNDLE_ROUTE_HINT = (
    "PUT /api/deploy/{id}/bundle takes a body of up to about 4.5 MB; split the files into "
    "several bundles, and upload large files with POST /api/deploy/{id}/uploads"
)
# The routes whose body is raw bytes (base64 in the event), by their last path segment.
_BINARY_ROUTE_HINTS = {"upload": UPLOAD_ROUTE_HINT, "bundle": BUNDLE_ROUTE_HINT}
_READ = 64 * 1024
_TEXT_TYPES = (
    "text/",
    "application/json",
    "application/xml",
    "application/javascript",
    "application/x-www-form-urlencoded",
)


def _is_text(content_type: str) -> bool:
    return content_type.lower().startswith(_TEXT_TYPES)


def build_event(
    method: str,
    target: str,
    headers: Mapping[str, str] | Iterable[tuple[str, str]],
    body: bytes,
    source_ip: str,
) -> dict[str, Any]:
    """The API Gateway HTTP API v2 event for one request."""
    parts = urlsplit(target)
    lowered: dict[str, str] = {}
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    for name, value in pairs:
        key = name.lower()
        lowered[key] = f"{lowered[key]},{value}" if key in lowered else value
    query: dict[str, str] = {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        query[key] = f"{query[key]},{value}" if key in query else value
    cookies = [c.strip() for c in lowered.pop("cookie", "").split(";") if c.strip()]
    now = time.time()
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": parts.path,
        "rawQueryString": parts.query,
        "headers": lowered,
        "requestContext": {
            "accountId": "000000000000",
            "apiId": "local",
            "domainName": lowered.get("host", "127.0.0.1"),
            "domainPrefix": "local",
            "http": {
                "method": method,
                "path": parts.path,
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": lowered.get("user-agent", ""),
            },
            "requestId": uuid.uuid4().hex,
            "routeKey": "$default",
            "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "timeEpoch": int(now * 1000),
        },
        "isBase64Encoded": False,
    }
    if query:
        event["queryStringParameters"] = query
    if cookies:
        event["cookies"] = cookies
    if body:
        if _is_text(lowered.get("content-type", "")):
            try:
                event["body"] = body.decode("utf-8")
            except UnicodeDecodeError:
                event["body"] = base64.b64encode(body).decode()
                event["isBase64Encoded"] = True
        else:
            event["body"] = base64.b64encode(body).decode()
            event["isBase64Encoded"] = True
    return event


def _decode_response(result: Any) -> tuple[int, dict[str, str], list[str], bytes]:
    """Interpret a handler's return value as API Gateway does for payload v2."""
    if not isinstance(result, dict) or "statusCode" not in result:
        return 200, {"content-type": "application/json"}, [], json.dumps(result).encode()
    body = result.get("body") or ""
    raw = base64.b64decode(body) if result.get("isBase64Encoded") else str(body).encode()
    headers = {str(k): str(v) for k, v in (result.get("headers") or {}).items()}
    for name, values in (result.get("multiValueHeaders") or {}).items():
        headers[name] = ",".join(str(v) for v in values)
    return int(result["statusCode"]), headers, list(result.get("cookies") or []), raw


@dataclass
class Request:
    """One parsed request: what a route sees."""

    method: str
    target: str  # path and query, as sent
    headers: list[tuple[str, str]]
    body: bytes
    client: str

    @property
    def path(self) -> str:
        return self.target

    def header(self, name: str, default: str = "") -> str:
        wanted = name.lower()
        return next((v for k, v in self.headers if k.lower() == wanted), default)


@dataclass
class Response:
    """What a route answers: `body`, or `chunks` of exactly `length` bytes (then `close`)."""

    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    chunks: Iterator[bytes] | None = None
    length: int | None = None
    close: Callable[[], None] | None = None


Route = tuple[Callable[[str, str], bool], Callable[[Request], Response]]


def envelope(status: int, code: str, message: str, **detail: str) -> Response:
    body = json.dumps({"error": {"code": code, "message": message, **detail}}).encode()
    return Response(status, [("Content-Type", "application/json")], body)


class _Closed(Exception):
    """The client went away, or must be dropped without an answer."""


class _Refused(Exception):
    """The gateway answers this request itself, then closes the connection."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status)
        self.response = response


class _Connection:
    """One client connection: requests in order, keep-alive, every limit above."""

    def __init__(self, gateway: Gateway, sock: socket.socket, client: str) -> None:
        self.gateway = gateway
        self.sock = sock
        self.client = client
        self.conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEADER_BYTES)

    def run(self) -> None:
        try:
            while self._one_request():
                self.conn.start_next_cycle()
        except (_Closed, OSError, h11.LocalProtocolError):
            pass
        finally:
            with contextlib.suppress(OSError):
                self.sock.close()

    def _one_request(self) -> bool:
        """Serve one request; True when the connection can carry another."""
        try:
            request = self._read_request()
        except _Refused as refused:
            self._send_and_close(refused.response)
            return False
        response = self.gateway.respond(request)
        self._send(request.method, response)
        return self.conn.our_state is h11.DONE and self.conn.their_state is h11.DONE

    # --- reading --------------------------------------------------------------------------
    def _next_event(self, deadline: Deadline | None, idle: float | None) -> Any:
        """The next h11 event, reading from the socket as needed; a header deadline or a body
        idle time that passes raises."""
        while True:
            try:
                event = self.conn.next_event()
            except h11.RemoteProtocolError as err:
                raise _Refused(_protocol_error(err)) from err
            if event is not h11.NEED_DATA:
                return event
            timeout = idle
            if deadline is not None:
                timeout = deadline.remaining()
                if timeout <= 0:
                    raise self._timed_out("request headers")
            self.sock.settimeout(timeout)
            try:
                data = self.sock.recv(_READ)
            except TimeoutError:
                what = "request body" if deadline is None else "request headers"
                raise self._timed_out(what) from None
            self.conn.receive_data(data)

    def _timed_out(self, what: str) -> Exception:
        if self.conn.their_state is h11.IDLE and not self.conn.trailing_data[0]:
            return _Closed()  # an idle keep-alive connection: close it quietly
        return _Refused(envelope(408, "request_timeout", f"{what} not received in time"))

    def _read_request(self) -> Request:
        deadline = Deadline.after(HEADER_TIMEOUT_SECONDS)
        event = self._next_event(deadline, None)
        if isinstance(event, h11.ConnectionClosed):
            raise _Closed()
        assert isinstance(event, h11.Request)
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in event.headers.raw_items()]
        names = {k.lower() for k, _ in headers}
        if "content-length" in names and "transfer-encoding" in names:
            # A front end and a back end that pick different framings disagree on where the
            # request ends (request smuggling): refuse the ambiguity outright.
            raise _Refused(
                envelope(400, "bad_request", "Content-Length and Transfer-Encoding both sent")
            )
        declared = _content_length(headers)
        if declared is not None and declared > MAX_BODY_BYTES:
            raise _Refused(_too_large())
        if self._expects_continue():  # e.g. curl, before a large body
            self._write(self.conn.send(h11.InformationalResponse(status_code=100, headers=[])))
        body = self._read_body()
        return Request(
            method=event.method.decode("ascii"),
            target=event.target.decode("latin-1"),
            headers=headers,
            body=body,
            client=self.client,
        )

    def _expects_continue(self) -> bool:
        return bool(self.conn.they_are_waiting_for_100_continue)

    def _read_body(self) -> bytes:
        body = bytearray()
        while True:
            event = self._next_event(None, BODY_IDLE_SECONDS)
            if isinstance(event, h11.EndOfMessage):
                return bytes(body)
            if isinstance(event, h11.ConnectionClosed):
                raise _Closed()
            assert isinstance(event, h11.Data)
            body += event.data
            if len(body) > MAX_BODY_BYTES:  # a chunked body that grew past the limit
                raise _Refused(_too_large())

    # --- writing --------------------------------------------------------------------------
    def _send(self, method: str, response: Response) -> None:
        headers = [(k, v) for k, v in response.headers if k.lower() != "content-length"]
        length = response.length if response.chunks is not None else len(response.body)
        headers.append(("Content-Length", str(length)))
        try:
            self._write(self.conn.send(h11.Response(status_code=response.status, headers=headers)))
            if method != "HEAD":
                if response.chunks is not None:
                    for chunk in response.chunks:
                        self._write(self.conn.send(h11.Data(data=chunk)))
                elif response.body:
                    self._write(self.conn.send(h11.Data(data=response.body)))
            self._write(self.conn.send(h11.EndOfMessage()))
        finally:
            if response.close is not None:
                response.close()

    def _send_and_close(self, response: Response) -> None:
        """An answer the gateway makes itself; the connection ends after it. Written by hand:
        after a protocol error or a timeout h11 may not be in a state to send a response."""
        status_line = f"HTTP/1.1 {response.status} {_REASONS.get(response.status, 'Error')}"
        head = [status_line, *(f"{k}: {v}" for k, v in response.headers)]
        head += [f"Content-Length: {len(response.body)}", "Connection: close", "", ""]
        with contextlib.suppress(OSError):
            self.sock.settimeout(5)
            self.sock.sendall("\r\n".join(head).encode("latin-1") + response.body)
            self._linger()

    def _linger(self) -> None:
        """Read and drop what the client is still sending (the rest of an oversized body)
        before closing: closing a socket with unread bytes sends a reset, which destroys the
        answer before a client still writing its body has read it."""
        deadline = Deadline.after(LINGER_SECONDS)
        dropped = 0
        self.sock.settimeout(LINGER_IDLE_SECONDS)
        while not deadline.expired() and dropped <= DRAIN_LIMIT_BYTES:
            data = self.sock.recv(_READ)
            if not data:
                return
            dropped += len(data)

    def _write(self, data: bytes | None) -> None:
        if data:
            self.sock.settimeout(30)
            self.sock.sendall(data)


_REASONS = {400: "Bad Request", 408: "Request Timeout", 411: "Length Required",
            413: "Content Too Large", 431: "Request Header Fields Too Large",
            501: "Not Implemented"}  # fmt: skip


def _content_length(headers: list[tuple[str, str]]) -> int | None:
    value = next((v for k, v in headers if k.lower() == "content-length"), None)
    return int(value) if value is not None else None  # h11 has checked it is digits


def _too_large() -> Response:
    return envelope(413, "too_large", f"request body over {MAX_BODY_BYTES} bytes")


def _protocol_error(err: h11.RemoteProtocolError) -> Response:
    status = err.error_status_hint
    if status == 501:  # a transfer coding other than chunked
        return envelope(501, "not_implemented", str(err))
    if status == 431:
        return envelope(431, "headers_too_large", "request headers too large")
    return envelope(400, "bad_request", f"malformed HTTP request: {err}")


class Gateway:
    """Serve `handler` on host:port until `stop()`; port 0 picks a free port."""

    def __init__(
        self,
        handler: Handler,
        host: str = "127.0.0.1",
        port: int = 8080,
        function_name: str = "api",
        timeout_ms: int | None = None,
    ) -> None:
        """`timeout_ms`: what each request's context starts from; by default the function's
        Timeout in template.yaml, so a handler's time runs out locally when it would on AWS."""
        from artemis_local.template import function_timeout_ms

        invocations_apart()  # a thread per connection: concurrent invocations of one handler
        self.timeout_ms = function_timeout_ms(function_name) if timeout_ms is None else timeout_ms
        self.handler = handler
        self.function_name = function_name
        self.routes: list[Route] = []
        # Called after the function answered a request that may have changed state (any
        # method but GET, HEAD, OPTIONS), e.g. so the serve plane drops cached aliases.
        self.after_write: list[Callable[[], None]] = []
        self._sock = socket.create_server((host, port), backlog=128)
        self.port: int = self._sock.getsockname()[1]
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._clients: set[socket.socket] = set()
        self._clients_lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def respond(self, request: Request) -> Response:
        host = request.header("host")
        for matches, serve in self.routes:
            if matches(host, request.path):
                return serve(request)
        event = build_event(
            request.method, request.target, request.headers, request.body, request.client
        )
        hint = _binary_route_hint(request)
        if hint is not None and len(json.dumps(event)) > LAMBDA_PAYLOAD_BYTES:
            message = (
                f"request over what one function invocation takes ({LAMBDA_PAYLOAD_BYTES} bytes)"
            )
            return envelope(413, "too_large", message, hint=hint)
        try:
            context = LocalContext.invocation(self.function_name, self.timeout_ms)
            result = self.handler(event, context)
            status, headers, cookies, raw = _decode_response(result)
        except Exception:  # what API Gateway answers when the function fails
            status, headers, cookies, raw = (
                500,
                {"content-type": "application/json"},
                [],
                b'{"message":"Internal Server Error"}',
            )
        if request.method not in ("GET", "HEAD", "OPTIONS"):
            for hook in self.after_write:
                hook()
        pairs = [*headers.items(), *(("Set-Cookie", c) for c in cookies)]
        return Response(status, pairs, raw)

    def start(self) -> Gateway:
        self._thread = threading.Thread(target=self._accept, name="gateway", daemon=True)
        self._thread.start()
        return self

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                sock, address = self._sock.accept()
            except OSError:
                return  # the listening socket was closed by stop()
            with self._clients_lock:
                self._clients.add(sock)
            threading.Thread(
                target=self._serve_client, args=(sock, address[0]), daemon=True
            ).start()

    def _serve_client(self, sock: socket.socket, client: str) -> None:
        try:
            _Connection(self, sock, client).run()
        finally:
            with self._clients_lock:
                self._clients.discard(sock)

    def stop(self) -> None:
        self._stopping.set()
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        self._sock.close()
        with self._clients_lock:
            for sock in self._clients:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=5)


def _binary_route_hint(request: Request) -> str | None:
    """For PUT /api/deploy/{id}/upload and .../bundle, the routes whose body is raw bytes
    (base64 in the event), the way out of Lambda's event limit; None for any other route."""
    parts = urlsplit(request.target).path.strip("/").split("/")
    if request.method == "PUT" and len(parts) == 4 and parts[:2] == ["api", "deploy"]:
        return _BINARY_ROUTE_HINTS.get(parts[3])
    return None
