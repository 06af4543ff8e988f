"""The retention rules: keep predicate, plan builder, blast cap, the one
"oldest N" selection, and the execution-time re-check. Pure: no I/O, `now` is an input, and
input order never matters (same state and `now`, same plan in the same order) because every
path sorts before it ranks or selects.

Ranking: the keep-newest-N floor ranks only finalized (marked) deploys, so unfinished uploads
cannot push finished deploys out of it. An aliased deploy is kept whatever its rank and, when
marked, still takes one of the N slots; an unmarked or pending deploy never takes a slot.

"Aliased" means: named by a fixed alias (`production`, `preview`), or by a named preview
updated less than `preview_ttl` ago. A named preview at or past the TTL expires (gc-site
removes it before it collects anything) and protects nothing; its deploy is judged as released
at `now`, the stamp the expiry writes, so a dry-run plan and the live run agree.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from operator import attrgetter
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, Protocol, TypeVar

from artemis.alias_names import is_named_alias

if TYPE_CHECKING:
    from artemis.config import JobSettings

T = TypeVar("T")

# Why a deploy is a delete candidate.
CandidateReason = Literal["retention_expired", "unfinalized_past_grace", "expired_pending"]
# Why a deploy is kept (the first keep condition that holds), or why a re-check skips.
KeepReason = Literal["aliased", "recent", "released", "grace", "retention", "gone", "not_expired"]

CAP_ZERO_REASON = "cap 0 refuses every delete"


class DeployLike(Protocol):
    """What the rules read from a deploy row (artemis.db.deploys.DeployRow fits)."""

    @property
    def id(self) -> str: ...
    @property
    def mtime(self) -> datetime: ...
    @property
    def bytes(self) -> int: ...
    @property
    def has_marker(self) -> bool: ...
    @property
    def state(self) -> str: ...
    @property
    def alias_released_at(self) -> datetime | None: ...


class PreviewLike(Protocol):
    """What the rules read from a named preview's alias row (artemis.db.aliases.AliasRow)."""

    @property
    def name(self) -> str: ...
    @property
    def deploy_id(self) -> str: ...
    @property
    def updated_at(self) -> datetime: ...


@dataclass(frozen=True)
class Policy:
    """Retention settings as durations."""

    keep_n: int
    grace: timedelta
    retention: timedelta
    serve_cache_ttl: timedelta
    cap: int
    preview_ttl: timedelta = timedelta(days=14)

    @classmethod
    def from_settings(cls, settings: JobSettings) -> Policy:
        return cls(
            keep_n=settings.cleanup_recent_keep,
            grace=timedelta(seconds=settings.cleanup_grace),
            retention=timedelta(days=settings.cleanup_retention_days),
            serve_cache_ttl=timedelta(seconds=settings.serve_cache_ttl),
            cap=settings.cleanup_blast_cap,
            preview_ttl=timedelta(seconds=settings.preview_ttl),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "keep_n": self.keep_n,
            "grace_s": self.grace.total_seconds(),
            "retention_s": self.retention.total_seconds(),
            "serve_cache_ttl_s": self.serve_cache_ttl.total_seconds(),
            "cap": self.cap,
            "preview_ttl_s": self.preview_ttl.total_seconds(),
        }


# --- the one selection function ----------------------------------------------------------


def oldest_n(items: Sequence[T], n: int, key: Callable[[T], Any]) -> list[T]:
    """The N oldest items; `key` orders oldest first (smaller = older).

    N ≤ 0 → []; len ≤ N → the items unchanged, in their order; otherwise a stable sort of a
    copy, oldest first, cut to N. Every capped path (retention plan, reconcile, tombstone
    purge) selects through this function."""
    if n <= 0:
        return []
    if len(items) <= n:
        return list(items)
    return sorted(items, key=key)[:n]


# "Older" for deploy rows (and planned deploys): smaller mtime, tie → smaller id. An
# attrgetter, not a function: the planner keys every row of every site with it.
deploy_age_key: Callable[[DeployLike | PlannedDeploy], tuple[datetime, str]] = attrgetter(
    "mtime", "id"
)


