"""Folding planner: PE/SIMD per layer from one goal, balancing the dataflow pipeline.

A matmul stage with ``R`` output channels, dot length ``N`` and ``V`` output vectors per
frame (output pixels of a conv, 1 for a dense layer), folded onto ``PE`` rows and ``SIMD``
lanes, takes ``V * (R/PE) * (N/SIMD) * P_w * P_a`` cycles per frame in the bit-serial
engine (:func:`stage_cycles`); the slowest stage sets the frame rate of the pipeline.

Goals:

* ``target_fps`` at ``clock_mhz``: every stage gets the cheapest fold (estimated LUTs)
  whose cycles/frame meet ``clock / fps``;
* ``lut_budget``: starting from the smallest folds, the bottleneck stage is widened step
  by step (cheapest step that lowers its cycles) while the total estimate fits;
* a fold file (YAML ``{layer: {pe: P, simd: S, ram_style: S, popcount: C}}``) overrides any
  stage: ``pe`` and ``simd`` fix its fold (1 when one of them is missing), ``ram_style`` (FINN's
  name: ``auto``, ``block``, ``distributed``) says how its weight memory is built, ``popcount``
  (``adder``, ``lut6``: ``hw.bitserial.POPCOUNT_STYLES``) how its popcounts are, whatever fold
  it gets. ``popcount`` defaults to the plan's (``bitplane compile --device``: ``lut6`` for a
  6-input-LUT device).

Constraints: ``PE`` divides ``R``; for a conv ``SIMD`` divides the input channels or is a
multiple of them covering whole kernel positions (:func:`simd_options`); for a dense layer
it divides ``N``.

The engine is not the only rate: a block also streams its input (a conv's sliding window
emits ``K*K*C/lanes`` words per output pixel, a pool consumes one word per cycle), and the
lanes per word are the previous block's ``PE``. :func:`block_cycles` gives every block's
cycles/frame with the hardware's own formulas (``hw.layers.BlockParams.cycles``) for a set of folds;
with a target the planner widens the ``PE`` of a block's producer until the block keeps up
(or its own ``PE`` when its accumulator pool is the limit), so the plan's cycles/frame is
the compiled accelerator's.
"""
from __future__ import annotations

from dataclasses import dataclass, replace


from bitplane.core.errors import BitplaneError, NotSupportedError
from bitplane.core import weightimage as wimg
from bitplane.core.packing import AXIS_IN_BITS, STREAM_BITS_MAX, check_stream_bits
from bitplane.core.yamlio import load_yaml
from bitplane.hw.bitserial import POPCOUNT_STYLES, RAM_STYLES, mvtu_cycles
from bitplane.hw.layers import MAX_WORD_BITS
from .hwmap import first_lanes, group_stages, layer_params, network_blocks
from .graph import LoweredGraph
from .lower import Lowered, MatmulStage


class PlanError(BitplaneError):
    pass


def divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def unit(st: MatmulStage) -> MatmulStage:
    """What one engine of the stage computes: the stage, or one group of a grouped conv (its
    G groups run in parallel on G engines of this fold, gen.hwmap.group_stages)."""
    return group_stages(st)[0] if getattr(st, "groups", 1) > 1 else st


def stage_vectors(st: MatmulStage) -> int:
    """Output vectors per frame: output pixels of a conv (before pooling), 1 for dense."""
    return int(st.mm_shape[1] * st.mm_shape[2]) if st.kind == "conv" else 1


def simd_options(st: MatmulStage) -> list[int]:
    """Legal SIMD values: a conv's window streams chunks of its input channels ``C``, so SIMD
    divides ``C`` or is a multiple ``m*C`` with ``m`` dividing ``K*K`` (several kernel
    positions per word, after a width converter); a dense layer: any divisor of ``N``."""
    if st.kind != "conv":
        return divisors(st.n_dot)
    st = unit(st)
    C = int(st.in_shape[0])
    return sorted(set(divisors(C)) | {C * m for m in divisors(st.kernel * st.kernel)})


def stage_cycles(st: MatmulStage, pe: int, simd: int) -> int:
    """Engine cycles per frame of a stage (``hw.bitserial.mvtu_cycles`` per output vector).

    The compiler reports the exact block formulas (window, input rate, pools) per layer;
    this term is what folding changes."""
    u = unit(st)
    return stage_vectors(u) * mvtu_cycles(u.out_channels, u.n_dot, pe, simd, u.wq.planes, u.in_act.planes)


