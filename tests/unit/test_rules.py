"""artemis.rules against spec/api.md §2.6, §3.2, §7.2-§7.6, §10.1, §13.4, §17.1 and G-5/G-6/G-19."""

import posixpath
import re
from datetime import UTC, datetime, timedelta, timezone
from urllib.parse import urlencode

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from artemis import rules
from artemis.keys import MARKER_NAME
from artemis.rules import (
    DEFAULT_RESERVED_SLUGS,
    DEPLOY_ID_RE,
    FRAMEWORK_HINT,
    REQUEST_ID_RE,
    SHA_RE,
    SLUG_RE,
    TEAM_RE,
    bearer_token,
    content_type_for,
    form_query,
    is_deploy_id,
    is_sha,
    is_slug,
    is_team,
    looks_like_framework_build,
    mint_deploy_id,
    parse_mode,
    parse_rfc3339,
    request_id,
    upload_path_error,
)

HEX24 = re.compile(r"[0-9a-f]{24}")

# --- §7.2 deploy ids -----------------------------------------------------------------------


def test_mint_deploy_id_spec_example() -> None:
    now = datetime(2026, 4, 20, 14, 15, 22, tzinfo=UTC)
    assert mint_deploy_id(now, "abc1234def5678") == "20260420-141522-abc1234"


@pytest.mark.parametrize(
    ("sha", "suffix"),
    [
        ("abc", "abc"),
        ("a", "a"),
        ("abc1234", "abc1234"),
        ("abc12345", "abc1234"),
        ("A-b-C-d-", "A-b-C-d"),
    ],
)
def test_mint_deploy_id_keeps_a_short_sha_whole(sha: str, suffix: str) -> None:
    now = datetime(2026, 4, 20, 14, 15, 22, tzinfo=UTC)
    assert mint_deploy_id(now, sha) == f"20260420-141522-{suffix}"


def test_mint_deploy_id_converts_an_aware_time_to_utc() -> None:
    local = datetime(2026, 4, 20, 23, 59, 59, tzinfo=timezone(timedelta(hours=-5)))
    assert mint_deploy_id(local, "abc1234") == "20260421-045959-abc1234"


def test_mint_deploy_id_takes_a_naive_time_as_utc() -> None:
    assert mint_deploy_id(datetime(2026, 1, 2, 3, 4, 5), "f00") == "20260102-030405-f00"


def test_mint_deploy_id_pads_small_years() -> None:
    assert mint_deploy_id(datetime(999, 1, 2, 3, 4, 5, tzinfo=UTC), "x") == "09990102-030405-x"


@pytest.mark.parametrize("sha", ["", "abc/def", "abc def", "abc.def", "a" * 65, "abc\n", "é"])
def test_mint_deploy_id_refuses_a_bad_sha(sha: str) -> None:
    with pytest.raises(ValueError, match="sha"):
        mint_deploy_id(datetime(2026, 4, 20, tzinfo=UTC), sha)


@given(
    st.datetimes(min_value=datetime(1000, 1, 1), max_value=datetime(9999, 12, 30)),
    st.from_regex(SHA_RE, fullmatch=True),
)
def test_minted_ids_match_the_deploy_id_pattern(now: datetime, sha: str) -> None:
    minted = mint_deploy_id(now, sha)
    assert is_deploy_id(minted)
    assert minted.endswith("-" + sha[:7])
    assert "/" not in minted


@given(
    st.datetimes(min_value=datetime(1000, 1, 1), max_value=datetime(9999, 12, 30)),
    st.datetimes(min_value=datetime(1000, 1, 1), max_value=datetime(9999, 12, 30)),
)
def test_minted_ids_sort_in_time_order(a: datetime, b: datetime) -> None:
    a, b = a.replace(microsecond=0), b.replace(microsecond=0)
    assume(a != b)
    first, second = sorted([a, b])
    assert mint_deploy_id(first, "abc1234") < mint_deploy_id(second, "abc1234")


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("20260420-141522-abc1234", True),
        ("20260420-141522-a", True),
        ("20260420-141522-" + "a" * 64, True),
        ("20260420-141522-" + "a" * 65, False),
        ("20260420-141522-", False),
        ("20260420-141522-abc/123", False),
        ("20260420-141522-abc_123", False),
        ("2026042-141522-abc1234", False),
        ("20260420-14152-abc1234", False),
        ("20260420141522-abc1234", False),
        ("20260420-141522-abc1234\n", False),
        ("\uff12" * 8 + "-141522-abc1234", False),  # full-width digits are not \d here
        ("", False),
        ("../20260420-141522-abc1234", False),
    ],
)
def test_deploy_id_pattern(value: str, ok: bool) -> None:
    assert is_deploy_id(value) is ok
    assert (DEPLOY_ID_RE.match(value) is not None) is ok


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("abc1234", True),
        ("a", True),
        ("A-Z-0-9", True),
        ("a" * 64, True),
        ("a" * 65, False),
        ("", False),
        ("abc/1", False),
        ("abc.1", False),
        ("abc_1", False),
        ("abc 1", False),
        ("abc\n", False),
        ("é", False),
    ],
)
def test_sha_pattern(value: str, ok: bool) -> None:
    assert is_sha(value) is ok
    assert (SHA_RE.match(value) is not None) is ok


