"""The incremental side of a deploy: hash the build, then tell the server each file's SHA-256
and size (`POST /api/deploy/{id}/digests`) so it copies what the site already holds and names
what it still needs.

The manifest goes in chunks of at most `DIGEST_CHUNK` files, sent in parallel. A chunk the
server answers with `remaining` (its copy budget ran out) is sent again with those files. A
chunk refused as too large or as invalid (413, 400) is halved and both halves sent: a gateway
with a smaller body limit still takes the manifest, and a file the server refuses (a reserved
name, a file over its size limit) is isolated to a chunk of one and reported as that file's
failure, as the full upload path reports it, while every other file goes on.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from artemis_cli.errors import FAILED, CliError
from artemis_cli.files import BuildFile
from artemis_cli.http import Api

DIGEST_CHUNK = 5000  # the server's per-request limit
HALVING_STATUSES = frozenset({400, 413})
# A chunk halved this often is not a path or two the server refuses but a request it refuses
# whatever it holds: stop instead of bisecting thousands of files one by one.
MAX_REFUSALS = 64
# Answers in a row whose `remaining` is everything sent (the server copied or wrote nothing).
MAX_STALLS = 5


def hash_files(files: Sequence[BuildFile], concurrency: int) -> dict[str, str]:
    """path -> hex SHA-256, read in parallel (hashlib releases the GIL on large buffers)."""

    def one(f: BuildFile) -> str:
        with f.source.open("rb") as stream:
            return hashlib.file_digest(stream, "sha256").hexdigest()

    with ThreadPoolExecutor(max(1, concurrency)) as pool:
        return dict(zip((f.path for f in files), pool.map(one, files), strict=True))


@dataclass
class Negotiated:
    upload: list[str] = field(default_factory=list)
    copied: list[str] = field(default_factory=list)
    refused: list[tuple[str, CliError]] = field(default_factory=list)


class _Refusals:
    def __init__(self) -> None:
        self.count = 0
        self.lock = threading.Lock()

    def add(self, err: CliError) -> None:
        with self.lock:
            self.count += 1
            if self.count > MAX_REFUSALS:
                raise err


def negotiate(
    api: Api, base: str, session: str, files: Sequence[BuildFile], digests: dict[str, str],
    *, concurrency: int = 4, chunk: int = DIGEST_CHUNK,
) -> Negotiated:  # fmt: skip
    """Send the whole manifest; return what the server copied and what it wants uploaded."""
    entries = [{"path": f.path, "sha256": digests[f.path], "size": f.size} for f in files]
    refusals = _Refusals()
    lock = threading.Lock()
    result = Negotiated()

    def settle(part: list[dict[str, Any]]) -> None:
        pending, stalls = [part], 0
        while pending:
            batch = pending.pop()
            try:
                answer = api.call("POST", f"{base}/digests", token=session,
                                  json_body={"files": batch})  # fmt: skip
            except CliError as err:
                if err.status not in HALVING_STATUSES:
                    raise
                refusals.add(err)
                if len(batch) == 1:
                    with lock:
                        result.refused.append((batch[0]["path"], err))
                    continue
                half = len(batch) // 2
                pending += [batch[half:], batch[:half]]
                continue
            with lock:
                result.upload += answer["upload"]
                result.copied += answer["copied"]
            left = set(answer["remaining"])
            if left:
                stalls = stalls + 1 if len(left) == len(batch) else 0
                if stalls >= MAX_STALLS:
                    raise CliError("digests_stalled", "the server copies nothing more", FAILED)
                pending.append([e for e in batch if e["path"] in left])

    parts = [entries[i : i + chunk] for i in range(0, len(entries), chunk)]
    with ThreadPoolExecutor(max(1, min(concurrency, len(parts)))) as pool:
        for done in [pool.submit(settle, p) for p in parts]:
            done.result()
    return result
