"""Per-device fit of a planned network: LUTs, block RAM and UltraRAM against a part's budget.

One table, :data:`DEVICES`, holds each part's budget, with the vendor figure it comes from.
:func:`fit` maps a plan (:func:`bitplane.gen.plan.plan`) onto every device:

* **LUTs**: the planner's engine estimate (``Fold.luts``, :func:`bitplane.gen.plan.estimate_luts`,
  in LUT6) plus the LUT RAM of the small memories below. For a LUT4 part (ECP5) the LUT6
  figure is multiplied by :data:`LUT4_PER_LUT6` (measured in bench/REPORT.md: ECP5 LUT4 /
  xc7 LUT6 of the same engines and networks, 2.4 to 3.3). Sliding windows, FIFOs and the
  stream plumbing are not in the planner's estimate, so the figure is a lower bound (the
  compiled TFC/CNV designs of bench/REPORT.md synthesize to 2.5-5.5x the engines' estimate):
  fit "on-chip" means the planned engines and memories fit, with the headroom shown. The
  block RAM figure is close to synthesis: 60.5 / 104.5 RAMB36 for cnv-w1a1 / cnv-w2a2 where
  yosys ``synth_xilinx`` uses 63.5 / 109 (tests/gen/test_devices.py).
* **memories**: every run-time memory of every block at its fold, as the hardware builds it
  (the planner's ``_memories``, ``hw.layers.BlockParams.memories``: width x entries), tiled
  onto the part's primitives in the best aspect ratio: RAMB36 (512x72 .. 32Kx1) or RAMB18
  halves (512x36 .. 16Kx1, counted 0.5), ECP5
  DP16KD (512x36 .. 16Kx1); on parts with UltraRAM (4Kx72) a memory moves there where it
  takes no more silicon (it frees >= 8 RAMB36 per URAM: one URAM holds 8 RAMB36's bits),
  then, best ratio first, while block RAM is over budget and URAM is left. A memory at most :data:`LUTRAM_DEPTH` entries deep
  goes to LUT RAM (Xilinx: 1 LUT6 per bit per 64 entries; ECP5: 1 LUT4 per bit per 16
  entries, TRELLIS_DPR16X4).

The figures are the planner's first-order model, not a synthesis result.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

from bitplane.core import weightimage as wimg
from bitplane.core.errors import InputError, NotSupportedError
from bitplane.hw.memory import BLOCK_RAM_18K_SHAPES, LUTRAM_DEPTH, in_lut_ram, splittable
from .plan import _memories, memory_bits, plan


@dataclass(frozen=True)
class Device:
    name: str
    board: str
    luts: int                 # LUTs of the part (LUT6, or LUT4 when lut_inputs == 4)
    lut_inputs: int
    bram: int                 # block RAM primitives: RAMB36 (Xilinx) or DP16KD (ECP5)
    bram_kind: str
    uram: int                 # UltraRAM blocks (4K x 72)
    source: str


# Vendor data-sheet figures (the device overview tables).
DEVICES = {d.name: d for d in (
    # Xilinx DS190 "Zynq-7000 SoC Data Sheet: Overview", Table 1, Z-7020: 53,200 LUTs,
    # 140 36-Kb block RAMs (4.9 Mb)
    Device("xc7z020", "Zynq-7020 (PYNQ-Z1/Z2)", 53_200, 6, 140, "RAMB36", 0, "Xilinx DS190, Z-7020"),
    # Xilinx DS891 "Zynq UltraScale+ MPSoC Data Sheet: Overview", ZU7EV: 230,400 CLB LUTs,
    # 312 36-Kb block RAMs (11.0 Mb), 96 UltraRAMs (27.0 Mb)
    Device("xczu7ev", "Zynq UltraScale+ ZU7EV (ZCU104)", 230_400, 6, 312, "RAMB36", 96, "Xilinx DS891, ZU7EV"),
    # Xilinx DS962 "Alveo U250 Data Center Accelerator Card Data Sheet": 1,728K LUTs,
    # 2,688 36-Kb block RAMs, 1,280 UltraRAMs (before the shell's share)
    Device("xcu250", "Alveo U250", 1_728_000, 6, 2_688, "RAMB36", 1_280, "Xilinx DS962, U250"),
    # Lattice FPGA-DS-02012 "ECP5 and ECP5-5G Family Data Sheet", Table 1.1, LFE5U-85:
    # 84K LUT4s (41,820 slices x 2), 208 sysMEM EBR blocks of 18 Kb (DP16KD), 3,744 Kb
    Device("ecp5-85k", "Lattice ECP5 LFE5U-85F", 83_640, 4, 208, "DP16KD", 0, "Lattice FPGA-DS-02012, LFE5U-85"),
)}

#: ECP5 LUT4 per planner LUT6 (bench/REPORT.md: 2.4-3.3 for the same engines and networks).
LUT4_PER_LUT6 = 3
# (width, depth) aspect ratios: Xilinx UG473/UG573 (RAMB36 incl. 72-bit simple dual port,
# URAM 4K x 72); Lattice TN1264 (DP16KD incl. the 36-bit pseudo-dual-port PDPW16KD).
RAMB36_SHAPES = ((72, 512), (36, 1024), (18, 2048), (9, 4096), (4, 8192), (2, 16384), (1, 32768))
RAMB18_SHAPES = DP16KD_SHAPES = BLOCK_RAM_18K_SHAPES          # a RAMB18 is half a RAMB36
URAM_SHAPE = (72, 4096)
URAM_PER_RAMB36 = 8          # bits of one UltraRAM (288 Kb) / one RAMB36 (36 Kb)


def plan_for_device(low, device: str | None, **kw) -> dict:
    """:func:`bitplane.gen.plan.plan` (keywords ``kw``) with the choices a device makes:
    popcounts for its LUT size (:func:`popcount_style`), loadable memories on one address where
    its LUT RAM has single-port primitives (:func:`single_port_lutram`), weight memories moved
    from LUT RAM to its spare block RAM (:func:`choose_ram_styles`; ``"block_ram_moved"`` lists the layers) or,
    when the plan needs more block RAM than the device has, from block RAM to LUT RAM
    (:func:`relieve_block_ram`; ``"lut_ram_moved"``)."""
    p = plan(low, popcount=popcount_style(device), shared_address=single_port_lutram(device), **kw)
    p["block_ram_moved"] = [] if device is None else choose_ram_styles(low, p, device, p["ram_style_given"])
    p["lut_ram_moved"] = [] if device is None else relieve_block_ram(low, p, device, p["ram_style_given"])
    return p


def popcount_style(device: str | None) -> str:
    """The engines' popcount build (``hw.bitserial.POPCOUNT_STYLES``) for a device: ``lut6``
    (compressor trees) on 6-input-LUT parts, ``adder`` on 4-input-LUT parts and without one."""
    return "adder" if device is None else "lut6" if _device(device).lut_inputs == 6 else "adder"


def single_port_lutram(device: str | None) -> bool:
    """The engines' loadable memories share one read/write address (``hw.memory.loadable_ports``)
    on a device whose LUT RAM has single-port primitives (Xilinx: RAM64X1S .. RAM256X1S, the
    :func:`lutram_luts` cost); not on ECP5 (dual-port TRELLIS_DPR16X4 only) nor without one."""
    return device is not None and _device(device).bram_kind == "RAMB36"


def _device(name: str) -> Device:
    if name not in DEVICES:
        raise InputError(f"unknown device {name!r} (known: {', '.join(DEVICES)})")
    return DEVICES[name]


def tiles(width: int, depth: int, shapes) -> int:
    """Primitives holding a ``width`` x ``depth`` memory in the best of ``shapes``."""
    return min(math.ceil(width / w) * math.ceil(depth / d) for w, d in shapes)


def lutram_luts(width: int, depth: int, lut4: bool) -> int:
    """LUTs a ``width`` x ``depth`` memory takes as distributed RAM (16 or 64 words per LUT)."""
    return width * math.ceil(depth / (16 if lut4 else 64))


def block_rams(width: int, depth: int, lut4: bool) -> float:
    """Block RAMs (DP16KD, or RAMB36 counting a RAMB18 as half) a ``width`` x ``depth`` memory takes."""
    return (tiles(width, depth, DP16KD_SHAPES) if lut4 else
            min(tiles(width, depth, RAMB36_SHAPES), tiles(width, depth, RAMB18_SHAPES) / 2))


def block_memories(low, folds) -> list:
    """``[(stage, width, entries, style, lutram_bits), ...]``: every run-time memory of the
    planned blocks (``style``: ``hw.bitserial.RAM_STYLES``, the fold's ``ram_style`` for weight
    memories; ``lutram_bits``: the top bits of a split weight memory's words in LUT RAM,
    ``hw.bitserial.EngineConfig.split_weights``)."""
    st_of = {s.name: s for s in low.stages}
    out = []
    for f in folds:
        st = st_of[f.stage]
        try:
            out += [(f.stage, int(m.width), int(m.entries), m.style, m.lutram_bits)
                    for m in _memories(st, f.pe, f.simd, f.ram_style, f.lutram_bits)]
        except NotSupportedError:      # no hardware block yet: the planner's totals as one memory
            m = memory_bits(st, f.pe, f.simd)
            bits = m["weights"] + m["thresholds"] + m["constants"]
            w = max(1, m["word"])
            out.append((f.stage, w, math.ceil(bits / w), "auto", 0))
    return out


def fit(low, p: dict, devices=None) -> list[dict]:
    """One row per device: the plan's LUT and memory needs against its budget, and whether
    the planned engines and memories fit on-chip (``fits``)."""
    mems = block_memories(low, p["folds"])
    rows = []
    for name in devices or DEVICES:
        d = DEVICES[name]
        lut4 = d.lut_inputs == 4
        luts = p["luts"] * (LUT4_PER_LUT6 if lut4 else 1)
        bram = uram = 0
        movable = []                    # (block RAMs freed per UltraRAM, block RAMs, UltraRAMs)
        for _, w, n, style, lut_bits in mems:
            if n == 1:                  # one word: registers (hw.bitserial), no RAM
                continue
            if in_lut_ram(style, n):
                luts += lutram_luts(w, n, lut4)
                continue
            if lut_bits:                # split by columns: the top bits in LUT RAM
                luts += lutram_luts(lut_bits, n, lut4)
                w -= lut_bits
            b = block_rams(w, n, lut4)
            bram += b
            if d.uram:
                u = tiles(w, n, (URAM_SHAPE,))
                movable.append((b / u, b, u))
        # UltraRAM where it saves silicon (>= 8 RAMB36 per URAM), then while block RAM is over budget
        for ratio, b, u in sorted(movable, reverse=True):
            if (ratio >= URAM_PER_RAMB36 or bram > d.bram) and uram + u <= d.uram:
                bram, uram = bram - b, uram + u
        fits = luts <= d.luts and bram <= d.bram and uram <= d.uram
        rows.append({"device": d.name, "board": d.board, "luts": int(luts), "lut_budget": d.luts,
                     "lut_kind": "LUT4" if lut4 else "LUT6", "bram": bram, "bram_budget": d.bram,
                     "bram_kind": d.bram_kind, "uram": uram, "uram_budget": d.uram, "fits": fits,
                     "memory_bits": int(sum(m[1] * m[2] for m in mems)), "source": d.source})
    return rows


#: Share of a device's block RAM that :func:`choose_ram_styles` may fill (the rest is left to
#: FIFOs, a shell and the estimate's rounding).
AUTO_BRAM_SHARE = 0.9


def _weight_memory_costs(low, p: dict, d: Device, keep, fold_ok, memory_ok) -> list:
    """``[(fold index, LUTs, block RAMs), ...]`` of the weight memories (more than one word,
    ``memory_ok(fold, memory)``) of the planned folds that ``fold_ok`` admits and ``keep`` does
    not name, as LUT RAM and as block RAM on device ``d``: what :func:`choose_ram_styles` and
    :func:`relieve_block_ram` weigh before moving a layer's weights."""
    lut4 = d.lut_inputs == 4
    st_of = {s.name: s for s in low.stages}
    out = []
    for k, f in enumerate(p["folds"]):
        if f.stage in keep or not fold_ok(f):
            continue
        try:
            mems = _memories(st_of[f.stage], f.pe, f.simd, f.ram_style)
        except (NotSupportedError, ValueError):     # no hardware block at this fold: nothing to move
            continue
        ws = [m for m in mems if m.kind == wimg.MEM_WEIGHTS and m.entries > 1 and memory_ok(f, m)]
        if ws:
            out.append((k, sum(lutram_luts(m.width, m.entries, lut4) for m in ws),
                        sum(block_rams(m.width, m.entries, lut4) for m in ws)))
    return out


