"""The outbox on real Postgres: claims are exclusive, leases expire, marks and purges are exact."""

import threading
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from artemis.db import outbox
from artemis.db.connection import Database
from artemis.keys import Dirname


def fill(db: Database, n: int) -> list[int]:
    with db.transaction() as conn:
        return [outbox.enqueue_site_changed(conn, Dirname(f"site-{i}")) for i in range(n)]


def test_enqueue_commits_with_the_callers_transaction(db: Database) -> None:
    with pytest.raises(RuntimeError), db.transaction() as conn:
        outbox.enqueue_site_changed(conn, Dirname("www"))
        raise RuntimeError("the change failed")
    with db.transaction() as conn:
        assert outbox.backlog(conn).unpublished == 0
        outbox.enqueue_site_changed(conn, Dirname("www"))
    with db.transaction() as conn:
        assert outbox.backlog(conn).unpublished == 1
        [msg] = outbox.claim(conn)
    assert msg.topic == "site.changed" and msg.payload == {"site": "www"}


def test_claims_in_id_order_up_to_the_limit(db: Database) -> None:
    ids = fill(db, 5)
    with db.transaction() as conn:
        got = outbox.claim(conn, limit=3)
    assert [m.id for m in got] == ids[:3]


def test_a_locked_claim_is_skipped_not_waited_for(database_url: str, db: Database) -> None:
    ids = fill(db, 4)
    with psycopg.connect(database_url) as holder, psycopg.connect(database_url) as other:
        first = outbox.claim(holder, limit=2)  # transaction left open: rows stay locked
        second = outbox.claim(other, limit=10)
        other.commit()
        holder.commit()
    assert [m.id for m in first] == ids[:2]
    assert [m.id for m in second] == ids[2:]


def test_two_concurrent_claimers_never_receive_the_same_row(
    database_url: str, db: Database
) -> None:
    ids = fill(db, 600)
    seen: list[list[int]] = [[], []]
    barrier = threading.Barrier(2)

    def claimer(slot: int) -> None:
        with psycopg.connect(database_url) as conn:
            barrier.wait()
            while True:
                with conn.transaction():
                    batch = outbox.claim(conn, limit=7)
                if not batch:
                    return
                seen[slot].extend(m.id for m in batch)

    threads = [threading.Thread(target=claimer, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert seen[0] and seen[1], "both claimers should have won some rows"
    assert not set(seen[0]) & set(seen[1])
    assert sorted(seen[0] + seen[1]) == ids


def test_an_expired_claim_is_claimed_again(db: Database) -> None:
    ids = fill(db, 2)
    with db.transaction() as conn:
        assert [m.id for m in outbox.claim(conn, ttl_seconds=300)] == ids
    with db.transaction() as conn:
        assert outbox.claim(conn) == []  # leased
        conn.execute("UPDATE outbox SET claim_expires_at = now() - interval '1 second'")
    with db.transaction() as conn:
        assert [m.id for m in outbox.claim(conn)] == ids


def test_mark_published_touches_exactly_the_given_ids(db: Database) -> None:
    ids = fill(db, 3)
    with db.transaction() as conn:
        outbox.claim(conn)
        assert outbox.mark_published(conn, ids[:2], datetime.now(UTC)) == 2
        assert outbox.mark_published(conn, [], datetime.now(UTC)) == 0
        assert outbox.release_claims(conn, ids) == 1  # only the unpublished one
    with db.transaction() as conn:
        assert [m.id for m in outbox.claim(conn)] == ids[2:]
        assert outbox.backlog(conn).unpublished == 1


def test_purge_deletes_only_old_published_rows_in_bounded_batches(db: Database) -> None:
    ids = fill(db, 10)
    old = datetime.now(UTC) - timedelta(days=40)
    with db.transaction() as conn:
        outbox.mark_published(conn, ids[:6], old)
        outbox.mark_published(conn, ids[6:8], datetime.now(UTC))  # published, but recent
        assert outbox.purge_published(conn, 30, limit=4, dry_run=True) == 4
        assert outbox.purge_published(conn, 30, limit=0) == 0
    with db.transaction() as conn:
        assert outbox.purge_published(conn, 30, limit=4) == 4
    with db.transaction() as conn:
        assert outbox.purge_published(conn, 30, limit=4) == 2
        left = [r[0] for r in conn.execute("SELECT id FROM outbox ORDER BY id")]
    assert left == ids[6:]  # recent published rows and unpublished rows survive
    with db.transaction() as conn:
        backlog = outbox.backlog(conn)
    assert backlog.unpublished == 2
    assert 0 <= backlog.oldest_age_seconds < 60  # the two unpublished rows are this test's


def test_the_backlog_counts_unpublished_rows_and_ages_the_oldest_of_them(db: Database) -> None:
    with db.transaction() as conn:
        assert outbox.backlog(conn) == outbox.Backlog(0, 0.0)
    ids = fill(db, 5)
    with db.transaction() as conn:
        # The oldest row of all is published: it counts for neither figure.
        for row_id, age in zip(ids, ["3 hours", "1 hour", "20 minutes", "5 minutes", "0"],
                               strict=True):  # fmt: skip
            conn.execute(
                "UPDATE outbox SET created_at = now() - %s::interval WHERE id = %s", [age, row_id]
            )
        outbox.mark_published(conn, ids[:1], datetime.now(UTC))
    with db.transaction() as conn:
        backlog = outbox.backlog(conn)
    assert backlog.unpublished == 4
    assert 3600 <= backlog.oldest_age_seconds < 3600 + 60


def test_the_claim_walks_the_unpublished_index_whatever_the_statistics_say(
    db: Database,
) -> None:
    """A burst into a never-analyzed outbox: under the relay session the claim is an id-ordered
    index walk that stops at the limit, not a scan and sort of the whole backlog per pass."""
    with db.transaction() as conn:
        conn.execute(
            "INSERT INTO outbox (topic, payload)"
            " SELECT 'site.changed', jsonb_build_object('site', 's' || g)"
            " FROM generate_series(1, 5000) g"
        )
    with db.session() as pooled, outbox.relay_session(pooled) as conn:
        plan = "\n".join(
            str(r[0]) for r in conn.execute(b"EXPLAIN " + outbox.CLAIM_SQL.encode(), [300, 100])
        )
    assert "Index Scan using outbox_unpublished_idx" in plan, plan
    assert "Sort" not in plan and "Bitmap" not in plan and "Seq Scan" not in plan, plan


def test_the_relay_session_settings_are_reset_before_the_connection_is_reused(
    database_url: str,
) -> None:
    show = "SELECT current_setting('synchronous_commit'), current_setting('enable_seqscan')"
    single = Database(database_url, max_size=1)  # the next session gets the same connection
    try:
        with single.session() as pooled, outbox.relay_session(pooled) as conn:
            backend = conn.info.backend_pid
            assert conn.execute(show).fetchone() == ("off", "off")
        with single.session() as conn:
            assert conn.info.backend_pid == backend
            assert conn.execute(show).fetchone() == ("on", "on")
    finally:
        single.close()
