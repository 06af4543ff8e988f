"""The API function's resolver: Powertools' HTTP API resolver with the routing rules Artemis
answers by, so that functions/api/app.py holds nothing but its routes.

- A route is registered with its promises (an artemis.route_docs.Doc): `routes()` hands each
  route over with them in Powertools' per-route fields, and artemis.openapi generates the
  OpenAPI document from those routes.
- Path parameters reach a route percent-decoded: API Gateway passes the raw path, and
  `/alias/%20Production` must reach the route as " Production".
- A fixed path (`/api/repo/templates`) is its own resource, even where a parameterised
  route's pattern matches its text too (`DELETE /api/repo/<id>`): another method on it answers
  405, never the parameterised route.
- An unknown path answers `404 not_found`; a known path with another method
  `405 method_not_allowed` with an `Allow` header; a domain error its own envelope; anything
  else `500 internal_error`, logged.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.api_gateway import Route
from aws_lambda_powertools.utilities.typing import LambdaContext

from artemis import invocation
from artemis.errors import ArtemisError, MethodNotAllowed, NotFound
from artemis.http import (
    begin_request,
    error_response,
    finish_response,
    header,
    query,
    raw_body,
    response_for,
)
from artemis.observability import logger
from artemis.route_docs import Doc

RouteFunction = Callable[..., Response[str]]


class ApiResolver(APIGatewayHttpResolver):
    def __init__(self) -> None:
        super().__init__()
        self._docs: dict[tuple[str, str], Doc] = {}
        self.exception_handler(ArtemisError)(self._domain_error)
        self.exception_handler(Exception)(self._unexpected)
        self.not_found(self._not_found)

    def add(self, method: str, path: str, doc: Doc) -> Callable[[RouteFunction], RouteFunction]:
        """Register `method path` with its promises; the function gets decoded parameters."""

        def register(fn: RouteFunction) -> RouteFunction:
            @functools.wraps(fn)
            def decoded(**params: str) -> Response[str]:
                fixed = self._fixed_path_methods(self.current_event.path) if params else []
                if fixed:
                    return _method_not_allowed(fixed)
                return fn(**{name: unquote(value) for name, value in params.items()})

            self.route(path, method, operation_id=doc.operation_id)(decoded)
            self._docs[(method, path)] = doc
            return fn

        return register

    def routes(self) -> list[Route]:
        """Every registered route, the fixed paths first, each carrying its promises in
        Powertools' per-route fields. Those are filled in here, for the document, rather than
        at registration: building them (and the response models they name) would cost every
        cold start for an answer only `make apidoc` needs."""
        routes = [*self._static_routes, *self._dynamic_routes]
        for route in routes:
            for name, value in (
                self._docs[(route.method, route.path)].route_options(route.path).items()
            ):
                setattr(route, name, value)
        return routes

    def handle(self, event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        """Answer one API Gateway event; every answer carries the request's X-Request-ID."""
        request_id = begin_request(event)
        logger.append_keys(request_id=request_id)
        with invocation.running(context):  # waits below (the site lock) end before Lambda does
            return finish_response(self.resolve(event, context), request_id)

    def remaining_seconds(self) -> float:
        """What is left of this invocation's time."""
        return float(self.lambda_context.get_remaining_time_in_millis()) / 1000.0

    def body(self) -> bytes:
        """The request's body, as sent (base64 decoded)."""
        return raw_body(self.current_event.raw_event)

    def query(self) -> dict[str, str]:
        """The query string, form-decoded."""
        return query(self.current_event.raw_event)

    def header(self, name: str) -> str | None:
        return header(self.current_event.raw_event, name)

    def _fixed_path_methods(self, path: str) -> list[str]:
        return sorted({r.method for r in self._static_routes if r.rule.match(path)})

    def _not_found(self, _: Exception) -> Response[str]:
        path = self.current_event.path
        allowed = self._fixed_path_methods(path) or sorted(
            {r.method for r in self._dynamic_routes if r.rule.match(path)}
        )
        if allowed:
            return _method_not_allowed(allowed)
        return response_for(NotFound("no such route"))

    @staticmethod
    def _domain_error(err: ArtemisError) -> Response[str]:
        if err.status >= 500:
            logger.warning("request failed", extra={"code": err.code, "cause": repr(err.__cause__)})
        return response_for(err)

    @staticmethod
    def _unexpected(_: Exception) -> Response[str]:
        logger.exception("unhandled exception")
        return error_response(500, "internal_error", "internal error")


def _method_not_allowed(allowed: list[str]) -> Response[str]:
    err = MethodNotAllowed()
    return error_response(err.status, err.code, err.message, headers={"Allow": ", ".join(allowed)})
