"""A one-line progress bar on a terminal's stderr; silent elsewhere (CI logs, --json)."""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO


class Progress:
    def __init__(self, total_files: int, total_bytes: int, stream: TextIO | None = None,
                 enabled: bool | None = None) -> None:  # fmt: skip
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.total_files, self.total_bytes = total_files, total_bytes
        self.files = self.bytes = 0
        self._lock = threading.Lock()
        self._drawn = 0.0

    def advance(self, size: int) -> None:
        with self._lock:
            self.files += 1
            self.bytes += size
            now = time.monotonic()
            if self.enabled and (now - self._drawn > 0.1 or self.files == self.total_files):
                self._drawn = now
                self._draw()

    def _draw(self) -> None:
        width = 30
        share = self.bytes / self.total_bytes if self.total_bytes else 1.0
        bar = "#" * int(share * width)
        self.stream.write(
            f"\r[{bar:<{width}}] {self.files}/{self.total_files} files"
            f" {self.bytes / 1e6:.1f}/{self.total_bytes / 1e6:.1f} MB"
        )
        self.stream.flush()

    def done(self) -> None:
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()
