"""`artemis-admin invoke` runs a function's handler with a sample event and prints JSON."""

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO_ROOT, base_env

ADMIN = str(Path(sys.executable).with_name("artemis-admin"))


def run_admin(*args: str, env: dict[str, str], state_dir: Path) -> subprocess.CompletedProcess[str]:
    clean = {
        k: v for k, v in os.environ.items() if k not in base_env() and not k.startswith("AWS_")
    }
    full = {**clean, **env, "ARTEMIS_STATE_DIR": str(state_dir)}
    return subprocess.run(
        [ADMIN, *args], env=full, capture_output=True, text=True, timeout=60, cwd=REPO_ROOT
    )


def test_invoke_prints_the_handler_result(tmp_path: Path, database_url: str, moto_url: str) -> None:
    env = base_env(
        DATABASE_URL=database_url,
        AWS_ENDPOINT_URL=moto_url,
        AWS_REGION="us-east-1",
        AWS_ACCESS_KEY_ID="test",
        AWS_SECRET_ACCESS_KEY="test",
    )
    done = run_admin("invoke", "api", "events/api-healthz.json", env=env, state_dir=tmp_path)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["statusCode"] == 200 and json.loads(result["body"]) == {"ok": True}


def test_every_sample_event_names_an_existing_function() -> None:
    functions = {p.parent.name for p in (REPO_ROOT / "functions").glob("*/app.py")}
    for event in (REPO_ROOT / "events").glob("*.json"):
        assert event.name.split("-", 1)[0] in functions, event.name
        json.loads(event.read_text())


def test_invoke_unknown_function_is_a_clear_error(tmp_path: Path) -> None:
    done = run_admin(
        "invoke", "nope", "events/api-healthz.json", env=base_env(), state_dir=tmp_path
    )
    assert done.returncode == 2
    known = ", ".join(sorted(p.parent.name for p in (REPO_ROOT / "functions").glob("*/app.py")))
    assert "api" in known
    assert done.stderr.strip() == f"artemis-admin invoke: no function 'nope' (known: {known})"


def test_bad_configuration_is_one_line(tmp_path: Path) -> None:
    done = run_admin(
        "invoke",
        "api",
        "events/api-readyz.json",
        env=base_env(CLEANUP_GRACE="soon"),
        state_dir=tmp_path,
    )
    assert done.returncode == 2
    assert (
        done.stderr.strip()
        == "invalid configuration: CLEANUP_GRACE: must be a Go duration such as 45s, 72h or 1h30m"
    )


def test_run_refuses_bad_configuration_before_starting_anything(tmp_path: Path) -> None:
    done = run_admin("run", "--port", "1", env={"PORT": "99999"}, state_dir=tmp_path)
    assert done.returncode == 2
    assert (
        done.stderr.strip()
        == "invalid configuration: PORT: must be an integer between 1 and 65535 (got 99999)"
    )
    assert not (tmp_path / "pg").exists()


def test_run_a_job_now_against_the_configured_stores(
    tmp_path: Path, database_url: str, moto_url: str
) -> None:
    env = base_env(DATABASE_URL=database_url, AWS_ENDPOINT_URL=moto_url, AWS_REGION="us-east-1",
                   AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test")  # fmt: skip
    done = run_admin("run", "gc-site", "www.example.org", env=env, state_dir=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["site"] == "www.example.org"
    done = run_admin("run", "outbox-purge", env=env, state_dir=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"purged": 0}
    bad = run_admin("run", "nope", env=env, state_dir=tmp_path)
    assert bad.returncode == 2 and "unknown job 'nope'" in bad.stderr
