"""Read-only views of the bucket and the database.

The drift sweep (and every reconcile snapshot) reads through these wrappers, so it is
read-only by construction, not by a flag:

* `ReadOnlyBucket` forwards an allowlist of list/get/head reads to a `Bucket`; every other
  attribute — `put`, `put_alias`, `move_object`, `move_prefix`, `delete_prefix`,
  `presigned_post`, the raw boto3 `client`, and any method added to `Bucket` later — raises
  `ReadOnlyViolation`. The wrapper fails closed.
* `ReadOnlyDatabase.transaction()` opens a transaction with `SET TRANSACTION READ ONLY`, pins
  its first snapshot (after which Postgres refuses `SET TRANSACTION READ WRITE`), and yields a
  connection proxy that forwards only `execute` and `cursor`; commit, rollback, nested
  transactions, autocommit and the other session controls raise `ReadOnlyViolation`. Any
  INSERT/UPDATE/DELETE/DDL inside fails in Postgres itself (SQLSTATE 25006).

In production the same guarantee SHOULD also come from credentials: the drift function's role
gets s3:ListBucket/s3:GetObject on the bucket and SELECT on the domain tables (plus write access
to its own bookkeeping tables, `job_runs` and `drift_runs`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NoReturn, cast

import psycopg

from artemis.keys import Dirname
from artemis.storage.objects import ObjectInfo

if TYPE_CHECKING:
    from artemis.db.connection import Database
    from artemis.storage.s3 import Bucket


class ReadOnlyViolation(RuntimeError):
    """A write was attempted through a read-only wrapper: a bug, never an expected outcome."""

    def __init__(self, what: str) -> None:
        super().__init__(f"read-only violation: {what}")
        self.what = what


# Bucket methods that only read. Anything not listed here is refused.
BUCKET_READS = frozenset(
    {
        "get",
        "head",
        "get_alias",
        "get_aliases",
        "list_pages",
        "list_keys",
        "has_prefix",
        "prefix_bytes",
        "list_children",
        "list_sites",
        "probe",
    }
)


class ReadOnlyBucket:
    """The read half of `Bucket`; every write raises ReadOnlyViolation."""

    _bucket: Bucket

    def __init__(self, bucket: Bucket) -> None:
        object.__setattr__(self, "_bucket", bucket)

    @property
    def name(self) -> str:
        return self._bucket.name

    # --- reads ------------------------------------------------------------------------
    def get(self, key: str) -> bytes | None:
        return self._bucket.get(key)

    def head(self, key: str) -> ObjectInfo | None:
        return self._bucket.head(key)

    def get_alias(self, key: str) -> str | None:
        return self._bucket.get_alias(key)

    def get_aliases(self, prefix: str) -> dict[str, str]:
        return self._bucket.get_aliases(prefix)

    def list_pages(self, prefix: str, *, start_after: str = "") -> Iterator[list[ObjectInfo]]:
        return self._bucket.list_pages(prefix, start_after=start_after)

    def list_keys(self, prefix: str) -> list[ObjectInfo]:
        return self._bucket.list_keys(prefix)

    def has_prefix(self, prefix: str) -> bool:
        return self._bucket.has_prefix(prefix)

    def prefix_bytes(self, prefix: str) -> int:
        return self._bucket.prefix_bytes(prefix)

    def list_children(self, prefix: str) -> list[str]:
        return self._bucket.list_children(prefix)

    def list_sites(self) -> list[Dirname]:
        return self._bucket.list_sites()

    def probe(self) -> None:
        self._bucket.probe()

    # --- writes: refused ------------------------------------------------------------------
    def put(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise ReadOnlyViolation("Bucket.put")

    def put_alias(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise ReadOnlyViolation("Bucket.put_alias")

    def move_object(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise ReadOnlyViolation("Bucket.move_object")

    def move_prefix(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise ReadOnlyViolation("Bucket.move_prefix")

    def delete_prefix(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise ReadOnlyViolation("Bucket.delete_prefix")

    def presigned_post(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise ReadOnlyViolation("Bucket.presigned_post")

    def __getattr__(self, name: str) -> NoReturn:
        # Only reached for names not defined above: the raw client, private helpers
        # (`_copy`, `_delete_batch`) and anything Bucket grows later.
        raise ReadOnlyViolation(f"Bucket.{name}")

    def __setattr__(self, name: str, value: object) -> NoReturn:
        raise ReadOnlyViolation(f"setting Bucket.{name}")


# psycopg Connection attributes a read-only transaction's user may touch.
CONNECTION_READS = frozenset({"execute", "cursor", "closed", "info"})


class ReadOnlyConnection:
    """A connection proxy for one READ ONLY transaction: statements go through (Postgres
    refuses writes); transaction and session control raise ReadOnlyViolation."""

    _conn: psycopg.Connection

    def __init__(self, conn: psycopg.Connection) -> None:
        object.__setattr__(self, "_conn", conn)

    def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
        return self._conn.execute(query, params, **kwargs)

    def cursor(self, *args: Any, **kwargs: Any) -> Any:
        return self._conn.cursor(*args, **kwargs)

    @property
    def closed(self) -> bool:
        return self._conn.closed

    @property
    def info(self) -> Any:
        return self._conn.info

    def __getattr__(self, name: str) -> NoReturn:
        # commit, rollback, transaction, set_autocommit, set_read_only, pipeline, copy …
        raise ReadOnlyViolation(f"Connection.{name}")

    def __setattr__(self, name: str, value: object) -> NoReturn:
        raise ReadOnlyViolation(f"setting Connection.{name}")


# Database attributes a read-only view forwards (`transaction` is replaced by a read-only one).
DATABASE_READS = frozenset({"transaction", "ping"})


class ReadOnlyDatabase:
    """Transactions that cannot write: `SET TRANSACTION READ ONLY`, verified, snapshot pinned.
    Everything else on `Database` (its `conninfo`, which would open a writable session, and
    `close`, which belongs to the Runtime) raises ReadOnlyViolation."""

    _db: Database

    def __init__(self, db: Database) -> None:
        object.__setattr__(self, "_db", db)

    @contextmanager
    def transaction(self) -> Iterator[psycopg.Connection]:
        with self._db.transaction() as conn:
            conn.execute("SET TRANSACTION READ ONLY")
            # This first query also pins the transaction's snapshot, after which Postgres
            # refuses `SET TRANSACTION READ WRITE` ("must be set before any query").
            row = conn.execute("SELECT current_setting('transaction_read_only')").fetchone()
            if row is None or row[0] != "on":
                raise ReadOnlyViolation("the transaction did not become read-only")
            # The repositories are typed for psycopg connections; the proxy offers the
            # subset they use (execute, cursor).
            yield cast(psycopg.Connection, ReadOnlyConnection(conn))

    def ping(self, timeout: float = 5.0) -> None:
        self._db.ping(timeout)

    def __getattr__(self, name: str) -> NoReturn:
        raise ReadOnlyViolation(f"Database.{name}")

    def __setattr__(self, name: str, value: object) -> NoReturn:
        raise ReadOnlyViolation(f"setting Database.{name}")
