"""`make bench-deploy`: deploys through the CLI against the local stack, beside what a user
would do without Artemis, all in one run against the same S3 endpoint with the same
concurrency. Prints JSON: per mode its seconds and its request count, and the ratios.

    .venv/bin/python bench/deploy.py [--small 1000] [--small-kib 4] [--large 20]
        [--large-mib 2] [--many 20000] [--many-kib 1] [--concurrency 8] [--runs 3]
        [--changed 0.01] [--direct] [--pg postgresql://...]

Modes (the tree: `--small` files of `--small-kib` KiB and `--large` of `--large-mib` MiB):
- `plain_boto3`: boto3 `put_object` of every file of the tree;
- `first`: `artemis deploy` (the default, incremental) of the tree to a new site;
- `changed_1pct`: the tree with `--changed` of its small files rewritten, deployed again;
- `unchanged`: the same tree once more;
- `copy_floor`: one raw boto3 `copy_object` per file of the tree: what copying the tree
  inside the bucket costs at this concurrency, which an unchanged redeploy cannot beat;
- `many_first`, `many_unchanged`, `many_copy_floor`: a tree of `--many` files of `--many-kib`
  KiB, deployed to a new site, then again unchanged, and its floor: one `copy_object` per file
  of that deploy (`--many 0` skips them).

Per run every mode uses a new site (so `first` finds nothing to copy); each figure is the
median of `--runs` runs, alternating the modes so drift in the machine's speed hits all.
The local stack runs in this process (gateway + API handler, moto in its own process, as
`make run` does, no background workers); the CLI runs as its own process
(`.venv/bin/artemis deploy`), as a user runs it. A CLI's request count is its own (`requests`
in `--json`: API and bucket requests, retries included); boto3's are counted as sent.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from local_stack import local_system  # bench/local_stack.py, beside this script

ROOT = Path(__file__).resolve().parents[1]
CLI = Path(sys.executable).with_name("artemis")
TOKEN = "local-staff-token"  # noqa: S105 - the fake GitHub's identity, not a secret

Sample = tuple[float, int]  # (seconds, requests)


def make_tree(root: Path, small: int, small_kib: int, large: int, large_mib: int) -> int:
    (root / "index.html").write_bytes(b"<!doctype html><h1>bench</h1>")
    total = 1
    for i in range(small - 1):
        folder = root / "assets" / f"{i % 20:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"f{i:05d}.js").write_bytes(os.urandom(small_kib * 1024))
        total += 1
    (root / "media").mkdir(exist_ok=True)
    for i in range(large):
        (root / "media" / f"clip{i:02d}.bin").write_bytes(os.urandom(large_mib * 1024 * 1024))
        total += 1
    return total


def change_some(root: Path, share: float) -> int:
    """Rewrite `share` of the small files with new bytes of the same size."""
    small = sorted((root / "assets").rglob("*.js"))
    count = max(1, round(len(small) * share))
    for path in small[:: max(1, len(small) // count)][:count]:
        path.write_bytes(os.urandom(path.stat().st_size))
    return count


class Stack:
    def __init__(self, base: str, endpoint: str, bucket: str, concurrency: int) -> None:
        import boto3
        from botocore.config import Config

        self.base, self.bucket, self.concurrency = base, bucket, concurrency
        self.s3 = boto3.client(
            "s3", endpoint_url=endpoint, region_name="us-east-1",
            aws_access_key_id="local", aws_secret_access_key="local",  # noqa: S106 - moto
            config=Config(max_pool_connections=concurrency),
        )  # fmt: skip
        self._sent = 0
        self._lock = threading.Lock()
        self.s3.meta.events.register("before-send.s3.*", self._count)

    def _count(self, **_: Any) -> None:
        with self._lock:
            self._sent += 1

    def _cli(self, *argv: str) -> dict[str, Any]:
        env = {**os.environ, "ARTEMIS_URL": self.base, "ARTEMIS_TOKEN": TOKEN}
        done = subprocess.run(  # noqa: S603 - our own console script
            [str(CLI), *argv, "--json"], env=env, capture_output=True, text=True, timeout=1800,
            check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise SystemExit(f"artemis {argv[0]} failed ({done.returncode}): {done.stderr}")
        result: dict[str, Any] = json.loads(done.stdout)
        return result

    def new_site(self) -> str:
        site = f"bench{uuid.uuid4().hex[:6]}"
        self._cli("sites", "register", site)
        return site

    def deploy(self, site: str, tree: Path, flags: list[str]) -> tuple[Sample, dict[str, Any]]:
        started = time.perf_counter()
        result = self._cli("deploy", str(tree), "--site", site, "--sha", uuid.uuid4().hex[:7],
                           "--concurrency", str(self.concurrency), *flags)  # fmt: skip
        return (time.perf_counter() - started, int(result["requests"])), result

    def _parallel(self, work: Callable[[str], None], items: list[str]) -> Sample:
        before = self._sent
        started = time.perf_counter()
        with ThreadPoolExecutor(self.concurrency) as pool:
            list(pool.map(work, items))
        return time.perf_counter() - started, self._sent - before

    def plain_upload(self, tree: Path) -> tuple[Sample, list[str]]:
        """What a user would write: walk the tree, put every file, same parallelism."""
        prefix = f"plain/{uuid.uuid4().hex[:8]}/"
        files = {prefix + p.relative_to(tree).as_posix(): p for p in tree.rglob("*") if p.is_file()}

        def put(key: str) -> None:
            self.s3.put_object(Bucket=self.bucket, Key=key, Body=files[key].read_bytes())

        return self._parallel(put, list(files)), list(files)

    def copy_all(self, keys: list[str]) -> Sample:
        """One CopyObject per key into a new prefix: the floor of any copy inside the bucket."""
        prefix = f"copies/{uuid.uuid4().hex[:8]}/"

        def copy(key: str) -> None:
            self.s3.copy_object(Bucket=self.bucket, Key=prefix + key,
                                CopySource={"Bucket": self.bucket, "Key": key})  # fmt: skip

        return self._parallel(copy, keys)

    def keys_of(self, deploy_id: str) -> list[str]:
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket)
        marker = f"/deploys/{deploy_id}/"
        return [o["Key"] for page in pages for o in page.get("Contents", [])
                if marker in o["Key"] and not o["Key"].endswith("/_artemis_meta.json")]  # fmt: skip


def median(samples: list[Sample]) -> dict[str, Any]:
    return {
        "s": round(statistics.median(s for s, _ in samples), 3),
        "requests": int(statistics.median(r for _, r in samples)),
        "runs_s": [round(s, 3) for s, _ in samples],
    }


def ratio(a: dict[str, Any], b: dict[str, Any]) -> float:
    return round(float(a["s"]) / float(b["s"]), 3)


def measure(args: argparse.Namespace, stack: Stack, work: Path) -> dict[str, Any]:
    tree = work / "site"
    tree.mkdir()
    files = make_tree(tree, args.small, args.small_kib, args.large, args.large_mib)
    total_bytes = sum(p.stat().st_size for p in tree.rglob("*") if p.is_file())
    flags = ["--direct"] if args.direct else []
    samples: dict[str, list[Sample]] = {}
    last: dict[str, dict[str, Any]] = {}

    def keep(mode: str, sample: Sample, result: dict[str, Any] | None = None) -> None:
        samples.setdefault(mode, []).append(sample)
        if result is not None:
            last[mode] = {k: result[k] for k in ("uploaded", "copied", "bundles", "direct")}

    changed = 0
    for _ in range(args.runs):  # alternate, so drift in the machine's speed hits every mode
        site = stack.new_site()
        sample, keys = stack.plain_upload(tree)
        keep("plain_boto3", sample)
        keep("first", *stack.deploy(site, tree, flags))
        changed = change_some(tree, args.changed)
        keep("changed_1pct", *stack.deploy(site, tree, flags))
        keep("unchanged", *stack.deploy(site, tree, flags))
        keep("copy_floor", stack.copy_all(keys))
    if args.many:
        many = work / "many"
        many.mkdir()
        make_tree(many, args.many, args.many_kib, 0, 0)
        site = stack.new_site()
        sample, result = stack.deploy(site, many, flags)
        keep("many_first", sample, result)
        keep("many_unchanged", *stack.deploy(site, many, flags))
        keep("many_copy_floor", stack.copy_all(stack.keys_of(result["deployId"])))
    modes = {mode: {**median(s), **last.get(mode, {})} for mode, s in samples.items()}
    ratios = {
        "first/plain_boto3": ratio(modes["first"], modes["plain_boto3"]),
        "changed_1pct/first": ratio(modes["changed_1pct"], modes["first"]),
        "unchanged/first": ratio(modes["unchanged"], modes["first"]),
        "unchanged/copy_floor": ratio(modes["unchanged"], modes["copy_floor"]),
    }
    if args.many:
        ratios["many_unchanged/many_first"] = ratio(modes["many_unchanged"], modes["many_first"])
        ratios["many_unchanged/many_copy_floor"] = ratio(
            modes["many_unchanged"], modes["many_copy_floor"]
        )
    return {
        "tree": {"files": files, "bytes": total_bytes, "changed_files": changed},
        "many_tree": {"files": args.many, "kib": args.many_kib} if args.many else None,
        "concurrency": args.concurrency,
        "cli_flags": flags,
        "runs": args.runs,
        "modes": modes,
        "ratios": ratios,
        "targets": {"first/plain_boto3": 1.1, "changed_1pct/first": 0.1,
                    "unchanged/first": 0.05, "many_unchanged/many_first": 0.05},
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--small", type=int, default=1000)
    parser.add_argument("--small-kib", type=int, default=4)
    parser.add_argument("--large", type=int, default=20)
    parser.add_argument("--large-mib", type=int, default=2)
    parser.add_argument("--many", type=int, default=20000)
    parser.add_argument("--many-kib", type=int, default=1)
    parser.add_argument("--changed", type=float, default=0.01)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--direct", action="store_true", help="deploy with `artemis --direct`")
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="artemis-bench-deploy-"))
    with local_system(args.pg, "artemis_bench_deploy", workers=False) as system:
        assert system.gateway is not None
        stack = Stack(system.gateway.url, system.env["AWS_ENDPOINT_URL"],
                      system.env["BUCKET_NAME"], args.concurrency)  # fmt: skip
        with contextlib.redirect_stdout(sys.stderr):  # the handler's logs; stdout is the result
            report = measure(args, stack, work)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
