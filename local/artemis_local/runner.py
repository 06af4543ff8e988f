"""`make run`: the whole system on one machine, embedded defaults for whatever is not set.

Postgres: DATABASE_URL, else embedded (pgserver) in .artemis/pg; a server a killed run left
behind is stopped first. AWS: AWS_ENDPOINT_URL, else a moto server in a child process whose S3
writes are journaled to .artemis/s3-journal.jsonl and replayed at start, so the bucket survives
a restart (or a kill -9) as the embedded Postgres does. The bucket and the queues are
created with the template's names for the stack `artemis-local` (artemis_local.aws). GitHub:
GH_API_BASE, else the fake GitHub, which is then the OIDC issuer too (GH_OIDC_ISSUER, unless
set). Then the gateway serves functions/api/app.handler on
127.0.0.1:$PORT until SIGINT/SIGTERM, and everything started here is stopped on the way out.

Schedules (ARTEMIS_LOCAL_SCHEDULES = auto | eventbridge | clock; artemis_local.aws): against a
LocalStack serving EventBridge (auto-detected by its /_localstack/health) the template's rules
are created there with the ticks queue as their target, and the workers dispatch the delivered
events to the handlers; otherwise (moto) the wall-clock scheduler runs the nightly crons.
"""

from __future__ import annotations

import os
import secrets
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from artemis import runtime
from artemis.config import ConfigError, Settings, load_settings
from artemis.db.migrate import migrate
from artemis_local import serve as serve_plane
from artemis_local.aws import (
    REGION,
    MotoServer,
    ScheduleMode,
    ScheduleResources,
    ensure_resources,
    ensure_schedules,
    schedule_mode,
)
from artemis_local.fake_github import FakeGitHub
from artemis_local.functions import REPO_ROOT, load_handler
from artemis_local.gateway import Gateway
from artemis_local.pg import EmbeddedPostgres
from artemis_local.template import LOCAL_STACK_NAME

DEFAULT_STATE_DIR = Path(os.environ.get("ARTEMIS_STATE_DIR") or REPO_ROOT / ".artemis")
LOCAL_BUCKET = "artemis-local"
S3_JOURNAL = "s3-journal.jsonl"  # the embedded bucket's writes (artemis_local.moto_journal)
# Values that only stand in for what start() fills, so configuration is checked before
# anything starts.
_PLACEHOLDERS = {"DATABASE_URL": "postgresql://placeholder/artemis"}


def _signing_key(state_dir: Path) -> str:
    """A per-checkout random development key, kept out of the repository."""
    path = state_dir / "jwt-signing-key"
    if not path.exists():
        state_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_hex(32))
        path.chmod(0o600)
    return path.read_text().strip()


DEV_APP_ID = "1"
DEV_INSTALLATION_ID = "1"
DEV_TEMPLATE = "site-template"


def _dev_app_key(state_dir: Path) -> str:
    """A per-checkout development GitHub App key (RSA, PKCS#8 PEM), kept out of the repository."""
    path = state_dir / "github-app-key.pem"
    if not path.exists():
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        state_dir.mkdir(parents=True, exist_ok=True)
        path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))  # fmt: skip
        path.chmod(0o600)
    return path.read_text()


def _attach_dev_app(github: FakeGitHub, env: dict[str, str], state_dir: Path) -> None:
    """Turn the repo-request feature on against the fake GitHub: a generated App key whose
    public half the fake verifies, staff as creators and approvers, one template repo."""
    from cryptography.hazmat.primitives import serialization

    from artemis_local.fake_github import FakeApp

    pem = _dev_app_key(state_dir)
    public = serialization.load_pem_private_key(pem.encode(), None).public_key()
    public_pem = public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    org = env.get("GH_REPO_ORG") or "freeCodeCamp-Universe"
    github.app = FakeApp(DEV_APP_ID, DEV_INSTALLATION_ID, public_pem, org)
    github.app.add_template(DEV_TEMPLATE)
    env.update(GH_APP_ID=DEV_APP_ID, GH_APP_INSTALLATION_ID=DEV_INSTALLATION_ID,
               GH_APP_PRIVATE_KEY=pem, REPO_APPROVE_AUTHZ_TEAM="staff")  # fmt: skip


