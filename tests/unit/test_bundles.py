"""artemis.bundles: a bundle body becomes its files, or one typed 4xx error for the whole
bundle; headers are never taken at their word, and a gzip body never inflates past the cap."""

from __future__ import annotations

import bz2
import hashlib
import io
import os
import pathlib
import subprocess
import sys
import tarfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from artemis import bundles
from artemis.bundles import BUNDLE_MAX_BYTES, BUNDLE_MAX_MEMBERS, STREAM_MAX_BYTES, parse
from artemis.errors import ArtemisError
from artemis_local.functions import FUNCTIONS_DIR
from tests.bundle_archives import (
    BLOCK,
    archive,
    archive_of,
    empty_files,
    entry,
    gz,
    gzip_stream,
    with_size,
    zero_member_bomb,
)
from tests.conftest import base_env

LIMIT = 256 * 1024  # UPLOAD_MAX_BYTES for these tests
PREFIX = "www.example.org/deploys/20260420-141522-abc1234/"
FILES = [
    ("index.html", b"<h1>home</h1>"),
    ("assets/app.js", b"console.log(1)"),
    ("assets/img/logo.svg", b"<svg/>"),
    ("empty.txt", b""),
    ("café/menu.html", "<p>crème</p>".encode()),
]


def refused(body: bytes, *, limit: int = LIMIT, prefix: str = PREFIX) -> ArtemisError:
    with pytest.raises(ArtemisError) as info:
        parse(body, member_limit=limit, key_prefix=prefix)
    return info.value


def paths(body: bytes) -> list[str]:
    return [m.path for m in parse(body, member_limit=LIMIT, key_prefix=PREFIX)]


# --- what a bundle carries ------------------------------------------------------------------


@pytest.mark.parametrize(
    "fmt",
    [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT],
    ids=["ustar", "gnu", "pax"],
)
@pytest.mark.parametrize("compress", [False, True], ids=["tar", "tar.gz"])
def test_members_come_back_in_archive_order_with_their_digests(fmt: int, compress: bool) -> None:
    body = archive(FILES, fmt=fmt)
    members = parse(gz(body) if compress else body, member_limit=LIMIT, key_prefix=PREFIX)
    assert [(m.path, m.data) for m in members] == FILES
    assert [m.sha256 for m in members] == [hashlib.sha256(d).digest() for _, d in FILES]


def test_a_tar_of_a_directory_skips_its_directory_members_and_strips_one_dot_slash() -> None:
    body = archive(FILES, root=True)
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        names = tar.getnames()
    assert names[:3] == [".", "./index.html", "./assets"]  # what `tar -C build -cf - .` writes
    assert paths(body) == [name for name, _ in FILES]


@pytest.mark.parametrize("flags", ["-cf", "-czf"])
def test_the_tar_command_makes_a_bundle_of_a_build_directory(
    tmp_path: pathlib.Path, flags: str
) -> None:
    for name, data in FILES:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(data)
    body = subprocess.run(
        ["tar", "-C", str(tmp_path), flags, "-", "."], capture_output=True, check=True
    ).stdout
    members = parse(body, member_limit=LIMIT, key_prefix=PREFIX)
    assert sorted((m.path, m.data) for m in members) == sorted(FILES)


@pytest.mark.parametrize("fmt", [tarfile.GNU_FORMAT, tarfile.PAX_FORMAT], ids=["gnu", "pax"])
def test_names_longer_than_a_ustar_header_holds(fmt: int) -> None:
    name = "deep/" * 60 + "file.html"  # 309 bytes: a long-name or pax record carries it
    assert paths(archive([(name, b"x")], fmt=fmt)) == [name]


def test_an_archive_without_files_is_an_empty_bundle() -> None:
    assert paths(archive([])) == []
    assert paths(archive_of([(entry("docs/", tarfile.DIRTYPE), None)])) == []


def test_concatenated_gzip_streams_and_zero_padding_after_them_are_one_stream() -> None:
    body = archive(FILES)
    half = len(body) // 2
    assert paths(gz(body[:half]) + gz(body[half:]) + bytes(100)) == [n for n, _ in FILES]


# --- limits ------------------------------------------------------------------------------------


