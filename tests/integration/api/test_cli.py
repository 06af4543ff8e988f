"""The client CLI (`cli/`) against the local gateway: real API handler, Postgres, moto S3 and
the fake GitHub. Every command runs in-process through `artemis_cli.main.main` (the console
script is that function) with its `--json` output parsed; one test runs the installed
`artemis` script itself."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from artemis import content_types, invocation
from artemis.keys import Slug
from artemis.services import bundles as bundles_service
from artemis_cli import errors
from artemis_cli.deploy import run_deploy
from artemis_cli.main import main
from tests.integration.api.conftest import DEV, STAFF, UPLOAD_MAX_BYTES, Api

ACTIONS_VARIABLES = (
    "GITHUB_SHA", "GITHUB_ACTIONS", "GITHUB_EVENT_NAME", "GITHUB_EVENT_PATH", "GITHUB_HEAD_REF",
    "GITHUB_REF_NAME", "GITHUB_REF", "GITHUB_REPOSITORY", "GITHUB_SERVER_URL", "GITHUB_RUN_ID",
    "ACTIONS_ID_TOKEN_REQUEST_URL", "ACTIONS_ID_TOKEN_REQUEST_TOKEN", "ARTEMIS_OIDC_AUDIENCE",
)  # fmt: skip
SITE_FILES = {
    "index.html": b"<!doctype html><link rel=stylesheet href=style.css><h1>Home</h1>",
    "style.css": b"h1 { color: rgb(0, 128, 0); }",
    "docs/index.html": b"<h1>Docs</h1>",
    "img/logo.png": bytes(range(256)) * 8,
}


@dataclass
class Run:
    code: int
    out: str
    err: str

    @property
    def doc(self) -> Any:
        return json.loads(self.out)

    @property
    def error(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.err.strip().splitlines()[-1])["error"]
        return parsed


Cli = Callable[..., Run]


@pytest.fixture
def cli(
    api: Api, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[Cli]:
    """`cli(*argv, token=...)`: run the CLI against the gateway from an empty directory."""
    # The tests run in CI too: none of its Actions variables may leak into a deploy.
    for name in ("ARTEMIS_TOKEN", "GITHUB_TOKEN", "GH_TOKEN", "ARTEMIS_SITE", "ARTEMIS_DIR",
                 *ACTIONS_VARIABLES):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ARTEMIS_URL", api.base)
    monkeypatch.chdir(tmp_path)

    def run(*argv: str, token: str | None = STAFF) -> Run:
        if token is None:
            monkeypatch.delenv("ARTEMIS_TOKEN", raising=False)
        else:
            monkeypatch.setenv("ARTEMIS_TOKEN", token)
        capsys.readouterr()
        code = main(list(argv))
        captured = capsys.readouterr()
        return Run(code, captured.out, captured.err)

    yield run


def slug() -> str:
    return f"cli-{uuid.uuid4().hex[:8]}"


def build(root: Path, files: dict[str, bytes] = SITE_FILES) -> Path:
    for path, data in files.items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return root


def deploy_prefix(api: Api, site: str, deploy_id: str) -> str:
    layout = api.rt.settings.key_layout
    return layout.deploy_prefix(layout.dirname(Slug(site)), deploy_id)


def deploy(cli: Cli, site: str, directory: Path, *extra: str) -> dict[str, Any]:
    done = cli("deploy", str(directory), "--site", site, "--sha", uuid.uuid4().hex[:7],
               "--json", *extra)  # fmt: skip
    assert done.code == 0, done.err
    doc: dict[str, Any] = done.doc
    return doc


# --- deploy --------------------------------------------------------------------------------


def test_deploy_uploads_the_tree_and_goes_live_on_preview(
    cli: Cli, api: Api, tmp_path: Path
) -> None:
    site = slug()
    api.register(site)
    doc = deploy(cli, site, build(tmp_path / "site"))
    assert doc["site"] == site and doc["mode"] == "preview" and doc["files"] == 4
    assert doc["bytes"] == sum(len(b) for b in SITE_FILES.values())
    assert doc["refused"] == [] and doc["direct"] == 0
    alias = api.call("GET", f"/api/site/{site}/alias/preview", token=STAFF).body
    assert alias["deployId"] == doc["deployId"] and doc["url"] == alias["url"]
    prefix = deploy_prefix(api, site, doc["deployId"])
    assert api.rt.bucket.get(prefix + "img/logo.png") == SITE_FILES["img/logo.png"]
    head = api.rt.bucket.client.head_object(Bucket=api.rt.bucket.name, Key=prefix + "style.css")
    # An incremental deploy lets the server type every file (a bundle carries no types).
    assert head["ContentType"] == content_types.content_type_for("style.css", None)


def test_deploy_promote_goes_live_on_production(cli: Cli, api: Api, tmp_path: Path) -> None:
    site = slug()
    api.register(site)
    doc = deploy(cli, site, build(tmp_path / "site"), "--promote")
    assert doc["mode"] == "production"
    alias = api.call("GET", f"/api/site/{site}/alias/production", token=STAFF).body
    assert alias["deployId"] == doc["deployId"]


def test_skips_dotfiles_and_refuses_a_link_out_of_the_directory(
    cli: Cli, api: Api, tmp_path: Path
) -> None:
    site = slug()
    api.register(site)
    root = build(tmp_path / "site")
    secret = tmp_path / "secret.txt"
    secret.write_text("not for the web")
    (root / "leak.txt").symlink_to(secret)
    (root / "inside.css").symlink_to(root / "style.css")
    build(root, {".env": b"TOKEN=x", ".git/config": b"[core]"})
    done = cli("deploy", str(root), "--site", site, "--sha", "abc1234")
    assert done.code == 0, done.err
    assert "refusing leak.txt: a link to" in done.err and "outside the directory" in done.err
    doc = deploy(cli, site, root)
    assert doc["refused"] == [{"path": "leak.txt", "reason": f"a link to {secret.resolve()},"
                               " outside the directory"}]  # fmt: skip
    prefix = deploy_prefix(api, site, doc["deployId"])
    keys = {o.key.removeprefix(prefix) for o in api.rt.bucket.list_keys(prefix)}
    assert keys == {*SITE_FILES, "inside.css", "_artemis_meta.json"}
    assert api.rt.bucket.get(prefix + "inside.css") == SITE_FILES["style.css"]


def test_one_failed_upload_leaves_the_deploy_unfinalized(
    cli: Cli, api: Api, tmp_path: Path
) -> None:
    """The server refuses the reserved marker name as an upload path: that one file fails,
    the others upload, nothing is finalized, and the exit code says partial upload."""
    site = slug()
    api.register(site)
    root = build(tmp_path / "site", {**SITE_FILES, "_artemis_meta.json": b"{}"})
    done = cli("deploy", str(root), "--site", site, "--sha", "abc1234", "--json")
    assert done.code == errors.PARTIAL_UPLOAD == 5
    assert done.out == ""
    error = done.error
    assert error["code"] == "partial_upload"
    assert [f["path"] for f in error["failed"]] == ["_artemis_meta.json"]
    assert error["failed"][0]["code"] == "bad_request"
    deploy_id = error["deployId"]
    assert api.call("GET", f"/api/site/{site}/alias/preview", token=STAFF).code == "no_alias"
    rows = api.sql("SELECT state FROM deploys WHERE id = %s", [deploy_id])
    assert rows in ([], [("pending",)])
    marker = deploy_prefix(api, site, deploy_id) + "_artemis_meta.json"
    assert api.rt.bucket.head(marker) is None


def test_direct_uploads_go_straight_to_the_bucket(cli: Cli, api: Api, tmp_path: Path) -> None:
    site = slug()
    api.register(site)
    big = os.urandom(200 * 1024)  # below the test server's UPLOAD_MAX_BYTES
    assert len(big) < UPLOAD_MAX_BYTES
    root = build(tmp_path / "site", {**SITE_FILES, "media/clip.bin": big})
    doc = deploy(cli, site, root, "--direct", "--concurrency", "3")
    assert doc["direct"] == 5
    prefix = deploy_prefix(api, site, doc["deployId"])
    assert api.rt.bucket.get(prefix + "media/clip.bin") == big
    uploads = [path for method, path in api.calls if method == "PUT"]
    assert not [p for p in uploads if doc["deployId"] in p]  # nothing through the API body


def test_deploy_without_index_html_fails_before_contacting_the_server(
    cli: Cli, api: Api, tmp_path: Path
) -> None:
    site = slug()
    root = build(tmp_path / "site", {"about.html": b"<p>about</p>"})
    before = len(api.calls)
    done = cli("deploy", str(root), "--site", site, "--json")
    assert done.code == errors.FAILED and done.error["code"] == "missing_index"
    assert len(api.calls) == before


def test_the_project_file_names_the_site_and_the_directory(
    cli: Cli, api: Api, tmp_path: Path
) -> None:
    site = slug()
    api.register(site)
    build(tmp_path / "dist")
    (tmp_path / "artemis.yaml").write_text(f"site: {site}\ndir: dist\n")
    done = cli("deploy", "--json", "--sha", "feed123")
    assert done.code == 0, done.err
    assert done.doc["site"] == site and done.doc["files"] == 4


def test_deploy_from_another_directory_takes_the_sha_of_the_directorys_checkout(
    cli: Cli, api: Api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`artemis deploy DIR` run from elsewhere: the id ends with DIR's HEAD, never `-None`;
    a DIR outside any checkout deploys as `local`."""
    for name in ("GIT_DIR", "GIT_WORK_TREE"):
        monkeypatch.delenv(name, raising=False)
    project = tmp_path / "project"
    project.mkdir()
    for argv in (["init", "-q"], ["commit", "-q", "--allow-empty", "-m", "site"]):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.org", *argv],
                       cwd=project, check=True, capture_output=True, timeout=30)  # fmt: skip
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=project, check=True,
                          capture_output=True, text=True, timeout=30).stdout.strip()  # fmt: skip
    site = slug()
    api.register(site)
    # The cli fixture runs from tmp_path, which is not a checkout.
    done = cli("deploy", str(build(project / "dist")), "--site", site, "--json")
    assert done.code == 0, done.err
    assert done.doc["deployId"].endswith(f"-{head[:7]}")  # ids carry the first 7 characters
    plain = cli("deploy", str(build(tmp_path / "plain")), "--site", site, "--json")
    assert plain.code == 0, plain.err
    assert plain.doc["deployId"].endswith("-local")


