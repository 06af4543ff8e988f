"""API cold init against the bare import of its third-party dependencies, in fresh interpreters.

    .venv/bin/python bench/coldstart.py [runs] [function]   (make bench-coldstart; 15 runs, api)

(a) Cold init: import functions/api/app.py as Lambda does (spec_from_file_location). That
    validates the settings (runtime.current()) and builds the app.
(b) The third-party imports alone: exactly the third-party modules our code imports at cold
    start, found with `python -X importtime` (every third-party module whose importer is
    first-party code), imported in the order they load.

Each sample is one fresh `.venv/bin/python` process that times only the import (interpreter
start-up excluded), by wall clock and by CPU time (the CPU figure is the one to trust when
other work shares the cores); (a) and (b) alternate. Prints the medians and the ratio a/b
(target ≤ 1.3); then where the difference goes: each first-party module's own CPU cost,
imported one by one in load order after (b), and the imports our code makes (-X importtime);
then a what-if: the same pair with `artemis.storage.s3` (and so botocore) kept off the cold path,
simulated by a stand-in module that defines only the names the cold path imports from it; and
last the pair without any bytecode cache (5 runs): what a layer built without bytecode
(`BYTECODE=0` in layers/common/Makefile) would cost, since Lambda's /opt is read-only and
every module would then be compiled at every cold start.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
PYTHON = str(REPO_ROOT / ".venv" / "bin" / "python")
RUNS = int(sys.argv[1]) if len(sys.argv) > 1 else 15
FUNCTION = sys.argv[2] if len(sys.argv) > 2 else "api"
APP = REPO_ROOT / "functions" / FUNCTION / "app.py"
IMPORTTIME_RUNS = 5
TARGET_RATIO = 1.3
MARK = "--artemis-bench-mark--"
# The main pair runs with a bytecode cache, as the deployed layer does (it ships compiled
# bytecode), whatever the caller's environment says; the last section measures without one.
ENV = {
    **{k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"},
    "JWT_SIGNING_KEY": "bench-signing-key-0123456789abcdef0123456789",
    "DATABASE_URL": "postgresql://127.0.0.1/unused",
    "SITE_EVENTS_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/000000000000/bench.fifo",
    "SITE_EVENTS_DLQ_URL": "https://sqs.us-east-1.amazonaws.com/000000000000/bench-dlq.fifo",
}

LOAD_APP = f"""
import importlib.util, sys
spec = importlib.util.spec_from_file_location("artemis_fn_{FUNCTION}", {str(APP)!r})
module = importlib.util.module_from_spec(spec)
sys.modules["artemis_fn_{FUNCTION}"] = module
spec.loader.exec_module(module)
assert module.handler is not None
"""

TIMED = """
import gc, sys, time
sys.stderr.write({mark!r} + "\\n"); sys.stderr.flush()
wall, cpu = time.perf_counter(), time.process_time()
{body}
wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
print(wall, cpu, gc.get_stats()[2]["collections"])
"""


@dataclass
class Sample:
    wall_ms: float
    cpu_ms: float
    full_gcs: int
    stderr: str


def child(code: str, *flags: str, env: dict[str, str] | None = None) -> tuple[str, str]:
    """Run `code` in a fresh interpreter: the last line of its stdout, and its stderr."""
    argv = [PYTHON, *flags, "-c", code]  # our own interpreter and code, no outside input
    done = subprocess.run(  # noqa: S603
        argv, env=env or ENV, cwd=REPO_ROOT, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise RuntimeError(f"benchmark child failed:\n{done.stderr}")
    return done.stdout.strip().splitlines()[-1], done.stderr


def timed(body: str, *flags: str, env: dict[str, str] | None = None) -> Sample:
    """Run `body` in a fresh interpreter and time it."""
    out, err = child(TIMED.format(mark=MARK, body=body), *flags, env=env)
    wall, cpu, gcs = out.split()
    return Sample(float(wall) * 1000, float(cpu) * 1000, int(gcs), err)


@dataclass
class Line:
    name: str
    self_us: int
    cum_us: int
    depth: int
    importer: str = ""  # "" for functions/api/app.py itself


def importtime_tree(stderr: str) -> list[Line]:
    """-X importtime lines after the mark, each with the module that imported it."""
    lines: list[Line] = []
    seen_mark = False
    for raw in stderr.splitlines():
        if raw == MARK:
            seen_mark = True
            continue
        if not seen_mark or not raw.startswith("import time:") or "self [us]" in raw:
            continue
        self_us, cum_us, name = raw[len("import time:") :].split("|")
        depth = (len(name) - len(name.lstrip(" ")) - 1) // 2
        lines.append(Line(name.strip(), int(self_us), int(cum_us), depth))
    # Post-order: a module's importer is the next line printed one level up.
    for i, line in enumerate(lines):
        line.importer = next(
            (later.name for later in lines[i + 1 :] if later.depth < line.depth), ""
        )
    return lines


def first_party(name: str) -> bool:
    return name == "" or name == "artemis" or name.startswith("artemis.")


def third_party(name: str) -> bool:
    top = name.split(".")[0]
    stdlib = top in sys.stdlib_module_names or top.startswith("_sysconfigdata")
    return not first_party(name) and not stdlib


def median_tree(count: int) -> list[Line]:
    """One -X importtime tree whose times are the per-module medians of `count` runs."""
    trees = [importtime_tree(timed(LOAD_APP, "-X", "importtime").stderr) for _ in range(count)]
    self_times: dict[str, list[int]] = defaultdict(list)
    cum_times: dict[str, list[int]] = defaultdict(list)
    for tree in trees:
        for line in tree:
            self_times[line.name].append(line.self_us)
            cum_times[line.name].append(line.cum_us)
    merged = trees[0]
    for line in merged:
        line.self_us = int(statistics.median(self_times[line.name]))
        line.cum_us = int(statistics.median(cum_times[line.name]))
    return merged


def import_all(names: list[str]) -> str:
    return f"import importlib\nfor name in {names!r}:\n    importlib.import_module(name)"


def compare(
    label: str,
    app_body: str,
    deps_body: str,
    *,
    runs: int = RUNS,
    env: dict[str, str] | None = None,
) -> dict[str, float]:
    """`runs` alternating samples of (a) and (b); prints and returns the medians."""
    samples: dict[str, list[Sample]] = {"a": [], "b": []}
    for run in range(runs):
        order = [("a", app_body), ("b", deps_body)]
        for key, body in order if run % 2 == 0 else order[::-1]:
            samples[key].append(timed(body, env=env))
    result: dict[str, float] = {}
    print(f"\n{label}: {runs} fresh interpreters each; median (min-max), ms")
    for clock in ("wall_ms", "cpu_ms"):
        a = [getattr(s, clock) for s in samples["a"]]
        b = [getattr(s, clock) for s in samples["b"]]
        app, base = statistics.median(a), statistics.median(b)
        verdict = "meets" if app / base <= TARGET_RATIO else "ABOVE"
        print(
            f"  {clock[:-3]:>4}: (a) cold init {app:6.1f} ({min(a):.0f}-{max(a):.0f})"
            f"  (b) third-party alone {base:6.1f} ({min(b):.0f}-{max(b):.0f})"
            f"  ratio {app / base:.2f} ({verdict} {TARGET_RATIO}), ours {app - base:5.1f}"
        )
        result[f"app_{clock}"], result[f"deps_{clock}"] = round(app, 1), round(base, 1)
        result[f"ratio_{clock[:-3]}"] = round(app / base, 2)
    gcs = [statistics.median(s.full_gcs for s in samples[k]) for k in ("a", "b")]
    print(f"  full (generation-2) GC passes during the import: (a) {gcs[0]:g}, (b) {gcs[1]:g}")
    return result


BREAKDOWN = """
import importlib, json, sys, time
for name in {deps!r}:
    importlib.import_module(name)
