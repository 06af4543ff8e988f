"""A person's path, end to end: start the local runtime (`artemis-admin run`, what `make run`
calls), deploy a small multi-page site with the `artemis` CLI, and look at it in a real
headless Chromium: preview, then production; a second version; a rollback; a pull request's
named preview at its own host, then removed; then delete,
restore, GC and purge through `artemis-admin run`, with the trash and the audit trail read
back through the CLI.

Needs Debian's `chromium` and `chromium-driver` (.ci/run installs them when missing)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import struct
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from tests.conftest import REPO_ROOT, free_port

BIN = REPO_ROOT / ".venv" / "bin"
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SITE = "demo"
GREEN = "rgb(0, 128, 0)"


def png(width: int, height: int) -> bytes:
    """A small green PNG, written by hand (no imaging library needed)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(b"\x00" + b"\x00\x80\x00" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
            + chunk(b"IEND", b""))  # fmt: skip


def write_site(root: Path, version: str) -> Path:
    files = {
        "index.html": (
            f"<!doctype html><html><head><title>Demo {version}</title>"
            '<link rel="stylesheet" href="style.css"></head><body>'
            f'<h1 id="title">Hello from {version}</h1>'
            '<img id="logo" src="img/logo.png" alt="logo">'
            '<a id="docs" href="docs/">Read the docs</a></body></html>'
        ).encode(),
        "style.css": f"h1 {{ color: {GREEN}; }}".encode(),
        "img/logo.png": png(16, 16),
        "docs/index.html": (
            "<!doctype html><html><head><title>Docs</title>"
            '<link rel="stylesheet" href="../style.css"></head><body>'
            f'<h1 id="title">Docs for {version}</h1><a id="home" href="../">Home</a>'
            "</body></html>"
        ).encode(),
    }
    for path, data in files.items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return root


@dataclass
class Stack:
    base: str
    port: int
    env: dict[str, str]

    def cli(self, *argv: str) -> Any:
        done = subprocess.run([str(BIN / "artemis"), *argv, "--json"], env=self.env,
                              capture_output=True, text=True, timeout=120)  # fmt: skip
        assert done.returncode == 0, (argv, done.returncode, done.stderr)
        return json.loads(done.stdout)

    def admin(self, *argv: str) -> Any:
        done = subprocess.run([str(BIN / "artemis-admin"), *argv], env=self.env,
                              capture_output=True, text=True, timeout=300, cwd=REPO_ROOT)  # fmt: skip
        assert done.returncode == 0, (argv, done.returncode, done.stderr[-2000:])
        return json.loads(done.stdout)

    def site_url(self, mode: str = "production") -> str:
        host = f"{SITE}.localhost" if mode == "production" else f"{SITE}.preview.localhost"
        return f"http://{host}:{self.port}/"


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    state = Path(tempfile.mkdtemp(prefix="artemis-browser-"))
    state.chmod(0o755)  # the embedded Postgres runs as its own OS user when we are root
    port = free_port()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AWS_", "ARTEMIS_", "GH_", "GITHUB_"))
           and k not in ("DATABASE_URL", "JWT_SIGNING_KEY", "REDIS_URL")}  # fmt: skip
    env.update(ARTEMIS_STATE_DIR=str(state), SERVE_CACHE_TTL="1s")
    log = (state / "run.log").open("w")
    proc = subprocess.Popen([str(BIN / "artemis-admin"), "run", "--port", str(port)], env=env,
                            stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(base + "/readyz", timeout=5) as resp:
                    if resp.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError):
                pass
            assert proc.poll() is None, (state / "run.log").read_text()
            assert time.monotonic() < deadline, (state / "run.log").read_text()
            time.sleep(0.5)
        yield Stack(base, port, {**env, "ARTEMIS_URL": base, "ARTEMIS_TOKEN": "local-staff-token"})
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()
        shutil.rmtree(state, ignore_errors=True)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    assert CHROMIUM.exists() and CHROMEDRIVER.exists(), "install chromium and chromium-driver"
    os.environ["SE_OFFLINE"] = "true"  # never let Selenium Manager reach for the network
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def title_of(browser: WebDriver) -> str:
    text: str = browser.find_element(By.ID, "title").text
    return text


def shows(browser: WebDriver, url: str, expected: str, within: float = 10.0) -> None:
    """Load `url` until its heading reads `expected` (alias lookups are cached for
    SERVE_CACHE_TTL, 1 s here, as the real serve plane caches them)."""
    deadline = time.monotonic() + within
    while True:
        browser.get(url)
        heading = browser.find_elements(By.ID, "title")
        if heading and heading[0].text == expected:
            return
        assert time.monotonic() < deadline, (url, browser.page_source[:500])
        time.sleep(0.5)