# --- named preview expiry ----------------------------------------------------------------


@dataclass(frozen=True)
class ExpiredPreview:
    """A named preview the run unpublishes: the row as planned (the execution re-checks it)."""

    name: str
    deploy_id: str
    updated_at: datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "deployId": self.deploy_id,
            "updatedAt": self.updated_at.isoformat(),
        }


def preview_expired(updated_at: datetime, now: datetime, ttl: timedelta) -> bool:
    """A named preview not moved for `ttl` (at exactly `ttl` it has expired)."""
    return now - updated_at >= ttl


def expired_previews(
    previews: Iterable[PreviewLike], now: datetime, ttl: timedelta
) -> tuple[ExpiredPreview, ...]:
    """The named previews to expire, by name (one per name: a duplicate input row keeps the
    most recently updated, so a stale copy never expires a live preview)."""
    latest: dict[str, PreviewLike] = {}
    for p in previews:
        seen = latest.get(p.name)
        if seen is None or (p.updated_at, p.deploy_id) > (seen.updated_at, seen.deploy_id):
            latest[p.name] = p
    return tuple(
        ExpiredPreview(p.name, p.deploy_id, p.updated_at)
        for name, p in sorted(latest.items())
        if preview_expired(p.updated_at, now, ttl)
    )


@dataclass(frozen=True)
class _ReleasedNow:
    """A deploy row as it reads once a preview expiry stamped its release at `at`."""

    row: DeployLike
    at: datetime

    @property
    def id(self) -> str:
        return self.row.id

    @property
    def mtime(self) -> datetime:
        return self.row.mtime

    @property
    def bytes(self) -> int:
        return self.row.bytes

    @property
    def has_marker(self) -> bool:
        return self.row.has_marker

    @property
    def state(self) -> str:
        return self.row.state

    @property
    def alias_released_at(self) -> datetime | None:
        released = self.row.alias_released_at
        return self.at if released is None else max(released, self.at)


# --- ranking and the keep predicate ------------------------------------------------------


def _newest_first(rows: Iterable[T], key: Callable[[T], tuple[datetime, str]]) -> list[T]:
    return sorted(rows, key=key, reverse=True)


def _unique_by_id(rows: Iterable[DeployLike]) -> list[DeployLike]:
    """One row per id; which duplicate survives does not depend on input order. Rows read
    from the index are unique already (the key is site and id): they come back as given,
    without the sort that only duplicates need."""
    given = list(rows)
    if len({row.id for row in given}) == len(given):
        return given
    chosen: dict[str, DeployLike] = {}
    for row in sorted(given, key=_full_key):
        chosen.setdefault(row.id, row)
    return list(chosen.values())


def _full_key(row: DeployLike) -> tuple[Any, ...]:
    released = row.alias_released_at
    return (
        row.id,
        row.mtime,
        row.state,
        row.has_marker,
        row.bytes,
        released is None,
        released or row.mtime,
    )


def ranks(active: Iterable[DeployLike]) -> dict[str, int]:
    """Rank (0 = newest) of every finalized active deploy: mtime desc, tie → id desc.

    Unmarked rows are not ranked: they never take a keep-N slot."""
    return _ranks_newest_first(_newest_first(_unique_by_id(active), deploy_age_key))


def _ranks_newest_first(newest: Iterable[DeployLike]) -> dict[str, int]:
    """`ranks` of unique rows already ordered newest first."""
    marked = (r.id for r in newest if r.has_marker and r.state != "pending")
    return {deploy_id: i for i, deploy_id in enumerate(marked)}


