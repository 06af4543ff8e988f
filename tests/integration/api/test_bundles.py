"""PUT /api/deploy/{id}/bundle over HTTP: a tar (or tar.gz) of many files lands as if each
was uploaded alone, digests in the content index; a hostile bundle is refused whole, with its
code, and nothing is written anywhere; a finalized or deleted deploy takes no bundle."""

from __future__ import annotations

import hashlib
import json
import tarfile
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import quote

import pytest

from artemis import content_types
from artemis.bundles import BUNDLE_MAX_BYTES, BUNDLE_MAX_MEMBERS
from artemis.services import bundles as bundles_service
from tests.bundle_archives import (
    archive,
    archive_of,
    empty_files,
    entry,
    gz,
    gzip_stream,
    with_size,
    zero_member_bomb,
)
from tests.integration.api.conftest import UPLOAD_MAX_BYTES, Api, Reply
from tests.integration.api.test_deletion import delete_deploy

SITE_DIR = "www.example.org"
FILES: dict[str, bytes] = {
    "index.html": b"<h1>home</h1>",
    "docs/index.html": b"<h1>docs</h1>",
    "assets/app.js": b"console.log('bundled')",
    "assets/style.css": b"h1{color:green}",
    "assets/img/logo.svg": b"<svg xmlns='http://www.w3.org/2000/svg'/>",
    "data/feed.json": b'{"items": []}',
    "café/menu.html": "<p>crème brûlée</p>".encode(),
    "empty.txt": b"",
    "LICENSE": b"BSD",
    **{f"chunks/part-{n:03d}.js": f"export const n = {n};".encode() * n for n in range(60)},
}


@pytest.fixture
def www(api: Api) -> Api:
    api.register("www", ["web"])
    return api


def send(api: Api, session: dict[str, Any], body: bytes, media: str = "application/x-tar") -> Reply:
    return api.call(
        "PUT", f"/api/deploy/{session['deployId']}/bundle", token=session["jwt"], body=body,
        headers={"Content-Type": media},
    )  # fmt: skip


def prefix_of(session: dict[str, Any]) -> str:
    return f"{SITE_DIR}/deploys/{session['deployId']}/"


def every_key(api: Api) -> set[str]:
    return {obj.key for obj in api.rt.bucket.list_keys("")}


def indexed(api: Api, session: dict[str, Any]) -> dict[str, tuple[bytes, int]]:
    rows = api.sql(
        "SELECT path, sha256, size FROM deploy_files WHERE site = %s AND deploy_id = %s",
        [SITE_DIR, session["deployId"]],
    )
    return {str(path): (bytes(digest), int(size)) for path, digest, size in rows}


# --- bundles that land ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("compress", "media"),
    [(False, "application/x-tar"), (True, "application/gzip"),
     (True, "application/octet-stream")],
    ids=["tar", "tar.gz", "tar.gz-as-octet-stream"],
)  # fmt: skip
def test_a_bundle_lands_every_file_indexes_it_and_finalizes(
    www: Api, compress: bool, media: str
) -> None:
    session = www.init("www")
    body = archive(FILES.items(), root=True)  # as `tar -C build -cf - .` writes it
    before = every_key(www)
    reply = send(www, session, gz(body) if compress else body, media)
    assert reply.status == 200, reply.raw
    assert reply.body == {
        "received": list(FILES), "files": len(FILES), "bytes": sum(map(len, FILES.values())),
        "remaining": [],
    }  # fmt: skip
    prefix = prefix_of(session)
    assert every_key(www) - before == {prefix + path for path in FILES}
    bucket = www.rt.bucket
    for path, data in FILES.items():
        assert bucket.get(prefix + path) == data, path
        head = bucket.client.head_object(Bucket=bucket.name, Key=prefix + path)
        assert head["ContentType"] == content_types.content_type_for(path, None), path
    assert indexed(www, session) == {
        path: (hashlib.sha256(data).digest(), len(data)) for path, data in FILES.items()
    }

    reply = www.finalize(session, list(FILES), "production")
    assert reply.status == 200, reply.raw
    marker = bucket.get(prefix + "_artemis_meta.json")
    assert marker is not None
    assert json.loads(marker)["digests"] == {
        path: hashlib.sha256(data).hexdigest() for path, data in FILES.items()
    }
    for path in ("assets/app.js", "café/menu.html", "chunks/part-042.js"):
        served = www.call("GET", "/" + quote(path), headers={"Host": "www.localhost"})
        assert (served.status, served.raw) == (200, FILES[path]), path


