"""The shared layer as `sam build` makes it, checked against the Lambda runtime it ships to.

The layer's Makefile targets run into temporary directories (what `sam build` runs, minus the
copy of the sources). Every compiled file in the result must be for CPython 3.13 on the layer's
architecture and within the runtime's glibc (2.34, Amazon Linux 2023); the bytecode must be
3.13's; and a bare Python 3.13 with only the x86_64 layer on its path (no site-packages: the
layer must carry everything) imports every artemis module and every function's handler, the
way Lambda loads them. The arm64 layer cannot be imported here; its files are inspected.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from artemis_local.template import load_template
from tests.unit.test_template import REQUIRED_SECRETS, function_setting, functions

ROOT = Path(__file__).resolve().parents[2]
LAYER_SRC = ROOT / "layers" / "common"
LAMBDA_PYTHON = "3.13"
CPYTHON_TAG = "cpython-313"
MAX_GLIBC = (2, 34)  # the python3.13 runtime's Amazon Linux 2023
# Template layer -> (Lambda architecture, wheel CPU name, ELF e_machine)
LAYERS = {
    "CommonLayer": ("x86_64", "x86_64", 62),
    "CommonLayerArm64": ("arm64", "aarch64", 183),
}
ELF_MAGIC = b"\x7fELF"


def find_python(version: str) -> str | None:
    """A working interpreter of `version`: on PATH, or installed by pyenv without being
    selected (pyenv's shim for an unselected version exists but fails)."""
    root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    installed = sorted(str(p) for p in root.glob(f"versions/{version}.*/bin/python{version}"))
    candidates = [f"python{version}", *installed]
    for candidate in candidates:
        path = shutil.which(candidate)
        if path is None:
            continue
        done = subprocess.run(
            [path, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if done.returncode == 0 and done.stdout.strip() == version:
            return path
    return None


@pytest.fixture(scope="module")
def python313() -> str:
    found = find_python(LAMBDA_PYTHON)
    if found is None:
        pytest.fail(f"no Python {LAMBDA_PYTHON} here (install it, e.g. with pyenv)")
    return found


@pytest.fixture(scope="module")
def build_layer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], Path]]:
    """`build_layer(layer_id)`: the layer's python/ directory, built once per module."""
    built: dict[str, Path] = {}

    def build(layer_id: str) -> Path:
        if layer_id not in built:
            out = tmp_path_factory.mktemp(layer_id)
            done = subprocess.run(
                ["make", "-s", "-C", str(LAYER_SRC), f"build-{layer_id}",
                 f"ARTIFACTS_DIR={out}", f"PYTHON={sys.executable}"],
                capture_output=True, text=True, timeout=600, check=False,
            )  # fmt: skip
            assert done.returncode == 0, f"layer build failed:\n{done.stderr[-3000:]}"
            built[layer_id] = out / "python"
        return built[layer_id]

    yield build


def elf_files(root: Path) -> list[Path]:
    found = []
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            with path.open("rb") as f:
                if f.read(4) == ELF_MAGIC:
                    found.append(path)
    return found


def elf_machine(path: Path) -> tuple[int, int, int]:
    """(class, byte order, e_machine) from the ELF header: class 2 = 64-bit, order 1 = LE."""
    head = path.read_bytes()[:20]
    return head[4], head[5], int.from_bytes(head[18:20], "little")


def glibc_needed(path: Path) -> tuple[int, int]:
    """The newest GLIBC_2.x symbol version the file names (its dynamic string table)."""
    versions = {(2, int(m)) for m in re.findall(rb"GLIBC_2\.(\d+)", path.read_bytes())}
    return max(versions, default=(2, 0))


@pytest.mark.slow
@pytest.mark.parametrize("layer_id", sorted(LAYERS))
def test_every_compiled_file_in_the_layer_is_for_python313_on_its_architecture(
    build_layer: Callable[[str], Path], layer_id: str
) -> None:
    _, cpu, machine = LAYERS[layer_id]
    layer = build_layer(layer_id)
    elves = elf_files(layer)
    extensions = [p for p in elves if p.name.endswith(".so")]
    # psycopg, pydantic, cryptography and cffi all ship native code
    assert len(extensions) >= 4, f"only {[p.name for p in extensions]}"
    problems = []
    for path in elves:
        name = path.relative_to(layer)
        if elf_machine(path) != (2, 1, machine):
            problems.append(f"{name}: ELF header {elf_machine(path)}, want (2, 1, {machine})")
        if glibc_needed(path) > MAX_GLIBC:
            problems.append(f"{name}: needs glibc {glibc_needed(path)}")
    for path in extensions:
        tag = re.search(r"\.(cpython-\d+-[a-z0-9_]+-linux-gnu|abi3)\.so$", path.name)
        if tag is None or tag.group(1) not in {f"{CPYTHON_TAG}-{cpu}-linux-gnu", "abi3"}:
            problems.append(f"{path.relative_to(layer)}: not an extension for {CPYTHON_TAG} {cpu}")
    assert problems == []


