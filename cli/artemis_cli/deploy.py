"""`artemis deploy`: init → hash and send the manifest → upload what the server lacks → finalize.

By default a deploy is incremental: the server copies, inside the bucket, every file the site
already holds (`artemis_cli.manifest`), small files of the rest go many to a request as tar
bundles (`artemis_cli.bundling`) and files above `BUNDLE_THRESHOLD` straight to the bucket by
presigned POSTs bound to their SHA-256. `incremental=False` (`--no-incremental`) uploads every
file, one request each; there, files above `DIRECT_THRESHOLD` go by presigned POST, because a
request through API Gateway and Lambda carries at most about 4.5 MB of file. `--direct` sends
every uploaded file by presigned POST. If any upload fails after its retries the deploy is not
finalized: nothing goes live, and the exit code is PARTIAL_UPLOAD.
"""

from __future__ import annotations

import mimetypes
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from artemis_cli.actions import is_alias_name
from artemis_cli.bundling import pack, plan
from artemis_cli.errors import FAILED, PARTIAL_UPLOAD, CliError, usage
from artemis_cli.files import Build, BuildFile
from artemis_cli.http import Api
from artemis_cli.manifest import MAX_STALLS, hash_files, negotiate
from artemis_cli.progress import Progress

DIRECT_THRESHOLD = 4 * 1024 * 1024
# Incremental: files up to this size travel in bundles, larger ones by presigned POST with their
# digest (straight to the bucket: no Lambda carries their bytes, and a bundle stays many files).
BUNDLE_THRESHOLD = 256 * 1024
BUNDLE_FALLBACK_STATUSES = frozenset({400, 413})
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
    uploaded: int = 0  # files whose bytes were sent
    copied: int = 0  # files the server copied from an earlier deploy
    bundles: int = 0  # bundle requests sent
    requests: int = 0  # requests to the API and the bucket, retries included
    alias: str | None = None  # the named preview it went live under

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
            "uploaded": self.uploaded,
            "copied": self.copied,
            "bundles": self.bundles,
            "requests": self.requests,
            **({"alias": self.alias} if self.alias else {}),
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
    concurrency: int = 8, direct_all: bool = False, incremental: bool = True,
    progress: Progress | None = None, metadata: dict[str, Any] | None = None,
    alias: str | None = None,
) -> DeployResult:  # fmt: skip
    """`metadata`: the init body's branch, message, pr, repo and ciUrl (artemis_cli.actions).
    `alias`: a named preview to go live under instead of the preview alias."""
    if not SHA.fullmatch(sha):
        raise usage(f"--sha {sha!r} must be 1-64 of A-Z a-z 0-9 -")
    if alias is not None and (production or not is_alias_name(alias)):
        raise usage(
            f"--alias {alias!r}: a named preview (not with --promote) must match "
            "^[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?$ and not be production or preview"
        )
    if not build.files:
        raise usage(f"nothing to deploy in {build.root}")
    if "index.html" not in {f.path for f in build.files}:
        raise CliError("missing_index", f"{build.root} has no index.html at its root", FAILED)
    started = time.monotonic()
    requests_before = api.requests
    init = api.call(
        "POST", "/api/deploy/init", json_body={"site": site, "sha": sha, **(metadata or {})}
    )
    deploy_id, session = str(init["deployId"]), str(init["jwt"])
    base = f"/api/deploy/{deploy_id}"
    by_path = {f.path: f for f in build.files}
    failures: list[tuple[str, CliError]] = []
    digests: dict[str, str] = {}
    copied: list[str] = []
    needed = list(build.files)
    if incremental:
        digests = hash_files(build.files, concurrency)
        answer = negotiate(api, base, session, build.files, digests, concurrency=concurrency)
        copied, failures = answer.copied, answer.refused
        wanted = set(answer.upload)
        needed = [f for f in build.files if f.path in wanted]
        if progress:
            for path in copied:
                progress.advance(by_path[path].size)
    threshold = BUNDLE_THRESHOLD if incremental else DIRECT_THRESHOLD
    direct = [f for f in needed if direct_all or f.size > threshold]
    direct_paths = {f.path for f in direct}
    presigned: dict[str, tuple[float, dict[str, Any]]] = {}

    def declared(path: str) -> str | None:
        # A bundle carries no types and a copy takes the server's: in an incremental deploy
        # the server's table types every file, however its bytes arrived.
        return None if incremental else content_type(path)

    def presign(files: Sequence[BuildFile]) -> None:
        listed = []
        for f in files:
            spec: dict[str, Any] = {"path": f.path, "size": f.size}
            if declared(f.path):
                spec["contentType"] = declared(f.path)
            if f.path in digests:  # S3 then refuses a body that is not these bytes
                spec["sha256"] = digests[f.path]
            listed.append(spec)
        answer = api.call("POST", f"{base}/uploads", token=session, json_body={"files": listed})
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
                "PUT", f"{base}/upload", raw=data, content_type=declared(f.path),
                query={"path": f.path}, token=session,
            )  # fmt: skip

    bundles_sent = 0
    count_lock = threading.Lock()

    def send_bundle(files: list[BuildFile]) -> None:
        """Send the bundle, then what the server had no time to write, until all landed."""
        nonlocal bundles_sent
        stalls = 0
        while files:
            with count_lock:
                bundles_sent += 1
            answer = api.call("PUT", f"{base}/bundle", raw=pack(files),
                              content_type="application/x-tar", token=session)  # fmt: skip
            left = set(answer.get("remaining") or ())
            stalls = stalls + 1 if len(left) >= len(files) else 0
            if stalls >= MAX_STALLS:
                raise CliError("bundle_stalled", "the server writes nothing more", FAILED)
            files = [f for f in files if f.path in left]

    # A task is one request's worth: a single file, or a bundle of small ones (incremental).
    tasks: list[list[BuildFile]] = [[f] for f in direct]
    rest = [f for f in needed if f.path not in direct_paths]
    tasks += plan(rest) if incremental else [[f] for f in rest]

    def run(task: list[BuildFile]) -> list[tuple[str, CliError]]:
        if len(task) == 1 and (not incremental or task[0].path in direct_paths):
            upload(task[0])
            return []
        try:
            send_bundle(task)
            return []
        except CliError as err:
            if err.status not in BUNDLE_FALLBACK_STATUSES:
                raise
        # A gateway or server that refuses the bundle whole: each file alone, so one bad
        # file fails alone and the rest still land.
        failed = []
        for f in task:
            try:
                upload(f)
            except CliError as err:
                failed.append((f.path, err))
        return failed

    with ThreadPoolExecutor(max(1, concurrency)) as pool:
        futures = {pool.submit(run, task): task for task in tasks}
        for future in as_completed(futures):
            task = futures[future]
            try:
                failures += future.result()
            except CliError as err:
                failures += [(f.path, err) for f in task]
            except OSError as err:
                failures += [(f.path, CliError("read_failed", str(err), FAILED)) for f in task]
            if progress:
                for f in task:
                    progress.advance(f.size)
    if progress:
        progress.done()
    if failures:
        failures.sort(key=lambda item: item[0])
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
    finalize: dict[str, Any] = {"mode": mode, "files": [f.path for f in build.files]}
    if alias is not None:
        finalize["alias"] = alias
    resent: set[str] = set()
    try:
        done = api.call("POST", f"{base}/finalize", token=session, json_body=finalize)
    except CliError as err:
        # Every upload (or copy) was acknowledged, yet the bucket's listing misses some: send
        # those files once more and finalize again (finalize may be repeated with the session).
        missing = err.extra.get("missing") if err.code == "verify_failed" else None
        if not isinstance(missing, list) or not missing or not set(missing) <= set(by_path):
            raise
        print(f"artemis: the server misses {len(missing)} uploaded files; sending them again",
              file=sys.stderr)  # fmt: skip
        big = [by_path[p] for p in missing if p not in presigned and by_path[p].size > threshold]
        if big:  # a copied file the bucket lost: too big for the API's body
            presign(big)
        for path in missing:
            upload(by_path[path])
        resent = set(missing)
        done = api.call("POST", f"{base}/finalize", token=session, json_body=finalize)
    return DeployResult(
        site=site, deploy_id=deploy_id, mode=mode, url=str(done["url"]),
        files=len(build.files), bytes=build.total_bytes, direct=len(direct),
        seconds=time.monotonic() - started, refused=list(build.refused),
        uploaded=len({f.path for f in needed} | resent), copied=len(copied), bundles=bundles_sent,
        requests=api.requests - requests_before, alias=alias,
    )  # fmt: skip