def test_the_per_file_limit_is_inclusive_and_checked_from_the_header() -> None:
    assert paths(archive([("a.bin", bytes(LIMIT))])) == ["a.bin"]
    err = refused(archive([("ok.txt", b"1"), ("big.bin", bytes(LIMIT + 1))]))
    assert (err.status, err.code) == (413, "too_large")
    assert err.detail["member"] == "big.bin" and err.detail["limit"] == LIMIT
    assert "POST /api/deploy/{id}/uploads" in err.detail["hint"]


def test_the_unpacked_total_is_capped_before_the_member_that_crosses_it_is_read() -> None:
    size = LIMIT
    count = BUNDLE_MAX_BYTES // size
    fits = archive([(f"f{n}", bytes(size)) for n in range(count)])
    assert len(parse(fits, member_limit=LIMIT)) == count
    over = archive([(f"f{n}", bytes(size)) for n in range(count)] + [("one.more", b"x")])
    err = refused(over)
    assert (err.status, err.code, err.detail) == (
        413,
        "bundle_too_large",
        {"limit": BUNDLE_MAX_BYTES},
    )


def test_the_member_count_is_capped_directories_included() -> None:
    assert len(parse(empty_files(BUNDLE_MAX_MEMBERS), member_limit=LIMIT)) == BUNDLE_MAX_MEMBERS
    err = refused(empty_files(BUNDLE_MAX_MEMBERS + 1))
    assert (err.status, err.code) == (413, "bundle_too_many_members")
    assert err.detail == {"limit": BUNDLE_MAX_MEMBERS}
    dirs = [(entry(f"d{n}/", tarfile.DIRTYPE), None) for n in range(BUNDLE_MAX_MEMBERS)]
    err = refused(archive_of([*dirs, (entry("index.html", size=1), b"x")]))
    assert err.code == "bundle_too_many_members"


def test_100000_empty_files_are_refused_at_the_first_member_over_the_cap() -> None:
    body = gz(empty_files(100_000))
    assert len(body) < 4 * 1000 * 1000  # small enough for one request
    err = refused(body)
    assert (err.status, err.code) == (413, "bundle_too_many_members")


def test_a_gzip_bomb_of_one_huge_member_is_refused_by_its_header() -> None:
    bomb = zero_member_bomb(declared=1 << 40, zeros=64 << 20)
    assert len(bomb) < 200_000
    err = refused(bomb)
    assert (err.status, err.code) == (413, "too_large")
    # With no per-file limit in the way, the total cap refuses it, still from the header.
    err = refused(bomb, limit=1 << 41)
    assert (err.status, err.code) == (413, "bundle_too_large")


def test_zeros_after_the_end_of_the_archive_inflate_no_further_than_the_cap() -> None:
    bomb = gzip_stream([archive([("a.txt", b"1")]), *(bytes(1 << 20) for _ in range(64))], 9)
    err = refused(bomb)
    assert (err.status, err.code) == (413, "bundle_too_large")


def test_the_inflater_stops_at_its_cap() -> None:
    inflater = bundles._BoundedGunzip(gz(bytes(1 << 20)), cap=10_000)
    assert len(inflater.read(4000)) == 4000
    with pytest.raises(ArtemisError) as info:
        while inflater.read(4000):
            pass
    assert info.value.code == "bundle_too_large"
    assert inflater._produced <= 10_001


def test_a_plain_body_longer_than_any_bundle_within_the_caps_is_refused_unread() -> None:
    err = refused(bytes(STREAM_MAX_BYTES + 1))
    assert (err.status, err.code) == (413, "bundle_too_large")


# --- members that are not plain files, and names that are not paths ---------------------------


