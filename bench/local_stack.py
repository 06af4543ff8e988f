"""What the benchmarks that drive the whole system share: a scratch database of their own, and
`make run`'s local system on a free port, with the logs sent to stderr so that stdout carries
only the JSON result."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg

if TYPE_CHECKING:
    from artemis_local.runner import LocalSystem


def create_database(admin_url: str, prefix: str) -> str:
    """A new, empty database named `<prefix>_<random>`; returns its URL. Its sessions run in
    the zone named `UTC`, as on RDS, whose default parameter group sets it. (A packaged server
    often defaults to the host's zone, `Etc/UTC` here: psycopg then loads each timestamp with a
    zoneinfo that is slower to compare with `datetime.now(UTC)` than UTC itself, which costs
    the retention planners about a fifth of their time.)"""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"'.encode())
        conn.execute(f"ALTER DATABASE \"{name}\" SET timezone = 'UTC'".encode())
    return psycopg.conninfo.make_conninfo(admin_url, dbname=name)


def drop_database(admin_url: str, url: str) -> None:
    name = psycopg.conninfo.conninfo_to_dict(url)["dbname"]
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)'.encode())


def quiet_logs() -> None:
    """Warnings and worse only, to stderr: the Lambda-style log handler writes to stdout."""
    from artemis.observability import logger

    logger.setLevel("WARNING")
    for handler in logger.handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(sys.stderr)


@contextlib.contextmanager
def local_system(
    admin_url: str, prefix: str, env: dict[str, str] | None = None, *, workers: bool = True
) -> Iterator[LocalSystem]:
    """The local system (gateway, moto or the given AWS endpoint, and the workers unless
    `workers` is false) on a fresh database, stopped and its database dropped on the way out.
    The caller's AWS settings, GitHub and Redis are left out unless `env` gives them."""
    from artemis_local.runner import LocalSystem

    quiet_logs()
    url = create_database(admin_url, prefix)
    state = Path(tempfile.mkdtemp(prefix=f"{prefix}-")) / "state"
    state.mkdir()
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("AWS_") and k not in ("GH_API_BASE", "REDIS_URL")
    }
    base.update(DATABASE_URL=url, ARTEMIS_STATE_DIR=str(state), **(env or {}))
    system = LocalSystem(state_dir=state, base_env=base, port=0, workers=workers)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            system.start()
        yield system
    finally:
        with contextlib.redirect_stdout(sys.stderr):
            system.stop()
        drop_database(admin_url, url)
