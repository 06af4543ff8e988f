"""The per-site lock (spec/durable.md §6.5, §11.6).

A transaction-scoped advisory lock on a dedicated, direct connection: the lock ends with the
transaction, and the transaction ends when the `with` block exits or the connection dies, so
the lock can never outlive an invocation. The key is computed by Postgres,
`hashtextextended(dirname, 0)`, so old and new instances exclude each other.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg import errors as pg_errors

from artemis.db.connection import connect
from artemis.errors import SiteLocked, SiteLockFailed
from artemis.keys import Dirname

LOCK_TIMEOUT_SECONDS = 30.0  # read at each acquisition, so an operator (or a test) can tune it


class SiteLockSession:
    """One dedicated connection that takes and releases site locks one at a time.

    Background runs hold one session for a run and lock per item, so user deploys can
    interleave between items; an HTTP request uses `site_lock()` for one section.
    """

    def __init__(self, conninfo: str, *, timeout: float | None = None) -> None:
        self._timeout_ms = int((LOCK_TIMEOUT_SECONDS if timeout is None else timeout) * 1000)
        try:
            self._conn = connect(conninfo, autocommit=True)
        except psycopg.Error as err:
            raise SiteLockFailed() from err

    @contextmanager
    def hold(self, site: Dirname) -> Iterator[None]:
        try:
            self._conn.execute("BEGIN")
            self._conn.execute(
                "SELECT set_config('lock_timeout', %s, true)", [f"{self._timeout_ms}ms"]
            )
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
