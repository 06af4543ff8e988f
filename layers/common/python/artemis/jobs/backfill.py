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
3. **Alias rows** from the alias objects (`<dirname>/<tail>` per channel): a missing or empty
   object is skipped; a row that already names the object's target is left as it is.

Each site is one transaction. A re-run converges to the same rows and changes nothing.
Before each site after the first the deadline is checked; out of time, the result says
`complete: false` and `resume_after` (pass it back as `start_after` to continue). Any error
fails the run (the sites done so far stay done). Backfill takes no site lock and writes no audit
row; its `job_runs` row (`backfill`) carries the counts.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from artemis.config import JobSettings
from artemis.db import aliases as aliases_db
from artemis.db import deploys as deploys_db
from artemis.deadlines import Deadline
from artemis.jobs.common import job_run
from artemis.jobs.reconcile import list_site
from artemis.keys import ALIAS_NAMES, Dirname
from artemis.observability import logger
from artemis.runtime import Runtime

JOB = "backfill"
SITE_RESERVE_SECONDS = 30.0


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
    with job_run(rt.db, JOB) as record:
        try:
            for site in sorted(rt.bucket.list_sites()):
                if start_after is not None and site <= start_after:
                    continue
                if result.sites > 0 and not deadline.has(SITE_RESERVE_SECONDS):
                    result.complete = False
                    break
                _backfill_site(rt, site, now, result)
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


def _backfill_site(
    rt: Runtime[JobSettings], site: Dirname, now: datetime, result: BackfillResult
) -> None:
    layout = rt.settings.key_layout
    deploys, keys = list_site(rt.bucket, layout, site, now)
    targets = {name: rt.bucket.get_alias(layout.alias_key(site, name)) for name in ALIAS_NAMES}
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
        current = {row.name: row.deploy_id for row in aliases_db.for_site(conn, site)}
        for name, target in targets.items():
            if not target:
                continue
            result.aliases += 1
            if current.get(name) != target:
                aliases_db.upsert(conn, site, name, target, now)
                result.aliases_changed += 1
