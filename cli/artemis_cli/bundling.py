"""Small files travel many to a request, as a tar stream (`PUT /api/deploy/{id}/bundle`).

A bundle stays under `BUNDLE_MAX_TAR` bytes of tar, so it passes API Gateway's body limit
after base64, and under the server's member cap. Sizes are planned from the file sizes the
walk saw and the names, as tarfile writes them (a pax header only for a long or non-ASCII
name).
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Sequence

from artemis_cli.files import BuildFile

BUNDLE_MAX_TAR = 3 * 1024 * 1024
BUNDLE_MAX_MEMBERS = 2000  # the server's cap (artemis.bundles.BUNDLE_MAX_MEMBERS)
_BLOCK = 512
_USTAR_NAME = 100  # longer names, or names not in ASCII, take a pax header
_PAX_RECORD = 64  # a pax record's length, keyword and newline around the name, with room
_TRAILER = 2 * _BLOCK + tarfile.RECORDSIZE  # end-of-archive blocks, padding to a record


def _blocks(size: int) -> int:
    return -(-size // _BLOCK) * _BLOCK


def tar_size(f: BuildFile) -> int:
    """The most one member takes in the stream: its header, a pax header when its name needs
    one, and its data padded to a block."""
    name = f.path.encode()
    pax = (
        0
        if len(name) <= _USTAR_NAME and f.path.isascii()
        else _BLOCK + _blocks(len(name) + _PAX_RECORD)
    )
    return _BLOCK + pax + _blocks(f.size)


def plan(files: Sequence[BuildFile], max_tar: int = BUNDLE_MAX_TAR,
         max_members: int = BUNDLE_MAX_MEMBERS) -> list[list[BuildFile]]:  # fmt: skip
    """Pack files into bundles, largest first (first fit decreasing keeps the count low)."""
    bundles: list[list[BuildFile]] = []
    room: list[int] = []
    for f in sorted(files, key=lambda f: (-f.size, f.path)):
        need = tar_size(f)
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
