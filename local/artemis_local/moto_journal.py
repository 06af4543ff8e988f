"""moto's server with the bucket kept on disk: `python -m artemis_local.moto_journal --port P
--journal FILE`, what MotoServer runs when the local system has a state directory.

moto keeps everything in memory, while the embedded Postgres keeps its data: after a restart
the index named deploys the bucket no longer had. Here every S3 write that moto accepted (PUT,
POST, DELETE answered 2xx: objects, aliases, batch deletes, presigned POST uploads, bucket
creation) is appended to FILE as it happens, and at start the file is replayed into the fresh
moto before the port opens, so the bucket comes back as it was. Each entry is one line written
with one call and flushed, so a `kill -9` loses at most the request in flight; a torn last line
is dropped at the next start. Queues are not journaled: an SQS message is a notification the
outbox and the backstop re-derive, not data.

The journal grows with every write (deleted objects included); deleting it, together with the
embedded Postgres, starts the local system from nothing.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from types import FrameType
from typing import Any

_MUTATING = ("PUT", "POST", "DELETE")
# The CGI variables of a request that moto reads; what a replay needs to rebuild it.
_KEPT = ("REQUEST_METHOD", "PATH_INFO", "QUERY_STRING", "CONTENT_TYPE", "CONTENT_LENGTH",
         "RAW_URI", "REQUEST_URI", "SERVER_NAME", "SERVER_PORT", "SERVER_PROTOCOL")  # fmt: skip

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
App = Callable[[Environ, StartResponse], Iterable[bytes]]


def is_s3_write(environ: Environ) -> bool:
    if environ.get("REQUEST_METHOD") not in _MUTATING:
        return False
    if "/s3/aws4_request" in environ.get("HTTP_AUTHORIZATION", ""):
        return True
    if "%2Fs3%2Faws4_request" in environ.get("QUERY_STRING", ""):  # a presigned URL
        return True
    # A presigned POST (browser-style form upload) carries its credentials in the form.
    return environ["REQUEST_METHOD"] == "POST" and str(environ.get("CONTENT_TYPE", "")).startswith(
        "multipart/form-data"
    )


def _read_body(environ: Environ) -> bytes:
    stream = environ["wsgi.input"]
    length = environ.get("CONTENT_LENGTH")
    if length:
        return bytes(stream.read(int(length)))
    if environ.get("wsgi.input_terminated"):  # a chunked request the server decoded
        return bytes(stream.read())
    return b""


class Journal:
    """WSGI middleware appending each accepted S3 write to the journal file."""

    def __init__(self, app: App, path: Path) -> None:
        self.app = app
        self.file = path.open("ab")
        # One S3 write at a time, so the journal's order is the order moto applied them in
        # (two writes to one key must replay in the order they happened).
        self.lock = threading.Lock()

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        if not is_s3_write(environ):
            return self.app(environ, start_response)
        body = _read_body(environ)
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        environ.pop("HTTP_TRANSFER_ENCODING", None)
        statuses: list[str] = []

        def capture(status: str, headers: Any, exc_info: Any = None) -> Any:
            statuses.append(status)
            return start_response(status, headers, exc_info)

        with self.lock:
            result = list(self.app(environ, capture))  # moto answers small XML documents
            if statuses and statuses[-1].startswith("2"):
                self._append(environ, body)
        return result

    def _append(self, environ: Environ, body: bytes) -> None:
        entry = {k: v for k, v in environ.items() if k in _KEPT or k.startswith("HTTP_")}
        entry["body"] = base64.b64encode(body).decode()
        self.file.write(json.dumps(entry).encode() + b"\n")
        self.file.flush()


def replay(app: App, path: Path) -> int:
    """Apply the journal to `app`; returns the number of writes replayed. A torn last line
    (the process was killed while writing it) is cut off so new entries follow whole ones."""
    if not path.exists():
        return 0
    count = 0
    good = 0
    with path.open("rb") as file:
        for line in file:
            if not line.endswith(b"\n"):
                break
            try:
                entry = json.loads(line)
            except ValueError:
                break
            body = base64.b64decode(entry.pop("body"))
            environ: Environ = {
                **entry,
                "wsgi.input": io.BytesIO(body),
                "wsgi.errors": sys.stderr,
                "wsgi.url_scheme": "http",
                "wsgi.version": (1, 0),
                "wsgi.multithread": False,
                "wsgi.multiprocess": False,
                "wsgi.run_once": False,
            }
            result = app(environ, lambda status, headers, exc_info=None: None)
            for _ in result:
                pass
            close = getattr(result, "close", None)
            if close is not None:
                close()
            count += 1
            good += len(line)
    if good != path.stat().st_size:
        with path.open("r+b") as file:
            file.truncate(good)
    return count


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--journal", type=Path, required=True)
    args = parser.parse_args(argv)
    os.environ.setdefault("MOTO_PORT", str(args.port))  # moto renders queue URLs with it

    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import run_simple

    def stop(signum: int, frame: FrameType | None) -> None:
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    app: App = DomainDispatcherApplication(create_backend_app)
    args.journal.parent.mkdir(parents=True, exist_ok=True)
    replay(app, args.journal)
    run_simple(args.host, args.port, Journal(app, args.journal), threaded=True,
               request_handler=MotoRequestHandler)  # fmt: skip


if __name__ == "__main__":
    main()