costs = {{}}
for name in {order!r}:
    started = time.process_time()
    if name == "app.py":
{load_app}
    else:
        importlib.import_module(name)
    costs[name] = (time.process_time() - started) * 1000
print(json.dumps(costs))
"""


def breakdown(tree: list[Line], deps: list[str], runs: int = 9) -> None:
    """CPU cost of each first-party module, imported one by one in load order after (b)."""
    order = [x.name for x in tree if first_party(x.name)] + ["app.py"]
    load_app = "\n".join("        " + line for line in LOAD_APP.strip().splitlines())
    code = BREAKDOWN.format(deps=deps, order=order, load_app=load_app)
    samples = [json.loads(child(code)[0]) for _ in range(runs)]
    costs = {name: statistics.median(s[name] for s in samples) for name in order}
    print(f"\nour code, module by module after (b) (CPU, median of {runs}), ms")
    print(f"  total {sum(costs.values()):.1f} over {len(costs)} modules; the largest:")
    for name, cost in sorted(costs.items(), key=lambda item: -item[1])[:10]:
        print(f"  {cost:6.1f}  {'functions/api/app.py' if name == 'app.py' else name}")


def report(tree: list[Line]) -> None:
    ms = 1000.0
    pulled = [x for x in tree if first_party(x.importer) and not first_party(x.name)]
    print(f"\nimports made by our code (-X importtime, cumulative, median of {IMPORTTIME_RUNS})")
    for line in sorted(pulled, key=lambda x: -x.cum_us)[:12]:
        kind = "third-party" if third_party(line.name) else "stdlib"
        by = line.importer or "functions/api/app.py"
        print(f"  {line.cum_us / ms:6.1f} ms  {line.name:<40} {kind:<11} <- {by}")


def main() -> None:
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    tree = median_tree(IMPORTTIME_RUNS)
    deps = [x.name for x in tree if first_party(x.importer) and third_party(x.name)]
    loaded = sorted({x.name.split(".")[0] for x in tree if third_party(x.name)})
    print(f"third-party packages loaded by (a): {', '.join(loaded)}")
    print(f"(b) imports: {', '.join(deps)}")
    now = compare(f"{FUNCTION} cold init", LOAD_APP, import_all(deps))
    breakdown(tree, deps)
    report(tree)
    empty = tempfile.mkdtemp(prefix="artemis-no-pyc-")
    try:
        no_pyc = {**ENV, "PYTHONPYCACHEPREFIX": empty, "PYTHONDONTWRITEBYTECODE": "1"}
        as_deployed = compare(
            "as deployed: no bytecode cache", LOAD_APP, import_all(deps), runs=5, env=no_pyc
        )
    finally:
        shutil.rmtree(empty, ignore_errors=True)
    print(f"\nload average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    figures = {"now": now, "no_bytecode": as_deployed}
    print(json.dumps({"runs": RUNS, **figures, "deps": deps}))


if __name__ == "__main__":
    main()
