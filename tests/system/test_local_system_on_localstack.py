"""The local runtime wired to LocalStack and real Postgres: resources created on start, and
the API answers readiness through the gateway."""

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from artemis_local.runner import LocalSystem
from tests.conftest import base_env


@pytest.fixture
def system(tmp_path: Path, localstack_url: str, database_url: str) -> Iterator[LocalSystem]:
    env = base_env(
        DATABASE_URL=database_url, AWS_ENDPOINT_URL=localstack_url, BUCKET_NAME="artemis-system"
    )
    started = LocalSystem(state_dir=tmp_path, base_env=env, port=0).start()
    try:
        yield started
    finally:
        started.stop()


def test_start_creates_the_fifo_queue_with_a_fifo_dlq(
    system: LocalSystem, localstack_url: str
) -> None:
    sqs = boto3.client("sqs", endpoint_url=localstack_url, region_name="us-east-1")
    attrs = sqs.get_queue_attributes(
        QueueUrl=system.env["SITE_EVENTS_QUEUE_URL"], AttributeNames=["All"]
    )["Attributes"]
    assert attrs["FifoQueue"] == "true"
    redrive = json.loads(attrs["RedrivePolicy"])
    dlq = sqs.get_queue_attributes(
        QueueUrl=system.env["SITE_EVENTS_DLQ_URL"], AttributeNames=["All"]
    )["Attributes"]
    assert redrive["deadLetterTargetArn"] == dlq["QueueArn"] and dlq["FifoQueue"] == "true"
    assert int(redrive["maxReceiveCount"]) == 5


def test_readyz_through_the_gateway(system: LocalSystem) -> None:
    assert system.gateway is not None
    with urllib.request.urlopen(system.gateway.url + "/readyz", timeout=20) as resp:
        body = json.loads(resp.read())
    assert body == {
        "ready": True,
        "checks": {"bucket": "ok", "postgres": "ok", "redis": "unconfigured"},
    }


def test_a_finalize_reaches_the_site_worker_through_the_local_workers(system: LocalSystem) -> None:
    """make run's wiring: the API's outbox row → the API's fast path (or the relay loop) →
    FIFO queue → poller →
    functions/site_worker → a gc-site run for that site, with nothing run by hand."""
    import time

    import psycopg

    assert system.gateway is not None
    base = system.gateway.url

    def call(
        method: str, path: str, token: str, body: bytes, content_type: str = "application/json"
    ) -> Any:
        headers = {"Authorization": f"Bearer {token}", "Content-Type": content_type}
        req = urllib.request.Request(base + path, data=body, method=method, headers=headers)
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read() or b"{}")

    call("POST", "/api/site/register", "local-staff-token", b'{"slug":"www","teams":["web"]}')
    session = call("POST", "/api/deploy/init", "local-dev-token", b'{"site":"www","sha":"abc1234"}')
    deploy_id, jwt = session["deployId"], session["jwt"]
    call("PUT", f"/api/deploy/{deploy_id}/upload?path=index.html", jwt, b"<h1>hi</h1>", "text/html")
    call(
        "POST",
        f"/api/deploy/{deploy_id}/finalize",
        jwt,
        b'{"mode":"production","files":["index.html"]}',
    )
    deadline = time.monotonic() + 60
    with psycopg.connect(system.env["DATABASE_URL"], autocommit=True) as conn:
        while True:
            runs = conn.execute(  # a finished run (one may still be running)
                "SELECT outcome FROM job_runs WHERE job = 'gc-site' AND site = 'www'"
                " AND outcome <> 'running'"
            ).fetchall()
            published = conn.execute(
                "SELECT count(*) FROM outbox WHERE published_at IS NOT NULL"
            ).fetchone()
            if runs:
                break
            assert time.monotonic() < deadline, (
                f"no gc-site run within 60 s (published rows: {published})"
            )
            time.sleep(0.5)
    assert runs[0][0] in ("succeeded", "skipped")
    assert published is not None and published[0] >= 1


def test_a_lying_presigned_upload_is_refused_by_s3_and_never_indexed(
    system: LocalSystem, database_url: str
) -> None:
    """Through the API on LocalStack: a client presigns a file with the digest of content the
    site already holds, then sends other bytes. S3 refuses them, so finalize finds the file
    missing, and no later deploy is ever offered the liar's bytes under that digest."""
    import hashlib

    import requests

    from tests.conftest import TRUNCATE
    from tests.integration.api.conftest import Api

    assert system.gateway is not None
    api = Api(system.gateway.url, system, database_url)
    api.sql(TRUNCATE)
    api.register("liar", ["web"])
    logo = b"<svg>the real logo</svg>"
    first = api.deploy("liar", files={"index.html": b"<h1>v1</h1>", "logo.svg": logo})
    s = api.init("liar")
    digest = hashlib.sha256(logo).hexdigest()
    reply = api.call(
        "POST", f"/api/deploy/{s['deployId']}/uploads", token=s["jwt"],
        json_body={"files": [{"path": "evil.svg", "size": 5, "sha256": digest}]},
    )  # fmt: skip
    assert reply.status == 200, reply.raw
    [post] = reply.body["uploads"]
    resp = requests.post(
        post["url"], data=post["fields"], files={"file": ("f", b"EVIL!")}, timeout=30
    )
    assert resp.status_code == 400, resp.text
    assert api.upload(s, "index.html", b"<h1>v2</h1>").status == 200
    reply = api.finalize(s, ["index.html", "evil.svg"])
    assert (reply.status, reply.code) == (422, "verify_failed")
    assert reply.body["error"]["missing"] == ["evil.svg"]
    # finalized without it, the deploy keeps no digest for a file the listing does not show
    assert api.finalize(s, ["index.html"]).status == 200
    rows = api.sql("SELECT path FROM deploy_files WHERE deploy_id = %s", [s["deployId"]])
    assert rows == [("index.html",)]
    later = api.init("liar")
    reply = api.call(
        "POST", f"/api/deploy/{later['deployId']}/digests", token=later["jwt"],
        json_body={"files": [{"path": "logo.svg", "size": len(logo), "sha256": digest}]},
    )  # fmt: skip
    assert reply.body["copied"] == ["logo.svg"]
    layout = api.rt.settings.key_layout
    copied = layout.deploy_prefix(layout.dirname("liar"), later["deployId"]) + "logo.svg"  # type: ignore[arg-type]
    assert api.rt.bucket.get(copied) == logo
    assert first != later["deployId"]
