"""Black-box API tests: every request goes over HTTP to the local gateway, which runs the real
functions/api handler against real Postgres, moto S3 and the fake GitHub.

The system runs with a production-like key template, so slug and dirname differ everywhere
(`www` lives under `www.example.org/`); a handler that skips the conversion finds nothing.
"""

from __future__ import annotations

import http.client
import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest

from artemis import runtime
from artemis.runtime import Runtime
from artemis_local.fake_github import FakeGitHub
from artemis_local.runner import LocalSystem
from tests.conftest import SLUG_NOT_DIRNAME, base_env

STAFF = "local-staff-token"  # team staff: the registry, audit and (by registration) site team
DEV = "local-dev-token"  # team web
OUTSIDER = "local-outsider-token"  # no teams
UPLOAD_MAX_BYTES = 256 * 1024
BUCKET = "artemis-api-tests"


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    raw: bytes

    @property
    def body(self) -> Any:
        return json.loads(self.raw) if self.raw else None

    @property
    def code(self) -> str | None:
        body = self.body
        return body.get("error", {}).get("code") if isinstance(body, dict) else None


@dataclass
class Api:
    base: str
    system: LocalSystem
    database_url: str
    calls: list[tuple[str, str]] = field(default_factory=list)

    @property
    def github(self) -> FakeGitHub:
        assert self.system.github is not None
        return self.system.github

    @property
    def rt(self) -> Runtime:
        return runtime.current()

    def call(
        self, method: str, path: str, *, token: str | None = None, json_body: Any = None,
        body: bytes | None = None, headers: dict[str, str] | None = None,
    ) -> Reply:  # fmt: skip
        parts = urlsplit(self.base)
        conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=60)
        send = dict(headers or {})
        if token is not None:
            send.setdefault("Authorization", f"Bearer {token}")
        payload = body
        if json_body is not None:
            payload = json.dumps(json_body).encode()
            send.setdefault("Content-Type", "application/json")
        conn.request(method, path, body=payload, headers=send)
        resp = conn.getresponse()
        reply = Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
        conn.close()
        self.calls.append((method, path))
        return reply

    # --- conveniences for setting the scene (all through the API) -----------------------
    def register(self, slug: str, teams: list[str] | None = None) -> Reply:
        reply = self.call("POST", "/api/site/register", token=STAFF,
                          json_body={"slug": slug, **({"teams": teams} if teams else {})})  # fmt: skip
        assert reply.status == 201, reply.raw
        return reply

    def init(self, site: str, sha: str | None = None, token: str = DEV) -> dict[str, Any]:
        # A fresh sha by default: deploy ids embed it, and the append-only audit log outlives
        # tests, so two tests must never mint the same id in the same second.
        sha = sha or uuid.uuid4().hex[:7]
        reply = self.call(
            "POST", "/api/deploy/init", token=token, json_body={"site": site, "sha": sha}
        )
        assert reply.status == 200, reply.raw
        body: dict[str, Any] = reply.body
        return body

    def upload(
        self, session: dict[str, Any], path: str, data: bytes, content_type: str = "text/html"
    ) -> Reply:
        from urllib.parse import quote

        return self.call(
            "PUT", f"/api/deploy/{session['deployId']}/upload?path={quote(path, safe='')}",
            token=session["jwt"], body=data, headers={"Content-Type": content_type},
        )  # fmt: skip

    def finalize(self, session: dict[str, Any], files: list[str], mode: str = "preview") -> Reply:
        return self.call("POST", f"/api/deploy/{session['deployId']}/finalize", token=session["jwt"],
                         json_body={"mode": mode, "files": files})  # fmt: skip

    def deploy(
        self,
        site: str,
        sha: str | None = None,
        mode: str = "preview",
        files: dict[str, bytes] | None = None,
    ) -> str:
        """A complete deploy through the API; returns its id."""
        files = files or {"index.html": b"<h1>hello</h1>", "app.js": b"console.log(1)"}
        session = self.init(site, sha)
        for path, data in files.items():
            assert self.upload(session, path, data).status == 200
        reply = self.finalize(session, list(files), mode)
        assert reply.status == 200, reply.raw
        deploy_id: str = session["deployId"]
        return deploy_id

    def alias_object(self, dirname: str, name: str) -> str | None:
        return self.rt.bucket.get_alias(f"{dirname}/{name}")

    def sql(self, statement: str, params: Any = None) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            cur = conn.execute(statement.encode(), params)
            return cur.fetchall() if cur.description else []


@contextmanager
def local_api_system(state_dir: Path, env: dict[str, str]) -> Iterator[LocalSystem]:
    """A LocalSystem serving the API on a free port with the fake GitHub and no background
    workers (the tests assert exact outbox and index state); stopping it restores the process
    environment."""
    env = {k: v for k, v in env.items() if k != "GH_API_BASE"}
    system = LocalSystem(state_dir=state_dir, base_env=env, port=0, workers=False).start()
    try:
        yield system
    finally:
        system.stop()


@pytest.fixture(scope="package")  # torn down (environment restored) when the API tests end
def api_system(
    tmp_path_factory: pytest.TempPathFactory, migrated_database_url: str, moto_url: str
) -> Iterator[LocalSystem]:
    env = base_env(
        DATABASE_URL=migrated_database_url,
        AWS_ENDPOINT_URL=moto_url,
        BUCKET_NAME=BUCKET,
        UPLOAD_MAX_BYTES=str(UPLOAD_MAX_BYTES),
        **SLUG_NOT_DIRNAME,
    )
    with local_api_system(Path(tmp_path_factory.mktemp("api")), env) as system:
        yield system


@pytest.fixture
def api(api_system: LocalSystem, database_url: str) -> Iterator[Api]:
    """A clean slate per test: empty tables (by `database_url`), an empty bucket, fresh caches."""
    runtime.reset()
    bucket = runtime.current().bucket
    keys = _all_keys(bucket)
    for start in range(0, len(keys), 1000):
        bucket.client.delete_objects(
            Bucket=bucket.name, Delete={"Objects": [{"Key": k} for k in keys[start : start + 1000]]}
        )
    assert api_system.gateway is not None and api_system.github is not None
    api_system.github.clear_faults()
    yield Api(api_system.gateway.url, api_system, database_url)
    runtime.reset()


def _all_keys(bucket: Any) -> list[str]:
    paginator = bucket.client.get_paginator("list_objects_v2")
    return [
        o["Key"]
        for page in paginator.paginate(Bucket=bucket.name)
        for o in page.get("Contents", [])
    ]


@pytest.fixture
def short_lock_wait(monkeypatch: pytest.MonkeyPatch) -> float:
    """Routes wait up to 30 s for a held site lock; shorten the wait to 1 s for the in-process
    handler. The lock and the contention stay real: only the wait is shorter."""
    from artemis.db import lock

    monkeypatch.setattr(lock, "LOCK_TIMEOUT_SECONDS", 1.0)
    return 1.0