# --- §10.1 / G-19 slugs, teams ---------------------------------------------------------------


@pytest.mark.parametrize(
    "slug", ["www", "a", "a1", "my-site", "a-b-c", "x" * 63, "a" + "-" * 61 + "b", "learn2"]
)
def test_g19_accepted_slugs(slug: str) -> None:
    assert is_slug(slug)


@pytest.mark.parametrize(
    "slug",
    [
        "",
        "www-",  # trailing hyphen: not a DNS label
        "a-",
        "-www",
        "1www",
        "Www",
        "w_w",
        "w.w",
        "x" * 64,
        "www\n",
        "_trash",
        "wéw",
        " www",
    ],
)
def test_g19_refused_slugs(slug: str) -> None:
    assert not is_slug(slug)


@pytest.mark.parametrize("name", ["preview", "api", "admin", "static", "assets", "artemis"])
def test_g19_reserved_names_are_refused(name: str) -> None:
    assert name in DEFAULT_RESERVED_SLUGS
    assert SLUG_RE.fullmatch(name)  # shape alone would accept it
    assert not is_slug(name)


def test_g19_reserved_list_is_configurable() -> None:
    assert is_slug("preview", reserved=frozenset())
    assert not is_slug("www", reserved=frozenset({"www"}))
    assert is_slug("api", reserved=frozenset({"www"}))


def test_g19_reserved_list_is_small_and_leaves_www_free() -> None:
    assert "www" not in DEFAULT_RESERVED_SLUGS
    assert all(SLUG_RE.fullmatch(name) for name in DEFAULT_RESERVED_SLUGS)


@given(st.from_regex(SLUG_RE, fullmatch=True))
def test_g19_every_pattern_slug_is_a_dns_label(slug: str) -> None:
    assert 1 <= len(slug) <= 63
    assert slug[0].isalpha() and not slug.endswith("-")
    assert is_slug(slug) is (slug not in DEFAULT_RESERVED_SLUGS)


@pytest.mark.parametrize(
    ("team", "ok"),
    [
        ("staff", True),
        ("0", True),
        ("a_b-c", True),
        ("9lives", True),
        ("a" * 39, True),
        ("a" * 40, False),
        ("", False),
        ("-staff", False),
        ("_staff", False),
        ("Staff", False),
        ("st aff", False),
        ("staff\n", False),
        ("st.aff", False),
    ],
)
def test_team_pattern(team: str, ok: bool) -> None:
    assert is_team(team) is ok
    assert (TEAM_RE.match(team) is not None) is ok


# --- §2.6 / G-5 request ids ---------------------------------------------------------------


@pytest.mark.parametrize(
    "inbound",
    ["abc", "9f2c0e", "req-1.2:3_x", "A" * 128, "1-5759e988-bd862e3fe1be46a994272793", "a" * 24],
)
def test_g5_valid_inbound_id_is_echoed(inbound: str) -> None:
    assert request_id(inbound) == inbound


@pytest.mark.parametrize(
    "inbound",
    [
        None,
        "",
        "A" * 129,
        "has space",
        "line\nbreak",
        "trailing\n",
        "tab\t",
        "x/y",
        "é",
        "a;b",
        "k=v",
    ],
)
def test_g5_invalid_inbound_id_is_replaced_by_24_hex(inbound: str | None) -> None:
    generated = request_id(inbound)
    assert HEX24.fullmatch(generated)
    assert generated != inbound


def test_g5_generated_ids_differ() -> None:
    assert len({request_id(None) for _ in range(50)}) == 50


def test_g5_generator_is_used_only_when_needed() -> None:
    assert request_id("bad id", generate=lambda: "fixed") == "fixed"
    assert request_id("good", generate=lambda: "fixed") == "good"


