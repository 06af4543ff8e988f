"""The deploy index (`deploys`), keyed by dirname."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, NamedTuple

from psycopg import Connection
from psycopg.rows import class_row

from artemis.db import aliases as aliases_db
from artemis.db.aliases import AliasRow
from artemis.deploy_metadata import DeployMetadata
from artemis.keys import Dirname


class DeployRow(NamedTuple):
    """A deploy's row as retention reads it. A named tuple: immutable, and built straight
    from the row's tuple (the planners read 40 rows a site, fleet-wide)."""

    site: str
    id: str
    mtime: datetime
    bytes: int
    has_marker: bool
    state: str
    alias_released_at: datetime | None


_COLUMNS = "site, id, mtime, bytes, has_marker, state, alias_released_at"


def begin(
    conn: Connection, site: Dirname, deploy_id: str, at: datetime,
    meta: DeployMetadata | None = None, sha: str | None = None,
) -> bool:  # fmt: skip
    """Record a pending deploy at init, with its metadata and commit; an existing row (even
    active) is left untouched."""
    meta = meta or DeployMetadata()
    cur = conn.execute(
        "INSERT INTO deploys (site, id, mtime, created_at, state, branch, message, pr, repo,"
        " ci_url, sha) VALUES (%s, %s, %s, %s, 'pending', %s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (site, id) DO NOTHING",
        [site, deploy_id, at, at, meta.branch, meta.message, meta.pr, meta.repo, meta.ci_url,
         sha],
    )  # fmt: skip
    return cur.rowcount == 1


def context(conn: Connection, site: Dirname, deploy_id: str) -> dict[str, Any]:
    """What a deploy's events say of it: its commit, recorded context and size, under the
    API's names, the unknown ones left out."""
    row = conn.execute(
        "SELECT sha, branch, message, pr, repo, ci_url, files, bytes FROM deploys"
        " WHERE site = %s AND id = %s",
        [site, deploy_id],
    ).fetchone()
    if row is None:
        return {}
    names = ("sha", "branch", "message", "pr", "repo", "ciUrl", "files", "bytes")
    return {name: value for name, value in zip(names, row, strict=True) if value is not None}


def upsert_finalized(
    conn: Connection,
    site: Dirname,
    deploy_id: str,
    at: datetime,
    size: int,
    *,
    has_marker: bool = True,
    finalized_at: datetime | None = None,
    files: int | None = None,
) -> None:
    """Finalize (and restore): active, mtime = `at`, bytes and marker overwritten.

    `finalized_at` and `files` (finalize's; a restore knows neither) never overwrite a known
    value with an unknown one, and a repeated finalize keeps the first one's time, as its
    completion marker keeps the first record. The metadata init recorded is left as it is."""
    conn.execute(
        "INSERT INTO deploys (site, id, mtime, bytes, has_marker, state, finalized_at, files)"
        " VALUES (%s, %s, %s, %s, %s, 'active', %s, %s)"
        " ON CONFLICT (site, id) DO UPDATE SET mtime = EXCLUDED.mtime, bytes = EXCLUDED.bytes,"
        " has_marker = EXCLUDED.has_marker, state = 'active',"
        " finalized_at = COALESCE(deploys.finalized_at, EXCLUDED.finalized_at),"
        " files = COALESCE(EXCLUDED.files, deploys.files)",
        [site, deploy_id, at, size, has_marker, finalized_at, files],
    )


def restore_metadata(conn: Connection, site: Dirname, deploy_id: str) -> None:
    """A restore puts back what the deploy's row held when it was deleted (the tombstone
    carries it: tombstones.tombstone_deploy); call it before the tombstone is cleared. A
    tombstone from before the metadata existed carries none, and changes nothing."""
    conn.execute(
        "UPDATE deploys d SET branch = m->>'branch', message = m->>'message',"
        " pr = (m->>'pr')::integer, repo = m->>'repo', ci_url = m->>'ciUrl',"
        " created_at = COALESCE((m->>'createdAt')::timestamptz, d.created_at),"
        " finalized_at = COALESCE((m->>'finalizedAt')::timestamptz, d.finalized_at),"
        " files = COALESCE((m->>'files')::integer, d.files)"
        " FROM (SELECT deploy_meta AS m FROM tombstones WHERE site = %(site)s AND id = %(id)s"
        "   AND deploy_meta IS NOT NULL) t"
        " WHERE d.site = %(site)s AND d.id = %(id)s",
        {"site": site, "id": deploy_id},
    )