@dataclass(frozen=True)
class Horizon:
    """The policy's windows as instants at one `now`: a time after an instant is inside that
    window. A plan computes them once, not once per row."""

    keep_n: int
    released_after: datetime  # now - serve cache TTL
    grace_after: datetime  # now - grace
    retained_after: datetime  # now - retention

    @classmethod
    def at(cls, now: datetime, policy: Policy) -> Horizon:
        return cls(
            keep_n=policy.keep_n,
            released_after=now - policy.serve_cache_ttl,
            grace_after=now - policy.grace,
            retained_after=now - policy.retention,
        )

    def keep_reason(self, row: DeployLike, rank: int | None, aliased: bool) -> KeepReason | None:
        """The first keep condition that holds for an active deploy, or None (collect)."""
        if aliased:
            return "aliased"  # 1: a deploy an alias names is never collected
        if rank is not None and rank < self.keep_n:
            return "recent"  # 2: the newest keep-N, whatever their age
        released = row.alias_released_at
        if released is not None and released > self.released_after:
            return "released"  # 3: caches may still serve it
        if row.mtime > self.grace_after:
            return "grace"  # 4: it may still be uploading (grace >= session TTL)
        if row.has_marker and row.mtime > self.retained_after:
            return "retention"  # 5
        return None

    def expired_pending(self, row: DeployLike) -> bool:
        """A never-finalized deploy past grace (the SQL cutoff: mtime < now - grace)."""
        return row.state == "pending" and row.mtime < self.grace_after


def keep_reason(
    row: DeployLike, rank: int | None, aliased: bool, now: datetime, policy: Policy
) -> KeepReason | None:
    """`Horizon.keep_reason` at `now`."""
    return Horizon.at(now, policy).keep_reason(row, rank, aliased)


def is_expired_pending(row: DeployLike, now: datetime, policy: Policy) -> bool:
    """`Horizon.expired_pending` at `now`."""
    return Horizon.at(now, policy).expired_pending(row)


def _candidate_reason(row: DeployLike) -> CandidateReason:
    if row.state == "pending":
        return "expired_pending"
    return "retention_expired" if row.has_marker else "unfinalized_past_grace"


# --- the plan ----------------------------------------------------------------------------


class PlannedDeploy(NamedTuple):
    """A delete candidate. A named tuple rather than a frozen dataclass: as immutable, and a
    plan builds one per candidate of every site (a dataclass's frozen init costs twice as
    much)."""

    id: str
    mtime: datetime
    bytes: int
    reason: CandidateReason

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "mtime": self.mtime.isoformat(),
            "bytes": self.bytes,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class Plan:
    now: datetime
    policy: Policy
    candidates: tuple[PlannedDeploy, ...]  # keep-predicate rejects newest first, then expired
    planned: tuple[PlannedDeploy, ...]  # what a live run executes, in this order
    capped: bool
    reason: str
    total_bytes: int
    expired_previews: tuple[ExpiredPreview, ...] = ()

    @property
    def planned_ids(self) -> list[str]:
        return [p.id for p in self.planned]

    def bytes_of(self, deploy_id: str) -> int:
        return next((p.bytes for p in self.planned if p.id == deploy_id), 0)

    def to_json(self) -> dict[str, Any]:
        """The plan as recorded in the run's `job_runs` row before the run executes it."""
        return {
            "now": self.now.isoformat(),
            "policy": self.policy.to_json(),
            "candidates": len(self.candidates),
            "planned": [p.to_json() for p in self.planned],
            "capped": self.capped,
            "reason": self.reason,
            "total_bytes": self.total_bytes,
            "previews_expired": [p.to_json() for p in self.expired_previews],
        }


def _planned(row: DeployLike) -> PlannedDeploy:
    return PlannedDeploy(row.id, row.mtime, row.bytes, _candidate_reason(row))


