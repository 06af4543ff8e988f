"""The retention rules (spec/durable.md §8, DECISIONS Q2): keep predicate, plan, cap, re-check.

Example tests pin the spec's acceptance cases; property tests check the invariants against an
independent oracle (ranks counted, not sorted) on arbitrary inputs, in arbitrary order.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from artemis.config import load_settings
from artemis.db.aliases import AliasRow
from artemis.db.deploys import DeployRow
from artemis.retention import (
    CAP_ZERO_REASON,
    ExpiredPreview,
    Policy,
    Recheck,
    build_plan,
    deploy_age_key,
    expired_previews,
    keep_reason,
    oldest_n,
    preview_expired,
    ranks,
    recheck,
    site_plan,
    split_aliases,
)
from tests.conftest import base_env

NOW = datetime(2026, 6, 1, 12, 0, 0, tzinfo=UTC)
DAY = timedelta(days=1)
SITE = "www.example.org"
POLICY = Policy(
    keep_n=3,
    grace=timedelta(hours=72),
    retention=timedelta(days=7),
    serve_cache_ttl=timedelta(seconds=15),
    cap=10,
)


def row(
    deploy_id: str,
    age: timedelta,
    *,
    marker: bool = True,
    state: str = "active",
    released_ago: timedelta | None = None,
    size: int = 100,
) -> DeployRow:
    return DeployRow(
        site=SITE,
        id=deploy_id,
        mtime=NOW - age,
        bytes=size,
        has_marker=marker,
        state=state,
        alias_released_at=None if released_ago is None else NOW - released_ago,
    )


def pending(deploy_id: str, age: timedelta) -> DeployRow:
    return row(deploy_id, age, marker=False, state="pending", size=0)


def planned(
    rows: list[DeployRow],
    aliased: AbstractSet[str] = frozenset(),
    expired: Sequence[DeployRow] = (),
    policy: Policy = POLICY,
) -> list[str]:
    return build_plan(rows, aliased, list(expired), NOW, policy).planned_ids


# --- settings ------------------------------------------------------------------------------


def test_policy_from_settings_uses_the_configured_values() -> None:
    s = load_settings(
        base_env(
            CLEANUP_RECENT_KEEP="5",
            CLEANUP_GRACE="2h",
            CLEANUP_RETENTION_DAYS="9",
            SERVE_CACHE_TTL="30s",
            CLEANUP_BLAST_CAP="4",
            PREVIEW_TTL="36h",
        )
    )
    assert Policy.from_settings(s) == Policy(
        keep_n=5,
        grace=timedelta(hours=2),
        retention=timedelta(days=9),
        serve_cache_ttl=timedelta(seconds=30),
        cap=4,
        preview_ttl=timedelta(hours=36),
    )
    defaults = Policy.from_settings(load_settings(base_env()))
    assert (defaults.keep_n, defaults.grace, defaults.retention, defaults.cap) == (
        3,
        timedelta(hours=72),
        timedelta(days=7),
        10,
    )


# --- examples from the spec ----------------------------------------------------------------


def test_v1_aliased_thirty_day_old_deploy_is_not_a_candidate() -> None:
    rows = [row(f"d{i}", (30 + i) * DAY) for i in range(5)]
    assert "d4" not in planned(rows, {"d4"})
    assert "d4" in planned(rows)


def test_v2_five_marked_deploys_keep_the_three_newest_ties_by_id_descending() -> None:
    rows = [row(f"d{i}", (10 + 10 * i) * DAY) for i in range(5)]  # aged 10..50 days
    assert planned(rows) == ["d3", "d4"]
    tied = [row(i, 20 * DAY) for i in ("a", "b", "c", "d", "e")]
    assert ranks(tied) == {"e": 0, "d": 1, "c": 2, "b": 3, "a": 4}
    assert planned(tied) == ["b", "a"]


def test_q2_aliased_marked_deploy_counts_toward_n() -> None:
    # The aliased deploy is the newest: it takes a slot, so only two others are kept.
    rows = [row(f"d{i}", (10 + i) * DAY) for i in range(5)]
    assert planned(rows, {"d0"}) == ["d3", "d4"]
    # An aliased old deploy is kept outside N and does not push anything out.
    assert planned(rows, {"d4"}) == ["d3"]


def test_q2_pending_and_unmarked_deploys_never_take_a_slot() -> None:
    marked = [row(f"m{i}", (10 + i) * DAY) for i in range(4)]
    junk = [row(f"u{i}", (8 + i * 0.1) * DAY, marker=False) for i in range(3)]
    plan = build_plan([*marked, *junk], set(), [], NOW, POLICY)
    # The three newest *finalized* deploys survive although three unmarked ones are newer.
    assert set(plan.planned_ids) == {"m3", "u0", "u1", "u2"}
    assert ranks([*marked, *junk]) == {"m0": 0, "m1": 1, "m2": 2, "m3": 3}
    # A pending row passed among the active rows is not ranked either.
    assert "p" not in ranks([*marked, pending("p", DAY)])


def test_v3_grace_boundary_plus_minus_one_second() -> None:
    grace = POLICY.grace
    keepers = [row(f"k{i}", i * timedelta(seconds=1)) for i in range(3)]  # the newest three
    young = row("young", grace - timedelta(seconds=1), marker=False)
    old = row("old", grace + timedelta(seconds=1), marker=False)
    assert planned([*keepers, young, old]) == ["old"]
    assert keep_reason(young, None, False, NOW, POLICY) == "grace"
    assert keep_reason(old, None, False, NOW, POLICY) is None
    # Expired pending: the SQL cutoff is mtime < now - grace.
    p_young = pending("p-young", grace - timedelta(seconds=1))
    p_old = pending("p-old", grace + timedelta(seconds=1))
    assert planned([], expired=[p_young, p_old]) == ["p-old"]


def test_v4_in_flight_pending_deploy_is_absent_from_every_plan() -> None:
    young = pending("inflight", timedelta(minutes=5))
    assert planned([young], expired=[young]) == []


def test_retention_window_applies_only_to_finalized_deploys() -> None:
    keepers = [row(f"k{i}", timedelta(hours=i)) for i in range(3)]
    marked = row("marked", 5 * DAY)
    unmarked = row("unmarked", 5 * DAY, marker=False)
    assert planned([*keepers, marked, unmarked]) == ["unmarked"]
    assert keep_reason(marked, 3, False, NOW, POLICY) == "retention"


def test_v11_released_within_ttl_is_kept_and_unrelated_deploys_are_not_held() -> None:
    keepers = [row(f"k{i}", timedelta(hours=i)) for i in range(3)]
    fresh = row("fresh", 30 * DAY, released_ago=timedelta(seconds=5))
    stale = row("stale", 30 * DAY, released_ago=timedelta(seconds=30))
    unrelated = row("unrelated", 31 * DAY)
    assert planned([*keepers, fresh, stale, unrelated]) == ["stale", "unrelated"]
    assert keep_reason(fresh, None, False, NOW, POLICY) == "released"
    edge = row("edge", 30 * DAY, released_ago=POLICY.serve_cache_ttl)
    assert keep_reason(edge, None, False, NOW, POLICY) is None


def test_expired_pending_is_filtered_against_the_alias_set_at_plan_time() -> None:
    promoted = pending("promoted", 10 * DAY)
    abandoned = pending("abandoned", 11 * DAY)
    plan = build_plan([], {"promoted"}, [promoted, abandoned], NOW, POLICY)
    assert plan.planned_ids == ["abandoned"]
    assert plan.planned[0].reason == "expired_pending" and plan.planned[0].bytes == 0


def test_candidates_are_rejects_newest_first_then_expired_oldest_first() -> None:
    keepers = [row(f"k{i}", timedelta(hours=i)) for i in range(3)]
    rejects = [row(f"r{i}", (10 + i) * DAY) for i in range(3)]
    expired = [pending(f"p{i}", (20 - i) * DAY) for i in range(3)]
    plan = build_plan([*keepers, *rejects], set(), expired, NOW, POLICY)
    assert [c.id for c in plan.candidates] == ["r0", "r1", "r2", "p0", "p1", "p2"]
    assert [c.reason for c in plan.candidates][:1] == ["retention_expired"]
    assert plan.total_bytes == 300 and not plan.capped and plan.reason == ""


def test_v6_seven_candidates_cap_five_takes_the_five_oldest() -> None:
    keepers = [row(f"k{i}", timedelta(hours=i)) for i in range(3)]
    rejects = [row(f"r{i}", (10 + i) * DAY) for i in range(5)]
    expired = [pending("p-new", 9 * DAY), pending("p-old", 40 * DAY)]
    plan = build_plan([*keepers, *rejects], set(), expired, NOW, replace(POLICY, cap=5))
    assert plan.capped
    assert plan.reason == "7 candidates exceed cap 5; taking the oldest 5"
    # The oldest five of everything, oldest first, the expired pending ones included.
    assert plan.planned_ids == ["p-old", "r4", "r3", "r2", "r1"]
    assert plan.total_bytes == 400


def test_v6_cap_zero_refuses_every_delete_and_says_so() -> None:
    rows = [row(f"d{i}", (10 + i) * DAY) for i in range(5)]
    plan = build_plan(rows, set(), [], NOW, replace(POLICY, cap=0))
    assert plan.planned == () and plan.capped and plan.reason == CAP_ZERO_REASON
    assert [c.id for c in plan.candidates] == ["d3", "d4"]  # still reported
    nothing = build_plan(rows[:3], set(), [], NOW, replace(POLICY, cap=0))
    assert not nothing.capped and nothing.reason == ""


def test_plan_json_records_ids_reasons_and_policy() -> None:
    keepers = [row(f"k{i}", timedelta(hours=i)) for i in range(3)]
    plan = build_plan([*keepers, row("old", 9 * DAY, size=7)], set(), [], NOW, POLICY)
    doc = plan.to_json()
    assert doc["planned"] == [
        {
            "id": "old",
            "mtime": (NOW - 9 * DAY).isoformat(),
            "bytes": 7,
            "reason": "retention_expired",
        }
    ]
    assert doc["now"] == NOW.isoformat()
    assert doc["policy"] == {
        "keep_n": 3,
        "grace_s": 72 * 3600.0,
        "retention_s": 7 * 86400.0,
        "serve_cache_ttl_s": 15.0,
        "cap": 10,
        "preview_ttl_s": 14 * 86400.0,
    }
    assert (doc["candidates"], doc["capped"], doc["total_bytes"]) == (1, False, 7)
    assert (doc["reason"], doc["previews_expired"]) == ("", [])
    capped = build_plan(
        [*keepers, row("a", 9 * DAY), row("b", 10 * DAY)], set(), [], NOW, replace(POLICY, cap=1)
    )
    assert capped.to_json()["reason"] == "2 candidates exceed cap 1; taking the oldest 1"


def test_bytes_of_is_a_planned_deploys_size_and_zero_for_any_other_id() -> None:
    keepers = [row(f"k{i}", timedelta(hours=i)) for i in range(3)]
    plan = build_plan([*keepers, row("old", 9 * DAY, size=7)], set(), [], NOW, POLICY)
    assert plan.bytes_of("old") == 7
    assert plan.bytes_of("k0") == 0 and plan.bytes_of("nope") == 0


def test_an_unfinalized_deploy_past_grace_is_planned_for_that_reason() -> None:
    keepers = [row(f"k{i}", timedelta(hours=i)) for i in range(3)]
    plan = build_plan([*keepers, row("half", 4 * DAY, marker=False)], set(), [], NOW, POLICY)
    assert [(p.id, p.reason) for p in plan.planned] == [("half", "unfinalized_past_grace")]


def test_expired_pending_rows_are_planned_oldest_first_whatever_their_ids() -> None:
    """Ids that sort opposite to age: the plan orders by age, not by id."""
    expired = [pending("a", 5 * DAY), pending("b", 9 * DAY), pending("c", 7 * DAY)]
    plan = build_plan([], set(), expired, NOW, POLICY)
    assert plan.planned_ids == ["b", "c", "a"]
    assert {p.reason for p in plan.planned} == {"expired_pending"}


def test_a_row_read_as_pending_is_never_judged_as_an_active_deploy() -> None:
    """Only active rows are ranked and judged by the keep rules; a pending row among them,
    even one whose marker exists, takes no keep-N slot and is not a retention candidate."""
    stray = row("p", 30 * DAY, state="pending")  # old and marked, but never finalized
    keepers = [row(f"k{i}", timedelta(hours=i)) for i in range(3)]
    assert "p" not in ranks([stray, *keepers])
    plan = build_plan([stray, *keepers, row("old", 9 * DAY)], set(), [], NOW, POLICY)
    assert plan.planned_ids == ["old"]


def test_keep_reason_names_each_condition() -> None:
    old = row("o", 30 * DAY)
    assert keep_reason(old, None, True, NOW, POLICY) == "aliased"
    assert keep_reason(old, 0, False, NOW, POLICY) == "recent"
    assert keep_reason(old, None, False, NOW, POLICY) is None


# --- the execution-time re-check (Fix D-15) --------------------------------------------------


def test_recheck_gone_row_is_not_collectable() -> None:
    assert recheck(None, [], set(), NOW, POLICY) == Recheck(False, "gone")


def test_recheck_judges_a_pending_row_by_its_expiry_alone() -> None:
    assert recheck(pending("p", 4 * DAY), [], set(), NOW, POLICY) == Recheck(
        True, "expired_pending"
    )
    assert recheck(pending("p", DAY), [], set(), NOW, POLICY) == Recheck(False, "not_expired")


def test_recheck_names_why_an_active_row_is_collected() -> None:
    keepers = [row(f"k{i}", timedelta(hours=i)) for i in range(3)]
    old, half = row("old", 9 * DAY), row("half", 4 * DAY, marker=False)
    assert recheck(old, [*keepers, old], set(), NOW, POLICY) == Recheck(True, "retention_expired")
    assert recheck(half, [*keepers, half], set(), NOW, POLICY) == Recheck(
        True, "unfinalized_past_grace"
    )


def test_recheck_alias_object_wins_over_everything() -> None:
    target = row("t", 30 * DAY)
    verdict = recheck(target, [target], {"t"}, NOW, POLICY)
    assert not verdict.collect and verdict.aliased


def test_recheck_restored_deploy_is_inside_grace() -> None:
    keepers = [row(f"k{i}", timedelta(hours=i)) for i in range(3)]
    restored = row("r", timedelta(0))  # restore reset mtime to now
    verdict = recheck(restored, [*keepers, restored], set(), NOW, POLICY)
    assert not verdict.collect and verdict.reason in ("recent", "grace")
    old = row("r", 30 * DAY)
    assert recheck(old, [*keepers, old], set(), NOW, POLICY).collect


def test_recheck_ranks_against_the_current_rows() -> None:
    old = row("old", 30 * DAY)
    # Newer deploys were deleted meanwhile: the candidate is now among the newest three.
    assert recheck(old, [old, row("a", DAY)], set(), NOW, POLICY).reason == "recent"
    # The candidate's own row counts even when the active list omits it.
    keepers = [row(f"k{i}", timedelta(hours=i)) for i in range(3)]
    assert recheck(old, keepers, set(), NOW, POLICY).collect


def test_recheck_pending_must_still_be_pending_and_expired() -> None:
    p = pending("p", 10 * DAY)
    assert recheck(p, [], set(), NOW, POLICY).collect
    assert recheck(pending("p", DAY), [], set(), NOW, POLICY).reason == "not_expired"
    # Finalized since planning: judged by the full predicate as an active row.
    finalized = row("p", timedelta(minutes=1))
    assert recheck(finalized, [finalized], set(), NOW, POLICY).reason == "recent"


# --- oldest_n (§8.7) -------------------------------------------------------------------------


def test_oldest_n_contract() -> None:
    items = [5, 1, 4, 2, 3]
    assert oldest_n(items, 0, key=lambda x: x) == []
    assert oldest_n(items, -1, key=lambda x: x) == []
    assert oldest_n(items, 5, key=lambda x: x) == items  # unchanged order
    assert oldest_n(items, 9, key=lambda x: x) == items
    assert oldest_n(items, 2, key=lambda x: x) == [1, 2]
    result = oldest_n(items, 5, key=lambda x: x)
    assert result is not items  # a copy
    # Stable: equal keys keep their input order.
    pairs = [("b", 1), ("a", 1), ("c", 0)]
    assert oldest_n(pairs, 2, key=lambda p: p[1]) == [("c", 0), ("b", 1)]


@given(st.lists(st.integers(-5, 5)), st.integers(-3, 12))
def test_oldest_n_property(items: list[int], n: int) -> None:
    got = oldest_n(items, n, key=lambda x: x)
    if n <= 0:
        assert got == []
    elif len(items) <= n:
        assert got == items
    else:
        assert got == sorted(items)[:n]


# --- exhaustive small worlds -----------------------------------------------------------------

AGES = [timedelta(seconds=10), 2 * DAY, 5 * DAY, 10 * DAY]


def test_exhaustive_small_sites_against_the_oracle() -> None:
    """Every combination of four deploys over (age, marker, aliased, released) and keep-N."""
    kinds = list(
        itertools.product(AGES, (True, False), (False, True), (None, timedelta(seconds=5)))
    )
    rng = random.Random(7)
    for keep_n in (0, 1, 3):
        policy = replace(POLICY, keep_n=keep_n, cap=100)
        for combo in itertools.combinations_with_replacement(range(len(kinds)), 3):
            rows, aliased = [], set()
            for i, k in enumerate(combo):
                age, marker, is_aliased, released = kinds[k]
                rows.append(row(f"d{i}", age + i * timedelta(seconds=1), marker=marker,
                                released_ago=released))  # fmt: skip
                if is_aliased:
                    aliased.add(f"d{i}")
            expected = oracle_candidates(rows, aliased, [], policy)
            shuffled = rows[:]
            rng.shuffle(shuffled)
            got = build_plan(shuffled, aliased, [], NOW, policy)
            assert set(got.planned_ids) == expected, (combo, keep_n)


# --- properties ------------------------------------------------------------------------------


@dataclass(frozen=True)
class World:
    rows: list[DeployRow]
    aliased: set[str]
    expired: list[DeployRow]
    policy: Policy


AGE_S = st.sampled_from(
    [0, 1, 14, 15, 16, 3600, 72 * 3600 - 1, 72 * 3600, 72 * 3600 + 1, 7 * 86400 - 1, 7 * 86400,
     7 * 86400 + 1, 30 * 86400]
) | st.integers(0, 60 * 86400)  # fmt: skip


@st.composite
def worlds(draw: st.DrawFn) -> World:
    n = draw(st.integers(0, 14))
    rows = []
    for i in range(n):
        age = draw(AGE_S)
        released = draw(st.none() | AGE_S)
        rows.append(
            row(
                f"20260101-000000-{i:03d}",
                timedelta(seconds=age),
                marker=draw(st.booleans()),
                released_ago=None if released is None else timedelta(seconds=released),
                size=draw(st.integers(0, 1000)),
            )
        )
    ids = [r.id for r in rows]
    m = draw(st.integers(0, 5))
    expired = [pending(f"20250101-000000-p{i}", timedelta(seconds=draw(AGE_S))) for i in range(m)]
    pool = ids + [p.id for p in expired]
    aliased = set(draw(st.lists(st.sampled_from(pool), max_size=2))) if pool else set()
    policy = Policy(
        keep_n=draw(st.integers(0, 5)),
        grace=timedelta(hours=72),
        retention=timedelta(days=7),
        serve_cache_ttl=timedelta(seconds=15),
        cap=draw(st.integers(0, 12)),
    )
    return World(rows, aliased, expired, policy)


def oracle_candidates(
    rows: list[DeployRow], aliased: set[str], expired: list[DeployRow], policy: Policy
) -> set[str]:
    """The spec's predicate written differently: a rank is a count of newer finalized rows."""
    out = set()
    for r in rows:
        newer_marked = sum(1 for o in rows if o.has_marker and (o.mtime, o.id) > (r.mtime, r.id))
        age = NOW - r.mtime
        keep = (
            r.id in aliased
            or (r.has_marker and newer_marked < policy.keep_n)
            or (
                r.alias_released_at is not None
                and NOW - r.alias_released_at < policy.serve_cache_ttl
            )
            or age < policy.grace
            or (r.has_marker and age < policy.retention)
        )
        if not keep:
            out.add(r.id)
    out |= {p.id for p in expired if p.id not in aliased and p.mtime < NOW - policy.grace}
    return out


