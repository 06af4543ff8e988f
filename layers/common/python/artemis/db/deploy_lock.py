"""The per-deploy lock: serializes the upload route's check-and-write against finalize and
delete of the same deploy.

A transaction-scoped advisory lock on a pooled connection's transaction, keyed by
`LockKey.deploy` (artemis.db.lock), which never equals a site's key. Uploads take it *shared*
and never wait: many uploads of one deploy run side by side, and an upload that meets a
finalize or delete (exclusive, holding or queued) is refused at once with `409 deploy_busy`
instead of holding a connection while it waits. Finalize and delete take it *exclusive* and
wait for the uploads in flight, whose transaction ends only after their object is written.
Their state change (the active index row, the tombstone) commits before the lock is released,
so an upload that gets the lock afterwards sees it. The lock is taken before the site lock,
never inside it.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg import errors as pg_errors

from artemis.db.lock import LockKey, lock_wait_seconds
from artemis.errors import DependencyError, DeployBusy
from artemis.keys import Dirname

# How long finalize or delete waits for the uploads in flight (each one object PUT), at most:
# like the site lock's, the wait is cut to the invocation's remaining time less a margin.
WAIT_SECONDS = 30.0


@dataclass(frozen=True)
class DeployStatus:
    """What an upload needs to know, read after its shared lock was granted."""

    locked: bool
    state: str | None  # the index row's state, None without a row
    tombstoned: bool


def share(conn: psycopg.Connection, site: Dirname, deploy_id: str) -> DeployStatus:
    """Try the shared lock, then read the deploy's state in a second statement, so the read's
    snapshot is taken after the lock was granted (one statement would read the state as it was
    before a finalize that commits while the statement waits)."""
    row = conn.execute(
        "SELECT pg_try_advisory_xact_lock_shared(hashtextextended(%s, 0))",
        [LockKey.deploy(site, deploy_id).text],
    ).fetchone()
    if not (row and row[0]):
        return DeployStatus(False, None, False)
    row = conn.execute(
        "SELECT (SELECT state FROM deploys WHERE site = %(s)s AND id = %(i)s),"
        " EXISTS (SELECT 1 FROM tombstones WHERE site = %(s)s AND id = %(i)s)",
        {"s": site, "i": deploy_id},
    ).fetchone()
    assert row is not None
    return DeployStatus(True, row[0], bool(row[1]))


def is_tombstoned(conn: psycopg.Connection, site: Dirname, deploy_id: str) -> bool:
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM tombstones WHERE site = %s AND id = %s)", [site, deploy_id]
    ).fetchone()
    return bool(row and row[0])


def hold(
    conn: psycopg.Connection, site: Dirname, deploy_id: str, *, wait: float | None = None
) -> None:
    """Take the exclusive lock in `conn`'s transaction (released when it ends); waits up to
    `wait` seconds (bounded by the invocation's time) for the uploads in flight, then
    `409 deploy_busy`."""
    wait_ms = max(1, round(lock_wait_seconds(WAIT_SECONDS if wait is None else wait) * 1000))
    try:
        conn.execute("SELECT set_config('lock_timeout', %s, true)", [f"{wait_ms}ms"])
        conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
            [LockKey.deploy(site, deploy_id).text],
        )
    except pg_errors.LockNotAvailable as err:
        raise DeployBusy() from err
    except psycopg.Error as err:
        raise DependencyError("deploy_lock_failed") from err