@given(st.text(max_size=200))
def test_g5_output_always_matches_the_pattern(inbound: str) -> None:
    out = request_id(inbound)
    assert REQUEST_ID_RE.fullmatch(out)
    assert out == inbound or HEX24.fullmatch(out)


# --- §3.2 Authorization header ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("Bearer tok", "tok"),
        ("Bearer ghp_abc.DEF-123", "ghp_abc.DEF-123"),
        ("Bearer a.b.c", "a.b.c"),
        ("Bearer tok ", "tok"),  # trailing whitespace stripped by the server (wire behaviour)
        ("Bearer tok\t", "tok"),
        ("  Bearer tok", "tok"),
        ("\tBearer tok \t ", "tok"),
    ],
)
def test_bearer_accepted(header: str, token: str) -> None:
    assert bearer_token(header) == token


@pytest.mark.parametrize(
    "header",
    [
        None,  # missing header
        "",
        "Basic dXNlcjpwYXNz",  # other scheme
        "Token tok",
        "bearer tok",  # lower-case scheme
        "BEARER tok",
        "Bearer  tok",  # two spaces
        "Bearer\ttok",  # tab after the scheme
        "Bearer to k",  # whitespace inside the token
        "Bearer to\tk",
        "Bearer to\rk",
        "Bearer to\nk",
        "Bearer tok\r\n",
        "Bearer ",  # empty token: arrives as "Bearer"
        "Bearer",
        "Bearer \t",
        "Bearertok",
        "tok",
    ],
)
def test_bearer_refused(header: str | None) -> None:
    assert bearer_token(header) is None


@given(st.text(alphabet=st.characters(blacklist_characters=" \t\r\n"), min_size=1))
def test_bearer_round_trips_any_token_without_whitespace(token: str) -> None:
    assert bearer_token("Bearer " + token) == token


@given(st.text())
def test_bearer_result_never_contains_forbidden_whitespace(header: str) -> None:
    token = bearer_token(header)
    if token is not None:
        assert token and not any(ch in token for ch in " \t\r\n")
        assert header.strip(" \t") == "Bearer " + token


# --- §7.4 upload paths and G-6 -------------------------------------------------------------

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


# --- §7.4 content types ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("index.html", "text/html; charset=utf-8"),
        ("a/b.htm", "text/html; charset=utf-8"),
        ("s.css", "text/css; charset=utf-8"),
        ("app.js", "text/javascript; charset=utf-8"),
        ("mod.mjs", "text/javascript; charset=utf-8"),
        ("data.json", "application/json"),
        ("logo.svg", "image/svg+xml"),
        ("p.png", "image/png"),
        ("p.jpg", "image/jpeg"),
        ("p.jpeg", "image/jpeg"),
        ("p.gif", "image/gif"),
        ("p.webp", "image/webp"),
        ("p.avif", "image/avif"),
        ("m.wasm", "application/wasm"),
        ("feed.xml", "text/xml; charset=utf-8"),
        ("doc.pdf", "application/pdf"),
        ("robots.txt", "text/plain; charset=utf-8"),
        ("favicon.ico", "image/x-icon"),
        ("f.woff", "font/woff"),
        ("f.woff2", "font/woff2"),
        ("app.js.map", "application/json"),
        ("site.webmanifest", "application/manifest+json"),
        # exact first, then lower-cased
        ("INDEX.HTML", "text/html; charset=utf-8"),
        ("Photo.JPG", "image/jpeg"),
        ("x.Woff2", "font/woff2"),
        # no or unknown extension
        ("README", "application/octet-stream"),
        ("archive.unknownext", "application/octet-stream"),
        ("dir.d/file", "application/octet-stream"),
        ("file.", "application/octet-stream"),
        (".html", "text/html; charset=utf-8"),
    ],
)
def test_content_type_by_extension(path: str, expected: str) -> None:
    assert content_type_for(path, None) == expected
    assert content_type_for(path, "") == expected


@pytest.mark.parametrize(
    "declared", ["text/plain", "application/x-custom; v=1", "TEXT/HTML", "image/png "]
)
def test_declared_content_type_wins_verbatim(declared: str) -> None:
    assert content_type_for("index.html", declared) == declared
    assert content_type_for("noext", declared) == declared


def test_blank_declared_content_type_counts_as_absent() -> None:
    assert content_type_for("a.css", " \t") == "text/css; charset=utf-8"