@settings(max_examples=300)
@given(worlds(), st.randoms(use_true_random=False))
def test_v9_same_input_same_clock_same_plan_in_any_order(world: World, rnd: random.Random) -> None:
    first = build_plan(world.rows, world.aliased, world.expired, NOW, world.policy)
    again = build_plan(world.rows, world.aliased, world.expired, NOW, world.policy)
    rows, expired = world.rows[:], world.expired[:]
    rnd.shuffle(rows)
    rnd.shuffle(expired)
    shuffled = build_plan(rows, list(reversed(sorted(world.aliased))), expired, NOW, world.policy)
    assert first == again == shuffled
    assert first.planned_ids == shuffled.planned_ids


@settings(max_examples=300)
@given(worlds(), st.data())
def test_v9_duplicate_rows_of_an_id_give_the_same_plan_in_any_order(
    world: World, data: st.DataObject
) -> None:
    """Rows from the index are unique by id; any other input may repeat an id with other
    values, and which copy counts must not depend on the order they come in."""
    if not world.rows:
        return
    released = st.none() | st.integers(0, 10**6).map(lambda s: NOW - timedelta(seconds=s))
    copies = [
        r._replace(
            mtime=r.mtime - timedelta(seconds=data.draw(st.sampled_from([0, 1, 10**5]))),
            has_marker=data.draw(st.booleans()),
            state=data.draw(st.sampled_from(["active", "pending"])),
            alias_released_at=data.draw(released),
        )
        for r in data.draw(st.lists(st.sampled_from(world.rows), min_size=1, max_size=4))
    ]
    rows = [*world.rows, *copies]
    first = build_plan(rows, world.aliased, world.expired, NOW, world.policy)
    shuffled = data.draw(st.permutations(rows))
    assert build_plan(shuffled, world.aliased, world.expired, NOW, world.policy) == first
    # Each id is judged once: no id is planned twice.
    assert len(first.planned_ids) == len(set(first.planned_ids))


