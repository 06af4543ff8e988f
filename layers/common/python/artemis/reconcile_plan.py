"""The reconciler's decision table and blast cap. Pure: no I/O.

Inputs are one site's snapshot — the deploy ids the bucket listing found (with marker flags
and id-parsed times), the active index rows, and the alias set (the union of alias rows and
alias objects) — plus one injected `now` and the grace period. The same inputs always give
the same, sorted output, whatever order they arrive in.

| In bucket | Active row | Aliased | Marker | Age vs grace | Class           |
| --------- | ---------- | ------- | ------ | ------------ | --------------- |
| yes       | no         | yes     | yes    | any          | reindex         |
| yes       | no         | yes     | no     | any          | aliased_missing |
| yes       | no         | no      | yes    | any          | reindex         |
| yes       | no         | no      | no     | ≥ grace      | tombstone       |
| yes       | no         | no      | no     | < grace      | deferred        |
| no        | yes        | yes     | —      | any          | aliased_missing |
| no        | yes        | no      | —      | ≥ grace (row mtime) | prune    |
| no        | yes        | no      | —      | < grace      | deferred        |
| yes       | yes        | —       | —      | —            | (consistent)    |
| no        | no         | yes     | —      | —            | aliased_missing |

The last row goes beyond the reference's table: an alias (row or object) that names a deploy
with neither bytes nor a row serves nothing, so it is reported with the other aliased-missing
deploys. Like them it is report-only; no repair ever acts on it.

Two more classes are dangerous and report-only, and no repair acts on them:

* `aliased_tombstoned`: an alias names a deploy that has a tombstone. Delete refuses an
  aliased deploy, so this only arises from writes around a delete (a deleted deploy's session
  finalizing it again); whatever the alias serves, its bytes are on their way to the hard
  delete. Such an id is in no other class.
* `written_after_finalize`: a finalized deploy holds an object its completion marker does not
  record (a key added, or one whose ETag changed, after finalize listed the deploy) — a
  presigned POST, which cannot be recalled, landing after finalize. The id may be in another
  class as well.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from artemis.retention import oldest_n

_ID_TIME = re.compile(r"\d{8}-\d{6}")


def deploy_time(deploy_id: str, now: datetime) -> datetime:
    """The UTC time in a deploy id's first 15 characters (`YYYYMMDD-HHMMSS`), else `now`:
    an id that does not parse has age zero, so it is never old enough to reclaim."""
    head = deploy_id[:15]
    if not _ID_TIME.fullmatch(head):
        return now
    try:
        return datetime.strptime(head, "%Y%m%d-%H%M%S").replace(tzinfo=UTC)
    except ValueError:
        return now


@dataclass(frozen=True)
class BucketDeploy:
    """One deploy id found by the site listing."""

    id: str
    has_marker: bool
    time: datetime  # parsed from the id (deploy_time)
    bytes: int = 0


@dataclass(frozen=True)
class IndexedDeploy:
    """One active index row (pending rows are invisible to the reconciler)."""

    id: str
    mtime: datetime


@dataclass(frozen=True)
class Classification:
    """Deploy ids per report class, each sorted."""

    reindex: tuple[str, ...] = ()
    tombstone: tuple[str, ...] = ()
    prune: tuple[str, ...] = ()
    aliased_missing: tuple[str, ...] = ()
    deferred: tuple[str, ...] = ()
    aliased_tombstoned: tuple[str, ...] = ()
    written_after_finalize: tuple[str, ...] = ()

    @property
    def dangerous(self) -> int:
        """Ids an operator must look at: each of these classes pages."""
        return (
            len(self.aliased_missing)
            + len(self.aliased_tombstoned)
            + len(self.written_after_finalize)
        )

    @property
    def destructive(self) -> int:
        return len(self.tombstone) + len(self.prune)

    @property
    def reclaimable(self) -> int:
        """What the drift verdict counts: reindex + tombstone."""
        return len(self.reindex) + len(self.tombstone)

    def is_clean(self) -> bool:
        return not (
            self.reindex or self.tombstone or self.prune or self.aliased_missing
            or self.aliased_tombstoned or self.written_after_finalize
        )  # fmt: skip

    def to_json(self) -> dict[str, list[str]]:
        return {
            "reindex": list(self.reindex),
            "tombstone": list(self.tombstone),
            "prune": list(self.prune),
            "aliased_missing": list(self.aliased_missing),
            "deferred": list(self.deferred),
            "aliased_tombstoned": list(self.aliased_tombstoned),
            "written_after_finalize": list(self.written_after_finalize),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Classification:
        return cls(**{name: tuple(data.get(name, ())) for name in CLASSES})


CLASSES = (
    "reindex",
    "tombstone",
    "prune",
    "aliased_missing",
    "deferred",
    "aliased_tombstoned",
    "written_after_finalize",
)


def classify(
    bucket: Iterable[BucketDeploy],
    indexed: Iterable[IndexedDeploy],
    aliased: Iterable[str],
    *,
    now: datetime,
    grace: timedelta,
    tombstoned: Iterable[str] = (),
    unrecorded: Iterable[str] = (),
) -> Classification:
    """Apply the decision table (module docstring) to one site's snapshot. `tombstoned`: the
    site's tombstoned deploy ids; `unrecorded`: finalized deploys holding objects their
    finalize did not record."""
    alias_set = set(aliased)
    # An alias naming a tombstoned deploy is reported as such and nowhere else.
    aliased_tombstoned = alias_set & set(tombstoned)
    in_bucket: dict[str, BucketDeploy] = {}
    for deploy in bucket:
        if deploy.id in aliased_tombstoned:
            continue
        seen = in_bucket.get(deploy.id)
        if seen is None or (deploy.has_marker and not seen.has_marker):
            in_bucket[deploy.id] = deploy
    rows = {row.id: row for row in indexed if row.id not in aliased_tombstoned}
    alias_set -= aliased_tombstoned
    reindex: list[str] = []
    tombstone: list[str] = []
    prune: list[str] = []
    aliased_missing: list[str] = []
    deferred: list[str] = []
    for deploy_id, deploy in in_bucket.items():
        if deploy_id in rows:
            continue  # presence drift only: fields are never compared
        if deploy.has_marker:
            reindex.append(deploy_id)  # classes 1 and 3
        elif deploy_id in alias_set:
            aliased_missing.append(deploy_id)  # class 2: never removed
        elif now - deploy.time >= grace:
            tombstone.append(deploy_id)  # class 4
        else:
            deferred.append(deploy_id)  # possibly still uploading
    for deploy_id, row in rows.items():
        if deploy_id in in_bucket:
            continue
        if deploy_id in alias_set:
            aliased_missing.append(deploy_id)  # class 5
        elif now - row.mtime >= grace:
            prune.append(deploy_id)  # class 6
        else:
            deferred.append(deploy_id)  # bytes may still be arriving
    for deploy_id in alias_set:
        if deploy_id not in in_bucket and deploy_id not in rows:
            aliased_missing.append(deploy_id)  # an alias that names nothing
    return Classification(
        reindex=tuple(sorted(reindex)),
        tombstone=tuple(sorted(tombstone)),
        prune=tuple(sorted(prune)),
        aliased_missing=tuple(sorted(aliased_missing)),
        deferred=tuple(sorted(deferred)),
        aliased_tombstoned=tuple(sorted(aliased_tombstoned)),
        written_after_finalize=tuple(sorted(set(unrecorded))),
    )


def listing_fault(listed_ids: int, indexed_rows: int, prefix: str) -> str | None:
    """The empty-listing fault: no deploy ids under the prefix while the index has
    active rows is indistinguishable from total drift (a wrong bucket, prefix or keyspace),
    so nothing may act on it. None when the snapshot is usable."""
    if listed_ids == 0 and indexed_rows > 0:
        return (
            f"the listing of {prefix!r} found no deploys while {indexed_rows} active index"
            f" row(s) exist; refusing to classify (wrong bucket, prefix or key template?)"
        )
    return None


@dataclass(frozen=True)
class CapDecision:
    """The destructive repairs a live run may execute under the blast cap."""

    tombstone: tuple[str, ...]
    prune: tuple[str, ...]
    capped: bool
    reason: str


def _oldest(ids: tuple[str, ...], n: int) -> tuple[str, ...]:
    # Ids sort lexicographically in time order, so reconcile's "older" is the smaller id.
    return tuple(oldest_n(ids, n, key=lambda deploy_id: deploy_id))


def apply_cap(classification: Classification, cap: int) -> CapDecision:
    """Reindex is never capped (it removes nothing); tombstones take the oldest `cap` slots
    and prunes the remaining budget, oldest first; a cap ≤ 0 refuses every destructive
    repair."""
    tombstone, prune = classification.tombstone, classification.prune
    destructive = len(tombstone) + len(prune)
    if destructive == 0 or (cap > 0 and destructive <= cap):
        return CapDecision(tombstone, prune, False, "")
    if cap <= 0:
        reason = f"blast cap {cap} refuses every destructive repair ({destructive} planned)"
        return CapDecision((), (), True, reason)
    kept_tombstones = _oldest(tombstone, cap)
    kept_prunes = _oldest(prune, cap - len(kept_tombstones))
    return CapDecision(
        kept_tombstones,
        kept_prunes,
        True,
        f"{destructive} destructive repairs exceed blast cap {cap}; taking the oldest"
        f" {len(kept_tombstones)} tombstone(s) and {len(kept_prunes)} prune(s)",
    )


@dataclass(frozen=True)
class RepairPlan:
    """A classification plus the cap decision.

    `classification` is always the full plan. A live run executes `reindex`, then the capped
    `tombstone`, then the capped `prune`. A dry run's report lists the full plan: the cap is
    applied to a copy only to set `capped`/`reason` as a warning (a ceiling must never turn a
    dry run into a false all-clear).
    """

    classification: Classification
    dry_run: bool
    cap: int
    tombstone: tuple[str, ...]
    prune: tuple[str, ...]
    capped: bool
    reason: str

    @property
    def reindex(self) -> tuple[str, ...]:
        return self.classification.reindex

    @property
    def report(self) -> Classification:
        """What the run reports as planned: everything in a dry run; the capped plan live."""
        if self.dry_run:
            return self.classification
        return replace(self.classification, tombstone=self.tombstone, prune=self.prune)

    def to_json(self) -> dict[str, Any]:
        return {
            **self.report.to_json(),
            "dry_run": self.dry_run,
            "cap": self.cap,
            "capped": self.capped,
            "cap_reason": self.reason,
        }


def build_plan(classification: Classification, cap: int, *, dry_run: bool) -> RepairPlan:
    decision = apply_cap(classification, cap)
    return RepairPlan(
        classification=classification,
        dry_run=dry_run,
        cap=cap,
        tombstone=decision.tombstone,
        prune=decision.prune,
        capped=decision.capped,
        reason=decision.reason,
    )
