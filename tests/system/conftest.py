"""The system tier runs against LocalStack on the host (S3, SQS, EventBridge) and real
Postgres. ARTEMIS_LOCALSTACK_URL points at a running LocalStack; otherwise one is started from
.venvs/localstack (created by `make test`) for the session and stopped by its process id."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT, free_port

LOCALSTACK_PYTHON = REPO_ROOT / ".venvs" / "localstack" / "bin" / "python"


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_localstack/health", timeout=2) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


@pytest.fixture(scope="session")
def localstack_url() -> Iterator[str]:
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "test")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "test")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    given = os.environ.get("ARTEMIS_LOCALSTACK_URL")
    if given:
        yield given
        return
    if not LOCALSTACK_PYTHON.exists():
        pytest.fail("LocalStack is not installed: run `make .venvs/localstack` (make test does)")
    port = free_port()
    state = Path(tempfile.mkdtemp(prefix="artemis-localstack-"))
    env = {
        **os.environ,
        "GATEWAY_LISTEN": f"127.0.0.1:{port}",
        "GATEWAY_SERVER": "hypercorn",  # the default server binds 0.0.0.0
        "DNS_ADDRESS": "0",
        "SERVICES": "s3,sqs,events",
        "PERSISTENCE": "0",
        "DISABLE_EVENTS": "1",
        "SKIP_SSL_CERT_DOWNLOAD": "1",
        "S3_SKIP_SIGNATURE_VALIDATION": "0",  # bad presigned signatures fail as on AWS
        "SQS_ENDPOINT_STRATEGY": "path",
        "FILESYSTEM_ROOT": str(state),
        "LOCALSTACK_VOLUME_DIR": str(state / "volume"),
    }
    log = (state / "localstack.log").open("wb")
    proc = subprocess.Popen(
        [str(LOCALSTACK_PYTHON), "-m", "localstack.runtime.main"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while not _healthy(url):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"LocalStack did not start; see {state / 'localstack.log'}")
        time.sleep(0.2)
    try:
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # one stop in five hangs (NOTES.md)
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        log.close()
        shutil.rmtree(state, ignore_errors=True)