def test_of_two_rows_for_one_id_the_release_stamp_decides_alike_in_either_order() -> None:
    """A copy stamped as released keeps its deploy through the serve cache TTL; which copy
    counts never depends on the order they come in."""
    keepers = [row(f"k{i}", timedelta(hours=i)) for i in range(3)]
    bare = row("a", 9 * DAY)
    fresh = row("a", 9 * DAY, released_ago=timedelta(seconds=5))
    stale = row("a", 9 * DAY, released_ago=DAY)
    for pair in ([bare, fresh], [fresh, bare]):
        assert "a" not in build_plan([*keepers, *pair], set(), [], NOW, POLICY).planned_ids
    plans = {
        tuple(build_plan([*keepers, *pair], set(), [], NOW, POLICY).planned_ids)
        for pair in ([fresh, stale], [stale, fresh])
    }
    assert len(plans) == 1


def test_duplicates_of_one_id_leave_every_other_id_judged() -> None:
    rows = [row("a", 9 * DAY), row("a", 8 * DAY), row("b", 10 * DAY), row("c", 11 * DAY)]
    plan = build_plan(rows, set(), [], NOW, replace(POLICY, keep_n=0))
    assert sorted(plan.planned_ids) == ["a", "b", "c"]


@settings(max_examples=300)
@given(worlds())
def test_v1_v2_v3_v11_plan_matches_the_oracle(world: World) -> None:
    plan = build_plan(world.rows, world.aliased, world.expired, NOW, world.policy)
    expected = oracle_candidates(world.rows, world.aliased, world.expired, world.policy)
    assert {c.id for c in plan.candidates} == expected
    assert set(plan.planned_ids) <= expected


