"""`artemis-admin`: the operator console.

artemis-admin run [--port N]                 the whole local system (what `make run` calls)
artemis-admin run <job> [site]               run one job now: relay, gc-site SITE,
                                             tombstone-purge, outbox-purge, backstop, drift-detect
artemis-admin migrate [--database-url URL]   apply sql/ migrations
artemis-admin invoke <function> <event.json> [--set NAME=VALUE ...] [--timeout SECONDS]
                                             run a function's handler once; print the result
                                             (--set fills the event's {{NAME}} placeholders)
artemis-admin apidoc                         print docs/api.md (from the OpenAPI document)
artemis-admin reconcile <site> [--apply]     one site's drift report; repair it with --apply
artemis-admin backfill                       rebuild the deploy index from the bucket
artemis-admin driftreport                    sweep every site (read-only); print the report
artemis-admin gcreport                       every site's retention plan (dry run); print it
artemis-admin preflight [--github-token T]   try every dependency with the configured settings;
                                             one line per check, exit 1 if any fails
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from artemis.config import ConfigError

if TYPE_CHECKING:
    from artemis.runtime import Runtime


def _load_local_env() -> None:
    """Fill unset variables from the running local system's `.artemis/local.env`, if any."""
    from artemis_local.runner import DEFAULT_STATE_DIR

    path = DEFAULT_STATE_DIR / "local.env"
    if path.exists():
        for line in path.read_text().splitlines():
            name, sep, value = line.partition("=")
            if sep:
                os.environ.setdefault(name, value)


def _migrate(args: argparse.Namespace) -> int:
    from artemis.db.migrate import migrate

    url = args.database_url or os.environ.get("DATABASE_URL")
    if not url:
        print("artemis-admin migrate: set DATABASE_URL or pass --database-url", file=sys.stderr)
        return 2
    report = migrate(url)
    print(json.dumps({"applied": report.applied, "skipped": report.skipped}))
    return 0


# A sample event's run-time values (events/README.md): `{{site}}`, `{{deploy_id}}`, `{{session}}`.
PLACEHOLDER = re.compile(r"\{\{([a-z_]+)\}\}")


class MissingPlaceholder(LookupError):
    """The event holds placeholders that were given no value."""

    def __init__(self, names: list[str]) -> None:
        super().__init__(", ".join(names))
        self.names = names


def placeholders(event: Any) -> set[str]:
    """The `{{name}}` placeholders in the event's strings (object keys and values, nested)."""
    if isinstance(event, str):
        return set(PLACEHOLDER.findall(event))
    if isinstance(event, dict):
        return set().union(*(placeholders(k) | placeholders(v) for k, v in event.items()))
    if isinstance(event, list):
        return set().union(*(placeholders(v) for v in event))
    return set()


def fill_placeholders(event: Any, values: Mapping[str, str]) -> Any:
    """A copy of the event with every `{{name}}` in its strings replaced by `values[name]`.
    Bodies are strings too (JSON text, an SQS body), so a placeholder inside one is filled in
    place; values are inserted verbatim, so they must not need JSON escaping (slugs, deploy ids
    and JWTs do not). Raises MissingPlaceholder naming every placeholder without a value."""
    missing = sorted(placeholders(event) - set(values))
    if missing:
        raise MissingPlaceholder(missing)

    def fill(value: Any) -> Any:
        if isinstance(value, str):
            return PLACEHOLDER.sub(lambda m: values[m.group(1)], value)
        if isinstance(value, dict):
            return {fill(k): fill(v) for k, v in value.items()}
        if isinstance(value, list):
            return [fill(v) for v in value]
        return value

    return fill(event)


def _assignments(pairs: list[str]) -> dict[str, str] | None:
    values: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not PLACEHOLDER.fullmatch("{{" + name + "}}"):
            print(f"artemis-admin invoke: --set wants NAME=VALUE, got {pair!r}", file=sys.stderr)
            return None
        values[name] = value
    return values


def _logs_to_stderr() -> None:
    """The structured log goes to stderr, so stdout carries exactly one JSON document."""
    import logging

    from artemis.observability import logger

    handler = logger.registered_handler
    if isinstance(handler, logging.StreamHandler):
        handler.setStream(sys.stderr)


