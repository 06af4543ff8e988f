"""Aliases over the wire (spec/api.md §8, §3.9, §2.4, §5, §7.6; G-1, G-8, G-32, G-35): the
alias read, promote, rollback, the expectedCurrent guard, the site lock and release tracking.
Every call goes over HTTP to the real handler; faults are injected only at the fake GitHub and
at the S3 boundary (a missing bucket). Not reachable this way: r2_head_failed, r2_put_failed,
index_write_failed (G-10) and unlock failures (G-9), which need a failing HEAD/PUT or Postgres."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import pytest

from artemis.db.lock import site_lock
from artemis.keys import Dirname
from artemis_local.functions import LocalContext
from artemis_local.gateway import build_event
from tests.integration.api.conftest import BUCKET, DEV, OUTSIDER, STAFF, Api, Reply

SITE = "www"
DIR = "www.example.org"
DIRNAME = Dirname(DIR)
PROD_URL = "https://www.example.org"
PREVIEW_URL = "https://www.preview.example.org"
MEMBERSHIP = "/orgs/freeCodeCamp/teams/web/memberships/"
INDEX = {"index.html": b"<h1>ok</h1>"}


# --- helpers ---------------------------------------------------------------------------------


def _sha() -> str:
    """A sha whose first 7 characters are unique, so same-second deploys never collide (G-13)."""
    return uuid.uuid4().hex[:7] + "feed"


def _rid() -> str:
    return f"alias-test-{uuid.uuid4().hex}"


def _absent_id() -> str:
    """A well-formed deploy id that no test ever creates."""
    return f"20200101-000000-{uuid.uuid4().hex[:7]}"


def _deploy(api: Api, mode: str = "preview") -> str:
    return api.deploy(SITE, sha=_sha(), mode=mode)


def _prefix(deploy_id: str) -> str:
    return f"{DIR}/deploys/{deploy_id}/"


def _raw_deploy(api: Api, files: dict[str, bytes], *, marker: bool) -> str:
    """Objects written straight into the bucket, bypassing init/upload/finalize."""
    deploy_id = f"20250101-000000-{uuid.uuid4().hex[:7]}"
    for path, data in files.items():
        api.rt.bucket.put(_prefix(deploy_id) + path, data, "text/html")
    if marker:
        api.rt.bucket.put(
            _prefix(deploy_id) + "_artemis_meta.json",
            b'{"site":"www","deployId":"%s","mode":"preview","finalizedAt":"2025-01-01T00:00:00Z"}'
            % deploy_id.encode(),
            "application/json",
        )
    return deploy_id


def _promote(
    api: Api,
    body: Any = None,
    *,
    raw: bytes | None = None,
    token: str = DEV,
    rid: str | None = None,
    site: str = SITE,
) -> Reply:
    headers = {"X-Request-ID": rid} if rid else None
    return api.call(
        "POST", f"/api/site/{site}/promote", token=token, json_body=body, body=raw, headers=headers
    )


def _rollback(
    api: Api,
    body: Any = None,
    *,
    raw: bytes | None = None,
    token: str = DEV,
    rid: str | None = None,
    site: str = SITE,
) -> Reply:
    headers = {"X-Request-ID": rid} if rid else None
    return api.call(
        "POST", f"/api/site/{site}/rollback", token=token, json_body=body, body=raw, headers=headers
    )


def _read(api: Api, mode: str, *, token: str | None = DEV, site: str = SITE) -> Reply:
    return api.call("GET", f"/api/site/{site}/alias/{mode}", token=token)


def _production(api: Api) -> str | None:
    return api.alias_object(DIR, "production")


def _production_row(api: Api) -> str | None:
    rows = api.sql("SELECT deploy_id FROM aliases WHERE site = %s AND name = 'production'", [DIR])
    return rows[0][0] if rows else None


def _outbox(api: Api) -> list[tuple[Any, ...]]:
    return api.sql("SELECT topic, payload FROM outbox ORDER BY id")


def _audit(api: Api, rid: str) -> list[tuple[Any, ...]]:
    return api.sql(
        "SELECT action, site, deploy_id, outcome, actor, detail FROM audit_log WHERE request_id = %s",
        [rid],
    )


def _released_at(api: Api, deploy_id: str) -> datetime | None:
    rows = api.sql(
        "SELECT alias_released_at FROM deploys WHERE site = %s AND id = %s", [DIR, deploy_id]
    )
    assert rows, f"no deploys row for {deploy_id}"
    value: datetime | None = rows[0][0]
    return value


def _production_updated_at(api: Api) -> datetime:
    rows = api.sql("SELECT updated_at FROM aliases WHERE site = %s AND name = 'production'", [DIR])
    value: datetime = rows[0][0]
    return value


def _expect(reply: Reply, status: int, code: str | None = None) -> None:
    assert reply.status == status, (reply.status, reply.raw)
    if code is not None:
        assert reply.code == code, reply.raw
        assert reply.body["error"]["message"]


@contextmanager
def _bucket_gone(api: Api) -> Iterator[None]:
    """An S3 fault: the (empty) bucket is deleted, so every bucket call fails; restored after."""
    client = api.rt.bucket.client
    client.delete_bucket(Bucket=BUCKET)
    try:
        yield
    finally:
        client.create_bucket(Bucket=BUCKET)


@pytest.fixture
def site(api: Api) -> Api:
    api.register(SITE, ["web"])
    return api


# --- GET /api/site/{site}/alias/{mode} (§8.2) --------------------------------------------------


@pytest.mark.parametrize("mode", ["staging", "prod", "productionx", "preview-", "PRODUCTION!"])
def test_alias_read_bad_mode_is_400_before_authorization(site: Api, mode: str) -> None:
    # OUTSIDER would be refused by the gate; the mode is checked first, even for unknown sites.
    _expect(_read(site, mode, token=OUTSIDER), 400, "bad_request")
    _expect(_read(site, mode, token=OUTSIDER, site="unregistered"), 400, "bad_request")


def test_alias_read_mode_is_lower_cased(site: Api) -> None:
    preview = _deploy(site, "preview")
    _expect(_promote(site, {"deployId": preview}), 200)
    for raw, mode, url in [
        ("PRODUCTION", "production", PROD_URL),
        ("Preview", "preview", PREVIEW_URL),
    ]:
        reply = _read(site, raw)
        _expect(reply, 200)
        assert reply.body == {"site": SITE, "mode": mode, "deployId": preview, "url": url}


def test_alias_read_mode_is_trimmed(site: Api) -> None:
    """§8.2 step 1: the mode segment is trimmed. Whitespace in a path segment travels
    percent-encoded; API Gateway HTTP APIs hand the function a decoded `rawPath`, while the
    local gateway passes it still encoded, so this one request is the event API Gateway would
    send, given to the same handler the gateway runs."""
    deploy_id = _deploy(site, "production")
    gateway = site.system.gateway
    assert gateway is not None
    event = build_event(
        "GET",
        f"/api/site/{SITE}/alias/production",
        {"Authorization": f"Bearer {DEV}"},
        b"",
        "127.0.0.1",
    )
    decoded = f"/api/site/{SITE}/alias/ Production  "
    event["rawPath"] = event["requestContext"]["http"]["path"] = decoded
    result = gateway.handler(event, LocalContext("api"))
    assert result["statusCode"] == 200, result
    body = json.loads(result["body"])
    assert body == {"site": SITE, "mode": "production", "deployId": deploy_id, "url": PROD_URL}


def test_alias_read_unregistered_site_is_site_unauthorized(site: Api) -> None:
    _expect(_read(site, "production", site="nosuchsite"), 403, "site_unauthorized")
    _expect(_read(site, "production", site="WWW"), 403, "site_unauthorized")  # slug as given


def test_alias_read_non_member_is_user_unauthorized(site: Api) -> None:
    _deploy(site, "production")
    _expect(_read(site, "production", token=OUTSIDER), 403, "user_unauthorized")


def test_alias_read_without_bearer_is_missing_bearer(site: Api) -> None:
    _expect(_read(site, "production", token=None), 401, "missing_bearer")
    reply = site.call(
        "GET", f"/api/site/{SITE}/alias/production", headers={"Authorization": "token " + DEV}
    )
    _expect(reply, 401, "missing_bearer")


def test_alias_read_bad_token_is_unauthenticated(site: Api) -> None:
    _expect(_read(site, "production", token="not-a-real-token"), 401, "unauthenticated")


@pytest.mark.parametrize(
    ("status", "headers", "http_status", "code"),
    [
        (429, {}, 429, "rate_limited"),
        (403, {"X-RateLimit-Remaining": "0"}, 429, "rate_limited"),
        (500, {}, 503, "upstream_unavailable"),
        (502, {}, 503, "upstream_unavailable"),
    ],
)
def test_alias_read_membership_probe_failures(
    site: Api, status: int, headers: dict[str, str], http_status: int, code: str
) -> None:
    # Nothing has probed DEV's membership yet (a positive answer would be cached).
    site.github.fail(MEMBERSHIP, status, headers=headers)
    _expect(_read(site, "production"), http_status, code)
    site.github.clear_faults()
    _expect(_read(site, "production"), 404, "no_alias")  # failures are not cached


def test_alias_read_missing_alias_is_no_alias(site: Api) -> None:
    _expect(_read(site, "production"), 404, "no_alias")
    _expect(_read(site, "preview"), 404, "no_alias")
    _deploy(site, "preview")
    _expect(_read(site, "production"), 404, "no_alias")


def test_alias_read_whitespace_body_is_no_alias(site: Api) -> None:
    site.rt.bucket.put_alias(f"{DIR}/production", " \n\t ")
    _expect(_read(site, "production"), 404, "no_alias")


def test_alias_read_200_shape_and_trimmed_body(site: Api) -> None:
    preview = _deploy(site, "preview")
    reply = _read(site, "preview")
    _expect(reply, 200)
    assert reply.body == {"site": SITE, "mode": "preview", "deployId": preview, "url": PREVIEW_URL}
    site.rt.bucket.put_alias(f"{DIR}/production", f"  {preview}\n")  # readers trim whitespace
    reply = _read(site, "production")
    assert reply.body == {"site": SITE, "mode": "production", "deployId": preview, "url": PROD_URL}


def test_alias_read_bucket_failure_is_r2_get_failed(site: Api) -> None:
    with _bucket_gone(site):
        _expect(_read(site, "production"), 502, "r2_get_failed")


@pytest.mark.usefixtures("short_lock_wait")
def test_alias_read_takes_no_lock(site: Api) -> None:
    deploy_id = _deploy(site, "production")
    with site_lock(site.database_url, DIRNAME):
        reply = _read(site, "production")  # a locking read would answer 409 after 1 s
    _expect(reply, 200)
    assert reply.body["deployId"] == deploy_id


# --- the per-site gate on the mutating routes (§3.9) ----------------------------------------


@pytest.mark.parametrize("route", ["promote", "rollback"])
def test_mutations_are_gated_per_site(site: Api, route: str) -> None:
    # Written straight to the bucket: no API call may probe (and cache) DEV's membership first.
    target = _raw_deploy(site, INDEX, marker=True)
    body = {"deployId": target} if route == "promote" else {"to": target}
    path = f"/api/site/{SITE}/{route}"
    _expect(site.call("POST", path, json_body=body), 401, "missing_bearer")
    _expect(
        site.call("POST", path, token="not-a-real-token", json_body=body), 401, "unauthenticated"
    )
    _expect(
        site.call("POST", f"/api/site/other/{route}", token=DEV, json_body=body),
        403,
        "site_unauthorized",
    )
    _expect(site.call("POST", path, token=OUTSIDER, json_body=body), 403, "user_unauthorized")
    # The gate (step 1) comes before the body (step 2): a bad body still answers 403.
    _expect(site.call("POST", path, token=OUTSIDER, body=b"{not json"), 403, "user_unauthorized")
    site.github.fail(MEMBERSHIP, 429)
    _expect(site.call("POST", path, token=DEV, json_body=body), 429, "rate_limited")
    site.github.clear_faults()
    site.github.fail(MEMBERSHIP, 503)
    _expect(site.call("POST", path, token=DEV, json_body=body), 503, "upstream_unavailable")
    site.github.clear_faults()
    assert _production(site) is None and _production_row(site) is None
    # STAFF passes the registry gate but is not on the site's team (web).
    _expect(site.call("POST", path, token=STAFF, json_body=body), 403, "user_unauthorized")
    _expect(site.call("POST", path, token=DEV, json_body=body), 200)
    assert _production(site) == target


# --- promote (§8.3) --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b'{"deployId":"latest"}',
        b'{"deployId":"20260420-141522-"}',
        b'{"deployId":"2026042-141522-abc1234"}',
        b'{"deployId":"20260420-141522-abc/1234"}',
        b'{"deployId":"../20260420-141522-abc1234"}',
        b'{"deployId":"20260420-141522-' + b"a" * 65 + b'"}',
        b'{"deployId":5}',
        b'{"expectedCurrent":["x"]}',
        b'{"expectNoCurrent":"yes"}',
        b"{not json",
        b"[1,2]",
        b'"20260420-141522-abc1234"',
    ],
)
def test_promote_malformed_body_is_400(site: Api, raw: bytes) -> None:
    _deploy(site, "preview")
    _expect(_promote(site, raw=raw), 400, "bad_request")
    assert _production(site) is None


def test_promote_body_over_64_kib_is_413(site: Api) -> None:
    preview = _deploy(site, "preview")
    raw = b'{"deployId":"%s","pad":"%s"}' % (preview.encode(), b"x" * (64 * 1024))
    _expect(_promote(site, raw=raw), 413, "too_large")
    assert _production(site) is None


def test_promote_deploy_id_is_trimmed(site: Api) -> None:
    preview = _deploy(site, "preview")
    reply = _promote(site, {"deployId": f"  {preview}\t"})
    _expect(reply, 200)
    assert reply.body == {"url": PROD_URL, "deployId": preview}
    assert _production(site) == preview


def test_g32_bare_promote_takes_preview(site: Api) -> None:
    first = _deploy(site, "preview")
    reply = _promote(site)  # no body at all: the legacy CLI
    _expect(reply, 200)
    assert reply.body == {"url": PROD_URL, "deployId": first}
    assert _production(site) == first and _production_row(site) == first
    second = _deploy(site, "preview")
    for raw in (b"{}", b"  \n"):  # an empty object and a blank body are bare too
        reply = _promote(site, raw=raw)
        _expect(reply, 200)
        assert reply.body["deployId"] == second
    assert _production(site) == second and _production_row(site) == second


def test_bare_promote_with_a_guard_still_takes_preview(site: Api) -> None:
    current = _deploy(site, "production")
    preview = _deploy(site, "preview")
    reply = _promote(site, {"expectedCurrent": current})
    _expect(reply, 200)
    assert reply.body["deployId"] == preview and _production(site) == preview


def test_bare_promote_without_preview_is_no_preview(site: Api) -> None:
    _expect(_promote(site), 422, "no_preview")
    current = _deploy(site, "production")  # production only: still no preview
    before = _outbox(site)
    _expect(_promote(site), 422, "no_preview")
    assert _production(site) == current and _production_row(site) == current
    assert _outbox(site) == before


def test_bare_promote_with_empty_preview_body_is_no_preview(site: Api) -> None:
    site.rt.bucket.put_alias(f"{DIR}/preview", "   \n")
    _expect(_promote(site), 422, "no_preview")
    assert _production(site) is None


@pytest.mark.parametrize(
    "body",
    ["not-a-deploy-id", "deploys/20260420-141522-abc1234", "../other.example.org/deploys/x",
     "20260420-141522-abc1234/../../x", "20260420-141522-"],
)  # fmt: skip
def test_g8_malformed_preview_alias_is_no_preview(site: Api, body: str) -> None:
    current = _deploy(site, "production")
    # Make the bytes the malformed id would name look deployable, so only G-8 can refuse it.
    for path, data in {"index.html": b"x", "_artemis_meta.json": b"{}"}.items():
        site.rt.bucket.put(f"{DIR}/deploys/{body}/{path}", data, "text/html")
    site.rt.bucket.put_alias(f"{DIR}/preview", body)
    before = _outbox(site)
    _expect(_promote(site), 422, "no_preview")
    assert _production(site) == current and _production_row(site) == current
    assert _outbox(site) == before


def test_bare_promote_trims_the_preview_body(site: Api) -> None:
    preview = _deploy(site, "preview")
    site.rt.bucket.put_alias(f"{DIR}/preview", f"\n {preview} \n")
    reply = _promote(site)
    _expect(reply, 200)
    assert reply.body["deployId"] == preview
    assert _production(site) == preview  # the bare id, not the padded body


@pytest.mark.parametrize(
    "files",
    [
        {"app.js": b"1"},
        {"assets/index.html": b"x"},
        {"Index.html": b"x"},
        {"index.htm": b"x"},
        {"INDEX.HTML": b"x"},
    ],
)
def test_promote_target_without_root_index_is_missing_index(
    site: Api, files: dict[str, bytes]
) -> None:
    current = _deploy(site, "production")
    target = _raw_deploy(site, files, marker=True)
    rid = _rid()
    _expect(_promote(site, {"deployId": target}, rid=rid), 422, "missing_index")
    assert _production(site) == current and _production_row(site) == current
    assert _audit(site, rid) == []


def test_promote_of_an_empty_prefix_is_missing_index(site: Api) -> None:
    """Promote does not check that the prefix holds objects (§8.5): only the index."""
    _expect(_promote(site, {"deployId": _absent_id()}), 422, "missing_index")


def test_promote_index_is_checked_before_the_marker(site: Api) -> None:
    target = _raw_deploy(site, {"app.js": b"1"}, marker=False)
    _expect(_promote(site, {"deployId": target}), 422, "missing_index")


def test_g8_promote_of_an_unfinalized_deploy_is_deploy_incomplete(site: Api) -> None:
    current = _deploy(site, "production")
    session = site.init(SITE, sha=_sha())  # uploaded through the API, never finalized
    for path, data in {"index.html": b"<h1>wip</h1>", "app.js": b"1"}.items():
        _expect(site.upload(session, path, data), 200)
    before = _outbox(site)
    rid = _rid()
    _expect(_promote(site, {"deployId": session["deployId"]}, rid=rid), 422, "deploy_incomplete")
    raw = _raw_deploy(site, INDEX, marker=False)  # written straight to the bucket
    _expect(_promote(site, {"deployId": raw}), 422, "deploy_incomplete")
    site.rt.bucket.put_alias(f"{DIR}/preview", raw)  # nor through the preview alias
    _expect(_promote(site), 422, "deploy_incomplete")
    assert _production(site) == current and _production_row(site) == current
    assert _outbox(site) == before
    assert _audit(site, rid) == []


def test_promote_guard_mismatch_is_alias_drift(site: Api) -> None:
    current = _deploy(site, "production")
    target = _deploy(site, "preview")
    before = _outbox(site)
    rid = _rid()
    reply = _promote(site, {"deployId": target, "expectedCurrent": _absent_id()}, rid=rid)
    _expect(reply, 409, "alias_drift")
    assert reply.body["site"] == SITE and reply.body["current"] == current
    assert set(reply.body) == {"error", "site", "current"}
    assert set(reply.body["error"]) == {"code", "message"}
    assert _production(site) == current and _production_row(site) == current
    assert _outbox(site) == before
    assert _audit(site, rid) == []


def test_alias_drift_current_is_empty_without_production(site: Api) -> None:
    target = _deploy(site, "preview")
    reply = _promote(site, {"deployId": target, "expectedCurrent": target})
    _expect(reply, 409, "alias_drift")
    assert reply.body["site"] == SITE and reply.body["current"] == ""
    assert _production(site) is None and _production_row(site) is None


def test_guard_value_is_not_pattern_validated(site: Api) -> None:
    current = _deploy(site, "production")
    target = _deploy(site, "preview")
    reply = _promote(site, {"deployId": target, "expectedCurrent": "not an id at all!"})
    _expect(reply, 409, "alias_drift")
    assert reply.body["current"] == current


def test_guard_match_moves_the_alias_and_is_trimmed(site: Api) -> None:
    current = _deploy(site, "production")
    target = _deploy(site, "preview")
    _expect(_promote(site, {"deployId": target, "expectedCurrent": f" {current}\n"}), 200)
    assert _production(site) == target and _production_row(site) == target


def test_guard_compares_with_the_trimmed_alias_body(site: Api) -> None:
    current = _deploy(site, "production")
    site.rt.bucket.put_alias(f"{DIR}/production", f"{current}\n")
    target = _deploy(site, "preview")
    _expect(_promote(site, {"deployId": target, "expectedCurrent": current}), 200)
    assert _production(site) == target


def test_empty_guard_is_no_guard(site: Api) -> None:
    _deploy(site, "production")
    target = _deploy(site, "preview")
    _expect(_promote(site, {"deployId": target, "expectedCurrent": "   "}), 200)
    assert _production(site) == target


def test_g35_expect_no_current_only_without_production(site: Api) -> None:
    first = _deploy(site, "preview")
    reply = _promote(site, {"deployId": first, "expectNoCurrent": True})
    _expect(reply, 200)
    assert _production(site) == first and _production_row(site) == first
    second = _deploy(site, "preview")
    before = _outbox(site)
    reply = _promote(site, {"deployId": second, "expectNoCurrent": True})
    _expect(reply, 409, "alias_drift")
    assert reply.body["site"] == SITE and reply.body["current"] == first
    assert _production(site) == first and _production_row(site) == first
    assert _outbox(site) == before
    reply = _rollback(site, {"to": second, "expectNoCurrent": True})
    _expect(reply, 409, "alias_drift")
    assert reply.body["current"] == first
    _expect(_promote(site, {"deployId": second, "expectNoCurrent": False}), 200)  # false: no guard


def test_g35_expect_no_current_treats_an_empty_alias_as_none(site: Api) -> None:
    target = _deploy(site, "preview")
    site.rt.bucket.put_alias(f"{DIR}/production", "  ")
    _expect(_promote(site, {"deployId": target, "expectNoCurrent": True}), 200)
    assert _production(site) == target


def test_promote_success_moves_alias_row_outbox_and_audits(site: Api) -> None:
    current = _deploy(site, "production")
    target = _deploy(site, "preview")
    before = _outbox(site)
    rid = _rid()
    reply = _promote(site, {"deployId": target, "expectedCurrent": current}, rid=rid)
    _expect(reply, 200)
    assert reply.body == {"url": PROD_URL, "deployId": target}
    assert reply.headers["x-request-id"] == rid
    assert _production(site) == target
    raw = site.rt.bucket.client.get_object(Bucket=BUCKET, Key=f"{DIR}/production")
    assert raw["Body"].read() == target.encode()  # bare id, no newline
    assert raw["ContentType"].startswith("text/plain")
    assert _production_row(site) == target
    assert site.sql(
        "SELECT deploy_id FROM aliases WHERE site = %s AND name = 'preview'", [DIR]
    ) == [(target,)]
    assert _outbox(site) == [*before, ("site.changed", {"site": DIR})]
    assert _audit(site, rid) == [("site.promote", SITE, target, "success", "local-dev", {})]
    read = _read(site, "production")
    assert read.body["deployId"] == target


def test_release_stamp_marks_the_previous_production_deploy(site: Api) -> None:
    old = _deploy(site, "production")
    new = _deploy(site, "preview")
    assert _released_at(site, old) is None
    _expect(_promote(site, {"deployId": new}), 200)
    stamped = _released_at(site, old)
    assert stamped is not None
    assert stamped == _production_updated_at(site)  # the new alias time
    assert _released_at(site, new) is None


def test_repointing_at_the_same_deploy_stamps_nothing(site: Api) -> None:
    old = _deploy(site, "production")
    new = _deploy(site, "preview")
    _expect(_promote(site, {"deployId": new}), 200)
    stamped = _released_at(site, old)
    before = _outbox(site)
    time.sleep(0.01)
    _expect(_promote(site, {"deployId": new}), 200)
    assert _released_at(site, new) is None
    assert _released_at(site, old) == stamped  # an older release is not re-stamped either
    # The move itself is still mirrored and announced (§8.3 step 8).
    assert _outbox(site) == [*before, ("site.changed", {"site": DIR})]


def test_release_stamp_set_even_if_preview_still_names_the_deploy(site: Api) -> None:
    old = _deploy(site, "production")
    both = _deploy(site, "preview")
    _expect(_promote(site, {"deployId": both}), 200)  # production and preview name `both`
    assert _released_at(site, both) is None
    _expect(_rollback(site, {"to": old}), 200)
    assert site.alias_object(DIR, "preview") == both
    assert _released_at(site, both) == _production_updated_at(site)


def test_promote_alias_read_failures_are_r2_get_failed(site: Api) -> None:
    # (A HEAD into a missing bucket is a bare 404, indistinguishable from a missing index.html,
    # so r2_head_failed cannot be provoked this way.)
    with _bucket_gone(site):
        _expect(
            _promote(site, {"deployId": _absent_id(), "expectedCurrent": "x"}), 502, "r2_get_failed"
        )
        _expect(_promote(site), 502, "r2_get_failed")  # the preview read
    assert _production_row(site) is None


# --- rollback (§8.4) -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"   ",
        b"{}",
        b'{"to":""}',
        b'{"to":"   "}',
        b'{"expectedCurrent":"20260420-141522-abc1234"}',
        b'{"to":"latest"}',
        b'{"to":"20260420-141522-"}',
        b'{"to":"20260420-141522-abc/1234"}',
        b'{"to":"../20260420-141522-abc1234"}',
        b'{"to":5}',
        b'{"to":null}',
        b"{not json",
        b"[]",
    ],
)
def test_rollback_malformed_body_is_400(site: Api, raw: bytes) -> None:
    _deploy(site, "preview")
    rid = _rid()
    _expect(_rollback(site, raw=raw, rid=rid), 400, "bad_request")
    assert _production(site) is None
    assert _audit(site, rid) == []


def test_rollback_body_over_64_kib_is_413(site: Api) -> None:
    target = _deploy(site, "preview")
    raw = b'{"to":"%s","pad":"%s"}' % (target.encode(), b"x" * (64 * 1024))
    _expect(_rollback(site, raw=raw), 413, "too_large")


def test_rollback_to_an_empty_prefix_is_deploy_missing(site: Api) -> None:
    current = _deploy(site, "production")
    before = _outbox(site)
    _expect(_rollback(site, {"to": _absent_id()}), 422, "deploy_missing")
    # A deploy id that is a prefix of an existing one names an empty prefix too.
    _expect(_rollback(site, {"to": current[:-1]}), 422, "deploy_missing")
    # Bytes in another site's prefix do not count.
    other = _absent_id()
    site.rt.bucket.put(f"docs.example.org/deploys/{other}/index.html", b"x", "text/html")
    _expect(_rollback(site, {"to": other}), 422, "deploy_missing")
    assert _production(site) == current and _production_row(site) == current
    assert _outbox(site) == before


def test_rollback_target_without_root_index_is_missing_index(site: Api) -> None:
    current = _deploy(site, "production")
    for files in ({"app.js": b"1"}, {"sub/index.html": b"x"}, {"Index.html": b"x"}):
        target = _raw_deploy(site, files, marker=True)
        _expect(_rollback(site, {"to": target}), 422, "missing_index")
    assert _production(site) == current and _production_row(site) == current


def test_g8_rollback_to_an_unfinalized_deploy_is_deploy_incomplete(site: Api) -> None:
    current = _deploy(site, "production")
    target = _raw_deploy(site, {"index.html": b"x", "app.js": b"1"}, marker=False)
    rid = _rid()
    _expect(_rollback(site, {"to": target}, rid=rid), 422, "deploy_incomplete")
    assert _production(site) == current and _production_row(site) == current
    assert _audit(site, rid) == []


def test_rollback_guard_mismatch_is_alias_drift(site: Api) -> None:
    old = _deploy(site, "production")
    current = _deploy(site, "production")
    reply = _rollback(site, {"to": old, "expectedCurrent": old})
    _expect(reply, 409, "alias_drift")
    assert reply.body["site"] == SITE and reply.body["current"] == current
    assert _production(site) == current and _production_row(site) == current


def test_rollback_success_moves_alias_row_outbox_and_audits(site: Api) -> None:
    old = _deploy(site, "production")
    current = _deploy(site, "production")
    before = _outbox(site)
    rid = _rid()
    reply = _rollback(site, {"to": f" {old} ", "expectedCurrent": current}, rid=rid)
    _expect(reply, 200)
    assert reply.body == {"url": PROD_URL, "deployId": old}
    assert _production(site) == old and _production_row(site) == old
    assert _released_at(site, current) == _production_updated_at(site)
    assert _outbox(site) == [*before, ("site.changed", {"site": DIR})]
    assert _audit(site, rid) == [("site.rollback", SITE, old, "success", "local-dev", {"to": old})]


def test_rollback_bucket_failure_is_r2_list_failed(site: Api) -> None:
    with _bucket_gone(site):
        _expect(_rollback(site, {"to": _absent_id()}), 502, "r2_list_failed")


# --- check order: promote guard → target → index; rollback existence → index → guard (§8.5) --


def test_check_order_missing_deploy_with_stale_guard(site: Api) -> None:
    current = _deploy(site, "production")
    missing = _absent_id()
    stale = _absent_id()
    reply = _rollback(site, {"to": missing, "expectedCurrent": stale})
    _expect(reply, 422, "deploy_missing")
    reply = _promote(site, {"deployId": missing, "expectedCurrent": stale})
    _expect(reply, 409, "alias_drift")
    assert reply.body["current"] == current
    assert _production(site) == current


def test_check_order_index_before_guard_on_rollback(site: Api) -> None:
    current = _deploy(site, "production")
    no_index = _raw_deploy(site, {"app.js": b"1"}, marker=True)
    stale = _absent_id()
    _expect(_rollback(site, {"to": no_index, "expectedCurrent": stale}), 422, "missing_index")
    _expect(_promote(site, {"deployId": no_index, "expectedCurrent": stale}), 409, "alias_drift")
    assert _production(site) == current


def test_check_order_guard_before_preview_on_promote(site: Api) -> None:
    _expect(_promote(site, {"expectedCurrent": _absent_id()}), 409, "alias_drift")  # no preview


# --- the site lock (§5) ----------------------------------------------------------------------


@pytest.mark.parametrize("route", ["promote", "rollback"])
def test_mutation_while_site_lock_held_is_site_locked(
    site: Api, short_lock_wait: float, route: str
) -> None:
    current = _deploy(site, "production")
    target = _deploy(site, "preview")
    body = {"deployId": target} if route == "promote" else {"to": target}
    before = _outbox(site)
    rid = _rid()
    with site_lock(site.database_url, DIRNAME):
        started = time.monotonic()
        reply = site.call(
            "POST",
            f"/api/site/{SITE}/{route}",
            token=DEV,
            json_body=body,
            headers={"X-Request-ID": rid},
        )
        waited = time.monotonic() - started
    _expect(reply, 409, "site_locked")
    assert waited >= short_lock_wait * 0.9  # it waited for the lock before giving up
    assert _production(site) == current and _production_row(site) == current
    assert _outbox(site) == before
    assert _audit(site, rid) == []  # no side effects, no audit row
    _expect(site.call("POST", f"/api/site/{SITE}/{route}", token=DEV, json_body=body), 200)
    assert _production(site) == target


def test_a_waiting_promote_proceeds_once_the_lock_is_released(site: Api) -> None:
    target = _deploy(site, "preview")
    entered = threading.Event()
    result: dict[str, Reply] = {}

    def call() -> None:
        entered.set()
        result["reply"] = _promote(site, {"deployId": target})

    with site_lock(site.database_url, DIRNAME):
        worker = threading.Thread(target=call)
        worker.start()
        entered.wait(5)
        time.sleep(0.5)
        assert "reply" not in result  # still waiting on the lock
        assert _production(site) is None
    worker.join(30)
    _expect(result["reply"], 200)
    assert _production(site) == target


@pytest.mark.usefixtures("short_lock_wait")
def test_the_lock_is_keyed_by_dirname_not_slug(site: Api) -> None:
    target = _deploy(site, "preview")
    with site_lock(site.database_url, Dirname(SITE)):  # the slug: another key
        _expect(_promote(site, {"deployId": target}), 200)
    assert _production(site) == target


# --- acceptance: concurrent moves keep the bucket and the index equal (§8.1, §5) -------------


def test_32_concurrent_moves_leave_alias_object_and_row_equal(site: Api) -> None:
    a, b, c = (_deploy(site, "preview") for _ in range(3))
    _expect(_promote(site, {"deployId": a}), 200)
    outbox_before = len(_outbox(site))
    plans: list[tuple[str, dict[str, Any]]] = [
        ("promote", {"deployId": a}),
        ("promote", {"deployId": b}),
        ("rollback", {"to": a}),
        ("rollback", {"to": b}),
        ("rollback", {"to": c}),
        ("promote", {"deployId": c, "expectedCurrent": a}),
        ("rollback", {"to": a, "expectedCurrent": b}),
        ("promote", {}),  # bare: the preview alias (c)
    ]
    barrier = threading.Barrier(32)
    rids = [_rid() for _ in range(32)]

    def move(i: int) -> tuple[str, dict[str, Any], Reply]:
        route, body = plans[i % len(plans)]
        barrier.wait(30)
        return route, body, site.call(
            "POST", f"/api/site/{SITE}/{route}", token=DEV, json_body=body, headers={"X-Request-ID": rids[i]}
        )  # fmt: skip

    with ThreadPoolExecutor(max_workers=32) as pool:
        results = list(pool.map(move, range(32)))

    statuses = [reply.status for _, _, reply in results]
    assert set(statuses) <= {200, 409}, [(r.status, r.raw) for _, _, r in results]
    for route, body, reply in results:
        if reply.status == 409:
            assert reply.code in {"alias_drift", "site_locked"}, reply.raw
            if reply.code == "alias_drift":
                assert "expectedCurrent" in body
        else:
            expected = body.get("deployId") or body.get("to") or c
            assert reply.body == {"url": PROD_URL, "deployId": expected}, (route, body)
    moved = statuses.count(200)
    assert moved >= 1

    production = _production(site)
    assert production in {a, b, c}
    assert _production_row(site) == production
    assert _read(site, "production").body["deployId"] == production
    # Each successful move committed exactly one event and one audit row; failures none.
    assert len(_outbox(site)) == outbox_before + moved
    audited = site.sql(
        "SELECT count(*) FROM audit_log WHERE request_id = ANY(%s) AND action IN ('site.promote', 'site.rollback')",
        [rids],
    )
    assert audited == [(moved,)]


def test_32_concurrent_guarded_moves_exactly_one_wins(site: Api) -> None:
    """The compare-and-swap is safe only because the read and the write share the lock (§8.6):
    of 32 simultaneous moves all expecting the same current deploy, exactly one may win."""
    a, b, c = (_deploy(site, "preview") for _ in range(3))
    _expect(_promote(site, {"deployId": a}), 200)
    barrier = threading.Barrier(32)

    def move(i: int) -> Reply:
        target = (b, c)[i % 2]
        route, body = (
            ("promote", {"deployId": target, "expectedCurrent": a})
            if i % 4 < 2
            else ("rollback", {"to": target, "expectedCurrent": a})
        )
        barrier.wait(30)
        return site.call("POST", f"/api/site/{SITE}/{route}", token=DEV, json_body=body)

    with ThreadPoolExecutor(max_workers=32) as pool:
        replies = list(pool.map(move, range(32)))

    winners = [r for r in replies if r.status == 200]
    assert len(winners) == 1, [(r.status, r.raw) for r in replies]
    winner = winners[0].body["deployId"]
    for reply in replies:
        if reply.status != 200:
            _expect(reply, 409, "alias_drift")
            assert reply.body["current"] == winner
    assert _production(site) == winner and _production_row(site) == winner
    assert _released_at(site, a) is not None


def test_v8_two_guarded_promotes_to_different_targets_exactly_one_wins(site: Api) -> None:
    """spec/durable.md V8: both carry the current alias as expectedCurrent; one succeeds, the
    other gets 409 alias_drift, and the alias object and row name the winner."""
    current, b, c = (_deploy(site, "preview") for _ in range(3))
    _expect(_promote(site, {"deployId": current}), 200)
    barrier = threading.Barrier(2)

    def promote(target: str) -> Reply:
        barrier.wait(30)
        body = {"deployId": target, "expectedCurrent": current}
        return site.call("POST", f"/api/site/{SITE}/promote", token=DEV, json_body=body)

    with ThreadPoolExecutor(max_workers=2) as pool:
        replies = list(pool.map(promote, [b, c]))
    assert sorted(r.status for r in replies) == [200, 409]
    winner = next(r for r in replies if r.status == 200).body["deployId"]
    loser = next(r for r in replies if r.status == 409)
    _expect(loser, 409, "alias_drift")
    assert loser.body["current"] == winner
    assert _production(site) == winner and _production_row(site) == winner