def stamp_release(
    conn: Connection, site: Dirname, previous_id: str | None, new_id: str, at: datetime
) -> None:
    """An alias moved off `previous_id` (when it differs from the new target)."""
    if previous_id and previous_id != new_id:
        conn.execute(
            "UPDATE deploys SET alias_released_at = %s WHERE site = %s AND id = %s",
            [at, site, previous_id],
        )


def release_alias(
    conn: Connection, site: Dirname, name: str, deploy_id: str, at: datetime,
    *, only_while_named: bool,
) -> bool:  # fmt: skip
    """An alias object was deleted: its row goes and the deploy it named is stamped released,
    so retention keeps that deploy while serve caches may still answer from it. With
    `only_while_named`, a compare-and-delete: the row goes, and the stamp is made, only while
    the row still names `deploy_id` (a move that landed in between is kept). Returns whether
    a row went."""
    removed = aliases_db.delete(conn, site, name, deploy_id if only_while_named else None)
    if removed or not only_while_named:
        # No new target: any id other than the one released stamps it.
        stamp_release(conn, site, deploy_id, "", at)
    return removed


def upsert_backfilled(
    conn: Connection, site: Dirname, deploy_id: str, mtime: datetime, has_marker: bool, size: int
) -> None:
    """Backfill: active; overwrite mtime and marker; bytes only when the new value is > 0."""
    conn.execute(
        "INSERT INTO deploys (site, id, mtime, bytes, has_marker, state)"
        " VALUES (%s, %s, %s, %s, %s, 'active')"
        " ON CONFLICT (site, id) DO UPDATE SET mtime = EXCLUDED.mtime,"
        " has_marker = EXCLUDED.has_marker, state = 'active',"
        " bytes = CASE WHEN EXCLUDED.bytes > 0 THEN EXCLUDED.bytes ELSE deploys.bytes END",
        [site, deploy_id, mtime, size, has_marker],
    )


def reindex(
    conn: Connection, site: Dirname, deploy_id: str, mtime: datetime, has_marker: bool
) -> bool:
    """Reconcile: insert unless a tombstone exists for the deploy or the site (one statement)."""
    cur = conn.execute(
        "INSERT INTO deploys (site, id, mtime, bytes, has_marker, state)"
        " SELECT %(site)s, %(id)s, %(mtime)s, 0, %(marker)s, 'active'"
        " WHERE NOT EXISTS (SELECT 1 FROM tombstones"
        "   WHERE site = %(site)s AND id IN (%(id)s, ''))"
        " ON CONFLICT (site, id) DO UPDATE SET has_marker = EXCLUDED.has_marker, state = 'active'",
        {"site": site, "id": deploy_id, "mtime": mtime, "marker": has_marker},
    )
    return cur.rowcount == 1


def delete(conn: Connection, site: Dirname, deploy_id: str) -> bool:
    cur = conn.execute("DELETE FROM deploys WHERE site = %s AND id = %s", [site, deploy_id])
    return cur.rowcount == 1


_ACTIVE = f"SELECT {_COLUMNS} FROM deploys WHERE site = %s AND state = 'active'"
_ACTIVE += " ORDER BY mtime DESC, id DESC"
_EXPIRED = f"SELECT {_COLUMNS} FROM deploys WHERE site = %s AND state = 'pending'"
_EXPIRED += " AND mtime < %s ORDER BY mtime, id"


def active_for_site(conn: Connection, site: Dirname) -> list[DeployRow]:
    with conn.cursor(row_factory=class_row(DeployRow)) as cur:
        return cur.execute(_ACTIVE, [site]).fetchall()


