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
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

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


# --- the content index (deploy_files) ---------------------------------------------------------
#
# Which index rows point at nothing (orphans) and which objects of a finalized deploy have no
# row (missing), per deploy, from the same listing and the same reads as the table above:
#
# | Deploy (rows, tombstones, listing)                 | Orphan rows         | Missing rows  |
# | -------------------------------------------------- | ------------------- | ------------- |
# | tombstoned (deploy or site)                        | all                 | none          |
# | pending row                                        | none (in flight)    | none          |
# | no row, no marker listed                           | all                 | none          |
# | marker listed; active row, or no row (reindex)     | paths not listed    | listed paths  |
# | active row, no marker listed, none of it listed    | all                 | none          |
# | active row, no marker listed, unfinalized (db)     | paths not listed    | none          |
# | active row finalized (db), marker not yet listed   | none (the listing   | none          |
# |                                                    | predates finalize)  |               |
#
# A pending deploy records digests before its bytes land (a presigned POST is indexed when it
# is issued), so its rows are never judged. A missing row is restored from the completion
# marker only where the marker's ETag for the path is the listing's: a marker digest of bytes
# that changed since finalize is never trusted (backfill hashes those).

INDEX_SAMPLE = 10  # examples per finding in a report; the counts are always complete
_HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Listed:
    """One object a listing showed under a deploy prefix (the marker excluded)."""

    etag: str
    size: int


@dataclass(frozen=True)
class DeployState:
    """A deploy's row in `deploys` (any state)."""

    state: str
    has_marker: bool


def _sample(found: dict[str, tuple[str, ...]], n: int) -> tuple[str, ...]:
    out: list[str] = []
    for deploy_id in sorted(found):
        for path in found[deploy_id]:
            if len(out) == n:
                return tuple(out)
            out.append(f"{deploy_id}/{path}")
    return tuple(out)


@dataclass(frozen=True)
class IndexDrift:
    """Index rows that point at nothing and finalized objects without a row, per deploy id
    (paths sorted)."""

    orphans: dict[str, tuple[str, ...]] = field(default_factory=dict)
    missing: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def orphan_rows(self) -> int:
        return sum(len(p) for p in self.orphans.values())

    @property
    def missing_rows(self) -> int:
        return sum(len(p) for p in self.missing.values())

    def orphan_sample(self, n: int = INDEX_SAMPLE) -> tuple[str, ...]:
        """Up to `n` orphan rows as `<deploy id>/<path>`, in order."""
        return _sample(self.orphans, n)

    def missing_sample(self, n: int = INDEX_SAMPLE) -> tuple[str, ...]:
        return _sample(self.missing, n)


def index_drift(
    listed: Mapping[str, Mapping[str, Listed]],
    markers: Collection[str],
    states: Mapping[str, DeployState],
    indexed: Mapping[str, Collection[str]],
    *,
    tombstoned: Collection[str] = (),
    site_tombstoned: bool = False,
) -> IndexDrift:
    """Apply the index table above. `listed`: deploy id → relative path → object, from the
    site listing; `markers`: ids whose marker it showed; `states`: the site's deploy rows;
    `indexed`: deploy id → the paths its `deploy_files` rows name."""
    orphans: dict[str, tuple[str, ...]] = {}
    missing: dict[str, tuple[str, ...]] = {}
    gone = set(tombstoned)
    for deploy_id in sorted(set(indexed) | set(markers)):
        rows = set(indexed.get(deploy_id, ()))
        files = listed.get(deploy_id, {})
        state = states.get(deploy_id)
        has_marker = deploy_id in markers
        if site_tombstoned or deploy_id in gone:
            stale, absent = rows, set[str]()
        elif state is not None and state.state != "active":
            continue  # a session in flight (or an expired one gc-site removes)
        elif has_marker:
            stale, absent = rows - set(files), set(files) - rows
        elif state is None or not files:
            stale, absent = rows, set()
        elif state.has_marker:
            continue  # finalized after the listing was taken: nothing to judge by
        else:
            stale, absent = rows - set(files), set()
        if stale:
            orphans[deploy_id] = tuple(sorted(stale))
        if absent:
            missing[deploy_id] = tuple(sorted(absent))
    return IndexDrift(orphans, missing)


def trusted_digests(
    record: Mapping[str, str] | None,
    digests: Mapping[str, str],
    files: Mapping[str, Listed],
    paths: Iterable[str],
) -> dict[str, str]:
    """Of `paths`, those whose marker digest may be trusted: the marker's files record gives
    the path the ETag the listing shows now (the bytes are still the ones finalize saw) and
    the digest is well formed. Path → lowercase hex."""
    if record is None:
        return {}
    trusted: dict[str, str] = {}
    for path in paths:
        listed, digest = files.get(path), digests.get(path, "").lower()
        if listed and listed.etag and record.get(path) == listed.etag and _HEX64.fullmatch(digest):
            trusted[path] = digest
    return trusted


@dataclass(frozen=True)
class IndexRepair:
    """One deploy's index repair: rows to delete, rows to restore from its marker (path →
    hex digest) and missing rows left for backfill (no trusted marker digest)."""

    orphans: tuple[str, ...] = ()
    restore: dict[str, str] = field(default_factory=dict)
    deferred: tuple[str, ...] = ()


