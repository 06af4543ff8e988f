"""artemis.openapi against the API it describes: the document is generated from the routes of
functions/api/app.py (each carrying its artemis.route_docs promises), agrees with artemis.errors
and artemis.bodies, and docs/api.md is generated from it (artemis_local.apidoc)."""

from __future__ import annotations

import importlib.util
import inspect
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from types import ModuleType
from typing import Any, get_args

import pytest

from artemis import (
    bodies,
    deploy_ids,
    errors,
    openapi,
    request_headers,
    route_docs,
    runtime,
    site_names,
)
from artemis_local.apidoc import render_markdown, routes_document
from artemis_local.functions import FUNCTIONS_DIR, REPO_ROOT, LocalContext
from tests.conftest import base_env

METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}
SESSION_ROUTES = {
    ("PUT", "/api/deploy/{deploy_id}/upload"),
    ("PUT", "/api/deploy/{deploy_id}/bundle"),
    ("POST", "/api/deploy/{deploy_id}/uploads"),
    ("POST", "/api/deploy/{deploy_id}/digests"),
    ("POST", "/api/deploy/{deploy_id}/finalize"),
}
OPEN_ROUTES = {
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/api/openapi.json"),
    ("GET", "/metrics"),
}
CODE_IN_TEXT = re.compile(r"^\* `([a-z0-9_]+)`:", re.MULTILINE)  # the error descriptions' list


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return openapi.document()


