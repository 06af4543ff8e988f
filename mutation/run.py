"""Mutation testing of the safety-critical modules, printing JSON.

    .venv/bin/python mutation/run.py [--modules retention site_lock ...] [--check]
        [--max-children N] [--out FILE]

Each module in mutation/modules.toml is mutated by mutmut, and each mutant is run against the
tests listed for its module that reach the mutated function. The result, per module: mutants
made, killed, survived, timed out, reached by no test, and the survivors `equivalent.toml`
lists as equivalent (a change no caller can observe), with the score killed / (made -
equivalent). `--check` runs only the modules marked `check` and exits 1 when one of their
mutants survives and is not listed as equivalent.

mutmut imports the mutated copy as `artemis`, so it runs in a workspace (.mutation/<run>/)
where the package sits at the top: `artemis` and `tests` link to the repository's, and so do
the files the tests read relative to the repository's root.
"""

from __future__ import annotations

import argparse
import contextlib
import fnmatch
import json
import os
import shutil
import subprocess
import sys
import time
import tomllib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
HERE = REPO / "mutation"
PACKAGE = REPO / "layers" / "common" / "python" / "artemis"
# What the tests read relative to the repository's root, beside `tests/`.
ALSO_COPY = ["sql", "events", "functions", "docs", "template.yaml"]
MACHINE_PG = "postgresql://postgres@127.0.0.1:5432/postgres"  # as tests/conftest.py
# mutmut's verdicts (mutmut.stats.status_by_exit_code), grouped as this report counts them.
KILLED = {"killed", "caught by type check"}
TIMEOUT = {"timeout"}
NO_TESTS = {"no tests"}


@dataclass(frozen=True)
class Module:
    name: str
    source: str  # relative to the workspace: artemis/...
    tests: tuple[str, ...]
    check: bool
    functions: tuple[str, ...] = ()  # the check mutates only these (all when empty)

    @property
    def dotted(self) -> str:
        return self.source.removesuffix(".py").replace("/", ".")

    def mutant_globs(self) -> list[str]:
        """mutmut's names for this module's mutants (`x_f__mutmut_3`, or `xǁCǁm__mutmut_3` for
        method `C.m`), limited to `functions` when given."""
        if not self.functions:
            return [f"{self.dotted}.*"]
        return [
            f"{self.dotted}.x{'ǁ' + f.replace('.', 'ǁ') if '.' in f else '_' + f}__mutmut_*"
            for f in self.functions
        ]


@dataclass(frozen=True)
class Equivalent:
    module: str
    function: str
    before: str
    after: str
    why: str


@dataclass
class Tally:
    source: str
    mutants: int = 0
    killed: int = 0
    survived: int = 0
    timeout: int = 0
    no_tests: int = 0
    equivalent: int = 0
    other: int = 0
    survivors: list[dict[str, str]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        judged = self.mutants - self.equivalent
        return {
            "source": self.source,
            "mutants": self.mutants,
            "killed": self.killed,
            "survived": self.survived,
            "timeout": self.timeout,
            "no_tests": self.no_tests,
            "equivalent": self.equivalent,
            "other": self.other,
            # Timeouts count as caught: the mutant made a test hang, which CI notices.
            "score": round((self.killed + self.timeout) / judged, 3) if judged else None,
            "survivors": self.survivors,
        }


def load_modules() -> list[Module]:
    table = tomllib.loads((HERE / "modules.toml").read_text())
    return [
        Module(name, spec["source"], tuple(spec["tests"]), bool(spec.get("check", False)),
               tuple(spec.get("check_functions", ())))
        for name, spec in table.items()
    ]  # fmt: skip


def load_equivalents() -> list[Equivalent]:
    table = tomllib.loads((HERE / "equivalent.toml").read_text())
    return [
        Equivalent(e["module"], e["function"], e["from"].strip(), e["to"].strip(), e["why"])
        for e in table.get("equivalent", [])
    ]


def workspace(run: str, modules: list[Module]) -> Path:
    """A fresh workspace for mutmut: the package at the top, links to the rest."""
    root = REPO / ".mutation" / run
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    (root / "artemis").symlink_to(PACKAGE)
    (root / "tests").symlink_to(REPO / "tests")
    for name in ALSO_COPY:
        (root / name).symlink_to(REPO / name)
    tests = sorted({t for m in modules for t in m.tests})
    config = "\n".join(
        [
            "",
            "[tool.mutmut]",
            'source_paths = ["artemis"]',
            f"only_mutate = {json.dumps([m.source for m in modules])}",
            f"pytest_add_cli_args_test_selection = {json.dumps(tests)}",
            # The slow tests wait out real timeouts (30 s and more): a mutant that needs one to
            # die is a gap to close with a fast test.
            'pytest_add_cli_args = ["-p", "no:cacheprovider", "-m", "not slow"]',
            f"also_copy = {json.dumps(ALSO_COPY)}",
            "",
        ]
    )
    (root / "pyproject.toml").write_text((REPO / "pyproject.toml").read_text() + config)
    return root


@contextlib.contextmanager
def shared_stores() -> Iterator[dict[str, str]]:
    """A moto server and a migrated template database that every mutant's test session shares
    (tests/conftest.py reads the variables), rather than starting its own: a test session per
    mutant would otherwise spend seconds on setup alone."""
    import psycopg

    from artemis.db.migrate import migrate
    from artemis_local.aws import MotoServer

    admin = os.environ.get("ARTEMIS_TEST_PG_URL") or MACHINE_PG
    name = f"artemis_mutation_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"'.encode())
    moto = None
    try:
        migrate(psycopg.conninfo.make_conninfo(admin, dbname=name), REPO / "sql")
        moto = MotoServer().start()
        yield {"ARTEMIS_TEST_PG_TEMPLATE": name, "ARTEMIS_TEST_MOTO_URL": moto.url}
    finally:
        if moto is not None:
            moto.stop()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())


