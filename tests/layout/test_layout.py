"""The package layout is the data flow (docs/design.md, "Layout"): every project import points
down the layer order, and the wheel installs one top-level name, ``bitplane``."""
from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# folder -> (subpackage, layer); a module may import its own layer or any lower one
LAYERS = {
    "core": 0,      # contract: errors, manifest, packing, register map, weight image (numpy only)
    "hw": 1,        # gateware (amaranth)
    "gen": 2,       # spec -> integer form -> golden model -> plan -> Verilog
    "synth": 3,     # synthesis flows, Vivado project
    "sim": 3,       # Verilator / cocotb simulation
    "host": 4,      # driver and transports (sim, xdma, zynq)
    "train": 5,     # PyTorch QAT, export
    "cli": 6,       # the command
    "bitplane": 6,  # public API, demo, random-network writer
}
# packages of one layer that must still not import each other
PEERS_APART = {("synth", "sim"), ("sim", "synth")}


def _project_imports(path: Path):
    """(line, imported bitplane subpackage, inside a function?) for every project import."""
    tree = ast.parse(path.read_text(), str(path))
    out = []

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            inside = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            mods = []
            if isinstance(child, ast.Import):
                mods = [a.name for a in child.names]
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                mods = [child.module + "." + a.name for a in child.names] if child.module == "bitplane" \
                    else [child.module]
            for m in mods:
                parts = m.split(".")
                if parts[0] in ("gen", "hw", "sim", "host", "train", "core", "synth", "cli", "bench"):
                    out.append((child.lineno, parts[0], inside, m))
                elif parts[0] == "bitplane":
                    sub = parts[1] if len(parts) > 1 and parts[1] in LAYERS else "bitplane"
                    out.append((child.lineno, sub, inside, m))
            visit(child, inside)

    visit(tree, False)
    return out


def _modules():
    for folder in LAYERS:
        for p in sorted((ROOT / folder).rglob("*.py")):
            yield folder, p


def test_every_project_import_points_down_the_layers():
    bad = []
    for folder, path in _modules():
        for line, target, _inside, mod in _project_imports(path):
            rel = f"{path.relative_to(ROOT)}:{line}"
            if target not in LAYERS or mod.split(".")[0] != "bitplane":
                bad.append(f"{rel}: imports '{mod}', not through the installed package 'bitplane'")
            elif LAYERS[target] > LAYERS[folder] or (folder, target) in PEERS_APART:
                bad.append(f"{rel}: {folder} (layer {LAYERS[folder]}) imports {mod} (layer {LAYERS[target]})")
    assert not bad, "imports against the layer order:\n" + "\n".join(bad)


def test_layer_checker_sees_an_upward_import(tmp_path):
    """The checker itself: an upward and a function-local upward import are both reported."""
    p = tmp_path / "m.py"
    p.write_text("from bitplane.host.driver import Accelerator\n"
                 "def f():\n    from bitplane.cli import main\n")
    found = [(t, inside) for _, t, inside, _ in _project_imports(p)]
    assert found == [("host", False), ("cli", True)]


def _bare_local_imports(path: Path) -> list[int]:
    """Lines of project imports (absolute or relative) inside a function without a
    ``# lazy: <reason>`` comment on the import's line or the line above it."""
    lines = path.read_text().splitlines()
    local = {line for line, _t, inside, _m in _project_imports(path) if inside}
    for fn in ast.walk(ast.parse("\n".join(lines), str(path))):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            local |= {n.lineno for n in ast.walk(fn) if isinstance(n, ast.ImportFrom) and n.level}
    return sorted(ln for ln in local if "# lazy:" not in lines[ln - 1] + (lines[ln - 2] if ln > 1 else ""))


def test_function_local_project_imports_say_why():
    """A project import inside a function keeps a heavy optional dependency (torch, onnx, cocotb,
    dask, Amaranth on the host-only path) off the start-up path or breaks an import cycle; each
    says which with a ``# lazy: <reason>`` comment. Every other import sits at the module top."""
    bare = [f"{path.relative_to(ROOT)}:{ln}" for _folder, path in _modules() for ln in _bare_local_imports(path)]
    assert bare == [], "function-local project imports without a '# lazy:' reason:\n" + "\n".join(bare)


def test_lazy_import_checker_sees_a_bare_one(tmp_path):
    p = tmp_path / "m.py"
    p.write_text("def f():\n    from bitplane.gen import spec\n"
                 "def g():\n    from .x import y  # lazy: a reason\n"
                 "def h():\n    from . import z\n")
    assert _bare_local_imports(p) == [2, 6]


def test_no_sys_path_hacks_outside_bench_scripts():
    r = subprocess.run(["git", "grep", "-n", "sys.path.insert"], cwd=ROOT, capture_output=True, text=True)
    # bench/ scripts and the scripts under tests/data that made third-party artefacts in a
    # throwaway venv (they import a fetched tensorpack example by path) run as __main__
    hits = [ln for ln in r.stdout.splitlines()
            if not ln.startswith(("bench/", "tests/layout/", "tests/data/"))]
    assert hits == []


def test_wheel_installs_one_top_level_name(tmp_path):
    # build from a copy of the tracked and new files, so setuptools' build/ lands in tmp_path
    src = tmp_path / "src"
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.split()
    for f in files:
        if (ROOT / f).is_file():
            (src / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, src / f)
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                        "-w", str(tmp_path), str(src)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    (whl,) = tmp_path.glob("bitplane-*.whl")
    names = zipfile.ZipFile(whl).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"bitplane"}
    for sub in ("core", "hw", "gen", "synth", "sim", "host", "train", "cli"):
        assert f"bitplane/{sub}/__init__.py" in names
    assert "bitplane/sim/native_harness.cpp" in names
    entry = zipfile.ZipFile(whl).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "bitplane = bitplane.cli.main:main" in entry
