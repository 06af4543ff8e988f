"""`artemis deploy`: init → upload every file (in parallel) → finalize.

Files above `DIRECT_THRESHOLD` (or every file with `--direct`) go straight to the bucket
through presigned POSTs, because a request through API Gateway and Lambda carries at most
about 4.5 MB of file. If any upload fails after its retries the deploy is not finalized:
nothing goes live, and the exit code is PARTIAL_UPLOAD.
"""

from __future__ import annotations

import mimetypes
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from artemis_cli.errors import FAILED, PARTIAL_UPLOAD, CliError, usage
from artemis_cli.files import Build, BuildFile
from artemis_cli.http import Api
from artemis_cli.progress import Progress

DIRECT_THRESHOLD = 4 * 1024 * 1024
PRESIGN_BATCH = 1000  # the API's per-request limit
# The server's presigned POSTs live at most 15 minutes: a file whose upload starts later than
# this after its POST was issued gets a fresh one (uploads of a large build can take longer).
PRESIGN_FRESH_SECONDS = 600.0
SHA = re.compile(r"[A-Za-z0-9-]{1,64}")


@dataclass
class DeployResult:
    site: str
    deploy_id: str
    mode: str
    url: str
    files: int
    bytes: int
    direct: int
    seconds: float
    refused: list[tuple[str, str]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "site": self.site,
            "deployId": self.deploy_id,
            "mode": self.mode,
            "url": self.url,
            "files": self.files,
            "bytes": self.bytes,
            "direct": self.direct,
            "seconds": round(self.seconds, 3),
            "refused": [{"path": p, "reason": why} for p, why in self.refused],
        }


def default_sha(directory: Path, environ: dict[str, str] | None = None) -> str:
    """GITHUB_SHA in Actions, else the checkout's HEAD, else "local"."""
    env = os.environ if environ is None else environ
    if env.get("GITHUB_SHA"):
        return env["GITHUB_SHA"]
    # The directory decides which checkout is asked, not the process's working directory;
    # GIT_DIR and GIT_WORK_TREE would override that, so the child does not inherit them.
    git_env = {k: v for k, v in os.environ.items() if k not in ("GIT_DIR", "GIT_WORK_TREE")}
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"],  # noqa: S607 - git from PATH, as a user runs it
            cwd=directory,
            env=git_env,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return "local"
    head = done.stdout.strip()
    return head if done.returncode == 0 and SHA.fullmatch(head) else "local"


def content_type(path: str) -> str:
    guessed, _ = mimetypes.guess_type(path, strict=False)
    return guessed or "application/octet-stream"


def _chunks(items: Sequence[BuildFile], size: int) -> Iterator[Sequence[BuildFile]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def run_deploy(
    api: Api, site: str, build: Build, sha: str, *, production: bool = False,
    concurrency: int = 8, direct_all: bool = False, progress: Progress | None = None,
) -> DeployResult:  # fmt: skip
    if not SHA.fullmatch(sha):
        raise usage(f"--sha {sha!r} must be 1-64 of A-Z a-z 0-9 -")
    if not build.files:
        raise usage(f"nothing to deploy in {build.root}")
    if "index.html" not in {f.path for f in build.files}:
        raise CliError("missing_index", f"{build.root} has no index.html at its root", FAILED)
    started = time.monotonic()
    init = api.call("POST", "/api/deploy/init", json_body={"site": site, "sha": sha})
    deploy_id, session = str(init["deployId"]), str(init["jwt"])
    base = f"/api/deploy/{deploy_id}"
    direct = [f for f in build.files if direct_all or f.size > DIRECT_THRESHOLD]
    presigned: dict[str, tuple[float, dict[str, Any]]] = {}

    def presign(files: Sequence[BuildFile]) -> None:
        answer = api.call(
            "POST", f"{base}/uploads", token=session,
            json_body={"files": [
                {"path": f.path, "size": f.size, "contentType": content_type(f.path)}
                for f in files
            ]},
        )  # fmt: skip
        issued = time.monotonic()
        presigned.update({u["path"]: (issued, u) for u in answer["uploads"]})

    for chunk in _chunks(direct, PRESIGN_BATCH):
        presign(chunk)

    def upload(f: BuildFile) -> None:
        data = f.source.read_bytes()
        if f.path in presigned:
            if time.monotonic() - presigned[f.path][0] > PRESIGN_FRESH_SECONDS:
                presign([f])
            target = presigned[f.path][1]
            api.presigned_post(target["url"], target["fields"], f.path.rsplit("/", 1)[-1], data)
        else:
            api.call(
                "PUT", f"{base}/upload", raw=data, content_type=content_type(f.path),
                query={"path": f.path}, token=session,
            )  # fmt: skip

    failures: list[tuple[str, CliError]] = []
    with ThreadPoolExecutor(max(1, concurrency)) as pool:
        futures = {pool.submit(upload, f): f for f in build.files}
        for future in as_completed(futures):
            f = futures[future]
            try:
                future.result()
            except CliError as err:
                failures.append((f.path, err))
            except OSError as err:
                failures.append((f.path, CliError("read_failed", str(err), FAILED)))
            if progress:
                progress.advance(f.size)
    if progress:
        progress.done()
    if failures:
        failures.sort()
        raise CliError(
            "partial_upload",
            f"{len(failures)} of {len(build.files)} files failed to upload; "
            f"deploy {deploy_id} was not finalized",
            PARTIAL_UPLOAD,
            extra={
                "deployId": deploy_id,
                "failed": [{"path": p, "code": e.code, "message": e.message} for p, e in failures],
            },
        )
    mode = "production" if production else "preview"
    finalize = {"mode": mode, "files": [f.path for f in build.files]}
    try:
        done = api.call("POST", f"{base}/finalize", token=session, json_body=finalize)
    except CliError as err:
        # Every upload was acknowledged, yet the bucket's listing misses some: send those
        # files once more and finalize again (finalize may be repeated with the session).
        by_path = {f.path: f for f in build.files}
        missing = err.extra.get("missing") if err.code == "verify_failed" else None
        if not isinstance(missing, list) or not missing or not set(missing) <= set(by_path):
            raise
        print(f"artemis: the server misses {len(missing)} uploaded files; sending them again",
              file=sys.stderr)  # fmt: skip
        for path in missing:
            upload(by_path[path])
        done = api.call("POST", f"{base}/finalize", token=session, json_body=finalize)
    return DeployResult(
        site=site, deploy_id=deploy_id, mode=mode, url=str(done["url"]),
        files=len(build.files), bytes=build.total_bytes, direct=len(direct),
        seconds=time.monotonic() - started, refused=list(build.refused),
    )  # fmt: skip
