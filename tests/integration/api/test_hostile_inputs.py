"""Hostile bodies and paths get a 400 envelope before anything is written: JSON nested far
deeper than any body needs, integers too long for Python to convert, upload paths whose full
S3 key would exceed S3's 1,024-byte limit, and a reserved slug named as such."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest

from artemis import upload_paths
from tests.integration.api.conftest import DEV, STAFF, Api

DEEP_INIT = b"[" * 100_000  # 100 KB: under init's manifest limit
DEEP_SMALL = b'{"deployId": ' + b"[" * 30_000  # 30 KB: under the 64 KiB limit of small bodies
HUGE_INT = "9" * 5_001  # over Python's 4,300-digit integer-string limit

# Every JSON route the API tests' system serves (the repo routes need the GitHub App), with
# the credential that gets it as far as parsing its body.
JSON_ROUTES = [
    ("POST", "/api/deploy/init", "dev"),
    ("POST", "/api/deploy/{deploy_id}/uploads", "session"),
    ("POST", "/api/deploy/{deploy_id}/finalize", "session"),
    ("POST", "/api/site/www/promote", "dev"),
    ("POST", "/api/site/www/rollback", "dev"),
    ("POST", "/api/site/register", "staff"),
    ("PATCH", "/api/site/www", "staff"),
    ("POST", "/api/site/www/trust", "staff"),
    ("POST", "/api/site/www/hooks", "staff"),
]


def _call(api: Api, method: str, path: str, credential: str, body: bytes) -> Any:
    api.register("www", ["web"])
    token = {"dev": DEV, "staff": STAFF}.get(credential)
    if credential == "session":
        session = api.init("www")
        token, path = session["jwt"], path.format(deploy_id=session["deployId"])
    return api.call(method, path, token=token, body=body)


@pytest.mark.parametrize(("method", "path", "credential"), JSON_ROUTES)
@pytest.mark.parametrize(
    "body",
    [
        pytest.param(DEEP_SMALL, id="30k-deep"),
        pytest.param(b'{"files": [' * 5_000, id="deep-objects"),
        pytest.param(f'{{"files": {HUGE_INT}, "teams": {HUGE_INT}}}'.encode(), id="huge-int"),
    ],
)
def test_every_json_route_answers_hostile_json_with_400(
    api: Api, method: str, path: str, credential: str, body: bytes
) -> None:
    reply = _call(api, method, path, credential, body)
    assert (reply.status, reply.code) == (400, "bad_request"), reply.raw[:300]


def test_init_refuses_json_nested_100000_deep(api: Api) -> None:
    reply = _call(api, "POST", "/api/deploy/init", "dev", DEEP_INIT)
    assert (reply.status, reply.code) == (400, "bad_request"), reply.raw[:300]
    assert "nests deeper" in reply.body["error"]["message"]


def test_presign_refuses_a_5001_digit_size(api: Api) -> None:
    body = f'{{"files": [{{"path": "index.html", "size": {HUGE_INT}}}]}}'.encode()
    reply = _call(api, "POST", "/api/deploy/{deploy_id}/uploads", "session", body)
    assert (reply.status, reply.code) == (400, "bad_request"), reply.raw[:300]


# --- S3's key length ----------------------------------------------------------------------


def _room(api: Api, session: dict[str, Any]) -> int:
    """How many bytes a path may take in this deploy: 1,024 minus the rendered prefix."""
    layout = api.rt.settings.key_layout
    prefix = layout.deploy_prefix(layout.dirname("www"), session["deployId"])  # type: ignore[arg-type]
    assert prefix.startswith("www.example.org/deploys/")  # the dirname counts, not the slug
    return upload_paths.S3_MAX_KEY_BYTES - len(prefix.encode())


def _long_path(size: int) -> str:
    """A canonical path of exactly `size` UTF-8 bytes, with multi-byte characters in it."""
    head = "dir/é/"  # 7 bytes
    return head + "a" * (size - len(head.encode()) - 5) + ".html"


def _keys(api: Api) -> list[str]:
    paginator = api.rt.bucket.client.get_paginator("list_objects_v2")
    return [
        o["Key"]
        for page in paginator.paginate(Bucket=api.rt.bucket.name)
        for o in page.get("Contents", [])
    ]


def test_upload_refuses_a_path_whose_key_exceeds_1024_bytes(api: Api) -> None:
    api.register("www", ["web"])
    session = api.init("www")
    room = _room(api, session)
    over = _long_path(room + 1)
    reply = api.upload(session, over, b"x")
    assert (reply.status, reply.code) == (400, "bad_request"), reply.raw[:300]
    assert "1024" in reply.body["error"]["message"]
    assert _keys(api) == []  # nothing written
    fits = _long_path(room)
    reply = api.upload(session, fits, b"x")
    assert reply.status == 200, reply.raw[:300]
    assert len(reply.body["key"].encode()) == upload_paths.S3_MAX_KEY_BYTES


def test_presign_refuses_a_path_whose_key_exceeds_1024_bytes(api: Api) -> None:
    api.register("www", ["web"])
    session = api.init("www")
    over = _long_path(_room(api, session) + 1)
    reply = api.call(
        "POST", f"/api/deploy/{session['deployId']}/uploads", token=session["jwt"],
        json_body={"files": [{"path": "index.html", "size": 1}, {"path": over, "size": 1}]},
    )  # fmt: skip
    assert (reply.status, reply.code) == (400, "bad_request"), reply.raw[:300]


def test_finalize_refuses_a_manifest_entry_whose_key_exceeds_1024_bytes(api: Api) -> None:
    api.register("www", ["web"])
    session = api.init("www")
    assert api.upload(session, "index.html", b"<h1>hi</h1>").status == 200
    over = _long_path(_room(api, session) + 1)
    reply = api.finalize(session, ["index.html", over])
    assert (reply.status, reply.code) == (400, "bad_request"), reply.raw[:300]
    layout = api.rt.settings.key_layout
    assert api.alias_object("www.example.org", "preview") is None  # no alias write
    marker = layout.marker_key(layout.dirname("www"), session["deployId"])  # type: ignore[arg-type]
    assert marker not in _keys(api)  # no marker write


def test_key_limit_counts_utf8_bytes_not_characters(api: Api) -> None:
    """The limit is in bytes of UTF-8, not characters: 2-byte characters fill it twice as fast."""
    api.register("www", ["web"])
    session = api.init("www")
    room = _room(api, session)
    path = "é" * (room // 2 + 1)  # fewer characters than `room`, more bytes
    assert len(path) < room
    reply = api.call(
        "PUT", f"/api/deploy/{session['deployId']}/upload?path={quote(path)}",
        token=session["jwt"], body=b"x",
    )  # fmt: skip
    assert (reply.status, reply.code) == (400, "bad_request"), reply.raw[:300]


# --- reserved slugs -------------------------------------------------------------------------


def test_reserved_slug_message_names_the_reservation(api: Api) -> None:
    reply = api.call("POST", "/api/site/register", token=STAFF, json_body={"slug": "preview"})
    assert (reply.status, reply.code) == (400, "invalid_slug")
    message = reply.body["error"]["message"]
    assert "reserved" in message and "must match" not in message
    bad = api.call("POST", "/api/site/register", token=STAFF, json_body={"slug": "Bad"})
    assert (bad.status, bad.code) == (400, "invalid_slug")
    assert "must match" in bad.body["error"]["message"]
