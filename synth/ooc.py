"""Out-of-context (OOC) resource estimate of a compiled accelerator: each distinct block once.

The accelerator's Verilog has one module per component instance, named by its hierarchy
path (Amaranth), so block ``k`` of the DAG is the module :func:`bitplane.hw.top.block_module`
and every module under it. The estimate cuts the design there:

* **blocks**: each block with the modules it instantiates, renamed relative to the block
  (``bp_block``, ``bp_block.engine``, ...), is a design of its own. Blocks with the same
  parameters and memory contents have the same text, so the text's hash identifies the
  block and identical blocks (the same engine in two places; every weight memory is empty
  when the weights are loaded at run time, ``--no-embed-weights``) are synthesized once;
* **glue**: the whole design with the block modules as black boxes: the edge FIFOs, forks,
  framers, weight loader and register file.

The estimate is the glue plus the sum over the blocks. Each synthesis is a cached
:func:`bitplane.synth.flow.synthesize` run (xc7/xcup: ``synth_xilinx``; ECP5: ``synth_ecp5``
without place and route), keyed by the SHA-256 of its Verilog, the target and the tool
versions, its report stored as JSON (never pickled) under ``cache_dir`` (default: the
user's cache folder, ``platformdirs.user_cache_dir("bitplane")/synth``), so re-running
an estimate only synthesizes the blocks that changed.

What OOC cannot see: optimisation across a block boundary. In a flat synthesis a block's
output bits nobody reads, or input bits that are constant (e.g. the unused high bits of a
weight-write port), are removed together with the logic behind them, and registers or LUTs
on both sides of a boundary can merge; OOC keeps them. The estimate is therefore an upper
bound of the same mapping, and its difference from the flat count measures those savings
(bench/REPORT.md states it for the example networks). No timing: Fmax needs the whole
placed design.
"""
from __future__ import annotations

import hashlib
import re
import time
from pathlib import Path

from bitplane.core.progress import progress_bar
from .flow import TARGETS, SynthError, synthesize, tool_versions

BLOCK_TOP = "bp_block"          # the module name of a block synthesized on its own

_MODULE = re.compile(r"^module\s+(\\\S+|[A-Za-z_][\w$]*)\s*[(;]", re.M)
_INTERNAL = re.compile(r"\\\$\S+")
_INSTANCE = re.compile(r"^\s+(\\\S+|[A-Za-z_][\w$]*)\s+(\\\S+|[A-Za-z_][\w$]*)\s*\(", re.M)


def default_cache_dir() -> Path:
    """``<user cache dir>/bitplane/synth`` (platformdirs: ``~/.cache/bitplane/synth`` on Linux)."""
    import platformdirs
    return Path(platformdirs.user_cache_dir("bitplane")) / "synth"


def split_modules(verilog: str) -> dict[str, str]:
    """``{module name: its text}`` of a Verilog file as yosys ``write_verilog`` writes it (the
    attribute lines just before a module belong to it); names without the leading ``\\``."""
    out, pos = {}, 0
    for m in _MODULE.finditer(verilog):
        end = verilog.find("\nendmodule", m.end())
        if end < 0:
            raise SynthError(f"module {m.group(1)} has no endmodule")
        start = m.start()
        # the module's attributes: the "(* ... *)" lines right before it
        head = verilog[pos:start].rstrip("\n").split("\n")
        attrs = []
        while head and head[-1].lstrip().startswith("(*"):
            attrs.insert(0, head.pop())
        text = "\n".join(attrs + [verilog[start:end + len("\nendmodule")]]) + "\n"
        out[m.group(1).lstrip("\\")] = text
        pos = end + len("\nendmodule")
    return out


def instances(text: str, names) -> set[str]:
    """The modules of ``names`` that ``text`` (one module) instantiates."""
    return {t.lstrip("\\") for t, _ in _INSTANCE.findall(text)} & set(names)


def block_design(modules: dict[str, str], name: str) -> str:
    """Block module ``name`` and every module under it as one Verilog text, renamed relative
    to the block (``name`` -> :data:`BLOCK_TOP`), so that identical blocks give identical text."""
    todo, seen = [name], []
    while todo:
        n = todo.pop()
        if n in seen:
            continue
        seen.append(n)
        todo.extend(sorted(instances(modules[n], modules)))
    outside = [n for n in seen if n != name and not n.startswith(name + ".")]
    if outside:
        raise SynthError(f"block {name} instantiates module {outside[0]}, which is not under it")
    # the block's path, where it names a module (escaped identifier or attribute string)
    path = re.compile(re.escape(name) + r'(?=[.\s"])')
    text = "".join(path.sub(BLOCK_TOP, modules[n]) for n in sorted(seen))
    # yosys-internal names ("\\$auto$verilog_backend.cc:2355:dump_module$4") are numbered across
    # the whole file: renumbered in order of appearance (a one-to-one renaming)
    ids: dict[str, str] = {}
    return _INTERNAL.sub(lambda m: ids.setdefault(m.group(0), f"\\$bp${len(ids)}"), text)


