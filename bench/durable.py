"""The reference's load stages against real Postgres, printing JSON.

    .venv/bin/python bench/durable.py [--workers 16] [--processes 4] [--sites 500]
        [--deploys 40] [--pg postgresql://postgres@127.0.0.1:5432/postgres] [--localstack URL]
        [--stages write relay plan]

Two shapes, each stage's `shape` says which: `threads` (one process, `--workers` threads,
a connection each: the shape the reference measured) and `processes` (`--processes`
processes, one connection and one operation at a time each: production's shape, where every
concurrent request or job is a Lambda execution environment of its own). Beside each SQL
stage, `floor_ops_per_s` is the same statements driven by pgbench at the same concurrency
against a database of the same rows (bench/floors.py), and `vs_floor` our share of it.

Stages (500 sites x 40 deploys = 20,000 rows by default): register (registry inserts),
deploy_upsert (the backfill upsert path, 1 MiB, marker, hourly mtimes from 90 days ago),
outbox_enqueue (single-event transactions), relay_drain (back-to-back relay passes of 100 with
a stub publisher), gc_plan_dryrun (per site: the gc-site reads and the pure plan, keep 10,
grace 24 h, retention 30 days, serve TTL 1 h, cap 1000). With --localstack (a LocalStack URL)
relay_drain runs again against a real SQS FIFO queue, beside the raw SendMessageBatch rate to
the same queue. gc_plan_dryrun_fleet plans the same sites through the fleet planner (many
sites per read round trip). Each stage runs in a fresh database; figures are ops/s and µs
percentiles.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import floors  # bench/floors.py, beside this script
import psycopg
from local_stack import create_database, drop_database, quiet_logs

from artemis.config import load_settings
from artemis.db import deploys, outbox, sites
from artemis.db.connection import Database
from artemis.db.migrate import migrate
from artemis.db.outbox import OutboxMessage
from artemis.deadlines import Deadline
from artemis.jobs.gc_site import plan_fleet, plan_for, plan_on
from artemis.jobs.relay import drain
from artemis.keys import Dirname, Slug
from artemis.queue import PublishOutcome, SqsPublisher
from artemis.retention import Policy
from artemis.runtime import Runtime

REFERENCE = {  # the reference's figures: default pool (10 connections, 16 workers)
    "register": 3895,
    "deploy_upsert": 5760,
    "outbox_enqueue": 4232,
    "relay_drain": 39869,
    "gc_plan_dryrun": 10266,
}
MIB = 1024 * 1024


class StubPublisher:
    def publish(self, messages: Sequence[OutboxMessage]) -> PublishOutcome:
        return PublishOutcome(published=[m.id for m in messages])


def percentiles(samples_us: list[float]) -> dict[str, float]:
    if not samples_us:
        return {}
    ordered = sorted(samples_us)

    def pick(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)

    return {
        "p50_us": pick(0.50),
        "p95_us": pick(0.95),
        "p99_us": pick(0.99),
        "max_us": round(ordered[-1], 1),
    }


def timed_parallel(
    name: str,
    items: Sequence[Any],
    work: Callable[[psycopg.Connection, Any], object],
    url: str,
    workers: int,
) -> dict[str, Any]:
    """Run `work(conn, item)` for every item on `workers` threads. Each thread has its own
    autocommit connection, opened before the clock starts (a single statement is then one
    round trip and its own transaction, as through a pool)."""
    spare = [psycopg.connect(url, autocommit=True) for _ in range(workers)]
    local = threading.local()
    latencies: list[float] = []
    errors = 0
    guard = threading.Lock()

    def one(item: Any) -> None:
        nonlocal errors
        conn = getattr(local, "conn", None)
        if conn is None:
            with guard:
                conn = local.conn = spare.pop()
        began = time.perf_counter()
        try:
            work(conn, item)
        except Exception:
            with guard:
                errors += 1
            raise
        elapsed_us = (time.perf_counter() - began) * 1e6
        with guard:
            latencies.append(elapsed_us)

    started = time.perf_counter()
    try:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(one, items))
        elapsed = time.perf_counter() - started
    finally:
        for conn in spare:
            conn.close()
    return {
        "stage": name,
        "ops": len(items),
        "seconds": round(elapsed, 3),
        "ops_per_s": round(len(items) / elapsed),
        "errors": errors,
        **percentiles(latencies),
    }


# --- the processes shape --------------------------------------------------------------------


def _work_register(conn: psycopg.Connection, item: Any) -> None:
    sites.insert(conn, Slug(item), ["staff"], "bench")


def _work_deploy_upsert(conn: psycopg.Connection, item: Any) -> None:
    deploys.upsert_backfilled(conn, item[0], item[1], item[2], True, MIB)


def _work_outbox_enqueue(conn: psycopg.Connection, item: Any) -> None:
    outbox.enqueue_site_changed(conn, item)


def _work_gc_plan_dryrun(conn: psycopg.Connection, item: Any) -> None:
    plan = plan_on(conn, item, datetime.now(UTC), Bench.POLICY)
    assert plan.planned  # 40 hourly deploys from 90 days ago: most are collectable


WORKS: dict[str, Callable[[psycopg.Connection, Any], None]] = {
    "register": _work_register,
    "deploy_upsert": _work_deploy_upsert,
    "outbox_enqueue": _work_outbox_enqueue,
    "gc_plan_dryrun": _work_gc_plan_dryrun,
}


def _process_main(url: str, work: str, chunk: list[Any], barrier: Any, out: Any) -> None:
    """One 'execution environment': its own connection, one operation at a time."""
    conn = psycopg.connect(url, autocommit=True)
    run = WORKS[work]
    latencies: list[float] = []
    barrier.wait()  # every process connected: the clock starts
    cpu = time.process_time()
    for item in chunk:
        began = time.perf_counter()
        run(conn, item)
        latencies.append((time.perf_counter() - began) * 1e6)
    out.put((latencies, time.process_time() - cpu))
    conn.close()


def timed_processes(
    name: str, items: Sequence[Any], work: str, url: str, processes: int
) -> dict[str, Any]:
    """`WORKS[work](conn, item)` for every item, over `processes` forked processes."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(processes + 1)
    out = ctx.Queue()
    chunks = [list(items[i::processes]) for i in range(processes)]
    procs = [ctx.Process(target=_process_main, args=(url, work, chunk, barrier, out))
             for chunk in chunks]  # fmt: skip
    for proc in procs:
        proc.start()
    barrier.wait()
    started = time.perf_counter()
    results = [out.get(timeout=600) for _ in procs]
    elapsed = time.perf_counter() - started
    for proc in procs:
        proc.join(timeout=30)
    latencies = [lat for got, _ in results for lat in got]
    return {
        "stage": name,
        "shape": "processes",
        "concurrency": processes,
        "ops": len(items),
        "seconds": round(elapsed, 3),
        "ops_per_s": round(len(items) / elapsed),
        "errors": len(items) - len(latencies),
        "client_cpu_us_per_op": round(sum(cpu for _, cpu in results) / len(items) * 1e6, 1),
        **percentiles(latencies),
    }


