"""Mapping the integer form onto the streaming hardware (the gen side of ``hw/``).

Streams carry **plane codes** (bit ``p`` of a code is bit-plane ``p``) in HWC order
(``core/packing.py``). A matmul stage's threshold unit produces *level indices*; a pool on
codes runs on level indices; then ``out_code_lut`` maps level index -> plane code for the
next layer (identity for every quantizer but LQ-Nets). Conv padding inserts
``pad_code``.

The weight matrix of a stage is ``[rows = out channels, cols = N]`` with the columns in the
order the sliding window emits them: ``(kh, kw, c)`` for a conv (channels innermost, like
FINN), and the HWC flattening of the input feature map for a dense layer (the spec's
dense weights are in C,H,W order and are permuted here, once).
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from bitplane.core.errors import NotSupportedError
from bitplane.core.intmath import signed_bits
from bitplane.core.packing import AXIS_IN_BITS, input_lanes
from bitplane.hw.dag import INPUT
from bitplane.hw.graph_blocks import (AddParams, ConcatParams, GlobalPoolParams, LanesParams, RecodeParams,
                                      SliceParams, ThresholdBlockParams, WindowPoolParams)
from bitplane.hw.bitserial import EngineConfig, ThresholdParams, row_constants, xnor_compatible
from bitplane.hw.layers import MAX_WORD_BITS, CodePoolParams, ConvParams, DenseParams, PoolParams
from bitplane.hw.stream_blocks import mirror_fits
from .golden import Golden
from .graph import AddStage, AvgPoolStage, ConcatStage, FixedPoolStage, LoweredGraph, ThresholdStage
from .lower import CodePoolStage, MatmulStage
from .quant import ActQuant, Basis, IntBasis, QWeights


def weight_codes(stage: MatmulStage) -> np.ndarray:
    """Plane codes of the weights, ``[rows, N]`` in window/stream column order (a grouped
    conv is mapped group by group: :func:`group_stages`)."""
    _one_engine(stage)
    codes = np.asarray(stage.wq.codes)
    if stage.kind == "conv":
        O = codes.shape[0]
        return codes.transpose(0, 2, 3, 1).reshape(O, -1)          # O, (kh, kw, c)
    O = codes.shape[0]
    shp = stage.in_shape
    if len(shp) == 3:
        C, H, W = shp
        return codes.reshape(O, C, H, W).transpose(0, 2, 3, 1).reshape(O, -1)
    return codes.reshape(O, -1)


def _one_engine(stage: MatmulStage):
    if stage.kind == "conv" and stage.groups != 1:
        raise NotSupportedError(f"layer '{stage.name}': a grouped convolution (groups={stage.groups}) maps "
                                "onto one engine per group (gen.hwmap.group_stages), not onto one engine")


def weight_matrix_shape(stage: MatmulStage) -> tuple[int, int]:
    """``(rows, N)`` of :func:`weight_codes` without building it (the planner sizes every fold)."""
    _one_engine(stage)
    shape = np.shape(stage.wq.codes)
    return int(shape[0]), int(np.prod(shape[1:]))


def weight_ints(stage: MatmulStage) -> np.ndarray:
    """Integer weight values in the same layout as :func:`weight_codes`."""
    c = weight_codes(stage)
    return stage.wq.int_basis.int_values(c)


def out_code_lut(stage: MatmulStage) -> np.ndarray:
    """Level index -> plane code of the stage's output activation."""
    return np.asarray(stage.out_act.level_codes, dtype=np.int64)


def in_codes(stage: MatmulStage, idx) -> np.ndarray:
    """Plane codes of the stage's input from level indices (what the input stream carries:
    without the fractional planes a padded first conv adds in its window)."""
    codes = np.asarray(stage.in_act.level_codes, dtype=np.int64)[np.asarray(idx, dtype=np.int64)]
    return codes >> int(stage.in_act.frac_bits)


def pad_code(stage: MatmulStage) -> int:
    """Plane code inserted by conv padding (0 when the stage has no padding or one code per
    channel, ``stage.pad_codes``)."""
    if stage.pad_index is None:
        return 0
    return int(stage.in_act.level_codes[stage.pad_index])


