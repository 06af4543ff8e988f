"""The client CLI's own logic: settings precedence, the build walk, retries, and that the
package stays light (no server dependency on its import path)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

from artemis_cli import errors
from artemis_cli.config import resolve
from artemis_cli.errors import CliError
from artemis_cli.files import collect
from artemis_cli.http import Api, Retrying

ROOT = Path(__file__).resolve().parents[2]
NO_FLAGS: dict[str, str | None] = {"url": None, "token": None, "site": None, "config": None}


# --- settings: flags > environment > file ----------------------------------------------------


def test_flags_beat_the_environment_which_beats_the_file(tmp_path: Path) -> None:
    project = tmp_path / "artemis.yaml"
    project.write_text("site: from-file\ndir: public\nurl: http://file.example\n")
    flags = {**NO_FLAGS, "config": str(project)}
    env = {"ARTEMIS_SITE": "from-env", "ARTEMIS_URL": "http://env.example"}
    assert resolve(flags, {}).site == "from-file"
    assert resolve(flags, {}).dir == str(tmp_path / "public")  # relative to the file
    assert resolve(flags, env).site == "from-env"
    assert resolve(flags, env).url == "http://env.example"
    chosen = resolve({**flags, "site": "from-flag", "url": "http://flag.example"}, env)
    assert (chosen.site, chosen.url) == ("from-flag", "http://flag.example")


def test_the_token_comes_from_the_flag_then_artemis_github_gh(tmp_path: Path) -> None:
    env = {"GH_TOKEN": "gh", "GITHUB_TOKEN": "github", "ARTEMIS_TOKEN": "artemis"}
    missing = {**NO_FLAGS, "config": None}
    assert resolve({**missing, "token": "flag"}, env).token == "flag"
    assert resolve(missing, env).token == "artemis"
    assert resolve(missing, {"GH_TOKEN": "gh", "GITHUB_TOKEN": "github"}).token == "github"
    assert resolve(missing, {"GH_TOKEN": "gh"}).token == "gh"
    with pytest.raises(CliError) as err:
        resolve(missing, {}).require_token()
    assert err.value.exit_code == errors.CREDENTIALS


ACTIONS_OIDC = {"ACTIONS_ID_TOKEN_REQUEST_URL": "https://runner/x?api-version=2.0",
                "ACTIONS_ID_TOKEN_REQUEST_TOKEN": "req"}  # fmt: skip


@pytest.mark.parametrize(
    ("flags", "env", "with_oidc"),
    [
        pytest.param({}, ACTIONS_OIDC, True, id="actions-no-token"),
        pytest.param({}, {**ACTIONS_OIDC, "GITHUB_TOKEN": "ghs_x"}, True, id="github-token"),
        pytest.param({}, {**ACTIONS_OIDC, "GH_TOKEN": "ghs_x"}, True, id="gh-token"),
        pytest.param({}, {**ACTIONS_OIDC, "ARTEMIS_TOKEN": "p"}, False, id="artemis-token"),
        pytest.param({"token": "p"}, ACTIONS_OIDC, False, id="token-flag"),
        pytest.param({}, {"ACTIONS_ID_TOKEN_REQUEST_URL": "https://r/x"}, False, id="no-request-token"),
        pytest.param({}, {"ACTIONS_ID_TOKEN_REQUEST_TOKEN": "req"}, False, id="no-request-url"),
        pytest.param({}, {"GITHUB_TOKEN": "ghs_x"}, False, id="not-actions"),
    ],
)  # fmt: skip
def test_a_deploy_in_actions_presents_the_jobs_oidc_token_unless_a_person_gives_one(
    flags: dict[str, str], env: dict[str, str], with_oidc: bool
) -> None:
    assert resolve({**NO_FLAGS, **flags}, env).deploys_with_oidc is with_oidc


@pytest.mark.parametrize(
    ("base", "expected"),
    [
        ("https://runner/token?api-version=2.0", "https://runner/token?api-version=2.0&audience=artemis"),
        ("https://runner/token", "https://runner/token?audience=artemis"),
        ("https://runner/token?audience=old&x=1", "https://runner/token?x=1&audience=artemis"),
    ],
)  # fmt: skip
def test_the_audience_is_added_to_the_runners_url(base: str, expected: str) -> None:
    from artemis_cli.oidc import request_url

    assert request_url(base, "artemis") == expected


def test_a_request_url_that_is_not_http_is_refused() -> None:
    from artemis_cli.oidc import request_token

    with pytest.raises(CliError) as err:
        request_token({**ACTIONS_OIDC, "ACTIONS_ID_TOKEN_REQUEST_URL": "file:///etc/passwd"})
    assert (err.value.code, err.value.exit_code) == ("oidc_request_failed", errors.CREDENTIALS)


@pytest.mark.parametrize(
    ("text", "problem"),
    [("site: [a]\n", "must be a string"), ("token: x\n", "unknown keys"), ("- a\n", "mapping")],
)
def test_a_bad_project_file_is_a_usage_error(tmp_path: Path, text: str, problem: str) -> None:
    project = tmp_path / "artemis.yaml"
    project.write_text(text)
    with pytest.raises(CliError) as err:
        resolve({**NO_FLAGS, "config": str(project)}, {})
    assert err.value.exit_code == errors.USAGE and problem in err.value.message


# --- the build walk ----------------------------------------------------------------------------


def test_the_walk_skips_dotfiles_and_refuses_links_that_leave(tmp_path: Path) -> None:
    root = tmp_path / "site"
    (root / "a" / ".cache").mkdir(parents=True)
    (root / "index.html").write_text("home")
    (root / "a" / "page.html").write_text("page")
    (root / ".env").write_text("SECRET=1")
    (root / "a" / ".cache" / "x").write_text("x")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "passwd").write_text("root")
    (root / "escape").symlink_to(outside / "passwd")
    (root / "escape-dir").symlink_to(outside)
    (root / "broken").symlink_to(root / "missing")
    (root / "alias.html").symlink_to(root / "index.html")
    build = collect(root)
    assert [f.path for f in build.files] == ["alias.html", "index.html", "a/page.html"]
    refused = dict(build.refused)
    assert set(refused) == {"escape", "escape-dir", "broken"}
    assert "outside the directory" in refused["escape"]


# --- the deploy's sha from the directory's checkout ---------------------------------------------


def _checkout(root: Path) -> str:
    """A git checkout with one commit at `root`; returns its HEAD."""
    root.mkdir(parents=True, exist_ok=True)

    def git(*argv: str) -> str:
        return subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@example.org", *argv],
            cwd=root, capture_output=True, text=True, check=True, timeout=30,
        ).stdout.strip()  # fmt: skip

    git("init", "-q")
    git("commit", "-q", "--allow-empty", "-m", root.name)  # distinct commits per checkout
    return git("rev-parse", "HEAD")


@pytest.fixture
def no_git_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("GITHUB_SHA", "GIT_DIR", "GIT_WORK_TREE"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.usefixtures("no_git_env")
def test_the_sha_is_the_directorys_head_when_run_from_elsewhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from artemis_cli.deploy import default_sha

    head = _checkout(tmp_path / "project")
    (tmp_path / "project" / "dist").mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # not a checkout
    assert default_sha(tmp_path / "project" / "dist", {}) == head


@pytest.mark.usefixtures("no_git_env")
def test_a_directory_outside_any_checkout_is_local(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from artemis_cli.deploy import default_sha

    _checkout(tmp_path / "cwd-checkout")
    monkeypatch.chdir(tmp_path / "cwd-checkout")  # the process's own checkout must not answer
    plain = tmp_path / "plain"
    plain.mkdir()
    # tmp_path is not inside a checkout; git stops looking at the filesystem root.
    assert default_sha(plain, {}) == "local"


@pytest.mark.usefixtures("no_git_env")
def test_a_directory_in_another_checkout_gets_that_checkouts_head(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from artemis_cli.deploy import default_sha

    mine = _checkout(tmp_path / "mine")
    theirs = _checkout(tmp_path / "theirs")
    assert mine != theirs
    monkeypatch.chdir(tmp_path / "mine")
    assert default_sha(tmp_path / "theirs", {}) == theirs
    monkeypatch.setenv("GIT_DIR", str(tmp_path / "mine" / ".git"))  # must not redirect git
    assert default_sha(tmp_path / "theirs", {}) == theirs
    assert default_sha(tmp_path / "theirs", {"GITHUB_SHA": "abc1234"}) == "abc1234"


# --- retries -----------------------------------------------------------------------------------


class _Flaky(BaseHTTPRequestHandler):
    answers: ClassVar[list[int]] = []
    seen: ClassVar[int] = 0

    def do_GET(self) -> None:
        type(self).seen += 1
        status = self.answers.pop(0) if self.answers else 200
        body = json.dumps({"ok": True} if status == 200 else
                          {"error": {"code": "busy", "message": "later"}}).encode()  # fmt: skip
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if status == 429:
            self.send_header("Retry-After", "0")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture
def flaky() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Flaky)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Flaky.seen = 0
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_429_and_5xx_are_retried_with_backoff(flaky: str) -> None:
    _Flaky.answers = [503, 429, 502]
    slept: list[float] = []
    api = Api(flaky, "t", retrying=Retrying(attempts=5, sleep=slept.append))
    assert api.call("GET", "/x") == {"ok": True}
    assert _Flaky.seen == 4 and len(slept) == 3
    assert slept[1] == 0.0  # Retry-After: 0 honoured


def test_retries_end_with_the_last_answer_as_the_error(flaky: str) -> None:
    _Flaky.answers = [503] * 10
    api = Api(flaky, "t", retrying=Retrying(attempts=3, sleep=lambda _: None))
    with pytest.raises(CliError) as err:
        api.call("GET", "/x")
    assert _Flaky.seen == 3
    assert (err.value.code, err.value.status, err.value.exit_code) == ("busy", 503, errors.SERVER)


def test_a_4xx_is_never_retried(flaky: str) -> None:
    _Flaky.answers = [404]
    api = Api(flaky, "t", retrying=Retrying(attempts=5, sleep=lambda _: None))
    with pytest.raises(CliError) as err:
        api.call("GET", "/x")
    assert _Flaky.seen == 1 and err.value.exit_code == errors.FAILED


# --- the package stays light ------------------------------------------------------------------


def test_the_cli_package_depends_on_nothing_of_the_servers() -> None:
    project = tomllib.loads((ROOT / "cli" / "pyproject.toml").read_text())["project"]
    assert [d.split(">")[0].split("=")[0] for d in project["dependencies"]] == ["pyyaml"]
    probe = (
        "import sys, artemis_cli.main, artemis_cli.deploy, artemis_cli.http\n"
        "heavy = {'artemis', 'boto3', 'botocore', 'psycopg', 'pydantic', 'redis',"
        " 'aws_lambda_powertools'}\n"
        "print(sorted(heavy & {m.split('.')[0] for m in sys.modules}))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=60, check=True)  # fmt: skip
    assert done.stdout.strip() == "[]"


# --- incremental deploys: hashing and bundles --------------------------------------------------


def _files(root: Path, sizes: dict[str, int]) -> list[Any]:
    from artemis_cli.files import BuildFile

    out = []
    for n, (path, size) in enumerate(sizes.items()):
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(bytes([n % 251]) * size)
        out.append(BuildFile(path, target, size))
    return out


def test_hashes_are_each_files_sha256(tmp_path: Path) -> None:
    import hashlib

    from artemis_cli.manifest import hash_files

    files = _files(tmp_path, {f"f{n}.txt": n * 3000 for n in range(40)})
    assert hash_files(files, concurrency=4) == {
        f.path: hashlib.sha256(f.source.read_bytes()).hexdigest() for f in files
    }


def test_bundles_stay_under_the_tar_and_member_caps_and_unpack_as_the_server_reads_them(
    tmp_path: Path,
) -> None:
    """Every planned bundle, packed, is at most BUNDLE_MAX_TAR bytes and BUNDLE_MAX_MEMBERS
    members, and the server's own parser gives back every file, byte for byte."""
    from artemis import bundles as server_bundles
    from artemis_cli.bundling import BUNDLE_MAX_MEMBERS, BUNDLE_MAX_TAR, pack, plan

    sizes = {f"a/{n:04d}.js": 10 for n in range(4500)}  # over the member cap
    sizes |= {f"big/{n}.bin": 250 * 1024 for n in range(20)}  # over the tar cap together
    sizes |= {"café/" + "long-name-" * 20 + ".html": 700, "empty.txt": 0}  # pax headers
    files = _files(tmp_path, sizes)
    planned = plan(files)
    assert sorted(f.path for b in planned for f in b) == sorted(sizes)
    # 12 big files fill the first bundle, 8 the second, the small ones fill the room left and
    # then two more (the second of them capped by members, not bytes): first fit decreasing.
    assert [sum(f.size > 1024 for f in b) for b in planned] == [12, 8, 0, 0]
    assert len(planned[2]) == BUNDLE_MAX_MEMBERS
    for bundle in planned:
        body = pack(bundle)
        assert len(body) <= BUNDLE_MAX_TAR and len(bundle) <= BUNDLE_MAX_MEMBERS
        members = server_bundles.parse(body, member_limit=1 << 20)
        assert {m.path: m.data for m in members} == {f.path: f.source.read_bytes() for f in bundle}