@settings(max_examples=300)
@given(worlds())
def test_v1_aliased_never_planned(world: World) -> None:
    plan = build_plan(world.rows, world.aliased, world.expired, NOW, world.policy)
    assert not world.aliased & set(plan.planned_ids)


@settings(max_examples=300)
@given(worlds())
def test_v2_newest_n_finalized_never_planned(world: World) -> None:
    plan = build_plan(world.rows, world.aliased, world.expired, NOW, world.policy)
    newest = sorted((r for r in world.rows if r.has_marker), key=deploy_age_key, reverse=True)
    protected = {r.id for r in newest[: world.policy.keep_n]}
    assert not protected & set(plan.planned_ids)


@settings(max_examples=300)
@given(worlds())
def test_v3_v4_nothing_younger_than_grace_is_planned(world: World) -> None:
    plan = build_plan(world.rows, world.aliased, world.expired, NOW, world.policy)
    for p in plan.planned:
        assert NOW - p.mtime >= world.policy.grace


@settings(max_examples=300)
@given(worlds())
def test_v6_cap_respected_oldest_first_and_zero_refuses(world: World) -> None:
    plan = build_plan(world.rows, world.aliased, world.expired, NOW, world.policy)
    cap = world.policy.cap
    if cap == 0:
        assert plan.planned == ()
        assert plan.capped == bool(plan.candidates)
        return
    assert len(plan.planned) <= cap
    assert plan.capped == (len(plan.candidates) > cap)
    if plan.capped:
        left_out = set(plan.candidates) - set(plan.planned)
        assert max(deploy_age_key(p) for p in plan.planned) <= min(
            deploy_age_key(p) for p in left_out
        )
    else:
        assert plan.planned == plan.candidates
    assert plan.total_bytes == sum(p.bytes for p in plan.planned)


