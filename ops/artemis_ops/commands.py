"""The operator commands: each takes parsed arguments, prints its result as JSON (or one line
per check) on stdout and returns the exit code. Logs go to stderr.

Settings come from the environment, as a function's do (a `<VAR>_PARAM` is fetched from SSM or
Secrets Manager); variables left unset are filled from the running local system's
`.artemis/local.env` when there is one, so the same commands serve `make run`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from artemis.config import ConfigError, JobSettings

if TYPE_CHECKING:
    from artemis.runtime import Runtime

# Operator commands run in a process, not a Lambda: no invocation ceiling, a day at most.
CLI_BUDGET_SECONDS = 24 * 3600.0


def local_state_dir() -> Path:
    """Where `make run` keeps its state (the local runtime writes `local.env` there)."""
    configured = os.environ.get("ARTEMIS_STATE_DIR")
    return Path(configured) if configured else Path(__file__).resolve().parents[2] / ".artemis"


def load_local_env() -> None:
    """Fill unset variables from the running local system's `local.env`, if any."""
    path = local_state_dir() / "local.env"
    if path.exists():
        for line in path.read_text().splitlines():
            name, sep, value = line.partition("=")
            if sep:
                os.environ.setdefault(name, value)


def logs_to_stderr() -> None:
    """The structured log goes to stderr, so stdout carries exactly one JSON document."""
    import logging

    from artemis.observability import logger

    handler = logger.registered_handler
    if isinstance(handler, logging.StreamHandler):
        handler.setStream(sys.stderr)


def job_runtime(command: str) -> Runtime[JobSettings] | None:
    """The Runtime for an operator job (environment, else the local system's), or None after
    printing the configuration error. Jobs need the database and the bucket, not the API's
    session key."""
    from artemis import runtime

    logs_to_stderr()
    load_local_env()
    try:
        return runtime.current(JobSettings)
    except ConfigError as err:
        print(f"artemis-admin {command}: {err}", file=sys.stderr)
        return None


def print_json(value: object) -> None:
    print(json.dumps(value, indent=2, default=str))


def migrate(args: argparse.Namespace) -> int:
    from artemis.db.migrate import migrate

    url = args.database_url or os.environ.get("DATABASE_URL")
    if not url:
        print("artemis-admin migrate: set DATABASE_URL or pass --database-url", file=sys.stderr)
        return 2
    report = migrate(url)
    print(json.dumps({"applied": report.applied, "skipped": report.skipped}))
    return 0


def reconcile(args: argparse.Namespace) -> int:
    from artemis.deadlines import Deadline
    from artemis.jobs.common import system_clock
    from artemis.jobs.reconcile import ReconcileError, UnknownSite, run_reconcile

    rt = job_runtime("reconcile")
    if rt is None:
        return 2
    try:
        report = run_reconcile(
            rt, args.site, apply=args.apply, now=system_clock(),
            deadline=Deadline.after(CLI_BUDGET_SECONDS),
        )  # fmt: skip
    except UnknownSite as err:
        print(f"artemis-admin reconcile: {err}", file=sys.stderr)
        return 2
    except ReconcileError as err:
        if err.report is not None:
            print_json(err.report.to_json())
        print(f"artemis-admin reconcile: {type(err).__name__}: {err}", file=sys.stderr)
        return 1
    print_json(report.to_json())
    return 0 if report.complete else 1


def backfill(args: argparse.Namespace) -> int:
    from artemis.deadlines import Deadline
    from artemis.jobs.backfill import run_backfill
    from artemis.jobs.common import system_clock

    rt = job_runtime("backfill")
    if rt is None:
        return 2
    result = run_backfill(rt, now=system_clock(), deadline=Deadline.after(CLI_BUDGET_SECONDS))
    print_json(result.to_json())
    return 0 if result.complete else 1


def driftreport(args: argparse.Namespace) -> int:
    from datetime import timedelta

    from artemis.deadlines import Deadline
    from artemis.jobs.common import system_clock
    from artemis.jobs.drift import DriftError, DriftFailed, Shard, run_drift

    rt = job_runtime("driftreport")
    if rt is None:
        return 2
    shard = Shard(run_budget=timedelta(seconds=CLI_BUDGET_SECONDS))
    try:
        report = run_drift(
            rt, now=system_clock(), deadline=Deadline.after(CLI_BUDGET_SECONDS), shard=shard,
            fresh=True,
        )  # fmt: skip
    except DriftFailed as failed:
        print_json(failed.report.to_json())
        print(f"artemis-admin driftreport: {failed}", file=sys.stderr)
        return 1
    except DriftError as err:
        print(f"artemis-admin driftreport: {err}", file=sys.stderr)
        return 1
    print_json(report.to_json())
    return 0


def gcreport(args: argparse.Namespace) -> int:
    from artemis.db import deploys
    from artemis.jobs.common import system_clock
    from artemis.jobs.gc_site import plan_fleet
    from artemis.retention import Policy

    rt = job_runtime("gcreport")
    if rt is None:
        return 2
    with rt.db.transaction() as conn:
        sites = deploys.known_dirnames(conn)
    policy = Policy.from_settings(rt.settings)
    plans = {
        site: plan.to_json()
        for site, plan in plan_fleet(rt, sites, system_clock(), policy)
        if plan.candidates or plan.expired_previews  # a preview expiry is a change too
    }
    print_json({"policy": policy.to_json(), "sites": len(sites), "plans": plans})
    return 0


def preflight(args: argparse.Namespace) -> int:
    from artemis import runtime
    from artemis.config import load_settings
    from artemis_ops import preflight

    logs_to_stderr()
    load_local_env()
    try:
        settings = load_settings(os.environ, runtime.resolve_parameter)  # as Lambda does
    except ConfigError as err:
        print(f"FAIL  config    {err}")
        return 2
    print("OK    config    settings valid")
    token = args.github_token or os.environ.get("GH_TOKEN") or None
    checks = preflight.run(settings, github_token=token)
    for check in checks:
        print(check.line(), flush=True)
    return 1 if any(check.verdict == "fail" for check in checks) else 0
