"""Small files travel many to a request, as a tar stream (`PUT /api/deploy/{id}/bundle`).

A bundle stays under `BUNDLE_MAX_TAR` bytes of tar, so it passes API Gateway's body limit
after base64, and under the server's member cap. Sizes are planned from the file sizes the
walk saw, with room for a pax header per member (long or non-ASCII names).
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Sequence

from artemis_cli.files import BuildFile

BUNDLE_MAX_TAR = 3 * 1024 * 1024
BUNDLE_MAX_MEMBERS = 2000  # the server's cap (artemis.bundles.BUNDLE_MAX_MEMBERS)
_BLOCK = 512
_HEADERS_PER_MEMBER = 4 * _BLOCK  # the member's header plus a pax header and its records
_TRAILER = 2 * _BLOCK + tarfile.RECORDSIZE  # end-of-archive blocks, padding to a record


def tar_size(size: int) -> int:
    """The most one member of `size` bytes takes in the stream."""
    return _HEADERS_PER_MEMBER + -(-size // _BLOCK) * _BLOCK


def plan(files: Sequence[BuildFile], max_tar: int = BUNDLE_MAX_TAR,
         max_members: int = BUNDLE_MAX_MEMBERS) -> list[list[BuildFile]]:  # fmt: skip
    """Pack files into bundles, largest first (first fit decreasing keeps the count low)."""
    bundles: list[list[BuildFile]] = []
    room: list[int] = []
    for f in sorted(files, key=lambda f: (-f.size, f.path)):
        need = tar_size(f.size)
        for i, left in enumerate(room):
            if need <= left and len(bundles[i]) < max_members:
                bundles[i].append(f)
                room[i] -= need
                break
        else:
            bundles.append([f])
            room.append(max_tar - _TRAILER - need)
    return bundles


def pack(files: Sequence[BuildFile]) -> bytes:
    """The tar stream of `files`: regular members only, owner and time zeroed."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for f in files:
            data = f.source.read_bytes()
            info = tarfile.TarInfo(f.path)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()
