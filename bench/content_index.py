"""`make bench-content-index`: the content index's size per file and its lookup cost, measured
on real Postgres, printing JSON.

    .venv/bin/python bench/content_index.py [--sites 10] [--deploys 40] [--files 1000]
        [--changed 0.01] [--pg postgresql://postgres@127.0.0.1:5432/postgres]

Fills `deploy_files` (in a fresh database, migrated) as `--sites` sites that each made
`--deploys` deploys of `--files` files, `--changed` of the files new in each deploy, with names
shaped like production's (storage dirname, deploy id, a hashed asset path). Prints the table
and index bytes per row, the projection to 10,000 sites x 40 deploys x 1,000 files, and the
time of one manifest lookup (`content.sources` for `--files` digests of one site), which the
digests route runs once per request.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta

import psycopg

from artemis.db import content
from artemis.db.migrate import migrate
from artemis.deploy_ids import mint_deploy_id
from artemis.keys import Dirname

PROJECT = (10_000, 40, 1_000)  # sites, deploys per site, files per deploy


def digest(site: int, version: int, index: int) -> bytes:
    return hashlib.sha256(f"{site}/{version}/{index}".encode()).digest()


def fill(conn: psycopg.Connection, sites: int, deploys: int, files: int, changed: float) -> int:
    """Every deploy holds `files` paths; each deploy changes a random `changed` share of them."""
    rng = random.Random(7)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    rows = 0
    with (
        conn.cursor() as cur,
        cur.copy("COPY deploy_files (site, deploy_id, path, sha256, size) FROM STDIN") as copy,
    ):
        for s in range(sites):
            site = f"site{s:05d}.freecode.camp"
            version = [0] * files
            for d in range(deploys):
                deploy_id = mint_deploy_id(start + timedelta(hours=d), f"{s:03d}{d:04d}")
                for i in rng.sample(range(files), max(1, int(files * changed))):
                    version[i] = d
                for i in range(files):
                    tag = hashlib.sha1(str(i).encode()).hexdigest()[:8]  # noqa: S324 - a name
                    path = f"assets/{i % 40:02d}/chunk-{i:05d}.{tag}.js"
                    copy.write_row((site, deploy_id, path, digest(s, version[i], i), 4096))
                    rows += 1
    conn.execute("ANALYZE deploy_files")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sites", type=int, default=10)
    parser.add_argument("--deploys", type=int, default=40)
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--changed", type=float, default=0.01)
    parser.add_argument("--lookups", type=int, default=20)
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()

    database = f"artemis_bench_content_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(args.pg, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{database}"'.encode())
    url = psycopg.conninfo.make_conninfo(args.pg, dbname=database)
    try:
        migrate(url)
        with psycopg.connect(url, autocommit=True) as conn:
            started = time.perf_counter()
            rows = fill(conn, args.sites, args.deploys, args.files, args.changed)
            fill_s = time.perf_counter() - started
            # the live deploys the lookup joins against
            conn.execute(
                "INSERT INTO deploys (site, id, mtime, has_marker, state)"
                " SELECT DISTINCT site, deploy_id, now(), true, 'active' FROM deploy_files"
            )
            conn.execute("VACUUM ANALYZE deploy_files")
            heap, total = conn.execute(
                "SELECT pg_table_size('deploy_files'), pg_total_relation_size('deploy_files')"
            ).fetchone() or (0, 0)
            by_index: dict[str, int] = dict(
                conn.execute(
                    "SELECT indexrelname, pg_relation_size(indexrelid) FROM pg_stat_user_indexes"
                    " WHERE relname = 'deploy_files'"
                ).fetchall()
            )
            # one manifest of the last deploy's files, looked up as the digests route does
            site = Dirname("site00000.freecode.camp")
            wanted = [
                bytes(r[0])
                for r in conn.execute(
                    "SELECT sha256 FROM deploy_files WHERE site = %s AND deploy_id ="
                    " (SELECT max(deploy_id) FROM deploy_files WHERE site = %s)",
                    [site, site],
                ).fetchall()
            ]
            timings = []
            for _ in range(args.lookups):
                t = time.perf_counter()
                found = content.sources(conn, site, wanted, excluding="none")
                timings.append(time.perf_counter() - t)
            assert len(found) == len(set(wanted))
    finally:
        with psycopg.connect(args.pg, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE "{database}" WITH (FORCE)'.encode())
    per_row = total / rows
    projected_rows = PROJECT[0] * PROJECT[1] * PROJECT[2]
    print(json.dumps({
        "rows": rows,
        "fill_rows_per_s": round(rows / fill_s),
        "table_bytes_per_row": round(heap / rows, 1),
        "index_bytes_per_row": {name: round(size / rows, 1) for name, size in by_index.items()},
        "total_bytes_per_row": round(per_row, 1),
        "projection": {
            "sites": PROJECT[0], "deploys_per_site": PROJECT[1], "files_per_deploy": PROJECT[2],
            "rows": projected_rows,
            "total_gib": round(projected_rows * per_row / 2**30, 1),
            "per_site_mib": round(PROJECT[1] * PROJECT[2] * per_row / 2**20, 2),
        },
        "lookup": {
            "digests": len(wanted),
            "site_rows": args.deploys * args.files,
            "p50_ms": round(statistics.median(timings) * 1000, 2),
            "max_ms": round(max(timings) * 1000, 2),
        },
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
