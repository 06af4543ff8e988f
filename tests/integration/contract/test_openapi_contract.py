"""The OpenAPI document is the contract: schemathesis generates requests from it (valid and
invalid ones, every check, stateful sequences through the document's links) against the local
system, and any 5xx, undeclared status, or answer outside its declared schema fails.

The run is bounded (a fixed seed, at most `max-examples` cases per operation, see
schemathesis.toml) so it costs CI a few minutes at most. The system serves every route: the
repo-request routes too, with the fake GitHub's App. GitHub routes carry the local staff token
(registry, audit, repo create and approve, and a team of the site `www`); the deploy-session
routes carry the token of a session opened here, so most requests get past authentication to
the checks behind it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from artemis import runtime
from artemis_local.fake_github import FakeApp
from tests.conftest import SLUG_NOT_DIRNAME, base_env
from tests.integration.api.conftest import STAFF, Api, local_api_system

CONFIG = Path(__file__).with_name("schemathesis.toml")
HOOKS = Path(__file__).with_name("schemathesis_hooks.py")  # the bundle route's tar bodies
ORG = "freeCodeCamp-Universe"


@pytest.fixture(scope="module")
def contract_api(
    tmp_path_factory: pytest.TempPathFactory, migrated_database_url: str, moto_url: str,
    database_url: str,
) -> Iterator[Api]:  # fmt: skip
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM,
                            serialization.PrivateFormat.TraditionalOpenSSL,
                            serialization.NoEncryption()).decode()  # fmt: skip
    env = base_env(
        DATABASE_URL=migrated_database_url, AWS_ENDPOINT_URL=moto_url, BUCKET_NAME="contract",
        GH_APP_ID="4242", GH_APP_INSTALLATION_ID="77", GH_APP_PRIVATE_KEY=pem,
        REPO_APPROVE_AUTHZ_TEAM="staff", GH_REPO_ORG=ORG, **SLUG_NOT_DIRNAME,
    )  # fmt: skip
    with local_api_system(Path(tmp_path_factory.mktemp("contract")), env) as system:
        runtime.reset()
        assert system.github is not None and system.gateway is not None
        public = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        system.github.app = FakeApp("4242", "77", public.decode(), ORG)
        yield Api(system.gateway.url, system, database_url)
        runtime.reset()


@pytest.fixture(scope="module")
def database_url(migrated_database_url: str) -> str:
    """The session's database, emptied once for this module's system (the run is one test)."""
    import psycopg

    from tests.conftest import TRUNCATE

    with psycopg.connect(migrated_database_url, autocommit=True) as conn:
        conn.execute(TRUNCATE)
    return migrated_database_url


def _schemathesis() -> str:
    exe = Path(sys.executable).with_name("schemathesis")
    found = str(exe) if exe.exists() else shutil.which("schemathesis")
    assert found, "schemathesis is not installed: pip install -e '.[dev]'"
    return found


def test_schemathesis_finds_no_contract_violation(contract_api: Api, tmp_path: Path) -> None:
    api = contract_api
    api.register("www", ["web", "staff"])
    api.register("scratch", ["staff"])  # the registry routes' slug: fuzzing may delete it
    api.deploy("www", mode="production")  # a live site for the alias and deploy routes
    session = api.init("www", token=STAFF)
    env = {
        **os.environ,
        "ARTEMIS_FUZZ_TOKEN": STAFF,
        "ARTEMIS_FUZZ_SESSION": session["jwt"],
        "ARTEMIS_FUZZ_DEPLOY": session["deployId"],
        "SCHEMATHESIS_HOOKS": str(HOOKS),
        "NO_COLOR": "1",
    }
    argv = [
        _schemathesis(), "--config-file", str(CONFIG), "run",
        f"{api.base}/api/openapi.json", "--url", api.base,
        "--report", "junit", "--report-dir", str(tmp_path),
    ]  # fmt: skip
    done = subprocess.run(  # our own venv's executable, fixed arguments
        argv, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False
    )
    output = done.stdout + done.stderr
    (tmp_path / "schemathesis.txt").write_text(output)
    assert done.returncode == 0, output[-20000:]