@settings(max_examples=300)
@given(worlds())
def test_v11_release_hold_is_per_deploy(world: World) -> None:
    plan = build_plan(world.rows, world.aliased, world.expired, NOW, world.policy)
    by_id = {r.id: r for r in world.rows}
    for deploy_id in plan.planned_ids:
        r = by_id.get(deploy_id)
        if r is not None and r.alias_released_at is not None:
            assert NOW - r.alias_released_at >= world.policy.serve_cache_ttl


@settings(max_examples=300)
@given(worlds())
def test_q2_pending_never_takes_a_slot(world: World) -> None:
    """Adding unmarked or pending deploys never changes which finalized deploys are kept."""
    base = build_plan(
        [r for r in world.rows if r.has_marker],
        world.aliased,
        [],
        NOW,
        replace(world.policy, cap=100),
    )
    full = build_plan(world.rows, world.aliased, world.expired, NOW, replace(world.policy, cap=100))
    marked = {r.id for r in world.rows if r.has_marker}
    assert set(base.planned_ids) == set(full.planned_ids) & marked


@settings(max_examples=300)
@given(worlds())
def test_recheck_agrees_with_the_plan_when_nothing_changed(world: World) -> None:
    """Under the lock, with the same rows and aliases, every planned deploy is still
    collectable and every kept deploy still kept."""
    plan = build_plan(world.rows, world.aliased, world.expired, NOW, world.policy)
    by_id = {r.id: r for r in [*world.rows, *world.expired]}
    candidates = {c.id for c in plan.candidates}
    for r in world.rows:
        verdict = recheck(r, world.rows, world.aliased, NOW, world.policy)
        assert verdict.collect == (r.id in candidates)
    for deploy_id in plan.planned_ids:
        assert recheck(by_id[deploy_id], world.rows, world.aliased, NOW, world.policy).collect


