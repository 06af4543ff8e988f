"""`make bench-api`: user-facing latency under load. 32 concurrent clients, each on a site of
its own, run init → 20 uploads → finalize → promote over and over for 60 s through the local
gateway, as CI drives the API. Prints JSON: deploys per second and, per route, the count,
p50 and p99 in milliseconds and the errors (there must be none).

    .venv/bin/python bench/api_load.py [--clients 32] [--seconds 60] [--uploads 20]
        [--processes 4] [--pg postgresql://...]

The stack is `make run`'s (the API behind the local gateway in this process, the relay loop,
site-worker and notifier pollers, moto, a fresh Postgres database). The clients run in
`--processes` processes of their own (spawned, so none shares the server's interpreter),
`clients / processes` threads each, every thread with its own keep-alive connection.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import statistics
import threading
import time
import uuid
from typing import Any
from urllib.parse import quote, urlsplit

from local_stack import local_system  # bench/local_stack.py, beside this script

STAFF, DEV = "local-staff-token", "local-dev-token"  # the fake GitHub's identities
ROUTES = ("init", "upload", "finalize", "promote")


class Client:
    """One CI job: its own connection, its own site."""

    def __init__(self, base: str, site: str) -> None:
        parts = urlsplit(base)
        self.conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port,
                                               timeout=60)  # fmt: skip
        self.site = site
        self.samples: dict[str, list[float]] = {route: [] for route in ROUTES}
        self.errors: dict[str, int] = {route: 0 for route in ROUTES}
        self.deploys = 0

    def call(self, route: str, method: str, path: str, token: str, body: bytes,
             content_type: str = "application/json") -> Any:  # fmt: skip
        began = time.perf_counter()
        self.conn.request(method, path, body=body,
                          headers={"Authorization": f"Bearer {token}",
                                   "Content-Type": content_type})  # fmt: skip
        resp = self.conn.getresponse()
        data = resp.read()
        self.samples[route].append((time.perf_counter() - began) * 1000)
        if resp.status >= 400:
            self.errors[route] += 1
            return None
        return json.loads(data) if data else {}

    def deploy(self, uploads: int) -> None:
        sha = uuid.uuid4().hex[:7]
        session = self.call("init", "POST", "/api/deploy/init", DEV,
                            json.dumps({"site": self.site, "sha": sha}).encode())  # fmt: skip
        if session is None:
            return
        deploy_id, jwt = session["deployId"], session["jwt"]
        files = ["index.html"] + [f"assets/f{n}.css" for n in range(uploads - 1)]
        for name in files:
            self.call("upload", "PUT",
                      f"/api/deploy/{deploy_id}/upload?path={quote(name, safe='')}", jwt,
                      f"/* {name} {sha} */".encode(), "text/css")  # fmt: skip
        done = self.call("finalize", "POST", f"/api/deploy/{deploy_id}/finalize", jwt,
                         json.dumps({"mode": "preview", "files": files}).encode())  # fmt: skip
        if done is None:
            return
        self.call("promote", "POST", f"/api/site/{self.site}/promote", DEV,
                  json.dumps({"deployId": deploy_id}).encode())  # fmt: skip
        self.deploys += 1


def client_process(base: str, sites: list[str], seconds: float, uploads: int,
                   start_at: float) -> dict[str, Any]:  # fmt: skip
    """One load process: a thread per site until `seconds` after `start_at` (wall clock)."""
    clients = [Client(base, site) for site in sites]
    time.sleep(max(0.0, start_at - time.time()))
    stop = time.time() + seconds

    def loop(client: Client) -> None:
        while time.time() < stop:
            client.deploy(uploads)

    threads = [threading.Thread(target=loop, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {
        "samples": {r: [s for c in clients for s in c.samples[r]] for r in ROUTES},
        "errors": {r: sum(c.errors[r] for c in clients) for r in ROUTES},
        "deploys": sum(c.deploys for c in clients),
    }


def summary(values: list[float]) -> dict[str, float]:
    if len(values) < 2:
        return {"count": len(values)}
    cut = statistics.quantiles(values, n=100, method="inclusive")
    return {"count": len(values), "p50_ms": round(cut[49], 1), "p99_ms": round(cut[98], 1)}


def route_report(parts: list[dict[str, Any]], route: str) -> dict[str, Any]:
    samples = [s for p in parts for s in p["samples"][route]]
    return {**summary(samples), "errors": sum(p["errors"][route] for p in parts)}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--uploads", type=int, default=20)
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()

    # One process serves every client here, where AWS gives each concurrent request its own
    # environment and pool (DB_POOL_SIZE 4): the pool must hold what 32 requests hold at once
    # (a finalize or an upload holds its deploy's lock on one connection and works on another;
    # the site lock has a connection of its own), under Postgres's 100 connections.
    env = {"DB_POOL_SIZE": str(min(64, 2 * args.clients - args.clients // 2))}
    with local_system(args.pg, "artemis_bench_api", env) as system:
        assert system.gateway is not None
        base = system.gateway.url
        sites = [f"load{n:03d}" for n in range(args.clients)]
        staff = Client(base, "")
        for site in sites:
            body = json.dumps({"slug": site, "teams": ["web"]}).encode()
            staff.call("init", "POST", "/api/site/register", STAFF, body)
        start_at = time.time() + 3  # every process connected before the clock starts
        spawn = multiprocessing.get_context("spawn")
        with spawn.Pool(args.processes) as pool:
            parts = pool.starmap(client_process, [
                (base, sites[i :: args.processes], args.seconds, args.uploads, start_at)
                for i in range(args.processes)
            ])  # fmt: skip
    deploys = sum(p["deploys"] for p in parts)
    report = {
        "clients": args.clients,
        "seconds": args.seconds,
        "uploads_per_deploy": args.uploads,
        "deploys": deploys,
        "deploys_per_s": round(deploys / args.seconds, 2),
        "requests_per_s": round(
            sum(len(p["samples"][r]) for p in parts for r in ROUTES) / args.seconds, 1
        ),
        "routes": {r: route_report(parts, r) for r in ROUTES},
        "cpus": os.cpu_count(),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
