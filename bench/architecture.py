"""Architecture metrics of the source tree, before and after the layout work of issue #13.

    python bench/architecture.py [--before REV] [--output docs/architecture-metrics.md]

Measures, with :mod:`ast` only (no import of the project), the working tree and the tree of
git revision ``REV`` (default: the commit before "layout: one installed package" c7b9cc1):

* the longest functions (lines from ``def`` to the function's last line);
* function-local project imports (an ``import``/``from`` of the project's own packages, or a
  relative one, inside a function), and how many carry a ``# lazy: <reason>`` comment;
* ``isinstance`` dispatch sites: ``isinstance(x, C)`` where ``C`` is a class the project
  defines (its errors excepted: catching an error type is not dispatch on a block type);
* the top-level names the wheel installs (``[tool.setuptools] packages`` of pyproject.toml).

Source files are every ``*.py`` outside ``tests/``, ``bench/``, ``docs/``, ``examples/`` and
hidden or build folders. Hand-measured sections of the output file below :data:`KEEP_MARKER`
(e.g. the before/after run of ``bench/report.py --quick``) are kept when it is regenerated.
"""
from __future__ import annotations

import argparse
import ast
import io
import subprocess
import tarfile
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BEFORE = "c7b9cc1^"
SKIP = {"tests", "bench", "docs", "examples", "build"}
LONGEST = 8
KEEP_MARKER = "<!-- kept by python bench/architecture.py: hand-measured sections follow -->"


def tree_of(rev: str | None) -> dict[str, str]:
    """``{path: text}`` of the working tree (``rev`` None) or of git revision ``rev``."""
    files = {}
    if rev is None:
        for p in sorted(ROOT.rglob("*")):
            rel = p.relative_to(ROOT)
            if p.is_file() and not any(part.startswith(".") for part in rel.parts):
                if p.suffix == ".py" or rel.as_posix() == "pyproject.toml":
                    files[rel.as_posix()] = p.read_text(encoding="utf-8")
        return files
    blob = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", rev], capture_output=True,
                          check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        for m in tar.getmembers():
            if m.isfile() and (m.name.endswith(".py") or m.name == "pyproject.toml"):
                files[m.name] = tar.extractfile(m).read().decode("utf-8")
    return files


def sources(files: dict[str, str]) -> dict[str, str]:
    return {p: t for p, t in files.items() if p.endswith(".py") and p.split("/")[0] not in SKIP
            and "/" in p}


def installed_names(files: dict[str, str]) -> list[str]:
    st = tomllib.loads(files["pyproject.toml"]).get("tool", {}).get("setuptools", {})
    names = {p.split(".")[0] for p in st.get("packages", [])} | set(st.get("py-modules", []))
    return sorted(names)


def _functions(tree):
    """``(qualified name, node)`` of every function, methods as ``Class.name``."""
    def walk(node, prefix):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                yield prefix + child.name, child
                yield from walk(child, prefix + child.name + ".")
            elif isinstance(child, ast.ClassDef):
                yield from walk(child, prefix + child.name + ".")
            else:
                yield from walk(child, prefix)
    yield from walk(tree, "")


