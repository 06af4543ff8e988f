"""Connections: one small pool per execution environment, plus direct connections for locks.

A Lambda environment handles one invocation at a time, so the pool stays tiny; the local
gateway shares one module across threads, so it needs a real pool.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from artemis.deadlines import Deadline

# Server-side keepalives so a killed invocation's connection (and any lock it held) is
# noticed and released quickly.
KEEPALIVE_KWARGS: dict[str, Any] = {
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
}


def connect(conninfo: str, *, autocommit: bool = False, timeout: float = 5.0) -> psycopg.Connection:
    """A direct, non-pooled connection (migrations, the site lock)."""
    return psycopg.connect(
        conninfo, autocommit=autocommit, connect_timeout=max(1, int(timeout)), **KEEPALIVE_KWARGS
    )


def connect_with_retry(
    conninfo: str, deadline: Deadline, *, autocommit: bool = False
) -> psycopg.Connection:
    """Connect, retrying until `deadline` with backoff 0.5 s doubling to 5 s; the last failure
    is raised once the next wait would end past it."""
    delay = 0.5
    while True:
        try:
            return connect(conninfo, autocommit=autocommit)
        except psycopg.OperationalError:
            if not deadline.has(delay):
                raise
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


def is_transient(err: BaseException) -> bool:
    """True for a Postgres failure a later attempt can get past: connection loss, a pool
    that handed out no connection in time, a lock or statement timeout (psycopg raises all
    of these as OperationalError). Only `err` itself is looked at, not its causes."""
    return isinstance(err, psycopg.OperationalError)


class Database:
    """A lazily opened pool. `transaction()` yields a connection inside one transaction."""

    def __init__(self, conninfo: str, *, max_size: int = 4, timeout: float = 10.0) -> None:
        self.conninfo = conninfo
        self._pool = ConnectionPool(
            conninfo,
            min_size=0,
            max_size=max_size,
            timeout=timeout,
            kwargs=KEEPALIVE_KWARGS,
            open=False,
            check=self._check_if_idle,
        )
        self._opened = False
        # Weak keys: a closed connection's entry goes with it (an id could be reused).
        self._last_checkout: weakref.WeakKeyDictionary[psycopg.Connection, float] = (
            weakref.WeakKeyDictionary()
        )

    IDLE_CHECK_SECONDS = 30.0

    def _check_if_idle(self, conn: psycopg.Connection) -> None:
        """Ping a pooled connection before reuse only when it sat idle for a while (a frozen
        Lambda environment, a server-side timeout): a ping on every checkout would add a round
        trip to every transaction."""
        now = time.monotonic()
        last = self._last_checkout.get(conn)
        self._last_checkout[conn] = now
        if last is None or now - last >= self.IDLE_CHECK_SECONDS:
            ConnectionPool.check_connection(conn)

    def _open(self) -> ConnectionPool:
        if not self._opened:
            self._pool.open(wait=False)
            self._opened = True
        return self._pool

    @contextmanager
    def transaction(self) -> Iterator[psycopg.Connection]:
        """Commit on normal exit, roll back on an exception."""
        with self._open().connection() as conn:
            yield conn

    @contextmanager
    def session(self) -> Iterator[psycopg.Connection]:
        """A pooled connection in autocommit mode: each statement is its own transaction and
        one round trip (the relay's claim and mark need nothing more)."""
        with self._open().connection() as conn:
            conn.autocommit = True
            try:
                yield conn
            finally:
                if not conn.closed:
                    conn.autocommit = False

    def ping(self, timeout: float = 5.0) -> None:
        with self._open().connection(timeout=timeout) as conn:
            conn.execute("SELECT 1")

    def close(self) -> None:
        if self._opened:
            self._pool.close()
            self._opened = False