def fill_outbox(url: str, rows: int, n_sites: int) -> None:
    """`rows` ready site.changed rows, spread over `n_sites` sites, in an emptied outbox."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("TRUNCATE outbox")
        conn.execute(
            "INSERT INTO outbox (topic, payload) SELECT 'site.changed',"
            " jsonb_build_object('site',"
            "   'site' || lpad((g %% %s)::text, 4, '0') || '.freecode.camp')"
            " FROM generate_series(1, %s) g",
            [n_sites, rows],
        )


class Bench:
    def __init__(self, admin_url: str, workers: int, n_sites: int, n_deploys: int) -> None:
        self.admin_url, self.workers = admin_url, workers
        self.n_sites, self.n_deploys = n_sites, n_deploys
        self.dirs: list[Dirname] = [Dirname(f"site{i:04d}.freecode.camp") for i in range(n_sites)]

    def database(self) -> str:
        url = create_database(self.admin_url, "artemis_bench")
        migrate(url)
        return url

    def drop(self, url: str) -> None:
        drop_database(self.admin_url, url)

    def runtime(self, url: str, **env: str) -> Runtime:
        settings = load_settings(
            {
                "JWT_SIGNING_KEY": "b" * 40,
                "DATABASE_URL": url,
                "DEPLOY_PREFIX_FORMAT": "<site>.freecode.camp/deploys/<ts>-<sha>/",
                "ALIAS_PRODUCTION_KEY_FORMAT": "<site>.freecode.camp/production",
                "ALIAS_PREVIEW_KEY_FORMAT": "<site>.freecode.camp/preview",
                **env,
            }
        )
        rt = Runtime(settings)
        rt.__dict__["db"] = Database(url, max_size=self.workers)
        return rt

    def rows(self) -> list[tuple[Dirname, str, datetime]]:
        start = datetime.now(UTC) - timedelta(days=90)
        return [
            (site, f"d{j:05d}", start + timedelta(hours=j))
            for site in self.dirs
            for j in range(self.n_deploys)
        ]

    def register(self, url: str) -> dict[str, Any]:
        slugs = [Slug(f"site{i:04d}") for i in range(self.n_sites)]
        return timed_parallel(
            "register",
            slugs,
            lambda c, s: sites.insert(c, s, ["staff"], "bench"),
            url,
            self.workers,
        )

    def deploy_upsert(self, url: str) -> dict[str, Any]:
        return timed_parallel(
            "deploy_upsert",
            self.rows(),
            lambda c, r: deploys.upsert_backfilled(c, r[0], r[1], r[2], True, MIB),
            url,
            self.workers,
        )

    def outbox_enqueue(self, url: str) -> dict[str, Any]:
        return timed_parallel(
            "outbox_enqueue", self.dirs, outbox.enqueue_site_changed, url, self.workers
        )

    def relay_drain(
        self, url: str, publisher: Any, name: str, rows: int, relays: int = 1
    ) -> dict[str, Any]:
        """Back-to-back passes of 100 until the outbox is empty, by `relays` concurrent drains
        (the relay function runs with reserved concurrency 1-2; SKIP LOCKED keeps them apart)."""
        fill_outbox(url, rows, self.n_sites)
        rt = self.runtime(url)
        started = time.perf_counter()
        with ThreadPoolExecutor(relays) as pool:
            results = list(pool.map(
                lambda _: drain(rt, publisher, deadline=Deadline.after(600), limit=100),
                range(relays),
            ))  # fmt: skip
        elapsed = time.perf_counter() - started
        published = sum(r.published for r in results)
        assert published == rows, results
        return {
            "stage": name,
            "ops": rows,
            "seconds": round(elapsed, 3),
            "ops_per_s": round(rows / elapsed),
            "relays": relays,
            "passes": sum(r.passes for r in results),
            "errors": sum(r.failed for r in results),
        }

    POLICY = Policy(
        keep_n=10,
        grace=timedelta(hours=24),
        retention=timedelta(days=30),
        serve_cache_ttl=timedelta(hours=1),
        cap=1000,
    )

    PLAN_PASSES = 5  # timed passes over the fleet: 500 sites alone plan in under 0.1 s

    def gc_plan_dryrun_fleet(self, url: str) -> dict[str, Any]:
        """The same plans through the fleet planner (`artemis-admin gcreport`): many sites per
        read round trip, one thread. One untimed pass first opens the connection, as an
        operator's command has before its first plan."""
        rt = self.runtime(url)
        now = datetime.now(UTC)
        plans = dict(plan_fleet(rt, self.dirs, now, self.POLICY))
        assert len(plans) == len(self.dirs) and all(p.planned for p in plans.values())
        started, cpu = time.perf_counter(), time.process_time()
        for _ in range(self.PLAN_PASSES):
            for _site, _plan in plan_fleet(rt, self.dirs, now, self.POLICY):
                pass
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        rt.db.close()
        ops = len(self.dirs) * self.PLAN_PASSES
        return {
            "stage": "gc_plan_dryrun_fleet",
            "client_cpu_us_per_op": round(cpu / ops * 1e6, 1),
            "ops": ops,
            "seconds": round(elapsed, 3),
            "ops_per_s": round(ops / elapsed),
            "errors": 0,
        }

    def gc_plan_dryrun(self, url: str) -> dict[str, Any]:
        """Each site planned as the site worker plans it, on `workers` threads. One untimed
        pass first opens the pool's connections, as warm Lambda environments hold theirs."""
        rt = self.runtime(url)
        policy = self.POLICY
        now = datetime.now(UTC)
        latencies: list[float] = []
        guard = threading.Lock()

        def one(site: Dirname) -> None:
            began = time.perf_counter()
            plan = plan_for(rt, site, now, policy)
            assert plan.planned  # 40 hourly deploys from 90 days ago: most are collectable
            with guard:
                latencies.append((time.perf_counter() - began) * 1e6)

        with ThreadPoolExecutor(self.workers) as pool:
            list(pool.map(one, self.dirs))
            latencies.clear()
            started, cpu = time.perf_counter(), time.process_time()
            for _ in range(self.PLAN_PASSES):
                list(pool.map(one, self.dirs))
            elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        rt.db.close()
        ops = len(self.dirs) * self.PLAN_PASSES
        return {
            "stage": "gc_plan_dryrun",
            # this process's CPU (the reads' client side and the pure plan) per site
            "client_cpu_us_per_op": round(cpu / ops * 1e6, 1),
            "ops": ops,
            "seconds": round(elapsed, 3),
            "ops_per_s": round(ops / elapsed),
            "errors": 0,
            **percentiles(latencies),
        }


