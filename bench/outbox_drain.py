"""Outbox drain rate on real Postgres: N relays claim (SKIP LOCKED, lease) and mark batches of
100 until the table is drained. Prints rows/s; the bare SQL cycle's limit on these machines is ≈71k
rows/s (claim+mark, 100 per cycle, partial index).

    .venv/bin/python bench/outbox_drain.py [postgres-url] [rows] [relays]
"""

from __future__ import annotations

import sys
import threading
import time
import uuid
from datetime import UTC, datetime

import psycopg

from artemis.db import outbox
from artemis.db.migrate import migrate

ADMIN_URL = sys.argv[1] if len(sys.argv) > 1 else "postgresql://postgres@127.0.0.1:5432/postgres"
ROWS = int(sys.argv[2]) if len(sys.argv) > 2 else 20_000
RELAYS = int(sys.argv[3]) if len(sys.argv) > 3 else 4


def main() -> None:
    name = f"artemis_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"'.encode())
    url = psycopg.conninfo.make_conninfo(ADMIN_URL, dbname=name)
    try:
        migrate(url)
        with psycopg.connect(url) as conn:
            conn.execute(
                "INSERT INTO outbox (topic, payload) SELECT 'site.changed',"
                " jsonb_build_object('site', 'site-' || g) FROM generate_series(1, %s) g",
                [ROWS],
            )
        drained = [0] * RELAYS

        def relay(slot: int) -> None:
            with psycopg.connect(url) as conn:
                while True:
                    with conn.transaction():
                        batch = outbox.claim(conn)
                    if not batch:
                        return
                    with conn.transaction():
                        outbox.mark_published(conn, [m.id for m in batch], datetime.now(UTC))
                    drained[slot] += len(batch)

        started = time.perf_counter()
        threads = [threading.Thread(target=relay, args=(i,)) for i in range(RELAYS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - started
        assert sum(drained) == ROWS, drained
        rate = ROWS / elapsed
        print(f"outbox drain: {ROWS} rows, {RELAYS} relays, {elapsed:.2f} s, {rate:,.0f} rows/s")
        print(f"  per relay: {drained}")
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)'.encode())


if __name__ == "__main__":
    main()