def test_content_type_table_is_shipped_not_mimetypes(monkeypatch: pytest.MonkeyPatch) -> None:
    import mimetypes

    monkeypatch.setattr(mimetypes, "guess_type", lambda *a, **k: ("bogus/type", None))
    assert content_type_for("a.js", None) == "text/javascript; charset=utf-8"
    assert "mimetypes" not in vars(rules)


# --- §7.5 finalize mode -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "mode"),
    [
        (None, "preview"),
        ("", "preview"),
        ("   ", "preview"),
        ("preview", "preview"),
        ("Preview", "preview"),
        (" PREVIEW\n", "preview"),
        ("production", "production"),
        ("\tProduction ", "production"),
        ("PRODUCTION", "production"),
        ("\u00a0production\u3000", "production"),  # Go's TrimSpace trims Unicode spaces
        ("prod", None),
        ("live", None),
        ("pre view", None),
        ("production!", None),
        ("\x1cproduction", None),  # not whitespace to Go
        ("preview,production", None),
    ],
)
def test_parse_mode(raw: str | None, mode: str | None) -> None:
    assert parse_mode(raw) == mode


# --- §7.6 framework hint --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("files", "framework"),
    [
        (["nitro.json"], True),
        (["_app/immutable/entry.js"], True),
        ([".next/static/chunk.js"], True),
        ([".nuxt/dist/a.js"], True),
        ([".svelte-kit/output/x"], True),
        ([".output/public/index.html"], True),
        (["BUILD_ID", "build-manifest.json"], True),
        (["about.html", "build-manifest.json", "x", "BUILD_ID"], True),
        ([".next\\static\\chunk.js"], True),  # backslashes count as /
        (["_app\\immutable\\entry.js"], True),
        (["BUILD_ID"], False),  # one of the pair alone is not enough
        (["build-manifest.json"], False),
        (["BUILD_ID", "sub/build-manifest.json"], False),  # root entries only
        (["sub/BUILD_ID", "build-manifest.json"], False),
        (["sub/nitro.json"], False),
        (["_app/other.js"], False),
        (["a/.next/x"], False),
        ([".next"], False),
        (["about.html", "assets/app.js"], False),
        ([], False),
    ],
)
def test_framework_build_detection(files: list[str], framework: bool) -> None:
    assert looks_like_framework_build(files) is framework
    assert looks_like_framework_build(tuple(files)) is framework


def test_framework_hint_names_the_static_exports() -> None:
    for phrase in ("output: 'export'", "nuxi generate", "SvelteKit", "static adapter", "export"):
        assert phrase in FRAMEWORK_HINT


# --- §7.4 step 2 / §17.1 query decoding ---------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("path=index.html", {"path": "index.html"}),
        ("path=a;b.html", {}),  # a raw ; drops the pair: counts as missing path
        ("path=a;b.html&x=1", {"x": "1"}),
        ("x=1;y=2&path=a.html", {"path": "a.html"}),
        ("path=a%3Bb.html", {"path": "a;b.html"}),  # %3B kept
        ("path=a+b.txt", {"path": "a b.txt"}),  # + becomes a space
        ("path=a%2Bb.txt", {"path": "a+b.txt"}),
        ("path=a%20b.txt", {"path": "a b.txt"}),
        ("path=caf%C3%A9%2Fmenu.html", {"path": "café/menu.html"}),
        ("path=%2Findex.html", {"path": "/index.html"}),
        ("path=a%00b", {"path": "a\x00b"}),
        ("path=first&path=second", {"path": "first"}),  # first value wins
        ("path=&path=second", {"path": ""}),
        ("path=", {"path": ""}),  # blank values kept
        ("path", {"path": ""}),
        ("path=a=b", {"path": "a=b"}),
        ("p%61th=x", {"path": "x"}),
        ("a+b=c+d", {"a b": "c d"}),
        ("", {}),
        ("&&", {}),
        ("path=%zz&x=1", {"x": "1"}),  # malformed escape drops the pair
        ("path=%4", {}),
        ("path=%", {}),
        ("path=%FF", {}),  # not UTF-8
        ("path=%2e%2e%2fx", {"path": "../x"}),
    ],
)
def test_form_query(raw: str, expected: dict[str, str]) -> None:
    assert form_query(raw) == expected


def test_form_query_then_path_rules() -> None:
    assert upload_path_error(form_query("path=a;b.html").get("path", "")) is not None
    assert upload_path_error(form_query("path=a%3Bb.html")["path"]) is None


TEXT = st.text(alphabet=st.characters(codec="utf-8"))  # no lone surrogates


