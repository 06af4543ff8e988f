"""A webhook receiver on 127.0.0.1 for the tests: it records every request (headers and raw
body) and answers with the statuses it is scripted to give, the last one repeated; a status
of 0 hangs for `hang_seconds` before answering 200 (a slow receiver)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic()


@dataclass
class Receiver:
    statuses: list[int] = field(default_factory=lambda: [200])
    hang_seconds: float = 15.0
    received: list[Received] = field(default_factory=list)
    port: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _arrived: threading.Condition = field(init=False)

    def __post_init__(self) -> None:
        self._arrived = threading.Condition(self._lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def record(self, path: str, headers: dict[str, str], body: bytes) -> int:
        with self._lock:
            index = len(self.received)
            self.received.append(Received(path, headers, body, time.monotonic()))
            self._arrived.notify_all()
            return self.statuses[min(index, len(self.statuses) - 1)]

    def wait_for(self, count: int, timeout: float = 30.0) -> list[Received]:
        """Block until `count` requests arrived (AssertionError after `timeout`)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while len(self.received) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{len(self.received)} of {count} requests arrived")
                self._arrived.wait(left)
            return list(self.received)


@contextmanager
def receiving(statuses: list[int] | None = None, hang_seconds: float = 15.0) -> Iterator[Receiver]:
    receiver = Receiver(statuses=statuses or [200], hang_seconds=hang_seconds)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length)
            headers = {k.lower(): v for k, v in self.headers.items()}
            status = receiver.record(self.path, headers, body)
            if status == 0:
                time.sleep(receiver.hang_seconds)
                status = 200
            payload = b"ok"
            self.send_response(status)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: object) -> None:
            return  # quiet

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    receiver.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, name="hook-receiver", daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