@pytest.mark.parametrize(
    ("member", "reason"),
    [
        (entry("up", tarfile.SYMTYPE, link="/etc/passwd"), "a symbolic link"),
        (entry("docs/readme", tarfile.SYMTYPE, link="../../x"), "a symbolic link"),
        (entry("again", tarfile.LNKTYPE, link="index.html"), "a hard link"),
        (entry("tty", tarfile.CHRTYPE), "a character device"),
        (entry("sda", tarfile.BLKTYPE), "a block device"),
        (entry("pipe", tarfile.FIFOTYPE), "a fifo"),
        (entry("holes", tarfile.GNUTYPE_SPARSE), "a sparse file"),
        (entry("volume", b"V"), "an unsupported member type ('V')"),
    ],
    ids=["symlink", "symlink-relative", "hardlink", "chardev", "blockdev", "fifo", "sparse",
         "volume-label"],
)  # fmt: skip
def test_links_and_special_members_are_refused(member: tarfile.TarInfo, reason: str) -> None:
    body = archive_of([(entry("index.html", size=1), b"x"), (member, None)], tarfile.GNU_FORMAT)
    err = refused(body)
    assert (err.status, err.code) == (400, "bundle_member_invalid")
    assert err.detail["member"] == member.name
    assert err.detail["reason"].startswith(reason)


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("/etc/cron.d/x", "an absolute path"),
        ("../outside.html", "climbs out"),
        ("./../outside.html", "climbs out"),
        ("assets/../../outside.html", "climbs out"),
        ("a//b.html", "canonical"),
        ("./a/./b.html", "canonical"),
        ("././index.html", "canonical"),
        ("dir/", "canonical"),
        ("back\\slash.html", "backslash"),
        ("line\nbreak.html", "control character"),
        ("_artemis_meta.json", "reserved"),
        ("./_artemis_meta.json", "reserved"),
        ("caf\udce9.html", "not valid UTF-8"),
        ("x" * 1000 + ".html", "over S3's 1024"),
    ],
)
def test_names_the_upload_rules_refuse_are_refused(name: str, reason: str) -> None:
    body = archive([("index.html", b"x"), (name, b"1")])
    err = refused(body)
    assert (err.status, err.code) == (400, "bundle_member_invalid")
    assert reason in err.detail["reason"]
    assert err.detail["member"] == name.encode("utf-8", "backslashreplace").decode()[:200] + (
        "…" if len(name) > 200 else ""
    )


@pytest.mark.parametrize("name", ["/", "/etc/", "../up/", "a/../../b/", "a//b/"])
def test_directory_members_with_such_names_are_refused_too(name: str) -> None:
    body = archive_of([(entry(name, tarfile.DIRTYPE), None), (entry("a.txt", size=1), b"1")])
    assert refused(body).code == "bundle_member_invalid"


def test_a_path_taken_twice_is_a_duplicate_whatever_its_spelling() -> None:
    err = refused(archive([("index.html", b"1"), ("a.js", b"2"), ("./index.html", b"3")]))
    assert (err.status, err.code, err.detail) == (400, "bundle_duplicate", {"path": "index.html"})


def test_pax_records_cannot_smuggle_a_path_or_a_size() -> None:
    sneaky = entry("fine.html", size=1)
    sneaky.pax_headers = {"path": "../../etc/passwd"}
    assert refused(archive_of([(sneaky, b"x")])).code == "bundle_member_invalid"
    huge = entry("fine.html", size=1)
    huge.pax_headers = {"size": str(1 << 40)}
    assert refused(archive_of([(huge, b"x")])).code == "too_large"
    negative = entry("fine.html", size=1)
    negative.pax_headers = {"size": "-5"}
    assert refused(archive_of([(negative, b"x")])).code == "bundle_invalid"


# --- bytes that are not a well-formed archive --------------------------------------------------

GOOD = archive([("a.txt", b"A" * 1000), ("b.txt", b"B" * 10)], fmt=tarfile.USTAR_FORMAT)
SECOND_HEADER = BLOCK + 1024  # a.txt's header, then its 1,000 bytes padded to two blocks


def _bad_checksum() -> bytes:
    body = bytearray(GOOD)
    body[SECOND_HEADER] ^= 0x01  # b.txt's name changes; its checksum no longer adds up
    return bytes(body)


def _stray_header_after_end() -> bytes:
    body = bytearray(archive([("a.txt", b"1")], fmt=tarfile.USTAR_FORMAT))
    late = archive([("late.txt", b"2")], fmt=tarfile.USTAR_FORMAT)
    body[4 * BLOCK : 4 * BLOCK + 2 * BLOCK] = late[: 2 * BLOCK]  # after the end-of-archive block
    return bytes(body)


