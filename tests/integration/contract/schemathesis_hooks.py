"""Schemathesis hooks for the contract run (loaded through SCHEMATHESIS_HOOKS): the bundle
route's body is a tar archive, optionally gzip-compressed, which JSON Schema cannot describe,
so its media types get strategies that make real archives of files with valid paths. What
the server must refuse is covered by tests/integration/api/test_bundles.py."""

from __future__ import annotations

import gzip
import io
import tarfile

import schemathesis
from hypothesis import strategies as st

_SEGMENT = st.text("abcdefghijklmnopqrstuvwxyz0123456789_-", min_size=1, max_size=12)
_PATH = st.builds(
    lambda dirs, name, ext: "/".join([*dirs, name + ext]),
    st.lists(_SEGMENT, max_size=2),
    _SEGMENT,
    st.sampled_from([".html", ".js", ".css", ".json", ".txt", ""]),
)


def _tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path, data in files.items():
            info = tarfile.TarInfo(path)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


_BUNDLES = st.dictionaries(_PATH, st.binary(max_size=200), min_size=1, max_size=5).map(_tar)

schemathesis.openapi.media_type("application/x-tar", _BUNDLES)
schemathesis.openapi.media_type(
    "application/gzip", _BUNDLES.map(lambda body: gzip.compress(body, mtime=0))
)
