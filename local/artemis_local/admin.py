"""The local runtime's `artemis-admin` commands: `run` (the whole local system, or one job now),
`invoke` (one function's handler with an event file) and `apidoc`. `artemis-admin` itself, and
the operator commands, live in `artemis_ops`; it calls these by name.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from artemis.config import ConfigError, JobSettings
from artemis_ops.admin import JOBS
from artemis_ops.commands import (
    CLI_BUDGET_SECONDS,
    job_runtime,
    load_local_env,
    logs_to_stderr,
    print_json,
)

if TYPE_CHECKING:
    from artemis.runtime import Runtime


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


def invoke(args: argparse.Namespace) -> int:
    from artemis_local.functions import LocalContext, load_handler

    logs_to_stderr()
    load_local_env()
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


def openapi(args: argparse.Namespace) -> int:
    from artemis.openapi import render
    from artemis_local.apidoc import routes_document

    sys.stdout.write(render(routes_document()))
    return 0


def apidoc(args: argparse.Namespace) -> int:
    from artemis.openapi import document
    from artemis_local.apidoc import render_markdown

    sys.stdout.write(render_markdown(document()))
    return 0


def run(args: argparse.Namespace) -> int:
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
    rt = job_runtime(f"run {args.job}")
    if rt is None:
        return 2
    try:
        print_json(_run_job(rt, args.job, args.site))
    except Exception as err:  # the job recorded its failure in job_runs; say it here too
        print(f"artemis-admin run {args.job}: {type(err).__name__}: {err}", file=sys.stderr)
        return 1
    return 0


def _run_job(rt: Runtime[JobSettings], job: str, site: str | None) -> object:
    """Run one background job now against the configured stores (the same code the Lambda
    functions call)."""
    from artemis.deadlines import Deadline
    from artemis.jobs.common import system_clock
    from artemis.keys import Dirname

    deadline = Deadline.after(CLI_BUDGET_SECONDS)
    now = system_clock()
    if job == "relay":
        from artemis.jobs.relay import drain
        from artemis.queue import SiteEventsQueue

        # require_url: "SITE_EVENTS_QUEUE_URL is not set" rather than a publish per row
        publisher = SiteEventsQueue.of(rt).publisher()
        return drain(rt, publisher, deadline=deadline).counts()
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
    """`artemis-admin` (kept here for `python -m artemis_local`)."""
    from artemis_ops.admin import main as admin_main

    return admin_main(argv)