def _invoke(args: argparse.Namespace) -> int:
    from artemis_local.functions import LocalContext, load_handler

    _logs_to_stderr()
    _load_local_env()
    values = _assignments(args.set)
    if values is None:
        return 2
    try:
        event = fill_placeholders(json.loads(Path(args.event).read_text()), values)
    except MissingPlaceholder as err:
        sets = " ".join(f"--set {name}=..." for name in err.names)
        print(f"artemis-admin invoke: {args.event} needs {sets}", file=sys.stderr)
        return 2
    try:
        handler = load_handler(args.function)
        context = LocalContext(args.function, timeout_ms=round(args.timeout * 1000))
        with contextlib.redirect_stdout(sys.stderr):  # EMF metrics too: stdout is the result
            result = handler(event, context)
    except ConfigError as err:
        print(err, file=sys.stderr)
        return 2
    except LookupError as err:
        print(f"artemis-admin invoke: {err.args[0]}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2, default=str))
    return 0


def _apidoc(args: argparse.Namespace) -> int:
    from artemis.openapi import document
    from artemis_local.apidoc import render_markdown

    sys.stdout.write(render_markdown(document()))
    return 0


# Operator commands run in a process, not a Lambda: no invocation ceiling, a day at most.
CLI_BUDGET_SECONDS = 24 * 3600.0


def _job_runtime(command: str) -> Runtime | None:
    """The Runtime for an operator job (environment, else the local system's), or None after
    printing the configuration error."""
    from artemis import runtime

    _logs_to_stderr()
    _load_local_env()
    try:
        return runtime.current()
    except ConfigError as err:
        print(f"artemis-admin {command}: {err}", file=sys.stderr)
        return None


def _print_json(value: object) -> None:
    print(json.dumps(value, indent=2, default=str))


def _reconcile(args: argparse.Namespace) -> int:
    from artemis.jobs.common import Deadline, system_clock
    from artemis.jobs.reconcile import ReconcileError, UnknownSite, run_reconcile

    rt = _job_runtime("reconcile")
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
            _print_json(err.report.to_json())
        print(f"artemis-admin reconcile: {type(err).__name__}: {err}", file=sys.stderr)
        return 1
    _print_json(report.to_json())
    return 0 if report.complete else 1


def _backfill(args: argparse.Namespace) -> int:
    from artemis.jobs.backfill import run_backfill
    from artemis.jobs.common import Deadline, system_clock

    rt = _job_runtime("backfill")
    if rt is None:
        return 2
    result = run_backfill(rt, now=system_clock(), deadline=Deadline.after(CLI_BUDGET_SECONDS))
    _print_json(result.to_json())
    return 0 if result.complete else 1


def _driftreport(args: argparse.Namespace) -> int:
    from datetime import timedelta

    from artemis.jobs.common import Deadline, system_clock
    from artemis.jobs.drift import DriftError, DriftFailed, Shard, run_drift

    rt = _job_runtime("driftreport")
    if rt is None:
        return 2
    shard = Shard(run_budget=timedelta(seconds=CLI_BUDGET_SECONDS))
    try:
        report = run_drift(
            rt, now=system_clock(), deadline=Deadline.after(CLI_BUDGET_SECONDS), shard=shard,
            fresh=True,
        )  # fmt: skip
    except DriftFailed as failed:
        _print_json(failed.report.to_json())
        print(f"artemis-admin driftreport: {failed}", file=sys.stderr)
        return 1
    except DriftError as err:
        print(f"artemis-admin driftreport: {err}", file=sys.stderr)
        return 1
    _print_json(report.to_json())
    return 0


def _gcreport(args: argparse.Namespace) -> int:
    from artemis.db import deploys
    from artemis.jobs.common import system_clock
    from artemis.jobs.gc_site import plan_fleet
    from artemis.retention import Policy

    rt = _job_runtime("gcreport")
    if rt is None:
        return 2
    with rt.db.transaction() as conn:
        sites = deploys.known_dirnames(conn)
    policy = Policy.from_settings(rt.settings)
    plans = {
        site: plan.to_json()
        for site, plan in plan_fleet(rt, sites, system_clock(), policy)
        if plan.candidates
    }
    _print_json({"policy": policy.to_json(), "sites": len(sites), "plans": plans})
    return 0


def _preflight(args: argparse.Namespace) -> int:
    from artemis import preflight, runtime
    from artemis.config import load_settings

    _logs_to_stderr()
    _load_local_env()
    try:
        settings = load_settings(os.environ, runtime._resolve_parameter)  # as Lambda does
    except ConfigError as err:
        print(f"FAIL  config    {err}")
        return 2
    print("OK    config    settings valid")
    token = args.github_token or os.environ.get("GH_TOKEN") or None
    checks = preflight.run(settings, github_token=token)
    for check in checks:
        print(check.line(), flush=True)
    return 1 if any(check.verdict == "fail" for check in checks) else 0


JOBS = ("relay", "gc-site", "tombstone-purge", "outbox-purge", "backstop", "drift-detect")


def _run(args: argparse.Namespace) -> int:
    if args.job is None:
        from artemis_local.runner import serve

        return serve(port=args.port)
    if args.job not in JOBS:
        print(
            f"artemis-admin run: unknown job {args.job!r} (jobs: {', '.join(JOBS)})",
            file=sys.stderr,
        )
        return 2
    if (args.job == "gc-site") != (args.site is not None):
        print(
            "artemis-admin run: gc-site takes one site (a dirname); other jobs take none",
            file=sys.stderr,
        )
        return 2
    rt = _job_runtime(f"run {args.job}")
    if rt is None:
        return 2
    try:
        _print_json(_run_job(rt, args.job, args.site))
    except Exception as err:  # the job recorded its failure in job_runs; say it here too
        print(f"artemis-admin run {args.job}: {type(err).__name__}: {err}", file=sys.stderr)
        return 1
    return 0


def _run_job(rt: Runtime, job: str, site: str | None) -> object:
    """Run one background job now against the configured stores (the same code the Lambda
    functions call)."""
    from artemis.jobs.common import Deadline, system_clock
    from artemis.keys import Dirname

    deadline = Deadline.after(CLI_BUDGET_SECONDS)
    now = system_clock()
    if job == "relay":
        from artemis.jobs.relay import drain
        from artemis.queue import SqsPublisher

        url = rt.settings.site_events_queue_url
        if not url:
            raise RuntimeError("SITE_EVENTS_QUEUE_URL is not set")
        return drain(rt, SqsPublisher(rt.sqs, url), deadline=deadline).counts()
    if job == "gc-site":
        from artemis.jobs.gc_site import run_gc_site

        assert site is not None
        return run_gc_site(rt, Dirname(site), now=now, deadline=deadline).to_json()
    if job == "drift-detect":
        from artemis.jobs.drift import run_drift

        return run_drift(rt, now=now, deadline=deadline, fresh=True).to_json()
    from artemis.jobs import purge

    if job == "tombstone-purge":
        return purge.run_tombstone_purge(rt, now=now, deadline=deadline).to_json()
    if job == "outbox-purge":
        return {"purged": purge.run_outbox_purge(rt)}
    return {"enqueued": purge.run_backstop(rt, now=now)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="artemis-admin",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="start the whole local system, or run one job now")
    run.add_argument("job", nargs="?", default=None, help=f"one of: {', '.join(JOBS)}")
    run.add_argument("site", nargs="?", default=None, help="gc-site: the site's dirname")
    run.add_argument("--port", type=int, default=None)
    run.set_defaults(func=_run)
    mig = sub.add_parser("migrate", help="apply the SQL migrations")
    mig.add_argument("--database-url", default=None)
    mig.set_defaults(func=_migrate)
    inv = sub.add_parser("invoke", help="run one function's handler with an event file")
    inv.add_argument("function")
    inv.add_argument("event")
    inv.add_argument(
        "--set", action="append", default=[], metavar="NAME=VALUE",
        help="fill the event's {{NAME}} placeholders (events/README.md); repeatable",
    )  # fmt: skip
    inv.add_argument(
        "--timeout", type=float, default=30.0, metavar="SECONDS",
        help="the context's remaining time, which the jobs budget from (default 30; "
        "site_worker reserves 30 s, so give it its Lambda timeout, 300)",
    )  # fmt: skip
    inv.set_defaults(func=_invoke)
    doc = sub.add_parser("apidoc", help="print the API reference (docs/api.md) as Markdown")
    doc.set_defaults(func=_apidoc)
    rec = sub.add_parser(
        "reconcile", help="one site's drift report (dry run); repair it with --apply"
    )
    rec.add_argument("site", help="the site's slug or dirname")
    rec.add_argument("--apply", action="store_true", help="repair (default: dry run)")
    rec.set_defaults(func=_reconcile)
    back = sub.add_parser("backfill", help="rebuild the deploy index from the bucket")
    back.set_defaults(func=_backfill)
    drift = sub.add_parser("driftreport", help="sweep every site, read-only; print the report")
    drift.set_defaults(func=_driftreport)
    gcr = sub.add_parser("gcreport", help="every site's retention plan (dry run); print it")
    gcr.set_defaults(func=_gcreport)
    pre = sub.add_parser(
        "preflight", help="check every dependency with the configured settings and credentials"
    )
    pre.add_argument(
        "--github-token", default=None, metavar="TOKEN",
        help="also check GitHub with this user token (default: GH_TOKEN, if set)",
    )  # fmt: skip
    pre.set_defaults(func=_preflight)
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
