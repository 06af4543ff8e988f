"""The import-direction contracts in pyproject.toml ([tool.importlinter]), run as `make lint`
runs them: they hold for the tree as it is, and each one fails on a copy of the tree that
breaks it with one added import."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
# Where each root package lives, relative to the repository (pyproject's package-dir).
PACKAGE_DIRS = ("layers/common/python", "local", "ops")
COPIED = ("layers/common/python/artemis", "local/artemis_local", "ops/artemis_ops", "functions")

# (contract id, file to append to, the offending import)
VIOLATIONS = [
    # the cycle issue 12 removed: the wiring reached up into a service for the snapshot
    ("layers", "layers/common/python/artemis/runtime.py", "from artemis.services import registry"),
    ("layers", "layers/common/python/artemis/db/sites.py", "from artemis.jobs import common"),
    ("layers", "layers/common/python/artemis/keys.py", "from artemis.db import sites"),
    ("pure", "layers/common/python/artemis/keys.py", "import boto3"),
    ("pure", "layers/common/python/artemis/durations.py", "import psycopg"),
    ("pure", "layers/common/python/artemis/retention.py", "import redis"),
    ("domain-not-local", "layers/common/python/artemis/config.py", "import artemis_local.pg"),
    ("ops-not-local", "ops/artemis_ops/commands.py", "from artemis_local import runner"),
]


def contract_names() -> dict[str, str]:
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    contracts = config["tool"]["importlinter"]["contracts"]
    return {contract["id"]: contract["name"] for contract in contracts}


def copy_tree(dest: Path) -> Path:
    for rel in COPIED:
        shutil.copytree(
            ROOT / rel, dest / rel, symlinks=True,
            ignore=shutil.ignore_patterns("__pycache__", "sql"),
        )  # fmt: skip
    shutil.copy(ROOT / "pyproject.toml", dest / "pyproject.toml")
    return dest


def lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    # The copy comes first on the path, ahead of the editable install of the real tree.
    path = os.pathsep.join([*(str(tree / d) for d in PACKAGE_DIRS), str(tree)])
    env = {**os.environ, "PYTHONPATH": path}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--config", str(tree / "pyproject.toml")],
        cwd=tree, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_make_lint_runs_the_contracts() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    lint = re.search(r"^lint:.*\n((?:\t.*\n)+)", makefile, re.M)
    assert lint is not None and "lint-imports" in lint.group(1)


def test_the_tree_keeps_every_contract(tmp_path: Path) -> None:
    done = lint_imports(copy_tree(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    for name in contract_names().values():
        assert f"{name} KEPT" in done.stdout


@pytest.mark.parametrize(
    ("contract", "path", "line"), VIOLATIONS, ids=[f"{c}:{Path(p).name}" for c, p, _ in VIOLATIONS]
)
def test_an_import_breaking_a_contract_fails_lint(
    tmp_path: Path, contract: str, path: str, line: str
) -> None:
    tree = copy_tree(tmp_path)
    with (tree / path).open("a", encoding="utf-8") as f:
        f.write(f"\n{line}  # noqa\n")
    done = lint_imports(tree)
    assert done.returncode != 0
    assert f"{contract_names()[contract]} BROKEN" in done.stdout, done.stdout
