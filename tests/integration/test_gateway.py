"""The local gateway: HTTP in, an API Gateway HTTP API v2 event to the handler, HTTP out."""

import base64
import contextlib
import hashlib
import http.client
import json
import os
import select
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from artemis_local import gateway as gateway_module
from artemis_local.gateway import MAX_BODY_BYTES, Gateway


class Recorder:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        self.events.append(event)
        body = (
            base64.b64decode(event["body"])
            if event.get("isBase64Encoded")
            else (event.get("body") or "").encode()
        )
        return {
            "statusCode": 201,
            "headers": {
                "Content-Type": "application/octet-stream",
                "X-Digest": hashlib.sha256(body).hexdigest(),
            },
            "cookies": ["a=1"],
            "body": base64.b64encode(body).decode(),
            "isBase64Encoded": True,
        }


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def gateway(recorder: Recorder) -> Iterator[Gateway]:
    gw = Gateway(recorder, port=0).start()
    try:
        yield gw
    finally:
        gw.stop()


def request(
    gw: Gateway, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=30)
    conn.request(method, path, body=body, headers=headers or {})
    return conn.getresponse()


def test_a_4_mib_binary_body_round_trips_byte_for_byte(
    gateway: Gateway, recorder: Recorder
) -> None:
    # 4 MiB: base64-encoded it still fits the 6 MB Lambda event (5 MiB would not).
    payload = os.urandom(4 * 1024 * 1024)
    resp = request(
        gateway,
        "PUT",
        "/api/deploy/d1/upload?path=a%2Fb.bin",
        payload,
        {"Content-Type": "application/octet-stream"},
    )
    echoed = resp.read()
    assert resp.status == 201
    [event] = recorder.events
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == payload
    assert echoed == payload
    assert resp.getheader("X-Digest") == hashlib.sha256(payload).hexdigest()


def test_event_shape_is_payload_v2(gateway: Gateway, recorder: Recorder) -> None:
    resp = request(
        gateway,
        "POST",
        "/api/deploy/init?a=1&a=2&path=x+y",
        b'{"site":"www"}',
        {"Content-Type": "application/json", "Authorization": "Bearer t", "Cookie": "c=1; d=2"},
    )
    resp.read()
    [event] = recorder.events
    assert event["version"] == "2.0" and event["routeKey"] == "$default"
    assert event["rawPath"] == "/api/deploy/init"
    assert event["rawQueryString"] == "a=1&a=2&path=x+y"
    assert event["queryStringParameters"] == {"a": "1,2", "path": "x y"}
    assert event["headers"]["authorization"] == "Bearer t"
    assert event["cookies"] == ["c=1", "d=2"]
    assert event["body"] == '{"site":"www"}' and event["isBase64Encoded"] is False
    http_ctx = event["requestContext"]["http"]
    assert http_ctx["method"] == "POST" and http_ctx["path"] == "/api/deploy/init"
    assert http_ctx["sourceIp"] == "127.0.0.1"
    assert resp.getheader("Set-Cookie") == "a=1"


def test_oversized_body_is_413_with_the_envelope(gateway: Gateway, recorder: Recorder) -> None:
    resp = request(gateway, "PUT", "/x", b"", {"Content-Length": str(MAX_BODY_BYTES + 1)})
    assert resp.status == 413
    assert json.loads(resp.read())["error"]["code"] == "too_large"
    assert recorder.events == []


def test_a_failing_function_is_a_500_like_api_gateway() -> None:
    def broken(event: dict[str, Any], context: Any) -> dict[str, Any]:
        raise RuntimeError("bug")

    gw = Gateway(broken, port=0).start()
    try:
        resp = request(gw, "GET", "/healthz")
        assert resp.status == 500
        assert json.loads(resp.read()) == {"message": "Internal Server Error"}
    finally:
        gw.stop()


# --- HTTP edge cases, each over a raw socket -----------------------------------------------


def exchange(gw: Gateway, data: bytes, *, half_close: bool = False, timeout: float = 20) -> bytes:
    """Send `data`, then read until the gateway closes the connection."""
    with socket.create_connection(("127.0.0.1", gw.port), timeout=timeout) as sock:
        sock.sendall(data)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
        return received


def responses(raw: bytes) -> list[tuple[int, bytes]]:
    """(status, body) of every response in `raw` (bodies framed by Content-Length)."""
    out = []
    while raw:
        head, _, rest = raw.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        length = next(
            int(line.split(b":", 1)[1])
            for line in lines[1:]
            if line.lower().startswith(b"content-length:")
        )
        out.append((status, rest[:length]))
        raw = rest[length:]
    return out


def error_code(body: bytes) -> str:
    code: str = json.loads(body)["error"]["code"]
    return code


def test_a_chunked_body_is_decoded_and_nothing_is_left_over(
    gateway: Gateway, recorder: Recorder
) -> None:
    raw = exchange(
        gateway,
        b"PUT /api/deploy/d1/upload?path=a.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        b"Content-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"6\r\nhello \r\n5\r\nworld\r\n0\r\n\r\n",
    )
    [(status, body)] = responses(raw)  # one answer: no chunk bytes read as a second request
    assert (status, body) == (201, b"hello world")
    [event] = recorder.events
    assert base64.b64decode(event["body"]) == b"hello world"


