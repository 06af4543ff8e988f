"""The per-site lock on real Postgres."""

import threading
import time

import psycopg
import pytest

from artemis import invocation
from artemis.db.lock import LOCK_WORK_MARGIN_SECONDS, SiteLockSession, lock_wait_seconds, site_lock
from artemis.errors import SiteLocked, SiteLockFailed
from artemis.keys import Dirname

WWW = Dirname("www")


def test_contended_lock_answers_site_locked(database_url: str) -> None:
    with site_lock(database_url, WWW):
        started = time.monotonic()
        with pytest.raises(SiteLocked) as info, site_lock(database_url, WWW, timeout=0.3):
            pass
        assert 0.25 <= time.monotonic() - started < 5
    assert info.value.status == 409 and info.value.code == "site_locked"


def test_lock_is_released_when_the_section_ends(database_url: str) -> None:
    with site_lock(database_url, WWW):
        pass
    with site_lock(database_url, WWW, timeout=0.3):
        pass


def test_lock_is_released_when_the_section_raises(database_url: str) -> None:
    with pytest.raises(ValueError), site_lock(database_url, WWW):
        raise ValueError("boom")
    with site_lock(database_url, WWW, timeout=0.3):
        pass


def test_other_sites_do_not_wait(database_url: str) -> None:
    with site_lock(database_url, WWW), site_lock(database_url, Dirname("docs"), timeout=0.3):
        pass


def test_lock_dies_with_its_connection(database_url: str) -> None:
    """A killed invocation cannot keep the lock: the server drops it with the session."""
    session = SiteLockSession(database_url)
    holding = session.hold(WWW)
    holding.__enter__()
    pid = session._conn.info.backend_pid
    with psycopg.connect(database_url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [pid])
    with site_lock(database_url, WWW, timeout=2):
        pass
    session.close()


def test_a_waiter_gets_the_lock_once_the_holder_leaves(database_url: str) -> None:
    order: list[str] = []
    entered = threading.Event()

    def holder() -> None:
        with site_lock(database_url, WWW):
            entered.set()
            time.sleep(0.3)
            order.append("holder done")

    thread = threading.Thread(target=holder)
    thread.start()
    entered.wait(5)
    with site_lock(database_url, WWW, timeout=5):
        order.append("waiter in")
    thread.join()
    assert order == ["holder done", "waiter in"]


def test_one_session_locks_item_by_item(database_url: str) -> None:
    with SiteLockSession(database_url) as session:
        with (
            session.hold(WWW),
            pytest.raises(SiteLocked),
            site_lock(database_url, WWW, timeout=0.2),
        ):
            pass
        # between items the site is free for user deploys
        with site_lock(database_url, WWW, timeout=0.2):
            pass
        with session.hold(WWW):
            pass


def test_unreachable_database_is_site_lock_failed() -> None:
    with (
        pytest.raises(SiteLockFailed) as info,
        site_lock("postgresql://postgres@127.0.0.1:1/x", WWW),
    ):
        pass
    assert info.value.status == 502 and info.value.code == "site_lock_failed"


def test_g9_a_lost_lock_session_never_fails_a_finished_section(database_url: str) -> None:
    """The release is a rollback on the lock's own connection; if that session died, closing
    releases the lock anyway and the section's outcome stands (no error is raised)."""
    done = []
    with site_lock(database_url, WWW):
        with psycopg.connect(database_url, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND pid <> pg_backend_pid()"
            )
        done.append("committed work")
    assert done == ["committed work"]
    with site_lock(database_url, WWW, timeout=1):
        pass


def test_g1_every_locked_section_takes_the_postgres_lock(database_url: str) -> None:
    """Postgres is required (DECISIONS): there is no unlocked path, so a held lock is seen."""
    with site_lock(database_url, WWW):
        with psycopg.connect(database_url, autocommit=True) as admin:
            held = admin.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
                " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            ).fetchone()
        assert held == (1,)