@given(st.dictionaries(TEXT.filter(bool), TEXT, max_size=5))
def test_form_query_inverts_urlencode(pairs: dict[str, str]) -> None:
    assert form_query(urlencode(pairs)) == pairs


# --- §13.4 RFC 3339 -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-04-20T14:15:22Z", datetime(2026, 4, 20, 14, 15, 22, tzinfo=UTC)),
        ("2026-04-20T14:15:22.123456Z", datetime(2026, 4, 20, 14, 15, 22, 123456, tzinfo=UTC)),
        ("2026-04-20T14:15:22.1Z", datetime(2026, 4, 20, 14, 15, 22, 100000, tzinfo=UTC)),
        ("2026-04-20T14:15:22.123456789Z", datetime(2026, 4, 20, 14, 15, 22, 123456, tzinfo=UTC)),
        ("2026-04-20T16:15:22+02:00", datetime(2026, 4, 20, 14, 15, 22, tzinfo=UTC)),
        ("2026-04-20T09:45:22-04:30", datetime(2026, 4, 20, 14, 15, 22, tzinfo=UTC)),
        ("2026-04-20T14:15:22+00:00", datetime(2026, 4, 20, 14, 15, 22, tzinfo=UTC)),
        ("2026-04-20T14:15:22-00:00", datetime(2026, 4, 20, 14, 15, 22, tzinfo=UTC)),
        ("2024-02-29T00:00:00Z", datetime(2024, 2, 29, tzinfo=UTC)),
        ("2026-04-20T14:15:22+23:59", datetime(2026, 4, 19, 14, 16, 22, tzinfo=UTC)),
    ],
)
def test_parse_rfc3339_accepts(value: str, expected: datetime) -> None:
    parsed = parse_rfc3339(value)
    assert parsed is not None
    assert parsed.tzinfo is not None
    assert parsed == expected


@pytest.mark.parametrize(
    "value",
    [
        "",
        "2026-04-20",
        "2026-04-20T14:15:22",  # no zone
        "2026-04-20 14:15:22Z",  # space separator
        "2026-04-20t14:15:22Z",
        "2026-04-20T14:15:22z",
        "2026-04-20T14:15Z",
        "2026-4-20T14:15:22Z",
        "2026-04-20T14:15:22.Z",
        "2026-04-20T14:15:22 02:00",  # an unencoded + arrives as a space
        "2026-04-20T14:15:22+0200",
        "2026-04-20T14:15:22+02",
        "2026-13-01T00:00:00Z",
        "2026-02-30T00:00:00Z",
        "2025-02-29T00:00:00Z",
        "2026-04-20T24:00:00Z",
        "2026-04-20T14:60:00Z",
        "2026-04-20T14:15:60Z",
        "2026-04-20T14:15:22+24:00",
        "2026-04-20T14:15:22+02:60",
        "0000-01-01T00:00:00Z",
        "2026-04-20T14:15:22Z\n",
        "\uff12026-04-20T14:15:22Z",
        "yesterday",
        "1713622522",
    ],
)
def test_parse_rfc3339_refuses(value: str) -> None:
    assert parse_rfc3339(value) is None


@given(
    st.datetimes(
        min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)
    )
)
def test_parse_rfc3339_round_trips_isoformat(when: datetime) -> None:
    text = when.isoformat().replace("+00:00", "Z")
    assert parse_rfc3339(text) == when


@given(st.text(max_size=40))
def test_parse_rfc3339_never_raises(value: str) -> None:
    parsed = parse_rfc3339(value)
    assert parsed is None or parsed.tzinfo is not None


@given(prefix=st.text(min_size=1, max_size=300), path=st.text(max_size=1200))
def test_key_length_error_is_exactly_s3s_byte_limit(prefix: str, path: str) -> None:
    """S3 refuses keys over 1,024 bytes of UTF-8: the check counts bytes, not characters."""
    size = len((prefix + path).encode("utf-8", errors="surrogatepass"))
    problem = rules.key_length_error(prefix, path)
    assert (problem is None) == (size <= rules.S3_MAX_KEY_BYTES)
    if problem is not None:
        assert str(size) in problem


def test_key_length_error_at_the_boundary() -> None:
    prefix = "www.example.org/deploys/20260101-000000-abc1234/"
    room = rules.S3_MAX_KEY_BYTES - len(prefix)
    assert rules.key_length_error(prefix, "a" * room) is None
    assert rules.key_length_error(prefix, "a" * (room + 1)) is not None
    assert rules.key_length_error(prefix, "é" * (room // 2 + 1)) is not None  # 2 bytes each
