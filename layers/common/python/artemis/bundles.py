"""Bundled uploads: many small files in one request, as a tar stream (plain, or gzip-compressed).

`parse` turns a request body into the files it carries, or refuses the whole bundle with a
typed error; nothing here writes anything, so a hostile bundle is refused before any write.
Pure: stdlib only, no I/O.

A bundle holds regular files only. Directory members are skipped (`tar -C build -cf - .`
writes them, and `./` before the names, which is stripped once). Links of any kind, devices,
fifos and sparse files are refused, and so is any name that is absolute, climbs out with `..`
or fails the upload route's path rules.

The archive's headers are never trusted: a member's declared size is checked against the
per-file limit and the running total against BUNDLE_MAX_BYTES before its data is read, the
member count is capped as the headers arrive, and a gzip body is inflated in bounded steps
with a hard ceiling on its output, so a gzip bomb is refused after a bounded amount of work.
Python's tarfile ends an archive quietly at the first header it cannot read; here the archive
must end with its end-of-archive block followed by nothing but zeros, so a header whose size
lies (data shorter than declared, or bytes left over where the next header should be) or a
truncated stream is refused rather than cut short.
"""

from __future__ import annotations

import hashlib
import io
import zlib
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Self, cast

from artemis import upload_paths
from artemis.errors import (
    ArtemisError,
    BundleDuplicate,
    BundleInvalid,
    BundleMemberInvalid,
    BundleTooLarge,
    BundleTooManyMembers,
    TooLarge,
)

# tarfile is imported by the first parse (about 10 ms), not with this module: the API's cold
# init imports the route documentation, which reads the limits below.
if TYPE_CHECKING:
    import tarfile

BUNDLE_MAX_MEMBERS = 2000
"""At most this many members per bundle, directory members included."""
BUNDLE_MAX_BYTES = 32 * 1024 * 1024
"""At most this many bytes of file data per bundle, unpacked."""

_BLOCK = 512  # a tar header, and the unit member data is padded to
_RECORD = 20 * _BLOCK  # what tar pads a whole archive to (tarfile.RECORDSIZE)
# What an archive within both caps can hold besides file data: per member its header, the
# padding of its data, and a pax or long-name header with a few blocks of name; then the
# end-of-archive blocks and the padding to a full record. A tar stream longer than this is
# over a cap whatever it holds, so inflating stops there.
STREAM_MAX_BYTES = BUNDLE_MAX_BYTES + BUNDLE_MAX_MEMBERS * 8 * _BLOCK + 2 * _RECORD
_GZIP_MAGIC = b"\x1f\x8b"
_READ_CHUNK = 64 * 1024
_SHOWN_NAME = 200  # characters of a member's name quoted back in an error
# Member types, as the tar formats spell them (tarfile's REGTYPE, AREGTYPE, CONTTYPE ...).
_DIRECTORY = b"5"
_REGULAR = frozenset({b"0", b"\0", b"7"})  # a file; an old-style file; a contiguous file
_REFUSED_TYPES = {
    b"2": "a symbolic link",
    b"1": "a hard link",
    b"3": "a character device",
    b"4": "a block device",
    b"6": "a fifo",
    b"S": "a sparse file",
}


@dataclass(frozen=True)
class Member:
    """One file of a bundle: its path relative to the deploy root, its bytes, their SHA-256."""

    path: str
    data: bytes
    sha256: bytes  # the 32 raw bytes


def parse(body: bytes, *, member_limit: int, key_prefix: str = "") -> list[Member]:
    """The bundle's files in archive order, each checked like a single upload (its path, and
    its full key `key_prefix + path` against S3's key length), or the error for the first
    thing wrong with the bundle."""
    import tarfile

    if not body:
        raise BundleInvalid("the body is empty: send a tar archive (optionally gzip-compressed)")
    source: IO[bytes]
    if body.startswith(_GZIP_MAGIC):
        source = cast(IO[bytes], _BoundedGunzip(body, STREAM_MAX_BYTES))
    elif len(body) > STREAM_MAX_BYTES:
        raise _over_total()
    else:
        source = io.BytesIO(body)
    # What the tar reader raises on bytes it cannot make sense of. A chain of thousands of
    # pax or long-name headers recurses once per header, hence RecursionError.
    unreadable = (
        tarfile.TarError, EOFError, ValueError, OverflowError, IndexError, RecursionError,
        zlib.error,
    )  # fmt: skip
    try:
        return _members(source, member_limit, key_prefix)
    except ArtemisError:
        raise
    except unreadable as err:
        raise _unreadable(err) from None


