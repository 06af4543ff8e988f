"""`artemis`: the command line. Each command prints human text, or with `--json` one JSON
document on stdout (errors as `{"error": {...}}` on stderr), and exits with a code from
`artemis_cli.errors`."""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.parse
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

from artemis_cli import __version__
from artemis_cli.config import Config, resolve
from artemis_cli.errors import OK, USAGE, CliError, usage

Output = tuple[Any, str]  # (the JSON document, the human text)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise usage(f"{self.prog}: {message}")


def _api(config: Config) -> Any:
    from artemis_cli.http import Api  # not needed for --help or usage errors

    return Api(config.require_url(), config.require_token())


def _deploy_api(config: Config) -> Any:
    """Deploys in a GitHub Actions job with `id-token: write` present the job's OIDC token
    (trusted publishing) unless a person's token is given; see Config.deploys_with_oidc."""
    if not config.deploys_with_oidc:
        return _api(config)
    from artemis_cli.http import Api
    from artemis_cli.oidc import request_token

    url = config.require_url()  # a missing server is a usage error before any request
    return Api(url, request_token(os.environ))


def _q(value: str) -> str:
    return urllib.parse.quote(value, safe="")


def _site_path(config: Config, tail: str = "") -> str:
    return f"/api/site/{_q(config.require_site())}{tail}"


# --- commands ----------------------------------------------------------------------------


def cmd_whoami(args: argparse.Namespace, config: Config) -> Output:
    me = _api(config).call("GET", "/api/whoami")
    sites = ", ".join(me.get("authorizedSites", [])) or "none"
    return me, f"{me['login']} (sites: {sites})"


def cmd_deploy(args: argparse.Namespace, config: Config) -> Output:
    from artemis_cli.actions import default_alias, deploy_context
    from artemis_cli.deploy import default_sha, run_deploy
    from artemis_cli.files import collect
    from artemis_cli.progress import Progress

    directory = Path(args.directory or config.dir or ".")
    if not directory.is_dir():
        raise usage(f"not a directory: {directory}")
    site = config.require_site()
    api = _deploy_api(config)
    build = collect(directory)
    for path, why in build.refused:
        print(f"artemis: refusing {path}: {why}", file=sys.stderr)
    progress = None if args.json else Progress(len(build.files), build.total_bytes)
    ctx = deploy_context(directory).with_overrides(
        branch=args.branch, message=args.message, pr=args.pr, repo=args.repo, ci_url=args.ci_url
    )
    alias = args.alias
    if alias == "":  # --alias alone: the pull request's or the branch's name
        alias = default_alias(ctx)
        if alias is None:
            raise usage("--alias without a name needs a pull request or a branch (GitHub "
                        "Actions, or --pr / --branch) to name the preview after")  # fmt: skip
    result = run_deploy(
        api, site, build, args.sha or ctx.sha or default_sha(directory), production=args.promote,
        concurrency=args.concurrency, direct_all=args.direct,
        incremental=not args.no_incremental, progress=progress, metadata=ctx.metadata(),
        alias=alias,
    )  # fmt: skip
    text = (
        f"deployed {result.files} files ({result.bytes / 1e6:.1f} MB) as {result.deploy_id}"
        f" to {result.alias or result.mode}: {result.uploaded} uploaded,"
        f" {result.copied} unchanged\n{result.url}"
    )
    return result.to_json(), text


def cmd_promote(args: argparse.Namespace, config: Config) -> Output:
    body = {"deployId": args.from_id} if args.from_id else {}
    if args.preview:
        body["preview"] = args.preview
    moved = _api(config).call("POST", _site_path(config, "/promote"), json_body=body)
    return moved, f"production → {moved['deployId']}\n{moved['url']}"


def cmd_rollback(args: argparse.Namespace, config: Config) -> Output:
    moved = _api(config).call("POST", _site_path(config, "/rollback"), json_body={"to": args.to})
    return moved, f"production → {moved['deployId']}\n{moved['url']}"


def _alias(api: Any, config: Config, mode: str) -> str | None:
    try:
        return str(api.call("GET", _site_path(config, f"/alias/{mode}"))["deployId"])
    except CliError as err:
        if err.code == "no_alias":
            return None
        raise


