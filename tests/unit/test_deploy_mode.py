"""Finalize's mode parameter."""

import pytest

from artemis.deploy_mode import parse_mode


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
