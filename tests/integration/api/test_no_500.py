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
known_fields = st.fixed_dictionaries(
    {},
    optional={
        key: json_values | text
        for key in ["site", "sha", "files", "mode", "deployId", "expectedCurrent",
                    "expectNoCurrent", "to", "slug", "teams"]
    },
)  # fmt: skip
bodies = st.one_of(
    st.just(b""),
    st.binary(max_size=200),
    json_values.map(lambda v: json.dumps(v).encode()),
    known_fields.map(lambda v: json.dumps(v).encode()),
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