@pytest.mark.parametrize("keep_n", [0, 1, 3])
def test_keep_n_zero_keeps_nothing_by_rank(keep_n: int) -> None:
    rows = [row(f"d{i}", (10 + i) * DAY) for i in range(4)]
    assert planned(rows, policy=replace(POLICY, keep_n=keep_n)) == [
        f"d{i}" for i in range(keep_n, 4)
    ]


# --- named previews --------------------------------------------------------------------------

TTL = timedelta(days=14)


def preview(name: str, deploy_id: str, age: timedelta) -> AliasRow:
    return AliasRow(site=SITE, name=name, deploy_id=deploy_id, updated_at=NOW - age, updated_by="x")


def test_preview_expires_at_exactly_the_ttl() -> None:
    assert not preview_expired(NOW - TTL + timedelta(seconds=1), NOW, TTL)
    assert preview_expired(NOW - TTL, NOW, TTL)
    rows = [preview("pr-2", "b", TTL), preview("pr-1", "a", 30 * DAY), preview("pr-3", "c", DAY)]
    assert expired_previews(rows, NOW, TTL) == (
        ExpiredPreview("pr-1", "a", NOW - 30 * DAY),
        ExpiredPreview("pr-2", "b", NOW - TTL),
    )


def test_a_duplicate_preview_row_is_judged_by_its_latest_update() -> None:
    rows = [preview("pr-1", "old", 30 * DAY), preview("pr-1", "new", DAY)]
    assert expired_previews(rows, NOW, TTL) == ()
    assert expired_previews(list(reversed(rows)), NOW, TTL) == ()


