"""Query-string decoding as a Go server does it."""

from urllib.parse import urlencode

import pytest
from hypothesis import given
from hypothesis import strategies as st

from artemis.query_strings import form_query
from artemis.upload_paths import upload_path_error


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
