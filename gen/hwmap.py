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

import numpy as np

from bitplane.core.errors import NotSupportedError
from bitplane.core.intmath import signed_bits
from bitplane.core.packing import input_lanes
from bitplane.hw.bitserial import EngineConfig, ThresholdParams, row_constants, xnor_compatible
from bitplane.hw.layers import CodePoolParams, ConvParams, DenseParams, PoolParams
from .golden import Golden
from .lower import CodePoolStage, MatmulStage


def weight_codes(stage: MatmulStage) -> np.ndarray:
    """Plane codes of the weights, ``[rows, N]`` in window/stream column order."""
    codes = np.asarray(stage.wq.codes)
    if stage.kind == "conv":
        if stage.groups != 1:
            raise NotSupportedError(f"layer '{stage.name}': grouped convolution (groups={stage.groups}) "
                                    "is not supported by the hardware engines yet")
        O = codes.shape[0]
        return codes.transpose(0, 2, 3, 1).reshape(O, -1)          # O, (kh, kw, c)
    O = codes.shape[0]
    shp = stage.in_shape
    if len(shp) == 3:
        C, H, W = shp
        return codes.reshape(O, C, H, W).transpose(0, 2, 3, 1).reshape(O, -1)
    return codes.reshape(O, -1)


def weight_ints(stage: MatmulStage) -> np.ndarray:
    """Integer weight values in the same layout as :func:`weight_codes`."""
    c = weight_codes(stage)
    return stage.wq.int_basis.int_values(c)


def out_code_lut(stage: MatmulStage) -> np.ndarray:
    """Level index -> plane code of the stage's output activation."""
    return np.asarray(stage.out_act.level_codes, dtype=np.int64)


def in_codes(stage: MatmulStage, idx) -> np.ndarray:
    """Plane codes of the stage's input from level indices (what the input stream carries)."""
    return np.asarray(stage.in_act.level_codes, dtype=np.int64)[np.asarray(idx, dtype=np.int64)]


def pad_code(stage: MatmulStage) -> int:
    """Plane code inserted by conv padding (0 when the stage has no padding)."""
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


def engine_config(stage: MatmulStage, pe: int, simd: int, pooled: bool = False, init: bool = True):
    """The :class:`hw.bitserial.EngineConfig` of a stage (memories initialised from its weights)."""
    wb, ab = stage.wq.int_basis, stage.in_act.int_basis
    codes = weight_codes(stage)
    R, N = codes.shape
    w_coefs = tuple(tuple(int(v) for v in row) for row in np.asarray(wb.coefs))
    base = dict(rows=R, cols=N, pe=pe, simd=simd, w_coefs=w_coefs,
                w_offset=tuple(int(v) for v in np.asarray(wb.offset)),
                a_coefs=tuple(int(v) for v in np.asarray(ab.coefs)), a_offset=int(ab.offset),
                xnor=is_xnor(stage))
    if stage.raw:
        if stage.acc_bits > 64:
            raise NotSupportedError(f"layer '{stage.name}': raw accumulators need {stage.acc_bits} bits, more "
                                    f"than the 64 bits a result can carry")
        cfg = EngineConfig(**base, n_thresholds=0, raw_width=32 if stage.acc_bits <= 32 else 64)
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


def threshold_params(stage: MatmulStage, pe: int, init: bool = True):
    """The :class:`hw.bitserial.ThresholdParams` after a pool on accumulators."""
    thr = np.asarray(stage.thresholds, dtype=np.int64)
    lo = min(stage.acc_lo - 1, int(thr.min()) if thr.size else 0)
    hi = max(stage.acc_hi + 1, int(thr.max()) if thr.size else 0)
    p = ThresholdParams(rows=stage.out_channels, pe=pe, in_bits=stage.acc_bits, n_thresholds=int(thr.shape[1]),
                        width=signed_bits(lo, hi), levels=stage.out_act.L,
                        out_lut=tuple(int(v) for v in out_code_lut(stage)))
    if not init:
        return p
    return ThresholdParams(**{**p.__dict__, "init_thresholds": tuple(map(tuple, thr.tolist())),
                              "init_dirs": tuple(map(tuple, stage.up.astype(int).tolist()))})


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
    return CodePoolParams(C, H, W, p.kernel, p.stride, tuple(p.pads), act.planes, in_lanes,
                          tuple(bool(v) for v in np.broadcast_to(p.maximize, (C,))), to_level, to_code)


def first_lanes(low, stream_bits: int) -> int:
    """Input codes per word of the first block for a ``stream_bits`` input stream: a dense
    first block takes any divisor of all its inputs (a flat vector), the others a divisor of
    the channels (the sliding window and pools split pixels into channel chunks)."""
    st, shape = low.stages[0], tuple(int(v) for v in low.net.input_shape)
    group = int(np.prod(shape)) if isinstance(st, MatmulStage) and st.kind == "dense" else shape[0]
    return input_lanes(group, low.net.input_bits, stream_bits)


BLOCK_STAGES = (MatmulStage, CodePoolStage)   # lowered stage types that have a hardware block


def check_blocks(low, where) -> None:
    """Refuse a lowered network with a stage that has no hardware block, naming it."""
    for st in low.stages:
        if not isinstance(st, BLOCK_STAGES):
            raise NotSupportedError(f"{where}: layer '{st.name}': a {st.kind} stage has no hardware block yet "
                                    f"(graph networks in hardware: issue #16); golden and inspect support it")


def block_params(stage, in_lanes: int, fold=None, init: bool = True):
    """The hardware block (``hw.layers.BlockParams``) of a lowered stage whose input arrives
    ``in_lanes`` values per word; ``fold`` (PE, SIMD) for the stages that fold. The one place
    where a stage type meets its block type: a stage type without a block is refused here."""
    if isinstance(stage, MatmulStage):
        return layer_params(stage, fold.pe, fold.simd, in_lanes, init=init)
    if isinstance(stage, CodePoolStage):
        return code_pool_params(stage, in_lanes)
    raise NotSupportedError(f"layer '{stage.name}': a {stage.kind} stage has no hardware block yet "
                            f"(graph networks in hardware: issue #16)")


def layer_params(stage: MatmulStage, pe: int, simd: int, in_lanes: int, init: bool = True):
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
    eng = engine_config(stage, pe, simd, pooled=pooled, init=init)
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
        pool = PoolParams(p.kernel, p.stride, tuple(p.pads), tuple(bool(v) for v in p.maximize))
        table = out_code_lut(stage)
        if not acc_pool and not np.array_equal(table, np.arange(len(table))):
            lut = tuple(int(v) for v in table)
    return ConvParams(C, H, W, stage.kernel, stage.stride, tuple(stage.pads), in_lanes, pad_code(stage), eng,
                      pool, lut, thr)