def test_a_live_named_preview_protects_its_deploy_and_an_expired_one_does_not() -> None:
    rows = [row(f"d{i}", (20 + i) * DAY) for i in range(3)]
    policy = replace(POLICY, keep_n=0, preview_ttl=TTL)
    live = build_plan(rows, set(), [], NOW, policy, [preview("pr-1", "d0", DAY)])
    assert "d0" not in live.planned_ids
    assert live.expired_previews == ()
    # Expired: the deploy is judged released now (the stamp the expiry writes), so the
    # serve cache TTL keeps it this run; past that it is an ordinary retention candidate.
    gone = build_plan(rows, set(), [], NOW, policy, [preview("pr-1", "d0", TTL)])
    assert [p.name for p in gone.expired_previews] == ["pr-1"]
    assert "d0" not in gone.planned_ids
    assert gone.to_json()["previews_expired"] == [
        {"name": "pr-1", "deployId": "d0", "updatedAt": (NOW - TTL).isoformat()}
    ]
    released = [r._replace(alias_released_at=NOW) if r.id == "d0" else r for r in rows]
    later = NOW + policy.serve_cache_ttl
    assert "d0" in build_plan(released, set(), [], later, policy).planned_ids


def test_a_fixed_alias_keeps_a_deploy_an_expired_preview_also_names() -> None:
    rows = [row("d0", 20 * DAY)]
    policy = replace(POLICY, keep_n=0, serve_cache_ttl=timedelta(0))
    plan = build_plan(rows, {"d0"}, [], NOW, policy, [preview("pr-1", "d0", 30 * DAY)])
    assert plan.planned_ids == []
    assert (
        "d0"
        in build_plan(rows, set(), [], NOW, policy, [preview("pr-1", "d0", 30 * DAY)]).planned_ids
    )