def local_defaults(state_dir: Path) -> dict[str, str]:
    return {
        "JWT_SIGNING_KEY": _signing_key(state_dir),
        "BUCKET_NAME": LOCAL_BUCKET,
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        "PUBLIC_URL_PRODUCTION_FORMAT": "http://<site>.localhost:{port}",
        "PUBLIC_URL_PREVIEW_FORMAT": "http://<site>.preview.localhost:{port}",
        "POWERTOOLS_METRICS_NAMESPACE": "Artemis",
        "POWERTOOLS_METRICS_DISABLED": "true",
        # Webhook receivers of a local stack listen on 127.0.0.1 over plain http.
        "HOOK_ALLOW_LOOPBACK_HTTP": "true",
        # One process serves every request here (on AWS each environment serves one): a
        # deploy's parallel digests and bundle requests each hold a connection while they
        # copy or write.
        "DB_POOL_SIZE": "16",
    }


@dataclass
class LocalSystem:
    """Start and stop every local part; `env` is what the functions run with."""

    state_dir: Path = DEFAULT_STATE_DIR
    base_env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    port: int | None = None
    env: dict[str, str] = field(default_factory=dict)
    gateway: Gateway | None = None
    github: FakeGitHub | None = None  # the fake GitHub, when this system started one
    workers: bool = True  # relay loop, site-worker poller, schedules (off for API tests)
    # `make run`: the repo-request feature against the fake GitHub's App (a generated key)
    dev_github_app: bool = False
    stack_name: str = LOCAL_STACK_NAME  # names the queues and rules as the template does
    schedule_mode: ScheduleMode | None = None  # decided in start()
    schedules: ScheduleResources | None = None  # the rules and ticks queue (EventBridge mode)
    _stops: list[Callable[[], None]] = field(default_factory=list)

    def check_config(self) -> Settings:
        env = {**local_defaults(self.state_dir), **self.base_env}
        return load_settings({**_PLACEHOLDERS, **env})

    def start(self) -> LocalSystem:
        settings = self.check_config()
        port = self.port if self.port is not None else settings.port
        env = {**local_defaults(self.state_dir), **self.base_env}
        for name in ("PUBLIC_URL_PRODUCTION_FORMAT", "PUBLIC_URL_PREVIEW_FORMAT"):
            env[name] = env[name].replace("{port}", str(port))
        try:
            if not env.get("DATABASE_URL"):
                pg = EmbeddedPostgres(self.state_dir / "pg")
                env["DATABASE_URL"] = pg.start()
                self._stops.append(pg.stop)
            migrate(env["DATABASE_URL"])
            if not env.get("AWS_ENDPOINT_URL"):
                moto = MotoServer(journal=self.state_dir / S3_JOURNAL).start()
                self._stops.append(moto.stop)
                env["AWS_ENDPOINT_URL"] = moto.url
            resources = ensure_resources(
                env["AWS_ENDPOINT_URL"], env["BUCKET_NAME"], env, self.stack_name
            )
            env.setdefault("SITE_EVENTS_QUEUE_URL", resources.queue_url)
            env.setdefault("SITE_EVENTS_DLQ_URL", resources.dlq_url)
            env.setdefault("NOTIFICATIONS_QUEUE_URL", resources.notifications_url)
            env.setdefault("NOTIFICATIONS_DLQ_URL", resources.notifications_dlq_url)
            self.schedule_mode = schedule_mode(env)
            if self.schedule_mode == "eventbridge":
                self.schedules = ensure_schedules(env["AWS_ENDPOINT_URL"], env, self.stack_name)
            if not env.get("GH_API_BASE"):
                self.github = FakeGitHub().start()
                self._stops.append(self.github.stop)
                env["GH_API_BASE"] = self.github.url
                # Its tokens (minted at <url>/_oidc/token) are the ones the API accepts.
                if not env.get("GH_OIDC_ISSUER"):
                    env["GH_OIDC_ISSUER"] = self.github.url
                if self.dev_github_app and not env.get("GH_APP_ID"):
                    _attach_dev_app(self.github, env, self.state_dir)
            self.env = env
            self._stops.append(_environment_restorer())  # stop() leaves os.environ as found
            os.environ.update(env)
            runtime.reset()
            self._stops.append(runtime.reset)
            self.gateway = Gateway(load_handler("api"), port=port)
            serve_plane.attach(self.gateway, runtime.current)  # <site>.localhost, /_serve/
            self.gateway.start()
            self._stops.append(self.gateway.stop)
            if self.workers:
                from artemis_local.workers import Workers

                self._stops.append(Workers(schedules=self.schedules).start().stop)
            self._write_env_file()
        except BaseException:
            self.stop()
            raise
        return self

    def _write_env_file(self) -> None:
        """So `artemis-admin invoke` in another terminal reaches this running system."""
        lines = [f"{k}={v}" for k, v in sorted(self.env.items()) if k in _SHARED_ENV]
        path = self.state_dir / "local.env"
        path.write_text("\n".join(lines) + "\n")
        path.chmod(0o600)

    def stop(self) -> None:
        while self._stops:
            stop = self._stops.pop()
            started = time.monotonic()
            try:
                stop()
                took = time.monotonic() - started
                if took > 2:  # a slow stop is worth a line: it is what Ctrl-C waits for
                    name = getattr(stop, "__qualname__", stop)
                    print(f"artemis: stopping {name} took {took:.1f}s", file=sys.stderr)
            except Exception as err:  # keep stopping the rest
                print(f"artemis: stop failed: {err}", file=sys.stderr)