def sqs_stages(bench: Bench, url: str, localstack: str, rows: int) -> list[dict[str, Any]]:
    import boto3

    client = boto3.client(
        "sqs",
        endpoint_url=localstack,
        region_name="us-east-1",
        aws_access_key_id="bench",
        aws_secret_access_key="bench",  # noqa: S106 - LocalStack accepts any credentials
    )
    queue = client.create_queue(
        QueueName=f"bench-{uuid.uuid4().hex[:8]}.fifo", Attributes={"FifoQueue": "true"}
    )["QueueUrl"]
    try:
        raw_n = 2000
        started = time.perf_counter()
        for start in range(0, raw_n, 10):
            client.send_message_batch(
                QueueUrl=queue,
                Entries=[
                    {
                        "Id": str(i),
                        "MessageBody": "{}",
                        "MessageGroupId": f"g{(start + i) % 50}",
                        "MessageDeduplicationId": f"raw-{start + i}",
                    }
                    for i in range(10)
                ],
            )
        raw = raw_n / (time.perf_counter() - started)
        drained = bench.relay_drain(
            url, SqsPublisher(client, queue), "relay_drain_sqs_localstack", rows
        )
        drained["raw_send_message_batch_per_s"] = round(raw)
        return [drained]
    finally:
        client.delete_queue(QueueUrl=queue)


