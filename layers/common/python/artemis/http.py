"""The HTTP edge shared by the API function: the error envelope and the one mapping from
domain exceptions to responses (spec/api.md §2.4)."""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools.event_handler import Response, content_types

from artemis.errors import ArtemisError


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> Response[str]:
    return Response(
        status_code=status,
        content_type=content_types.APPLICATION_JSON,
        body=json.dumps(body, separators=(",", ":")),
        headers=headers,
    )


def error_response(status: int, code: str, message: str, **extra: Any) -> Response[str]:
    """`{"error": {"code", "message"}}`; extra fields sit beside `error` (alias_drift …)."""
    return json_response(status, {"error": {"code": code, "message": message}, **extra})


def response_for(err: ArtemisError) -> Response[str]:
    return error_response(err.status, err.code, err.message, **err.extra)
