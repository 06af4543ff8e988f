"""A person's first step: `make run` on a machine with nothing set up. The whole system comes
up on embedded defaults, answers health and readiness, and Ctrl-C stops every process."""

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from artemis.github_app import GitHubApp, load_private_key
from tests.conftest import REPO_ROOT, free_port
from tests.integration.hook_receiver import receiving

ADMIN = REPO_ROOT / ".venv" / "bin" / "artemis-admin"
ORG = "freeCodeCamp-Universe"  # make run's GH_REPO_ORG, where the dev App is installed


def get(url: str) -> tuple[int, dict[str, object]]:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return resp.status, json.loads(resp.read())


def send(url: str, body: dict[str, object], headers: dict[str, str]) -> dict[str, Any]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers,
                                     method="POST")  # fmt: skip
    with urllib.request.urlopen(request, timeout=30) as resp:
        answer: dict[str, Any] = json.loads(resp.read())
        return answer


def processes_mentioning(text: str) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (
                    (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                )
            except OSError:
                continue
            if text in cmdline:
                pids.append(int(proc.name))
    return pids


@pytest.fixture
def state_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="artemis-e2e-"))
    path.chmod(0o755)  # the embedded Postgres runs as its own OS user when we are root
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_run_comes_up_on_embedded_defaults_and_sigint_stops_everything(state_dir: Path) -> None:
    port = free_port()
    proc = start_run(state_dir, port, "run.log", within=60)
    base = f"http://127.0.0.1:{port}"
    try:
        status, body = get(base + "/readyz")
        assert status == 200 and body["ready"] is True and "degraded" not in body
        assert processes_mentioning(str(state_dir / "pg")), "embedded Postgres should be running"
        # The repo-request feature is on against the fake GitHub's App: request and approve.
        staff = {"Authorization": "Bearer local-staff-token", "Content-Type": "application/json"}
        created = send(base + "/api/repo", {"name": "hello-world", "template": "site-template"},
                       staff)  # fmt: skip
        assert created["status"] == "pending"
        approved = send(base + f"/api/repo/{created['id']}/approve", {}, staff)
        assert approved["outcome"] == "ok" and approved["request"]["status"] == "active"
        deploy_is_announced(base, port, state_dir)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            pytest.fail(
                "SIGINT did not stop the system within 30 s:\n"
                + (state_dir / "run.log").read_text()
            )
    log = (state_dir / "run.log").read_text()
    assert code == 0, log
    assert "local-staff-token" in log and "local-dev-token" in log and "local-outsider-token" in log
    assert "repo requests on" in log
    assert re.search(r"API on http://127\.0\.0\.1:\d+", log)
    assert processes_mentioning(str(state_dir)) == []  # no postgres, no server left behind
    with pytest.raises(urllib.error.URLError):
        get(base + "/healthz")


def deploy_is_announced(base: str, port: int, state_dir: Path) -> None:
    """`make run`'s workers deliver a finalize to a webhook within seconds, and the fake
    GitHub shows the deploy as a deployment of its repository with the site's URL (the dev
    App is installed on the org that holds the repository approved above)."""
    staff = {"Authorization": "Bearer local-staff-token", "Content-Type": "application/json"}
    send(base + "/api/site/register", {"slug": "hello"}, staff)
    with receiving() as receiver:
        send(base + "/api/site/hello/hooks",
             {"url": receiver.url, "events": ["deploy.finalized"]}, staff)  # fmt: skip
        sha = "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678"
        session = send(base + "/api/deploy/init",
                       {"site": "hello", "sha": sha, "repo": f"{ORG}/hello-world"}, staff)  # fmt: skip
        jwt = {"Authorization": f"Bearer {session['jwt']}"}
        prefix = f"{base}/api/deploy/{session['deployId']}"
        call("PUT", f"{prefix}/upload?path=index.html", b"<h1>hello</h1>",
             {**jwt, "Content-Type": "text/html"})  # fmt: skip
        call("POST", f"{prefix}/finalize",
             json.dumps({"mode": "production", "files": ["index.html"]}).encode(),
             {**jwt, "Content-Type": "application/json"})  # fmt: skip
        [got] = receiver.wait_for(1, timeout=10)
    event = json.loads(got.body)
    assert (event["type"], event["data"]["deployId"]) == ("deploy.finalized", session["deployId"])
    log = (state_dir / "run.log").read_text()
    found = re.search(r"GitHub at (http://127\.0\.0\.1:\d+)", log)
    assert found, log
    github = found.group(1)
    key = load_private_key((state_dir / "github-app-key.pem").read_text())
    token = GitHubApp(github, "1", "1", key, ORG).installation_token()
    auth = {"Authorization": f"token {token}"}
    deadline = time.monotonic() + 15
    while True:
        made = fetch(f"{github}/repos/{ORG}/hello-world/deployments?environment=production", auth)
        statuses = fetch(f"{github}/repos/{ORG}/hello-world/deployments/{made[0]['id']}/statuses",
                         auth) if made else []  # fmt: skip
        if statuses:
            break
        assert time.monotonic() < deadline, "no GitHub deployment status in 15 s"
        time.sleep(0.25)
    assert made[0]["sha"] == sha and statuses[0]["state"] == "success"
    assert statuses[0]["environment_url"] == f"http://hello.localhost:{port}"


