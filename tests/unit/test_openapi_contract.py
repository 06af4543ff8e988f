"""Every constraint the OpenAPI document declares is the one the server enforces: for each
declared pattern or schema, hypothesis compares the document's verdict with the rule the
service applies (so a generator that trusts the document, schemathesis in CI, never sends
"valid" input the server refuses, nor "invalid" input it accepts). Also: `/metrics` is
declared as text, and `createdBy` visibility is described as the code decides it."""

from __future__ import annotations

import re
from typing import Any

import jsonschema
from hypothesis import example, given
from hypothesis import strategies as st

from artemis import deploy_ids, deploy_mode, openapi, route_docs, site_names, upload_paths
from artemis.keys import MARKER_NAME
from artemis.services import deploys

DOC = openapi.document()
SCHEMAS = DOC["components"]["schemas"]


def _valid(schema: dict[str, Any], value: Any) -> bool:
    """The document's verdict, with ECMA's `$` (the very end: Python's also allows a trailing
    newline, which no pattern here means to admit)."""
    root = {"components": DOC["components"], **_exact(schema)}
    return bool(jsonschema.Draft202012Validator(root).is_valid(value))


def _exact(schema: Any) -> Any:
    if isinstance(schema, dict):
        return {
            k: (v[:-1] + r"\Z" if k == "pattern" and v.endswith("$") else _exact(v))
            for k, v in schema.items()
        }
    if isinstance(schema, list):
        return [_exact(v) for v in schema]
    return schema


def _param(method: str, path: str, name: str) -> dict[str, Any]:
    for param in DOC["paths"][path][method]["parameters"]:
        if param.get("name") == name:
            schema: dict[str, Any] = param["schema"]
            return schema
    raise KeyError(name)


texts = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=30)
spaces = st.sampled_from([" ", "\t", "\n", "\x1c", "\x85", "\xa0", "\u2003", "\u3000", "\ufeff"])


@given(st.one_of(texts, st.lists(st.sampled_from(["a", ".", "..", "", "é", "/", "\\", "\x00",
                                                   "_artemis_meta.json", "x.y", "\n"]),
                                 max_size=6).map("".join)))  # fmt: skip
@example(MARKER_NAME)
@example("a/" + MARKER_NAME)
@example("index.html\n")
def test_upload_path_schema_is_the_path_rule(path: str) -> None:
    declared = route_docs.UPLOAD_PATH_SCHEMA
    assert _valid(declared, path) == (upload_paths.upload_path_error(path) is None), repr(path)
    query = _param("put", "/api/deploy/{deploy_id}/upload", "path")
    assert query == declared
    file_path = SCHEMAS["UploadFile"]["properties"]["path"]
    assert _valid(file_path, path) == _valid(declared, path)


words = st.sampled_from(["preview", "production", "Preview", "PRODUCTION", "prod", "", "true",
                         "False", "TRUE", "tru", "yes"])  # fmt: skip
padded = st.builds(lambda a, w, b: a + w + b, st.lists(spaces).map("".join), words,
                   st.lists(spaces).map("".join))  # fmt: skip


@given(st.one_of(texts, padded))
def test_mode_patterns_are_parse_mode(value: str) -> None:
    path_mode = _param("get", "/api/site/{site}/alias/{mode}", "mode")
    accepted = deploy_mode.parse_mode(value) is not None
    assert _valid(path_mode, value) == (accepted and value.strip(deploy_mode._WHITESPACE) != "")
    body_mode = SCHEMAS["FinalizeBody"]["properties"]["mode"]
    assert _valid(body_mode, value) == accepted
    assert _valid(body_mode, None)


@given(st.one_of(texts, padded))
def test_purge_pattern_is_parse_purge(value: str) -> None:
    from artemis.errors import BadRequest
    from artemis.services.deletion import parse_purge

    try:
        parse_purge(value)
        accepted = True
    except BadRequest:
        accepted = False
    assert _valid(_param("delete", "/api/site/{slug}", "purge"), value) == accepted