@pytest.mark.slow
def test_the_layer_ships_python313_bytecode_only(
    build_layer: Callable[[str], Path], python313: str
) -> None:
    layer = build_layer("CommonLayer")
    magic = subprocess.run(
        [python313, "-c", "import importlib.util as u, sys; sys.stdout.write(u.MAGIC_NUMBER.hex())"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    pycs = list(layer.rglob("*.pyc"))
    wrong = [
        str(p.relative_to(layer))
        for p in pycs
        if not p.name.endswith(f".{CPYTHON_TAG}.pyc") or p.read_bytes()[:4].hex() != magic
    ]
    assert wrong == []
    compiled = {p.parent.parent / (p.name.split(".")[0] + ".py") for p in pycs}
    missing = sorted(
        str(p.relative_to(layer)) for p in (layer / "artemis").rglob("*.py") if p not in compiled
    )
    assert missing == [], "artemis modules without bytecode"


IMPORT_SCRIPT = r"""
import importlib, importlib.util, json, pkgutil, sys
layer, targets = sys.argv[1], json.loads(sys.argv[2])
sys.path.insert(0, layer)
bad = {}
import artemis
for mod in pkgutil.walk_packages(artemis.__path__, "artemis."):
    try:
        importlib.import_module(mod.name)
    except Exception as err:
        bad[mod.name] = f"{type(err).__name__}: {err}"
for name in ("pydantic_core", "cryptography.hazmat.bindings._rust", "_cffi_backend", "boto3",
             "redis", "psycopg_pool", "prometheus_client", "aws_lambda_powertools"):
    try:
        importlib.import_module(name)
    except Exception as err:
        bad[name] = f"{type(err).__name__}: {err}"
import psycopg
if psycopg.pq.__impl__ != "binary":
    bad["psycopg"] = f"libpq implementation {psycopg.pq.__impl__}, not the layer's binary one"
for name, (code_dir, path, attr) in targets.items():
    sys.path.insert(0, code_dir)  # Lambda puts the function's code first
    try:
        spec = importlib.util.spec_from_file_location("fn_" + name, path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        if not callable(getattr(mod, attr, None)):
            bad[name] = f"{attr} is not defined"
    except Exception as err:
        bad[name] = f"{type(err).__name__}: {err}"
    finally:
        sys.path.remove(code_dir)
outside = sorted({m.__file__ for m in list(sys.modules.values())
                  if getattr(m, "__file__", None) and "-packages" in m.__file__})
print(json.dumps({"bad": bad, "version": sys.version_info[:2], "outside": outside}))
"""


@pytest.mark.slow
def test_python313_imports_the_layer_and_every_handler_with_nothing_else(
    build_layer: Callable[[str], Path], python313: str
) -> None:
    layer = build_layer("CommonLayer")
    template = load_template()
    targets = {}
    for name, props in functions(template).items():
        module, attr = str(function_setting(template, props, "Handler")).rsplit(".", 1)
        code_dir = ROOT / str(props["CodeUri"])
        targets[name] = (str(code_dir), str(code_dir / f"{module}.py"), attr)
    env = {
        "PATH": os.environ.get("PATH", ""),
        **REQUIRED_SECRETS,
        "AWS_REGION": "us-east-1",
        "POWERTOOLS_METRICS_NAMESPACE": "Artemis",
    }
    # -I: no PYTHON* variables, no user site; -S: no site-packages at all
    done = subprocess.run(
        [python313, "-I", "-S", "-c", IMPORT_SCRIPT, str(layer), json.dumps(targets)],
        env=env, capture_output=True, text=True, timeout=120, cwd=ROOT, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["version"] == [3, 13]
    assert result["bad"] == {}
    assert result["outside"] == [], "modules loaded from outside the layer"
    assert len(targets) >= 8
