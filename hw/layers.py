"""Layer blocks: a lowered conv/dense stage as one streaming component.

:class:`ConvBlock`: sliding window -> (width converter) -> bit-serial MVTU -> (pool on level
indices -> level-to-code LUT). :class:`DenseBlock`: (width converter) -> MVTU. Both are
built from plain parameter objects that ``gen.hwmap`` derives from the golden model's
integer form, so the block computes exactly the int path of that stage.
"""
from __future__ import annotations

from dataclasses import dataclass

from amaranth import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from .bitserial import BitSerialMVTU, EngineConfig, ThresholdParams, ThresholdUnit, engine_cycles
from .stream_blocks import CodeLUT, Pool, SlidingWindow, WidthConverter, pool_cycles, window_cycles


@dataclass(frozen=True)
class PoolParams:
    kernel: int
    stride: int
    pads: tuple
    maximize: tuple          # one bool per channel


@dataclass(frozen=True)
class ConvParams:
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

    @property
    def out_height(self) -> int:
        return window_out(self.height, self.pads[0], self.pads[1], self.kernel, self.stride)

    @property
    def out_width(self) -> int:
        return window_out(self.width, self.pads[2], self.pads[3], self.kernel, self.stride)


def window_out(size: int, pad_lo: int, pad_hi: int, kernel: int, stride: int) -> int:
    """Output positions of a sliding window along one axis."""
    return (size + pad_lo + pad_hi - kernel) // stride + 1


def block_out_bits(p) -> int:
    """Bits per output lane of a conv/dense block (a pooled conv with a code table emits codes)."""
    e = p.engine
    if isinstance(p, ConvParams) and p.thresholds is not None:
        return p.thresholds.out_bits
    if isinstance(p, ConvParams) and p.pool is not None and p.code_lut:
        return max(1, ceil_log2(max(p.code_lut) + 1))
    return e.out_bits


def _members(engine: BitSerialMVTU, in_bits: int, out_bits: int, thr: ThresholdUnit | None = None) -> dict:
    """Stream ports of a block plus its memory write ports (the threshold memory is the
    :class:`ThresholdUnit`'s when the block pools accumulators, else the engine's)."""
    return {"i": In(stream.Signature(in_bits)), "o": Out(stream.Signature(out_bits)),
            **{n: engine.signature.members[n] for n in ("w_wr", "k_wr")},
            "t_wr": (thr if thr is not None else engine).signature.members["t_wr"]}


def _connect_memories(m: Module, blk, eng: BitSerialMVTU, thr: ThresholdUnit | None = None):
    for n in ("w_wr", "k_wr"):
        wiring.connect(m, wiring.flipped(getattr(blk, n)), getattr(eng, n))
    if thr is None:
        wiring.connect(m, wiring.flipped(blk.t_wr), eng.t_wr)
    else:
        wiring.connect(m, wiring.flipped(blk.t_wr), thr.t_wr)
        m.d.comb += eng.t_wr.valid.eq(0)


def conv_cycles(p: ConvParams) -> int:
    """Cycles per frame of a :class:`ConvBlock` in steady state: its slowest part."""
    e = p.engine
    vectors = p.out_height * p.out_width
    parts = [vectors * engine_cycles(e),
             window_cycles(p.height, p.width, p.channels // p.in_lanes, p.kernel, p.stride, p.pads),
             p.height * p.width * (p.channels // p.in_lanes)]
    if p.pool is not None:
        parts.append(pool_cycles(p.out_height, p.out_width, e.rows // e.pe, p.pool.kernel, p.pool.stride,
                                 p.pool.pads))
    return max(parts)


class ConvBlock(wiring.Component):
    """One conv stage: window, MVTU, optional pool on level indices and code LUT, or (with
    ``thresholds``) a raw-accumulator MVTU, a pool on accumulators and a :class:`ThresholdUnit`
    (for activations that are not monotone, such as DoReFa's ``cabs``).

    Ports: ``i`` In(stream of ``in_lanes * P_a`` bits): input plane codes, HWC order;
    ``o`` Out(stream of ``PE * out_bits``): output plane codes (or raw accumulators), HWC
    order, ``PE`` channels per word. Memories of the MVTU are exposed as ``w_wr``, ``t_wr``,
    ``k_wr`` (see :class:`~hw.bitserial.BitSerialMVTU`).

    Throughput: :func:`conv_cycles` per frame; latency: the window's line fill plus one
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
        self.out_bits = block_out_bits(p)
        super().__init__(_members(self.engine, p.in_lanes * e.a_planes, e.pe * self.out_bits, self.thr))

    def elaborate(self, platform):
        m = Module()
        p, e = self.p, self.p.engine
        m.submodules.window = win = SlidingWindow(p.channels, p.height, p.width, p.kernel, p.stride, p.pads,
                                                  e.a_planes, p.in_lanes, p.pad_code)
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
                                            e.out_bits, e.pe, signed=e.raw, maximize=q.maximize)
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
class DenseParams:
    in_lanes: int
    engine: EngineConfig


def dense_cycles(p: DenseParams) -> int:
    return max(engine_cycles(p.engine), p.engine.cols // p.in_lanes)


class DenseBlock(wiring.Component):
    """One dense stage: (width converter in_lanes -> SIMD) then the MVTU.

    Ports as :class:`ConvBlock`; the input is the previous feature map in HWC order (the
    weight columns are permuted to that order by ``gen.hwmap``).
    """

    def __init__(self, p: DenseParams):
        self.p = p
        self.engine = BitSerialMVTU(p.engine)
        e = p.engine
        self.out_bits = block_out_bits(p)
        super().__init__(_members(self.engine, p.in_lanes * e.a_planes, e.pe * self.out_bits))

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