ids = st.builds(lambda a, i, b: a + i + b, st.lists(spaces).map("".join),
                st.sampled_from(["20260420-141522-abc1234", "20260420-141522-", "", "x"]),
                st.lists(spaces).map("".join))  # fmt: skip


@given(st.one_of(texts, ids))
def test_promote_and_rollback_ids_are_stripped_deploy_ids(value: str) -> None:
    stripped = value.strip()
    rollback = SCHEMAS["RollbackBody"]["properties"]["to"]
    assert _valid(rollback, value) == deploy_ids.is_deploy_id(stripped)
    promote = SCHEMAS["PromoteBody"]["properties"]["deployId"]
    assert _valid(promote, value) == (stripped == "" or deploy_ids.is_deploy_id(stripped))


def test_python_space_class_is_str_isspace() -> None:
    declared = re.compile(f"[{route_docs.PY_SPACE}]")
    for code in range(0x3001):
        char = chr(code)
        assert bool(declared.fullmatch(char)) == char.isspace(), hex(code)


@given(st.one_of(texts, st.sampled_from(sorted(site_names.DEFAULT_RESERVED_SLUGS))))
def test_slug_schemas_are_the_slug_rules(slug: str) -> None:
    register = SCHEMAS["RegisterBody"]["properties"]["slug"]
    assert _valid(register, slug) == site_names.is_slug(slug)
    assert _valid(_param("patch", "/api/site/{slug}", "slug"), slug) == site_names.is_slug(slug)
    # DELETE may remove an existing reserved site
    delete = _param("delete", "/api/site/{slug}", "slug")
    assert _valid(delete, slug) == site_names.is_slug(slug, frozenset())


def test_body_constraints_are_declared() -> None:
    uploads = SCHEMAS["UploadsBody"]["properties"]["files"]
    assert (uploads["minItems"], uploads["maxItems"]) == (1, deploys.MAX_PRESIGN_FILES)
    finalize = SCHEMAS["FinalizeBody"]["properties"]["files"]
    assert _valid(finalize, ["index.html"]) and not _valid(finalize, ["a.html"])
    assert not _valid(finalize, []) and not _valid(finalize, None)
    teams = SCHEMAS["TeamsBody"]["properties"]["teams"]
    assert not _valid(teams, []) and not _valid(teams, ["Bad"]) and _valid(teams, ["web"])
    init = SCHEMAS["InitBody"]["properties"]
    assert not _valid(init["site"], "") and not _valid(init["sha"], "a b")
    repo = SCHEMAS["RepoCreateBody"]["properties"]
    assert not _valid(repo["visibility"], "internal") and not _valid(repo["name"], "-x")
    assert not _valid(repo["description"], "x" * 351)
    assert not _valid(SCHEMAS["RejectBody"]["properties"]["reason"], "x" * 351)
    assert _param("delete", "/api/site/{site}/deploys/{deploy_id}", "deploy_id")["pattern"] == (
        route_docs.DEPLOY_ID_PATTERN
    )


def test_request_id_header_is_not_declared_as_refused() -> None:
    """Any X-Request-ID is accepted (a malformed one is replaced, not refused)."""
    header = DOC["components"]["parameters"]["RequestId"]
    assert header["schema"] == {"type": "string"}


def test_metrics_is_declared_as_text() -> None:
    content = DOC["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert list(content) == ["text/plain"]


def test_created_by_visibility_is_described_as_the_code_decides() -> None:
    """The site's teams and the audit team see `createdBy` (registry.site_json callers)."""
    sites = DOC["paths"]["/api/sites"]["get"]["description"]
    assert "site's teams" in sites and "AUDIT_READ_AUTHZ_TEAM" in sites
    assert "only" not in sites.split("`createdBy`", 1)[1].split(".")[0]
    row = SCHEMAS["SiteRow"]["properties"]["createdBy"]["description"]
    assert "site's teams" in row and "AUDIT_READ_AUTHZ_TEAM" in row
    patch = DOC["paths"]["/api/site/{slug}"]["patch"]["description"]
    assert "audit-team rule" not in patch and "site's teams" in patch