FLOOR_OPS = 5000  # pgbench transactions per floor of a small stage (a steadier rate)


def with_floor(result: dict[str, Any], found: floors.Floor) -> dict[str, Any]:
    result["floor_ops_per_s"] = found.ops_per_s
    if found.ops_per_s:
        result["vs_floor"] = round(result["ops_per_s"] / found.ops_per_s, 2)
    if found.note:
        result["floor_note"] = found.note
    return result


def write_stages(bench: Bench, args: argparse.Namespace) -> list[dict[str, Any]]:
    """register, deploy_upsert, outbox_enqueue in both shapes, each in a fresh database and
    each beside its pgbench floor at the same concurrency (run after it, on its rows)."""
    results: list[dict[str, Any]] = []
    shapes = (("threads", args.workers), ("processes", args.processes))
    for shape, concurrency in shapes:
        url = bench.database()
        try:
            slugs = [Slug(f"{shape[0]}site{i:04d}") for i in range(bench.n_sites)]
            rows = bench.rows()
            stages: list[tuple[str, Sequence[Any], str, int]] = [
                ("register", slugs, floors.REGISTER, FLOOR_OPS),
                ("deploy_upsert", rows, floors.DEPLOY_UPSERT, len(rows)),
                ("outbox_enqueue", bench.dirs, floors.OUTBOX_ENQUEUE, FLOOR_OPS),
            ]
            for name, items, script, floor_ops in stages:
                if shape == "threads":
                    got = timed_parallel(name, items, WORKS[name], url, concurrency)
                    got.update(shape="threads", concurrency=concurrency)
                else:
                    got = timed_processes(name, items, name, url, concurrency)
                found = floors.floor(url, script, transactions=floor_ops, clients=concurrency)
                results.append(with_floor(got, found))
        finally:
            bench.drop(url)
    return results


