"""Embedded Postgres for the local runtime (pgserver), used unless DATABASE_URL is set."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
import warnings
from pathlib import Path
from typing import Any

from artemis.deadlines import Deadline

STALE_STOP_SECONDS = 30.0


class EmbeddedPostgres:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self._server: Any = None

    def start(self) -> str:
        """Start (or reuse) the server in `data_dir`; return its connection URI."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs: XDG_RUNTIME_DIR unset on servers
            from pgserver.postgres_server import get_server

        self.data_dir.mkdir(parents=True, exist_ok=True)
        stop_stale_server(self.data_dir)
        self._server = get_server(self.data_dir, cleanup_mode="stop")
        uri: str = self._server.get_uri()
        return uri

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()
            self._server = None


def stop_stale_server(data_dir: Path) -> bool:
    """Stop a postmaster left running in `data_dir` by a process that died without stopping
    it (`kill -9` of `make run`); True when there was one.

    pgserver shares one server among the processes listed in `.handle_pids.json` and stops it
    when the last of them lets go. A killed process never lets go, so the next run would reuse
    the server and, at its own stop, still see the dead process listed and leave the server
    running. A server none of whose users is alive is stopped here (fast shutdown: its
    sessions are rolled back, the data is safe) and the list emptied, so this run starts and
    owns a server of its own."""
    handles = data_dir / ".handle_pids.json"
    try:
        users = [int(p) for p in json.loads(handles.read_text())]
    except (OSError, ValueError, TypeError):
        users = []
    if any(p != os.getpid() and _alive(p) for p in users):
        return False  # another live process of ours uses this server
    pid = _postmaster(data_dir)
    if pid is not None:
        _signal(pid, signal.SIGINT)  # Postgres's fast shutdown
        deadline = Deadline.after(STALE_STOP_SECONDS)
        while _alive(pid) and not deadline.expired():
            time.sleep(0.1)  # not our child: no wait() to block on
        if _alive(pid):
            _signal(pid, signal.SIGKILL)
    if users:
        handles.write_text("[]")
    return pid is not None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _signal(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


def _postmaster(data_dir: Path) -> int | None:
    """The pid of the running postmaster named by `data_dir/postmaster.pid`, or None (no file,
    no such process, or a recycled pid that is not a Postgres server)."""
    try:
        pid = int((data_dir / "postmaster.pid").read_text().splitlines()[0])
    except (OSError, ValueError, IndexError):
        return None
    if not _alive(pid):
        return None
    try:
        name = Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return pid  # no /proc here: trust the pid file
    return pid if "postgres" in name else None