def estimate_luts(st: MatmulStage, pe: int, simd: int) -> int:
    """LUT estimate of one folded engine (calibrated against synthesis in bench/).

    AND + popcount: ~1 LUT per lane; per PE: accumulator and coefficient shift-add (~2 LUTs
    per accumulator bit) and ``T`` parallel threshold comparators (~1 LUT per 2 bits each);
    control ~60 LUTs. A first-order model, to be replaced by fitted synthesis figures.
    """
    T = 0 if st.raw else int(st.thresholds.shape[1])
    acc = st.acc_bits
    return getattr(st, "groups", 1) * int(pe * simd + pe * (2 * acc + T * ((acc + 1) // 2) + 4) + 60)


def _memories(st: MatmulStage, pe: int, simd: int, ram_style: str = "auto", lutram_bits: int = 0):
    """The run-time memories of the stage's block at this fold (the hardware's own widths and styles)."""
    return [m for _ in range(getattr(st, "groups", 1))
            for m in layer_params(unit(st), pe, simd, 1, init=False, ram_style=ram_style,
                                  lutram_bits=lutram_bits).memories()]


def memory_bits(st: MatmulStage, pe: int, simd: int) -> dict:
    """Bits of the block's weight, threshold and constant memories at this fold, as built
    (``hw.layers.BlockParams.memories``; the weight-image section kinds), and ``word``: the
    widest memory word."""
    out = {"weights": 0, "thresholds": 0, "constants": 0, "word": 0}
    names = {wimg.MEM_WEIGHTS: "weights", wimg.MEM_THRESHOLDS: "thresholds", wimg.MEM_CONSTANTS: "constants"}
    try:
        mems = _memories(st, pe, simd)
    except (NotSupportedError, ValueError):    # no hardware block at this fold: compile reports it
        return dict(out, weights=st.out_channels * st.n_dot * st.wq.planes, word=pe * simd)
    for mem in mems:
        out[names[mem.kind]] += mem.bits
        out["word"] = max(out["word"], mem.width)
    return out


@dataclass
class Fold:
    stage: str
    pe: int
    simd: int
    cycles: int
    luts: int
    weight_bits: int
    threshold_bits: int
    constant_bits: int
    word_bits: int            # widest memory word
    source: str = "planner"
    block_cycles: int = 0     # the whole block (engine, window, input, pools): set by plan()
    ram_style: str = "auto"   # weight memory (hw.bitserial.RAM_STYLES): from a fold file
    popcount: str = "adder"   # popcount build (hw.bitserial.POPCOUNT_STYLES): the plan's, or a fold file's
    shared_address: bool = False  # loadable memories on one address (hw.memory.loadable_ports): the plan's
    lutram_bits: int = 0      # weight word's top bits in LUT RAM beside block RAM (gen.devices.relieve_block_ram)


def weight_memory_text(f: Fold) -> str:
    """Where a fold's weights live, as ``bitplane plan`` and ``bitplane compile`` say it ("" for
    the synthesis tool's choice)."""
    if f.lutram_bits:
        return (f"weights in block RAM but the top {f.lutram_bits:,} of each {f.pe * f.simd:,}-bit word "
                f"in distributed RAM")
    return f"weights in {f.ram_style} RAM" if f.ram_style != "auto" else ""


def check_fold(st: MatmulStage, pe: int, simd: int, where: str):
    rows = unit(st).out_channels
    if pe < 1 or rows % pe:
        raise PlanError(f"{where}: layer '{st.name}': PE={pe} must divide the {rows} output "
                        f"channels{' of a group' if rows != st.out_channels else ''} (choose from {divisors(rows)})")
    opts = simd_options(st)
    if simd not in opts:
        what = (f"divide the {st.in_shape[0]} input channels or be a multiple of them dividing "
                f"{st.kernel}x{st.kernel}x{st.in_shape[0]}" if st.kind == "conv" else f"divide the {st.n_dot} inputs")
        raise PlanError(f"{where}: layer '{st.name}': SIMD={simd} must {what} (choose from {opts})")
    if (wb := word_bits(st, pe, simd)) > MAX_WORD_BITS:
        raise PlanError(f"{where}: layer '{st.name}': PE={pe} x SIMD={simd} needs {wb:,}-bit memory words "
                        f"(weights or {st.thresholds.shape[1] if not st.raw else 0} thresholds per row); the "
                        f"limit is {MAX_WORD_BITS:,}: lower PE")


def word_bits(st: MatmulStage, pe: int, simd: int) -> int:
    """Widest run-time memory word of the block at this fold."""
    return memory_bits(st, pe, simd)["word"]


def _fold(st, pe, simd, source="planner") -> Fold:
    m = memory_bits(st, pe, simd)
    return Fold(st.name, pe, simd, stage_cycles(st, pe, simd), estimate_luts(st, pe, simd),
                m["weights"], m["thresholds"], m["constants"], m["word"], source)


def _legal(f: Fold) -> bool:
    """Memory words within MAX_WORD_BITS."""
    return f.word_bits <= MAX_WORD_BITS


def _options(st):
    opts = [f for f in (_fold(st, p, s) for p in divisors(unit(st).out_channels) for s in simd_options(st))
            if _legal(f)]
    return sorted(opts, key=lambda f: (f.luts, f.cycles))


def load_fold_file(path) -> dict:
    doc, _ = load_yaml(path, lambda msg: PlanError(f"{path}: {msg}"), "fold file")
    if not isinstance(doc, dict):
        raise PlanError(f"{path}: expected a mapping {{layer: {{pe: P, simd: S}}}}")
    for k, v in doc.items():
        if not isinstance(v, dict) or not v or set(v) - {"pe", "simd", "ram_style", "popcount"} or not all(
                isinstance(x, int) and not isinstance(x, bool) for n, x in v.items() if n in ("pe", "simd")):
            raise PlanError(f"{path}: layer '{k}': expected {{pe: int, simd: int, ram_style: "
                            f"{'|'.join(RAM_STYLES)}, popcount: {'|'.join(POPCOUNT_STYLES)}}} (each optional), "
                            f"got {v!r}")
        for key, choices in (("popcount", POPCOUNT_STYLES), ("ram_style", RAM_STYLES)):
            if key in v and v[key] not in choices:
                raise PlanError(f"{path}: layer '{k}': {key} must be one of {', '.join(choices)}, got {v[key]!r}")
    return doc


def block_cycles(low: Lowered, folds: dict, stream_bits: int = AXIS_IN_BITS) -> dict:
    """Cycles/frame of every stage's hardware for ``folds`` (``{stage: Fold}``): the slowest of
    its blocks (gen.hwmap.network_blocks: the stage's own blocks and the adapters in front of
    them), each by its own formula (``hw.layers.BlockParams.cycles``) on the parameters the
    compiler builds, the first block fed by what a ``stream_bits`` input stream carries
    (:func:`gen.hwmap.first_lanes`). The accelerator's frame period is the largest (a DAG runs
    at the rate of its slowest block when the bypass FIFOs hold their derived depths, hw/dag.py)."""
    blocks, _, owners, _ = network_blocks(low, folds, init=False, stream_bits=stream_bits)
    out = {}
    for b, st in zip(blocks, owners):
        out[st.name] = max(out.get(st.name, 0), b.cycles())
    return out


def _producers(low: Lowered, name: str) -> list:
    """The nearest folding stages upstream of stage ``name`` (through pools, adds, ...)."""
    by = {s.name: s for s in low.stages}
    if isinstance(low, LoweredGraph):
        ins = low.inputs
    else:
        ins = {s.name: ((low.stages[k - 1].name,) if k else ()) for k, s in enumerate(low.stages)}
    out, todo, seen = [], list(ins.get(name, ())), set()
    while todo:
        v = todo.pop(0)
        if v in seen or v not in by:
            continue
        seen.add(v)
        if by[v].folds:
            out.append(by[v])
        else:
            todo += list(ins.get(v, ()))
    return out


def _feed(low: Lowered, folds: dict, budget: float, fixed: set, options, stream_bits: int):
    """Widen producers' PE until every block meets ``budget`` cycles/frame (target mode);
    ``options(stage)`` lists a stage's legal folds, cheapest first."""
    order = list(low.stages)
    for _ in range(64 * len(order)):
        cyc = block_cycles(low, folds, stream_bits)
        late = [i for i, s in enumerate(order) if cyc.get(s.name, 0) > budget]
        if not late:
            return
        i = late[0]
        st = order[i]
        producers = _producers(low, st.name)
        producer = producers[0] if producers else None
        tried = []
        # the producers' lanes feed this block; a conv's own PE sets its accumulator pool's rate
        for cand in producers + ([st] if st.folds else []):
            if cand.name in fixed:
                continue
            cur = folds[cand.name]
            tried.append(cand.name)
            # cheapest legal fold with more PE lanes whose engine still meets the target
            for f in (f for f in options(cand) if f.pe > cur.pe and f.cycles <= budget):
                why = f"PE raised to feed {st.name}" if cand is not st else "PE raised for its pool"
                trial = dict(folds, **{cand.name: replace(f, source=f"planner ({why})")})
                if block_cycles(low, trial, stream_bits)[st.name] < cyc[st.name]:
                    folds.update(trial)
                    break
            else:
                continue
            break
        else:
            if _widen_together(low, folds, st, producers, fixed, budget, options, cyc, stream_bits):
                continue
            if st.name in fixed and folds[st.name].cycles > budget:
                raise PlanError(f"layer '{st.name}': its fold from the fold file (PE={folds[st.name].pe}, "
                                f"SIMD={folds[st.name].simd}) needs {folds[st.name].cycles:,} cycles/frame, more "
                                f"than the target allows ({budget:.0f}); widen it or lower the target")
            why = (f"its input arrives {first_lanes(low, stream_bits)} codes per word over the {stream_bits}-bit "
                   f"input stream" if producer is None
                   else f"widening {' or '.join(repr(t) for t in tried) or 'its producer (fixed by the fold file)'} "
                        f"does not help further")
            raise PlanError(f"layer '{st.name}' cannot reach the target: its block needs {cyc[st.name]:,} "
                            f"cycles/frame (> {budget:.0f}) streaming its input ({why}); lower the target")
    raise PlanError("planner did not converge (internal error, please report)")  # pragma: no cover


def _widen_together(low, folds, st, producers, fixed, budget, options, cyc, stream_bits) -> bool:
    """A join's inputs run at the greatest common divisor of their lanes, so widening one
    producer alone may not help: give every free producer the cheapest fold whose PE is a
    multiple of a common lane count ``t`` (smallest ``t`` first) and keep the first that
    lowers ``st``'s cycles."""
    free = [p for p in producers if p.name not in fixed]
    if len(free) < 2:
        return False
    ts = sorted({f.pe for p in free for f in options(p)})
    for t in ts:
        trial = dict(folds)
        for p in free:
            ok = [f for f in options(p) if f.pe % t == 0 and f.pe >= folds[p.name].pe and f.cycles <= budget]
            if not ok:
                break
            trial[p.name] = replace(ok[0], source=f"planner (PE raised with its join's other inputs to feed {st.name})")
        else:
            if block_cycles(low, trial, stream_bits)[st.name] < cyc[st.name]:
                folds.update(trial)
                return True
    return False


STREAM_WIDTHS = (32, 64, 128, 256, 512)       # the widths the planner chooses from by itself


def plan(low: Lowered, target_fps: float | None = None, clock_mhz: float = 100.0,
         lut_budget: int | None = None, fold_file=None, stream_bits: int | None = None,
         popcount: str = "adder", shared_address: bool = False) -> dict:
    """Choose a fold per matmul stage; return ``{"folds": [...], "bottleneck": ..., ...}``.

    ``stream_bits``: the AXI4-Stream width (32..512, multiples of 8); ``None`` plans with the
    widest and then picks the narrowest of :data:`STREAM_WIDTHS` that feeds the first block as
    fast as the plan's slowest block runs (``"stream_bits"`` in the result). ``popcount``: how
    every engine's popcounts are built (``hw.bitserial.POPCOUNT_STYLES``) unless the fold file
    says otherwise for a layer; ``shared_address``: every engine's loadable memories are read and
    written at one address (``hw.memory.loadable_ports``: single-port LUT RAM on Xilinx)."""
    if stream_bits is not None:
        try:
            check_stream_bits(stream_bits)
        except ValueError as e:
            raise PlanError(str(e)) from None
    sb = STREAM_BITS_MAX if stream_bits is None else stream_bits
    stages = [s for s in low.stages if s.folds]
    overrides = {}
    if fold_file is not None:
        overrides = load_fold_file(fold_file)
        names = {s.name for s in stages}
        for k in overrides:
            if k not in names:
                raise PlanError(f"{fold_file}: layer '{k}' is not a conv/dense layer of the network "
                                f"(layers: {', '.join(sorted(names))})")
    if target_fps is not None and lut_budget is not None:
        raise PlanError("give either --target-fps or --lut-budget, not both")
    if popcount not in POPCOUNT_STYLES:
        raise PlanError(f"popcount must be one of {', '.join(POPCOUNT_STYLES)}, got {popcount!r}")
    fixed = {k for k, o in overrides.items() if set(o) & {"pe", "simd"}}     # layers whose fold is given
    folds = {}
    for st in stages:
        if st.name in fixed:
            o = overrides[st.name]
            pe, simd = o.get("pe", 1), o.get("simd", 1)
            check_fold(st, pe, simd, str(fold_file))
            folds[st.name] = _fold(st, pe, simd, "fold file")
    free = [s for s in stages if s.name not in folds]
    cache = {}

    def options(st):            # every legal fold of a stage (word_bits builds an engine config each)
        if st.name not in cache:
            cache[st.name] = _options(st)
        return cache[st.name]
    if target_fps is not None:
        if target_fps <= 0:
            raise PlanError(f"--target-fps must be positive, got {target_fps}")
        budget_cycles = clock_mhz * 1e6 / target_fps
        for st in free:
            ok = [f for f in options(st) if f.cycles <= budget_cycles]
            if not ok:
                best = min(options(st), key=lambda f: f.cycles)
                raise PlanError(f"layer '{st.name}' cannot reach {target_fps:g} frames/s at {clock_mhz:g} MHz: "
                                f"at its widest fold (PE={best.pe}, SIMD={best.simd}; memory words at most "
                                f"{MAX_WORD_BITS:,} bits) it needs {best.cycles} cycles/frame "
                                f"(> {budget_cycles:.0f}); lower the target or raise the clock")
            folds[st.name] = ok[0]
    else:
        for st in free:                 # the smallest fold the hardware can hold
            if _legal(smallest := _fold(st, 1, 1)):
                folds[st.name] = smallest
            elif options(st):
                folds[st.name] = options(st)[0]
            else:
                raise PlanError(f"layer '{st.name}': no PE/SIMD fold fits the memory word limit "
                                f"({MAX_WORD_BITS:,} bits)")
        if lut_budget is not None:
            total = sum(f.luts for f in folds.values())
            if total > lut_budget:
                raise PlanError(f"LUT budget {lut_budget:,} is too small: the smallest folding of this network "
                                f"needs about {total:,} LUTs")
            while free:
                st = max(free, key=lambda s: folds[s.name].cycles)
                cur = folds[st.name]
                step = [f for f in options(st) if f.cycles < cur.cycles]
                if not step:
                    break
                nxt = min(step, key=lambda f: (f.luts, f.cycles))
                if total - cur.luts + nxt.luts > lut_budget:
                    break
                total += nxt.luts - cur.luts
                folds[st.name] = nxt
    try:
        block_cycles(low, folds)            # every stage maps onto hardware (else: the layer and what is missing)
    except NotSupportedError as e:
        raise NotSupportedError(f"{low.net.path}: {e}") from None
    if target_fps is not None:
        _feed(low, folds, budget_cycles, fixed, options, sb)
    for name in folds:
        o = overrides.get(name, {})
        folds[name] = replace(folds[name], ram_style=o.get("ram_style", "auto"),
                              popcount=o.get("popcount", popcount), shared_address=shared_address)
    cyc = block_cycles(low, folds, sb)
    if stream_bits is None:
        worst = max(cyc.values())
        sb = next(w for w in STREAM_WIDTHS if max(block_cycles(low, folds, w).values()) <= worst)
        cyc = block_cycles(low, folds, sb)
    for f in folds.values():
        f.block_cycles = cyc[f.stage]
    ordered = [folds[s.name] for s in stages]
    bottleneck, worst = max(cyc.items(), key=lambda kv: kv[1])
    return {
        "clock_mhz": clock_mhz, "target_fps": target_fps, "lut_budget": lut_budget, "stream_bits": sb,
        "folds": ordered, "bottleneck": bottleneck, "cycles_per_frame": worst,
        "pools": {k: v for k, v in cyc.items() if k not in folds},
        "fps": clock_mhz * 1e6 / worst,
        "luts": sum(f.luts for f in ordered),
        "memory_bits": sum(f.weight_bits + f.threshold_bits + f.constant_bits for f in ordered),
        "ram_style_given": sorted(k for k, o in overrides.items() if "ram_style" in o),   # by the fold file
    }