STAGE_GROUPS = ("write", "relay", "plan")


def run_stages(
    bench: Bench, url: str, args: argparse.Namespace
) -> tuple[list[dict[str, Any]], float]:
    """The chosen stage groups in order; returns the results and the bytes per deploy row."""
    groups = set(args.stages)
    results: list[dict[str, Any]] = write_stages(bench, args) if "write" in groups else []
    rows = args.sites * args.deploys
    try:
        # The read stages' rows: deploy_upsert's, in this database.
        timed_parallel("load", bench.rows(), WORKS["deploy_upsert"], url, args.workers)
        for relays in (1, 2) if "relay" in groups else ():
            name = "relay_drain" if relays == 1 else "relay_drain_2_relays"
            got = bench.relay_drain(url, StubPublisher(), name, rows, relays=relays)
            got.update(shape="threads", concurrency=relays)
            fill_outbox(url, rows, args.sites)
            found = floors.floor(url, floors.CLAIM_AND_MARK, transactions=rows // 100,
                                 clients=relays, per_tx=100,
                                 options=floors.RELAY_OPTIONS)  # fmt: skip
            results.append(with_floor(got, found))
        if "plan" in groups:
            results.extend(plan_stages(bench, url, args))
        if args.localstack and "relay" in groups:
            results.extend(sqs_stages(bench, url, args.localstack, 5000))
        with psycopg.connect(url) as conn:
            size = conn.execute(
                "SELECT pg_total_relation_size('deploys'), count(*) FROM deploys"
            ).fetchone()
    finally:
        bench.drop(url)
    assert size is not None
    return results, size[0] / max(1, size[1])


def plan_stages(bench: Bench, url: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    """gc_plan_dryrun per site (threads, and processes: the site worker's Lambdas) and
    fleet-wide (one process), each beside the plan-read floor at its concurrency."""
    planned = bench.gc_plan_dryrun(url)
    planned.update(shape="threads", concurrency=args.workers)
    processes = timed_processes("gc_plan_dryrun", bench.dirs * bench.PLAN_PASSES,
                                "gc_plan_dryrun", url, args.processes)  # fmt: skip
    fleet = bench.gc_plan_dryrun_fleet(url)
    fleet.update(shape="one process", concurrency=1)
    return [
        with_floor(planned, floors.floor(
            url, floors.PLAN_READ, transactions=FLOOR_OPS, clients=args.workers)),
        with_floor(processes, floors.floor(
            url, floors.PLAN_READ, transactions=FLOOR_OPS, clients=args.processes)),
        with_floor(fleet, floors.floor(
            url, floors.PLAN_READ_FLEET, transactions=FLOOR_OPS // floors.FLEET_SITES * 4,
            clients=1, per_tx=floors.FLEET_SITES)),
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workers", type=int, default=16, help="threads (the threads shape)")
    parser.add_argument("--processes", type=int, default=4,
                        help="processes (the processes shape: Lambda environments)")  # fmt: skip
    parser.add_argument("--sites", type=int, default=500)
    parser.add_argument("--deploys", type=int, default=40)
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--localstack", default=None, help="LocalStack URL for the SQS relay stage")
    parser.add_argument("--stages", nargs="+", choices=STAGE_GROUPS, default=list(STAGE_GROUPS),
                        help="stage groups to run (default: all)")  # fmt: skip
    args = parser.parse_args()
    quiet_logs()
    bench = Bench(args.pg, args.workers, args.sites, args.deploys)
    url = bench.database()
    # Logs and metrics (EMF) print to stdout, Lambda style; stdout carries only the JSON result.
    with contextlib.redirect_stdout(sys.stderr):
        results, row_bytes = run_stages(bench, url, args)
    for r in results:
        ref = REFERENCE.get(r["stage"])
        if ref:
            r["reference_ops_per_s"] = ref
            r["vs_reference"] = round(r["ops_per_s"] / ref, 2)
    print(
        json.dumps(
            {
                "workers": args.workers,
                "processes": args.processes,
                "cpus": os.cpu_count(),
                "sites": args.sites,
                "deploys_per_site": args.deploys,
                "deploy_row_bytes": round(row_bytes, 1),
                "stages": results,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