HOSTILE_BYTES: dict[str, bytes] = {
    "empty": b"",
    "text": b"hello, this is not an archive",
    "json": b'{"files": ["index.html"]}',
    "one-zero-byte-short-of-a-header": bytes(BLOCK - 1),
    "zip": b"PK\x03\x04" + bytes(600),
    "bzip2": bz2.compress(GOOD),
    "gzip-in-gzip": gz(gz(GOOD)),
    "gzip-of-text": gz(b"not a tar" * 100),
    "truncated-gzip": gz(GOOD)[:-20],
    "corrupt-gzip": gz(GOOD)[:12] + b"\xff" * 40 + gz(GOOD)[52:],
    "gzip-then-garbage": gz(GOOD) + b"trailing garbage",
    "truncated-in-data": GOOD[: BLOCK + 300],
    "truncated-in-header": GOOD[: SECOND_HEADER + 100],
    "no-end-of-archive": GOOD[: SECOND_HEADER + 2 * BLOCK],
    "size-declares-more": with_size(GOOD, SECOND_HEADER, 50_000),
    # a.txt's data would run over b.txt's header into the middle of b.txt's data
    "size-declares-more-into-the-next-member": with_size(
        archive([("a.txt", b"A" * 600), ("b.txt", b"B" * 1000)], fmt=tarfile.USTAR_FORMAT),
        0,
        1600,
    ),
    "size-declares-fewer": with_size(GOOD, 0, 100),
    "size-declares-none": with_size(GOOD, 0, 0),
    "size-declares-fewer-within-its-last-block": with_size(GOOD, 0, 999),
    "bad-checksum": _bad_checksum(),
    "garbage-after-end": GOOD + b"\x01",
    "header-after-end": _stray_header_after_end(),
}


@pytest.mark.parametrize("name", sorted(HOSTILE_BYTES))
def test_bytes_that_are_not_a_well_formed_archive_are_bundle_invalid(name: str) -> None:
    err = refused(HOSTILE_BYTES[name])
    assert (err.status, err.code) == (400, "bundle_invalid"), err.message


def test_a_header_whose_size_lies_is_refused_even_inside_gzip() -> None:
    assert refused(gz(with_size(GOOD, 0, 100))).code == "bundle_invalid"
    assert refused(gz(with_size(GOOD, SECOND_HEADER, 50_000))).code == "bundle_invalid"


def test_a_chain_of_thousands_of_pax_headers_is_bundle_invalid() -> None:
    record = b"20 comment=abcdefgh\n"
    header = entry("././@PaxHeader", tarfile.XHDTYPE, size=len(record))
    one = header.tobuf(format=tarfile.USTAR_FORMAT) + record + bytes(BLOCK - len(record))
    body = one * 3000 + archive([("a.txt", b"1")], fmt=tarfile.USTAR_FORMAT)
    assert refused(body).code == "bundle_invalid"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    base=st.sampled_from(
        [archive(FILES, fmt=f) for f in (tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT)]
        + [archive([("d/" * 80 + "x.html", b"x" * 700), ("y", b"")])]
    ),
    edits=st.lists(
        st.tuples(
            st.floats(0, 1, exclude_max=True),
            st.sampled_from(["set", "cut", "add"]),
            st.binary(min_size=1, max_size=16),
        ),
        min_size=1,
        max_size=6,
    ),
    compress=st.booleans(),
)
def test_damaged_archives_answer_a_4xx_never_anything_else(
    base: bytes, edits: list[tuple[float, str, bytes]], compress: bool
) -> None:
    body = bytearray(base)
    for where, how, data in edits:
        at = int(where * len(body))
        if how == "set":
            body[at : at + len(data)] = data
        elif how == "cut":
            del body[at : at + 17 * len(data)]
        else:
            body[at:at] = data
    sent = gz(bytes(body)) if compress else bytes(body)
    try:
        members = parse(sent, member_limit=LIMIT, key_prefix=PREFIX)
    except ArtemisError as err:
        assert 400 <= err.status < 500, err
    else:
        assert all(m.sha256 == hashlib.sha256(m.data).digest() for m in members)


# --- cost at a cold start ------------------------------------------------------------------------


def test_tarfile_loads_with_the_first_bundle_not_with_the_api() -> None:
    app = str(FUNCTIONS_DIR / "api" / "app.py")
    code = (
        "import importlib.util, sys\n"
        "import artemis.bundles, artemis.route_docs\n"
        "assert 'tarfile' not in sys.modules, 'tarfile at import'\n"
        f"spec = importlib.util.spec_from_file_location('api_app', {app!r})\n"
        "module = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(module)\n"
        "sys.exit('tarfile' in sys.modules)"
    )
    env = {**os.environ, **base_env()}
    assert subprocess.run([sys.executable, "-c", code], env=env, check=False).returncode == 0