def get(conn: Connection, site: Dirname, deploy_id: str) -> DeployRow | None:
    with conn.cursor(row_factory=class_row(DeployRow)) as cur:
        return cur.execute(
            f"SELECT {_COLUMNS} FROM deploys WHERE site = %s AND id = %s", [site, deploy_id]
        ).fetchone()


def expired_pending(conn: Connection, site: Dirname, cutoff: datetime) -> list[DeployRow]:
    with conn.cursor(row_factory=class_row(DeployRow)) as cur:
        return cur.execute(_EXPIRED, [site, cutoff]).fetchall()


PlanInputs = tuple[list[DeployRow], list[AliasRow], list[DeployRow]]


def plan_inputs_for_sites(
    conn: Connection, sites: Sequence[Dirname], cutoff: datetime
) -> dict[Dirname, PlanInputs]:
    """What gc-site plans from (active rows, alias rows, expired pending rows), for many
    sites in one round trip of three pipelined statements (the fleet planner: a per-site round
    trip would cost more than the plan itself). Every site is in the result, with empty
    inputs when the index holds nothing for it."""
    inputs: dict[Dirname, PlanInputs] = {site: ([], [], []) for site in sites}
    names = list(inputs)
    with conn.pipeline():
        active = conn.cursor(binary=True)
        active.execute(
            f"SELECT {_COLUMNS} FROM deploys WHERE site = ANY(%s) AND state = 'active'", [names]
        )
        # Whole rows: a named preview's updated_at decides whether it still protects its deploy.
        targets = conn.cursor()
        targets.execute(
            "SELECT site, name, deploy_id, updated_at, updated_by FROM aliases"
            " WHERE site = ANY(%s)",
            [names],
        )
        expired = conn.cursor(binary=True)
        expired.execute(
            f"SELECT {_COLUMNS} FROM deploys WHERE site = ANY(%s) AND state = 'pending'"
            " AND mtime < %s",
            [names, cutoff],
        )
    make = DeployRow._make
    for row in active.fetchall():
        inputs[row[0]][0].append(make(row))
    for alias in targets.fetchall():
        inputs[alias[0]][1].append(AliasRow(*alias))
    for row in expired.fetchall():
        inputs[row[0]][2].append(make(row))
    return inputs


def plan_inputs(conn: Connection, site: Dirname, cutoff: datetime) -> PlanInputs:
    """What gc-site plans from for one site (active rows, alias rows, expired pending
    rows): `plan_inputs_for_sites` of that site."""
    return plan_inputs_for_sites(conn, [site], cutoff)[site]


def count_active(conn: Connection) -> int:
    row = conn.execute("SELECT count(*) FROM deploys WHERE state = 'active'").fetchone()
    return int(row[0]) if row else 0


def known_dirnames(conn: Connection) -> list[Dirname]:
    """Every site any table knows of, sorted (the background jobs' site enumeration)."""
    rows = conn.execute(
        "SELECT site FROM deploys UNION SELECT site FROM aliases"
        " UNION SELECT site FROM tombstones ORDER BY 1"
    ).fetchall()
    return [Dirname(r[0]) for r in rows]


def exists_for_site(conn: Connection, site: Dirname) -> bool:
    """Whether the index holds any row (pending or active) for the site."""
    row = conn.execute("SELECT EXISTS (SELECT 1 FROM deploys WHERE site = %s)", [site]).fetchone()
    return bool(row and row[0])


def sites_with_expired_pending(conn: Connection, cutoff: datetime) -> list[Dirname]:
    """Sites holding a pending (never finalized) row with mtime < cutoff, sorted."""
    rows = conn.execute(
        "SELECT DISTINCT site FROM deploys WHERE state = 'pending' AND mtime < %s ORDER BY site",
        [cutoff],
    ).fetchall()
    return [Dirname(r[0]) for r in rows]


BackfillOutcome = Literal["inserted", "updated", "unchanged", "tombstoned"]