@pytest.mark.parametrize("length", ["-1", "abc", "1e3", "3, 4"])
def test_a_bad_content_length_is_400_and_nothing_reaches_the_function(
    gateway: Gateway, recorder: Recorder, length: str
) -> None:
    raw = exchange(
        gateway,
        f"PUT /x HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\r\n".encode() + b"y" * 1024,
        half_close=True,  # as a client reading to EOF would be answered
    )
    [(status, body)] = responses(raw)
    assert (status, error_code(body)) == (400, "bad_request")
    assert recorder.events == []


def test_content_length_with_transfer_encoding_is_400(gateway: Gateway, recorder: Recorder) -> None:
    raw = exchange(
        gateway,
        b"PUT /x HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n0\r\n\r\n",
    )
    [(status, body)] = responses(raw)
    assert (status, error_code(body)) == (400, "bad_request")
    assert recorder.events == []


def test_an_unsupported_transfer_coding_is_refused_with_the_envelope(
    gateway: Gateway, recorder: Recorder
) -> None:
    raw = exchange(
        gateway, b"PUT /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
    )
    [(status, body)] = responses(raw)
    assert (status, error_code(body)) == (501, "not_implemented")
    assert recorder.events == []


def test_garbage_is_400_with_the_envelope(gateway: Gateway, recorder: Recorder) -> None:
    [(status, body)] = responses(exchange(gateway, b"\x16\x03\x01 hello\r\n\r\n"))
    assert (status, error_code(body)) == (400, "bad_request")


def test_headers_must_arrive_within_the_header_timeout(
    gateway: Gateway, recorder: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert gateway_module.HEADER_TIMEOUT_SECONDS == 10.0
    monkeypatch.setattr(gateway_module, "HEADER_TIMEOUT_SECONDS", 1.0)
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=20) as sock:
        sock.sendall(b"GET /x HTTP/1.1\r\nHost: x\r\n")
        # A slow client: a header line every 0.2 s, each well inside any idle timeout.
        received = b""
        with contextlib.suppress(OSError):
            for n in range(50):
                sock.sendall(f"X-Slow-{n}: 1\r\n".encode())
                ready, _, _ = select.select([sock], [], [], 0.2)
                if ready:
                    break
            while chunk := sock.recv(65536):
                received += chunk
    took = time.monotonic() - started
    [(status, body)] = responses(received)
    assert (status, error_code(body)) == (408, "request_timeout")
    assert took < 5, f"the connection was held for {took:.1f} s"
    assert recorder.events == []


@pytest.mark.parametrize("method", ["TRACE", "PURGE", "PROPFIND"])
def test_any_method_reaches_the_function_as_api_gateway_passes_it(
    gateway: Gateway, recorder: Recorder, method: str
) -> None:
    resp = request(gateway, method, "/api/whoami")
    resp.read()
    assert resp.status == 201  # the function's answer, not the server's own 501 page
    [event] = recorder.events
    assert event["requestContext"]["http"]["method"] == method


def test_a_body_over_the_limit_is_read_and_answered_413(
    gateway: Gateway, recorder: Recorder
) -> None:
    head = f"PUT /x HTTP/1.1\r\nHost: x\r\nContent-Length: {MAX_BODY_BYTES + 1}\r\n\r\n"
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=20) as sock:
        sock.sendall(head.encode())
        sent = 0
        with contextlib.suppress(OSError):  # the old gateway reset the connection
            while sent <= MAX_BODY_BYTES:
                sent += sock.send(b"z" * 65536)
        received = b""
        with contextlib.suppress(OSError):
            while chunk := sock.recv(65536):
                received += chunk
    assert sent > MAX_BODY_BYTES, "the gateway stopped reading the body"
    [(status, body)] = responses(received)
    assert (status, error_code(body)) == (413, "too_large")
    assert recorder.events == []


NODE_STREAMING_PUT = """
const [url, total, framing] = process.argv.slice(1);
const piece = new Uint8Array(64 * 1024);
let sent = 0;
const body = new ReadableStream({
  pull(controller) {
    if (sent >= Number(total)) { controller.close(); return; }
    const n = Math.min(piece.length, Number(total) - sent);
    sent += n;
    controller.enqueue(piece.subarray(0, n));
  },
});
const headers = { "content-type": "application/octet-stream" };
if (framing === "length") headers["content-length"] = total;
fetch(url, { method: "PUT", body, headers, duplex: "half" })
  .then(async (res) => console.log(JSON.stringify({ status: res.status, body: await res.text() })))
  .catch((err) => console.log(JSON.stringify({ error: String(err), cause: String(err.cause) })));
"""