def test_v7c_two_lock_holders_for_one_site_one_waits_or_times_out(database_url: str) -> None:
    """spec/durable.md V7(c): mutations of one site are serialized by the lock."""
    outcomes: list[str] = []
    holding = threading.Event()
    release = threading.Event()

    def first() -> None:
        with site_lock(database_url, WWW):
            holding.set()
            release.wait(5)
            outcomes.append("first done")

    thread = threading.Thread(target=first)
    thread.start()
    holding.wait(5)
    with pytest.raises(SiteLocked), site_lock(database_url, WWW, timeout=0.3):
        outcomes.append("second entered while the first held the lock")  # must never run
    release.set()
    thread.join()
    assert outcomes == ["first done"]


class _Context:
    """A Lambda context with `remaining` seconds left when asked."""

    def __init__(self, remaining: float) -> None:
        self.remaining = remaining

    def get_remaining_time_in_millis(self) -> int:
        return int(self.remaining * 1000)


def test_the_wait_ends_a_margin_before_the_invocation_does(database_url: str) -> None:
    with site_lock(database_url, WWW), invocation.running(_Context(LOCK_WORK_MARGIN_SECONDS + 1)):
        started = time.monotonic()
        with pytest.raises(SiteLocked), site_lock(database_url, WWW):  # configured wait: 30 s
            pass
        waited = time.monotonic() - started
    assert 0.8 <= waited < 3


def test_with_no_time_left_the_lock_is_still_tried_but_never_waited_for(database_url: str) -> None:
    """lock_timeout 0 would mean "wait forever" to Postgres: the bound never reaches it."""
    with invocation.running(_Context(LOCK_WORK_MARGIN_SECONDS / 2)):
        assert lock_wait_seconds() > 0
        with site_lock(database_url, WWW):  # a free lock is taken
            started = time.monotonic()
            with pytest.raises(SiteLocked), site_lock(database_url, WWW):
                pass
            assert time.monotonic() - started < 1


def test_outside_an_invocation_the_configured_wait_holds() -> None:
    assert invocation.remaining_seconds() is None
    assert lock_wait_seconds() == 30.0
    assert lock_wait_seconds(2.5) == 2.5
    with invocation.running(_Context(1000)):
        assert lock_wait_seconds() == 30.0
        assert lock_wait_seconds(2.5) == 2.5
    with invocation.running(_Context(20)):
        assert 11.9 <= lock_wait_seconds() <= 20 - LOCK_WORK_MARGIN_SECONDS
    assert invocation.remaining_seconds() is None  # the deadline ends with the block


@pytest.mark.slow
def test_a_job_with_time_to_spare_waits_the_configured_30_s_on_real_postgres(
    database_url: str,
) -> None:
    """The background functions run for up to 15 minutes: there the configured wait, not the
    invocation's, bounds a contended lock. At the real default, unshortened."""
    with site_lock(database_url, WWW), invocation.running(_Context(900)):
        started = time.monotonic()
        with (
            pytest.raises(SiteLocked),
            SiteLockSession(database_url) as session,
            session.hold(WWW),
        ):
            pass
        waited = time.monotonic() - started
    assert 29.5 <= waited < 33


def test_a_session_bounds_each_item_by_the_time_left_then(database_url: str) -> None:
    """A background run's session is long-lived: each hold reads the time left at that moment."""
    with (
        SiteLockSession(database_url) as session,  # made before the deadline is known
        site_lock(database_url, WWW),
        invocation.running(_Context(LOCK_WORK_MARGIN_SECONDS + 0.5)),
    ):
        started = time.monotonic()
        with pytest.raises(SiteLocked), session.hold(WWW):
            pass
        assert time.monotonic() - started < 2


def test_the_deploy_locks_wait_is_bounded_by_the_invocation_too(database_url: str) -> None:
    """Finalize and delete wait for a deploy's uploads in flight: that wait, too, ends a margin
    before the invocation does (configured: 30 s), so the caller gets 409 deploy_busy."""
    from artemis.db import deploy_lock
    from artemis.errors import DeployBusy

    with psycopg.connect(database_url) as upload:  # an upload in flight holds the lock shared
        assert deploy_lock.share(upload, WWW, "20260101-000000-abc").locked
        with (
            psycopg.connect(database_url) as finalize,
            invocation.running(_Context(LOCK_WORK_MARGIN_SECONDS + 1)),
        ):
            started = time.monotonic()
            with pytest.raises(DeployBusy):
                deploy_lock.hold(finalize, WWW, "20260101-000000-abc")
            waited = time.monotonic() - started
    assert 0.8 <= waited < 3
