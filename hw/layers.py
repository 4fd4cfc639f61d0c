"""Streaming blocks and the block interface (docs/design.md, "Block interface").

Every block of the accelerator is described by a frozen parameter object derived from
:class:`BlockParams`. The parameter object answers everything the top level, the compiler
and the planner ask of a block -- its cycles per frame, its input and output word widths,
its output burst, its run-time loadable memories and their contents -- and builds its
component, so none of them dispatches on the block type:

=======================  ==============================================================
``in_bits``              input stream word width
``out_lanes``            values per output word; ``out_lane_bits`` bits per value
``burst``                output words emitted back to back (sizes the FIFO behind it)
``cycles()``             steady-state cycles per frame (the hardware formula)
``memories()``           :class:`LoadableMemory` list, in weight-image order
``memory_data(mem)``     address-ordered words of one memory (parameters built with ``init``)
``out_values``           values per frame (the last block's accumulators)
``describe()``           manifest fields
``build()``              the :class:`amaranth.lib.wiring.Component`
``in_ports``             the component's input stream ports, one per input (``("i",)``)
``in_widths()``          their word widths (``(in_bits,)``)
``out_pixels``           output pixels per frame (1 for a vector)
``need(k)``              ``need[p]``: words of input ``k`` the block must have received
                         before it emits output pixel ``p`` (sizes bypass FIFOs, hw/dag.py)
``lag()``                cycles from the last of those words to pixel ``p``'s last output
                         word at full rate (sizes the bypass FIFOs' slack, hw/dag.py)
``result_width``         bits per value when the block ends the network (raw output)
=======================  ==============================================================

Blocks: :class:`ConvBlock` (sliding window -> (width converter) -> bit-serial MVTU -> (pool
on level indices -> level-to-code LUT, or pool on accumulators -> threshold unit)),
:class:`DenseBlock` ((width converter) -> MVTU), :class:`CodePoolBlock` (max/min pool on
activation codes). ``gen.hwmap`` derives the parameters from the golden model's integer
form, so each block computes exactly the int path of its stage.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as _np
from amaranth import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from bitplane.core import weightimage as wimg
from bitplane.core.intmath import window_out

from .bitserial import (BitSerialMVTU, EngineConfig, ThresholdParams, ThresholdUnit, engine_cycles, engine_latency,
                        pack_constants, pack_thresholds, pack_weights)
from .stream_blocks import CodeLUT, Pool, SlidingWindow, WidthConverter, pool_cycles, window_cycles, window_need


REGISTER_LAG = 12   # cycles of register stages a block adds to a pixel's way (windows, FIFO reads, output registers)


# Widest memory word a block may have. Amaranth's netlist caps a memory word below 65,536 bits;
# half of that is already far beyond any block RAM's port (72 bits) and is spread over many.
MAX_WORD_BITS = 1 << 15


@dataclass(frozen=True)
class LoadableMemory:
    """A run-time loadable memory of a block: weight-image section ``kind`` with ``entries``
    words of ``width`` bits, written through the block component's port ``port``."""
    kind: int
    entries: int
    width: int
    port: str
    style: str = "auto"      # hw.bitserial.RAM_STYLES: how the memory is built (block, distributed, tool's choice)
    lutram_bits: int = 0     # style "block" split by columns: the word's top bits in LUT RAM (EngineConfig.split_weights)

    @property
    def bits(self) -> int:
        return self.entries * self.width

    def dense(self, pairs) -> list[int]:
        """The words of ``(address, word)`` pairs that fill this memory in address order."""
        if [a for a, _ in pairs] != list(range(self.entries)):
            raise ValueError(f"memory {self} is not dense in address order")
        return [d for _, d in pairs]

    @classmethod
    def thresholds(cls, t: ThresholdParams) -> "LoadableMemory":
        """The threshold memory of a :class:`~bitplane.hw.bitserial.ThresholdUnit`."""
        return cls(wimg.MEM_THRESHOLDS, t.nf, t.memory_word, "t_wr")