def _members(source: IO[bytes], member_limit: int, key_prefix: str) -> list[Member]:
    import tarfile

    last = _LastBlock()

    class Header(tarfile.TarInfo):
        """Keeps the last header block read: tarfile ends the archive quietly at a block it
        cannot read as a header, and that block tells why."""

        @classmethod
        def frombuf(cls, buf: bytes | bytearray, encoding: str, errors: str) -> Self:
            last.block = bytes(buf)
            return super().frombuf(buf, encoding, errors)

    with tarfile.open(
        fileobj=source, mode="r|", tarinfo=Header, encoding="utf-8", errors="surrogateescape"
    ) as tar:
        members = _read(tar, member_limit, key_prefix)
        _check_end(tar, last.block)
    return members


def _read(tar: tarfile.TarFile, member_limit: int, key_prefix: str) -> list[Member]:
    """Each member in turn: its header checked before its data is read."""
    members: list[Member] = []
    seen: set[str] = set()
    count = total = 0
    for info in tar:
        count += 1
        if count > BUNDLE_MAX_MEMBERS:
            raise BundleTooManyMembers(
                f"over {BUNDLE_MAX_MEMBERS} members (directory members count too)",
                detail={"limit": BUNDLE_MAX_MEMBERS},
            )
        path = _checked_path(info, key_prefix)
        if path is None:  # a directory: nothing to write
            continue
        if path in seen:
            raise BundleDuplicate(f"{_shown(path)} appears twice", detail={"path": _shown(path)})
        seen.add(path)
        if info.size < 0:
            raise BundleInvalid("a member's header declares a negative size")
        if info.size > member_limit:
            raise TooLarge(
                f"{_shown(path)}: over UPLOAD_MAX_BYTES ({member_limit})",
                detail={"member": _shown(path), "limit": member_limit,
                        "hint": "upload files this large with POST /api/deploy/{id}/uploads "
                        "(presigned direct uploads)"},
            )  # fmt: skip
        if total + info.size > BUNDLE_MAX_BYTES:
            raise _over_total()
        # The size was checked before a byte of the data was read; a stream shorter than
        # the declared size fails the read (tarfile.ReadError: refused as bundle_invalid).
        handle = tar.extractfile(info)
        data = handle.read() if handle is not None else b""
        if len(data) != info.size:
            raise BundleInvalid(f"{_shown(path)}: its data ends before its declared size")
        # Writers pad the last block of a member's data with zeros: anything else there is
        # data its header leaves out (a size that lies within one block).
        padding = cast(IO[bytes], tar.fileobj).read(-info.size % _BLOCK)
        if padding.count(0) != len(padding):
            raise BundleInvalid(
                f"{_shown(path)}: bytes follow its data in its last block (its header declares "
                "fewer bytes than it holds)"
            )
        total += len(data)
        members.append(Member(path, data, hashlib.sha256(data).digest()))
    return members


