"""No request a client chooses is answered with a 5xx while every dependency is healthy
(spec/api.md §2.8 and the brief: bad input gets a clear 4xx). Hypothesis throws random path
parameters, queries, bodies and credentials at every route over HTTP."""

import json
import re
from typing import Any
from urllib.parse import quote, urlencode

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from artemis.openapi import document
from tests.integration.api.conftest import DEV, OUTSIDER, STAFF, Api

ROUTES = [(method.upper(), path) for path, item in document()["paths"].items() for method in item]
PARAM = re.compile(r"\{(\w+)\}")

text = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=40)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=12,
)
FIELDS = ["site", "sha", "files", "mode", "deployId", "expectedCurrent", "expectNoCurrent", "to",
          "slug", "teams", "size", "path", "alias", "preview", "repository", "repositoryId",
          "workflow", "environment", "ref", "aliases", "url", "events"]  # fmt: skip
known_fields = st.fixed_dictionaries({}, optional={key: json_values | text for key in FIELDS})
# Nesting far deeper than any body needs (the decoder recurses per level) and integers longer
# than Python converts (4,300 digits), under every field a route reads. 30,000 levels stay
# under the 64 KiB limit of the small bodies.
deep_bodies = st.builds(
    lambda field, level, depth, closed: (
        f'{{"{field}": '.encode() + level[0] * depth + (level[1] * depth + b"}" if closed else b"")
    ),
    st.sampled_from(FIELDS),
    st.sampled_from([(b"[", b"]"), (b'{"a":', b"}"), (b'[{"path":', b"}]")]),
    st.integers(min_value=65, max_value=30_000),
    st.booleans(),
)
huge_numbers = st.builds(
    lambda field, digits, sign, inside: (
        (f'{{"files": [{{"path": "index.html", "{field}": ' if inside else f'{{"{field}": ')
        + sign
        + "7" * digits
        + ("}]}" if inside else "}")
    ).encode(),
    st.sampled_from(FIELDS),
    st.integers(min_value=4_301, max_value=20_000),
    st.sampled_from(["", "-"]),
    st.booleans(),
)
bodies = st.one_of(
    st.just(b""),
    st.binary(max_size=200),
    json_values.map(lambda v: json.dumps(v).encode()),
    known_fields.map(lambda v: json.dumps(v).encode()),
    deep_bodies,
    huge_numbers,
)
queries = st.dictionaries(
    st.sampled_from(["path", "purge", "since", "limit", "offset", "site", "actor", "action"])
    | text,
    text,
    max_size=3,
)
params = st.one_of(
    text, st.sampled_from(["www", "20260101-000000-abc1234", "production", "preview", ".."])
)


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    route=st.sampled_from(ROUTES),
    values=st.lists(params, min_size=3, max_size=3),
    query=queries,
    body=bodies,
    credential=st.sampled_from(["dev", "staff", "outsider", "session", "garbage", None]),
)
def test_no_client_input_gets_a_5xx(
    api: Api,
    route: tuple[str, str],
    values: list[str],
    query: dict[str, str],
    body: bytes,
    credential: str | None,
) -> None:
    if not api.sql("SELECT 1 FROM sites WHERE slug = 'www'"):
        api.register("www", ["web"])
    method, template = route
    names = iter(values)
    path = PARAM.sub(lambda _: quote(next(names), safe="") or "x", template)
    if query:
        path += "?" + urlencode(query)
    token: Any = {"dev": DEV, "staff": STAFF, "outsider": OUTSIDER, "garbage": "garbage token"}.get(
        credential or ""
    )
    if credential == "session":
        token = api.init("www")["jwt"]
    reply = api.call(method, path, token=token, body=body or None)
    assert reply.status < 500, (method, path, reply.status, reply.raw[:300])
    if reply.status >= 400:
        assert reply.code, reply.raw  # every 4xx carries the envelope with a code


JSON_ROUTES = [
    (method.upper(), path, op["security"])
    for path, item in document()["paths"].items()
    for method, op in item.items()
    if "application/json" in op.get("requestBody", {}).get("content", {})
]


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    route=st.sampled_from(JSON_ROUTES),
    body=st.one_of(deep_bodies, huge_numbers, known_fields.map(lambda v: json.dumps(v).encode())),
    token=st.sampled_from([DEV, STAFF]),
)
def test_no_hostile_body_gets_a_5xx_on_any_json_route(
    api: Api, route: tuple[str, str, list[dict[str, Any]]], body: bytes, token: str
) -> None:
    """Every JSON route, with a credential and path that pass its gate, so the body is parsed:
    deep nesting and huge numbers answer 4xx like any other malformed body."""
    if not api.sql("SELECT 1 FROM sites WHERE slug = 'www'"):
        api.register("www", ["web", "staff"])
    method, template, security = route
    deploy_id = "20260101-000000-abc1234"
    if security == [{"deploySession": []}]:
        session = api.init("www", token=token)
        token, deploy_id = session["jwt"], session["deployId"]
    path = template.format(
        site="www",
        slug="www",
        deploy_id=deploy_id,
        request_id="req_" + "0" * 20,
        rule_id="tr_" + "0" * 20,
    )
    reply = api.call(method, path, token=token, body=body)
    assert reply.status < 500, (method, path, reply.status, reply.raw[:300])
    assert reply.code, reply.raw[:300]


# A GitHub Actions token signed with the issuer's own key, its claims and header chosen by the
# caller: every claim of a real token, each replaced at will by any JSON value, or dropped.
ACTIONS_CLAIMS = ["iss", "aud", "sub", "jti", "iat", "nbf", "exp", "repository",
                  "repository_id", "job_workflow_ref", "ref", "event_name", "run_id",
                  "environment", "sha"]  # fmt: skip
claim_overrides = st.dictionaries(st.sampled_from(ACTIONS_CLAIMS), json_values, max_size=4)
HEADER_FIELDS = ["typ", "cty", "crit", "jku", "x5u"]


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    overrides=claim_overrides,
    header=st.dictionaries(st.sampled_from(HEADER_FIELDS), json_values, max_size=2),
    body=known_fields,
)
def test_no_signed_workflow_token_gets_a_5xx_at_init(
    api: Api, overrides: dict[str, Any], header: dict[str, Any], body: dict[str, Any]
) -> None:
    """Signed by the issuer, so every claim check runs: wrong types, huge numbers, nested
    values, missing claims; then the rules of a site that has some."""
    if not api.sql("SELECT 1 FROM trust_rules WHERE site = 'www'"):
        api.register("www", ["web"])
        rule = {"repository": "freeCodeCamp/example-site", "repositoryId": 100001,
                "workflow": ".github/workflows/deploy.yml", "aliases": ["preview", "pr-*"]}  # fmt: skip
        assert api.call("POST", "/api/site/www/trust", token=STAFF, json_body=rule).status == 201
    # a None drops the claim
    token = api.github.oidc.mint(overrides, audience="artemis", headers=header)
    reply = api.call("POST", "/api/deploy/init", token=token, json_body={"site": "www", **body})
    assert reply.status < 500, (overrides, reply.status, reply.raw[:300])
    assert reply.code is None or reply.code.startswith(("oidc_", "trust_", "bad_request",
                                                        "invalid_metadata", "too_large")), reply.raw  # fmt: skip