def stage_io(stage: MatmulStage, idx):
    """(input plane codes, expected output) of one stage for input level indices ``idx``.

    The output is plane codes (via :func:`out_code_lut`) for threshold stages and signed
    accumulators for the raw last stage — exactly what the RTL block must emit.
    """
    out = Golden.run_stage(stage, idx)
    if not stage.raw:
        out = out_code_lut(stage)[out]
    return in_codes(stage, idx), out


def is_xnor(stage: MatmulStage) -> bool:
    """The stage's bases allow the engine's XNOR path (``hw.bitserial.xnor_compatible``)."""
    wb, ab = stage.wq.int_basis, stage.in_act.int_basis
    return xnor_compatible(np.asarray(wb.coefs).tolist(), np.asarray(wb.offset).tolist(),
                           np.asarray(ab.coefs).tolist(), ab.offset)


def engine_config(stage: MatmulStage, pe: int, simd: int, pooled: bool = False, init: bool = True,
                  raw_width: int | None = None, ram_style: str = "auto", popcount: str = "adder",
                  shared_address: bool = False, lutram_bits: int = 0):
    """The :class:`hw.bitserial.EngineConfig` of a stage (memories initialised from its weights);
    a raw stage emits ``raw_width``-bit accumulators (default: 32 or 64, the network output's);
    ``ram_style``: how its weight memory is built (``hw.bitserial.RAM_STYLES``); ``popcount``: how
    its popcounts are (``hw.bitserial.POPCOUNT_STYLES``); ``shared_address``: its loadable
    memories' read and write ports share one address (``hw.memory.loadable_ports``);
    ``lutram_bits``: the weight word's top bits in LUT RAM (``EngineConfig.split_weights``)."""
    wb, ab = stage.wq.int_basis, stage.in_act.int_basis
    codes = weight_codes(stage) if init else None          # sizing a fold needs only the shape
    R, N = codes.shape if init else weight_matrix_shape(stage)
    w_coefs = tuple(tuple(int(v) for v in row) for row in np.asarray(wb.coefs))
    base = dict(rows=R, cols=N, pe=pe, simd=simd, w_coefs=w_coefs,
                w_offset=tuple(int(v) for v in np.asarray(wb.offset)),
                a_coefs=tuple(int(v) for v in np.asarray(ab.coefs)), a_offset=int(ab.offset),
                xnor=is_xnor(stage), weight_ram_style=ram_style, popcount=popcount,
                shared_address=shared_address, weight_lutram_bits=lutram_bits)
    if stage.raw:
        if stage.acc_bits > 64:
            raise NotSupportedError(f"layer '{stage.name}': raw accumulators need {stage.acc_bits} bits, more "
                                    f"than the 64 bits a result can carry")
        cfg = EngineConfig(**base, n_thresholds=0,
                           raw_width=raw_width or (32 if stage.acc_bits <= 32 else 64))
    else:
        L = stage.out_act.L
        lut = () if pooled else tuple(int(v) for v in out_code_lut(stage))
        cfg = EngineConfig(**base, n_thresholds=int(stage.thresholds.shape[1]), levels=L, out_lut=lut)
    if not init:
        return cfg
    consts = row_constants(cfg, codes.tolist())
    extra = dict(init_weights=tuple(map(tuple, codes.tolist())), init_consts=tuple(consts))
    if not stage.raw:
        extra.update(init_thresholds=tuple(map(tuple, stage.thresholds.tolist())),
                     init_dirs=tuple(map(tuple, stage.up.astype(int).tolist())))
    return EngineConfig(**{**cfg.__dict__, **extra})