# --- incremental deploys (the default) ------------------------------------------------------

TREE = {
    **SITE_FILES,
    **{f"assets/{n:02d}.js": f"export const n = {n};".encode() * (n + 1) for n in range(30)},
    "café/menu.html": "<p>crème brûlée</p>".encode(),
    "empty.txt": b"",
}


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Every request the CLI sends, as (method, URL path): the real sender, recorded."""
    import artemis_cli.http

    seen: list[tuple[str, str]] = []
    real = artemis_cli.http.send

    def recording(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        seen.append((method, url.split("?", 1)[0]))
        return real(method, url, *args, **kwargs)

    monkeypatch.setattr(artemis_cli.http, "send", recording)
    return seen


def served(api: Api, site: str, path: str) -> tuple[int, bytes]:
    reply = api.call("GET", "/" + quote(path), headers={"Host": f"{site}.localhost"})
    return reply.status, reply.raw


def index_of(api: Api, site: str, deploy_id: str) -> dict[str, str]:
    rows = api.sql("SELECT path, sha256 FROM deploy_files WHERE deploy_id = %s", [deploy_id])
    return {str(path): bytes(digest).hex() for path, digest in rows}


def test_json_counts_and_a_redeploy_of_the_same_tree_uploads_nothing(
    cli: Cli, api: Api, tmp_path: Path, sent: list[tuple[str, str]]
) -> None:
    site = slug()
    api.register(site)
    root = build(tmp_path / "site", TREE)
    first = deploy(cli, site, root, "--promote")
    assert (first["files"], first["uploaded"], first["copied"]) == (len(TREE), len(TREE), 0)
    assert first["bundles"] == 1 and first["direct"] == 0  # every file fits one bundle
    # init, one digests chunk, one bundle, finalize: nothing per file
    assert first["requests"] == len(sent) == 4
    assert [m for m, _ in sent] == ["POST", "POST", "PUT", "POST"]
    sent.clear()
    second = deploy(cli, site, root, "--promote")
    assert (second["uploaded"], second["copied"], second["bundles"]) == (0, len(TREE), 0)
    assert second["requests"] == len(sent) == 3  # init, digests, finalize
    prefix = deploy_prefix(api, site, second["deployId"])
    for path, data in TREE.items():
        assert api.rt.bucket.get(prefix + path) == data, path
        assert served(api, site, path) == (200, data), path
    digests = {p: hashlib.sha256(d).hexdigest() for p, d in TREE.items()}
    assert index_of(api, site, second["deployId"]) == digests


def slow_bucket(monkeypatch: pytest.MonkeyPatch, requests: int | None) -> None:
    """The bundle route's first `requests` requests (every one: None) find their time spent
    before the first write, as behind a bucket too slow for the request's budget."""
    real = invocation.stop_time
    calls = 0

    def stop_time(seconds: float, reserve_seconds: float) -> float:
        nonlocal calls
        calls += 1
        if requests is None or calls <= requests:
            return time.monotonic() - 1
        return real(seconds, reserve_seconds)

    monkeypatch.setattr(bundles_service, "stop_time", stop_time)


