"""The content index (`deploy_files`): per deploy, each file's SHA-256 and size.

Callers write a row only for bytes whose digest was computed by the server or by S3 (see the
migration). A digest is offered as a copy source only from a deploy that is finalized (active
with its marker) and not tombstoned, deploy or site, and only within the same site.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from psycopg import Connection

from artemis.keys import Dirname


@dataclass(frozen=True)
class FileDigest:
    path: str
    sha256: bytes  # the 32 raw bytes
    size: int


@dataclass(frozen=True)
class Source:
    """Where a site already holds some content: a file of a finalized, live deploy."""

    deploy_id: str
    path: str
    size: int


def record(conn: Connection, site: Dirname, deploy_id: str, files: Iterable[FileDigest]) -> int:
    """Upsert one row per file (a path written again takes its new digest)."""
    rows = [(site, deploy_id, f.path, f.sha256, f.size) for f in files]
    if not rows:
        return 0
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO deploy_files (site, deploy_id, path, sha256, size)"
            " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (site, deploy_id, path)"
            " DO UPDATE SET sha256 = EXCLUDED.sha256, size = EXCLUDED.size",
            rows,
        )
    return len(rows)


def forget(conn: Connection, site: Dirname, deploy_id: str, paths: Sequence[str]) -> int:
    """Drop the rows of these paths (their bytes are about to change without a known digest)."""
    if not paths:
        return 0
    cur = conn.execute(
        "DELETE FROM deploy_files WHERE site = %s AND deploy_id = %s AND path = ANY(%s)",
        [site, deploy_id, list(paths)],
    )
    return cur.rowcount


def for_deploy(
    conn: Connection, site: Dirname, deploy_id: str, paths: Sequence[str] | None = None
) -> dict[str, FileDigest]:
    """The deploy's rows (all, or those of `paths`), by path."""
    sql = "SELECT path, sha256, size FROM deploy_files WHERE site = %s AND deploy_id = %s"
    params: list[object] = [site, deploy_id]
    if paths is not None:
        sql += " AND path = ANY(%s)"
        params.append(list(paths))
    rows = conn.execute(sql, params).fetchall()
    return {str(p): FileDigest(str(p), bytes(d), int(s)) for p, d, s in rows}


def sources(
    conn: Connection, site: Dirname, digests: Sequence[bytes], *, excluding: str
) -> dict[bytes, Source]:
    """For each digest the site holds in a finalized, live deploy other than `excluding`, one
    file holding it. Per digest, the first such row the digest index yields: a manifest's
    lookup costs a few index probes per file, however many deploys hold the content."""
    if not digests:
        return {}
    rows = conn.execute(
        "SELECT w.sha256, s.deploy_id, s.path, s.size"
        " FROM unnest(%(digests)s::bytea[]) AS w(sha256)"
        " CROSS JOIN LATERAL (SELECT f.deploy_id, f.path, f.size"
        "   FROM deploy_files f JOIN deploys d ON d.site = f.site AND d.id = f.deploy_id"
        "   WHERE f.site = %(site)s AND f.sha256 = w.sha256 AND f.deploy_id <> %(own)s"
        "     AND d.state = 'active' AND d.has_marker"
        "     AND NOT EXISTS (SELECT 1 FROM tombstones t"
        "       WHERE t.site = f.site AND t.id = f.deploy_id)"
        "   LIMIT 1) s"
        " WHERE NOT EXISTS (SELECT 1 FROM tombstones WHERE site = %(site)s AND id = '')",
        {"site": site, "digests": list(dict.fromkeys(digests)), "own": excluding},
    ).fetchall()
    return {bytes(d): Source(str(i), str(p), int(s)) for d, i, p, s in rows}


def keep_only(conn: Connection, site: Dirname, deploy_id: str, present: Sequence[str]) -> int:
    """Drop the deploy's rows whose path is not among `present` (what a listing showed)."""
    cur = conn.execute(
        "DELETE FROM deploy_files WHERE site = %s AND deploy_id = %s AND NOT path = ANY(%s)",
        [site, deploy_id, list(present)],
    )
    return cur.rowcount


def drop_deploys(conn: Connection, site: Dirname, deploy_ids: Sequence[str]) -> int:
    """Drop every row of these deploys (they left the live set)."""
    if not deploy_ids:
        return 0
    cur = conn.execute(
        "DELETE FROM deploy_files WHERE site = %s AND deploy_id = ANY(%s)",
        [site, list(deploy_ids)],
    )
    return cur.rowcount


def drop_site(conn: Connection, site: Dirname) -> int:
    cur = conn.execute("DELETE FROM deploy_files WHERE site = %s", [site])
    return cur.rowcount


def indexed_paths(conn: Connection, site: Dirname) -> dict[str, frozenset[str]]:
    """Every row of the site, as deploy id → the paths it indexes (what drift compares with
    the listing)."""
    paths: dict[str, set[str]] = {}
    with conn.cursor() as cur:
        cur.execute("SELECT deploy_id, path FROM deploy_files WHERE site = %s", [site])
        for deploy_id, path in cur:
            paths.setdefault(str(deploy_id), set()).add(str(path))
    return {deploy_id: frozenset(p) for deploy_id, p in paths.items()}


def fill_finalized(
    conn: Connection, site: Dirname, deploy_id: str, files: Sequence[FileDigest]
) -> int | None:
    """Insert the rows of `files` the deploy lacks, only while the deploy is finalized (active
    with its marker) and not tombstoned, deploy or site; an existing row is left as it is.
    Returns the rows inserted, or None when the deploy is not finalized and live.

    The deploy's row is locked FOR SHARE first, so a delete or GC that removes it waits for
    this transaction (callers without the site lock, backfill, rely on that)."""
    live = conn.execute(
        "SELECT 1 FROM deploys d WHERE d.site = %(site)s AND d.id = %(id)s"
        " AND d.state = 'active' AND d.has_marker"
        " AND NOT EXISTS (SELECT 1 FROM tombstones t"
        "   WHERE t.site = %(site)s AND t.id IN (%(id)s, ''))"
        " FOR SHARE OF d",
        {"site": site, "id": deploy_id},
    ).fetchone()
    if live is None:
        return None
    if not files:
        return 0
    with conn.cursor() as cur:
        # One pipelined batch, not a round trip per row; rowcount sums the inserts.
        cur.executemany(
            "INSERT INTO deploy_files (site, deploy_id, path, sha256, size)"
            " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (site, deploy_id, path) DO NOTHING",
            [(site, deploy_id, f.path, f.sha256, f.size) for f in files],
        )
        return cur.rowcount
