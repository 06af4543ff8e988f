"""The drift verdict, report and alert, decided without any I/O (artemis.drift_report)."""

from datetime import UTC, datetime

from artemis.drift_report import (
    DriftReport,
    SiteResult,
    alert_of,
    merge_totals,
    self_check,
    totals_of,
    verdict_of,
)
from artemis.reconcile_plan import AliasDrift, AliasMismatch, Classification


def _completed(results: list[SiteResult], active_rows_total: int) -> DriftReport:
    totals = totals_of(results)
    failures = self_check(totals, active_rows_total)
    verdict, failed = verdict_of(totals, failures)
    return DriftReport(
        1,
        datetime(2026, 4, 20, 4, tzinfo=UTC),
        complete=True,
        totals=totals,
        active_rows_total=active_rows_total,
        selfcheck=failures,
        verdict=verdict,
        failed=failed,
        sites=[r for r in results if r.notable],
    )


def test_the_alert_is_named_after_the_verdict_and_lists_every_dangerous_class() -> None:
    a = SiteResult(
        "a.example", "a", Classification(aliased_missing=("20260101-000000-aaaaaaa",)),
        keys_listed=3, active_rows=2,
    )  # fmt: skip
    b = SiteResult(
        "b.example", "b", Classification(aliased_tombstoned=("20260102-000000-bbbbbbb",)),
        keys_listed=3, active_rows=2,
    )  # fmt: skip
    report = _completed([a, b], active_rows_total=4)
    alert = alert_of(report)
    assert (alert.level, alert.event) == ("error", "drift.aliased_missing")
    assert alert.fields["count"] == 1
    assert alert.fields["dangerous"] == {
        "aliased_missing": {"a.example": ["20260101-000000-aaaaaaa"]},
        "aliased_tombstoned": {"b.example": ["20260102-000000-bbbbbbb"]},
    }
    assert report.failed is False  # every site was read


def test_a_clean_sweep_logs_info_and_an_unread_site_fails_the_run() -> None:
    clean = SiteResult("a.example", "a", keys_listed=3, active_rows=2)
    assert alert_of(_completed([clean], active_rows_total=2)).event == "drift.clean"
    assert alert_of(_completed([clean], active_rows_total=2)).level == "info"
    unread = SiteResult("b.example", "b", error="ConnectionError: gone")
    report = _completed([clean, unread], active_rows_total=2)
    alert = alert_of(report)
    assert (alert.level, alert.event, report.failed) == ("error", "drift.unreadable", True)
    assert alert.fields["sites"] == {"b.example": "ConnectionError: gone"}


def test_merged_totals_add_key_by_key() -> None:
    one = totals_of([SiteResult("a.example", keys_listed=3, active_rows=2)])
    assert merge_totals(one, one)["keys_listed"] == 6
    assert merge_totals(one, {})["sites_swept"] == 1


def test_index_findings_are_counted_stored_and_notable_but_decide_no_verdict() -> None:
    site = SiteResult(
        "a.example", "a", keys_listed=3, active_rows=2,
        index_orphan_rows=12, index_missing_rows=1,
        index_orphan_sample=("20260101-000000-aaaaaaa/x.css",),
        index_missing_sample=("20260101-000000-aaaaaaa/y.css",),
    )  # fmt: skip
    assert site.notable
    assert SiteResult.from_json(site.to_json()) == site
    report = _completed([site, SiteResult("b.example", "b", keys_listed=1, active_rows=1)], 3)
    assert (report.totals["index_orphan_rows"], report.totals["index_missing_rows"]) == (12, 1)
    assert report.verdict == "clean" and not report.failed
    assert report.metrics()["drift.index_missing_rows"] == 1
    # A run stored before these fields existed reads them as zero.
    old = {k: v for k, v in site.to_json().items() if not k.startswith("index_")}
    assert SiteResult.from_json(old).index_orphan_rows == 0
    assert merge_totals({"sites_swept": 1}, {})["index_orphan_rows"] == 0


STALE = AliasDrift(
    row_missing=(AliasMismatch("pr-1", None, "20260101-000000-aaaaaaa"),),
    object_missing=(AliasMismatch("pr-2", "20260101-000000-aaaaaaa", None),),
    row_stale=(
        AliasMismatch("pr-3", "20260101-000000-aaaaaaa", "20260102-000000-bbbbbbb"),
        AliasMismatch("preview", "20260101-000000-aaaaaaa", "20260102-000000-bbbbbbb"),
    ),
)


def test_alias_mismatches_are_counted_stored_and_warn_without_paging() -> None:
    site = SiteResult("a.example", "a", keys_listed=3, active_rows=2, aliases=STALE)
    assert site.notable
    assert SiteResult.from_json(site.to_json()) == site
    assert site.to_json()["alias_row_missing"] == [
        {"name": "pr-1", "row": None, "object": "20260101-000000-aaaaaaa"}
    ]
    report = _completed([site, SiteResult("b.example", "b", keys_listed=1, active_rows=1)], 3)
    t = report.totals
    assert (t["alias_row_missing"], t["alias_object_missing"], t["alias_row_stale"]) == (1, 1, 2)
    assert t["dangerous"] == 0
    assert report.verdict == "alias_mismatch" and not report.failed
    metrics = report.metrics()
    assert metrics["drift.alias_row_stale"] == 2 and metrics["drift.verdict.alias_mismatch"] == 1
    alert = alert_of(report)
    assert (alert.level, alert.event, alert.fields["count"]) == (
        "warning", "drift.alias_mismatch", 4,
    )  # fmt: skip
    assert set(alert.fields["sites"]) == {"a.example"}
    assert [m["name"] for m in alert.fields["sites"]["a.example"]["alias_row_stale"]] == [
        "pr-3", "preview",
    ]  # fmt: skip
    # A run stored before these classes existed reads them as none.
    old = {k: v for k, v in site.to_json().items() if not k.startswith("alias_")}
    assert SiteResult.from_json(old).aliases == AliasDrift()


def test_alias_mismatch_ranks_below_every_error_and_above_reclaimable() -> None:
    stale = SiteResult("a.example", "a", keys_listed=3, active_rows=2, aliases=STALE)
    missing = SiteResult(
        "b.example", "b", Classification(aliased_missing=("20260101-000000-ccccccc",)),
        keys_listed=3, active_rows=2,
    )  # fmt: skip
    assert _completed([stale, missing], 4).verdict == "aliased_missing"
    unread = SiteResult("c.example", "c", error="ConnectionError: gone")
    assert _completed([stale, unread], 2).verdict == "unreadable"
    many = SiteResult(
        "d.example", "d", Classification(reindex=tuple(f"20260101-000000-{i:07d}" for i in range(30))),
        keys_listed=30, active_rows=2,
    )  # fmt: skip
    assert _completed([many], 2).verdict == "reclaimable"
    assert _completed([stale, many], 4).verdict == "alias_mismatch"