def choose_ram_styles(low, p: dict, device: str, keep=()) -> list[str]:
    """For ``device``: weight memories the synthesis tool would put in LUT RAM (``auto`` style,
    2..``LUTRAM_DEPTH`` words) go to block RAM, the largest LUT saving per block RAM first,
    while the plan's block RAM stays within :data:`AUTO_BRAM_SHARE` of the device's. Layers in
    ``keep`` (a fold file's own ``ram_style``) are left alone. ``p["folds"]`` is updated;
    returns the layers moved."""
    d = DEVICES[device]
    cands = [(luts / max(bram, 1), k) for k, luts, bram in _weight_memory_costs(
        low, p, d, keep, lambda f: f.ram_style == "auto", lambda f, m: m.entries <= LUTRAM_DEPTH)]
    moved = []
    for _, k in sorted(cands, reverse=True):
        old = p["folds"][k]
        p["folds"][k] = replace(old, ram_style="block")
        row = fit(low, p, [device])[0]
        if row["bram"] <= AUTO_BRAM_SHARE * d.bram and row["uram"] <= d.uram:
            moved.append(old.stage)
        else:
            p["folds"][k] = old
    return moved


#: Share of a device's LUTs the planner's estimate may reach when :func:`relieve_block_ram` moves
#: weights into LUT RAM: the estimate leaves out windows, FIFOs and plumbing, and synthesis
#: comes out at about twice it for FINN's networks (bench/measured/equal-throughput.md).
RELIEF_LUT_SHARE = 0.5


