"""The HTTP edge of the API function: request ids, raw bodies, form-decoded queries, the error
envelope, and the one mapping from domain exceptions to responses."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from contextvars import ContextVar
from typing import Any

from aws_lambda_powertools.event_handler import Response, content_types
from pydantic import BaseModel

from artemis import query_strings, request_headers
from artemis.errors import ArtemisError

REQUEST_ID_HEADER = "X-Request-ID"
current_request_id: ContextVar[str] = ContextVar("current_request_id", default="")


def begin_request(event: dict[str, Any]) -> str:
    """Accept the caller's X-Request-ID only if it is well-formed, else mint one: the id is
    echoed, logged and stored in audit rows, so a caller must not choose arbitrary text."""
    headers = event.get("headers") or {}
    inbound = next((v for k, v in headers.items() if k.lower() == "x-request-id"), None)
    request_id = request_headers.request_id(inbound)
    current_request_id.set(request_id)
    return request_id


def finish_response(result: dict[str, Any], request_id: str) -> dict[str, Any]:
    """Every response carries X-Request-ID, errors included."""
    headers = dict(result.get("headers") or {})
    headers[REQUEST_ID_HEADER] = request_id
    result["headers"] = headers
    return result


def raw_body(event: dict[str, Any]) -> bytes:
    body = event.get("body") or ""
    if event.get("isBase64Encoded"):
        return base64.b64decode(body)
    return body.encode() if isinstance(body, str) else bytes(body)


def query(event: dict[str, Any]) -> dict[str, str]:
    """Form decoding of the raw query (`+` is a space; a pair with a raw `;` is dropped)."""
    return query_strings.form_query(event.get("rawQueryString") or "")


def header(event: dict[str, Any], name: str) -> str | None:
    wanted = name.lower()
    return next((v for k, v in (event.get("headers") or {}).items() if k.lower() == wanted), None)


JsonBody = BaseModel | Sequence[BaseModel] | Mapping[str, Any]
"""A route's answer: a response model, a list of them, or a plain mapping (errors, health)."""


def _json_data(body: JsonBody) -> Any:
    """The one conversion of response models to JSON data. `mode="json"` leaves out the
    omitted fields; the text itself is still written by json.dumps, so the bytes on the wire
    (key order, separators, escaping) are what the dict-built answers produced."""
    if isinstance(body, BaseModel):
        return body.model_dump(mode="json")
    if isinstance(body, list | tuple):
        return [_json_data(item) for item in body]
    return body


def json_response(
    status: int, body: JsonBody, headers: dict[str, str] | None = None
) -> Response[str]:
    return Response(
        status_code=status,
        content_type=content_types.APPLICATION_JSON,
        body=json.dumps(_json_data(body), separators=(",", ":")),
        headers=headers,
    )


def no_content() -> Response[str]:
    return Response(status_code=204, body="")


def error_response(
    status: int, code: str, message: str, detail: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None, **extra: Any,
) -> Response[str]:  # fmt: skip
    """`{"error": {"code", "message", …detail}, …extra}` (alias_drift's `site`/`current` sit
    beside `error`; verify_failed's `missing` inside it)."""
    error = {"code": code, "message": message, **(detail or {})}
    return json_response(status, {"error": error, **extra}, headers=headers)


def response_for(err: ArtemisError) -> Response[str]:
    return error_response(err.status, err.code, err.message, err.detail, **err.extra)
