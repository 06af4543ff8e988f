"""Which upload paths are accepted, and the S3 key-length limit."""

import posixpath

import pytest
from hypothesis import given
from hypothesis import strategies as st

from artemis import upload_paths
from artemis.keys import MARKER_NAME
from artemis.upload_paths import upload_path_error

ACCEPTED_PATHS = [
    "index.html",
    "a/b/c.html",
    "foo.bar.baz",
    "café/menu.html",
    "a b.txt",
    "assets/app.js",
    ".well-known/security.txt",
    "...",
    "..a",
    "a..",
    "a/..b/c",
    "a;b.html",
    "%2e%2e/x",  # already decoded once; a literal percent sign is a file name
    "sub/" + MARKER_NAME,  # only the deploy-root marker is reserved
    "_artemis_meta.json.bak",
    "x" * 2000,
]

REFUSED_PATHS = [
    # empty or "."
    "",
    ".",
    # absolute
    "/index.html",
    "//index.html",
    "/",
    "/assets/app.js",
    # not canonical
    "./index.html",
    "./",
    "a/./b",
    "a//b",
    "assets/",
    "a/b/..",
    "a/.",
    # a .. segment
    "..",
    "../escape.html",
    "a/../b",
    "a/b/../../..",
    # control bytes and DEL
    "foo\x00bar",
    "foo\nbar",
    "foo\tbar",
    "foo\rbar",
    "foo\x1fbar",
    "foo\x7fbar",
    "index.html\n",
    # backslash
    "foo\\bar",
    "\\",
    "..\\escape.html",
]


@pytest.mark.parametrize("path", ACCEPTED_PATHS)
def test_upload_path_accepted(path: str) -> None:
    assert upload_path_error(path) is None


@pytest.mark.parametrize("path", REFUSED_PATHS)
def test_upload_path_refused(path: str) -> None:
    reason = upload_path_error(path)
    assert isinstance(reason, str) and reason


def test_g6_marker_path_refused() -> None:
    reason = upload_path_error(MARKER_NAME)
    assert reason is not None and MARKER_NAME in reason
    assert upload_path_error("_artemis_meta.json") is not None


@pytest.mark.parametrize(
    ("path", "word"),
    [
        ("", "empty"),
        ("/a", "relative"),
        ("a//b", "canonical"),
        ("a/../b", ".."),
        ("a\x00b", "control"),
        ("a\\b", "backslash"),
    ],
)
def test_upload_path_reasons_name_the_rule(path: str, word: str) -> None:
    assert word in (upload_path_error(path) or "")


@given(st.text())
def test_accepted_paths_are_relative_canonical_and_contained(path: str) -> None:
    if upload_path_error(path) is not None:
        return
    assert path and path != "."
    assert not path.startswith("/")
    assert posixpath.normpath(path) == path
    assert ".." not in path.split("/")
    assert "\\" not in path
    assert not any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in path)
    assert path != MARKER_NAME
    # joined under a prefix, it stays under that prefix
    assert posixpath.normpath("root/" + path).startswith("root/")


@given(st.lists(st.sampled_from(["a", "b.html", "é", "x y", "..", ".", ""]), min_size=1))
def test_path_built_from_segments_is_accepted_iff_plain(segments: list[str]) -> None:
    path = "/".join(segments)
    plain = all(seg not in ("", ".", "..") for seg in segments)
    assert (upload_path_error(path) is None) is plain


@given(prefix=st.text(min_size=1, max_size=300), path=st.text(max_size=1200))
def test_key_length_error_is_exactly_s3s_byte_limit(prefix: str, path: str) -> None:
    """S3 refuses keys over 1,024 bytes of UTF-8: the check counts bytes, not characters."""
    size = len((prefix + path).encode("utf-8", errors="surrogatepass"))
    problem = upload_paths.key_length_error(prefix, path)
    assert (problem is None) == (size <= upload_paths.S3_MAX_KEY_BYTES)
    if problem is not None:
        assert str(size) in problem


def test_key_length_error_at_the_boundary() -> None:
    prefix = "www.example.org/deploys/20260101-000000-abc1234/"
    room = upload_paths.S3_MAX_KEY_BYTES - len(prefix)
    assert upload_paths.key_length_error(prefix, "a" * room) is None
    assert upload_paths.key_length_error(prefix, "a" * (room + 1)) is not None
    assert upload_paths.key_length_error(prefix, "é" * (room // 2 + 1)) is not None  # 2 bytes each