def relieve_block_ram(low, p: dict, device: str, keep=()) -> list[str]:
    """For ``device``, when the plan needs more block RAM than the device has: the weight
    memories of whole layers go from block RAM to LUT RAM (``distributed``), the fewest LUTs per
    freed block RAM first, until the block RAM is within :data:`AUTO_BRAM_SHARE` of the device's,
    while the planner's LUT estimate stays within :data:`RELIEF_LUT_SHARE` of its LUTs. A wide,
    shallow weight memory (many PE x SIMD bits per cycle, few words) uses a block RAM's ports but
    not its depth -- FINN's LFC-W1A1 at its published rate needs 162 RAMB36 of an xc7z020's 140.
    If block RAM still exceeds the device after every move allowed, nothing is moved (the fit
    table then says it does not fit). Then each moved layer's words are split by columns
    (:func:`_split_back`): what the block RAM left under the share holds goes back to it, the top
    bits stay in LUT RAM. Layers in ``keep`` (a fold file's ``ram_style``) are left
    alone. ``p["folds"]`` is updated; returns the layers moved (wholly or split)."""
    d = DEVICES[device]
    if fit(low, p, [device])[0]["bram"] <= d.bram:
        return []
    cands = [(luts / bram, k) for k, luts, bram in _weight_memory_costs(
        low, p, d, keep, lambda f: f.ram_style != "distributed",
        lambda f, m: f.ram_style == "block" or m.entries > LUTRAM_DEPTH)]
    before = list(p["folds"])
    moved = []
    for _, k in sorted(cands):
        p["folds"][k] = replace(p["folds"][k], ram_style="distributed")
        row = fit(low, p, [device])[0]
        if row["luts"] > RELIEF_LUT_SHARE * d.luts:
            p["folds"][k] = before[k]
            break
        moved.append(before[k].stage)
        if row["bram"] <= AUTO_BRAM_SHARE * d.bram:
            break
    if fit(low, p, [device])[0]["bram"] > d.bram:
        p["folds"][:] = before
        return []
    # a layer moved early may not be needed once a larger one has moved: move it back
    index = {f.stage: k for k, f in enumerate(before)}
    for stage in list(moved):
        k = index[stage]
        p["folds"][k] = before[k]
        if fit(low, p, [device])[0]["bram"] <= AUTO_BRAM_SHARE * d.bram:
            moved.remove(stage)
        else:
            p["folds"][k] = replace(before[k], ram_style="distributed")
    for stage in moved:
        _split_back(low, p, d, index[stage])
    return moved


