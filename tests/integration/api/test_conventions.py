"""HTTP conventions over the wire (spec/api.md §2, §3.2, §3.7): the envelope, request ids,
unknown routes and methods, bearer parsing, and GitHub outcomes mapped to statuses."""

import re
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.integration.api.conftest import DEV, OUTSIDER, STAFF, UPLOAD_MAX_BYTES, Api


def test_g5_wellformed_request_id_is_echoed(api: Api) -> None:
    reply = api.call("GET", "/healthz", headers={"X-Request-ID": "ci-run:42.a_b-c"})
    assert reply.headers["x-request-id"] == "ci-run:42.a_b-c"


@pytest.mark.parametrize("inbound", ["has space", "x" * 129, "semi;colon", "é"])
def test_g5_malformed_request_id_is_replaced(api: Api, inbound: str) -> None:
    reply = api.call("GET", "/healthz", headers={"X-Request-ID": inbound})
    assert re.fullmatch(r"[0-9a-f]{24}", reply.headers["x-request-id"])


def test_every_response_has_a_request_id_errors_included(api: Api) -> None:
    reply = api.call("GET", "/api/whoami")
    assert reply.status == 401
    assert re.fullmatch(r"[0-9a-f]{24}", reply.headers["x-request-id"])


def test_unknown_route_is_404_envelope(api: Api) -> None:
    reply = api.call("GET", "/api/nope", token=DEV)
    assert (reply.status, reply.code) == (404, "not_found")
    assert (
        api.call("GET", "/api/sites/", token=DEV).status == 404
    )  # a trailing slash is another path


def test_wrong_method_is_405_with_allow(api: Api) -> None:
    reply = api.call("GET", "/api/deploy/init", token=DEV)
    assert (reply.status, reply.code) == (405, "method_not_allowed")
    assert reply.headers["allow"] == "POST"
    reply = api.call("PUT", "/api/site/www", token=STAFF)
    assert reply.status == 405
    assert reply.headers["allow"] == "DELETE, PATCH"


def test_a_fixed_path_allows_only_its_own_methods(api: Api) -> None:
    """`/api/site/register` also matches `/api/site/<slug>`'s pattern, but it is its own
    resource: its 405 names POST only."""
    reply = api.call("OPTIONS", "/api/site/register", token=STAFF)
    assert (reply.status, reply.code) == (405, "method_not_allowed")
    assert reply.headers["allow"] == "POST"
    reply = api.call("DELETE", "/api/site/register", token=STAFF)  # not `DELETE /api/site/<slug>`
    assert (reply.status, reply.code) == (405, "method_not_allowed")
    assert reply.headers["allow"] == "POST"
    assert api.call("GET", "/api/sites", token=STAFF).status == 200


@pytest.mark.parametrize(
    "header",
    [None, "", "Bearer", "Bearer ", "bearer local-dev-token", "Token local-dev-token",
     "Bearer  local-dev-token", "Bearer\tlocal-dev-token", "Bearer local dev"],
)  # fmt: skip
def test_malformed_authorization_is_missing_bearer(api: Api, header: str | None) -> None:
    headers = {} if header is None else {"Authorization": header}
    reply = api.call("GET", "/api/whoami", headers=headers)
    assert (reply.status, reply.code) == (401, "missing_bearer")
    assert reply.body["error"]["message"]


def test_unknown_token_is_unauthenticated(api: Api) -> None:
    reply = api.call("GET", "/api/whoami", token="not-a-real-token")
    assert (reply.status, reply.code) == (401, "unauthenticated")


def test_a_session_jwt_on_a_bearer_route_is_unauthenticated(api: Api) -> None:
    api.register("www", ["web"])
    session = api.init("www")
    assert api.call("GET", "/api/whoami", token=session["jwt"]).code == "unauthenticated"


@pytest.mark.parametrize(
    ("status", "headers", "code", "http_status"),
    [
        (429, {}, "rate_limited", 429),
        (403, {"X-RateLimit-Remaining": "0"}, "rate_limited", 429),
        (403, {"Retry-After": "30"}, "rate_limited", 429),
        (502, {}, "upstream_unavailable", 503),
        (418, {}, "upstream_unavailable", 503),  # G-4: unexpected is not "bad token"
        (403, {}, "unauthenticated", 401),
        (404, {}, "unauthenticated", 401),
    ],
)
def test_g4_identity_outcomes_map_to_statuses(
    api: Api, status: int, headers: dict[str, str], code: str, http_status: int
) -> None:
    api.github.fail("/user", status, headers=headers)
    reply = api.call("GET", "/api/whoami", token=OUTSIDER)
    assert (reply.status, reply.code) == (http_status, code)


