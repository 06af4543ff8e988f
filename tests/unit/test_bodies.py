"""The one JSON body parser: hostile nesting and numbers are a 400, never a crash, and the
nesting scan reads JSON as the decoder does (brackets inside strings do not count)."""

import json

import pytest

from artemis import bodies
from artemis.errors import BadRequest


@pytest.mark.parametrize(
    "raw",
    [
        b"[" * 100_000,
        b'{"files": ' + b"[" * 30_000 + b"]" * 30_000 + b"}",
        b'{"files": [' * 5_000,
        b'{"files": [{"path": "a", "size": ' + b"9" * 5_001 + b"}]}",
        b'{"size": -' + b"1" * 4_301 + b"}",
    ],
    ids=["deep-arrays", "deep-closed", "deep-objects", "huge-int", "huge-negative-int"],
)
def test_hostile_json_is_a_bad_request(raw: bytes) -> None:
    with pytest.raises(BadRequest):
        bodies.parse(bodies.UploadsBody, raw, limit=bodies.MANIFEST_LIMIT)


def test_nesting_at_the_limit_is_parsed_and_one_more_level_is_refused() -> None:
    fits = b'{"x": ' + b"[" * (bodies.MAX_DEPTH - 1) + b"]" * (bodies.MAX_DEPTH - 1) + b"}"
    assert bodies.nesting_depth(fits) == bodies.MAX_DEPTH
    assert bodies.parse(bodies.FinalizeBody, fits).files is None
    over = b'{"x": ' + b"[" * bodies.MAX_DEPTH + b"]" * bodies.MAX_DEPTH + b"}"
    with pytest.raises(BadRequest, match="nests deeper"):
        bodies.parse(bodies.FinalizeBody, over)


def test_depth_scan_ignores_brackets_inside_strings() -> None:
    text = json.dumps({"files": ["[" * 1000 + "]" * 1000, '{"\\"[['], "mode": "preview"})
    assert bodies.nesting_depth(text.encode()) == 2
    body = bodies.parse(bodies.FinalizeBody, text.encode(), limit=bodies.MANIFEST_LIMIT)
    assert body.files is not None and body.files[0].startswith("[[[")


def test_an_unterminated_string_is_scanned_once_and_refused() -> None:
    raw = b'{"files": ["\\"' + b'\\"' * 200_000 + b"[" * 1000
    assert bodies.nesting_depth(raw) == 2  # the open string swallows the brackets after it
    with pytest.raises(BadRequest, match="not valid JSON"):
        bodies.parse(bodies.FinalizeBody, raw, limit=bodies.MANIFEST_LIMIT)


def test_a_size_written_as_an_integral_float_is_that_integer() -> None:
    """JSON has one number type, and the OpenAPI `integer` admits 5.0: so does the parser."""
    files = bodies.parse(bodies.UploadsBody, b'{"files": [{"path": "a", "size": 5.0}]}').files
    assert files[0].size == 5 and isinstance(files[0].size, int)
    for bad in (b"5.5", b'"5"', b"true"):
        with pytest.raises(BadRequest):
            bodies.parse(bodies.UploadsBody, b'{"files": [{"path": "a", "size": ' + bad + b"}]}")
