"""`artemis-admin`: the operator console.

artemis-admin run [--port N]                 the whole local system (what `make run` calls)
artemis-admin migrate [--database-url URL]   apply sql/ migrations
artemis-admin invoke <function> <event.json> run a function's handler once; print the result
artemis-admin apidoc                         print docs/api.md (from the OpenAPI document)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from artemis.config import ConfigError


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


def _invoke(args: argparse.Namespace) -> int:
    from artemis_local.functions import LocalContext, load_handler

    _load_local_env()
    event = json.loads(Path(args.event).read_text())
    try:
        handler = load_handler(args.function)
        result = handler(event, LocalContext(args.function))
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


def _run(args: argparse.Namespace) -> int:
    from artemis_local.runner import serve

    return serve(port=args.port)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="artemis-admin",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="start the whole local system")
    run.add_argument("--port", type=int, default=None)
    run.set_defaults(func=_run)
    mig = sub.add_parser("migrate", help="apply the SQL migrations")
    mig.add_argument("--database-url", default=None)
    mig.set_defaults(func=_migrate)
    inv = sub.add_parser("invoke", help="run one function's handler with an event file")
    inv.add_argument("function")
    inv.add_argument("event")
    inv.set_defaults(func=_invoke)
    doc = sub.add_parser("apidoc", help="print the API reference (docs/api.md) as Markdown")
    doc.set_defaults(func=_apidoc)
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
