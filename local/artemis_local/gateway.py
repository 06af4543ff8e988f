"""An HTTP server on 127.0.0.1 that turns each request into an API Gateway HTTP API (payload
v2) event, calls a Lambda handler, and writes its response back — the same handler code that
runs behind API Gateway. Binary bodies travel base64-encoded, as API Gateway sends them."""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from artemis_local.functions import Handler, LocalContext

# API Gateway HTTP APIs accept payloads up to 10 MB.
MAX_BODY_BYTES = 10 * 1024 * 1024
_TOO_LARGE = b'{"error":{"code":"too_large","message":"request body over 10 MiB"}}'
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
    method: str, target: str, headers: dict[str, str], body: bytes, source_ip: str
) -> dict[str, Any]:
    """The API Gateway HTTP API v2 event for one request."""
    parts = urlsplit(target)
    lowered: dict[str, str] = {}
    for name, value in headers.items():
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


class _Server(ThreadingHTTPServer):
    # Python's default listen backlog is 5: a burst of concurrent clients (CI fanning out
    # uploads, 32 concurrent promotes in the tests) would see connection resets.
    request_queue_size = 128


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

        gateway = self

        class RequestHandler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                gateway.handle(self)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _serve

            def log_message(self, format: str, *args: Any) -> None:
                return  # the handler logs; keep the console readable

        self.handler = handler
        self.function_name = function_name
        self.timeout_ms = function_timeout_ms(function_name) if timeout_ms is None else timeout_ms
        self.server = _Server((host, port), RequestHandler)
        self.server.daemon_threads = True
        self._thread: threading.Thread | None = None
        self.routes: list[
            tuple[Callable[[str, str], bool], Callable[[BaseHTTPRequestHandler], None]]
        ] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    def handle(self, request: BaseHTTPRequestHandler) -> None:
        host = request.headers.get("host", "")
        for matches, serve in self.routes:
            if matches(host, request.path):
                serve(request)
                return
        length = int(request.headers.get("content-length") or 0)
        if length > MAX_BODY_BYTES:
            self._write(request, 413, {"content-type": "application/json"}, [], _TOO_LARGE)
            request.close_connection = True
            return
        body = request.rfile.read(length) if length else b""
        event = build_event(
            request.command,
            request.path,
            dict(request.headers.items()),
            body,
            request.client_address[0],
        )
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
        self._write(request, status, headers, cookies, raw)

    @staticmethod
    def _write(
        request: BaseHTTPRequestHandler,
        status: int,
        headers: dict[str, str],
        cookies: list[str],
        raw: bytes,
    ) -> None:
        request.send_response(status)
        for name, value in headers.items():
            if name.lower() != "content-length":
                request.send_header(name, value)
        for cookie in cookies:
            request.send_header("Set-Cookie", cookie)
        request.send_header("Content-Length", str(len(raw)))
        request.end_headers()
        if request.command != "HEAD":
            request.wfile.write(raw)

    def start(self) -> Gateway:
        self._thread = threading.Thread(
            target=self.server.serve_forever, name="gateway", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
