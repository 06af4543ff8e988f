"""`make bench-notify`: finalize → webhook received, on the local stack, over N deploys.
Prints JSON: the latency from a finalize's answer to the receiver getting its
`deploy.finalized` (and from the finalize's request), p50, p99 and max, in seconds.

    .venv/bin/python bench/notify.py [--deploys 200] [--baseline 20] [--localstack URL]
        [--pg postgresql://...]

The stack is `make run`'s: the API behind the local gateway, the relay loop on its schedule
(every 5 s, unchanged), the notifier's pollers, moto (or LocalStack with `--localstack`) and
a fresh Postgres database. One site, one webhook to a receiver on 127.0.0.1; the deploys run
one after another (each: init, one upload, finalize to production) through the HTTP API, as
CI would. The receiver answers 200 at once.

In the same run, `--baseline` more deploys with the fast path off (`OUTBOX_FAST_PATH=false`):
the relay alone carries the events, on its schedule (every 5 s here, every minute on AWS).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from local_stack import local_system  # bench/local_stack.py, beside this script

STAFF, DEV = "local-staff-token", "local-dev-token"


class Arrivals:
    def __init__(self) -> None:
        self.at: dict[str, float] = {}
        self.lock = threading.Lock()
        self.event = threading.Condition(self.lock)

    def record(self, body: bytes) -> None:
        event = json.loads(body)
        if event.get("type") == "deploy.finalized":
            with self.lock:
                self.at.setdefault(event["data"]["deployId"], time.monotonic())
                self.event.notify_all()

    def wait(self, deploy_id: str, timeout: float) -> float | None:
        deadline = time.monotonic() + timeout
        with self.lock:
            while deploy_id not in self.at:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.event.wait(left)
            return self.at[deploy_id]


def receiver(arrivals: Arrivals) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            arrivals.record(self.rfile.read(int(self.headers.get("content-length") or 0)))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def call(base: str, method: str, path: str, token: str, body: bytes = b"",
         content_type: str = "application/json") -> Any:  # fmt: skip
    req = urllib.request.Request(base + path, data=body or None, method=method,  # noqa: S310 (the local gateway)
                                 headers={"Authorization": f"Bearer {token}",
                                          "Content-Type": content_type})  # fmt: skip
    with urllib.request.urlopen(req, timeout=60) as resp:  # noqa: S310 (the local gateway)
        return json.loads(resp.read() or b"{}")


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    cut = statistics.quantiles(ordered, n=100, method="inclusive")
    return {"p50": round(cut[49], 3), "p99": round(cut[98], 3), "max": round(ordered[-1], 3)}


def setup(base: str, hook_url: str) -> None:
    call(base, "POST", "/api/site/register", STAFF, b'{"slug":"bench","teams":["web"]}')
    call(base, "POST", "/api/site/bench/hooks", STAFF,
         json.dumps({"url": hook_url, "events": ["deploy.finalized"]}).encode())  # fmt: skip


def measure(base: str, deploys: int, arrivals: Arrivals, first: int = 0) -> dict[str, Any]:
    from_answer: list[float] = []
    from_request: list[float] = []
    missing = 0
    for n in range(first, first + deploys):
        sha = f"{n:07x}"
        session = call(base, "POST", "/api/deploy/init", DEV,
                       json.dumps({"site": "bench", "sha": sha}).encode())  # fmt: skip
        deploy_id, jwt = session["deployId"], session["jwt"]
        call(base, "PUT", f"/api/deploy/{deploy_id}/upload?path=index.html", jwt,
             b"<h1>bench</h1>", "text/html")  # fmt: skip
        sent = time.monotonic()
        call(base, "POST", f"/api/deploy/{deploy_id}/finalize", jwt,
             json.dumps({"mode": "production", "files": ["index.html"]}).encode())  # fmt: skip
        answered = time.monotonic()
        got = arrivals.wait(deploy_id, timeout=60)
        if got is None:
            missing += 1
            continue
        from_answer.append(got - answered)
        from_request.append(got - sent)
    return {
        "deploys": deploys,
        "delivered": len(from_answer),
        "missing": missing,
        "finalize_answer_to_received_s": percentiles(from_answer),
        "finalize_request_to_received_s": percentiles(from_request),
        "targets": {"p50_s": 2.0, "p99_s": 5.0},
        "met": percentiles(from_request)["p50"] <= 2.0 and percentiles(from_request)["p99"] <= 5.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--deploys", type=int, default=200)
    parser.add_argument("--baseline", type=int, default=20,
                        help="deploys with the fast path off (the relay alone)")  # fmt: skip
    parser.add_argument("--localstack", help="LocalStack's URL (default: moto, as make run)")
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()

    env = {"HOOK_ALLOW_LOOPBACK_HTTP": "true"}
    if args.localstack:
        # LocalStack's fixed test credentials
        env.update(AWS_ENDPOINT_URL=args.localstack, AWS_ACCESS_KEY_ID="test",
                   AWS_SECRET_ACCESS_KEY="test")  # noqa: S106  # fmt: skip
    arrivals = Arrivals()
    server = receiver(arrivals)
    try:
        with local_system(args.pg, "artemis_bench_notify", env) as system:
            assert system.gateway is not None
            hook_url = f"http://127.0.0.1:{server.server_address[1]}/hook"
            from artemis import runtime

            with contextlib.redirect_stdout(sys.stderr):
                setup(system.gateway.url, hook_url)
                report: dict[str, Any] = {
                    "fast_path": measure(system.gateway.url, args.deploys, arrivals)
                }
                if args.baseline:
                    os.environ["OUTBOX_FAST_PATH"] = "false"
                    runtime.reset()
                    report["relay_only"] = measure(system.gateway.url, args.baseline, arrivals,
                                                   first=args.deploys)  # fmt: skip
            report["sqs"] = "localstack" if args.localstack else "moto"
            report["cpus"] = os.cpu_count()
    finally:
        server.shutdown()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
