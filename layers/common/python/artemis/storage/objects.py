"""What the bucket adapter returns and raises, importable without botocore (the services
need these names on the cold path; the S3 client itself loads only when a route touches it)."""

from __future__ import annotations

from dataclasses import dataclass

from artemis.errors import StorageError


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    etag: str = ""  # without its quotes; listings carry it, a HEAD does not fill it


@dataclass(frozen=True)
class PresignedPost:
    url: str
    fields: dict[str, str]


class MoveIncomplete(StorageError):
    """A move stopped part-way; `moved` objects reached the destination. Re-run to finish."""

    def __init__(self, moved: int) -> None:
        super().__init__("r2_move_failed")
        self.moved = moved