def backfill_guarded(
    conn: Connection, site: Dirname, deploy_id: str, mtime: datetime, has_marker: bool, size: int
) -> BackfillOutcome:
    """Backfill with the guarded reindex semantics.

    Nothing is written when a tombstone exists for the deploy or for the whole site: a
    tombstoned deploy is never resurrected ("tombstoned"). Otherwise a new row is active with
    `mtime` (parsed from the id), the listed size and the marker flag. An existing row keeps
    its `mtime` (finalize's time beats the id's); its marker follows the bucket; its bytes take
    the listed size when that is > 0; a pending row turns active only when the bucket shows the
    marker (a finalize whose index write was lost), so an in-flight session still expires
    through gc-site. The guard and the write are one statement.
    """
    row = conn.execute(
        "WITH guard AS (SELECT EXISTS (SELECT 1 FROM tombstones"
        "   WHERE site = %(site)s AND id IN (%(id)s, '')) AS tombstoned),"
        " written AS ("
        "   INSERT INTO deploys (site, id, mtime, bytes, has_marker, state)"
        "   SELECT %(site)s, %(id)s, %(mtime)s, %(bytes)s, %(marker)s, 'active'"
        "   FROM guard WHERE NOT guard.tombstoned"
        "   ON CONFLICT (site, id) DO UPDATE SET has_marker = EXCLUDED.has_marker,"
        "     state = CASE WHEN EXCLUDED.has_marker THEN 'active' ELSE deploys.state END,"
        "     bytes = CASE WHEN EXCLUDED.bytes > 0 THEN EXCLUDED.bytes ELSE deploys.bytes END"
        "   WHERE (deploys.has_marker, deploys.state, deploys.bytes) IS DISTINCT FROM"
        "     (EXCLUDED.has_marker,"
        "      CASE WHEN EXCLUDED.has_marker THEN 'active' ELSE deploys.state END,"
        "      CASE WHEN EXCLUDED.bytes > 0 THEN EXCLUDED.bytes ELSE deploys.bytes END)"
        "   RETURNING (xmax = 0) AS inserted)"
        " SELECT guard.tombstoned, (SELECT inserted FROM written) FROM guard",
        {"site": site, "id": deploy_id, "mtime": mtime, "bytes": size, "marker": has_marker},
    ).fetchone()
    assert row is not None
    if row[0]:
        return "tombstoned"
    if row[1] is None:
        return "unchanged"
    return "inserted" if row[1] else "updated"


def states_for_site(conn: Connection, site: Dirname) -> dict[str, tuple[str, bool]]:
    """Every deploy row of the site, any state: id → (state, has_marker)."""
    rows = conn.execute(
        "SELECT id, state, has_marker FROM deploys WHERE site = %s", [site]
    ).fetchall()
    return {str(i): (str(s), bool(m)) for i, s, m in rows}


@dataclass(frozen=True)
class ListedDeploy:
    """One deploy as the deploy list shows it: an index row, or a per-deploy tombstone
    (`tombstoned`, with the row's fields it carried)."""

    id: str
    state: str
    tombstoned: bool
    created_at: datetime | None
    finalized_at: datetime | None
    files: int | None
    bytes: int
    branch: str | None
    message: str | None
    pr: int | None
    repo: str | None
    ci_url: str | None


_META = "m->>'branch', m->>'message', (m->>'pr')::integer, m->>'repo', m->>'ciUrl'"
_LISTED = (
    "SELECT id, state, false AS tombstoned, created_at, finalized_at, files, bytes,"
    " branch, message, pr, repo, ci_url FROM deploys WHERE site = %(site)s"
    " UNION ALL"
    " SELECT id, 'tombstoned', true, (m->>'createdAt')::timestamptz,"
    f" (m->>'finalizedAt')::timestamptz, (m->>'files')::integer, bytes, {_META}"
    " FROM (SELECT id, bytes, coalesce(deploy_meta, '{}'::jsonb) AS m FROM tombstones"
    "   WHERE site = %(site)s AND id <> '') t"  # '' is a whole-site purge, not a deploy
)


def listed_for_site(conn: Connection, site: Dirname) -> list[ListedDeploy]:
    """Every index row and every per-deploy tombstone of the site, in one query, unordered."""
    with conn.cursor(row_factory=class_row(ListedDeploy)) as cur:
        return cur.execute(_LISTED, {"site": site}).fetchall()
