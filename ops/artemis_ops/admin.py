"""`artemis-admin`: the operator console.

artemis-admin run [--port N]                 the whole local system (what `make run` calls)
artemis-admin run <job> [site]               run one job now: relay, gc-site SITE,
                                             tombstone-purge, outbox-purge, backstop, drift-detect
artemis-admin migrate [--database-url URL]   apply sql/ migrations
artemis-admin invoke <function> <event.json> [--set NAME=VALUE ...] [--timeout SECONDS]
                                             run a function's handler once; print the result
                                             (--set fills the event's {{NAME}} placeholders)
artemis-admin openapi                        print the OpenAPI document, built from the API's routes
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
import importlib
import sys
from collections.abc import Callable

from artemis_ops import commands

# run, invoke, openapi and apidoc belong to the local runtime (artemis_local, installed with the
# `local` extra). They are looked up by name when chosen, so the operator commands work where only
# the domain package is installed, and this package never imports the local runtime.
LOCAL_COMMANDS = "artemis_local.admin"
JOBS = ("relay", "gc-site", "tombstone-purge", "outbox-purge", "backstop", "drift-detect")


def _local(name: str) -> Callable[[argparse.Namespace], int]:
    def command(args: argparse.Namespace) -> int:
        try:
            module = importlib.import_module(LOCAL_COMMANDS)
        except ImportError as err:
            print(
                f"artemis-admin {args.command}: needs the local runtime (pip install "
                f"'artemis[local]'): {err}",
                file=sys.stderr,
            )
            return 2
        code: int = getattr(module, name)(args)
        return code

    return command


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
    run.set_defaults(func=_local("run"))
    mig = sub.add_parser("migrate", help="apply the SQL migrations")
    mig.add_argument("--database-url", default=None)
    mig.set_defaults(func=commands.migrate)
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
    inv.set_defaults(func=_local("invoke"))
    spec = sub.add_parser("openapi", help="print the OpenAPI document built from the API's routes")
    spec.set_defaults(func=_local("openapi"))
    doc = sub.add_parser("apidoc", help="print the API reference (docs/api.md) as Markdown")
    doc.set_defaults(func=_local("apidoc"))
    rec = sub.add_parser(
        "reconcile", help="one site's drift report (dry run); repair it with --apply"
    )
    rec.add_argument("site", help="the site's slug or dirname")
    rec.add_argument("--apply", action="store_true", help="repair (default: dry run)")
    rec.set_defaults(func=commands.reconcile)
    back = sub.add_parser("backfill", help="rebuild the deploy index from the bucket")
    back.set_defaults(func=commands.backfill)
    drift = sub.add_parser("driftreport", help="sweep every site, read-only; print the report")
    drift.set_defaults(func=commands.driftreport)
    gcr = sub.add_parser("gcreport", help="every site's retention plan (dry run); print it")
    gcr.set_defaults(func=commands.gcreport)
    pre = sub.add_parser(
        "preflight", help="check every dependency with the configured settings and credentials"
    )
    pre.add_argument(
        "--github-token", default=None, metavar="TOKEN",
        help="also check GitHub with this user token (default: GH_TOKEN, if set)",
    )  # fmt: skip
    pre.set_defaults(func=commands.preflight)
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