#: Column granularity of a split weight memory's block-RAM part: the 36-bit port of an 18-Kbit
#: block RAM (a RAMB18, half a RAMB36's 72; an ECP5 DP16KD).
SPLIT_COLUMN = BLOCK_RAM_18K_SHAPES[0][0]


def _split_back(low, p: dict, d: Device, k: int):
    """Fold ``k``'s weights, moved to LUT RAM by :func:`relieve_block_ram`: as many of each word's
    bits as the block RAM left under :data:`AUTO_BRAM_SHARE` of the device's holds go back to
    block RAM (``lutram_bits``, whole :data:`SPLIT_COLUMN`-bit columns), when its weight memory
    can be split (one block RAM deep: ``hw.bitserial.EngineConfig.split_weights``)."""
    f = p["folds"][k]
    st = {s.name: s for s in low.stages}[f.stage]
    ws = [m for m in _memories(st, f.pe, f.simd, f.ram_style) if m.kind == wimg.MEM_WEIGHTS]
    if not ws or not all(splittable(m.entries) for m in ws):
        return
    ww, n, copies = ws[0].width, ws[0].entries, len(ws)
    spare = AUTO_BRAM_SHARE * d.bram - fit(low, p, [d.name])[0]["bram"]
    lut4 = d.lut_inputs == 4
    for cols in range((ww - 1) // SPLIT_COLUMN, 0, -1):
        if copies * block_rams(cols * SPLIT_COLUMN, n, lut4) <= spare:
            p["folds"][k] = replace(f, ram_style="block", lutram_bits=ww - cols * SPLIT_COLUMN)
            if fit(low, p, [d.name])[0]["bram"] <= AUTO_BRAM_SHARE * d.bram:
                return
            p["folds"][k] = f
            return


def format_fit(rows: list[dict]) -> str:
    """The fit table as text (``bitplane plan``)."""
    def pct(a, b):
        return f"{100 * a / b:.0f}%" if b else "-"
    hdr = (f"{'device':<9} {'board':<32} {'LUTs':>20} {'block RAM':>22} {'UltraRAM':>16}  on-chip")
    lines = [hdr, "-" * len(hdr)]
    for r in rows:
        u = f"{r['uram']:,}/{r['uram_budget']:,} {pct(r['uram'], r['uram_budget']):>5}" if r["uram_budget"] else "-"
        lines.append(f"{r['device']:<9} {r['board']:<32} "
                     f"{r['luts']:>9,} {r['lut_kind']} {pct(r['luts'], r['lut_budget']):>5} "
                     f"{r['bram']:>7,.1f} {r['bram_kind']} {pct(r['bram'], r['bram_budget']):>5} {u:>16}  "
                     f"{'fits' if r['fits'] else 'does NOT fit'}")
    lines.append("(planner estimates: engines + memories; windows/FIFOs not included; budgets from the vendor data "
                 "sheets in gen/devices.py)")
    return "\n".join(lines)


def fit_text(p: dict, low=None) -> str:
    """What ``bitplane plan`` prints after the folds: the fit table (``p["fit"]`` when the plan
    carries it, as :func:`bitplane.api.plan` does; else computed from the lowered network ``low``)."""
    return "on-chip fit of the planned engines and memories:\n" + format_fit(p.get("fit") or fit(low, p))
