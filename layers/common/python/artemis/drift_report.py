"""What a drift sweep concludes: per-site results, fleet totals, the self-check, the verdict,
the report and the alert it raises. Pure: no I/O (the sweep in artemis.jobs.drift reads, the
`drift_runs` repository stores, and this module decides).

**Verdict** — exactly one per completed run, in priority order; each is logged as a structured
event named after it, never damped:

| verdict                  | when                                | log level | run              |
| ------------------------ | ----------------------------------- | --------- | ---------------- |
| `selfcheck`              | a self-check failed                 | error     | fails            |
| `aliased_missing`        | any aliased-but-missing deploy      | error     | fails if a site  |
| `aliased_tombstoned`     | any alias naming a tombstoned deploy| error     | was also         |
| `written_after_finalize` | any object a finalize did not record| error     | unreadable       |
| `unreadable`             | any site unreadable                 | error     | fails            |
| `alias_mismatch`         | any alias row disagreeing with its  | warning   | succeeds         |
|                          | alias object (three classes below)  |           |                  |
| `reclaimable`            | reindex + tombstone >= 25, fleet    | warning   | succeeds         |
| `clean`                  | otherwise                           | info      | succeeds         |

An unreadable site is unknown drift, never zero drift, so it fails the run. The three
dangerous classes (`DANGEROUS`) page whatever the verdict: a completed run emits
`drift.<class>` (and their sum, `drift.dangerous`) and the template alarms on each class above
zero, so a run that succeeds still pages for them.

**Alias rows** — the `aliases` table against the alias objects, name by name, fixed channels
and named previews alike (artemis.reconcile_plan): `alias_row_missing` (an object, no row),
`alias_object_missing` (a row, no object) and `alias_row_stale` (a row naming another deploy
than its object), each counted per site and in the totals (`drift.<class>` metrics) and listed
in the site's result as `{name, row, object}`. A warning, never a page: the rows are the index
of what the bucket serves, nothing is lost while they lag (which deploys are live is the union
of both stores, and GC re-reads the objects under the lock), and `artemis-admin reconcile
<site> --apply` makes them follow the objects. An alias, row or object, naming a deploy that
has neither bytes nor a row stays `aliased_missing`, an error that pages.

**Content index** — `index_orphan_rows` and `index_missing_rows` are counted per site and in
the totals (so each is a `drift.<name>` metric) but decide no verdict: the index is a cache of
what the bucket holds, a stale row only costs a copy that S3's digest check then refuses, and
`artemis-admin reconcile <site> --apply` (or backfill) repairs it.

**Self-check** — a sweep that saw nothing is more likely wrong than clean: (1) zero sites
swept; (2) the table holds active rows but the swept sites matched none; (3) the swept sites
have active rows but the bucket listing returned no objects — checks 2 and 3 are skipped when
a site raised a read error (an empty-listing fault does not skip them: it is exactly the shape
check 3 exists to catch); (4) planned prunes x 2 > active rows read.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from artemis.reconcile_plan import ALIAS_CLASSES, AliasDrift, Classification

RECLAIMABLE_THRESHOLD = 25
VERDICTS = (
    "selfcheck",
    "aliased_missing",
    "aliased_tombstoned",
    "written_after_finalize",
    "unreadable",
    "alias_mismatch",
    "reclaimable",
    "clean",
)
# The classes that page (each has its alarm in template.yaml, on the metric drift.<class>).
DANGEROUS = ("aliased_missing", "aliased_tombstoned", "written_after_finalize")
TOTAL_KEYS = (
    "sites_swept",
    "keys_listed",
    "active_rows_read",
    "reindex",
    "tombstone",
    "prune",
    "aliased_missing",
    "aliased_tombstoned",
    "written_after_finalize",
    "dangerous",
    "deferred",
    "unreadable",
    "read_errors",
    "faults",
    "capped_sites",
    "index_orphan_rows",
    "index_missing_rows",
    *ALIAS_CLASSES,
)


# --- one site -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SiteResult:
    site: str
    slug: str | None = None
    classification: Classification = field(default_factory=Classification)
    keys_listed: int = 0
    active_rows: int = 0
    capped: bool = False
    cap_reason: str = ""
    fault: str | None = None  # the empty-listing fault: not classified
    error: str | None = None  # could not be read
    # The content index against the listing (artemis.reconcile_plan.index_drift): complete
    # counts, and a bounded sample of `<deploy id>/<path>` examples.
    index_orphan_rows: int = 0
    index_missing_rows: int = 0
    index_orphan_sample: tuple[str, ...] = ()
    index_missing_sample: tuple[str, ...] = ()
    # The alias rows against the alias objects, name by name.
    aliases: AliasDrift = field(default_factory=AliasDrift)

    @property
    def unreadable(self) -> bool:
        return self.fault is not None or self.error is not None

    @property
    def notable(self) -> bool:
        """Worth a row in drift_site_results (clean sites only add to the totals)."""
        c = self.classification
        return (
            self.unreadable or self.capped or not c.is_clean() or bool(c.deferred)
            or bool(self.index_orphan_rows or self.index_missing_rows)
            or not self.aliases.is_clean()
        )  # fmt: skip

    def to_json(self) -> dict[str, Any]:
        return {
            "site": self.site,
            "slug": self.slug,
            **self.classification.to_json(),
            "keys_listed": self.keys_listed,
            "active_rows": self.active_rows,
            "capped": self.capped,
            "cap_reason": self.cap_reason,
            "fault": self.fault,
            "error": self.error,
            "index_orphan_rows": self.index_orphan_rows,
            "index_missing_rows": self.index_missing_rows,
            "index_orphan_sample": list(self.index_orphan_sample),
            "index_missing_sample": list(self.index_missing_sample),
            **self.aliases.to_json(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SiteResult:
        return cls(
            site=data["site"],
            slug=data.get("slug"),
            classification=Classification.from_json(data),
            keys_listed=int(data.get("keys_listed", 0)),
            active_rows=int(data.get("active_rows", 0)),
            capped=bool(data.get("capped", False)),
            cap_reason=str(data.get("cap_reason", "")),
            fault=data.get("fault"),
            error=data.get("error"),
            index_orphan_rows=int(data.get("index_orphan_rows", 0)),
            index_missing_rows=int(data.get("index_missing_rows", 0)),
            index_orphan_sample=tuple(data.get("index_orphan_sample", ())),
            index_missing_sample=tuple(data.get("index_missing_sample", ())),
            aliases=AliasDrift.from_json(data),
        )


# --- totals, self-check, verdict ------------------------------------------------------------


def totals_of(results: Iterable[SiteResult]) -> dict[str, int]:
    totals = dict.fromkeys(TOTAL_KEYS, 0)
    for r in results:
        c = r.classification
        totals["sites_swept"] += 1
        totals["keys_listed"] += r.keys_listed
        totals["active_rows_read"] += r.active_rows
        for name in ("reindex", "tombstone", "prune", "deferred", *DANGEROUS):
            totals[name] += len(getattr(c, name))
        totals["dangerous"] += c.dangerous
        totals["unreadable"] += int(r.unreadable)
        totals["read_errors"] += int(r.error is not None)
        totals["faults"] += int(r.fault is not None)
        totals["capped_sites"] += int(r.capped)
        totals["index_orphan_rows"] += r.index_orphan_rows
        totals["index_missing_rows"] += r.index_missing_rows
        for name, count in r.aliases.counts().items():
            totals[name] += count
    return totals


def merge_totals(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
    """The sum of two tallies over TOTAL_KEYS (a key missing from either counts 0)."""
    return {key: int(a.get(key, 0)) + int(b.get(key, 0)) for key in TOTAL_KEYS}


def self_check(totals: dict[str, int], active_rows_total: int) -> list[str]:
    failures: list[str] = []
    if totals["sites_swept"] == 0:
        failures.append("1: zero sites swept")
    if totals["read_errors"] == 0:
        if active_rows_total > 0 and totals["active_rows_read"] == 0:
            failures.append(
                f"2: the index holds {active_rows_total} active rows but the swept sites"
                " matched none of them (the site list is wrong)"
            )
        if totals["active_rows_read"] > 0 and totals["keys_listed"] == 0:
            failures.append(
                f"3: the swept sites have {totals['active_rows_read']} active rows but the bucket"
                " listing returned no objects (wrong bucket, prefix or key template)"
            )
    if totals["prune"] * 2 > totals["active_rows_read"]:
        failures.append(
            f"4: {totals['prune']} planned prunes would drop more than half of the"
            f" {totals['active_rows_read']} active rows read"
        )
    return failures


def verdict_of(totals: dict[str, int], selfcheck: list[str]) -> tuple[str, bool]:
    """(verdict, run fails) by the priority table of the module docstring."""
    if selfcheck:
        return "selfcheck", True
    for name in DANGEROUS:
        if totals[name] > 0:
            return name, totals["unreadable"] > 0
    if totals["unreadable"] > 0:
        return "unreadable", True
    if any(totals[name] > 0 for name in ALIAS_CLASSES):
        return "alias_mismatch", False
    if totals["reindex"] + totals["tombstone"] >= RECLAIMABLE_THRESHOLD:
        return "reclaimable", False
    return "clean", False


# --- the report ------------------------------------------------------------------------------


@dataclass
class DriftReport:
    run_id: int | None
    as_of: datetime | None
    complete: bool
    skipped: bool = False
    cursor: str = ""
    batches: int = 0  # this invocation
    sites_this_invocation: int = 0
    totals: dict[str, int] = field(default_factory=dict)
    active_rows_total: int | None = None
    selfcheck: list[str] = field(default_factory=list)
    verdict: str | None = None
    failed: bool = False
    sites: list[SiteResult] = field(default_factory=list)  # notable sites (complete runs)
    note: str = ""
    duration_s: float = 0.0  # this invocation

    def metrics(self) -> dict[str, float]:
        """EMF values for this invocation: the heartbeat and progress always; the tallies,
        per-class totals and the verdict when the sweep completed."""
        values: dict[str, float] = {
            "drift.heartbeat": 1,
            "drift.invocation_sites": self.sites_this_invocation,
            "drift.duration_s": round(self.duration_s, 3),
        }
        if self.complete and self.verdict is not None:
            t = self.totals
            values.update({f"drift.{key}": t.get(key, 0) for key in TOTAL_KEYS})
            values.update({f"drift.verdict.{v}": int(v == self.verdict) for v in VERDICTS})
        return values

    @property
    def operation(self) -> str | None:
        return f"drift.{self.verdict}" if self.verdict else None

    def summary(self) -> str:
        t = self.totals
        return ", ".join(f"{k}={t.get(k, 0)}" for k in TOTAL_KEYS)

    def counts(self) -> dict[str, Any]:
        """The invocation's `job_runs` counts (metrics read `verdict`)."""
        counts: dict[str, Any] = {
            "run_id": self.run_id,
            "complete": self.complete,
            "batches": self.batches,
            "sites": self.sites_this_invocation,
        }
        if self.complete and self.verdict is not None:
            counts.update(self.totals)
            counts["active_rows_total"] = self.active_rows_total
            counts["selfcheck_failures"] = len(self.selfcheck)
            counts["verdict"] = self.verdict
        return counts

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "as_of": self.as_of.isoformat() if self.as_of else None,
            "complete": self.complete,
            "skipped": self.skipped,
            "cursor": self.cursor,
            "batches": self.batches,
            "sites_this_invocation": self.sites_this_invocation,
            "verdict": self.verdict,
            "operation": self.operation,
            "failed": self.failed,
            "selfcheck": self.selfcheck,
            "totals": self.totals,
            "active_rows_total": self.active_rows_total,
            "sites": [s.to_json() for s in self.sites],
            "note": self.note,
            "duration_s": round(self.duration_s, 3),
        }