def until(check: Callable[[], bool], within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline
        time.sleep(0.2)


def test_a_person_deploys_looks_rolls_back_and_cleans_up(
    stack: Stack, browser: WebDriver, tmp_path: Path
) -> None:
    assert stack.cli("sites", "register", SITE)["slug"] == SITE

    # v1 to preview: the preview host serves it, production has nothing yet.
    v1_dir = write_site(tmp_path / "v1", "v1")
    preview = stack.cli("deploy", str(v1_dir), "--site", SITE, "--sha", "1111111")
    assert preview["mode"] == "preview" and preview["files"] == 4
    shows(browser, stack.site_url("preview"), "Hello from v1")
    browser.get(stack.site_url())
    assert "404" in browser.title or "Not Found" in browser.page_source

    # v1 again with --promote: production serves it, styled, with its image and nested page.
    v1 = stack.cli("deploy", str(v1_dir), "--site", SITE, "--sha", "1111112", "--promote")
    assert v1["mode"] == "production" and v1["url"] == stack.site_url().rstrip("/")
    # The same tree again: the server copies every file, nothing is sent.
    assert (v1["uploaded"], v1["copied"], v1["bundles"]) == (0, 4, 0)
    shows(browser, stack.site_url(), "Hello from v1")
    assert browser.title == "Demo v1"
    heading = browser.find_element(By.ID, "title")
    assert heading.value_of_css_property("color") in (GREEN, "rgba(0, 128, 0, 1)")
    logo = browser.find_element(By.ID, "logo")
    assert browser.execute_script("return arguments[0].naturalWidth", logo) == 16
    browser.find_element(By.ID, "docs").click()
    until(lambda: browser.current_url == stack.site_url() + "docs/")
    assert title_of(browser) == "Docs for v1"
    assert browser.find_element(By.ID, "title").value_of_css_property("color") in (
        GREEN, "rgba(0, 128, 0, 1)",
    )  # fmt: skip
    browser.find_element(By.ID, "home").click()
    until(lambda: browser.current_url == stack.site_url())

    # v2, promoted: production shows it.
    v2 = stack.cli("deploy", str(write_site(tmp_path / "v2", "v2")), "--site", SITE,
                   "--sha", "2222222", "--promote")  # fmt: skip
    # Incremental (the default): the two changed pages go in one bundle, the stylesheet and
    # the image are copied inside the bucket; the browser sees the whole of v2.
    assert (v2["uploaded"], v2["copied"], v2["bundles"]) == (2, 2, 1)
    shows(browser, stack.site_url(), "Hello from v2")
    assert browser.title == "Demo v2"
    assert browser.find_element(By.ID, "title").value_of_css_property("color") in (
        GREEN, "rgba(0, 128, 0, 1)",
    )  # fmt: skip
    logo = browser.find_element(By.ID, "logo")
    assert browser.execute_script("return arguments[0].naturalWidth", logo) == 16
    browser.find_element(By.ID, "docs").click()
    until(lambda: browser.current_url == stack.site_url() + "docs/")
    assert title_of(browser) == "Docs for v2"

    # Roll back to v1: production shows v1 again.
    back = stack.cli("rollback", "--site", SITE, "--to", v1["deployId"])
    assert back["deployId"] == v1["deployId"]
    shows(browser, stack.site_url(), "Hello from v1")
    listing = stack.cli("ls", "--site", SITE)
    assert listing["production"] == v1["deployId"] and listing["preview"] == preview["deployId"]

    # A pull request's own preview: v3 under pr-3, at its own host, beside the others.
    v3 = stack.cli("deploy", str(write_site(tmp_path / "v3", "v3")), "--site", SITE,
                   "--sha", "3333333", "--alias", "pr-3")  # fmt: skip
    pr_url = f"http://pr-3--{SITE}.preview.localhost:{stack.port}/"
    assert v3["alias"] == "pr-3"
    shows(browser, pr_url, "Hello from v3")
    browser.find_element(By.ID, "docs").click()
    until(lambda: browser.current_url == pr_url + "docs/")
    assert title_of(browser) == "Docs for v3"
    shows(browser, stack.site_url("preview"), "Hello from v1")  # the preview alias is untouched
    shows(browser, stack.site_url(), "Hello from v1")
    assert [p["name"] for p in stack.cli("previews", "ls", "--site", SITE)] == ["pr-3"]
    assert stack.cli("previews", "rm", "pr-3", "--site", SITE)["status"] == "removed"

    def unpublished() -> bool:
        browser.get(pr_url)
        return "Not Found" in browser.page_source

    until(unpublished)

    # The superseded v2: delete, see it in trash, restore, trash empty again.
    assert stack.cli("deploys", "rm", v2["deployId"], "--site", SITE)["status"] == "tombstoned"
    assert [t["deployId"] for t in stack.cli("trash", "--site", SITE)] == [v2["deployId"]]
    assert stack.cli("restore", v2["deployId"], "--site", SITE)["status"] == "restored"
    assert stack.cli("trash", "--site", SITE) == []

    # GC and purge run now against the running stack; nothing is old enough to collect.
    gc = stack.admin("run", "gc-site", SITE)
    assert gc["site"] == SITE and gc["tombstoned"] == []
    purge = stack.admin("run", "tombstone-purge")
    assert purge["purged"] == [] and purge["failed"] == {}
    assert stack.cli("trash", "--site", SITE) == []
    shows(browser, stack.site_url(), "Hello from v1")

    # The audit trail tells the story, newest first.
    trail = [(r["action"], r.get("deployId")) for r in stack.cli("audit", "ls", "--site", SITE)]
    expected = [
        ("site.deploy.restore", v2["deployId"]),
        ("site.deploy.delete", v2["deployId"]),
        ("site.preview.remove", v3["deployId"]),
        ("deploy.finalize", v3["deployId"]),
        ("site.rollback", v1["deployId"]),
        ("deploy.finalize", v2["deployId"]),
        ("deploy.finalize", v1["deployId"]),
        ("deploy.finalize", preview["deployId"]),
        ("site.register", None),
    ]
    assert [step for step in trail if step[0] in {a for a, _ in expected}] == expected
