"""The API's OpenAPI 3.1 document, generated from the routes its resolver registers.

Each route of functions/api/app.py carries its own operation (an artemis.route_docs.Doc, handed
to the resolver in the fields Powertools keeps per route: summary, description, tags, operation
id, security, responses, OpenAPI extensions). `build(routes)` turns those routes into the
document: each response's or request body's `model` becomes a component schema reference, and
the document-wide parts (conventions, tags, security schemes, the error-code catalogue) are
added.

The document is generated when the API changes (`make apidoc` writes openapi.json beside this
module, and docs/api.md from it), never on a cold start; `document()` reads that file, so
importing this module loads neither the services nor boto3 nor psycopg. A unit test generates
the document again from the live routes and fails while the file is stale.
"""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol, get_args, get_origin

OPENAPI_VERSION = "3.1.0"
DOCUMENT_FILE = Path(__file__).with_name("openapi.json")
SCHEMA_REF = "#/components/schemas/{model}"

Mode = Literal["validation", "serialization"]


class RouteLike(Protocol):
    """What the generator reads of a resolver's route (Powertools' `Route` has all of it)."""

    method: str
    openapi_path: str
    summary: str | None
    description: str | None
    tags: Sequence[str]
    operation_id: str | None
    security: Sequence[Mapping[str, Sequence[str]]] | None
    responses: Mapping[int, Mapping[str, Any]] | None
    openapi_extensions: Mapping[str, Any] | None
    include_in_schema: bool


def build(routes: Iterable[RouteLike]) -> dict[str, Any]:
    """The OpenAPI document of `routes` (a resolver's routes, in registration order)."""
    from artemis import route_docs  # the document-wide text: needed only here

    models: dict[type[Any], Mode] = {}
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        if not route.include_in_schema:
            continue
        op: dict[str, Any] = {
            "operationId": route.operation_id,
            "tags": list(route.tags),
            "summary": route.summary,
            "description": route.description,
            "security": [dict(s) for s in route.security or []],
            **copy.deepcopy(dict(route.openapi_extensions or {})),
        }
        if "requestBody" in op:
            op["requestBody"] = _resolve(op["requestBody"], models, "validation")
        op["responses"] = {
            str(status): _resolve(copy.deepcopy(dict(response)), models, "serialization")
            for status, response in sorted((route.responses or {}).items())
        }
        paths.setdefault(route.openapi_path, {})[route.method.lower()] = op
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "Artemis API",
            "version": _package_version(),
            "summary": "Self-hosted deploy proxy for static sites",
            "description": route_docs.INFO_DESCRIPTION,
        },
        "tags": [{"name": name, "description": text} for name, text in route_docs.TAGS],
        "paths": paths,
        "components": {
            "schemas": _component_schemas(models),
            "securitySchemes": route_docs.SECURITY_SCHEMES,
            "parameters": {"RequestId": route_docs.REQUEST_ID_PARAMETER},
            "headers": {
                "RequestId": {
                    "description": "the request's id (echoed or minted); on every response",
                    "schema": {"type": "string"},
                }
            },
        },
        "x-error-codes": {
            code: {"status": status, "message": message}
            for code, (status, message) in route_docs.error_catalogue().items()
        },
    }


def _resolve(part: dict[str, Any], models: dict[type[Any], Mode], mode: Mode) -> dict[str, Any]:
    """A response or request body whose media types name a `model`: the schema reference."""
    for media_type, media in part.get("content", {}).items():
        if "model" not in media:
            continue
        model = media.pop("model")
        if get_origin(model) is list:
            (item,) = get_args(model)
            models[item] = mode
            schema: dict[str, Any] = {"type": "array", "items": _ref(item)}
        else:
            models[model] = mode
            schema = _ref(model)
        part["content"][media_type] = {"schema": schema, **media}
    return part


def _ref(model: type[Any]) -> dict[str, str]:
    return {"$ref": SCHEMA_REF.format(model=model.__name__)}


def _component_schemas(models: Mapping[type[Any], Mode]) -> dict[str, Any]:
    from pydantic.json_schema import models_json_schema

    from artemis import route_docs

    _, top = models_json_schema(list(models.items()), by_alias=True, ref_template=SCHEMA_REF)
    schemas: dict[str, Any] = _tidy(top.get("$defs", {}))
    for model, fields in route_docs.BODY_SCHEMAS.items():
        for name, schema in fields.items():
            prop = schemas[model]["properties"][name]
            # a required field's parser default only lets the route name its own error
            required = name in route_docs.ROUTE_REQUIRED.get(model, ())
            keep = ("description",) if required else ("default", "description")
            kept = {k: prop[k] for k in keep if k in prop}
            schemas[model]["properties"][name] = {**copy.deepcopy(schema), **kept}
    for model, notes in route_docs.BODY_NOTES.items():
        for name, text in notes.items():
            schemas[model]["properties"][name]["description"] = text
    for model, names in route_docs.ROUTE_REQUIRED.items():
        declared = schemas[model].get("required", [])
        schemas[model]["required"] = [*declared, *(n for n in names if n not in declared)]
    for model, rule in route_docs.BODY_RULES.items():
        schemas[model].update(copy.deepcopy(rule))
    return dict(sorted(schemas.items()))


def _tidy(schema: Any) -> Any:
    """Drop pydantic's generated property titles and the `default: null` of omitted fields."""
    if isinstance(schema, list):
        return [_tidy(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "properties" and isinstance(value, dict):
            out[key] = {
                name: {
                    k: _tidy(v)
                    for k, v in prop.items()
                    if k != "title" and not (k == "default" and v is None)
                }
                for name, prop in value.items()
            }
        else:
            out[key] = _tidy(value)
    return out


def _package_version() -> str:
    from importlib import metadata

    try:
        return metadata.version("artemis")
    except metadata.PackageNotFoundError:  # the Lambda layer is not an installed distribution
        return "0.0.0+unknown"


def render(doc: Mapping[str, Any]) -> str:
    """The document as openapi.json holds it."""
    return json.dumps(doc, indent=1, ensure_ascii=False, sort_keys=False) + "\n"


@functools.cache
def _cached() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DOCUMENT_FILE.read_text(encoding="utf-8"))
    return loaded


def document() -> dict[str, Any]:
    """The OpenAPI 3.1 document (read once per process; callers get their own copy)."""
    return copy.deepcopy(_cached())