def test_g4_membership_probe_outcomes(api: Api) -> None:
    api.register("www", ["web"])
    api.github.fail("/orgs/freeCodeCamp/teams/web/memberships/", 403)
    assert api.call("GET", "/api/site/www/deploys", token=DEV).code == "insufficient_scope"
    api.github.clear_faults()
    api.github.fail("/orgs/freeCodeCamp/teams/web/memberships/", 500)
    assert api.call("GET", "/api/site/www/deploys", token=DEV).code == "upstream_unavailable"
    api.github.clear_faults()
    api.github.fail("/orgs/freeCodeCamp/teams/web/memberships/", 429)
    assert api.call("GET", "/api/site/www/deploys", token=DEV).code == "rate_limited"


def test_malformed_json_is_bad_request(api: Api) -> None:
    reply = api.call("POST", "/api/deploy/init", token=DEV, body=b"{not json")
    assert (reply.status, reply.code) == (400, "bad_request")
    reply = api.call("POST", "/api/deploy/init", token=DEV, body=b"[1,2]")
    assert reply.code == "bad_request"
    reply = api.call("POST", "/api/deploy/init", token=DEV, json_body={"site": 5, "sha": "abc"})
    assert reply.code == "bad_request"
    reply = api.call("POST", "/api/deploy/init", token=DEV, body=b"")
    assert reply.code == "bad_request"


def test_trailing_bytes_after_the_json_value_are_ignored(api: Api) -> None:
    api.register("www", ["web"])
    reply = api.call(
        "POST", "/api/deploy/init", token=DEV, body=b'{"site":"www","sha":"abc1234"} trailing'
    )
    assert reply.status == 200, reply.raw


def test_small_json_bodies_are_limited_to_64_kib(api: Api) -> None:
    reply = api.call(
        "POST", "/api/site/register", token=STAFF, body=b'{"slug":"' + b"a" * 70000 + b'"}'
    )
    assert (reply.status, reply.code) == (413, "too_large")


def test_manifest_bodies_are_limited_to_8_mib(api: Api) -> None:
    api.register("www", ["web"])
    big = b'{"site":"www","sha":"abc1234","files":["' + b"a" * (8 * 1024 * 1024) + b'"]}'
    assert api.call("POST", "/api/deploy/init", token=DEV, body=big).code == "too_large"
    under = b'{"site":"www","sha":"abc1234","files":["' + b"a" * (7 * 1024 * 1024) + b'"]}'
    assert api.call("POST", "/api/deploy/init", token=DEV, body=under).status == 200


def test_healthz_needs_no_credentials(api: Api) -> None:
    reply = api.call("GET", "/healthz")
    assert (reply.status, reply.body) == (200, {"ok": True})


def test_openapi_document_is_served(api: Api) -> None:
    reply = api.call("GET", "/api/openapi.json")
    assert reply.status == 200
    assert reply.body["openapi"].startswith("3.")
    assert "/api/deploy/{deploy_id}/finalize" in reply.body["paths"]


@pytest.mark.parametrize("method", ["TRACE", "PURGE"])
def test_any_method_gets_the_envelope(api: Api, method: str) -> None:
    reply = api.call(method, "/api/whoami", token=STAFF)
    assert reply.headers["content-type"] == "application/json"
    assert (reply.status, reply.code) == (405, "method_not_allowed")
    reply = api.call(method, "/nowhere")
    assert (reply.status, reply.code) == (404, "not_found")


def test_a_file_over_upload_max_bytes_names_the_presigned_route(api: Api) -> None:
    api.register("www", ["web"])
    session = api.init("www")
    reply = api.upload(
        session, "big.bin", b"x" * (UPLOAD_MAX_BYTES + 1), "application/octet-stream"
    )
    assert (reply.status, reply.code) == (413, "too_large")
    assert "POST /api/deploy/{id}/uploads" in reply.body["error"]["hint"]


def test_concurrent_requests_each_get_their_own_answer(api: Api) -> None:
    """The local gateway invokes the API function concurrently, as Lambda does, in separate
    execution environments: the resolver of one request never sees another's event."""
    api.register("www", ["web"])
    session = api.init("www")

    def upload_all(worker: int) -> list[tuple[str, Any]]:
        paths = [f"w{worker}/{n}.js" for n in range(40)]
        return [(p, api.upload(session, p, p.encode(), "text/javascript").body) for p in paths]

    with ThreadPoolExecutor(max_workers=4) as pool:
        answers = [a for done in pool.map(upload_all, range(4)) for a in done]
    assert [body["received"] for _, body in answers] == [path for path, _ in answers]