def threshold_unit_params(stage, rows: int, pe: int, in_bits: int, init: bool = True,
                          in_signed: bool = True) -> ThresholdParams:
    """The :class:`hw.bitserial.ThresholdParams` of ``stage``'s thresholds and output codes on
    ``rows`` rows (row ``r`` holds channel ``r mod C``'s thresholds), ``pe`` per word, over
    ``in_bits``-bit inputs; ``init``: the threshold memory holds them at power-on."""
    thr = np.asarray(stage.thresholds, dtype=np.int64)
    p = ThresholdParams(rows=rows, pe=pe, in_bits=in_bits, n_thresholds=int(thr.shape[1]),
                        width=threshold_width(stage, in_bits, in_signed), levels=stage.out_act.L,
                        out_lut=tuple(int(v) for v in stage.out_act.level_codes), in_signed=in_signed)
    if not init:
        return p
    tile = np.arange(rows) % thr.shape[0]
    return replace(p, init_thresholds=tuple(map(tuple, thr[tile].tolist())),
                   init_dirs=tuple(map(tuple, np.asarray(stage.up)[tile].astype(int).tolist())))


def threshold_params(stage: MatmulStage, pe: int, init: bool = True):
    """The :class:`hw.bitserial.ThresholdParams` after a pool on accumulators."""
    return threshold_unit_params(stage, stage.out_channels, pe, stage.acc_bits, init)


def _identity(t) -> bool:
    return np.array_equal(np.asarray(t), np.arange(len(t)))


def code_pool_params(stage: CodePoolStage, in_lanes: int):
    """``CodePoolParams`` of a pool on activation codes: codes are mapped to level indices
    (value order) before the pool and back after it, unless the codes already are in value order."""
    act, p = stage.act, stage.pool
    codes = np.asarray(act.level_codes)
    to_code = () if _identity(codes) else tuple(int(v) for v in codes)
    to_level = ()
    if to_code:
        inv = np.zeros(1 << act.planes, dtype=np.int64)
        inv[codes] = np.arange(len(codes))
        to_level = tuple(int(v) for v in inv)
    C, H, W = (int(v) for v in stage.in_shape)
    _check_window(stage.name, C, H, W, p.kernel, p.pads, p.pad_mode)
    return CodePoolParams(C, H, W, p.kernel, p.stride, tuple(p.pads), act.planes, in_lanes,
                          tuple(bool(v) for v in np.broadcast_to(p.maximize, (C,))), to_level, to_code, p.pad_mode)


def _consumers(low, name: str) -> list:
    if isinstance(low, LoweredGraph):
        return [s for s in low.stages if name in low.inputs.get(s.name, ())]
    k = next(i for i, s in enumerate(low.stages) if s.name == name)
    return low.stages[k + 1:k + 2]


def _flat_input(low) -> bool:
    """The first block may take any divisor of all the input codes per word (a flat vector):
    a dense first layer, or the input stage (element-wise) when only dense layers read it."""
    st = low.stages[0]
    if not isinstance(st, MatmulStage):
        return False
    if st.identity:
        users = _consumers(low, st.name)
        return bool(users) and all(isinstance(u, MatmulStage) and u.kind == "dense" for u in users)
    return st.kind == "dense"


def threshold_width(stage, in_bits: int, in_signed: bool = True) -> int:
    """Width of a :class:`hw.bitserial.ThresholdUnit`'s thresholds for ``stage`` (with ``thresholds``,
    ``acc_lo``/``acc_hi``): every threshold, the accumulator range +-1 and every input value."""
    thr = np.asarray(stage.thresholds, np.int64)
    lo = min(stage.acc_lo - 1, int(thr.min()) if thr.size else 0)
    hi = max(stage.acc_hi + 1, int(thr.max()) if thr.size else 0)
    return max(signed_bits(lo, hi), in_bits + (not in_signed))