def build_plan(
    rows: Iterable[DeployLike],
    aliased_ids: Collection[str],
    expired: Iterable[DeployLike],
    now: datetime,
    policy: Policy,
    previews: Iterable[PreviewLike] = (),
) -> Plan:
    """One site's plan from its active rows, the ids its fixed alias rows name (any id here
    is kept, whatever names it), its expired pending rows and its named preview rows. Same
    inputs (in any order) and `now` → the same plan, identically ordered.

    A named preview younger than `policy.preview_ttl` protects its deploy like a fixed alias;
    an expired one is in `expired_previews` and protects nothing: its deploy is judged with
    its release stamped at `now`, as the expiry leaves it (kept through the serve cache TTL)."""
    named = list(previews)
    gone = expired_previews(named, now, policy.preview_ttl)
    gone_names = {p.name for p in gone}
    aliased = frozenset(aliased_ids) | {p.deploy_id for p in named if p.name not in gone_names}
    released = {p.deploy_id for p in gone}
    active = [
        _ReleasedNow(r, now) if r.id in released else r
        for r in _unique_by_id(rows)
        if r.state != "pending"
    ]
    horizon = Horizon.at(now, policy)
    newest = _newest_first(active, deploy_age_key)
    rank = _ranks_newest_first(newest)
    rejects = [
        _planned(row)
        for row in newest
        if horizon.keep_reason(row, rank.get(row.id), row.id in aliased) is None
    ]
    seen = {r.id for r in active}
    # Expired pending rows are filtered against the alias set too (a pending deploy can be
    # promoted by id); re-checking the expiry keeps a stale or wrong input from ever reaching
    # the plan, so nothing still within grace is collected.
    stale = [
        _planned(row)
        for row in sorted(_unique_by_id(expired), key=deploy_age_key)
        if row.id not in aliased and row.id not in seen and horizon.expired_pending(row)
    ]
    candidates = (*rejects, *stale)
    if candidates and policy.cap <= 0:
        planned: tuple[PlannedDeploy, ...] = ()
        capped, reason = True, CAP_ZERO_REASON
    elif policy.cap > 0 and len(candidates) > policy.cap:
        planned = tuple(oldest_n(candidates, policy.cap, deploy_age_key))
        capped = True
        reason = (
            f"{len(candidates)} candidates exceed cap {policy.cap}; taking the oldest {policy.cap}"
        )
    else:
        planned, capped, reason = candidates, False, ""
    return Plan(
        now=now,
        policy=policy,
        candidates=candidates,
        planned=planned,
        capped=capped,
        reason=reason,
        total_bytes=sum(p.bytes for p in planned),
        expired_previews=gone,
    )


def split_aliases(rows: Iterable[PreviewLike]) -> tuple[frozenset[str], list[PreviewLike]]:
    """Alias rows → (ids that always protect, named preview rows that expire). A name that is
    not a named preview's (the fixed channels, or anything unexpected) always protects."""
    fixed: set[str] = set()
    named: list[PreviewLike] = []
    for r in rows:
        if is_named_alias(r.name):
            named.append(r)
        else:
            fixed.add(r.deploy_id)
    return frozenset(fixed), named


def site_plan(
    rows: Iterable[DeployLike],
    alias_rows: Iterable[PreviewLike],
    expired: Iterable[DeployLike],
    now: datetime,
    policy: Policy,
) -> Plan:
    """`build_plan` from a site's alias rows as the index holds them (fixed and named)."""
    fixed, named = split_aliases(alias_rows)
    return build_plan(rows, fixed, expired, now, policy, named)


# --- the execution-time re-check ---------------------------------------------------------


@dataclass(frozen=True)
class Recheck:
    collect: bool
    reason: KeepReason | CandidateReason

    @property
    def aliased(self) -> bool:
        return self.reason == "aliased"


def recheck(
    current: DeployLike | None,
    active_rows: Iterable[DeployLike],
    alias_ids: Collection[str],
    now: datetime,
    policy: Policy,
) -> Recheck:
    """Is a planned deploy still collectable, judged on what is true under the lock?

    `current` is the deploy's row now (None: gone — tombstoned or deleted since planning);
    `active_rows` the site's active rows now; `alias_ids` the targets read from the alias
    OBJECTS (the bucket is authoritative for liveness). An active row goes through the full
    keep predicate (1-5); a pending one must still be pending and expired."""
    if current is None:
        return Recheck(False, "gone")
    if current.id in alias_ids:
        return Recheck(False, "aliased")
    if current.state == "pending":
        if is_expired_pending(current, now, policy):
            return Recheck(True, "expired_pending")
        return Recheck(False, "not_expired")
    others = [r for r in active_rows if r.id != current.id]
    rank = ranks([*others, current]).get(current.id)
    kept = keep_reason(current, rank, False, now, policy)
    if kept is not None:
        return Recheck(False, kept)
    return Recheck(True, _candidate_reason(current))
