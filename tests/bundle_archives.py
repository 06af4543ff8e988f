"""Tar archives for the bundle tests, built in memory: well-formed ones with the standard
library's tarfile, hostile ones by editing header bytes (and fixing the checksum, so only the
lie under test is wrong)."""

from __future__ import annotations

import gzip
import io
import tarfile
import zlib
from collections.abc import Iterable

BLOCK = tarfile.BLOCKSIZE
SIZE_FIELD = slice(124, 136)
CHECKSUM_FIELD = slice(148, 156)


def archive(
    files: Iterable[tuple[str, bytes]], *, fmt: int = tarfile.PAX_FORMAT, root: bool = False
) -> bytes:
    """A tar of regular files in order; with `root`, as `tar -C dir -cf - .` writes it: `./`
    before every name, a `./` member first and a directory member before each directory's
    first file."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        made: set[str] = set()
        if root:
            tar.addfile(entry("./", tarfile.DIRTYPE))
        for name, data in files:
            if root:
                parts = name.split("/")[:-1]
                for depth in range(1, len(parts) + 1):
                    directory = "/".join(parts[:depth])
                    if directory not in made:
                        made.add(directory)
                        tar.addfile(entry(f"./{directory}/", tarfile.DIRTYPE))
                name = f"./{name}"
            tar.addfile(entry(name, size=len(data)), io.BytesIO(data))
    return buf.getvalue()


def entry(
    name: str, kind: bytes = tarfile.REGTYPE, *, size: int = 0, link: str = ""
) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.size, info.linkname = kind, size, link
    return info


def archive_of(
    members: Iterable[tuple[tarfile.TarInfo, bytes | None]], fmt: int = tarfile.PAX_FORMAT
) -> bytes:
    """A tar of the given members (headers as given: links, devices, pax records ...)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def with_size(body: bytes, header_at: int, size: int) -> bytes:
    """`body` with the ustar header at byte `header_at` declaring `size`, checksum fixed."""
    out = bytearray(body)
    out[header_at + SIZE_FIELD.start : header_at + SIZE_FIELD.stop] = b"%011o\0" % size
    return fix_checksum(out, header_at)


def fix_checksum(body: bytearray, header_at: int) -> bytes:
    header = slice(header_at, header_at + BLOCK)
    field = slice(header_at + CHECKSUM_FIELD.start, header_at + CHECKSUM_FIELD.stop)
    body[field] = b" " * 8
    body[field] = b"%06o\0 " % sum(body[header])
    return bytes(body)


def empty_files(count: int) -> bytes:
    """A ustar archive of `count` empty files named f0000000 ...; the headers are stamped from
    one template, which is far faster than tarfile for 100,000 members."""
    template = bytearray(entry("f0000000").tobuf(format=tarfile.USTAR_FORMAT))
    template[CHECKSUM_FIELD] = b" " * 8
    base = sum(template) - sum(b"f0000000")
    out = bytearray()
    for n in range(count):
        name = b"f%07d" % n
        template[0:8] = name
        template[CHECKSUM_FIELD] = b"%06o\0 " % (base + sum(name))
        out += template
    return bytes(out + bytes(2 * BLOCK))


def gzip_stream(parts: Iterable[bytes], level: int = 6) -> bytes:
    """One gzip stream of the concatenated parts, compressed as they come (a part may be a
    chunk of a large run of zeros that is never held whole)."""
    packer = zlib.compressobj(level, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    out = [packer.compress(part) for part in parts]
    out.append(packer.flush())
    return b"".join(out)


def zero_member_bomb(declared: int, zeros: int) -> bytes:
    """gzip of one member declaring `declared` bytes, followed by `zeros` zero bytes (fed in
    1 MiB chunks): megabytes that inflate to far more."""
    header = entry("bomb.bin", size=declared).tobuf(format=tarfile.GNU_FORMAT)
    chunk = bytes(1 << 20)
    return gzip_stream([header, *(chunk for _ in range(zeros // len(chunk)))], level=9)


def gz(body: bytes) -> bytes:
    return gzip.compress(body, compresslevel=6, mtime=0)
