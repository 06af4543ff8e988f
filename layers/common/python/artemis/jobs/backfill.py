"""Backfill: rebuild the index from the bucket (the bucket is the truth for bytes and liveness;
the index can always be rebuilt from it).

For each top-level site name in the bucket (names starting with `_` — trash, probes — are never
sites), in sorted order:

1. **One listing** of the site prefix rendered from the configured template. Keys group by
   deploy id (the first path segment); a deploy has a marker iff its `_artemis_meta.json` is
   listed; its size is the sum of its listed `Size`s (no second listing per deploy).
2. **Guarded upsert** of each deploy (artemis.db.deploys.backfill_guarded): nothing is written
   when a tombstone exists for the deploy or the whole site — a tombstoned deploy is never
   resurrected, and is counted as `skipped_tombstoned`; new rows are active with the id-parsed
   time; existing rows keep their mtime, follow the bucket's marker and take a non-zero size;
   a pending row turns active only when the marker is present.
3. **Alias rows** from the alias objects (`<dirname>/<tail>` per channel, and every named
   preview in its folder): a missing or empty object, or one whose name the alias rule refuses,
   is skipped; a row that already names the object's target is left as it is. A rebuilt row is
   stamped with the run's `now`, so a named preview's TTL restarts at backfill rather than
   expiring a preview early.

4. **The content index** (`deploy_files`) of each finalized deploy (marker listed) that is
   not tombstoned: every listed object without a row gets one. Its digest comes from the
   marker (`digests`) when the marker's files record still gives the path the listing's ETag
   (the bytes are the ones finalize saw); otherwise the object is read (a streamed GET) and
   hashed, within a budget per run: at most `MAX_HASHED_OBJECTS` objects and
   `MAX_HASHED_BYTES` bytes, and never past the deadline (the sooner of the one passed in and
   the invocation's, artemis.invocation). What the budget does not reach is counted
   `deferred` and indexed by the next run. Rows are only ever added (an existing row is left
   as it is), and only while the deploy is still finalized and live (`fill_finalized`).

Each site's deploys and aliases are one transaction. A re-run converges to the same rows and
changes nothing. Before each site after the first the deadline is checked; out of time, the
result says `complete: false` and `resume_after` (pass it back as `start_after` to continue).
Any error fails the run (the sites done so far stay done). Backfill takes no site lock and
writes no audit row; its `job_runs` row (`backfill`) carries the counts.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from artemis import invocation
from artemis.alias_names import is_alias_name
from artemis.config import JobSettings
from artemis.db import aliases as aliases_db
from artemis.db import content as content_db
from artemis.db import deploys as deploys_db
from artemis.db.content import FileDigest
from artemis.deadlines import Deadline
from artemis.jobs.common import alias_object_targets, job_run
from artemis.jobs.reconcile import scan_site
from artemis.keys import Dirname, finalize_digests, finalize_record
from artemis.observability import logger
from artemis.reconcile_plan import Listed, trusted_digests
from artemis.runtime import Runtime

JOB = "backfill"
SITE_RESERVE_SECONDS = 30.0
# The hashing budget of one run (module docstring, step 4); read at each use, so a test may
# lower them.
MAX_HASHED_OBJECTS = 5000
MAX_HASHED_BYTES = 2 * 1024**3
# No hash starts with less than this left: the hashes in flight, then the next site's reserve.
HASH_RESERVE_SECONDS = SITE_RESERVE_SECONDS + 15.0
HASH_CONCURRENCY = 16


@dataclass
class BackfillResult:
    sites: int = 0
    keys_listed: int = 0
    deploys: int = 0  # deploys found in the bucket
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped_tombstoned: int = 0
    aliases: int = 0  # alias objects found and mirrored
    aliases_changed: int = 0
    size_probe_failures: int = 0  # sizes come from the one listing, so always 0
    digests_from_marker: int = 0  # index rows written from a marker's trusted digest
    hashed: int = 0  # index rows written from the object's bytes, read and hashed
    hashed_bytes: int = 0
    deferred: int = 0  # objects without a row left for the next run (the budget ran out)
    complete: bool = True
    resume_after: str | None = None
    tombstoned: list[str] = field(default_factory=list)  # "<dirname>/<id>", for the log
    duration_s: float = 0.0

    def counts(self) -> dict[str, Any]:
        return {k: v for k, v in self.to_json().items() if k != "tombstoned"}

    def to_json(self) -> dict[str, Any]:
        return {
            "sites": self.sites,
            "keys_listed": self.keys_listed,
            "deploys": self.deploys,
            "inserted": self.inserted,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "skipped_tombstoned": self.skipped_tombstoned,
            "aliases": self.aliases,
            "aliases_changed": self.aliases_changed,
            "size_probe_failures": self.size_probe_failures,
            "digests_from_marker": self.digests_from_marker,
            "hashed": self.hashed,
            "hashed_bytes": self.hashed_bytes,
            "deferred": self.deferred,
            "complete": self.complete,
            "resume_after": self.resume_after,
            "tombstoned": self.tombstoned,
            "duration_s": round(self.duration_s, 3),
        }


def run_backfill(
    rt: Runtime[JobSettings], *, now: datetime, deadline: Deadline, start_after: str | None = None
) -> BackfillResult:
    started = time.monotonic()
    result = BackfillResult()
    budget = _HashBudget(_sooner(deadline, invocation.current()))
    with job_run(rt.db, JOB) as record:
        try:
            for site in sorted(rt.bucket.list_sites()):
                if start_after is not None and site <= start_after:
                    continue
                if result.sites > 0 and not deadline.has(SITE_RESERVE_SECONDS):
                    result.complete = False
                    break
                _backfill_site(rt, site, now, result, budget)
                result.sites += 1
                result.resume_after = site
            if result.complete:
                result.resume_after = None
        finally:
            result.duration_s = time.monotonic() - started
            record.counts.update(result.counts())
    if result.skipped_tombstoned:
        logger.warning(
            "backfill.skipped_tombstoned",
            extra={"count": result.skipped_tombstoned, "deploys": result.tombstoned[:50]},
        )
    logger.info("backfill.complete", extra={"result": result.counts()})
    return result


def _sooner(deadline: Deadline, other: Deadline | None) -> Deadline:
    try:
        return deadline.sooner(other)
    except ValueError:  # another clock (a test's): the one passed in rules
        return deadline


class _HashBudget:
    """What this run may still read to hash: objects, bytes and time."""

    def __init__(self, deadline: Deadline) -> None:
        self.deadline = deadline
        self.objects = 0
        self.bytes = 0

    def take(self, size: int) -> bool:
        if (
            self.objects >= MAX_HASHED_OBJECTS
            or self.bytes + size > MAX_HASHED_BYTES
            or not self.deadline.has(HASH_RESERVE_SECONDS)
        ):
            return False
        self.objects += 1
        self.bytes += size
        return True


def _backfill_site(
    rt: Runtime[JobSettings],
    site: Dirname,
    now: datetime,
    result: BackfillResult,
    budget: _HashBudget,
) -> None:
    layout = rt.settings.key_layout
    deploys, keys, files = scan_site(rt.bucket, layout, site, now)
    finalized: list[str] = []
    targets = alias_object_targets(rt.bucket, layout, site)
    result.keys_listed += keys
    result.deploys += len(deploys)
    with rt.db.transaction() as conn:
        for deploy in deploys:
            outcome = deploys_db.backfill_guarded(
                conn, site, deploy.id, deploy.time, deploy.has_marker, deploy.bytes
            )
            if outcome == "tombstoned":
                result.skipped_tombstoned += 1
                result.tombstoned.append(f"{site}/{deploy.id}")
            else:
                setattr(result, outcome, getattr(result, outcome) + 1)
                if deploy.has_marker:
                    finalized.append(deploy.id)
        current = {row.name: row.deploy_id for row in aliases_db.for_site(conn, site)}
        for name, target in sorted(targets.items()):
            if not is_alias_name(name):  # an object the rule refuses names no alias row
                logger.warning("backfill.alias_name_refused", extra={"site": site, "alias": name})
                continue
            result.aliases += 1
            if current.get(name) != target:
                aliases_db.upsert(conn, site, name, target, now)
                result.aliases_changed += 1
    if finalized:
        _index_site(rt, site, finalized, files, result, budget)


def _index_site(
    rt: Runtime[JobSettings],
    site: Dirname,
    finalized: list[str],
    files: dict[str, dict[str, Listed]],
    result: BackfillResult,
    budget: _HashBudget,
) -> None:
    """Step 4 of the module docstring for one site's finalized deploys."""
    layout = rt.settings.key_layout
    with rt.db.transaction() as conn:
        have = content_db.indexed_paths(conn, site)
    for deploy_id in finalized:
        listed = files.get(deploy_id, {})
        absent = sorted(set(listed) - have.get(deploy_id, frozenset()))
        if not absent:
            continue
        body = rt.bucket.get(layout.marker_key(site, deploy_id))
        trusted = trusted_digests(finalize_record(body), finalize_digests(body), listed, absent)
        from_marker = [FileDigest(p, bytes.fromhex(d), listed[p].size) for p, d in trusted.items()]
        prefix = layout.deploy_prefix(site, deploy_id)
        hashed, deferred = _hash(
            rt, prefix, [p for p in absent if p not in trusted], listed, budget
        )
        with rt.db.transaction() as conn:
            written = content_db.fill_finalized(conn, site, deploy_id, from_marker + hashed)
        if written is None:  # tombstoned or deleted meanwhile: nothing of it is indexed
            continue
        result.digests_from_marker += len(from_marker)
        result.hashed += len(hashed)
        result.hashed_bytes += sum(f.size for f in hashed)
        result.deferred += len(deferred)


def _hash(
    rt: Runtime[JobSettings],
    prefix: str,
    paths: list[str],
    listed: dict[str, Listed],
    budget: _HashBudget,
) -> tuple[list[FileDigest], list[str]]:
    """Hash what the budget allows, HASH_CONCURRENCY at a time, one round after another so
    the deadline is asked before each round. Returns (digests, deferred paths); an object
    that vanished meanwhile is neither."""
    digests: list[FileDigest] = []
    deferred: list[str] = []
    with ThreadPoolExecutor(HASH_CONCURRENCY) as pool:
        for start in range(0, len(paths), HASH_CONCURRENCY):
            batch = paths[start : start + HASH_CONCURRENCY]
            taken = [p for p in batch if budget.take(listed[p].size)]
            deferred += [p for p in batch if p not in taken]
            for path, found in zip(
                taken, pool.map(lambda p: rt.bucket.sha256_of(prefix + p), taken), strict=True
            ):
                if found is not None:
                    digests.append(FileDigest(path, found[0], found[1]))
    return digests, deferred
