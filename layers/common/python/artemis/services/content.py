"""Incremental deploys: the client sends each file's SHA-256 and size; the server copies, inside
the bucket, every file the site already holds in a finalized, live deploy, and answers which
files it still needs. The deploy prefix stays a complete copy of the build: nothing is
referenced across prefixes.

Copies are verified, not trusted: S3 computes the digest of each copy, and a copy whose bytes
are not the digest asked for (its source was overwritten since it was indexed) is deleted and
the file is asked for instead, as is one whose source vanished (GC moved it to trash).
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from artemis import bodies, content_types, invocation
from artemis.db import content as content_db
from artemis.db import deploy_lock
from artemis.db.content import FileDigest, Source
from artemis.errors import ArtemisError, BadRequest, DependencyError, TooLarge
from artemis.keys import Dirname
from artemis.runtime import Runtime
from artemis.services.deploys import check_key, check_path, refuse_closed, site_of
from artemis.session import SessionClaims

if TYPE_CHECKING:
    from artemis.bodies import DigestFile
    from artemis.responses import DigestsResponse

MAX_DIGEST_FILES = 5000
# What one request may copy: well inside the API's time limit whatever the site's size. The
# client sends what is left (`remaining`) again.
COPY_BATCH = 2000
COPY_SECONDS = 10.0
COPY_RESERVE_SECONDS = 5.0  # left to the request after its last copy starts
COPY_CONCURRENCY = 32


def digests(rt: Runtime, claims: SessionClaims, deploy_id: str, raw_body: bytes) -> DigestsResponse:
    from artemis.responses import DigestsResponse

    files = bodies.parse(bodies.DigestsBody, raw_body, limit=bodies.MANIFEST_LIMIT).files
    _validate(rt, claims, deploy_id, files)
    _, site = site_of(rt, claims.site)
    prefix = rt.settings.key_layout.deploy_prefix(site, deploy_id)
    wanted = {spec.path: spec for spec in files}  # a path listed twice: its last entry
    try:
        # The shared deploy lock for the whole call, as for an upload: a finalize or delete
        # waits for these copies, and none starts once either committed.
        with rt.db.transaction() as conn:
            refuse_closed(deploy_lock.share(conn, site, deploy_id))
            held = content_db.for_deploy(conn, site, deploy_id, list(wanted))
            copied = [p for p, spec in wanted.items() if _same(held.get(p), spec)]
            rest = [spec for p, spec in wanted.items() if not _same(held.get(p), spec)]
            found = content_db.sources(
                conn, site, list({bytes.fromhex(s.sha256) for s in rest}), excluding=deploy_id
            )
            plan = [(spec, found.get(bytes.fromhex(spec.sha256))) for spec in rest]
            upload = [spec.path for spec, src in plan if src is None or src.size != spec.size]
            copies = [
                (spec, src) for spec, src in plan if src is not None and src.size == spec.size
            ]
            done, failed, remaining = _copy(rt, prefix, site, copies)
            content_db.record(conn, site, deploy_id, done)
    except ArtemisError:
        raise
    except Exception as err:
        raise DependencyError("content_index_failed") from err
    return DigestsResponse(
        upload=upload + failed, copied=copied + [d.path for d in done], remaining=remaining
    )


def _validate(rt: Runtime, claims: SessionClaims, deploy_id: str, files: list[DigestFile]) -> None:
    if not files or len(files) > MAX_DIGEST_FILES:
        raise BadRequest(f"files must list 1 to {MAX_DIGEST_FILES} entries")
    limit = rt.settings.upload_max_bytes
    for spec in files:
        check_path(spec.path)
        check_key(rt, claims, deploy_id, spec.path)
        if spec.size > limit:
            raise TooLarge(f"{spec.path}: over UPLOAD_MAX_BYTES ({limit})")


def _same(row: FileDigest | None, spec: DigestFile) -> bool:
    return row is not None and row.sha256.hex() == spec.sha256 and row.size == spec.size


def _copy(
    rt: Runtime, prefix: str, site: Dirname, copies: list[tuple[DigestFile, Source]]
) -> tuple[list[FileDigest], list[str], list[str]]:
    """Copy in parallel, within this request's budget. Returns (copied, to upload, not tried)."""
    layout = rt.settings.key_layout
    stop_at = invocation.stop_time(COPY_SECONDS, COPY_RESERVE_SECONDS)

    def one(item: tuple[DigestFile, Source]) -> bool | None:
        spec, src = item
        if time.monotonic() >= stop_at:
            return None  # out of time: the client sends it again
        source_key = layout.deploy_prefix(site, src.deploy_id) + src.path
        return rt.bucket.copy_verified(
            source_key,
            prefix + spec.path,
            bytes.fromhex(spec.sha256),
            content_types.content_type_for(spec.path, spec.content_type),
        )

    batch, later = copies[:COPY_BATCH], copies[COPY_BATCH:]
    with ThreadPoolExecutor(COPY_CONCURRENCY) as pool:
        results = list(pool.map(one, batch)) if batch else []
    done = [
        FileDigest(spec.path, bytes.fromhex(spec.sha256), spec.size)
        for (spec, _), ok in zip(batch, results, strict=True)
        if ok
    ]
    failed = [spec.path for (spec, _), ok in zip(batch, results, strict=True) if ok is False]
    remaining = [spec.path for (spec, _), ok in zip(batch, results, strict=True) if ok is None]
    return done, failed, remaining + [spec.path for spec, _ in later]