def test_a_bundle_the_server_had_no_time_for_is_sent_again_until_it_lands(
    cli: Cli, api: Api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = slug()
    api.register(site)
    root = build(tmp_path / "site", TREE)
    slow_bucket(monkeypatch, requests=2)
    doc = deploy(cli, site, root, "--promote")
    assert (doc["uploaded"], doc["bundles"]) == (len(TREE), 3)  # twice nothing, then all
    for path, data in TREE.items():
        assert served(api, site, path) == (200, data), path


def test_a_server_that_never_writes_a_bundle_fails_the_deploy_unfinalized(
    cli: Cli, api: Api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = slug()
    api.register(site)
    root = build(tmp_path / "site", TREE)
    slow_bucket(monkeypatch, requests=None)
    done = cli("deploy", str(root), "--site", site, "--sha", "abc1234", "--json")
    assert done.code == errors.PARTIAL_UPLOAD, done.err
    error = done.error
    assert error["code"] == "partial_upload"
    assert {f["code"] for f in error["failed"]} == {"bundle_stalled"}
    assert api.sql("SELECT count(*) FROM deploys WHERE state = 'active'") == [(0,)]


def test_a_one_file_change_uploads_that_file_and_serves_the_new_bytes(
    cli: Cli, api: Api, tmp_path: Path
) -> None:
    site = slug()
    api.register(site)
    root = build(tmp_path / "site", TREE)
    deploy(cli, site, root, "--promote")
    changed = b"h1 { color: rgb(0, 0, 255); }"
    (root / "style.css").write_bytes(changed)
    doc = deploy(cli, site, root, "--promote")
    assert (doc["uploaded"], doc["copied"], doc["bundles"]) == (1, len(TREE) - 1, 1)
    assert served(api, site, "style.css") == (200, changed)
    for path, data in TREE.items():
        if path != "style.css":
            assert served(api, site, path) == (200, data), path
    (root / "empty.txt").write_bytes(b"now with bytes")
    human = cli("deploy", str(root), "--site", site, "--sha", "abc1234")
    assert human.code == 0, human.err
    assert f"to preview: 1 uploaded, {len(TREE) - 1} unchanged\n" in human.out


def test_no_incremental_uploads_every_file_one_request_each(
    cli: Cli, api: Api, tmp_path: Path, sent: list[tuple[str, str]]
) -> None:
    site = slug()
    api.register(site)
    root = build(tmp_path / "site", TREE)
    deploy(cli, site, root)
    sent.clear()
    doc = deploy(cli, site, root, "--no-incremental", "--promote")
    assert (doc["uploaded"], doc["copied"], doc["bundles"]) == (len(TREE), 0, 0)
    assert not [u for _, u in sent if u.endswith(("/digests", "/bundle"))]
    puts = [u for m, u in sent if m == "PUT" and u.endswith("/upload")]
    assert len(puts) == len(TREE) and doc["requests"] == len(TREE) + 2
    for path, data in TREE.items():
        assert served(api, site, path) == (200, data), path


def test_a_file_over_the_bundle_threshold_goes_by_presigned_post_with_its_digest(
    cli: Cli, api: Api, tmp_path: Path, sent: list[tuple[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    import artemis_cli.deploy

    # The test server's UPLOAD_MAX_BYTES is below the real threshold.
    monkeypatch.setattr(artemis_cli.deploy, "BUNDLE_THRESHOLD", 64 * 1024)
    site = slug()
    api.register(site)
    big = os.urandom(200 * 1024)
    assert len(big) < UPLOAD_MAX_BYTES
    root = build(tmp_path / "site", {**TREE, "media/clip.bin": big})
    doc = deploy(cli, site, root, "--promote")
    assert doc["direct"] == 1 and doc["bundles"] == 1 and doc["uploaded"] == len(TREE) + 1
    api_host = api.base.split("//", 1)[1]
    posts = [u for m, u in sent if m == "POST" and api_host not in u]
    assert len(posts) == 1  # one POST to the bucket, not through the API
    prefix = deploy_prefix(api, site, doc["deployId"])
    assert api.rt.bucket.get(prefix + "media/clip.bin") == big
    # The presigned POST bound the digest, so the server indexed it without seeing the bytes.
    assert index_of(api, site, doc["deployId"])["media/clip.bin"] == hashlib.sha256(big).hexdigest()
    assert served(api, site, "media/clip.bin") == (200, big)
    again = deploy(cli, site, root)
    assert (again["uploaded"], again["copied"], again["direct"]) == (0, len(TREE) + 1, 0)


def test_a_manifest_chunk_refused_as_too_large_is_halved(
    cli: Cli, api: Api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    sent: list[tuple[str, str]],
) -> None:  # fmt: skip
    """A gateway with a smaller body limit than the server's: the CLI halves the chunk until
    it passes, and every file still lands."""
    import artemis_cli.http
    from artemis_cli.http import Reply

    real = artemis_cli.http.send
    refused: list[int] = []

    def small_gateway(method: str, url: str, body: bytes | None, *args: Any) -> Reply:
        if url.endswith("/digests") and body is not None and len(body) > 2000:
            refused.append(len(body))
            return Reply(413, b'{"message":"Request Entity Too Large"}', {})
        return real(method, url, body, *args)

    monkeypatch.setattr(artemis_cli.http, "send", small_gateway)
    site = slug()
    api.register(site)
    root = build(tmp_path / "site", TREE)
    doc = deploy(cli, site, root, "--promote")
    assert doc["uploaded"] == len(TREE)
    assert refused and len(refused) < doc["requests"]
    assert len([u for _, u in sent if u.endswith("/digests")]) >= 2  # the halves that passed
    for path, data in TREE.items():
        assert served(api, site, path) == (200, data), path


# --- the other commands, each through --json --------------------------------------------


def test_whoami_json(cli: Cli, api: Api) -> None:
    site = slug()
    api.register(site, ["web"])
    done = cli("whoami", "--json", token=DEV)
    assert done.code == 0
    assert done.doc["login"] == "local-dev" and site in done.doc["authorizedSites"]


def test_promote_rollback_and_ls_json(cli: Cli, api: Api, tmp_path: Path) -> None:
    site = slug()
    api.register(site)
    first = deploy(cli, site, build(tmp_path / "v1"))["deployId"]
    promoted = cli("promote", "--site", site, "--json")
    assert promoted.code == 0 and promoted.doc["deployId"] == first
    second = deploy(cli, site, build(tmp_path / "v2", {**SITE_FILES, "v2.txt": b"2"}))["deployId"]
    assert cli("promote", "--site", site, "--from", second, "--json").doc["deployId"] == second
    listing = cli("ls", "--site", site, "--json")
    assert listing.code == 0
    assert listing.doc["production"] == second and listing.doc["preview"] == second
    # Oldest first by id; two deploys minted in one second order by their sha.
    assert [r["deployId"] for r in listing.doc["deploys"]] == sorted([first, second])
    back = cli("rollback", "--site", site, "--to", first, "--json")
    assert back.code == 0 and back.doc["deployId"] == first
    assert cli("ls", "--site", site, "--json").doc["production"] == first


# --- what a deploy records (issue 14) -----------------------------------------------------------
PR_HEAD = "0123456789abcdef0123456789abcdef01234567"
MERGE_SHA = "fedcba9876543210fedcba9876543210fedcba98"


def _actions(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, event: str,
             payload: dict[str, Any], **env: str) -> None:  # fmt: skip
    """A GitHub Actions run's environment, with its event payload in a file."""
    path = tmp_path / f"{event}.json"
    path.write_text(json.dumps(payload))
    values = {
        "GITHUB_ACTIONS": "true", "GITHUB_EVENT_NAME": event, "GITHUB_EVENT_PATH": str(path),
        "GITHUB_REPOSITORY": "freeCodeCamp/www", "GITHUB_SERVER_URL": "https://github.com",
        "GITHUB_RUN_ID": "8813456", "GITHUB_SHA": MERGE_SHA, **env,
    }  # fmt: skip
    for name, value in values.items():
        monkeypatch.setenv(name, value)


def test_a_pull_request_run_records_its_context(
    cli: Cli, api: Api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = slug()
    api.register(site)
    payload = {"number": 77, "pull_request": {
        "number": 77, "title": "Fix the footer links", "head": {"sha": PR_HEAD}}}  # fmt: skip
    _actions(monkeypatch, tmp_path, "pull_request", payload, GITHUB_HEAD_REF="fix/footer",
             GITHUB_REF_NAME="77/merge", GITHUB_REF="refs/pull/77/merge")  # fmt: skip
    done = cli("deploy", str(build(tmp_path / "site")), "--site", site, "--json")
    assert done.code == 0, done.err
    deploy_id = done.doc["deployId"]
    assert deploy_id.endswith("-" + PR_HEAD[:7])  # the PR's head commit, not the merge commit
    listing = cli("ls", "--site", site, "--json")
    assert listing.code == 0
    (row,) = listing.doc["deploys"]
    assert row["deployId"] == deploy_id and row["state"] == "live"
    assert row["aliases"] == ["preview"] and row["files"] == len(SITE_FILES)
    assert {k: row.get(k) for k in ("branch", "message", "pr", "repo", "ciUrl")} == {
        "branch": "fix/footer", "message": "Fix the footer links", "pr": 77,
        "repo": "freeCodeCamp/www",
        "ciUrl": "https://github.com/freeCodeCamp/www/actions/runs/8813456",
    }  # fmt: skip
    text = cli("ls", "--site", site)
    assert text.code == 0
    assert f"{deploy_id}  live  " in text.out and "fix/footer #77  ← preview" in text.out
    assert "    Fix the footer links" in text.out


def test_a_push_run_records_its_context_and_flags_override_it(
    cli: Cli, api: Api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = slug()
    api.register(site)
    payload = {"head_commit": {"id": MERGE_SHA, "message": "Add the donation page\n\nBody"}}
    _actions(monkeypatch, tmp_path, "push", payload, GITHUB_REF_NAME="main",
             GITHUB_REF="refs/heads/main", GITHUB_HEAD_REF="")  # fmt: skip
    done = cli("deploy", str(build(tmp_path / "site")), "--site", site, "--json")
    assert done.code == 0, done.err
    assert done.doc["deployId"].endswith("-" + MERGE_SHA[:7])  # GITHUB_SHA
    flagged = cli("deploy", str(build(tmp_path / "site")), "--site", site, "--json",
                  "--sha", "f1a9f1a", "--branch", "release/v2", "--message", "Cut v2",
                  "--pr", "9", "--repo", "o/r", "--ci-url", "https://ci.example/run/1")  # fmt: skip
    assert flagged.code == 0, flagged.err
    rows = {r["deployId"]: r for r in cli("ls", "--site", site, "--json").doc["deploys"]}
    pushed = rows[done.doc["deployId"]]
    assert (pushed["branch"], pushed["message"], pushed["repo"]) == (
        "main", "Add the donation page", "freeCodeCamp/www")  # fmt: skip
    assert "pr" not in pushed
    mine = rows[flagged.doc["deployId"]]
    assert {k: mine[k] for k in ("branch", "message", "pr", "repo", "ciUrl")} == {
        "branch": "release/v2", "message": "Cut v2", "pr": 9, "repo": "o/r",
        "ciUrl": "https://ci.example/run/1"}  # fmt: skip


def test_refused_metadata_fails_the_deploy_before_any_upload(
    cli: Cli, api: Api, tmp_path: Path
) -> None:
    site = slug()
    api.register(site)
    done = cli("deploy", str(build(tmp_path / "site")), "--site", site, "--json",
               "--ci-url", "javascript:alert(1)")  # fmt: skip
    assert done.code != 0 and done.error["code"] == "invalid_metadata"
    assert cli("ls", "--site", site, "--json").doc["deploys"] == []


def test_ls_json_shows_pending_and_tombstoned_deploys(cli: Cli, api: Api, tmp_path: Path) -> None:
    site = slug()
    api.register(site)
    old = deploy(cli, site, build(tmp_path / "v1"), "--branch", "main")["deployId"]
    deploy(cli, site, build(tmp_path / "v2"))  # preview moves off `old`
    assert cli("deploys", "rm", old, "--site", site, "--json").code == 0
    pending = api.call("POST", "/api/deploy/init", token=STAFF,
                       json_body={"site": site, "sha": "pend123"}).body["deployId"]  # fmt: skip
    states = {r["deployId"]: r["state"] for r in cli("ls", "--site", site, "--json").doc["deploys"]}
    assert states[old] == "tombstoned" and states[pending] == "pending"
    assert sorted(states.values()) == ["live", "pending", "tombstoned"]


def test_deploys_rm_trash_and_restore_json(cli: Cli, api: Api, tmp_path: Path) -> None:
    site = slug()
    api.register(site)
    old = deploy(cli, site, build(tmp_path / "v1"))["deployId"]
    live = deploy(cli, site, build(tmp_path / "v2"))["deployId"]  # preview moves off `old`
    assert cli("promote", "--site", site, "--json").code == 0
    refused = cli("deploys", "rm", live, "--site", site, "--json")
    assert refused.code == errors.CONFLICT == 6 and refused.error["code"] == "deploy_aliased"
    gone = cli("deploys", "rm", old, "--site", site, "--json")
    assert gone.code == 0
    assert gone.doc["deployId"] == old and gone.doc["status"] == "tombstoned"
    trash = cli("trash", "--site", site, "--json")
    assert trash.code == 0 and [r["deployId"] for r in trash.doc] == [old]
    back = cli("restore", old, "--site", site, "--json")
    assert back.code == 0 and back.doc["status"] == "restored" and back.doc["moved"] > 0
    assert cli("trash", "--site", site, "--json").doc == []


def test_sites_register_ls_update_rm_json(cli: Cli, api: Api) -> None:
    site = slug()
    made = cli("sites", "register", site, "--team", "web", "--json")
    assert made.code == 0 and made.doc["slug"] == site and made.doc["teams"] == ["web"]
    again = cli("sites", "register", site, "--json")
    assert again.code == errors.CONFLICT and again.error["code"] == "already_exists"
    listed = cli("sites", "ls", "--json")
    assert listed.code == 0 and site in [r["slug"] for r in listed.doc]
    changed = cli("sites", "update", site, "--team", "web", "--team", "staff", "--json")
    assert changed.code == 0 and changed.doc["teams"] == ["web", "staff"]
    removed = cli("sites", "rm", site, "--json")
    assert removed.code == 0 and removed.doc == {"slug": site, "status": "deleted"}
    assert site not in [r["slug"] for r in cli("sites", "ls", "--json").doc]


def test_sites_rm_purge_json(cli: Cli, api: Api, tmp_path: Path) -> None:
    site = slug()
    api.register(site)
    deploy(cli, site, build(tmp_path / "v1"), "--promote")
    purged = cli("sites", "rm", site, "--purge", "--json")
    assert purged.code == 0 and purged.doc["status"] == "purged" and purged.doc["moved"] > 0


def test_sites_trust_add_ls_rm_json(cli: Cli, api: Api) -> None:
    site = slug()
    api.register(site, ["web"])
    added = cli("sites", "trust", "add", site, "--repo", "octo-org/www", "--repo-id", "42",
                "--workflow", ".github/workflows/deploy.yml", "--environment", "production",
                "--ref", "refs/heads/main", "--alias", "production", "--alias", "pr-*",
                "--json")  # fmt: skip
    assert added.code == 0, added.err
    rule = added.doc
    assert rule["repository"] == "octo-org/www" and rule["repositoryId"] == 42
    assert rule["aliases"] == ["production", "pr-*"] and rule["ref"] == "refs/heads/main"
    listed = cli("sites", "trust", "ls", site, "--json")
    assert listed.code == 0 and listed.doc == [rule]
    removed = cli("sites", "trust", "rm", site, rule["id"], "--json")
    assert removed.code == 0 and removed.doc == rule
    assert cli("sites", "trust", "ls", site, "--json").doc == []
    gone = cli("sites", "trust", "rm", site, rule["id"], "--json")
    assert gone.code == errors.FAILED and gone.error["code"] == "trust_rule_not_found"


def test_sites_trust_human_text_and_refusals(cli: Cli, api: Api) -> None:
    site = slug()
    api.register(site, ["web"])
    base = ("sites", "trust", "add", site, "--repo", "octo-org/www", "--repo-id", "42",
            "--workflow", ".github/workflows/deploy.yml")  # fmt: skip
    added = cli(*base, "--alias", "preview")
    assert added.code == 0, added.err
    assert added.out.startswith("added tr_")
    assert "octo-org/www#42  .github/workflows/deploy.yml  -> preview" in added.out
    assert "-> preview" in cli("sites", "trust", "ls", site).out
    bad = cli(*base, "--alias", "PRODUCTION", "--json")
    assert bad.code == errors.FAILED and bad.error["code"] == "invalid_trust_rule"
    assert bad.error["field"] == "aliases"
    negative = cli(*base[:7], "-5", *base[8:], "--alias", "preview", "--json")
    assert negative.code == errors.FAILED and negative.error["field"] == "repositoryId"
    dev = cli(*base, "--alias", "production", "--json", token=DEV)
    assert dev.code == errors.CREDENTIALS and dev.error["code"] == "user_unauthorized"
    missing = cli("sites", "trust", "add", site, "--repo", "octo-org/www", "--json")
    assert missing.code == errors.USAGE
    assert cli("sites", "trust", "ls", site, "--json", token=DEV).code == 0
    empty = slug()
    api.register(empty)
    assert cli("sites", "trust", "ls", empty).out.strip() == f"{empty}: no trust rules"


def test_audit_ls_json_with_filters(cli: Cli, api: Api, tmp_path: Path) -> None:
    site = slug()
    api.register(site)
    deployed = deploy(cli, site, build(tmp_path / "v1"))["deployId"]
    cli("promote", "--site", site, "--json")
    rows = cli("audit", "ls", "--site", site, "--action", "site.promote", "--json")
    assert rows.code == 0
    assert [(r["action"], r["deployId"]) for r in rows.doc] == [("site.promote", deployed)]
    everything = cli("audit", "ls", "--site", site, "--limit", "50", "--json").doc
    assert {"site.register", "deploy.finalize", "site.promote"} <= {r["action"] for r in everything}
    bad = cli("audit", "ls", "--since", "yesterday", "--json")
    assert bad.code == errors.FAILED and bad.error["code"] == "invalid_since"


# --- credentials and usage -----------------------------------------------------------------


def test_exit_codes_for_credentials_and_usage(cli: Cli, api: Api) -> None:
    none = cli("whoami", "--json", token=None)
    assert none.code == errors.CREDENTIALS == 3 and none.error["code"] == "no_token"
    wrong = cli("whoami", "--json", token="not-a-token")
    assert wrong.code == errors.CREDENTIALS and wrong.error["code"] == "unauthenticated"
    outsider = cli("trash", "--site", "www", "--json", token="local-outsider-token")
    assert outsider.code == errors.CREDENTIALS
    bad_flag = cli("deploy", "--concurrency", "many", "--json")
    assert bad_flag.code == errors.USAGE == 2 and bad_flag.error["code"] == "usage"
    no_site = cli("ls", "--json")
    assert no_site.code == errors.USAGE and "no site" in no_site.error["message"]


def test_the_installed_console_script_runs(api: Api, tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("artemis")
    env = {k: v for k, v in os.environ.items() if not k.endswith("TOKEN")}
    env.update(ARTEMIS_URL=api.base, GH_TOKEN=STAFF)
    done = subprocess.run([str(script), "whoami", "--json"], env=env, capture_output=True,
                          text=True, timeout=60, cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["login"] == "local-staff"


def test_a_file_the_bucket_lost_after_its_upload_is_sent_again(api: Api, tmp_path: Path) -> None:
    """Finalize's verify names files the bucket does not have although their uploads were
    acknowledged: the client sends exactly those again and finalizes."""
    from artemis_cli.files import collect
    from artemis_cli.http import Api as Client
    from artemis_cli.progress import Progress

    site = slug()
    api.register(site)
    build_dir = build(tmp_path / "site")
    lost: list[str] = []

    class LoseStyleCss(Progress):
        """Deletes style.css from the bucket right after its upload is acknowledged."""

        def advance(self, size: int) -> None:
            super().advance(size)
            if not lost:
                for obj in api.rt.bucket.list_keys(""):
                    if obj.key.endswith("/style.css"):
                        api.rt.bucket.client.delete_object(Bucket=api.rt.bucket.name, Key=obj.key)
                        lost.append(obj.key)

    result = run_deploy(
        Client(api.base, STAFF), site, collect(build_dir), "abc1234",
        progress=LoseStyleCss(4, 0, enabled=False), concurrency=1,
    )  # fmt: skip
    assert lost and lost[0].endswith("style.css")
    assert api.rt.bucket.get(lost[0]) == SITE_FILES["style.css"]
    assert result.deploy_id in lost[0]


def test_a_presigned_post_older_than_its_freshness_is_issued_again(
    cli: Cli, api: Api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server's presigned POSTs expire within 15 minutes; a build whose uploads run longer
    asks again for the files it has not sent yet instead of posting with an expired policy."""
    import artemis_cli.deploy
    from artemis_cli.http import Api as CliApi

    presigns: list[int] = []
    real_call = CliApi.call

    def counting(self: CliApi, method: str, path: str, **kwargs: Any) -> Any:
        if path.endswith("/uploads"):
            presigns.append(len(kwargs["json_body"]["files"]))
        return real_call(self, method, path, **kwargs)

    monkeypatch.setattr(CliApi, "call", counting)
    monkeypatch.setattr(artemis_cli.deploy, "PRESIGN_FRESH_SECONDS", -1.0)  # always stale
    site = slug()
    api.register(site)
    root = build(tmp_path / "site", SITE_FILES)
    doc = deploy(cli, site, root, "--direct", "--concurrency", "2")
    assert doc["direct"] == len(SITE_FILES)
    assert presigns == [len(SITE_FILES)] + [1] * len(SITE_FILES)
    prefix = deploy_prefix(api, site, doc["deployId"])
    for path, data in SITE_FILES.items():
        assert api.rt.bucket.get(prefix + path) == data


# --- named previews (issue 14) ------------------------------------------------------------------


def _serve(api: Api, host: str, path: str = "/") -> tuple[int, bytes]:
    reply = api.call("GET", path, headers={"Host": host})
    return reply.status, reply.raw


def test_a_pull_request_run_deploys_to_its_own_preview_and_removes_it(
    cli: Cli, api: Api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = slug()
    api.register(site)
    plain = deploy(cli, site, build(tmp_path / "plain", {"index.html": b"<h1>main</h1>"}))
    payload = {"number": 12, "pull_request": {"number": 12, "title": "New footer",
                                              "head": {"sha": PR_HEAD}}}  # fmt: skip
    _actions(monkeypatch, tmp_path, "pull_request", payload, GITHUB_HEAD_REF="new-footer",
             GITHUB_REF="refs/pull/12/merge")  # fmt: skip
    tree = build(tmp_path / "pr", {"index.html": b"<h1>pr 12</h1>", "style.css": b"h1{}"})
    done = cli("deploy", str(tree), "--site", site, "--alias", "--json")
    assert done.code == 0, done.err
    deploy_id = done.doc["deployId"]
    url = f"https://pr-12--{site}.preview.example.org"
    assert (done.doc["alias"], done.doc["mode"], done.doc["url"]) == ("pr-12", "preview", url)
    # Served by host and by path; the site's own preview still serves the earlier deploy.
    assert _serve(api, f"pr-12--{site}.preview.localhost") == (200, b"<h1>pr 12</h1>")
    assert _serve(api, "127.0.0.1", f"/_serve/{site}/pr-12/") == (200, b"<h1>pr 12</h1>")
    assert _serve(api, f"{site}.preview.localhost") == (200, b"<h1>main</h1>")
    assert plain["mode"] == "preview"
    listed = cli("previews", "ls", "--site", site, "--json")
    assert listed.code == 0
    assert [(p["name"], p["deployId"], p["url"]) for p in listed.doc] == [("pr-12", deploy_id, url)]
    row = next(r for r in cli("ls", "--site", site, "--json").doc["deploys"]
               if r["deployId"] == deploy_id)  # fmt: skip
    assert (row["aliases"], row["pr"], row["branch"]) == (["pr-12"], 12, "new-footer")
    text = cli("previews", "ls", "--site", site)
    assert f"pr-12  {deploy_id}  {url}" in text.out
    gone = cli("previews", "rm", "pr-12", "--site", site, "--json")
    assert gone.code == 0, gone.err
    assert gone.doc == {"name": "pr-12", "deployId": deploy_id, "status": "removed"}
    assert cli("previews", "ls", "--site", site, "--json").doc == []
    assert _serve(api, f"pr-12--{site}.preview.localhost")[0] == 404
    again = cli("previews", "rm", "pr-12", "--site", site, "--json")
    assert again.code != 0 and again.error["code"] == "no_alias"


def test_a_branch_run_deploys_to_the_branch_name(
    cli: Cli, api: Api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = slug()
    api.register(site)
    _actions(monkeypatch, tmp_path, "push", {"head_commit": {"message": "Docs"}},
             GITHUB_REF_NAME="Feature/Login_Page", GITHUB_HEAD_REF="")  # fmt: skip
    done = cli("deploy", str(build(tmp_path / "site")), "--site", site, "--alias", "--json")
    assert done.code == 0, done.err
    assert done.doc["alias"] == "feature-login-page"


def test_an_explicit_alias_then_promote_from_it(cli: Cli, api: Api, tmp_path: Path) -> None:
    site = slug()
    api.register(site)
    done = deploy(cli, site, build(tmp_path / "site"), "--alias", "docs-v2")
    assert done["alias"] == "docs-v2"
    moved = cli("promote", "--site", site, "--preview", "docs-v2", "--from", done["deployId"],
                "--json")  # fmt: skip
    assert moved.code == 0, moved.err
    assert moved.doc["deployId"] == done["deployId"]
    newer = deploy(cli, site, build(tmp_path / "site"), "--alias", "docs-v2")
    stale = cli("promote", "--site", site, "--preview", "docs-v2", "--from", done["deployId"],
                "--json")  # fmt: skip
    assert stale.code == errors.CONFLICT and stale.error["code"] == "preview_moved"
    assert newer["deployId"] != done["deployId"]


@pytest.mark.parametrize(
    "argv",
    [
        ("--alias", "PR-1"),
        ("--alias", "production"),
        ("--alias", "x" * 41),
        ("--alias", "pr-1", "--promote"),
        ("--alias",),  # outside Actions, with no --pr or --branch to name it after
    ],
)
def test_an_alias_the_server_would_refuse_fails_before_any_request(
    cli: Cli, api: Api, tmp_path: Path, argv: tuple[str, ...]
) -> None:
    site = slug()
    api.register(site)
    done = cli("deploy", str(build(tmp_path / "site")), "--site", site, "--json",
               "--sha", "abc1234", *argv)  # fmt: skip
    assert done.code == errors.USAGE, done.err
    assert cli("ls", "--site", site, "--json").doc["deploys"] == []  # no init either


# --- trusted publishing: a GitHub Actions job with `id-token: write` and no secret -------------

TRUSTED_REPO, TRUSTED_REPO_ID = "freeCodeCamp/www", 4242


def _trust(api: Api, site: str, ref: str, aliases: list[str]) -> None:
    rule = {"repository": TRUSTED_REPO, "repositoryId": TRUSTED_REPO_ID,
            "workflow": ".github/workflows/deploy.yml", "ref": ref, "aliases": aliases}  # fmt: skip
    added = api.call("POST", f"/api/site/{site}/trust", token=STAFF, json_body=rule)
    assert added.status == 201, added.raw


def _id_token_request(api: Api, monkeypatch: pytest.MonkeyPatch, event: str, ref: str) -> None:
    """The runner's token endpoint, as the fake GitHub's mint for this run's claims (GitHub's
    URL carries a query already; the CLI appends the audience)."""
    claims = {"repository": TRUSTED_REPO, "repository_owner": "freeCodeCamp",
              "repository_id": str(TRUSTED_REPO_ID), "event_name": event, "ref": ref}  # fmt: skip
    query = "&".join(f"{k}={quote(v, safe='')}" for k, v in claims.items())
    monkeypatch.setenv("ACTIONS_ID_TOKEN_REQUEST_URL",
                       f"{api.github.url}/_oidc/token?api-version=2.0&{query}")  # fmt: skip
    monkeypatch.setenv("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "runner-request-token")


def _minted(api: Api) -> list[tuple[str, str]]:
    """(path, authorization) of every request the mint answered."""
    return [
        (path, headers.get("authorization", ""))
        for (_, path), headers in zip(api.github.requests, api.github.request_headers, strict=True)
        if path.startswith("/_oidc/token")
    ]


def test_a_push_to_main_deploys_to_production_with_no_secret(
    cli: Cli, api: Api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = slug()
    api.register(site)
    _trust(api, site, "refs/heads/main", ["production"])
    _actions(monkeypatch, tmp_path, "push", {"head_commit": {"id": MERGE_SHA, "message": "Ship"}},
             GITHUB_REF="refs/heads/main", GITHUB_REF_NAME="main")  # fmt: skip
    _id_token_request(api, monkeypatch, "push", "refs/heads/main")
    # the workflow's own GITHUB_TOKEN is in the environment, as it often is: not a person's
    monkeypatch.setenv("GITHUB_TOKEN", "ghs_workflow_installation_token")
    before = len(_minted(api))
    done = cli("deploy", str(build(tmp_path / "site")), "--site", site, "--promote", "--json",
               token=None)  # fmt: skip
    assert done.code == 0, done.err
    assert done.doc["mode"] == "production"
    layout = api.rt.settings.key_layout
    assert api.alias_object(layout.dirname(Slug(site)), "production") == done.doc["deployId"]
    # one token, asked for Artemis's audience with the runner's request token
    [(path, authorization)] = _minted(api)[before:]
    assert "audience=artemis" in path and "api-version=2.0" in path
    assert authorization == "bearer runner-request-token"
    actors = api.sql("SELECT DISTINCT actor FROM audit_log WHERE site = %s AND deploy_id = %s",
                     [site, done.doc["deployId"]])  # fmt: skip
    assert len(actors) == 1
    assert actors[0][0].startswith(f"repo:{TRUSTED_REPO}:.github/workflows/deploy.yml@run/")


def test_a_pull_request_deploys_to_its_preview_with_no_secret(
    cli: Cli, api: Api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = slug()
    api.register(site)
    _trust(api, site, "refs/pull/*/merge", ["pr-*"])
    payload = {"number": 12, "pull_request": {"number": 12, "title": "New footer",
                                              "head": {"sha": PR_HEAD}}}  # fmt: skip
    _actions(monkeypatch, tmp_path, "pull_request", payload, GITHUB_HEAD_REF="new-footer",
             GITHUB_REF="refs/pull/12/merge")  # fmt: skip
    _id_token_request(api, monkeypatch, "pull_request", "refs/pull/12/merge")
    tree = build(tmp_path / "pr", {"index.html": b"<h1>pr 12</h1>"})
    done = cli("deploy", str(tree), "--site", site, "--alias", "--json", token=None)
    assert done.code == 0, done.err
    assert (done.doc["alias"], done.doc["mode"]) == ("pr-12", "preview")
    assert _serve(api, f"pr-12--{site}.preview.localhost") == (200, b"<h1>pr 12</h1>")
    # the same run asking for production is refused by the server, with its own code
    _id_token_request(api, monkeypatch, "pull_request", "refs/pull/12/merge")
    refused = cli("deploy", str(tree), "--site", site, "--promote", "--json", token=None)
    assert refused.code == errors.CREDENTIALS
    assert refused.error["code"] == "trust_pull_request"


def test_a_persons_token_wins_over_the_job_token(
    cli: Cli, api: Api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = slug()
    api.register(site)  # no trust rule: only a person may deploy
    _id_token_request(api, monkeypatch, "push", "refs/heads/main")
    before = len(_minted(api))
    done = cli("deploy", str(build(tmp_path / "site")), "--site", site, "--json", token=STAFF)
    assert done.code == 0, done.err
    assert _minted(api)[before:] == []  # never asked for


def test_a_job_without_a_rule_is_refused_with_the_reason(
    cli: Cli, api: Api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = slug()
    api.register(site)
    _id_token_request(api, monkeypatch, "push", "refs/heads/main")
    refused = cli("deploy", str(build(tmp_path / "site")), "--site", site, "--json", token=None)
    assert refused.code == errors.CREDENTIALS
    assert refused.error["code"] == "trust_no_rules"


def test_a_runner_refusing_the_token_request_is_a_credentials_error(
    cli: Cli, api: Api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = slug()
    api.register(site)
    _id_token_request(api, monkeypatch, "push", "refs/heads/main")
    monkeypatch.setenv("ACTIONS_ID_TOKEN_REQUEST_TOKEN", " ")  # the mint wants a bearer
    refused = cli("deploy", str(build(tmp_path / "site")), "--site", site, "--json", token=None)
    assert refused.code == errors.CREDENTIALS
    assert refused.error["code"] == "oidc_request_failed"
    assert "id-token: write" in refused.error["message"]


# --- webhooks ------------------------------------------------------------------------------------


def test_hooks_add_ls_ping_deliveries_rm_json(cli: Cli, api: Api) -> None:
    site = slug()
    api.register(site)
    added = cli("hooks", "add", "http://127.0.0.1:9/hook", "--event", "deploy.finalized",
                "--site", site, "--json")  # fmt: skip
    assert added.code == 0, added.err
    hook = added.doc
    assert hook["events"] == ["deploy.finalized"] and hook["secret"].startswith("whsec_")
    text = cli("hooks", "add", "http://127.0.0.1:9/all", "--site", site)
    assert text.code == 0 and "signing secret (shown once, keep it): whsec_" in text.out
    listed = cli("hooks", "ls", "--site", site, "--json")
    assert listed.doc[0]["id"] == hook["id"]
    assert all("secret" not in h for h in listed.doc)
    pinged = cli("hooks", "ping", hook["id"], "--site", site, "--json")
    assert pinged.code == 0 and pinged.doc["status"] == "queued"
    log = cli("hooks", "deliveries", hook["id"], "--site", site, "--json")
    assert [(d["id"], d["event"], d["state"]) for d in log.doc] == [
        (pinged.doc["deliveryId"], "ping", "pending")
    ]
    assert (
        f"{pinged.doc['deliveryId']}  ping  pending  0 attempts"
        in cli("hooks", "deliveries", hook["id"], "--site", site).out
    )
    gone = cli("hooks", "rm", hook["id"], "--site", site, "--json")
    assert gone.code == 0 and gone.doc["id"] == hook["id"]
    refused = cli("hooks", "add", "https://169.254.169.254/", "--site", site, "--json")
    assert refused.code == errors.FAILED and refused.error["code"] == "hook_url_forbidden_address"
    bad = cli("hooks", "add", "https://x.example", "--event", "nope", "--site", site)
    assert bad.code == errors.USAGE