def test_a_bundle_out_of_time_answers_what_remains_and_records_only_what_landed(
    www: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bundle's writes are bounded in time (a slow bucket must not hold the request past
    the API's limit): what was not started is answered as `remaining`, neither written nor
    indexed, and sending it again lands it."""
    session = www.init("www")
    body = archive(FILES.items())
    before = every_key(www)
    monkeypatch.setattr(bundles_service, "BUNDLE_SECONDS", 0.0)
    reply = send(www, session, body)
    assert reply.status == 200, reply.raw
    assert reply.body == {"received": [], "files": 0, "bytes": 0, "remaining": list(FILES)}
    assert every_key(www) == before
    assert indexed(www, session) == {}
    monkeypatch.undo()
    again = archive((p, FILES[p]) for p in reply.body["remaining"])
    reply = send(www, session, again)
    assert (reply.status, reply.body["remaining"]) == (200, [])
    assert sorted(reply.body["received"]) == sorted(FILES)
    assert www.finalize(session, list(FILES)).status == 200


def test_a_bundle_after_single_uploads_overwrites_and_reindexes(www: Api) -> None:
    session = www.init("www")
    assert www.upload(session, "index.html", b"<h1>old</h1>").status == 200
    reply = send(www, session, archive([("index.html", b"<h1>new</h1>"), ("a.js", b"1")]))
    assert reply.status == 200, reply.raw
    assert www.rt.bucket.get(prefix_of(session) + "index.html") == b"<h1>new</h1>"
    assert indexed(www, session)["index.html"] == (hashlib.sha256(b"<h1>new</h1>").digest(), 12)


# --- hostile bundles: refused whole, nothing written ---------------------------------------------

GOOD = [("index.html", b"<h1>ok</h1>"), ("assets/app.js", b"console.log(1)")]
GOOD_TAR = archive(GOOD, fmt=tarfile.USTAR_FORMAT)
SECOND_HEADER = 512 + 512  # index.html's header and its one block of data
CAP_FILES = BUNDLE_MAX_BYTES // UPLOAD_MAX_BYTES


def _with(member: tarfile.TarInfo, data: bytes | None = None) -> bytes:
    """Good files first, then the hostile member: nothing may be written for the good ones."""
    return archive_of(
        [*((entry(name, size=len(body)), body) for name, body in GOOD), (member, data)],
        tarfile.GNU_FORMAT,
    )


HOSTILE: dict[str, tuple[bytes, int, str]] = {
    "gzip-bomb-one-huge-member": (zero_member_bomb(1 << 40, 64 << 20), 413, "too_large"),
    "gzip-bomb-zeros-after-the-end": (
        gzip_stream([GOOD_TAR, *(bytes(1 << 20) for _ in range(64))], level=9),
        413, "bundle_too_large",
    ),
    "members-summing-over-the-cap": (
        gz(archive([(f"f{n}.bin", bytes(UPLOAD_MAX_BYTES)) for n in range(CAP_FILES + 1)])),
        413, "bundle_too_large",
    ),
    "100000-empty-files": (gz(empty_files(100_000)), 413, "bundle_too_many_members"),
    "member-over-upload-max-bytes": (
        archive([*GOOD, ("big.bin", bytes(UPLOAD_MAX_BYTES + 1))]), 413, "too_large",
    ),
    "symlink": (_with(entry("passwd", tarfile.SYMTYPE, link="/etc/passwd")), 400,
                "bundle_member_invalid"),
    "hardlink": (_with(entry("again.html", tarfile.LNKTYPE, link="index.html")), 400,
                 "bundle_member_invalid"),
    "fifo": (_with(entry("pipe", tarfile.FIFOTYPE)), 400, "bundle_member_invalid"),
    "char-device": (_with(entry("tty", tarfile.CHRTYPE)), 400, "bundle_member_invalid"),
    "block-device": (_with(entry("sda", tarfile.BLKTYPE)), 400, "bundle_member_invalid"),
    "absolute-path": (archive([*GOOD, ("/etc/cron.d/evil", b"x")]), 400,
                      "bundle_member_invalid"),
    "dot-dot-traversal": (archive([*GOOD, ("../../other-site/index.html", b"x")]), 400,
                          "bundle_member_invalid"),
    "path-the-upload-rules-refuse": (archive([*GOOD, ("a//b.html", b"x")]), 400,
                                     "bundle_member_invalid"),
    "the-completion-marker": (archive([*GOOD, ("_artemis_meta.json", b"{}")]), 400,
                              "bundle_member_invalid"),
    "key-longer-than-s3-takes": (archive([*GOOD, ("x" * 1000 + ".html", b"x")]), 400,
                                 "bundle_member_invalid"),
    "duplicate-path": (archive([*GOOD, ("./index.html", b"<h1>again</h1>")]), 400,
                       "bundle_duplicate"),
    "header-declares-more-than-follows": (with_size(GOOD_TAR, SECOND_HEADER, 40_000), 400,
                                          "bundle_invalid"),
    "header-declares-fewer-than-follow": (with_size(GOOD_TAR, 0, 3), 400, "bundle_invalid"),
    "garbage-after-the-end": (GOOD_TAR + b"\x01trailing", 400, "bundle_invalid"),
    "truncated": (GOOD_TAR[: SECOND_HEADER + 600], 400, "bundle_invalid"),
    "not-tar-bytes": (b"<html>this is not a tar archive</html>" * 20, 400, "bundle_invalid"),
    "truncated-gzip": (gz(GOOD_TAR)[:-30], 400, "bundle_invalid"),
    "empty-body": (b"", 400, "bundle_invalid"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(HOSTILE))
def test_a_hostile_bundle_is_refused_whole_and_writes_nothing(www: Api, case: str) -> None:
    body, status, code = HOSTILE[case]
    assert len(body) < 4_000_000  # within the body ceiling: the function itself refuses it
    session = www.init("www")
    before = every_key(www)
    reply = send(www, session, body)
    assert (reply.status, reply.code) == (status, code), reply.raw[:500]
    assert reply.body["error"]["message"]
    assert every_key(www) == before  # nothing inside the deploy prefix, nor anywhere else
    assert www.rt.bucket.list_keys(prefix_of(session)) == []
    assert indexed(www, session) == {}


def test_a_refused_member_is_named_with_the_reason(www: Api) -> None:
    session = www.init("www")
    reply = send(www, session, _with(entry("passwd", tarfile.SYMTYPE, link="/etc/passwd")))
    error = reply.body["error"]
    assert error["member"] == "passwd" and "symbolic link" in error["reason"]
    reply = send(www, session, archive([*GOOD, ("../up.html", b"x")]))
    assert reply.body["error"]["member"] == "../up.html"
    reply = send(www, session, archive([*GOOD, ("./index.html", b"x")]))
    assert reply.body["error"]["path"] == "index.html"
    reply = send(www, session, gz(empty_files(BUNDLE_MAX_MEMBERS + 1)))
    assert reply.body["error"]["limit"] == BUNDLE_MAX_MEMBERS


# --- the deploy's state --------------------------------------------------------------------------


def test_a_bundle_into_a_finalized_deploy_is_refused(www: Api) -> None:
    session = www.init("www")
    assert www.upload(session, "index.html", b"<h1>v1</h1>").status == 200
    assert www.finalize(session, ["index.html"]).status == 200
    before = every_key(www)
    reply = send(www, session, archive([("index.html", b"<h1>changed</h1>"), ("new.js", b"1")]))
    assert (reply.status, reply.code) == (409, "deploy_finalized")
    assert every_key(www) == before
    assert www.rt.bucket.get(prefix_of(session) + "index.html") == b"<h1>v1</h1>"
    assert set(indexed(www, session)) == {"index.html"}


def test_a_bundle_into_a_deleted_deploy_is_refused(www: Api) -> None:
    session = www.init("www")
    assert www.upload(session, "index.html", b"<h1>draft</h1>").status == 200
    assert delete_deploy(www, session["deployId"], site="www").status == 200
    before = every_key(www)
    reply = send(www, session, archive([("index.html", b"<h1>resurrected</h1>")]))
    assert (reply.status, reply.code) == (410, "deploy_deleted")
    assert every_key(www) == before
    assert www.rt.bucket.list_keys(prefix_of(session)) == []


def test_a_bundle_racing_a_finalize_lands_whole_before_it_or_not_at_all(www: Api) -> None:
    """The bundle's writes are one critical section under the deploy lock: either all of its
    files are in the deploy when finalize lists it (and in the marker's record), or the
    bundle is refused and none of them is written."""
    bundle = {f"late/f{n:02d}.js": b"x" * n for n in range(40)}
    body = archive(bundle.items())
    for _ in range(4):
        session = www.init("www")
        assert www.upload(session, "index.html", b"<h1>race</h1>").status == 200
        start = threading.Barrier(2)

        def bundled(session: dict[str, Any] = session, start: threading.Barrier = start) -> Reply:
            start.wait()
            return send(www, session, body)

        def finalized(session: dict[str, Any] = session, start: threading.Barrier = start) -> Reply:
            start.wait()
            return www.finalize(session, ["index.html"])

        with ThreadPoolExecutor(2) as pool:
            sent, done = pool.submit(bundled), pool.submit(finalized)
            reply, final = sent.result(), done.result()
        assert final.status == 200, final.raw
        prefix = prefix_of(session)
        held = {o.key[len(prefix) :] for o in www.rt.bucket.list_keys(prefix)}
        marker = www.rt.bucket.get(prefix + "_artemis_meta.json")
        assert marker is not None
        recorded = set(json.loads(marker)["files"])
        if reply.status == 200:
            assert set(bundle) <= recorded and set(bundle) <= held
        else:
            assert (reply.status, reply.code) in ((409, "deploy_finalized"), (409, "deploy_busy"))
            assert held == {"index.html", "_artemis_meta.json"} and recorded == {"index.html"}