def mutmut(
    root: Path, *args: str, log: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ARTEMIS_SQL_DIR": str(REPO / "sql"), "PYTHONDONTWRITEBYTECODE": "1",
           **(env or {})}  # fmt: skip
    binary = Path(sys.executable).with_name("mutmut")
    if log is None:
        return subprocess.run(  # noqa: S603 - our own dev tool
            [str(binary), *args], cwd=root, env=env, capture_output=True, text=True, check=False
        )
    with log.open("w") as out:
        return subprocess.run(  # noqa: S603 - our own dev tool
            [str(binary), *args], cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT,
            text=True, check=False,
        )  # fmt: skip


def changed_lines(diff: str) -> tuple[str, str]:
    """The mutated line before and after, from `mutmut show`'s unified diff."""
    body = [line for line in diff.splitlines() if not line.startswith(("---", "+++"))]
    before = " ".join(line[1:].strip() for line in body if line.startswith("-"))
    after = " ".join(line[1:].strip() for line in body if line.startswith("+"))
    return before, after


def function_of(mutant: str) -> str:
    """`artemis.retention.x_oldest_n__mutmut_1` → `oldest_n`; a method → `Class.method`."""
    mangled = mutant.partition("__mutmut_")[0].rpartition(".")[2]
    if "ǁ" in mangled:
        _, cls, method = mangled.split("ǁ")
        return f"{cls}.{method}"
    return mangled.removeprefix("x_")


def tally(root: Path, module: Module, equivalents: list[Equivalent], only: list[str]) -> Tally:
    """The verdicts on `module`'s mutants whose names match `only` (globs)."""
    from mutmut.stats import status_by_exit_code

    meta = root / "mutants" / f"{module.source}.meta"
    found = Tally(module.source)
    if not meta.exists():
        return found
    codes: dict[str, int | None] = json.loads(meta.read_text())["exit_code_by_key"]
    for mutant, code in sorted(codes.items()):
        if not any(fnmatch.fnmatchcase(mutant, pattern) for pattern in only):
            continue
        status = status_by_exit_code[code]
        found.mutants += 1
        if status in KILLED:
            found.killed += 1
            continue
        if status in TIMEOUT:
            found.timeout += 1
            continue
        diff = mutmut(root, "show", mutant).stdout
        before, after = changed_lines(diff)
        function = function_of(mutant)
        if any(
            e.module == module.name and e.function == function
            and e.before == before and e.after == after
            for e in equivalents
        ):  # fmt: skip
            found.equivalent += 1
            continue
        if status in NO_TESTS:
            found.no_tests += 1
        elif status == "survived":
            found.survived += 1
        else:
            found.other += 1
        found.survivors.append(
            {"mutant": mutant, "status": status, "function": function, "from": before, "to": after}
        )
    return found


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--modules", nargs="+", help="module names from modules.toml")
    parser.add_argument(
        "--check", action="store_true", help="the `check` modules; exit 1 on an unlisted survivor"
    )
    parser.add_argument("--max-children", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args()

    modules = load_modules()
    if args.check:
        modules = [m for m in modules if m.check]
    if args.modules:
        unknown = set(args.modules) - {m.name for m in modules}
        if unknown:
            parser.error(f"unknown modules: {sorted(unknown)}")
        modules = [m for m in modules if m.name in args.modules]
    root = workspace("check" if args.check else "all", modules)
    log = root / "mutmut.log"
    started = time.monotonic()
    # The check mutates only the functions its modules name; the full run, everything.
    names = [g for m in modules for g in m.mutant_globs()] if args.check else []
    with shared_stores() as stores:
        done = mutmut(
            root, "run", "--max-children", str(args.max_children), *names, log=log, env=stores
        )
    seconds = round(time.monotonic() - started)
    if done.returncode != 0:
        sys.stderr.write(log.read_text()[-4000:])
        sys.stderr.write(f"\nmutmut run failed ({done.returncode}); the log: {log}\n")
        return 2
    equivalents = load_equivalents()
    tallies = {
        m.name: tally(root, m, equivalents, m.mutant_globs() if args.check else [f"{m.dotted}.*"])
        for m in modules
    }
    report = {
        "seconds": seconds,
        "max_children": args.max_children,
        "modules": {name: t.to_json() for name, t in tallies.items()},
    }
    text = json.dumps(report, indent=2, ensure_ascii=False)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    if args.check and any(t.survivors for t in tallies.values()):
        sys.stderr.write("mutation check: mutants survived that equivalent.toml does not list\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
