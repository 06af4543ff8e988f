"""Content types: the declared one, else the shipped table by extension."""

import pytest

from artemis import content_types
from artemis.content_types import content_type_for


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
    assert "mimetypes" not in vars(content_types)