def _age(stamp: str | None, now: datetime) -> str:
    """`42s`, `5m`, `3h`, `2d` since an RFC 3339 time; "" when unknown."""
    try:
        then = datetime.fromisoformat(stamp.replace("Z", "+00:00")) if stamp else None
    except ValueError:
        then = None
    if then is None:
        return ""
    seconds = max(0, int((now - then).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def ls_line(row: dict[str, Any], marks: list[str], now: datetime) -> str:
    """One deploy in `artemis ls`: id, state, age, finalizer, branch and pull request, the
    aliases naming it, and the message on a second line."""
    parts = [str(row["deployId"]), str(row.get("state") or "?")]
    parts += [age] if (age := _age(row.get("createdAt"), now)) else []
    parts += [f"by {row['actor']}"] if row.get("actor") else []
    source = " ".join(
        ([str(row["branch"])] if row.get("branch") else [])
        + ([f"#{row['pr']}"] if row.get("pr") else [])
    )
    parts += [source] if source else []
    line = "  ".join(parts) + (f"  ← {', '.join(marks)}" if marks else "")
    return line + (f"\n    {row['message']}" if row.get("message") else "")


def cmd_ls(args: argparse.Namespace, config: Config) -> Output:
    api = _api(config)
    rows = api.call("GET", _site_path(config, "/deploys"))
    production, preview = _alias(api, config, "production"), _alias(api, config, "preview")
    doc = {"site": config.require_site(), "production": production, "preview": preview,
           "deploys": rows}  # fmt: skip
    now = datetime.now(UTC)
    lines = []
    for row in rows:
        # The row's aliases (every alias the index knows), and the two fixed ones as the
        # bucket has them (an older server lists no aliases).
        marks = set(row.get("aliases") or [])
        marks.update(m for m, target in (("production", production), ("preview", preview))
                     if target == row["deployId"])  # fmt: skip
        lines.append(ls_line(row, sorted(marks), now))
    return doc, "\n".join(lines) or "no deploys"


def cmd_sites(args: argparse.Namespace, config: Config) -> Output:
    api = _api(config)
    if args.sites_command == "ls":
        rows = api.call("GET", "/api/sites")
        return rows, "\n".join(f"{r['slug']}  teams: {', '.join(r['teams'])}" for r in rows)
    if args.sites_command == "register":
        row = api.call("POST", "/api/site/register",
                       json_body={"slug": args.slug, "teams": args.team or None})  # fmt: skip
        return row, f"registered {row['slug']} (teams: {', '.join(row['teams'])})"
    if args.sites_command == "update":
        row = api.call("PATCH", f"/api/site/{_q(args.slug)}", json_body={"teams": args.team})
        return row, f"{row['slug']} teams: {', '.join(row['teams'])}"
    if args.sites_command == "trust":
        return _sites_trust(args, api)
    query = {"purge": "true"} if args.purge else None
    answer = api.call("DELETE", f"/api/site/{_q(args.slug)}", query=query)
    doc = answer if answer is not None else {"slug": args.slug, "status": "deleted"}
    return doc, f"{args.slug}: {doc['status']}"


def trust_line(rule: dict[str, Any]) -> str:
    """One rule on one line: id, who (repository#id, workflow), where (environment, ref)
    and what it may publish to."""
    where = "".join(
        f"  {key} {rule[key]}" for key in ("environment", "ref") if rule.get(key) is not None
    )
    return (
        f"{rule['id']}  {rule['repository']}#{rule['repositoryId']}  {rule['workflow']}{where}"
        f"  -> {', '.join(rule['aliases'])}"
    )


def _sites_trust(args: argparse.Namespace, api: Any) -> Output:
    base = f"/api/site/{_q(args.slug)}/trust"
    if args.trust_command == "ls":
        rules = api.call("GET", base)
        return rules, "\n".join(trust_line(r) for r in rules) or f"{args.slug}: no trust rules"
    if args.trust_command == "add":
        body = {
            "repository": args.repo, "repositoryId": args.repo_id, "workflow": args.workflow,
            "environment": args.environment, "ref": args.ref, "aliases": args.alias,
        }  # fmt: skip
        rule = api.call("POST", base, json_body=body)
        return rule, f"added {trust_line(rule)}"
    gone = api.call("DELETE", f"{base}/{_q(args.rule_id)}")
    return gone, f"removed {trust_line(gone)}"


def cmd_previews(args: argparse.Namespace, config: Config) -> Output:
    api = _api(config)
    if args.previews_command == "ls":
        rows = api.call("GET", _site_path(config, "/previews"))
        text = "\n".join(
            f"{r['name']}  {r['deployId']}  {r['url']}"
            f"{'  by ' + r['updatedBy'] if r.get('updatedBy') else ''}"
            f"{'  expires ' + r['expiresAt'] if r.get('expiresAt') else ''}"
            for r in rows
        )
        return rows, text or "no named previews"
    gone = api.call("DELETE", _site_path(config, f"/previews/{_q(args.name)}"))
    return gone, f"{gone['name']} unpublished (its deploy {gone['deployId']} stays until GC)"


HOOK_EVENTS = ("deploy.finalized", "alias.moved", "deploy.deleted", "deploy.restored",
               "site.deleted")  # fmt: skip


def hook_line(hook: dict[str, Any]) -> str:
    return f"{hook['id']}  {hook['url']}  {', '.join(hook['events'])}"


def cmd_hooks(args: argparse.Namespace, config: Config) -> Output:
    api = _api(config)
    base = _site_path(config, "/hooks")
    if args.hooks_command == "ls":
        hooks = api.call("GET", base)
        return hooks, "\n".join(hook_line(h) for h in hooks) or "no webhooks"
    if args.hooks_command == "add":
        body = {"url": args.hook_url, "events": args.event or list(HOOK_EVENTS)}
        hook = api.call("POST", base, json_body=body)
        secret = f"signing secret (shown once, keep it): {hook['secret']}"
        return hook, f"added {hook_line(hook)}\n{secret}"
    if args.hooks_command == "rm":
        gone = api.call("DELETE", f"{base}/{_q(args.hook_id)}")
        return gone, f"removed {hook_line(gone)}"
    if args.hooks_command == "ping":
        queued = api.call("POST", f"{base}/{_q(args.hook_id)}/ping", ok=(202,))
        return queued, f"ping queued as {queued['deliveryId']}"
    rows = api.call("GET", f"{base}/{_q(args.hook_id)}/deliveries")
    lines = []
    for row in rows:
        last = row["log"][-1] if row["log"] else {}
        outcome = last.get("status", last.get("error", "-"))
        lines.append(
            f"{row['id']}  {row['event']}  {row['state']}  {row['attempts']} attempts"
            f"  last: {outcome}  {row['createdAt']}"
        )
    return rows, "\n".join(lines) or "no deliveries"


def cmd_deploys_rm(args: argparse.Namespace, config: Config) -> Output:
    gone = _api(config).call("DELETE", _site_path(config, f"/deploys/{_q(args.deploy_id)}"))
    return gone, f"{gone['deployId']} moved to trash ({gone['moved']} objects)"


def cmd_trash(args: argparse.Namespace, config: Config) -> Output:
    rows = _api(config).call("GET", _site_path(config, "/trash"))
    text = "\n".join(
        f"{r['deployId'] or '(whole site)'}  trashed {r['trashedAt']}  purge after"
        f" {r['expiresAt']}  {r['bytes']} bytes"
        for r in rows
    )
    return rows, text or "trash is empty"


def cmd_restore(args: argparse.Namespace, config: Config) -> Output:
    back = _api(config).call("POST", _site_path(config, f"/deploys/{_q(args.deploy_id)}/restore"))
    return back, f"{back['deployId']} restored ({back['moved']} objects); promote to serve it"


def cmd_audit(args: argparse.Namespace, config: Config) -> Output:
    query = {
        "site": args.site or "", "actor": args.actor or "", "action": args.action or "",
        "since": args.since or "", "limit": str(args.limit) if args.limit else "",
        "offset": str(args.offset) if args.offset else "",
    }  # fmt: skip
    rows = _api(config).call("GET", "/api/audit", query=query)
    text = "\n".join(
        f"{r['occurredAt']}  {r['actor']}  {r['action']}  {r['outcome']}"
        f"{'  ' + r['site'] if r.get('site') else ''}"
        f"{'  ' + r['deployId'] if r.get('deployId') else ''}"
        for r in rows
    )
    return rows, text or "no audit rows"


# --- the parser --------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument("--url", help="the Artemis server (ARTEMIS_URL)")
    common.add_argument("--token", help="a GitHub token (ARTEMIS_TOKEN, GITHUB_TOKEN, GH_TOKEN)")
    common.add_argument("--config", help="the project file (default: ./artemis.yaml)")
    common.add_argument("--json", action="store_true", help="print one JSON document")
    site = _Parser(add_help=False)
    site.add_argument("--site", help="the site's slug (ARTEMIS_SITE, artemis.yaml site:)")

    parser = _Parser(prog="artemis", description="Deploy static sites through Artemis.")
    parser.add_argument("--version", action="version", version=f"artemis {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def command(
        name: str, fn: Callable[..., Output], help_text: str, *, site_scoped: bool = False,
        group: bool = False,
    ) -> argparse.ArgumentParser:  # fmt: skip
        # A group's flags live on its subcommands: argparse lets a subcommand's defaults
        # overwrite what its parent parsed.
        parents = [] if group else [common, site] if site_scoped else [common]
        p = sub.add_parser(name, parents=parents, help=help_text, description=help_text)
        p.set_defaults(func=fn)
        return p

    command("whoami", cmd_whoami, "who the token is and which sites it may deploy")
    dep = command("deploy", cmd_deploy, "upload a build directory as a new deploy",
                  site_scoped=True)  # fmt: skip
    dep.add_argument("directory", nargs="?", help="the build directory (artemis.yaml dir:)")
    dep.add_argument("--sha", help="the commit id (default: a pull request's head commit, "
                     "GITHUB_SHA, git HEAD, or local)")  # fmt: skip
    # What the deploy records about where it comes from; in GitHub Actions each defaults to
    # the run's (artemis_cli.actions), outside it only the message does (the last commit's).
    dep.add_argument("--branch", help="the git branch (default in Actions: the run's branch)")
    dep.add_argument(
        "--message",
        help="the commit message, first line kept (default: the "
        "pushed commit's, the pull request's title, or git's last subject)",
    )
    dep.add_argument(
        "--pr",
        type=int,
        help="the pull request number (default in Actions: the pull request event's)",
    )
    dep.add_argument(
        "--repo", help="the GitHub repository, owner/name (default in Actions: GITHUB_REPOSITORY)"
    )
    dep.add_argument("--ci-url", help="a https link to the CI run (default in Actions: the "
                     "run's page)")  # fmt: skip
    dep.add_argument("--promote", action="store_true", help="go live on production, not preview")
    dep.add_argument("--alias", nargs="?", const="", metavar="NAME",
                     help="go live under the named preview NAME (alone: pr-<number> for a pull "
                     "request, else the branch name)")  # fmt: skip
    dep.add_argument("--concurrency", type=int, default=8, help="parallel uploads (default 8)")
    dep.add_argument("--direct", action="store_true", help="upload every file straight to storage")
    dep.add_argument("--no-incremental", action="store_true",
                     help="upload every file, even those the site already holds")  # fmt: skip
    pro = command("promote", cmd_promote, "point production at a deploy (default: the preview)",
                  site_scoped=True)  # fmt: skip
    pro.add_argument("--from", dest="from_id", metavar="ID", help="the deploy to promote")
    pro.add_argument("--preview", metavar="NAME",
                     help="promote what this named preview serves (with --from: only while it "
                     "still serves that deploy)")  # fmt: skip
    rol = command("rollback", cmd_rollback, "point production at a past deploy", site_scoped=True)
    rol.add_argument("--to", required=True, metavar="ID", help="the past deploy")
    command("ls", cmd_ls, "a site's deploys and aliases", site_scoped=True)

    sites = command("sites", cmd_sites, "the site registry", group=True)
    sites_sub = sites.add_subparsers(dest="sites_command", required=True, parser_class=_Parser)
    sites_sub.add_parser("ls", parents=[common], help="registered sites")
    reg = sites_sub.add_parser("register", parents=[common], help="register a site")
    reg.add_argument("slug")
    reg.add_argument("--team", action="append", help="a team that may deploy (repeatable)")
    upd = sites_sub.add_parser("update", parents=[common], help="replace a site's teams")
    upd.add_argument("slug")
    upd.add_argument("--team", action="append", required=True, help="a team (repeatable)")
    trust = sites_sub.add_parser("trust", help="a site's trust rules (GitHub Actions publishing)")
    trust_sub = trust.add_subparsers(dest="trust_command", required=True, parser_class=_Parser)
    tls = trust_sub.add_parser("ls", parents=[common], help="a site's trust rules")
    tls.add_argument("slug")
    tadd = trust_sub.add_parser("add", parents=[common], help="add a trust rule")
    tadd.add_argument("slug")
    tadd.add_argument("--repo", required=True, metavar="OWNER/NAME", help="the repository")
    tadd.add_argument("--repo-id", required=True, type=int, metavar="N",
                      help="the repository's numeric GitHub id")  # fmt: skip
    tadd.add_argument("--workflow", required=True, metavar="PATH",
                      help="the workflow file, .github/workflows/<name>.yml")  # fmt: skip
    tadd.add_argument("--environment", help="only jobs in this GitHub environment")
    tadd.add_argument("--ref", metavar="PATTERN",
                      help="only runs on a matching ref, like refs/tags/v*")  # fmt: skip
    tadd.add_argument("--alias", action="append", required=True, metavar="ALIAS",
                      help="production, preview or a named-preview pattern like 'pr-*' "
                      "(repeatable)")  # fmt: skip
    trm = trust_sub.add_parser("rm", parents=[common], help="remove a trust rule")
    trm.add_argument("slug")
    trm.add_argument("rule_id", metavar="RULE_ID")
    rm = sites_sub.add_parser("rm", parents=[common], help="deregister (or --purge) a site")
    rm.add_argument("slug")
    rm.add_argument("--purge", action="store_true", help="also move every byte to trash")

    previews = command("previews", cmd_previews, "named previews", group=True)
    previews_sub = previews.add_subparsers(dest="previews_command", required=True,
                                           parser_class=_Parser)  # fmt: skip
    previews_sub.add_parser("ls", parents=[common, site], help="a site's named previews")
    prm = previews_sub.add_parser("rm", parents=[common, site], help="unpublish a named preview")
    prm.add_argument("name", metavar="NAME")

    hooks = command("hooks", cmd_hooks, "a site's webhooks (signed event deliveries)",
                    group=True)  # fmt: skip
    hooks_sub = hooks.add_subparsers(dest="hooks_command", required=True, parser_class=_Parser)
    hooks_sub.add_parser("ls", parents=[common, site], help="a site's webhooks")
    hadd = hooks_sub.add_parser("add", parents=[common, site], help="add a webhook")
    hadd.add_argument("hook_url", metavar="URL", help="https URL to POST each event to")
    hadd.add_argument("--event", action="append", choices=HOOK_EVENTS,
                      help="an event to deliver (repeatable; default: every event)")  # fmt: skip
    for name, text in (("rm", "remove a webhook"), ("ping", "send a test event"),
                       ("deliveries", "a webhook's recent deliveries")):  # fmt: skip
        one = hooks_sub.add_parser(name, parents=[common, site], help=text)
        one.add_argument("hook_id", metavar="HOOK_ID")

    deploys = command("deploys", cmd_deploys_rm, "deploy management", group=True)
    deploys_sub = deploys.add_subparsers(dest="deploys_command", required=True,
                                         parser_class=_Parser)  # fmt: skip
    drm = deploys_sub.add_parser("rm", parents=[common, site], help="move a deploy to trash")
    drm.add_argument("deploy_id", metavar="ID")

    command("trash", cmd_trash, "a site's trashed deploys", site_scoped=True)
    res = command("restore", cmd_restore, "bring a trashed deploy back", site_scoped=True)
    res.add_argument("deploy_id", metavar="ID")

    audit = command("audit", cmd_audit, "the audit log", group=True)
    audit_sub = audit.add_subparsers(dest="audit_command", required=True, parser_class=_Parser)
    als = audit_sub.add_parser("ls", parents=[common], help="audit rows, newest first")
    als.add_argument("--site", help="exact site slug")
    als.add_argument("--actor", help="exact actor")
    als.add_argument("--action", help="exact action, e.g. site.promote")
    als.add_argument("--since", help="RFC 3339 time")
    als.add_argument("--limit", type=int, help="page size (default 100, at most 500)")
    als.add_argument("--offset", type=int, help="rows to skip")
    return parser


def main(argv: list[str] | None = None) -> int:
    as_json = "--json" in (sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(argv)
        flags = {"url": args.url, "token": args.token, "config": args.config,
                 "site": getattr(args, "site", None), "dir": None}  # fmt: skip
        if args.command == "audit":
            flags["site"] = None  # --site is a filter here, not the project's site
        config = resolve(flags)
        doc, text = args.func(args, config)
    except CliError as err:
        if as_json:
            print(json.dumps(err.to_json()), file=sys.stderr)
        else:
            detail = "".join(
                f"\n  {f['path']}: {f['code']}: {f['message']}" for f in err.extra.get("failed", [])
            )
            print(f"artemis: {err.code}: {err.message}{detail}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        return USAGE
    if as_json:
        print(json.dumps(doc))
    elif text:
        print(text)
    return OK


if __name__ == "__main__":
    sys.exit(main())