def _environment_restorer() -> Callable[[], None]:
    """Undo what start() writes into os.environ (the functions read their settings there)."""
    saved = dict(os.environ)

    def restore() -> None:
        os.environ.clear()
        os.environ.update(saved)

    return restore


_SHARED_ENV = {
    "DATABASE_URL",
    "AWS_ENDPOINT_URL",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "BUCKET_NAME",
    "SITE_EVENTS_QUEUE_URL",
    "SITE_EVENTS_DLQ_URL",
    "NOTIFICATIONS_QUEUE_URL",
    "NOTIFICATIONS_DLQ_URL",
    "HOOK_ALLOW_LOOPBACK_HTTP",
    "GH_API_BASE",
    "GH_OIDC_ISSUER",
    "JWT_SIGNING_KEY",
    "PUBLIC_URL_PRODUCTION_FORMAT",
    "PUBLIC_URL_PREVIEW_FORMAT",
    "POWERTOOLS_METRICS_NAMESPACE",
    "POWERTOOLS_METRICS_DISABLED",
}


def _persistence(system: LocalSystem) -> str:
    """What survives a restart, said at start."""
    embedded_pg = not system.base_env.get("DATABASE_URL")
    embedded_s3 = not system.base_env.get("AWS_ENDPOINT_URL")
    state = system.state_dir
    if embedded_pg and embedded_s3:
        return (f"the index ({state / 'pg'}) and the bucket ({state / S3_JOURNAL}) are kept on "
                f"disk and survive a restart; delete {state} to start fresh")  # fmt: skip
    if embedded_s3:
        return f"the bucket is kept on disk ({state / S3_JOURNAL}) and survives a restart"
    if embedded_pg:
        return f"the index is kept on disk ({state / 'pg'}); the bucket is the endpoint's own"
    return "the index and the bucket are the configured endpoints' own"


def serve(port: int | None = None) -> int:
    stopping = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    system = LocalSystem(port=port, dev_github_app=True)
    try:
        system.check_config()
    except ConfigError as err:
        print(err, file=sys.stderr)
        return 2
    system.start()
    try:
        assert system.gateway is not None
        url = system.gateway.url
        print(f"artemis: API on {url}  (health: {url}/healthz, readiness: {url}/readyz)")
        pg = "from DATABASE_URL" if system.base_env.get("DATABASE_URL") else "embedded"
        print(f"artemis: Postgres {pg}, AWS at {system.env['AWS_ENDPOINT_URL']},")
        print(f"artemis: {_persistence(system)}")
        print(f"artemis: GitHub at {system.env['GH_API_BASE']}")
        if system.github is not None and system.env.get("GH_OIDC_ISSUER") == system.github.url:
            print(f"artemis: OIDC tokens: POST {system.github.url}/_oidc/token?audience=artemis")
        if system.schedules is not None:
            rules = ", ".join(r.schedule.rule_name for r in system.schedules.rules)
            print(f"artemis: schedules: EventBridge rules {rules} → the ticks queue")
        else:
            print("artemis: schedules: wall clock (purge 03:00, drift 04:00 UTC)")
        print("artemis: dev tokens (Authorization: Bearer <token>):")
        print("  local-staff-token     local-staff     teams: staff")
        print("  local-dev-token       local-dev       teams: web")
        print("  local-outsider-token  local-outsider  teams: (none)")
        if system.github is not None and system.github.app is not None:
            print(f"artemis: repo requests on: the fake GitHub's App (template {DEV_TEMPLATE}),"
                  " staff create and approve")  # fmt: skip
        print("artemis: Ctrl-C stops everything", flush=True)
        stopping.wait()
    finally:
        print("artemis: stopping", flush=True)
        system.stop()
    return 0
