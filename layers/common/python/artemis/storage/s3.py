"""The bucket: every S3 call Artemis makes.

Each failure surfaces as a StorageError whose code names the primitive (`r2_put_failed`,
`r2_list_failed` … — the reference's spelling, kept for client compatibility).
Moves copy in parallel and delete in batches of up to 1,000 keys, page by page, so a move is
resumable: re-running the same (src, dst) completes whatever a failed run left behind.
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

from artemis.errors import StorageError
from artemis.keys import READYZ_PROBE_PREFIX, Dirname
from artemis.storage.objects import MoveIncomplete, ObjectInfo, PresignedPost

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

PAGE_SIZE = 1000  # ListObjectsV2 page and DeleteObjects batch ceiling
COPY_CONCURRENCY = 16
HASH_CHUNK = 1024 * 1024  # what one read of a streamed GET hashes at a time
_NOT_FOUND = {"404", "NoSuchKey", "NotFound"}
# A conditional copy whose source changed, or a source that vanished mid-request.
_SOURCE_GONE = _NOT_FOUND | {"412", "PreconditionFailed"}
_AWS_ERRORS = (ClientError, BotoCoreError)


def make_s3_client(endpoint_url: str | None = None, region: str | None = None) -> S3Client:
    import boto3  # deferred: ≈200 ms of import that only bucket-touching paths need

    config = Config(
        s3={"addressing_style": "path"},
        max_pool_connections=COPY_CONCURRENCY * 2,
        retries={"mode": "standard", "max_attempts": 3},
        connect_timeout=5,
        read_timeout=30,
    )
    return boto3.client("s3", endpoint_url=endpoint_url, region_name=region, config=config)


# Throttling and server-side error codes of S3 (and other AWS services) worth a retry.
TRANSIENT_AWS_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "RequestThrottled",
        "RequestTimeout",
        "RequestTimeoutException",
        "InternalError",
        "ServiceUnavailable",
        "503",
        "500",
    }
)


def is_transient(err: BaseException) -> bool:
    """True for an AWS failure a later attempt can get past: throttling, a 5xx or 429 answer,
    an unreachable endpoint, a dropped connection or a read timeout. Only `err` itself is
    looked at; a StorageError carries the botocore error as its cause."""
    if isinstance(err, (BotoConnectionError, HTTPClientError)):
        return True
    if isinstance(err, ClientError):
        error = err.response.get("Error", {})
        status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return error.get("Code") in TRANSIENT_AWS_CODES or status >= 500 or status == 429
    return False


def _is_not_found(err: Exception) -> bool:
    return (
        isinstance(err, ClientError)
        and str(err.response.get("Error", {}).get("Code")) in _NOT_FOUND
    )


def _require_prefix(prefix: str) -> None:
    # A prefix without the slash would also match siblings (`www` matches `www2/…`).
    if not prefix.endswith("/"):
        raise ValueError(f"prefix must end with /: {prefix!r}")


class Bucket:
    """One bucket. Thread-safe: boto3 clients may be shared across threads."""

    def __init__(self, client: S3Client, name: str) -> None:
        self.client = client
        self.name = name

    # --- single objects -------------------------------------------------------------
    def put(self, key: str, body: bytes, content_type: str) -> None:
        try:
            self.client.put_object(
                Bucket=self.name,
                Key=key,
                Body=body,
                ContentType=content_type,
                ContentLength=len(body),
            )
        except _AWS_ERRORS as err:
            raise StorageError("r2_put_failed") from err

    def put_many(
        self, items: Sequence[tuple[str, bytes, str]], *, stop_at: float | None = None
    ) -> list[bool]:
        """Put every (key, body, content type), COPY_CONCURRENCY at a time; per item, whether
        it was written. With `stop_at` (a `time.monotonic()` value) a put not started by then
        is skipped (False), so the caller's request ends in time and can answer what is left.
        The first failure (r2_put_failed) cancels the puts not yet started and is raised once
        the running ones ended; what was written by then stays written."""
        if not items:
            return []

        def one(item: tuple[str, bytes, str]) -> bool:
            if stop_at is not None and time.monotonic() >= stop_at:
                return False
            self.put(*item)
            return True

        with ThreadPoolExecutor(max_workers=min(COPY_CONCURRENCY, len(items))) as pool:
            try:
                return list(pool.map(one, items))
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)
                raise

    def get(self, key: str) -> bytes | None:
        """The object's bytes, or None when it does not exist."""
        try:
            return self.client.get_object(Bucket=self.name, Key=key)["Body"].read()
        except _AWS_ERRORS as err:
            if _is_not_found(err):
                return None
            raise StorageError("r2_get_failed") from err

    def sha256_of(self, key: str) -> tuple[bytes, int] | None:
        """The SHA-256 and length of the object's bytes, streamed (never held whole in
        memory); None when it does not exist."""
        digest = hashlib.sha256()
        size = 0
        try:
            body = self.client.get_object(Bucket=self.name, Key=key)["Body"]
            for chunk in body.iter_chunks(HASH_CHUNK):
                digest.update(chunk)
                size += len(chunk)
        except _AWS_ERRORS as err:
            if _is_not_found(err):
                return None
            raise StorageError("r2_get_failed") from err
        return digest.digest(), size

    def head(self, key: str) -> ObjectInfo | None:
        try:
            meta = self.client.head_object(Bucket=self.name, Key=key)
        except _AWS_ERRORS as err:
            if _is_not_found(err):
                return None
            raise StorageError("r2_head_failed") from err
        return ObjectInfo(key, int(meta["ContentLength"]))

    # --- aliases ----------------------------------------------------------------------
    def get_alias(self, key: str) -> str | None:
        """The deploy id an alias names; None for a missing or empty (whitespace) body."""
        body = self.get(key)
        if body is None:
            return None
        target = body.decode("utf-8", errors="replace").strip()
        return target or None

    def put_alias(self, key: str, deploy_id: str) -> None:
        self.put(key, deploy_id.encode(), "text/plain")

    def get_aliases(self, prefix: str) -> dict[str, str]:
        """Every alias object directly under `prefix` (a named previews folder): one listing,
        then the tiny bodies read COPY_CONCURRENCY at a time. Name -> deploy id; an object
        that vanished or is empty in between names nothing and is left out."""
        names = [
            obj.key[len(prefix) :]
            for obj in self.list_keys(prefix)
            if obj.key[len(prefix) :] and "/" not in obj.key[len(prefix) :]
        ]
        if not names:
            return {}
        with ThreadPoolExecutor(max_workers=min(COPY_CONCURRENCY, len(names))) as pool:
            targets = list(pool.map(lambda name: self.get_alias(prefix + name), names))
        return {name: target for name, target in zip(names, targets, strict=True) if target}

    # --- listing ----------------------------------------------------------------------
    def list_pages(self, prefix: str, *, start_after: str = "") -> Iterator[list[ObjectInfo]]:
        """Every key under `prefix`, one page (≤ 1,000 keys) per ListObjectsV2 call."""
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"Bucket": self.name, "Prefix": prefix, "MaxKeys": PAGE_SIZE}
            if token:
                kwargs["ContinuationToken"] = token
            elif start_after:
                kwargs["StartAfter"] = start_after
            try:
                resp = self.client.list_objects_v2(**kwargs)
            except _AWS_ERRORS as err:
                raise StorageError("r2_list_failed") from err
            page = [
                ObjectInfo(o["Key"], int(o.get("Size", 0)), str(o.get("ETag", "")).strip('"'))
                for o in resp.get("Contents", [])
            ]
            if page:
                yield page
            token = resp.get("NextContinuationToken")
            if not resp.get("IsTruncated") or not token:
                return

    def list_keys(self, prefix: str) -> list[ObjectInfo]:
        return [obj for page in self.list_pages(prefix) for obj in page]

    def has_prefix(self, prefix: str) -> bool:
        try:
            resp = self.client.list_objects_v2(Bucket=self.name, Prefix=prefix, MaxKeys=1)
        except _AWS_ERRORS as err:
            raise StorageError("r2_list_failed") from err
        return bool(resp.get("Contents"))

    def prefix_bytes(self, prefix: str) -> int:
        return sum(obj.size for page in self.list_pages(prefix) for obj in page)

    def list_children(self, prefix: str) -> list[str]:
        """The names of the "folders" directly under `prefix` (a `/`-delimited listing, so
        the cost follows the number of children, not of objects), in key order."""
        names: list[str] = []
        paginator = self.client.get_paginator("list_objects_v2")
        try:
            for resp in paginator.paginate(Bucket=self.name, Prefix=prefix, Delimiter="/"):
                for common in resp.get("CommonPrefixes", []):
                    name = common.get("Prefix", "")[len(prefix) :].rstrip("/")
                    if name:
                        names.append(name)
        except _AWS_ERRORS as err:
            raise StorageError("r2_list_failed") from err
        return names

    def list_sites(self) -> list[Dirname]:
        """Top-level names; names starting with `_` (trash, probes) are never sites."""
        return [Dirname(name) for name in self.list_children("") if not name.startswith("_")]

    def probe(self) -> None:
        """Readiness: one one-key listing of a prefix that never exists."""
        self.has_prefix(READYZ_PROBE_PREFIX)

    # --- move and delete --------------------------------------------------------------
    def move_object(self, src: str, dst: str) -> bool:
        """Copy then delete one key; False when the source does not exist."""
        try:
            self.client.copy_object(
                Bucket=self.name, Key=dst, CopySource={"Bucket": self.name, "Key": src}
            )
        except _AWS_ERRORS as err:
            if _is_not_found(err):
                return False
            raise MoveIncomplete(0) from err
        self._delete_batch([src], code="r2_move_failed")
        return True

    def move_prefix(self, src: str, dst: str) -> int:
        """Move every object under `src` to `dst` + (key minus src); return how many moved.

        Per page: copies in parallel, then one DeleteObjects for the keys that copied, so no
        object is ever lost. On any failure raise MoveIncomplete after deleting what copied.
        An absent or empty source moves nothing.
        """
        _require_prefix(src)
        _require_prefix(dst)
        if dst.startswith(src) or src.startswith(dst):
            raise ValueError("move source and destination must not nest")
        moved = 0
        with ThreadPoolExecutor(max_workers=COPY_CONCURRENCY) as pool:
            # Each page is deleted before the next listing, so listing from the start again
            # returns the next page; a failure stops the loop, so it cannot spin.
            while True:
                try:
                    page = next(self.list_pages(src), [])
                except StorageError as err:
                    raise MoveIncomplete(moved) from err
                if not page:
                    return moved
                results = list(pool.map(lambda o: self._copy(o.key, dst + o.key[len(src) :]), page))
                copied = [obj.key for obj, ok in zip(page, results, strict=True) if ok]
                try:
                    self._delete_batch(copied, code="r2_move_failed")
                except StorageError as err:
                    raise MoveIncomplete(moved) from err
                moved += len(copied)
                if len(copied) != len(page):
                    raise MoveIncomplete(moved)

    def copy_verified(self, src: str, dst: str, sha256: bytes, content_type: str) -> bool:
        """Copy `src` to `dst` inside the bucket, S3 computing the SHA-256 of the copy; True
        only when that digest is `sha256`. A source that vanished, or bytes that are not the
        expected ones (the source was overwritten since it was indexed), answer False and
        leave nothing at `dst`, so the caller asks for the bytes instead."""
        try:
            resp = self.client.copy_object(
                Bucket=self.name,
                Key=dst,
                CopySource={"Bucket": self.name, "Key": src},
                ChecksumAlgorithm="SHA256",
                MetadataDirective="REPLACE",
                ContentType=content_type,
            )
        except _AWS_ERRORS as err:
            if (
                isinstance(err, ClientError)
                and str(err.response.get("Error", {}).get("Code")) in _SOURCE_GONE
            ):
                return False
            raise StorageError("r2_copy_failed") from err
        checksum = resp.get("CopyObjectResult", {}).get("ChecksumSHA256", "")
        if checksum == base64.b64encode(sha256).decode():
            return True
        self._delete_batch([dst], code="r2_delete_failed")
        return False

    def _copy(self, src: str, dst: str) -> bool:
        try:
            self.client.copy_object(
                Bucket=self.name, Key=dst, CopySource={"Bucket": self.name, "Key": src}
            )
        except _AWS_ERRORS:
            return False
        return True

    def delete_prefix(self, prefix: str) -> int:
        """Delete every object under `prefix` (idempotent); return how many were deleted."""
        _require_prefix(prefix)
        deleted = 0
        while True:
            page = next(self.list_pages(prefix), [])
            if not page:
                return deleted
            self._delete_batch([o.key for o in page], code="r2_delete_failed")
            deleted += len(page)

    def delete_object(self, key: str) -> None:
        """Delete one object; deleting a missing key succeeds (S3 semantics)."""
        try:
            self.client.delete_object(Bucket=self.name, Key=key)
        except _AWS_ERRORS as err:
            raise StorageError("r2_delete_failed") from err

    def _delete_batch(self, keys: list[str], *, code: str) -> None:
        for start in range(0, len(keys), PAGE_SIZE):
            chunk = keys[start : start + PAGE_SIZE]
            try:
                resp = self.client.delete_objects(
                    Bucket=self.name,
                    Delete={"Objects": [{"Key": k} for k in chunk], "Quiet": True},
                )
            except _AWS_ERRORS as err:
                raise StorageError(code) from err
            if resp.get("Errors"):
                raise StorageError(code)

    # --- direct uploads -----------------------------------------------------------------
    def presigned_post(
        self, key: str, *, max_bytes: int, expires_in: int, content_type: str | None = None,
        sha256: bytes | None = None,
    ) -> PresignedPost:  # fmt: skip
        """A POST policy for exactly `key`, 0..max_bytes long, valid for `expires_in` s. With
        `sha256`, the policy binds the body's checksum: S3 refuses any other bytes."""
        fields: dict[str, str] = {}
        conditions: list[Any] = [["content-length-range", 0, max_bytes]]
        if content_type:
            fields["Content-Type"] = content_type
            conditions.append({"Content-Type": content_type})
        if sha256 is not None:
            fields["x-amz-checksum-algorithm"] = "SHA256"
            fields["x-amz-checksum-sha256"] = base64.b64encode(sha256).decode()
            conditions.append({"x-amz-checksum-algorithm": "SHA256"})
            conditions.append({"x-amz-checksum-sha256": fields["x-amz-checksum-sha256"]})
        try:
            post = self.client.generate_presigned_post(
                Bucket=self.name,
                Key=key,
                Fields=fields,
                Conditions=conditions,
                ExpiresIn=expires_in,
            )
        except _AWS_ERRORS as err:
            raise StorageError("r2_put_failed") from err
        return PresignedPost(url=post["url"], fields=dict(post["fields"]))