def measure(files: dict[str, str]) -> dict:
    src = sources(files)
    packages = {p.split("/")[0] for p in src if p.endswith("/__init__.py") and p.count("/") == 1} | {"bitplane"}
    trees = {p: ast.parse(t, p) for p, t in src.items()}
    classes = set()
    for tree in trees.values():
        for n in ast.walk(tree):
            if isinstance(n, ast.ClassDef) and not n.name.endswith(("Error", "Exception")):
                classes.add(n.name)
    funcs, local, dispatch = [], [], []
    for path, tree in trees.items():
        lines = src[path].splitlines()
        seen = set()
        for qual, fn in _functions(tree):
            funcs.append((fn.end_lineno - fn.lineno + 1, f"{path}:{qual}"))
            for n in ast.walk(fn):
                if id(n) in seen or not isinstance(n, (ast.Import, ast.ImportFrom)):
                    continue
                seen.add(id(n))
                mods = [a.name for a in n.names] if isinstance(n, ast.Import) else [n.module or ""]
                if (isinstance(n, ast.ImportFrom) and n.level) or any(m.split(".")[0] in packages for m in mods):
                    near = lines[n.lineno - 1] + (lines[n.lineno - 2] if n.lineno > 1 else "")
                    local.append((f"{path}:{n.lineno}", "# lazy:" in near))
        for n in ast.walk(tree):
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "isinstance" \
                    and len(n.args) == 2:
                kinds = n.args[1].elts if isinstance(n.args[1], ast.Tuple) else [n.args[1]]
                names = {k.id if isinstance(k, ast.Name) else getattr(k, "attr", None) for k in kinds}
                if names & classes:
                    dispatch.append(f"{path}:{n.lineno}")
    funcs.sort(reverse=True)
    return {"files": len(src), "longest": funcs[:LONGEST], "over_100": sum(n > 100 for n, _ in funcs),
            "local": local, "dispatch": dispatch, "installed": installed_names(files)}


def _per_file(sites) -> str:
    count = {}
    for s in sites:
        f = s.split(":")[0]
        count[f] = count.get(f, 0) + 1
    return ", ".join(f"{f} {k}" for f, k in sorted(count.items(), key=lambda kv: (-kv[1], kv[0])))


def report(columns: list[tuple[str, dict]]) -> str:
    """The table (one column per measured tree) and, per tree, the details behind it."""
    def longest(m):
        n, q = m["longest"][0]
        return f"{n} (`{q}`)"
    rows = [
        ("source files measured", lambda m: m["files"]),
        ("longest function (lines)", longest),
        ("functions over 100 lines", lambda m: m["over_100"]),
        ("function-local project imports", lambda m: len(m["local"])),
        ("... of them with a `# lazy:` reason", lambda m: sum(ok for _, ok in m["local"])),
        ("`isinstance` dispatch on project classes", lambda m: len(m["dispatch"])),
        ("top-level installed names", lambda m: ", ".join(m["installed"])),
    ]
    out = ["# Architecture metrics (issue #13)", "",
           f"Generated by `python bench/architecture.py` on {time.strftime('%Y-%m-%d')}, measured with `ast` "
           "(definitions in the script's docstring). Columns: " + "; ".join(f"**{t}**" for t, _ in columns) + ".",
           "", "| measure | " + " | ".join(t for t, _ in columns) + " |", "|---" * (len(columns) + 1) + "|"]
    out += [f"| {label} | " + " | ".join(str(f(m)) for _, m in columns) + " |" for label, f in rows]
    for title, m in columns:
        out += ["", f"## {title}", "", "Longest functions: " + "; ".join(f"`{q}` {n}" for n, q in m["longest"]) + ".",
                "", f"`isinstance` dispatch sites per file: {_per_file(m['dispatch']) or 'none'}.", "",
                f"Function-local project imports per file: {_per_file([s for s, _ in m['local']]) or 'none'}."]
        missing = [s for s, ok in m["local"] if not ok]
        if title == columns[-1][0] and missing:
            out += ["", "Without a `# lazy:` reason: " + ", ".join(f"`{s}`" for s in missing) + "."]
    return "\n".join(out) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", default=BEFORE, help=f"git revision of the 'before' tree (default {BEFORE})")
    ap.add_argument("--also", action="append", default=[], metavar="REV",
                    help="more git revisions to measure, as columns between before and the working tree")
    ap.add_argument("--output", default=str(ROOT / "docs" / "architecture-metrics.md"))
    args = ap.parse_args(argv)
    columns = [(f"before (`{args.before}`)", measure(tree_of(args.before)))]
    columns += [(f"`{rev}`", measure(tree_of(rev))) for rev in args.also]
    columns.append(("after (working tree)", measure(tree_of(None))))
    text = report(columns)
    out = Path(args.output)
    if out.exists() and KEEP_MARKER in out.read_text(encoding="utf-8"):     # hand-measured sections stay
        text += "\n" + KEEP_MARKER + out.read_text(encoding="utf-8").split(KEEP_MARKER, 1)[1]
    out.write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
