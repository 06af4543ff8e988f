"""Webhook isolation on LocalStack (issue 16): the local runtime with its workers (relay loop,
site-worker poller, notifier pollers) against LocalStack's SQS and real Postgres. A subscriber
that hangs, or answers 500, delays neither another subscriber of its own site, nor another
site's deliveries, nor its own site's GC run."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from artemis_local.runner import LocalSystem
from tests.conftest import base_env
from tests.integration.hook_receiver import Receiver, receiving


@pytest.fixture
def system(tmp_path: Path, localstack_url: str, database_url: str) -> Iterator[LocalSystem]:
    env = base_env(
        DATABASE_URL=database_url, AWS_ENDPOINT_URL=localstack_url, BUCKET_NAME="artemis-hooks",
        HOOK_ALLOW_LOOPBACK_HTTP="true",
    )  # fmt: skip
    started = LocalSystem(state_dir=tmp_path, base_env=env, port=0).start()
    try:
        yield started
    finally:
        started.stop()


def call(system: LocalSystem, method: str, path: str, token: str, body: bytes = b"",
         content_type: str = "application/json") -> Any:  # fmt: skip
    assert system.gateway is not None
    headers = {"Authorization": f"Bearer {token}", "Content-Type": content_type}
    req = urllib.request.Request(system.gateway.url + path, data=body or None, method=method,
                                 headers=headers)  # fmt: skip
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read() or b"{}")


def deploy(system: LocalSystem, site: str) -> tuple[str, float]:
    """A deploy to production; returns its id and when its finalize was answered."""
    session = call(system, "POST", "/api/deploy/init", "local-dev-token",
                   json.dumps({"site": site, "sha": "abc1234"}).encode())  # fmt: skip
    deploy_id, jwt = session["deployId"], session["jwt"]
    call(system, "PUT", f"/api/deploy/{deploy_id}/upload?path=index.html", jwt, b"<h1>x</h1>",
         "text/html")  # fmt: skip
    call(system, "POST", f"/api/deploy/{deploy_id}/finalize", jwt,
         json.dumps({"mode": "production", "files": ["index.html"]}).encode())  # fmt: skip
    return deploy_id, time.monotonic()


def hook(system: LocalSystem, site: str, url: str) -> None:
    body = json.dumps({"url": url, "events": ["deploy.finalized"]}).encode()
    call(system, "POST", f"/api/site/{site}/hooks", "local-staff-token", body)


def arrival(receiver: Receiver, deploy_id: str, timeout: float = 20.0) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for got in list(receiver.received):
            if json.loads(got.body)["data"]["deployId"] == deploy_id:
                return got.at
        time.sleep(0.05)
    raise AssertionError(f"{deploy_id} did not reach {receiver.url}")


def gc_ran(database_url: str, dirname: str, after: float, timeout: float = 30.0) -> float:
    """Seconds from `after` (a wall-clock time) to the first gc-site run of `dirname`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with psycopg.connect(database_url, autocommit=True) as conn:
            row = conn.execute(
                "SELECT extract(epoch FROM min(started_at)) FROM job_runs"
                " WHERE job = 'gc-site' AND site = %s AND extract(epoch FROM started_at) >= %s",
                [dirname, after],
            ).fetchone()
        if row and row[0] is not None:
            return float(row[0]) - after
        time.sleep(0.2)
    raise AssertionError(f"no gc-site run of {dirname}")


@pytest.mark.parametrize("dead", ["hangs", "answers_500"])
def test_a_dead_subscriber_delays_no_one(system: LocalSystem, database_url: str, dead: str) -> None:
    call(system, "POST", "/api/site/register", "local-staff-token",
         b'{"slug":"alpha","teams":["web"]}')  # fmt: skip
    call(system, "POST", "/api/site/register", "local-staff-token",
         b'{"slug":"beta","teams":["web"]}')  # fmt: skip
    statuses = [0] if dead == "hangs" else [500]
    with receiving(statuses, hang_seconds=30) as broken, receiving() as alpha_ok, \
            receiving() as beta_ok:  # fmt: skip
        hook(system, "alpha", broken.url)
        hook(system, "alpha", alpha_ok.url)
        hook(system, "beta", beta_ok.url)
        started = time.time()
        # A few deploys each, interleaved: the broken subscriber's deliveries pile up behind
        # its first (hanging for 10 s, or backing off), and must hold back nobody else's.
        timings: list[float] = []
        for _ in range(3):
            for site, receiver in (("alpha", alpha_ok), ("beta", beta_ok)):
                deploy_id, answered = deploy(system, site)
                timings.append(arrival(receiver, deploy_id) - answered)
        assert broken.received, "the broken subscriber was tried"
        assert max(timings) < 5.0, timings  # seconds from the finalize's answer to arrival
        # alpha's GC ran for its deploys, unaffected by alpha's broken subscriber
        assert gc_ran(database_url, "alpha", started) < 15.0