# --- the alert -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Alert:
    """The one structured event a completed run logs: its level, its name, its fields."""

    level: Literal["error", "warning", "info"]
    event: str
    fields: dict[str, Any]


def alert_of(report: DriftReport) -> Alert:
    """The completed run's alert, by its verdict (the table of the module docstring)."""
    t = report.totals
    base: dict[str, Any] = {
        "operation": report.operation,
        "run_id": report.run_id,
        "totals": t,
        "active_rows_total": report.active_rows_total,
    }
    unread = {s.site: s.fault or s.error for s in report.sites if s.unreadable}
    if report.verdict == "selfcheck":
        return Alert(
            "error",
            "drift.selfcheck",
            {**base, "failures": report.selfcheck, "unread_sites": unread},
        )
    if report.verdict in DANGEROUS:
        # One event, named after the verdict (the highest-priority class found), listing
        # every dangerous class found, so no finding hides behind another.
        found = {
            name: {
                s.site: list(getattr(s.classification, name))
                for s in report.sites
                if getattr(s.classification, name)
            }
            for name in DANGEROUS
        }
        return Alert(
            "error",
            f"drift.{report.verdict}",
            {
                **base,
                "count": t[report.verdict],
                "sites": found[report.verdict],
                "dangerous": {k: v for k, v in found.items() if v},
                "unread_sites": unread,
            },
        )
    if report.verdict == "unreadable":
        return Alert(
            "error",
            "drift.unreadable",
            {
                **base,
                "sites": unread,
                "explanation": "an unread site is unknown drift, not an absence of drift",
            },
        )
    if report.verdict == "alias_mismatch":
        return Alert(
            "warning",
            "drift.alias_mismatch",
            {
                **base,
                "count": sum(t[name] for name in ALIAS_CLASSES),
                "sites": {
                    s.site: {k: v for k, v in s.aliases.to_json().items() if v}
                    for s in report.sites
                    if not s.aliases.is_clean()
                },
                "action": "for each site: artemis-admin reconcile <site>, review, then --apply",
            },
        )
    if report.verdict == "reclaimable":
        ranked = sorted(
            (s for s in report.sites if s.classification.reclaimable),
            key=lambda s: (-s.classification.reclaimable, s.site),
        )
        return Alert(
            "warning",
            "drift.reclaimable",
            {
                **base,
                "sites": [
                    {
                        "site": s.site,
                        "slug": s.slug,
                        "count": s.classification.reclaimable,
                        "reindex": list(s.classification.reindex),
                        "tombstone": list(s.classification.tombstone),
                    }
                    for s in ranked
                ],
                "action": "for each site: artemis-admin reconcile <site>, review, then --apply",
            },
        )
    return Alert("info", "drift.clean", base)