def block_modules(modules: dict[str, str], top: str) -> list[str]:
    """The block modules of the accelerator ``top``, in block order."""
    from bitplane.hw.top import block_module          # lazy: imports amaranth
    out = []
    while block_module(top, len(out)) in modules:
        out.append(block_module(top, len(out)))
    if not out:
        raise SynthError(f"no block modules ({block_module(top, 0)}, ...) in the Verilog of {top}: "
                         f"out-of-context synthesis needs a compiled accelerator")
    return out


def _add(total: dict, res: dict, times: int = 1) -> None:
    for k, v in res.items():
        total[k] = total.get(k, 0) + times * v


def ooc_synthesize(verilog: str, top: str, target: str, cache_dir=None, progress=None, timeout: float | None = 3600,
                   bar: bool = True, jobs: int = 1) -> dict:
    """Out-of-context resource estimate (module docstring) of the accelerator ``top`` for
    ``target`` (xc7z020, xcku5p, ecp5-85k, ecp5-45k). Returns ``resources`` (glue + blocks),
    ``glue``, ``blocks`` (per block: module, design hash, resources, copies), ``distinct``,
    ``synthesized`` (runs not found in the cache), ``times_s``, ``cpu_s`` and ``cache_dir``.
    ``jobs``: synthesis runs at a time (each is one single-threaded yosys process)."""
    if target not in TARGETS:
        raise SynthError(f"unknown target {target!r}; choose one of {', '.join(TARGETS)}")
    t = TARGETS[target]
    if t.family not in ("xilinx", "ecp5"):
        raise SynthError(f"out-of-context estimates are for xilinx parts and ecp5, not {target}")
    if jobs < 1:
        raise SynthError(f"jobs must be >= 1, got {jobs}")
    progress = progress or (lambda msg: None)
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    t0 = time.perf_counter()
    modules = split_modules(verilog)
    if top not in modules:
        raise SynthError(f"module '{top}' not found in the Verilog")
    names = block_modules(modules, top)
    designs: dict[str, tuple[str, list[int]]] = {}
    for k, n in enumerate(names):
        text = block_design(modules, n)
        designs.setdefault(hashlib.sha256(text.encode()).hexdigest(), (text, []))[1].append(k)
    quiet = lambda msg: None  # noqa: E731
    # the runs, largest first (the bar's rate then over-estimates the time left, not under)
    runs = {h: (f"block {', '.join(map(str, designs[h][1]))} ({len(designs[h][0]) / 1e3:.0f} kB Verilog)",
                dict(verilog=designs[h][0], top=BLOCK_TOP))
            for h in sorted(designs, key=lambda h: -len(designs[h][0]))}
    runs["glue"] = ("glue (blocks as black boxes)", dict(verilog=verilog, top=top, blackboxes=names))
    update = progress_bar(len(runs), unit="designs", min_total=1, prefix="OOC synthesis") if bar else None

    def run(key):
        label, kw = runs[key]
        progress(label)
        return synthesize(target=target, cache_dir=cache_dir, progress=quiet, timeout=timeout, bitstream=False,
                          place=False, **kw)

    reps = {}
    if jobs == 1:
        for key in runs:
            reps[key] = run(key)
            if update:
                update(len(reps), note=runs[key][0].split(" (")[0])
    else:
        from concurrent.futures import ThreadPoolExecutor, as_completed
        with ThreadPoolExecutor(jobs) as ex:
            futures = {ex.submit(run, key): key for key in runs}
            try:
                for fut in as_completed(futures):
                    reps[futures[fut]] = fut.result()
                    if update:
                        update(len(reps), note=runs[futures[fut]][0].split(" (")[0])
            except BaseException:
                ex.shutdown(wait=True, cancel_futures=True)
                raise
    if update:
        update(len(reps), final=True)
    glue = reps.pop("glue")
    ran = sum(not r["cached"] for r in [glue, *reps.values()])
    total = dict(glue["resources"])
    # CPU seconds of the runs made now (the wall time grows with whatever else shares the cores)
    cpu = sum(r.get("cpu_s", {}).get("synth", 0) for r in [glue, *reps.values()] if not r["cached"])
    blocks = []
    for k, n in enumerate(names):
        h = next(h for h, (_, ks) in designs.items() if k in ks)
        _add(total, reps[h]["resources"])
        blocks.append({"index": k, "module": n, "design": h[:16], "resources": reps[h]["resources"],
                       "copies": len(designs[h][1]), "synth_s": reps[h]["times_s"].get("synth"),
                       "synth_cpu_s": reps[h].get("cpu_s", {}).get("synth"),
                       "cached": reps[h]["cached"]})
    rep = {"mode": "ooc", "target": target, "top": top, "resources": total, "glue": glue["resources"],
           "blocks": blocks, "distinct": len(designs), "synthesized": ran, "tools": tool_versions(),
           "cache_dir": str(cache_dir), "timing": None,
           "times_s": {"total": round(time.perf_counter() - t0, 1)}, "cpu_s": {"synthesized": round(cpu, 1)},
           "note": "out-of-context estimate: glue + the sum of per-block synthesis (no optimisation across "
                   "block boundaries); no timing"}
    if t.resources:
        rep["utilisation_pct"] = {k: 100.0 * total[k] / v for k, v in t.resources if k in total}
    return rep