@dataclass(frozen=True)
class IndexPlan:
    drift: IndexDrift = field(default_factory=IndexDrift)
    deploys: dict[str, IndexRepair] = field(default_factory=dict)  # only deploys with work

    @property
    def restore_rows(self) -> int:
        return sum(len(r.restore) for r in self.deploys.values())

    @property
    def deferred_rows(self) -> int:
        return sum(len(r.deferred) for r in self.deploys.values())

    def to_json(self) -> dict[str, Any]:
        return {
            "index_orphan_rows": self.drift.orphan_rows,
            "index_missing_rows": self.drift.missing_rows,
            "index_restore_from_marker": self.restore_rows,
            "index_deferred_to_backfill": self.deferred_rows,
            "index_orphan_sample": list(self.drift.orphan_sample()),
            "index_missing_sample": list(self.drift.missing_sample()),
        }


def plan_index(
    drift: IndexDrift,
    listed: Mapping[str, Mapping[str, Listed]],
    records: Mapping[str, Mapping[str, str] | None],
    digests: Mapping[str, Mapping[str, str]],
) -> IndexPlan:
    """Delete every orphan row; restore each missing row whose marker digest is trusted
    (`trusted_digests`); defer the rest to backfill, which hashes the bytes."""
    deploys: dict[str, IndexRepair] = {}
    for deploy_id in sorted(set(drift.orphans) | set(drift.missing)):
        absent = drift.missing.get(deploy_id, ())
        restore = trusted_digests(
            records.get(deploy_id), digests.get(deploy_id, {}), listed.get(deploy_id, {}), absent
        )
        deploys[deploy_id] = IndexRepair(
            orphans=drift.orphans.get(deploy_id, ()),
            restore=restore,
            deferred=tuple(p for p in absent if p not in restore),
        )
    return IndexPlan(drift, deploys)


# --- alias rows against alias objects -----------------------------------------------------------
#
# The `aliases` table mirrors the alias objects name by name, for the two channels and every
# named preview alike. The bucket is the truth (an alias move writes its object first, then the
# row), so each mismatch is repaired towards the object:
#
# | Object      | Row          | Class                  | Repair (reconcile --apply)             |
# | ----------- | ------------ | ---------------------- | -------------------------------------- |
# | names D     | none         | `alias_row_missing`    | write the row naming D                 |
# | none        | names D      | `alias_object_missing` | delete the row, only while it names D  |
# | names D     | names E ≠ D  | `alias_row_stale`      | point the row at D                     |
# | names D     | names D      | (consistent)           | —                                      |
#
# Which deploys are live does not wait for this: the decision table above takes the union of
# both stores, so a mismatch never makes a deploy removable in the run that finds it.

ALIAS_CLASSES = ("alias_row_missing", "alias_object_missing", "alias_row_stale")
AliasClass = Literal["alias_row_missing", "alias_object_missing", "alias_row_stale"]


@dataclass(frozen=True)
class AliasMismatch:
    """One alias name whose row and object disagree: what each names (None: absent)."""

    name: str
    row: str | None
    object: str | None

    @property
    def kind(self) -> AliasClass:
        if self.row is None:
            return "alias_row_missing"
        if self.object is None:
            return "alias_object_missing"
        return "alias_row_stale"

    def to_json(self) -> dict[str, str | None]:
        return {"name": self.name, "row": self.row, "object": self.object}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AliasMismatch:
        return cls(str(data["name"]), data.get("row"), data.get("object"))


def compare_alias(name: str, row: str | None, obj: str | None) -> AliasMismatch | None:
    """One name's row against its object: the mismatch, or None when they agree (an empty
    target counts as none, as an empty alias object does)."""
    row, obj = row or None, obj or None
    if row == obj:
        return None
    return AliasMismatch(name, row, obj)


@dataclass(frozen=True)
class AliasDrift:
    """A site's alias mismatches per class, each sorted by name."""

    row_missing: tuple[AliasMismatch, ...] = ()
    object_missing: tuple[AliasMismatch, ...] = ()
    row_stale: tuple[AliasMismatch, ...] = ()

    @property
    def mismatches(self) -> tuple[AliasMismatch, ...]:
        """Every mismatch, by name (one repair each)."""
        every = (*self.row_missing, *self.object_missing, *self.row_stale)
        return tuple(sorted(every, key=lambda m: m.name))

    def by_name(self) -> dict[str, AliasMismatch]:
        return {m.name: m for m in self.mismatches}

    def is_clean(self) -> bool:
        return not (self.row_missing or self.object_missing or self.row_stale)

    def counts(self) -> dict[str, int]:
        return {
            "alias_row_missing": len(self.row_missing),
            "alias_object_missing": len(self.object_missing),
            "alias_row_stale": len(self.row_stale),
        }

    def to_json(self) -> dict[str, list[dict[str, str | None]]]:
        return {
            "alias_row_missing": [m.to_json() for m in self.row_missing],
            "alias_object_missing": [m.to_json() for m in self.object_missing],
            "alias_row_stale": [m.to_json() for m in self.row_stale],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AliasDrift:
        def read(name: str) -> tuple[AliasMismatch, ...]:
            return tuple(AliasMismatch.from_json(m) for m in data.get(name, ()))

        return cls(read("alias_row_missing"), read("alias_object_missing"), read("alias_row_stale"))


def compare_aliases(rows: Mapping[str, str], objects: Mapping[str, str]) -> AliasDrift:
    """Alias rows (name → deploy id) against alias objects (name → deploy id), name by name
    (the table above)."""
    found: dict[str, list[AliasMismatch]] = {kind: [] for kind in ALIAS_CLASSES}
    for name in sorted(set(rows) | set(objects)):
        mismatch = compare_alias(name, rows.get(name), objects.get(name))
        if mismatch is not None:
            found[mismatch.kind].append(mismatch)
    return AliasDrift(
        tuple(found["alias_row_missing"]),
        tuple(found["alias_object_missing"]),
        tuple(found["alias_row_stale"]),
    )
