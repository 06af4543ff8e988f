"""The reconciler's decision table, grace gates and blast cap (spec/durable.md §9.5.3-§9.5.4)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from artemis.reconcile_plan import (
    INDEX_SAMPLE,
    AliasDrift,
    AliasMismatch,
    BucketDeploy,
    Classification,
    DeployState,
    IndexDrift,
    IndexedDeploy,
    IndexRepair,
    Listed,
    apply_cap,
    build_plan,
    classify,
    compare_alias,
    compare_aliases,
    deploy_time,
    index_drift,
    listing_fault,
    plan_index,
    trusted_digests,
)

NOW = datetime(2026, 8, 20, 12, 0, 0, tzinfo=UTC)
GRACE = timedelta(hours=72)
OLD = timedelta(days=10)
YOUNG = timedelta(hours=1)


def did(age: timedelta, sha: str = "abc1234") -> str:
    return f"{(NOW - age).strftime('%Y%m%d-%H%M%S')}-{sha}"


def in_bucket(deploy_id: str, *, marker: bool) -> BucketDeploy:
    return BucketDeploy(deploy_id, marker, deploy_time(deploy_id, NOW))


def row(deploy_id: str, age: timedelta) -> IndexedDeploy:
    return IndexedDeploy(deploy_id, NOW - age)


def one(
    *,
    bucket: bool,
    indexed: bool,
    aliased: bool,
    marker: bool = False,
    age: timedelta = OLD,
    row_age: timedelta | None = None,
) -> Classification:
    deploy_id = did(age)
    return classify(
        [in_bucket(deploy_id, marker=marker)] if bucket else [],
        [row(deploy_id, row_age if row_age is not None else age)] if indexed else [],
        [deploy_id] if aliased else [],
        now=NOW,
        grace=GRACE,
    )


def only(c: Classification) -> tuple[str, int]:
    """The one non-empty class and how many ids it holds; ("", 0) for a clean site."""
    found = [(name, len(ids)) for name, ids in c.to_json().items() if ids]
    assert len(found) <= 1, found
    return found[0] if found else ("", 0)


# --- deploy-id time ----------------------------------------------------------------------------


def test_deploy_time_parses_the_first_15_characters_as_utc() -> None:
    assert deploy_time("20260420-141522-abc1234", NOW) == datetime(
        2026, 4, 20, 14, 15, 22, tzinfo=UTC
    )


@pytest.mark.parametrize(
    "deploy_id", ["garbage", "", "20261301-000000-x", "2026042-1415220-x", "2026-04-20-14152"]
)
def test_deploy_time_falls_back_to_now_for_an_unparseable_id(deploy_id: str) -> None:
    assert deploy_time(deploy_id, NOW) == NOW


def test_an_orphan_with_an_unparseable_id_is_never_old_enough_to_tombstone() -> None:
    c = classify([in_bucket("not-an-id", marker=False)], [], [], now=NOW, grace=GRACE)
    assert c.tombstone == () and c.deferred == ("not-an-id",)


# --- the decision table, row by row -------------------------------------------------------------


@pytest.mark.parametrize("age", [OLD, YOUNG])
def test_class_1_aliased_marked_unindexed_bytes_are_reindexed_at_any_age(age: timedelta) -> None:
    assert only(one(bucket=True, indexed=False, aliased=True, marker=True, age=age)) == (
        "reindex",
        1,
    )


@pytest.mark.parametrize("age", [OLD, YOUNG])
def test_class_2_aliased_unmarked_unindexed_bytes_are_report_only(age: timedelta) -> None:
    assert only(one(bucket=True, indexed=False, aliased=True, marker=False, age=age)) == (
        "aliased_missing",
        1,
    )


@pytest.mark.parametrize("age", [OLD, YOUNG])
def test_class_3_marked_unindexed_unaliased_bytes_are_reindexed(age: timedelta) -> None:
    assert only(one(bucket=True, indexed=False, aliased=False, marker=True, age=age)) == (
        "reindex",
        1,
    )


def test_class_4_unmarked_unindexed_unaliased_bytes_past_grace_are_tombstoned() -> None:
    assert only(one(bucket=True, indexed=False, aliased=False, marker=False, age=OLD)) == (
        "tombstone",
        1,
    )


def test_v3c_unmarked_orphan_inside_grace_is_deferred_not_tombstoned() -> None:
    assert only(one(bucket=True, indexed=False, aliased=False, marker=False, age=YOUNG)) == (
        "deferred",
        1,
    )


@pytest.mark.parametrize("age", [OLD, YOUNG])
def test_class_5_aliased_row_without_bytes_is_report_only(age: timedelta) -> None:
    assert only(one(bucket=False, indexed=True, aliased=True, age=age)) == ("aliased_missing", 1)


def test_class_6_unaliased_row_without_bytes_past_grace_is_pruned() -> None:
    assert only(one(bucket=False, indexed=True, aliased=False, age=OLD)) == ("prune", 1)


def test_v3c_young_ghost_row_is_deferred_not_pruned() -> None:
    assert only(one(bucket=False, indexed=True, aliased=False, age=YOUNG)) == ("deferred", 1)


@pytest.mark.parametrize("aliased", [False, True])
@pytest.mark.parametrize("marker", [False, True])
@pytest.mark.parametrize("age", [OLD, YOUNG])
def test_bytes_and_a_row_are_consistent_whatever_the_fields(
    aliased: bool, marker: bool, age: timedelta
) -> None:
    assert only(one(bucket=True, indexed=True, aliased=aliased, marker=marker, age=age)) == ("", 0)


def test_an_alias_naming_neither_bytes_nor_a_row_is_reported_aliased_missing() -> None:
    assert only(one(bucket=False, indexed=False, aliased=True)) == ("aliased_missing", 1)


# --- grace gates (V3 c) ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("age", "expected"),
    [
        (GRACE - timedelta(seconds=1), "deferred"),
        (GRACE, "tombstone"),
        (GRACE + timedelta(seconds=1), "tombstone"),
    ],
)
def test_v3c_orphan_grace_boundary(age: timedelta, expected: str) -> None:
    assert only(one(bucket=True, indexed=False, aliased=False, age=age)) == (expected, 1)


@pytest.mark.parametrize(
    ("age", "expected"),
    [
        (GRACE - timedelta(seconds=1), "deferred"),
        (GRACE, "prune"),
        (GRACE + timedelta(seconds=1), "prune"),
    ],
)
def test_v3c_ghost_row_grace_boundary(age: timedelta, expected: str) -> None:
    assert only(one(bucket=False, indexed=True, aliased=False, age=age)) == (expected, 1)


def test_v3c_prune_grace_reads_the_row_mtime_not_the_id() -> None:
    # An old id whose row was written recently (e.g. restored) is inside grace.
    c = one(bucket=False, indexed=True, aliased=False, age=OLD, row_age=YOUNG)
    assert only(c) == ("deferred", 1)


def test_v3c_a_future_dated_orphan_is_inside_grace() -> None:
    assert only(one(bucket=True, indexed=False, aliased=False, age=-timedelta(days=1))) == (
        "deferred",
        1,
    )


# --- determinism (V9) -------------------------------------------------------------------------


def _mixed_site() -> tuple[list[BucketDeploy], list[IndexedDeploy], list[str]]:
    ids = {name: did(OLD + timedelta(minutes=i), name) for i, name in enumerate("abcdefgh")}
    bucket = [
        in_bucket(ids["a"], marker=True),  # reindex
        in_bucket(ids["b"], marker=False),  # tombstone
        in_bucket(ids["c"], marker=False),  # tombstone
        in_bucket(ids["d"], marker=False),  # aliased_missing (aliased)
        in_bucket(ids["h"], marker=True),  # consistent
    ]
    rows = [row(ids["e"], OLD), row(ids["f"], OLD), row(ids["g"], YOUNG), row(ids["h"], OLD)]
    return bucket, rows, [ids["d"], ids["f"]]


def test_v9_classes_are_sorted_and_input_order_does_not_matter() -> None:
    bucket, rows, aliased = _mixed_site()
    forward = classify(bucket, rows, aliased, now=NOW, grace=GRACE)
    backward = classify(bucket[::-1], rows[::-1], aliased[::-1], now=NOW, grace=GRACE)
    assert forward == backward
    for ids in forward.to_json().values():
        assert ids == sorted(ids)
    assert len(forward.reindex) == 1 and len(forward.tombstone) == 2
    assert len(forward.prune) == 1 and len(forward.aliased_missing) == 2
    assert len(forward.deferred) == 1


@given(
    st.lists(
        st.tuples(
            st.integers(min_value=-48, max_value=24 * 30),  # age in hours
            st.booleans(),  # in bucket
            st.booleans(),  # indexed
            st.booleans(),  # aliased
            st.booleans(),  # marker
        ),
        max_size=30,
    )
)
def test_every_drifting_id_lands_in_exactly_one_class(
    specs: list[tuple[int, bool, bool, bool, bool]],
) -> None:
    bucket, rows, aliased, drifting = [], [], [], set()
    for i, (hours, present, indexed, is_aliased, marker) in enumerate(specs):
        deploy_id = did(timedelta(hours=hours), f"s{i}")
        if present:
            bucket.append(in_bucket(deploy_id, marker=marker))
        if indexed:
            rows.append(row(deploy_id, timedelta(hours=hours)))
        if is_aliased:
            aliased.append(deploy_id)
        if present != indexed or (is_aliased and not present and not indexed):
            drifting.add(deploy_id)
    c = classify(bucket, rows, aliased, now=NOW, grace=GRACE)
    placed = [i for ids in c.to_json().values() for i in ids]
    assert len(placed) == len(set(placed))
    assert set(placed) == drifting


# --- the empty-listing fault ------------------------------------------------------------------


def test_empty_listing_with_rows_is_a_fault_naming_the_count_and_prefix() -> None:
    fault = listing_fault(0, 7, "www.example.org/deploys/")
    assert fault is not None and "7" in fault and "www.example.org/deploys/" in fault


@pytest.mark.parametrize(("listed", "rows"), [(0, 0), (3, 7), (1, 0)])
def test_no_fault_for_an_empty_site_or_a_non_empty_listing(listed: int, rows: int) -> None:
    assert listing_fault(listed, rows, "p/") is None


# --- the blast cap (V6) ------------------------------------------------------------------------


def plan_of(tombstones: int, prunes: int, reindex: int = 0) -> Classification:
    # Ids deliberately out of order, so "oldest" must be chosen, not "first".
    t = [did(OLD + timedelta(hours=h), "t") for h in range(tombstones)][::-1]
    p = [did(OLD + timedelta(hours=h), "p") for h in range(prunes)][::-1]
    r = [did(OLD + timedelta(hours=h), "r") for h in range(reindex)]
    return Classification(reindex=tuple(r), tombstone=tuple(t), prune=tuple(p))


def test_v6_destructive_repairs_within_the_cap_are_unchanged() -> None:
    c = plan_of(2, 1)
    decision = apply_cap(c, 3)
    assert (decision.tombstone, decision.prune, decision.capped) == (c.tombstone, c.prune, False)


def test_v6_nothing_destructive_is_never_capped_even_at_cap_0() -> None:
    decision = apply_cap(plan_of(0, 0, reindex=5), 0)
    assert decision.capped is False and decision.reason == ""


def test_v6a_tombstones_take_the_oldest_slots_and_prunes_the_remaining_budget() -> None:
    c = plan_of(3, 3)
    decision = apply_cap(c, 4)
    assert decision.capped
    assert decision.tombstone == tuple(sorted(c.tombstone))
    assert decision.prune == (min(c.prune),)
    assert "oldest" in decision.reason


def test_v6a_tombstones_over_the_cap_leave_no_budget_for_prunes() -> None:
    c = plan_of(5, 2)
    decision = apply_cap(c, 3)
    assert decision.tombstone == tuple(sorted(c.tombstone)[:3])
    assert decision.prune == ()
    assert decision.capped


@pytest.mark.parametrize("cap", [0, -1])
def test_v6b_cap_0_refuses_every_destructive_repair(cap: int) -> None:
    decision = apply_cap(plan_of(2, 2), cap)
    assert (decision.tombstone, decision.prune, decision.capped) == ((), (), True)
    assert "refuses" in decision.reason


def test_v6_reindex_is_never_capped() -> None:
    plan = build_plan(plan_of(3, 0, reindex=20), 1, dry_run=False)
    assert len(plan.reindex) == 20
    assert len(plan.report.reindex) == 20
    assert len(plan.tombstone) == 1


def test_v6c_dry_run_with_cap_0_reports_everything() -> None:
    c = plan_of(3, 2, reindex=1)
    plan = build_plan(c, 0, dry_run=True)
    assert plan.report == c  # the full plan: a ceiling never empties a dry run's report
    assert plan.capped and "refuses" in plan.reason
    assert plan.to_json()["tombstone"] == list(c.tombstone)
    assert plan.to_json()["prune"] == list(c.prune)
    live = build_plan(c, 0, dry_run=False)
    assert live.report.tombstone == () and live.report.prune == ()
    assert live.report.reindex == c.reindex


def test_v6c_dry_run_over_the_cap_reports_everything_and_warns() -> None:
    c = plan_of(4, 4)
    plan = build_plan(c, 2, dry_run=True)
    assert plan.report == c and plan.capped
    assert plan.tombstone == tuple(sorted(c.tombstone)[:2])  # what a live run would do


# --- the content index ---------------------------------------------------------------------------

FILES = {"index.html": Listed("e1", 10), "app.js": Listed("e2", 20)}
ACTIVE = DeployState("active", True)


def test_index_drift_applies_each_row_of_the_index_table() -> None:
    listed = {"live": FILES, "unfin": {"a.js": Listed("e", 1)}, "late": FILES, "reidx": FILES}
    states = {
        "live": ACTIVE,
        "pend": DeployState("pending", False),
        "unfin": DeployState("active", False),
        "late": ACTIVE,  # finalized (db) after the listing, which saw no marker
        "nobytes": ACTIVE,
        "tomb": ACTIVE,
    }
    indexed = {
        "live": {"index.html", "gone.css"},
        "pend": {"not-yet.js"},
        "unfin": {"a.js", "b.js"},
        "late": {"zzz"},
        "nobytes": {"x"},
        "tomb": {"index.html"},
        "norow": {"y"},
        "reidx": {"app.js", "old.js"},
    }
    drift = index_drift(listed, {"live", "reidx"}, states, indexed, tombstoned={"tomb"})
    assert drift.orphans == {
        "live": ("gone.css",),
        "unfin": ("b.js",),
        "nobytes": ("x",),
        "tomb": ("index.html",),
        "norow": ("y",),
        "reidx": ("old.js",),  # no row but marker listed: judged as the live deploy it will be
    }
    assert drift.missing == {"live": ("app.js",), "reidx": ("index.html",)}
    assert (drift.orphan_rows, drift.missing_rows) == (6, 2)


def test_a_tombstoned_site_orphans_every_row_and_misses_none() -> None:
    drift = index_drift({"d": FILES}, {"d"}, {"d": ACTIVE}, {"d": {"index.html"}},
                        site_tombstoned=True)  # fmt: skip
    assert drift.orphans == {"d": ("index.html",)} and drift.missing == {}


def test_samples_are_bounded_while_counts_stay_complete() -> None:
    indexed = {"d": {f"f{i:02}.js" for i in range(25)}}
    drift = index_drift({}, set(), {}, indexed)
    assert drift.orphan_rows == 25
    assert drift.orphan_sample() == tuple(f"d/f{i:02}.js" for i in range(INDEX_SAMPLE))
    assert len(drift.orphan_sample(3)) == 3


def test_a_marker_digest_is_trusted_only_while_its_etag_is_the_listings() -> None:
    good, bad = "ab" * 32, "cd" * 32
    record = {"index.html": "e1", "app.js": "OLD"}  # app.js was overwritten after finalize
    digests = {"index.html": good, "app.js": bad}
    assert trusted_digests(record, digests, FILES, ["index.html", "app.js"]) == {"index.html": good}
    assert trusted_digests(None, digests, FILES, ["index.html"]) == {}  # no files record
    assert trusted_digests(record, {"index.html": "zz"}, FILES, ["index.html"]) == {}


def test_plan_index_restores_trusted_rows_and_defers_the_rest() -> None:
    drift = IndexDrift(orphans={"a": ("gone",)}, missing={"b": ("app.js", "index.html")})
    plan = plan_index(
        drift,
        {"b": FILES},
        {"b": {"index.html": "e1", "app.js": "changed"}},
        {"b": {"index.html": "ab" * 32, "app.js": "cd" * 32}},
    )
    assert plan.deploys["a"] == IndexRepair(orphans=("gone",))
    assert plan.deploys["b"] == IndexRepair(restore={"index.html": "ab" * 32}, deferred=("app.js",))
    assert plan.to_json()["index_restore_from_marker"] == 1
    assert plan.to_json()["index_deferred_to_backfill"] == 1


# --- alias rows against alias objects ----------------------------------------------------------

D1, D2, D3 = did(OLD, "aaaaaaa"), did(OLD, "bbbbbbb"), did(YOUNG, "ccccccc")


def test_each_alias_mismatch_lands_in_its_class_fixed_and_named_alike() -> None:
    rows = {"production": D1, "preview": D2, "pr-1": D1, "pr-2": D2, "pr-3": D3}
    objects = {"production": D1, "preview": D3, "pr-1": D1, "pr-3": D1, "pr-4": D2, "docs": D3}
    drift = compare_aliases(rows, objects)
    assert drift.row_missing == (
        AliasMismatch("docs", None, D3),
        AliasMismatch("pr-4", None, D2),
    )
    assert drift.object_missing == (AliasMismatch("pr-2", D2, None),)
    assert drift.row_stale == (
        AliasMismatch("pr-3", D3, D1),
        AliasMismatch("preview", D2, D3),
    )
    assert drift.counts() == {
        "alias_row_missing": 2, "alias_object_missing": 1, "alias_row_stale": 2,
    }  # fmt: skip
    assert [m.name for m in drift.mismatches] == ["docs", "pr-2", "pr-3", "pr-4", "preview"]
    assert not drift.is_clean()


def test_rows_equal_to_objects_are_clean() -> None:
    assert compare_aliases({}, {}).is_clean()
    assert compare_aliases({"production": D1, "pr-1": D2}, {"pr-1": D2, "production": D1}) == (
        AliasDrift()
    )


def test_an_empty_target_counts_as_none() -> None:
    assert compare_alias("pr-1", "", None) is None
    gone = compare_alias("pr-1", D1, "")
    assert gone == AliasMismatch("pr-1", D1, None) and gone.kind == "alias_object_missing"


def test_alias_drift_round_trips_through_json() -> None:
    drift = compare_aliases({"pr-1": D1, "preview": D2}, {"preview": D3, "pr-9": D1})
    assert AliasDrift.from_json(drift.to_json()) == drift
    assert drift.to_json()["alias_object_missing"] == [{"name": "pr-1", "row": D1, "object": None}]
    assert AliasDrift.from_json({}) == AliasDrift()  # a report stored before these classes


_ALIAS_NAMES = st.sampled_from(["production", "preview", "pr-1", "pr-2", "docs", "x"])
_TARGETS = st.sampled_from([D1, D2, D3])


@given(
    rows=st.dictionaries(_ALIAS_NAMES, _TARGETS),
    objects=st.dictionaries(_ALIAS_NAMES, _TARGETS),
)
def test_repairing_per_the_plan_makes_the_rows_equal_the_objects(
    rows: dict[str, str], objects: dict[str, str]
) -> None:
    drift = compare_aliases(rows, objects)
    repaired = dict(rows)
    for mismatch in drift.mismatches:  # what reconcile does, one name at a time
        assert rows.get(mismatch.name) == mismatch.row
        assert objects.get(mismatch.name) == mismatch.object
        if mismatch.object is None:
            del repaired[mismatch.name]  # the compare-and-delete
        else:
            repaired[mismatch.name] = mismatch.object  # the upsert from the object
    assert repaired == objects
    assert compare_aliases(repaired, objects).is_clean()
    # Every name that differs is in exactly one class, and no agreeing name is in any.
    differing = {n for n in set(rows) | set(objects) if rows.get(n) != objects.get(n)}
    assert sorted(differing) == [m.name for m in drift.mismatches]
