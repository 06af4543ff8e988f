"""The per-site lock (spec/durable.md §6.5, §11.6).

A transaction-scoped advisory lock on a dedicated, direct connection: the lock ends with the
transaction, and the transaction ends when the `with` block exits or the connection dies, so
the lock can never outlive an invocation. The key is computed by Postgres,
`hashtextextended(dirname, 0)`, so old and new instances exclude each other.

The wait for a held lock is bounded twice: by the configured wait, and by the invocation's
remaining time less a margin for the work the section does once it holds the lock (see
`lock_wait_seconds`). Behind API Gateway the function has 29 s; a 30 s wait alone would let the
gateway answer for us, so the caller would never see `409 site_locked`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg import errors as pg_errors

from artemis import invocation
from artemis.db.connection import connect
from artemis.errors import SiteLocked, SiteLockFailed
from artemis.keys import Dirname

LOCK_TIMEOUT_SECONDS = 30.0  # read at each acquisition, so an operator (or a test) can tune it
# Left of the invocation when the wait gives up: the locked section's own work (a few
# database statements and S3 writes, with their retries) and the response must fit in it.
LOCK_WORK_MARGIN_SECONDS = 8.0
# Postgres reads lock_timeout 0 as "wait forever"; with no time left we still try, briefly.
MIN_WAIT_SECONDS = 0.05


def lock_wait_seconds(timeout: float | None = None) -> float:
    """How long the next acquisition may wait: the configured wait (or `timeout`), cut to the
    invocation's remaining time less LOCK_WORK_MARGIN_SECONDS when running in one."""
    wait = LOCK_TIMEOUT_SECONDS if timeout is None else timeout
    remaining = invocation.remaining_seconds()
    if remaining is not None:
        wait = min(wait, remaining - LOCK_WORK_MARGIN_SECONDS)
    return max(wait, MIN_WAIT_SECONDS)


class SiteLockSession:
    """One dedicated connection that takes and releases site locks one at a time.

    Background runs hold one session for a run and lock per item, so user deploys can
    interleave between items; an HTTP request uses `site_lock()` for one section.
    """

    def __init__(self, conninfo: str, *, timeout: float | None = None) -> None:
        self._timeout = timeout  # the bound is computed per item: a run's time runs down
        try:
            self._conn = connect(conninfo, autocommit=True)
        except psycopg.Error as err:
            raise SiteLockFailed() from err

    @contextmanager
    def hold(self, site: Dirname) -> Iterator[None]:
        wait_ms = max(1, round(lock_wait_seconds(self._timeout) * 1000))
        try:
            self._conn.execute("BEGIN")
            self._conn.execute("SELECT set_config('lock_timeout', %s, true)", [f"{wait_ms}ms"])
            self._conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [site])
        except pg_errors.LockNotAvailable as err:
            self._rollback()
            raise SiteLocked() from err
        except psycopg.Error as err:
            self.close()
            raise SiteLockFailed() from err
        try:
            yield
        finally:
            self._rollback()

    def _rollback(self) -> None:
        try:
            self._conn.execute("ROLLBACK")
        except psycopg.Error:
            # Closing the session releases every lock it held.
            self.close()

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> SiteLockSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextmanager
def site_lock(conninfo: str, site: Dirname, *, timeout: float | None = None) -> Iterator[None]:
    """Hold `site`'s lock for one critical section (409 site_locked when contended)."""
    with SiteLockSession(conninfo, timeout=timeout) as session, session.hold(site):
        yield