def fetch(url: str, headers: dict[str, str]) -> list[dict[str, Any]]:
    request = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(request, timeout=10) as resp:
        answer: list[dict[str, Any]] = json.loads(resp.read())
        return answer


def call(method: str, url: str, body: bytes, headers: dict[str, str]) -> dict[str, Any]:
    request = urllib.request.Request(url, data=body, headers=headers, method=method)
    with urllib.request.urlopen(request, timeout=30) as resp:
        answer: dict[str, Any] = json.loads(resp.read())
        return answer


def start_run(
    state_dir: Path, port: int, log_name: str, *, within: float = 90
) -> subprocess.Popen[bytes]:
    """`artemis-admin run` on embedded defaults (none of the outside stores this shell may
    name), healthy within `within` seconds."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k
        not in ("DATABASE_URL", "AWS_ENDPOINT_URL", "GH_API_BASE", "JWT_SIGNING_KEY", "REDIS_URL")
        and not k.startswith("AWS_")
    }
    env["ARTEMIS_STATE_DIR"] = str(state_dir)
    out = (state_dir / log_name).open("w")
    proc = subprocess.Popen([str(ADMIN), "run", "--port", str(port)], env=env, stdout=out,
                            stderr=subprocess.STDOUT, cwd=REPO_ROOT)  # fmt: skip
    out.close()  # the child has its own copy
    deadline = time.monotonic() + within
    while True:
        try:
            assert get(f"http://127.0.0.1:{port}/healthz") == (200, {"ok": True})
            return proc
        except (urllib.error.URLError, ConnectionError):
            assert proc.poll() is None, (state_dir / log_name).read_text()
            assert time.monotonic() < deadline, f"not healthy within {within} s"
            time.sleep(0.25)


def stop_run(proc: subprocess.Popen[bytes]) -> int:
    proc.send_signal(signal.SIGINT)
    try:
        return proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        pytest.fail("SIGINT did not stop the system within 30 s")


def page(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def test_a_killed_run_restarts_with_its_sites_and_stops_everything(state_dir: Path) -> None:
    """kill -9 of `make run`, then `make run` again: the deployed site is still served (the
    bucket and the index both survived), and the next stop leaves no process behind."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = start_run(state_dir, port, "first.log")
    try:
        staff = {"Authorization": "Bearer local-staff-token", "Content-Type": "application/json"}
        dev = {"Authorization": "Bearer local-dev-token", "Content-Type": "application/json"}
        send(base + "/api/site/register", {"slug": "hello", "teams": ["web"]}, staff)
        session = send(base + "/api/deploy/init", {"site": "hello", "sha": "abc1234"}, dev)
        deploy = f"{base}/api/deploy/{session['deployId']}"
        jwt = {"Authorization": f"Bearer {session['jwt']}", "Content-Type": "text/html"}
        call("PUT", deploy + "/upload?path=index.html", b"<h1>kept</h1>", jwt)
        send(deploy + "/finalize", {"mode": "production", "files": ["index.html"]},
             {**jwt, "Content-Type": "application/json"})  # fmt: skip
        assert page(base + "/_serve/hello/production/") == (200, b"<h1>kept</h1>")
    finally:
        proc.kill()  # kill -9: nothing of ours runs on the way out
        proc.wait()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = start_run(state_dir, port, "second.log")
    try:
        assert page(base + "/_serve/hello/production/") == (200, b"<h1>kept</h1>")
        reader = {"Authorization": "Bearer local-dev-token"}
        request = urllib.request.Request(base + "/api/site/hello/alias/production", headers=reader)
        with urllib.request.urlopen(request, timeout=10) as resp:
            assert json.loads(resp.read())["deployId"] == session["deployId"]
    finally:
        code = stop_run(proc)
    log = (state_dir / "second.log").read_text()
    assert code == 0, log
    assert "survive a restart" in log
    assert processes_mentioning(str(state_dir)) == []  # the first run's Postgres included