@pytest.mark.parametrize("framing", ["length", "chunked"])
def test_node_fetch_streaming_an_oversized_body_receives_the_413(
    gateway: Gateway, recorder: Recorder, framing: str
) -> None:
    """universe-cli is a Node program: its fetch must read the 413, not a broken connection."""
    node = shutil.which("node")
    assert node is not None, "this test needs Node.js (>= 18, for the global fetch) on PATH"
    out = subprocess.run(
        [node, "-e", NODE_STREAMING_PUT, gateway.url + "/api/deploy/d1/upload?path=big.bin",
         str(MAX_BODY_BYTES + 1), framing],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result.get("status") == 413, result
    assert error_code(result["body"].encode()) == "too_large"
    assert recorder.events == []


def test_the_upload_route_takes_what_fits_one_lambda_invocation(
    gateway: Gateway, recorder: Recorder
) -> None:
    """About 4.5 MB of file base64-encodes to Lambda's 6 MB event limit: above it, AWS never
    calls the function, so the gateway answers 413 with the presigned route as the way out."""
    path = "/api/deploy/d1/upload?path=big.bin"
    binary = {"Content-Type": "application/octet-stream"}
    resp = request(gateway, "PUT", path, os.urandom(4_800_000), binary)
    body = json.loads(resp.read())
    assert resp.status == 413 and body["error"]["code"] == "too_large"
    assert "POST /api/deploy/{id}/uploads" in body["error"]["hint"]
    assert recorder.events == []
    resp = request(gateway, "PUT", path, os.urandom(4_500_000), binary)
    resp.read()
    assert resp.status == 201 and len(recorder.events) == 1
    # Another route keeps API Gateway's 10 MB body limit.
    resp = request(gateway, "POST", "/api/deploy/init", b"{" + b" " * 7_000_000 + b"}",
                   {"Content-Type": "application/json"})  # fmt: skip
    resp.read()
    assert resp.status == 201 and len(recorder.events) == 2


def test_the_bundle_route_takes_what_fits_one_lambda_invocation(
    gateway: Gateway, recorder: Recorder
) -> None:
    """A bundle is raw bytes too, base64 in the event: the same ceiling as the upload route,
    with a hint to split the bundle."""
    path = "/api/deploy/d1/bundle"
    tar = {"Content-Type": "application/x-tar"}
    resp = request(gateway, "PUT", path, os.urandom(4_800_000), tar)
    body = json.loads(resp.read())
    assert resp.status == 413 and body["error"]["code"] == "too_large"
    assert "split the files into several bundles" in body["error"]["hint"]
    assert recorder.events == []
    resp = request(gateway, "PUT", path, os.urandom(4_500_000), tar)
    resp.read()
    assert resp.status == 201 and len(recorder.events) == 1
    assert recorder.events[0]["isBase64Encoded"] is True


def test_keep_alive_carries_several_requests(gateway: Gateway, recorder: Recorder) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=10)
    for n in range(3):
        conn.request("POST", f"/x{n}", body=b"abc", headers={"Content-Type": "text/plain"})
        resp = conn.getresponse()
        assert (resp.status, resp.read()) == (201, b"abc")
    conn.close()
    assert [e["rawPath"] for e in recorder.events] == ["/x0", "/x1", "/x2"]


def test_each_request_gets_a_context_counting_down_from_the_template_timeout() -> None:
    """The API function has 29 s in template.yaml; the local gateway's context says so, and
    its remaining time runs down during the request as Lambda's does."""
    seen: list[tuple[int, int]] = []

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        first = context.get_remaining_time_in_millis()
        time.sleep(0.2)  # the handler's own work, which the context must count
        seen.append((first, context.get_remaining_time_in_millis()))
        return {"statusCode": 204}

    gw = Gateway(handler, port=0).start()
    try:
        assert gw.timeout_ms == 29_000
        assert request(gw, "GET", "/x").status == 204
        assert request(gw, "GET", "/y").status == 204  # a new invocation starts afresh
    finally:
        gw.stop()
    for first, later in seen:
        assert 28_000 < first <= 29_000
        assert 150 <= first - later < 2_000


def test_concurrent_invocations_never_see_each_others_event() -> None:
    """Powertools keeps the event being resolved on a class attribute, safe on Lambda where an
    environment runs one invocation at a time. The local gateway invokes its handler from a
    thread per connection: both requests are inside their route at once (a barrier), and each
    still reads its own path."""
    import threading

    from aws_lambda_powertools.event_handler import APIGatewayHttpResolver

    app = APIGatewayHttpResolver()
    both_inside = threading.Barrier(2, timeout=10)

    @app.get("/echo/<name>")
    def echo(name: str) -> dict[str, str]:
        both_inside.wait()
        return {"param": name, "path": app.current_event.path}

    gw = Gateway(lambda event, context: app.resolve(event, context), port=0).start()
    try:
        with ThreadPoolExecutor(max_workers=2) as pool:
            replies = list(pool.map(lambda n: request(gw, "GET", f"/echo/{n}"), ["a", "b"]))
    finally:
        gw.stop()
    bodies = [json.loads(r.read()) for r in replies]
    assert bodies == [{"param": "a", "path": "/echo/a"}, {"param": "b", "path": "/echo/b"}]
