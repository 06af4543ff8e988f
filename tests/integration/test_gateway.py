"""The local gateway: HTTP in, an API Gateway HTTP API v2 event to the handler, HTTP out."""

import base64
import hashlib
import http.client
import json
import os
import time
from collections.abc import Iterator
from typing import Any

import pytest

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
    host, port = gw.server.server_address[:2]
    conn = http.client.HTTPConnection(str(host), int(port), timeout=30)
    conn.request(method, path, body=body, headers=headers or {})
    return conn.getresponse()


def test_a_5_mib_binary_body_round_trips_byte_for_byte(
    gateway: Gateway, recorder: Recorder
) -> None:
    payload = os.urandom(5 * 1024 * 1024)
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