@pytest.fixture
def api_module(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """functions/api/app.py imported as Lambda would (its import runs runtime.current())."""
    for name, value in base_env().items():
        monkeypatch.setenv(name, value)
    # The repo-request routes exist only with the GitHub App configured: turn it on.
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()  # fmt: skip
    app = {"GH_APP_ID": "1", "GH_APP_INSTALLATION_ID": "2", "GH_APP_PRIVATE_KEY": pem,
           "REPO_APPROVE_AUTHZ_TEAM": "approvers"}  # fmt: skip
    for name, value in app.items():
        monkeypatch.setenv(name, value)
    runtime.reset()
    name = "artemis_fn_api_openapi_test"
    spec = importlib.util.spec_from_file_location(name, FUNCTIONS_DIR / "api" / "app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(name, None)
        runtime.reset()


def operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method in METHODS:
                yield method.upper(), path, op


def app_routes(module: ModuleType) -> dict[tuple[str, str], Any]:
    app = module.app
    routes = [*app._static_routes, *app._dynamic_routes]
    return {(r.method.upper(), re.sub(r"<(\w+)>", r"{\1}", r.path)): r.func for r in routes}


def known_codes() -> dict[str, int]:
    """code → status: a class per code in artemis.errors, plus the documented dependency codes."""
    codes = {
        value.code: value.status
        for value in vars(errors).values()
        if isinstance(value, type)
        and issubclass(value, errors.ArtemisError)
        and not issubclass(value, errors.DependencyError)
    }
    for code, (status, _) in route_docs.DEPENDENCY_CODES.items():
        assert code not in codes, f"{code} is both an error class and a dependency code"
        codes[code] = status
    return codes


def resolve(doc: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = doc
    for part in ref[2:].split("/"):
        node = node[part]
    return node


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from refs(item)


# --- the document is OpenAPI ------------------------------------------------------------------


def test_the_document_validates_as_openapi_3_1(doc: dict[str, Any]) -> None:
    import openapi_spec_validator as validator  # a dev dependency: never skipped

    assert doc["openapi"].startswith("3.1.")
    validator.validate(doc)


def test_the_document_is_well_formed(doc: dict[str, Any]) -> None:
    """What the validator checks that matters most, so the tier still guards it without it."""
    assert doc["openapi"] == "3.1.0"
    assert doc["info"]["title"] and doc["info"]["version"]
    assert "servers" not in doc
    for ref in set(refs(doc)):
        resolve(doc, ref)
    ids = [op["operationId"] for _, _, op in operations(doc)]
    assert len(ids) == len(set(ids))
    schemes = set(doc["components"]["securitySchemes"])
    tags = {tag["name"] for tag in doc["tags"]}
    for method, path, op in operations(doc):
        where = f"{method} {path}"
        assert op["summary"] and op["description"], where
        assert set(op["tags"]) <= tags, where
        for requirement in op["security"]:
            assert set(requirement) <= schemes, where
        declared = {p["name"] for p in op["parameters"] if p.get("in") == "path"}
        assert declared == set(re.findall(r"\{(\w+)\}", path)), where
        assert any(status.startswith("2") for status in op["responses"]), where
        for status, response in op["responses"].items():
            assert re.fullmatch(r"[1-5][0-9][0-9]", status), where
            assert response["description"], where


def test_the_document_is_built_once_and_handed_out_as_a_copy() -> None:
    assert openapi._cached() is openapi._cached()
    first = openapi.document()
    first["paths"].clear()
    assert openapi.document()["paths"]


def test_importing_it_pulls_in_neither_boto3_nor_psycopg() -> None:
    code = (
        "import sys, artemis.openapi as o; o.document(); "
        "print([m for m in ('boto3', 'botocore', 'psycopg', 'psycopg_pool') if m in sys.modules])"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO_ROOT
    )
    assert done.stdout.strip() == "[]"


# --- the document matches the app -------------------------------------------------------------


def test_every_app_route_is_documented_and_nothing_else(
    doc: dict[str, Any], api_module: ModuleType
) -> None:
    registered = set(app_routes(api_module))
    documented = {(method, path) for method, path, _ in operations(doc)}
    assert registered, "no routes found on the app"
    assert documented - registered == set(), "documented but not routed"
    assert registered - documented == set(), "routed but not documented"


def test_the_served_document_is_the_one_the_routes_generate() -> None:
    """openapi.json (what the API serves) is built from the routes: stale means `make apidoc`."""
    assert routes_document() == openapi.document(), "stale: run `make apidoc`"


def test_each_resolver_route_is_in_the_document_with_its_responses_and_error_codes(
    doc: dict[str, Any], api_module: ModuleType
) -> None:
    catalogue = route_docs.error_catalogue()
    routes = api_module.app.routes()
    assert len(routes) == len(list(operations(doc)))
    for route in routes:
        op = doc["paths"][route.openapi_path][route.method.lower()]
        where = f"{route.method} {route.openapi_path}"
        assert op["operationId"] == route.operation_id, where
        assert (op["summary"], op["tags"]) == (route.summary, route.tags), where
        assert set(op["responses"]) == {str(status) for status in route.responses}, where
        codes_of_route: list[str] = []
        for status, response in route.responses.items():
            documented = op["responses"][str(status)]
            assert documented.get("x-error-codes") == response.get("x-error-codes"), where
            for code in response.get("x-error-codes", []):
                assert catalogue[code][0] == status, f"{where}: {code}"
                codes_of_route.append(code)
            for media, content in response.get("content", {}).items():
                model = content.get("model")
                if model is not None:  # a model becomes a reference to its component schema
                    (item,) = get_args(model) or (model,)  # list[Model], or Model
                    name = item.__name__
                    assert name in json.dumps(documented["content"][media]["schema"]), where
                    assert name in doc["components"]["schemas"], where
        assert "internal_error" in codes_of_route, where


def test_each_route_documents_the_credential_its_handler_checks(
    doc: dict[str, Any], api_module: ModuleType
) -> None:
    handlers = app_routes(api_module)
    for method, path, op in operations(doc):
        source = inspect.getsource(handlers[(method, path)])
        if (method, path) in SESSION_ROUTES:
            assert "_session(" in source
            assert op["security"] == [{"deploySession": []}], path
        elif (method, path) in OPEN_ROUTES:
            assert "_session(" not in source and "_caller(" not in source
            assert op["security"] == [], path
        elif (method, path) == ("POST", "/api/deploy/init"):  # a person, or a workflow run
            assert "_publisher(" in source
            assert op["security"] == [{"githubToken": []}, {"githubActions": []}], path
        else:
            assert "_caller(" in source
            assert op["security"] == [{"githubToken": []}], path


def test_the_openapi_route_serves_the_document(doc: dict[str, Any], api_module: ModuleType) -> None:
    event = json.loads((REPO_ROOT / "events" / "api-healthz.json").read_text())
    event["rawPath"] = event["requestContext"]["http"]["path"] = "/api/openapi.json"
    result = api_module.handler(event, LocalContext("api"))
    assert result["statusCode"] == 200
    assert json.loads(result["body"]) == doc


def test_the_query_parameters_are_documented(doc: dict[str, Any]) -> None:
    def query(method: str, path: str) -> dict[str, bool]:
        op = doc["paths"][path][method]
        return {p["name"]: p["required"] for p in op["parameters"] if p.get("in") == "query"}

    assert query("put", "/api/deploy/{deploy_id}/upload") == {"path": True}
    assert query("delete", "/api/site/{slug}") == {"purge": False}
    assert set(query("get", "/api/audit")) == {
        "site",
        "actor",
        "action",
        "since",
        "limit",
        "offset",
    }


def test_the_upload_route_documents_the_body_ceiling(doc: dict[str, Any]) -> None:
    op = doc["paths"]["/api/deploy/{deploy_id}/upload"]["put"]
    assert list(op["requestBody"]["content"]) == ["application/octet-stream"]
    for fact in ("10 MB", "6 MB", "base64", "4.5 MB", "~4 MB", "/api/deploy/{deploy_id}/uploads"):
        assert fact in op["description"], fact


def test_the_site_delete_documents_both_answers(doc: dict[str, Any]) -> None:
    responses = doc["paths"]["/api/site/{slug}"]["delete"]["responses"]
    assert "content" in responses["200"] and "content" not in responses["204"]


# --- bodies, responses, errors ----------------------------------------------------------------


def test_request_bodies_are_the_models_of_artemis_bodies(doc: dict[str, Any]) -> None:
    seen = set()
    for method, path, op in operations(doc):
        media = op.get("requestBody", {}).get("content", {}).get("application/json")
        if media is None:
            continue
        name = media["schema"]["$ref"].rsplit("/", 1)[-1]
        model = getattr(bodies, name)
        expected = model.model_json_schema(by_alias=True)
        component = doc["components"]["schemas"][name]
        assert list(component["properties"]) == list(expected["properties"]), (method, path)
        assert set(expected.get("required", [])) <= set(component.get("required", []))
        limit = op["requestBody"]["x-max-bytes"]
        assert limit in (bodies.MANIFEST_LIMIT, bodies.SMALL_LIMIT)
        seen.add(name)
    assert seen == {m.__name__ for m in route_docs.REQUEST_MODELS}
    for model, notes in route_docs.BODY_NOTES.items():
        assert set(notes) <= set(doc["components"]["schemas"][model]["properties"]), model


def test_examples_match_their_schemas(doc: dict[str, Any]) -> None:
    import jsonschema  # installed with openapi-spec-validator

    checked = 0
    for method, path, op in operations(doc):
        for status, response in op["responses"].items():
            media = response.get("content", {}).get("application/json", {})
            if "example" not in media:
                continue
            root = {"components": doc["components"], **media["schema"]}
            jsonschema.Draft202012Validator(root).validate(media["example"])
            ref = media["schema"].get("$ref") or media["schema"].get("items", {}).get("$ref")
            rows = media["example"] if isinstance(media["example"], list) else [media["example"]]
            props = resolve(doc, ref)["properties"]
            for row in rows:
                assert set(row) <= set(props), (method, path, status)
            checked += 1
    assert checked >= 18


def test_every_error_code_exists(doc: dict[str, Any]) -> None:
    known = known_codes()
    for method, path, op in operations(doc):
        for status, response in op["responses"].items():
            if status.startswith("2"):
                continue
            listed = response["x-error-codes"]
            assert listed, (method, path, status)
            in_text = set(CODE_IN_TEXT.findall(response["description"]))
            assert in_text == set(listed), (method, path, status)
            for code in listed:
                assert code in known, f"{method} {path}: unknown error code {code}"
                assert known[code] == int(status), f"{method} {path}: {code} is {known[code]}"
        assert (
            "500" in op["responses"] and "internal_error" in op["responses"]["500"]["x-error-codes"]
        )
    assert set(doc["x-error-codes"]) == set(known)


def test_dependency_codes_are_raised_by_the_code() -> None:
    """A documented dependency code must be spelled somewhere in artemis as a string literal."""
    package = REPO_ROOT / "layers" / "common" / "python" / "artemis"
    source = "\n".join(
        p.read_text() for p in sorted(package.rglob("*.py")) if p.name != "route_docs.py"
    )
    for code in route_docs.DEPENDENCY_CODES:
        assert f'"{code}"' in source, f"{code} is documented but nothing raises it"


def test_patterns_keep_their_meaning() -> None:
    for pattern, python in (
        (route_docs.DEPLOY_ID_PATTERN, deploy_ids.DEPLOY_ID_RE),
        (route_docs.SLUG_PATTERN, site_names.SLUG_RE),
        (route_docs.TEAM_PATTERN, site_names.TEAM_RE),
        (route_docs.SHA_PATTERN, deploy_ids.SHA_RE),
        (route_docs.REQUEST_ID_PATTERN, request_headers.REQUEST_ID_RE),
        (route_docs.REPO_NAME_PATTERN, site_names.REPO_NAME_RE),
    ):
        compiled = re.compile(pattern, re.ASCII)
        for sample in ("20260420-141522-abc1234", "www", "a-b", "staff", "x" * 70, "A_1", "-a", ""):
            assert bool(compiled.search(sample)) == bool(python.fullmatch(sample)), (
                pattern,
                sample,
            )


# --- docs/api.md ------------------------------------------------------------------------------


def test_docs_api_md_is_generated_from_the_document(doc: dict[str, Any]) -> None:
    path = REPO_ROOT / "docs" / "api.md"
    expected = render_markdown(doc)
    assert path.read_text() == expected, (
        "docs/api.md is stale: run `.venv/bin/artemis-admin apidoc > docs/api.md`"
    )


def test_docs_api_md_has_a_section_per_route(doc: dict[str, Any]) -> None:
    text = render_markdown(doc)
    for method, path, op in operations(doc):
        assert f"### `{method} {path}`" in text
        for response in op["responses"].values():
            for code in response.get("x-error-codes", []):
                assert f"`{code}`" in text