def first_lanes(low, stream_bits: int) -> int:
    """Input codes per word of the first block for a ``stream_bits`` input stream: a dense
    first block, or an input stage read only by dense layers, takes any divisor of all its
    inputs (a flat vector), the others a divisor of the channels (the sliding window and pools
    split pixels into channel chunks). The input stage's threshold memory word (``lanes x T``
    thresholds) stays within ``hw.layers.MAX_WORD_BITS``."""
    st, shape = low.stages[0], tuple(int(v) for v in low.net.input_shape)
    group = int(np.prod(shape)) if _flat_input(low) else shape[0]
    cap = None
    if isinstance(st, MatmulStage) and st.identity:
        T = int(st.thresholds.shape[1])
        cap = max(1, MAX_WORD_BITS // max(1, T * (threshold_width(st, low.net.input_bits, False) + 1)))
    return input_lanes(group, low.net.input_bits, stream_bits, max_lanes=cap)


def input_threshold_params(stage: MatmulStage, lanes: int, in_bits: int, init: bool = True) -> ThresholdBlockParams:
    """The hardware of the input stage (``gen.lower._input_stage``): its accumulator is the
    input code itself, so it is a :class:`hw.bitserial.ThresholdUnit` on the unsigned codes,
    ``lanes`` codes per word (one word per cycle; no bit-serial engine). The codes arrive in HWC
    order, so lane ``l`` of word ``k`` holds channel ``(k*lanes + l) mod C``: the unit has
    ``lcm(lanes, C)`` rows, row ``r`` holding channel ``r mod C``'s thresholds, and takes
    ``C*H*W / lcm(lanes, C)`` "pixels" of those rows per frame."""
    C = int(stage.out_channels)
    rows = lanes * C // _gcd(lanes, C)
    tp = threshold_unit_params(stage, rows, lanes, in_bits, init, in_signed=False)
    return ThresholdBlockParams(tp, int(np.prod(stage.in_shape)) // rows)


def _check_window(name, C, H, W, k, pads, mode) -> None:
    """Refuse mirror padding the sliding window cannot read from its line buffer."""
    if mode != "constant" and not mirror_fits(k, tuple(pads), H, W, mode):
        raise NotSupportedError(f"layer '{name}': {mode} padding {list(pads)} of a {k}x{k} window needs rows the "
                                f"sliding window does not hold (hardware: 2*max(top, bottom) <= "
                                f"{'K-1' if mode == 'reflect' else 'K'})")


def block_params(stage, in_lanes: int, fold=None, init: bool = True):
    """The hardware block (``hw.layers.BlockParams``) of a sequential stage whose input arrives
    ``in_lanes`` values per word; ``fold`` (PE, SIMD) for the stages that fold. Graph stages
    (and grouped convs) map to several blocks: :func:`network_blocks`."""
    if isinstance(stage, MatmulStage) and stage.identity:
        return input_threshold_params(stage, in_lanes, stage.in_act.planes, init=init)
    if isinstance(stage, MatmulStage) and stage.groups == 1:
        return layer_params(stage, fold.pe, fold.simd, in_lanes, init=init, ram_style=fold.ram_style,
                            popcount=fold.popcount, shared_address=fold.shared_address,
                            lutram_bits=fold.lutram_bits)
    if isinstance(stage, CodePoolStage):
        return code_pool_params(stage, in_lanes)
    raise NotSupportedError(f"layer '{stage.name}': a {stage.kind} stage maps to several blocks "
                            f"(gen.hwmap.network_blocks)")


# ------------------------------------------------------------------------ graphs (issue #16)

def _rows(a, rows, n):
    """``a`` restricted to output channels ``rows`` where its last axis has the ``n`` channels."""
    a = np.asarray(a)
    return a[..., rows] if a.ndim and a.shape[-1] == n else a


def group_stages(stage: MatmulStage) -> list[MatmulStage]:
    """A grouped conv (``groups = G``) as G ordinary conv stages, one per group: group ``g``
    reads input channels ``[g*C/G, (g+1)*C/G)`` and computes output channels ``[g*O/G,
    (g+1)*O/G)`` with its slice of the weights, thresholds and pool directions; the golden
    accumulators are exactly the grouped conv's (same dot length ``C/G*K*K``, same proven
    range). In hardware each runs on its own engine behind a channel slice, and a concat
    joins their outputs (:func:`network_blocks`)."""
    G = stage.groups
    if G == 1:
        return [stage]
    O, C = stage.out_channels, int(stage.in_shape[0])
    og, cg = O // G, C // G
    out = []
    for g in range(G):
        rows = np.arange(g * og, (g + 1) * og)
        wq = stage.wq
        ib, fb = wq.int_basis, wq.basis
        q = QWeights(wq.qtype, wq.bits, np.asarray(wq.codes)[rows], np.asarray(wq.fq)[rows],
                     Basis(_rows(fb.coefs, rows, O), _rows(fb.offset, rows, O), _rows(fb.scale, rows, O)),
                     IntBasis(_rows(ib.coefs, rows, O), _rows(ib.offset, rows, O), _rows(ib.scale, rows, O), ib.exact),
                     np.asarray(wq.table)[rows] if np.ndim(wq.table) and len(wq.table) == O else wq.table)
        pool = stage.pool
        if pool is not None:
            pool = replace(pool, maximize=np.asarray(pool.maximize)[rows])
        out.append(replace(
            stage, in_shape=(cg,) + tuple(stage.in_shape[1:]), mm_shape=(og,) + tuple(stage.mm_shape[1:]),
            out_shape=(og,) + tuple(stage.out_shape[1:]), groups=1, wq=q, w_int=np.asarray(stage.w_int)[rows],
            scale=_rows(stage.scale, rows, O), bias=_rows(stage.bias, rows, O), pool=pool,
            thresholds=None if stage.thresholds is None else stage.thresholds[rows],
            up=None if stage.up is None else stage.up[rows],
            pad_codes=None if stage.pad_codes is None else tuple(stage.pad_codes[g * cg:(g + 1) * cg])))
    return out


def _gcd(*v) -> int:
    from math import gcd
    out = 0
    for x in v:
        out = gcd(out, int(x))
    return out


def _result_bits(bits: int, name: str) -> int:
    if bits > 64:
        raise NotSupportedError(f"layer '{name}': the output integers need {bits} bits, more than the 64 bits a "
                                f"result can carry")
    return 32 if bits <= 32 else 64


class _Builder:
    """Blocks, their input sources and owner stage, built stage by stage (:func:`network_blocks`)."""

    def __init__(self):
        self.blocks, self.inputs, self.owner, self.names = [], [], [], []

    def add(self, b, srcs, stage, name):
        self.blocks.append(b)
        self.inputs.append(tuple(srcs))
        self.owner.append(stage)
        self.names.append(name)
        return len(self.blocks) - 1


def _stream(idx, lanes, bits, signed, C, px):
    return {"idx": idx, "lanes": lanes, "bits": bits, "signed": signed, "C": C, "px": px}


def network_blocks(low, folds: dict, init: bool = True, stream_bits: int = AXIS_IN_BITS):
    """The accelerator's blocks as a DAG: ``(blocks, inputs, owners, names)`` with ``inputs[k]``
    the sources of block ``k``'s input ports (``hw.dag.INPUT`` for the network input),
    ``owners[k]`` the lowered stage it belongs to and ``names[k]`` its manifest name. A
    sequential network gives one block per stage in a chain. Graph stages get the blocks of
    hw/graph_blocks.py, with adapters where formats differ: a :class:`~hw.graph_blocks.Recode`
    from plane codes to level integers (when they differ) or between integer widths, and a
    lane converter where the inputs of a join arrive with different lanes per word (the join
    runs at the greatest common divisor of its inputs' lanes). The output stage's integers
    leave sign-extended to 32 or 64 bits. ``folds``: ``{stage: Fold}`` (PE, SIMD) of every
    matmul stage (a grouped conv's fold applies to each of its groups). Raises
    NotSupportedError, naming the layer, for what the hardware cannot map."""
    net = low.net
    C0, H0, W0 = net.input_shape
    graph = isinstance(low, LoweredGraph)
    if graph:
        ins = low.inputs
        out_name = low.output
    else:
        ins = {st.name: ((low.stages[k - 1].name,) if k else ("input",)) for k, st in enumerate(low.stages)}
        out_name = low.stages[-1].name
    used = {v for srcs in ins.values() for v in srcs}
    for st in low.stages:
        if st.name not in used and st.name != out_name:
            raise NotSupportedError(f"layer '{st.name}': its output is not used by any layer; the hardware needs "
                                    f"every layer on a path to the network output")
        if st.name == out_name and st.name in used:
            raise NotSupportedError(f"layer '{st.name}': the network output also feeds other layers; the hardware "
                                    f"takes the output from a layer nothing else reads")
    if low.stages[-1].name != out_name:
        raise NotSupportedError(f"layer '{out_name}': the network output must come from the last stage")
    B = _Builder()
    streams = {"input": _stream(INPUT, first_lanes(low, stream_bits), net.input_bits, False, C0, H0 * W0)}

    def px(shape):
        return int(np.prod(shape[1:])) if len(shape) == 3 else 1

    def recode(s, bits, signed, st, table=(), name="recode"):
        b = RecodeParams(s["C"], s["px"], s["lanes"], s["bits"], bits, s["signed"], tuple(table))
        return dict(s, idx=B.add(b, [s["idx"]], st, f"{st.name}/{name}"), bits=bits, signed=signed)

    def lanes_to(s, lanes, st, name="lanes"):
        if s["lanes"] == lanes:
            return s
        b = LanesParams(s["C"], s["px"], s["lanes"], s["bits"], lanes)
        return dict(s, idx=B.add(b, [s["idx"]], st, f"{st.name}/{name}"), lanes=lanes)

    def as_ints(s, form, st, name):
        """A stream of codes of ``form`` -> the integer level values (identity for DoReFa/uint)."""
        if not isinstance(form, ActQuant):
            return s
        codes, ints = np.asarray(form.level_codes), np.asarray(form.level_ints)
        if np.array_equal(codes, ints):
            return dict(s, signed=False)
        tab = np.zeros(1 << form.planes, np.int64)
        tab[codes] = ints
        return recode(s, signed_bits(int(ints.min()), int(ints.max())), True, st, tab, name)

    def form_of(name):
        if name == "input":
            return low.input_act
        st = next(x for x in low.stages if x.name == name)
        if isinstance(st, MatmulStage):
            return None if st.raw else st.out_act
        if isinstance(st, CodePoolStage):
            return st.act
        if isinstance(st, ThresholdStage):
            return st.out_act
        return st.out

    for st in low.stages:
        srcs = [streams[v] for v in ins[st.name]]
        is_out = st.name == out_name
        s = srcs[0]
        if isinstance(st, MatmulStage) and st.identity:
            b = input_threshold_params(st, s["lanes"], s["bits"], init=init)
            res = _stream(B.add(b, [s["idx"]], st, st.name), s["lanes"], b.out_lane_bits, False,
                          int(st.out_shape[0]), px(st.out_shape))
        elif isinstance(st, MatmulStage):
            f = folds[st.name]
            planes = st.in_act.planes - st.in_act.frac_bits  # the window adds the fractional planes
            if s["bits"] != planes or s["signed"]:         # a sum pool read as uint codes
                s = recode(s, planes, False, st, name="codes")
            raw_w = None if is_out else (int(st.acc_bits) if st.raw else None)
            parts = group_stages(st)
            if len(parts) == 1:
                b = layer_params(st, f.pe, f.simd, s["lanes"], init=init, raw_width=raw_w, ram_style=f.ram_style,
                                 popcount=f.popcount, shared_address=f.shared_address, lutram_bits=f.lutram_bits)
                idx = B.add(b, [s["idx"]], st, st.name)
            else:
                cg = int(st.in_shape[0]) // st.groups
                s = lanes_to(s, _gcd(s["lanes"], cg), st, "group_lanes")
                outs = []
                for g, sub in enumerate(parts):
                    sl = SliceParams(s["C"], s["px"], s["lanes"], s["bits"], g * cg, cg)
                    k = B.add(sl, [s["idx"]], st, f"{st.name}/slice{g}")
                    b = layer_params(sub, f.pe, f.simd, s["lanes"], init=init, raw_width=raw_w,
                                     ram_style=f.ram_style, popcount=f.popcount,
                                     shared_address=f.shared_address, lutram_bits=f.lutram_bits)
                    outs.append(B.add(b, [k], st, f"{st.name}/g{g}"))
                ob = B.blocks[outs[0]]
                cat = ConcatParams(tuple(p.out_channels for p in parts), px(st.out_shape), ob.out_lanes,
                                   ob.out_lane_bits, output=False)
                idx = B.add(cat, outs, st, f"{st.name}/concat")
            b = B.blocks[idx]
            res = _stream(idx, b.out_lanes, b.out_lane_bits, st.raw, int(st.out_shape[0]), px(st.out_shape))
            if is_out and len(parts) > 1:
                B.blocks[idx] = ConcatParams(b.parts, b.pixels, b.lanes, b.lane_bits, output=True)
        elif isinstance(st, CodePoolStage):
            b = code_pool_params(st, s["lanes"])
            res = dict(s, idx=B.add(b, [s["idx"]], st, st.name), px=px(st.out_shape))
        elif isinstance(st, AddStage):
            if len(srcs) != 2:
                raise NotSupportedError(f"layer '{st.name}': an add of {len(srcs)} inputs; the hardware adds two "
                                        f"(chain two-input adds)")
            vs = [as_ints(x, form_of(v), st, f"ints{j}") for j, (x, v) in enumerate(zip(srcs, ins[st.name]))]
            L = _gcd(*(x["lanes"] for x in vs))
            vs = [lanes_to(x, L, st, f"lanes{j}") for j, x in enumerate(vs)]
            ob = _result_bits(st.out.bits, st.name) if is_out else st.out.bits
            b = AddParams(int(st.out_shape[0]), px(st.out_shape), L, tuple(x["bits"] for x in vs),
                          tuple(x["signed"] for x in vs), tuple(tuple(int(v) >> k for v in row) for row, k in zip(st.mult, st.mult_shifts)),
                          ob, output=is_out, shift=st.shift, sum_bits=st.sum_bits, mult_shifts=tuple(st.mult_shifts),
                          clips=tuple(None if c is None else tuple(tuple(int(v) for v in b) for b in c)
                                      for c in (st.clips or (None,) * len(srcs))),
                          pre_shifts=tuple(st.pre_shifts or (0,) * len(srcs)))
            res = _stream(B.add(b, [x["idx"] for x in vs], st, st.name), L, ob, True, int(st.out_shape[0]),
                          px(st.out_shape))
        elif isinstance(st, AvgPoolStage):
            if st.pre_shift:
                raise NotSupportedError(f"layer '{st.name}': zero padding whose integer is not whole (the input is "
                                        f"scaled by 2^{st.pre_shift} in the golden model) has no hardware block")
            s = as_ints(s, st.in_form, st, "ints")
            ob = _result_bits(st.out.bits, st.name) if is_out else st.out.bits
            C, H, W = (int(v) for v in st.in_shape)
            if st.divisor == "global":
                b = GlobalPoolParams(C, H * W, s["lanes"], s["bits"], s["signed"], ob, output=is_out)
            else:
                _check_window(st.name, C, H, W, st.kernel, st.pads, st.pad_mode)
                b = WindowPoolParams(C, H, W, st.kernel, st.stride, tuple(st.pads), s["lanes"], s["bits"],
                                     s["signed"], ob, "sum",
                                     pad_q=() if st.recip is not None else tuple(int(v) for v in st.pad_q),
                                     recip=() if st.recip is None else tuple(int(v) for v in st.recip),
                                     pad_mode=st.pad_mode, output=is_out)
            res = _stream(B.add(b, [s["idx"]], st, st.name), s["lanes"], ob, True, C, px(st.out_shape))
        elif isinstance(st, ConcatStage):
            if isinstance(st.out, ActQuant):
                vs = list(srcs)
            else:
                vs = [as_ints(x, form_of(v), st, f"ints{j}") for j, (x, v) in enumerate(zip(srcs, ins[st.name]))]
                bits = max(x["bits"] + (not x["signed"]) for x in vs)
                vs = [x if (x["bits"], x["signed"]) == (bits, True) else recode(x, bits, True, st, name=f"widen{j}")
                      for j, x in enumerate(vs)]
            L = _gcd(*(x["lanes"] for x in vs))
            vs = [lanes_to(x, L, st, f"lanes{j}") for j, x in enumerate(vs)]
            b = ConcatParams(tuple(x["C"] for x in vs), px(st.out_shape), L, vs[0]["bits"])
            res = _stream(B.add(b, [x["idx"] for x in vs], st, st.name), L, vs[0]["bits"], vs[0]["signed"],
                          int(st.out_shape[0]), px(st.out_shape))
        elif isinstance(st, FixedPoolStage):
            p = st.pool
            C, H, W = (int(v) for v in st.in_shape)
            _check_window(st.name, C, H, W, p.kernel, p.pads, p.pad_mode)
            b = WindowPoolParams(C, H, W, p.kernel, p.stride, tuple(p.pads), s["lanes"], s["bits"], True, s["bits"],
                                 "max", maximize=tuple(bool(v) for v in p.maximize), pad_mode=p.pad_mode)
            res = dict(s, idx=B.add(b, [s["idx"]], st, st.name), px=px(st.out_shape))
        elif isinstance(st, ThresholdStage):
            b = ThresholdBlockParams(threshold_unit_params(st, st.out_channels, s["lanes"], s["bits"], init), s["px"])
            res = _stream(B.add(b, [s["idx"]], st, st.name), s["lanes"], b.out_lane_bits, False, s["C"], s["px"])
        else:
            raise NotSupportedError(f"layer '{st.name}': a {st.kind} stage has no hardware block")
        if is_out and not B.blocks[res["idx"]].raw_output:
            if not res["signed"]:
                raise NotSupportedError(f"layer '{st.name}': the network output must be signed integers")
            rb = _result_bits(res["bits"], st.name)
            b = RecodeParams(res["C"], res["px"], res["lanes"], res["bits"], rb, True, output=True)
            res = dict(res, idx=B.add(b, [res["idx"]], st, f"{st.name}/result"), bits=rb)
        streams[st.name] = res
    return B.blocks, B.inputs, B.owner, B.names


def layer_params(stage: MatmulStage, pe: int, simd: int, in_lanes: int, init: bool = True,
                 raw_width: int | None = None, ram_style: str = "auto", popcount: str = "adder",
                 shared_address: bool = False, lutram_bits: int = 0):
    """``ConvParams``/``DenseParams`` of a stage for ``hw.layers`` (``init``: memories hold the
    stage's weights at power-on; otherwise they must be loaded at run time).

    A pool on level indices sits after the engine's thresholds; a pool on accumulators (before
    a non-monotone activation such as ``cabs``) gets a raw engine whose output is exactly
    ``acc_bits`` wide, the pool on signed values, then a :class:`hw.bitserial.ThresholdUnit`."""
    acc_pool = stage.pool is not None and stage.pool.where == "acc"
    if acc_pool and stage.raw:
        raise NotSupportedError(f"layer '{stage.name}': a maxpool on the last layer's raw accumulators is not "
                                f"supported by the hardware blocks")
    pooled = stage.pool is not None
    eng = engine_config(stage, pe, simd, pooled=pooled, init=init, raw_width=raw_width, ram_style=ram_style,
                        popcount=popcount, shared_address=shared_address, lutram_bits=lutram_bits)
    thr = None
    if acc_pool:
        eng = EngineConfig(**{**eng.__dict__, "n_thresholds": 0, "levels": 0, "out_lut": (),
                              "init_thresholds": (), "init_dirs": (), "raw_width": int(stage.acc_bits)})
        thr = threshold_params(stage, pe, init=init)
    if stage.kind == "dense":
        return DenseParams(in_lanes, eng)
    C, H, W = stage.in_shape
    pool = None
    lut = ()
    if pooled:
        p = stage.pool
        pool = PoolParams(p.kernel, p.stride, tuple(p.pads), tuple(bool(v) for v in p.maximize), p.pad_mode)
        table = out_code_lut(stage)
        if not acc_pool and not np.array_equal(table, np.arange(len(table))):
            lut = tuple(int(v) for v in table)
    _check_window(stage.name, C, H, W, stage.kernel, stage.pads, stage.pad_mode)
    if pooled:
        _check_window(stage.pool.layer, stage.out_channels, *stage.mm_shape[1:], p.kernel, p.pads, p.pad_mode)
    return ConvParams(C, H, W, stage.kernel, stage.stride, tuple(stage.pads), in_lanes, pad_code(stage), eng,
                      pool, lut, thr, stage.pad_mode, tuple(stage.pad_codes or ()), int(stage.in_act.frac_bits))
