"""The HTTP API Lambda (API Gateway HTTP API, payload v2). Routes parse, call one service
function and return; errors map to the envelope in artemis.http."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.utilities.typing import LambdaContext

from artemis import health, runtime
from artemis.errors import ArtemisError
from artemis.http import error_response, json_response, response_for
from artemis.observability import logger

# Validate configuration at cold start, so a bad value fails the init with its one line.
runtime.current()
app = APIGatewayHttpResolver()


@app.get("/healthz")
def healthz() -> Response[str]:
    return json_response(200, {"ok": True})


@app.get("/readyz")
def readyz() -> Response[str]:
    verdict = health.readiness(runtime.current())
    if not verdict.ready:
        return error_response(503, verdict.failed_code or "unavailable", "service not ready")
    body: dict[str, Any] = {"ready": True, "checks": verdict.checks}
    if verdict.degraded:
        body["degraded"] = True
    return json_response(200, body)


@app.exception_handler(ArtemisError)
def _domain_error(err: ArtemisError) -> Response[str]:
    return response_for(err)


@app.not_found
def _not_found(_: Exception) -> Response[str]:
    return error_response(404, "not_found", "no such route")


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