@st.composite
def preview_worlds(draw: st.DrawFn) -> tuple[World, list[AliasRow]]:
    world = draw(worlds())
    pool = [r.id for r in world.rows] + [p.id for p in world.expired] + ["20200101-000000-gone"]
    previews = [
        preview(
            f"pr-{i}",
            draw(st.sampled_from(pool)),
            timedelta(seconds=draw(st.sampled_from([0, 1, 86400, 14 * 86400 - 1, 14 * 86400,
                                                    14 * 86400 + 1, 60 * 86400])
                                   | st.integers(0, 90 * 86400))),
        )
        for i in range(draw(st.integers(0, 4)))
    ]  # fmt: skip
    policy = replace(world.policy, preview_ttl=TTL, serve_cache_ttl=draw(
        st.sampled_from([timedelta(0), timedelta(seconds=15)])))  # fmt: skip
    return replace(world, policy=policy), previews


@settings(max_examples=400)
@given(preview_worlds(), st.randoms(use_true_random=False))
def test_no_deploy_a_fixed_alias_or_a_live_named_preview_names_is_ever_planned(
    pw: tuple[World, list[AliasRow]], rnd: random.Random
) -> None:
    world, previews = pw
    shuffled = previews[:]
    rnd.shuffle(shuffled)
    plan = build_plan(world.rows, world.aliased, world.expired, NOW, world.policy, shuffled)
    live = {p.deploy_id for p in previews if NOW - p.updated_at < TTL}
    assert not (world.aliased | live) & {c.id for c in plan.candidates}
    # Same inputs in any order: the same plan.
    assert plan == build_plan(world.rows, world.aliased, world.expired, NOW, world.policy, previews)
    assert {p.name for p in plan.expired_previews} == {
        p.name for p in previews if NOW - p.updated_at >= TTL
    }


@settings(max_examples=300)
@given(preview_worlds())
def test_an_expired_preview_protects_exactly_what_its_release_stamp_does(
    pw: tuple[World, list[AliasRow]],
) -> None:
    """The plan with expired previews equals the plan over the state the expiry leaves: their
    rows gone, their deploys stamped released at NOW. A dry run reports what a live run does."""
    world, previews = pw
    plan = build_plan(world.rows, world.aliased, world.expired, NOW, world.policy, previews)
    gone = {p.name for p in plan.expired_previews}
    left = [p for p in previews if p.name not in gone]
    released_ids = {p.deploy_id for p in previews if p.name in gone}
    after_rows = [
        r._replace(alias_released_at=NOW) if r.id in released_ids else r for r in world.rows
    ]
    after = build_plan(after_rows, world.aliased, world.expired, NOW, world.policy, left)
    assert after.planned == plan.planned
    assert after.candidates == plan.candidates


def test_site_plan_splits_alias_rows_fixed_channels_never_expire() -> None:
    rows = [row("d0", 40 * DAY), row("d1", 40 * DAY), row("d2", 40 * DAY), row("d3", 40 * DAY)]
    policy = replace(POLICY, keep_n=0, serve_cache_ttl=timedelta(0), preview_ttl=TTL)
    aliases = [
        preview("production", "d0", 90 * DAY),  # a channel protects however old its row
        preview("preview", "d1", 90 * DAY),
        preview("pr-1", "d2", 90 * DAY),  # expired: protects nothing
        preview("pr-2", "d3", DAY),
    ]
    fixed, named = split_aliases(aliases)
    assert fixed == {"d0", "d1"} and [p.name for p in named] == ["pr-1", "pr-2"]
    plan = site_plan(rows, aliases, [], NOW, policy)
    assert plan.planned_ids == ["d2"]
    assert [p.name for p in plan.expired_previews] == ["pr-1"]
    # A name the rule refuses is never treated as an expiring preview: it always protects.
    assert split_aliases([preview("Not_A_Name", "d2", 90 * DAY)])[0] == {"d2"}