class BlockParams:
    """The block interface (module docstring); subclasses are frozen dataclasses."""
    burst = 1
    in_ports = ("i",)

    def in_widths(self) -> tuple:
        """Word width of each input port (``in_ports`` order)."""
        return (self.in_bits,)

    @property
    def out_pixels(self) -> int:
        """Output pixels per frame (1 for a vector)."""
        raise NotImplementedError

    def need(self, k: int = 0):
        """``need[p]``: words of input ``k`` received before output pixel ``p`` can leave."""
        raise NotImplementedError

    def pixel_cycles(self) -> int:
        """Cycles per output pixel at full rate (``cycles() / out_pixels``, rounded up)."""
        return -(-self.cycles() // self.out_pixels)

    def lag(self) -> int:
        """Cycles from the arrival of the last input word output pixel ``p`` needs (:meth:`need`)
        to ``p``'s last output word, running at full rate: a block takes a pixel's input while it
        still works on the previous pixel (up to one :meth:`pixel_cycles`), then works on it (one
        more), plus :data:`REGISTER_LAG` cycles of registers. hw/dag.py sizes the bypass FIFOs
        with it: while a word crosses the long branch, the fork keeps delivering to the short one."""
        return 2 * self.pixel_cycles() + REGISTER_LAG

    @property
    def result_width(self) -> int:
        """Bits per output value when the block ends the network (its lane width)."""
        return self.out_lane_bits

    @property
    def in_bits(self) -> int:
        raise NotImplementedError

    @property
    def out_lanes(self) -> int:
        raise NotImplementedError

    @property
    def out_lane_bits(self) -> int:
        raise NotImplementedError

    @property
    def out_bits(self) -> int:
        """Output stream word width."""
        return self.out_lanes * self.out_lane_bits

    @property
    def out_values(self) -> int:
        raise NotImplementedError

    @property
    def raw_output(self) -> bool:
        """The block emits raw signed accumulators (only such a block can end a network)."""
        return False

    def cycles(self) -> int:
        raise NotImplementedError

    def memories(self) -> tuple[LoadableMemory, ...]:
        return ()

    def memory_data(self, mem: LoadableMemory) -> list[int]:
        raise ValueError(f"{type(self).__name__} has no memory {mem}")

    def describe(self) -> dict:
        raise NotImplementedError

    def build(self) -> wiring.Component:
        raise NotImplementedError


class LaneMap(BlockParams):
    """The widths of a block on a feature map of ``channels`` with ``lanes`` values per word in
    and out: ``lane_bits`` bits per input value, ``obits`` per output value."""

    @property
    def c_words(self) -> int:
        """Words per pixel."""
        return self.channels // self.lanes

    @property
    def in_bits(self) -> int:
        return self.lanes * self.lane_bits

    @property
    def out_lanes(self) -> int:
        return self.lanes

    @property
    def out_lane_bits(self) -> int:
        return self.obits

    @property
    def out_values(self) -> int:
        return self.out_pixels * self.channels


class Windowed:
    """The geometry of a block built on a :class:`~bitplane.hw.stream_blocks.SlidingWindow`
    (``kernel``, ``stride``, ``pads`` over ``height`` x ``width``): output size and ``need``."""

    @property
    def out_height(self) -> int:
        return window_out(self.height, self.pads[0], self.pads[1], self.kernel, self.stride)

    @property
    def out_width(self) -> int:
        return window_out(self.width, self.pads[2], self.pads[3], self.kernel, self.stride)

    @property
    def out_pixels(self) -> int:
        return self.out_height * self.out_width

    def window_need(self, c_words: int):
        """:func:`~bitplane.hw.stream_blocks.window_need` of this window, ``c_words`` words per pixel."""
        return window_need(self.height, self.width, c_words, self.kernel, self.stride, self.pads)


class _EngineBlock(BlockParams):
    """What conv and dense blocks share: an MVTU (``engine``) and an optional threshold unit."""
    thresholds = None

    def lag(self) -> int:
        """:meth:`BlockParams.lag` with the engine's pipeline (:func:`~bitplane.hw.bitserial.engine_latency`) on top: the
        window (or width converter) streams pixel ``p``'s vector into the engine's free bank
        while the engine computes pixel ``p - 1``, then the engine computes it, and its last
        row fold leaves ``engine_latency`` cycles after its last issue (then a pool, table or
        threshold register)."""
        return 2 * self.pixel_cycles() + engine_latency(self.engine) + REGISTER_LAG

    @property
    def in_bits(self) -> int:
        return self.in_lanes * self.engine.a_planes

    @property
    def out_lanes(self) -> int:
        return self.engine.pe

    @property
    def out_lane_bits(self) -> int:
        return self.engine.out_bits

    @property
    def burst(self) -> int:
        return self.engine.rows // self.engine.pe

    @property
    def raw_output(self) -> bool:
        return self.engine.raw and self.thresholds is None

    @property
    def result_width(self) -> int:
        return self.engine.raw_width

    def memories(self) -> tuple[LoadableMemory, ...]:
        e, t = self.engine, self.thresholds
        words = e.memory_words
        mems = [LoadableMemory(wimg.MEM_WEIGHTS, e.weight_entries, words["weights"], "w_wr", e.weight_ram_style,
                               e.weight_lutram_bits)]
        if t is not None:
            mems.append(LoadableMemory.thresholds(t))
        elif e.n_thresholds:
            mems.append(LoadableMemory(wimg.MEM_THRESHOLDS, e.nf, words["thresholds"], "t_wr"))
        if e.raw:               # with thresholds, the row constants are folded into them
            mems.append(LoadableMemory(wimg.MEM_CONSTANTS, e.nf, words["constants"], "k_wr"))
        return tuple(mems)

    def memory_data(self, mem: LoadableMemory) -> list[int]:
        e, t = self.engine, self.thresholds
        if mem.kind == wimg.MEM_WEIGHTS:
            pairs = pack_weights(e, e.init_weights)
        elif mem.kind == wimg.MEM_THRESHOLDS and t is not None:
            pairs = t.init_words()
        elif mem.kind == wimg.MEM_THRESHOLDS:
            pairs = pack_thresholds(e, e.init_thresholds, e.init_dirs, e.init_consts)
        else:
            pairs = pack_constants(e, e.init_consts)
        return mem.dense(pairs)

    def describe(self) -> dict:
        e, t = self.engine, self.thresholds
        return {"pe": e.pe, "simd": e.simd, "in_lanes": self.in_lanes, "w_planes": e.w_planes,
                "a_planes": e.a_planes, "thresholds": t.n_thresholds if t is not None else e.n_thresholds,
                "acc_pool": t is not None, "xnor": e.xnor, "bipolar": e.bipolar, "raw": e.raw, "weight_ram_style": e.weight_ram_style,
                "weight_lutram_bits": e.weight_lutram_bits, "popcount": e.popcount, "shared_address": e.shared_address}


@dataclass(frozen=True)
class PoolParams:
    kernel: int
    stride: int
    pads: tuple
    maximize: tuple          # one bool per channel
    pad_mode: str = "constant"


@dataclass(frozen=True)
class _Window(Windowed):
    """A bare window (a conv's pool over the conv's output: :attr:`ConvParams.pool_window`)."""
    height: int
    width: int
    kernel: int
    stride: int
    pads: tuple


@dataclass(frozen=True)
class ConvParams(Windowed, _EngineBlock):
    channels: int
    height: int
    width: int
    kernel: int
    stride: int
    pads: tuple
    in_lanes: int            # channels per input word (divides channels)
    pad_code: int
    engine: EngineConfig
    pool: PoolParams | None = None
    code_lut: tuple = ()     # level -> plane code after the pool (empty: identity or none)
    thresholds: ThresholdParams | None = None   # pool on raw accumulators, then these thresholds
    pad_mode: str = "constant"                  # conv padding: constant (pad_code) or reflect/symmetric
    pad_codes: tuple = ()                       # constant padding per channel (a_planes-bit codes)
    in_shift: int = 0                           # input codes enter at plane in_shift (fractional planes)

    @property
    def in_bits(self) -> int:
        """Input word width: ``in_lanes`` codes of ``a_planes - in_shift`` bits (the window adds
        the ``in_shift`` zero low planes)."""
        return self.in_lanes * (self.engine.a_planes - self.in_shift)

    @property
    def out_lane_bits(self) -> int:
        """Bits per output value (a pooled conv with a code table emits codes; with a threshold
        unit, its codes)."""
        if self.thresholds is not None:
            return self.thresholds.out_bits
        if self.pool is not None and self.code_lut:
            return max(1, ceil_log2(max(self.code_lut) + 1))
        return self.engine.out_bits

    @property
    def out_values(self) -> int:
        return self.out_height * self.out_width * self.engine.rows

    @property
    def pool_window(self) -> Windowed | None:
        """The pool's window over the conv's output (None without a pool)."""
        q = self.pool
        return None if q is None else _Window(self.out_height, self.out_width, q.kernel, q.stride, q.pads)

    @property
    def out_pixels(self) -> int:
        """The conv's output pixels, or its pool's when it has one."""
        return self.out_height * self.out_width if self.pool is None else self.pool_window.out_pixels

    def need(self, k: int = 0):
        n = self.window_need(self.channels // self.in_lanes)
        if self.pool is not None:
            n = n[self.pool_window.window_need(1) - 1]
        return n

    def cycles(self) -> int:
        """Cycles per frame in steady state: the slowest of engine, window, input and pool."""
        e = self.engine
        parts = [self.out_height * self.out_width * engine_cycles(e),
                 window_cycles(self.height, self.width, self.channels // self.in_lanes, self.kernel, self.stride,
                               self.pads),
                 self.height * self.width * (self.channels // self.in_lanes)]
        if self.pool is not None:
            q = self.pool
            parts.append(pool_cycles(self.out_height, self.out_width, e.rows // e.pe, q.kernel, q.stride, q.pads))
        return max(parts)

    def build(self):
        return ConvBlock(self)


def _members(engine: BitSerialMVTU, in_bits: int, out_bits: int, thr: ThresholdUnit | None = None) -> dict:
    """Stream ports of a block plus its memory write ports (the threshold memory is the
    :class:`ThresholdUnit`'s when the block pools accumulators, else the engine's)."""
    return {"i": In(stream.Signature(in_bits)), "o": Out(stream.Signature(out_bits)),
            **{n: engine.signature.members[n] for n in ("w_wr", "k_wr") if n in engine.signature.members},
            "t_wr": (thr if thr is not None else engine).signature.members["t_wr"]}


def _connect_memories(m: Module, blk, eng: BitSerialMVTU, thr: ThresholdUnit | None = None):
    for n in ("w_wr", "k_wr"):
        if n in eng.signature.members:
            wiring.connect(m, wiring.flipped(getattr(blk, n)), getattr(eng, n))
    if thr is None:
        wiring.connect(m, wiring.flipped(blk.t_wr), eng.t_wr)
    else:
        wiring.connect(m, wiring.flipped(blk.t_wr), thr.t_wr)
        m.d.comb += eng.t_wr.valid.eq(0)


class ConvBlock(wiring.Component):
    """One conv stage: window, MVTU, optional pool on level indices and code LUT, or (with
    ``thresholds``) a raw-accumulator MVTU, a pool on accumulators and a :class:`ThresholdUnit`
    (for activations that are not monotone, such as DoReFa's ``cabs``).

    Ports: ``i`` In(stream of ``in_lanes * (P_a - in_shift)`` bits): input plane codes, HWC
    order (with ``in_shift``: codes whose low ``in_shift`` planes are zero, sent without them);
    ``o`` Out(stream of ``PE * out_bits``): output plane codes (or raw accumulators), HWC
    order, ``PE`` channels per word. Memories of the MVTU are exposed as ``w_wr``, ``t_wr``,
    and (raw engine) ``k_wr`` (see :class:`~hw.bitserial.BitSerialMVTU`).

    Throughput: :meth:`ConvParams.cycles` per frame; latency: the window's line fill plus one
    vector of the engine; backpressure propagates through every part.
    """

    def __init__(self, p: ConvParams):
        self.p = p
        e = p.engine
        if e.cols != p.kernel * p.kernel * p.channels:
            raise ValueError("engine cols must be K*K*C")
        if p.thresholds is not None and (p.pool is None or not e.raw or p.code_lut):
            raise ValueError("a threshold unit follows a pool on raw accumulators (no code table)")
        self.engine = BitSerialMVTU(e)
        self.thr = ThresholdUnit(p.thresholds) if p.thresholds is not None else None
        self.out_bits = p.out_lane_bits
        super().__init__(_members(self.engine, p.in_bits, p.out_bits, self.thr))

    def elaborate(self, platform):
        m = Module()
        p, e = self.p, self.p.engine
        m.submodules.window = win = SlidingWindow(p.channels, p.height, p.width, p.kernel, p.stride, p.pads,
                                                  e.a_planes - p.in_shift, p.in_lanes, p.pad_code, p.pad_mode,
                                                  p.pad_codes, p.in_shift)
        m.submodules.engine = eng = self.engine
        if self.thr is not None:
            m.submodules.thresholds = self.thr
        _connect_memories(m, self, eng, self.thr)
        wiring.connect(m, wiring.flipped(self.i), win.i)
        # window words (data only) -> engine, through a width converter if SIMD differs
        if e.simd != p.in_lanes:
            m.submodules.wconv = wc = WidthConverter(e.a_planes, p.in_lanes, e.simd)
            m.d.comb += [wc.i.payload.eq(win.o.payload.data), wc.i.valid.eq(win.o.valid),
                         win.o.ready.eq(wc.i.ready)]
            wiring.connect(m, wc.o, eng.act)
        else:
            m.d.comb += [eng.act.payload.eq(win.o.payload.data), eng.act.valid.eq(win.o.valid),
                         win.o.ready.eq(eng.act.ready)]
        src = eng.out
        if p.pool is not None:
            q = p.pool
            m.submodules.pool = pool = Pool(e.rows, p.out_height, p.out_width, q.kernel, q.stride, q.pads,
                                            e.out_bits, e.pe, signed=e.raw, maximize=q.maximize, pad_mode=q.pad_mode)
            wiring.connect(m, src, pool.i)
            src = pool.o
            if p.code_lut:
                m.submodules.lut = lut = CodeLUT(p.code_lut, e.out_bits, self.out_bits, e.pe)
                wiring.connect(m, src, lut.i)
                src = lut.o
            if self.thr is not None:
                wiring.connect(m, src, self.thr.i)
                src = self.thr.o
        wiring.connect(m, src, wiring.flipped(self.o))
        return m


@dataclass(frozen=True)
class DenseParams(_EngineBlock):
    in_lanes: int
    engine: EngineConfig

    @property
    def out_values(self) -> int:
        return self.engine.rows

    out_pixels = 1

    def need(self, k: int = 0):
        return _np.array([self.engine.cols // self.in_lanes])

    def cycles(self) -> int:
        """The engine, or the input stream (``cols / in_lanes`` words) when it is slower."""
        return max(engine_cycles(self.engine), self.engine.cols // self.in_lanes)

    def build(self):
        return DenseBlock(self)


class DenseBlock(wiring.Component):
    """One dense stage: (width converter in_lanes -> SIMD) then the MVTU.

    Ports as :class:`ConvBlock`; the input is the previous feature map in HWC order (the
    weight columns are permuted to that order by ``gen.hwmap``).
    """

    def __init__(self, p: DenseParams):
        self.p = p
        self.engine = BitSerialMVTU(p.engine)
        self.out_bits = p.out_lane_bits
        super().__init__(_members(self.engine, p.in_bits, p.out_bits))

    def elaborate(self, platform):
        m = Module()
        p, e = self.p, self.p.engine
        m.submodules.engine = eng = self.engine
        _connect_memories(m, self, eng)
        if e.simd != p.in_lanes:
            m.submodules.wconv = wc = WidthConverter(e.a_planes, p.in_lanes, e.simd)
            wiring.connect(m, wiring.flipped(self.i), wc.i)
            wiring.connect(m, wc.o, eng.act)
        else:
            wiring.connect(m, wiring.flipped(self.i), eng.act)
        wiring.connect(m, eng.out, wiring.flipped(self.o))
        return m


@dataclass(frozen=True)
class CodePoolParams(Windowed, LaneMap):
    """A pool on activation codes: code -> level index, pool, level index -> code."""
    channels: int
    height: int
    width: int
    kernel: int
    stride: int
    pads: tuple
    bits: int                 # code width in and out
    lanes: int                # channels per word (in = out)
    maximize: tuple           # per channel
    to_level: tuple = ()      # code -> level index (empty: identity)
    to_code: tuple = ()       # level index -> code (empty: identity)
    pad_mode: str = "constant"

    @property
    def lane_bits(self) -> int:
        return self.bits

    obits = lane_bits

    def need(self, k: int = 0):
        return self.window_need(self.c_words)

    def cycles(self) -> int:
        return pool_cycles(self.height, self.width, self.c_words, self.kernel, self.stride, self.pads)

    def describe(self) -> dict:
        return {"lanes": self.lanes, "bits": self.bits}

    def build(self):
        return CodePoolBlock(self)


class CodePoolBlock(wiring.Component):
    """Max/min pool on activation codes (a pool layer after an activation quantizer).

    Ports: ``i`` In(stream of ``lanes*bits``), ``o`` Out(stream of ``lanes*bits``), HWC order.
    Codes are mapped to level indices (ordered by value) before the pool and back after it,
    through registered tables when the code order is not the value order.
    Throughput :meth:`CodePoolParams.cycles`; latency: the pool window's line fill plus up to two
    table registers; backpressure propagates.
    """

    def __init__(self, p: CodePoolParams):
        self.p = p
        super().__init__({"i": In(stream.Signature(p.lanes * p.bits)), "o": Out(stream.Signature(p.lanes * p.bits))})

    def elaborate(self, platform):
        m = Module()
        p = self.p
        src = self.i
        if p.to_level:
            m.submodules.to_level = a = CodeLUT(p.to_level, p.bits, p.bits, p.lanes)
            wiring.connect(m, wiring.flipped(self.i), a.i)
            src = a.o
        m.submodules.pool = pool = Pool(p.channels, p.height, p.width, p.kernel, p.stride, p.pads, p.bits,
                                        p.lanes, maximize=p.maximize, pad_mode=p.pad_mode)
        if p.to_level:
            wiring.connect(m, src, pool.i)
        else:
            wiring.connect(m, wiring.flipped(self.i), pool.i)
        if p.to_code:
            m.submodules.to_code = b = CodeLUT(p.to_code, p.bits, p.bits, p.lanes)
            wiring.connect(m, pool.o, b.i)
            wiring.connect(m, b.o, wiring.flipped(self.o))
        else:
            wiring.connect(m, pool.o, wiring.flipped(self.o))
        return m
