"""`make bench-deploy`: a deploy through the CLI against the local stack, beside a plain boto3
upload of the same tree with the same concurrency to the same S3 endpoint (what a user would
do without Artemis). Prints JSON: both times and their ratio (target ≤ 1.2).

    .venv/bin/python bench/deploy.py [--small 1000] [--small-kib 4] [--large 20]
        [--large-mib 2] [--concurrency 8] [--runs 3] [--pg postgresql://...]

The local stack runs in this process (gateway + API handler + moto, as `make run` does, no
background workers); the CLI runs as its own process (`.venv/bin/artemis deploy`), as a user
runs it. The figure per side is the median of `--runs` runs; each CLI run is a new deploy.
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
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parents[1]
CLI = Path(sys.executable).with_name("artemis")
TOKEN = "local-staff-token"  # noqa: S105 - the fake GitHub's identity, not a secret


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


def cli_deploy(
    base: str, site: str, tree: Path, concurrency: int, direct: bool
) -> tuple[float, dict[str, Any]]:
    env = {**os.environ, "ARTEMIS_URL": base, "ARTEMIS_TOKEN": TOKEN}
    started = time.perf_counter()
    done = subprocess.run(  # noqa: S603 - our own console script
        [str(CLI), "deploy", str(tree), "--site", site, "--sha", uuid.uuid4().hex[:7],
         "--concurrency", str(concurrency), "--json", *(["--direct"] if direct else [])],
        env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"artemis deploy failed ({done.returncode}): {done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout)
    return elapsed, result


def boto3_upload(endpoint: str, bucket: str, tree: Path, concurrency: int) -> float:
    """What a user would write: walk the tree, put every file, same parallelism."""
    import boto3
    from botocore.config import Config

    client = boto3.client(
        "s3", endpoint_url=endpoint, region_name="us-east-1",
        aws_access_key_id="local", aws_secret_access_key="local",  # noqa: S106 - moto
        config=Config(max_pool_connections=concurrency),
    )  # fmt: skip
    prefix = f"plain/{uuid.uuid4().hex[:8]}/"
    files = [p for p in tree.rglob("*") if p.is_file()]
    started = time.perf_counter()

    def put(path: Path) -> None:
        client.put_object(Bucket=bucket, Key=prefix + path.relative_to(tree).as_posix(),
                          Body=path.read_bytes())  # fmt: skip

    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(put, files))
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--small", type=int, default=1000)
    parser.add_argument("--small-kib", type=int, default=4)
    parser.add_argument("--large", type=int, default=20)
    parser.add_argument("--large-mib", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--direct", action="store_true", help="deploy with `artemis --direct`")
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()

    from artemis.observability import logger
    from artemis_local.runner import LocalSystem

    logger.setLevel("WARNING")
    database = f"artemis_bench_deploy_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(args.pg, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{database}"'.encode())
    url = psycopg.conninfo.make_conninfo(args.pg, dbname=database)
    work = Path(tempfile.mkdtemp(prefix="artemis-bench-deploy-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(DATABASE_URL=url, ARTEMIS_STATE_DIR=str(work / "state"))
    for name in ("AWS_ENDPOINT_URL", "GH_API_BASE", "REDIS_URL"):
        env.pop(name, None)
    (work / "state").mkdir()
    tree = work / "site"
    tree.mkdir()
    files = make_tree(tree, args.small, args.small_kib, args.large, args.large_mib)
    total_bytes = sum(p.stat().st_size for p in tree.rglob("*") if p.is_file())
    system = LocalSystem(state_dir=work / "state", base_env=env, port=0, workers=False)
    with contextlib.redirect_stdout(sys.stderr):  # the handler's logs; stdout is the result
        system.start()
    try:
        assert system.gateway is not None
        base = system.gateway.url
        site = f"bench{uuid.uuid4().hex[:6]}"
        subprocess.run(  # noqa: S603 - our own console script
            [str(CLI), "sites", "register", site, "--json"],
            env={**os.environ, "ARTEMIS_URL": base, "ARTEMIS_TOKEN": TOKEN},
            capture_output=True, check=True, timeout=60,
        )  # fmt: skip
        cli_times, plain_times = [], []
        last: dict[str, Any] = {}
        for _ in range(args.runs):  # alternate, so drift in the machine's speed hits both
            with contextlib.redirect_stdout(sys.stderr):
                elapsed, last = cli_deploy(base, site, tree, args.concurrency, args.direct)
                cli_times.append(elapsed)
                plain_times.append(
                    boto3_upload(
                        system.env["AWS_ENDPOINT_URL"],
                        system.env["BUCKET_NAME"],
                        tree,
                        args.concurrency,
                    )
                )
    finally:
        with contextlib.redirect_stdout(sys.stderr):
            system.stop()
        with psycopg.connect(args.pg, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE "{database}" WITH (FORCE)'.encode())
    cli_s, plain_s = statistics.median(cli_times), statistics.median(plain_times)
    print(json.dumps({
        "files": files,
        "bytes": total_bytes,
        "concurrency": args.concurrency,
        "cli_flags": ["--direct"] if args.direct else [],
        "runs": args.runs,
        "cli_deploy_s": round(cli_s, 3),
        "cli_deploy_runs_s": [round(t, 3) for t in cli_times],
        "cli_direct_uploads": last.get("direct"),
        "plain_boto3_s": round(plain_s, 3),
        "plain_boto3_runs_s": [round(t, 3) for t in plain_times],
        "ratio": round(cli_s / plain_s, 2),
        "target_ratio": 1.2,
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