def _checked_path(info: tarfile.TarInfo, key_prefix: str) -> str | None:
    """The member's path relative to the deploy root; None for a directory member (skipped).
    Links and special files are refused, whatever their name."""
    if info.type in _REFUSED_TYPES or info.sparse is not None:
        kind = _REFUSED_TYPES.get(info.type, "a sparse file")
        raise _member_invalid(info.name, f"{kind}: a bundle holds regular files only")
    is_dir = info.type == _DIRECTORY
    if not is_dir and info.type not in _REGULAR:
        kind = info.type.decode("latin-1")
        raise _member_invalid(info.name, f"an unsupported member type ({kind!r})")
    if is_dir and info.name in (".", "./"):  # the root: `tar -C build -cf - .` writes `./`
        return None
    if info.name.startswith("/"):
        raise _member_invalid(info.name, "an absolute path")
    # Nothing else is normalized: the rest of the name must already be canonical.
    name = info.name.removeprefix("./")
    if is_dir:
        name = name.rstrip("/")
    if ".." in name.split("/"):
        raise _member_invalid(info.name, "a path that climbs out of the deploy (a .. segment)")
    problem = upload_paths.upload_path_error(name)
    if problem is None:
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:
            problem = "the path is not valid UTF-8"
    if problem is None and not is_dir:
        problem = upload_paths.key_length_error(key_prefix, name)
    if problem is not None:
        raise _member_invalid(info.name, problem)
    return None if is_dir else name


def _check_end(tar: tarfile.TarFile, block: bytes) -> None:
    """The archive ended at `block`, the first that is not a header: it must be a zero block
    (end of archive), followed by zeros only (a second one, and the padding to a record)."""
    if len(block) < _BLOCK:
        raise BundleInvalid("the archive is truncated: it ends without its end-of-archive block")
    if block.count(0) != _BLOCK:
        raise BundleInvalid(
            "bytes that are not a tar header follow a member (a header's size or checksum is wrong)"
        )
    while chunk := cast(IO[bytes], tar.fileobj).read(_READ_CHUNK):
        if chunk.count(0) != len(chunk):
            raise BundleInvalid("bytes follow the end-of-archive block")


@dataclass
class _LastBlock:
    block: bytes = b""


class _BoundedGunzip:
    """A gzip body's decompressed bytes, for reading front to back, inflated only as far as
    they are read and never past `cap` bytes (BundleTooLarge instead). Concatenated gzip
    members are one stream, and zero padding after the last is ignored, as gzip does."""

    def __init__(self, body: bytes, cap: int) -> None:
        self._inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        self._pending = body
        self._produced = 0
        self._cap = cap

    def read(self, size: int = -1) -> bytes:
        if size < 0:
            size = self._cap + 1
        out: list[bytes] = []
        got = 0
        while got < size:
            if self._inflater.eof:
                rest = self._inflater.unused_data.lstrip(b"\0")
                if not rest:
                    break
                self._inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
                self._pending = rest
            room = min(size - got, self._cap + 1 - self._produced)
            piece = self._inflater.decompress(self._pending, room)
            self._pending = self._inflater.unconsumed_tail
            self._produced += len(piece)
            if self._produced > self._cap:
                raise _over_total()
            if not piece and not self._pending and not self._inflater.eof:
                raise BundleInvalid("the gzip stream is truncated")
            out.append(piece)
            got += len(piece)
        return b"".join(out)


def _over_total() -> ArtemisError:
    return BundleTooLarge(
        f"the bundle unpacks to more than BUNDLE_MAX_BYTES ({BUNDLE_MAX_BYTES})",
        detail={"limit": BUNDLE_MAX_BYTES},
    )


def _unreadable(err: BaseException) -> ArtemisError:
    import tarfile

    text = str(err)
    if isinstance(err, zlib.error) or text.startswith("zlib error"):
        return BundleInvalid("the body starts like gzip but is not a valid gzip stream")
    if isinstance(err, tarfile.ReadError) and "unexpected end of data" in text:
        return BundleInvalid("the archive is truncated: a member's data ends before its size")
    return BundleInvalid("the body is not a tar archive, or one of its headers is corrupt")


def _member_invalid(name: str, reason: str) -> ArtemisError:
    shown = _shown(name)
    return BundleMemberInvalid(f"{shown}: {reason}", detail={"member": shown, "reason": reason})


def _shown(name: str) -> str:
    """A member name as quoted back: bytes that are not UTF-8 escaped, and long names cut."""
    text = name.encode("utf-8", "backslashreplace").decode("utf-8")
    return text if len(text) <= _SHOWN_NAME else text[:_SHOWN_NAME] + "…"
