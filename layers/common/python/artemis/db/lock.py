"""Advisory locks: the per-site lock, and the other keys that share its mechanism.

A transaction-scoped advisory lock on a dedicated, direct connection: the lock ends with the
transaction, and the transaction ends when the `with` block exits or the connection dies, so
the lock can never outlive an invocation. What is locked is a `LockKey`; Postgres hashes its
text (`hashtextextended(text, 0)`), and each constructor's text is fixed, so instances of
different versions running side by side still exclude each other.

The wait for a held lock is bounded twice: by the configured wait, and by the invocation's
remaining time less a margin for the work the section does once it holds the lock (see
`lock_wait_seconds`). Behind API Gateway the function has 29 s; a 30 s wait alone would let the
gateway answer for us, so the caller would never see `409 site_locked`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass

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
    deadline = invocation.current()
    if deadline is not None:
        wait = min(wait, deadline.remaining() - LOCK_WORK_MARGIN_SECONDS)
    return max(wait, MIN_WAIT_SECONDS)


@dataclass(frozen=True)
class LockKey:
    """The text an advisory lock is keyed by. Build one with a constructor, never by hand: the
    texts below are what running instances lock on, so changing one would let an old and a
    new instance into the same section at once."""

    text: str

    @classmethod
    def site(cls, site: Dirname) -> LockKey:
        """A site: every change to its aliases, index rows or trash."""
        return cls(site)

    @classmethod
    def repo_request(cls, request_id: str) -> LockKey:
        """One repo request's approval, so a repository is never created twice. (A dirname
        never contains `:`, so this never equals a site's key.)"""
        return cls(f"repo-request:{request_id}")

    @classmethod
    def deploy(cls, site: Dirname, deploy_id: str) -> LockKey:
        """One deploy's uploads against its finalize or delete (artemis.db.deploy_lock). (A
        dirname never contains `/`, so this never equals a site's key.)"""
        return cls(f"deploy:{site}/{deploy_id}")


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
        """Hold `site`'s lock for the block."""
        with self.hold_key(LockKey.site(site)):
            yield

    @contextmanager
    def hold_key(self, key: LockKey) -> Iterator[None]:
        """Hold `key` for the block (409 site_locked when it stays contended)."""
        wait_ms = max(1, round(lock_wait_seconds(self._timeout) * 1000))
        try:
            self._conn.execute("BEGIN")
            self._conn.execute("SELECT set_config('lock_timeout', %s, true)", [f"{wait_ms}ms"])
            self._conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [key.text])
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
def advisory_lock(conninfo: str, key: LockKey, *, timeout: float | None = None) -> Iterator[None]:
    """Hold `key` for one critical section (409 site_locked when contended)."""
    with SiteLockSession(conninfo, timeout=timeout) as session, session.hold_key(key):
        yield


def site_lock(
    conninfo: str, site: Dirname, *, timeout: float | None = None
) -> AbstractContextManager[None]:
    """Hold `site`'s lock for one critical section (409 site_locked when contended)."""
    return advisory_lock(conninfo, LockKey.site(site), timeout=timeout)
