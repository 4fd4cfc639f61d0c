"""Stream blocks for graph networks (issue #16): fork, add, average/sum pool, global pool,
channel concat, and the bypass-FIFO depth rule for a fork whose two paths rejoin.

All speak ``amaranth.lib.stream`` (valid/ready), feature maps in HWC order with ``lanes``
elements per word (as :mod:`bitplane.hw.stream_blocks`), and compute exactly the integer
stages of :mod:`bitplane.gen.graph` on integers ``q`` (a code tensor enters as its integer
level values, e.g. through a :class:`~bitplane.hw.stream_blocks.CodeLUT`; for DoReFa and
uint activations the level values are the codes). Each block has a ``*_cycles`` formula
(cycles per frame at full rate) for the planner. The ``*Params`` classes at the end are their
block interface (hw/layers.BlockParams): gen/hwmap.network_blocks builds them, hw/dag.py
wires them into the accelerator.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from amaranth import Array, Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .bitserial import ThresholdParams, ThresholdUnit
from .layers import LaneMap, LoadableMemory, Windowed
from .stream_blocks import Pool, SlidingWindow, WidthConverter, width_converter_cycles, window_cycles


def _lane(word, lane: int, bits: int, sgn: bool):
    v = word[lane * bits:(lane + 1) * bits]
    return v.as_signed() if sgn else v


def _channel_table(values, cw: int, lanes: int, lane: int, bits: int):
    """``Array`` over channel words of the constant for ``lane`` (channel ``w*lanes + lane``)."""
    return Array([Const(int(values[w * lanes + lane]), signed(bits)) for w in range(cw)])


def _const_bits(values) -> int:
    v = [int(x) for x in np.asarray(values).reshape(-1)] or [0]
    b = 1
    while not all(-(1 << (b - 1)) <= x < (1 << (b - 1)) for x in v):
        b += 1
    return b


# ------------------------------------------------------------------------ fork

def fork_cycles(words: int) -> int:
    """Cycles per frame of :class:`StreamFork`: one word per cycle."""
    return words


class StreamFork(wiring.Component):
    """Broadcast of one stream to ``outputs`` streams (``1 -> n``, default 2).

    Ports: ``i`` In(stream of ``width``); ``o0`` .. ``o{n-1}`` Out(stream of ``width``), each
    word of ``i`` appears once on every output. Latency 1 cycle (one output register per
    branch); full rate while every branch takes a word per cycle. Backpressure: a word enters
    only when every output register can take it, so a stalled branch stalls the others; a
    branch that needs fewer words ahead (the shortcut) therefore gets a bypass FIFO of
    :func:`bypass_fifo_depth` words, or the pipeline deadlocks.
    """

    def __init__(self, width: int, outputs: int = 2):
        self.width, self.outputs = width, outputs
        super().__init__({"i": In(stream.Signature(width)),
                          **{f"o{k}": Out(stream.Signature(width)) for k in range(outputs)}})

    def elaborate(self, platform):
        m = Module()
        outs = [getattr(self, f"o{k}") for k in range(self.outputs)]
        frees = [~o.valid | o.ready for o in outs]
        ready = frees[0]
        for f in frees[1:]:
            ready = ready & f
        m.d.comb += self.i.ready.eq(ready)
        fire = self.i.valid & self.i.ready
        for o, free in zip(outs, frees):
            with m.If(fire):
                m.d.sync += [o.valid.eq(1), o.payload.eq(self.i.payload)]
            with m.Elif(free):
                m.d.sync += o.valid.eq(0)
        return m


def identity_need(pixels: int, c_words: int) -> np.ndarray:
    """``need[p] = (p + 1) * CW``: a path without a window (wire, FIFO, pixel-wise block)."""
    return (np.arange(pixels) + 1) * c_words


def chain_need(first: np.ndarray, *later: np.ndarray) -> np.ndarray:
    """``need`` of blocks in series, in words at the first block's input: block ``k``'s
    output pixel ``p`` needs ``later[k][p]`` words from block ``k-1``, i.e. its pixel
    ``ceil(later[k][p] / CW_k) - 1`` — pass each later block's ``need`` in *pixels* of its
    input (``stream_blocks.window_need(..., c_words=1)``)."""
    need = np.asarray(first)
    for nxt in later:
        need = need[np.asarray(nxt) - 1]
    return need


def bypass_fifo_depth(need_long, need_short, latency_long: int = 0, latency_short: int = 0) -> int:
    """Words of the FIFO between a :class:`StreamFork` and its *short* path, so that the two
    paths rejoining at an :class:`AddBlock` (or :class:`ConcatBlock`) never deadlock:

    ``depth = max_p(need_long[p] - need_short[p-1]) + max(0, latency_long - latency_short) + 1``

    (``need_short[-1] = 0``), where ``need_*[p]`` is the number of words the fork must have
    delivered to that path before it emits output pixel ``p``
    (:func:`~bitplane.hw.stream_blocks.window_need`, :func:`identity_need`, :func:`chain_need`), and ``latency_*`` the cycles a word spends in
    the path's pipeline registers beyond that (each cycle the fork can deliver one more
    word). The fork delivers every word to both paths at once. When the long path stands at
    pixel ``p`` waiting for input, the fork has delivered ``need_long[p]`` words to each
    path, while the join has taken only the short path's pixels before ``p`` (pixel ``p``
    may wait at the join), i.e. at least ``need_short[p-1]`` words left the FIFO: the rest
    sit in it, or in the fork's output register (the slack of the ``+ 1``). A smaller FIFO
    fills before the long path has its rows: the fork stops, the long path never gets them,
    the join waits forever (tests/hw/test_graph_blocks.py: with a 3x3 pool on the long path
    and a wire on the short one, one word less than this lead runs but stalls, two words less
    deadlock). It is an upper bound where the short path has a line buffer of its own (a
    strided 1x1 window) that holds part of the lead. hw/dag.py applies it to every fork of a
    network.
    """
    short = np.concatenate([[0], np.asarray(need_short)[:-1]])
    lead = int(np.max(np.asarray(need_long) - short))
    return max(0, lead) + max(0, latency_long - latency_short) + 1


# ------------------------------------------------------------------------ add

def add_cycles(pixels: int, c_words: int) -> int:
    """Cycles per frame of :class:`AddBlock`: one word pair per cycle."""
    return pixels * c_words


class AddBlock(wiring.Component):
    """Element-wise ``o = M_a[c] * a + M_b[c] * b`` (gen/graph.py's ``AddStage``, exact).

    Parameters: ``channels`` C, ``lanes`` (divides C), ``a_bits``/``b_bits`` input element
    widths, ``a_signed``/``b_signed``, ``mult_a``/``mult_b`` (one integer per channel: the
    stage's ``mult[0]``/``mult[1]``; 1 for an exact add), ``out_bits`` (signed; the stage's
    ``out.bits``), ``shift`` (the stage's ``shift``: ``o = (sum + 2^(shift-1)) >> shift``)
    and ``sum_bits`` (signed width of the sum before the shift; the stage's ``sum_bits``),
    ``shift_a``/``shift_b``: each product's left shift (the multipliers given here are the
    stage's divided by ``2^shift_x``; ``AddStage.mult_shifts``), ``clip_a``/``clip_b``: ``None``
    or ``(L, U)``, one integer pair per channel: the shifted product is clipped to ``[L, U]``
    before the sum (an input whose unquantized ReLU/clip the stage keeps unapplied:
    ``AddStage.clips``; a comparator pair per lane, in the same cycle), ``pre_a``/``pre_b``:
    guard bits each input drops before its product, rounded half up (``AddStage.pre_shifts``).

    Ports: ``a`` In(stream of ``lanes*a_bits``), ``b`` In(stream of ``lanes*b_bits``), ``o``
    Out(stream of ``lanes*out_bits``, two's complement), HWC order; words pair up in order.
    Latency 1 cycle; one word per cycle (:func:`add_cycles`); a word pair is taken only when
    both are valid and the output register is free or being read (backpressure on ``o``
    stalls both inputs).
    """

    def __init__(self, channels, lanes, a_bits, b_bits, out_bits, mult_a, mult_b, a_signed=True, b_signed=True,
                 shift=0, sum_bits=0, shift_a=0, shift_b=0, clip_a=None, clip_b=None, pre_a=0, pre_b=0):
        if channels % lanes:
            raise ValueError(f"lanes={lanes} must divide channels={channels}")
        self.C, self.lanes, self.CW = channels, lanes, channels // lanes
        self.a_bits, self.b_bits, self.out_bits = a_bits, b_bits, out_bits
        self.a_signed, self.b_signed = a_signed, b_signed
        self.shift, self.sum_bits = shift, max(sum_bits, out_bits)
        self.shift_a, self.shift_b = shift_a, shift_b
        self.mult_a = [int(v) for v in np.broadcast_to(mult_a, (channels,))]
        self.mult_b = [int(v) for v in np.broadcast_to(mult_b, (channels,))]
        self.clips = tuple(None if c is None else tuple([int(v) for v in np.broadcast_to(b, (channels,))] for b in c)
                           for c in (clip_a, clip_b))
        self.pre = (pre_a, pre_b)
        super().__init__({"a": In(stream.Signature(lanes * a_bits)), "b": In(stream.Signature(lanes * b_bits)),
                          "o": Out(stream.Signature(lanes * out_bits))})

    def elaborate(self, platform):
        m = Module()
        L, CW, ob = self.lanes, self.CW, self.out_bits
        ch = Signal(range(max(CW, 2)))
        free = ~self.o.valid | self.o.ready
        take = self.a.valid & self.b.valid & free
        m.d.comb += [self.a.ready.eq(self.b.valid & free), self.b.ready.eq(self.a.valid & free)]
        mb = max(_const_bits(self.mult_a), _const_bits(self.mult_b))
        lanes = []
        for lane in range(L):
            ma = _channel_table(self.mult_a, CW, L, lane, mb)[ch]
            mbv = _channel_table(self.mult_b, CW, L, lane, mb)[ch]
            terms = []
            for k, (mv, port, bits, sgn, sh) in enumerate((
                    (ma, self.a, self.a_bits, self.a_signed, self.shift_a),
                    (mbv, self.b, self.b_bits, self.b_signed, self.shift_b))):
                x = _lane(port.payload, lane, bits, sgn)
                if self.pre[k]:
                    x = (x + (1 << (self.pre[k] - 1))) >> self.pre[k]
                t = mv * x << sh
                if self.clips[k] is not None:
                    cb = _const_bits(self.clips[k][0] + self.clips[k][1])
                    lo = _channel_table(self.clips[k][0], CW, L, lane, cb)[ch]
                    hi = _channel_table(self.clips[k][1], CW, L, lane, cb)[ch]
                    t = Mux(t < lo, lo, Mux(t > hi, hi, t))
                terms.append(t)
            tot = Signal(signed(self.sum_bits), name=f"tot{lane}")
            m.d.comb += tot.eq(terms[0] + terms[1] + ((1 << self.shift) >> 1))
            v = Signal(signed(ob), name=f"sum{lane}")
            m.d.comb += v.eq(tot >> self.shift)
            lanes.append(v)
        with m.If(take):
            m.d.sync += [self.o.valid.eq(1), self.o.payload.eq(Cat(*lanes)),
                         ch.eq(Mux(ch == CW - 1, 0, ch + 1))]
        with m.Elif(free):
            m.d.sync += self.o.valid.eq(0)
        return m


# ------------------------------------------------------------------------ average / sum pool

def avgpool_cycles(h: int, w: int, c_words: int, k: int, stride: int, pads) -> int:
    """Cycles per frame of :class:`AvgPoolBlock`: its window's words, one per cycle."""
    return window_cycles(h, w, c_words, k, stride, pads)


class AvgPoolBlock(wiring.Component):
    """K x K sum pool with the integer semantics of gen/graph.py's ``AvgPoolStage``.

    Parameters: ``channels``, ``height``, ``width``, ``kernel``, ``stride``, ``pads``,
    ``in_bits``, ``in_signed``, ``out_bits`` (signed), ``lanes``, ``pad_mode``
    (:class:`~bitplane.hw.stream_blocks.SlidingWindow`'s), and either ``pad_q`` (one integer
    per channel: the value of a constant padding position, ``include_pad`` divisor; the
    sum is ``sum over the K*K positions``) or ``recip`` (the ``valid`` divisor's table
    ``R[n]``, ``n`` = inside positions: the output is ``R[n] * sum over inside positions``).

    Ports: ``i`` In(stream of ``lanes*in_bits``), ``o`` Out(stream of ``lanes*out_bits``),
    HWC order. Built on a SlidingWindow and one accumulator word per channel chunk, like
    :class:`~bitplane.hw.stream_blocks.Pool`. Throughput one window word per cycle
    (:func:`avgpool_cycles`); latency 3 cycles after a window's last word; backpressure on
    ``o`` stalls the reducer and the window.
    """

    def __init__(self, channels, height, width, kernel, stride, pads, in_bits, out_bits, lanes,
                 in_signed=False, pad_q=None, recip=None, pad_mode="constant"):
        self.win = SlidingWindow(channels, height, width, kernel, stride, pads, in_bits, lanes,
                                 pad_code=0, pad_mode=pad_mode)
        self.C, self.K, self.lanes = channels, kernel, lanes
        self.in_bits, self.out_bits, self.in_signed = in_bits, out_bits, in_signed
        self.pad_q = [int(v) for v in np.broadcast_to(0 if pad_q is None else pad_q, (channels,))]
        self.recip = None if recip is None else [int(v) for v in recip]
        if self.recip is not None and len(self.recip) != kernel * kernel + 1:
            raise ValueError("recip needs K*K + 1 entries (R[0..K*K])")
        self.OH, self.OW = self.win.OH, self.win.OW
        super().__init__({"i": In(stream.Signature(lanes * in_bits)), "o": Out(stream.Signature(lanes * out_bits))})

    def elaborate(self, platform):
        m = Module()
        m.submodules.win = win = self.win
        wiring.connect(m, wiring.flipped(self.i), win.i)
        L, K, CW, ob = self.lanes, self.K, self.win.CW, self.out_bits
        acc = Array([Signal(L * ob, name=f"acc{c}") for c in range(CW)])
        pos = Signal(range(max(K * K, 2)))
        ch = Signal(range(max(CW, 2)))
        n_in = Signal(range(K * K + 2))           # inside positions seen before this one
        advance = Signal()
        m.d.comb += [advance.eq(~self.o.valid | self.o.ready), win.o.ready.eq(advance)]
        fire = win.o.valid & advance
        d, pad = win.o.payload.data, win.o.payload.pad
        last = pos == K * K - 1
        n_fin = Signal(range(K * K + 2))
        m.d.comb += n_fin.eq(n_in + ~pad)
        if self.recip is not None:
            rb = _const_bits(self.recip) + 1
            rtab = Array([Const(v, signed(rb)) for v in self.recip])
        new, outw = [], []
        for lane in range(L):
            x = _lane(d, lane, self.in_bits, self.in_signed)
            if self.recip is None:
                pq = _channel_table(self.pad_q, CW, L, lane, _const_bits(self.pad_q))[ch]
                x = Mux(pad, pq, x)
            else:
                x = Mux(pad, 0, x)
            a = Mux(pos == 0, 0, acc[ch][lane * ob:(lane + 1) * ob].as_signed())
            v = Signal(signed(ob), name=f"sum{lane}")
            m.d.comb += v.eq(a + x)
            new.append(v)
            o = Signal(signed(ob), name=f"out{lane}")
            m.d.comb += o.eq(v if self.recip is None else v * rtab[n_fin])
            outw.append(o)
        with m.If(fire):
            m.d.sync += acc[ch].eq(Cat(*new))
            with m.If(ch == CW - 1):
                m.d.sync += [ch.eq(0), pos.eq(Mux(last, 0, pos + 1)), n_in.eq(Mux(last, 0, n_fin))]
            with m.Else():
                m.d.sync += ch.eq(ch + 1)
        with m.If(advance):
            m.d.sync += self.o.valid.eq(fire & last)
            with m.If(fire & last):
                m.d.sync += self.o.payload.eq(Cat(*outw))
        return m


def global_pool_cycles(pixels: int, c_words: int) -> int:
    """Cycles per frame of :class:`GlobalSumPool`: one input word per cycle."""
    return pixels * c_words


class GlobalSumPool(wiring.Component):
    """Per-channel sum over all ``pixels`` of a frame (``global_avgpool``; 1/(H*W) is in
    the stage's scale, so the sum is exact).

    Parameters: ``channels``, ``pixels`` (H*W), ``in_bits``, ``in_signed``, ``out_bits``
    (signed), ``lanes``. Ports: ``i`` In(stream of ``lanes*in_bits``, HWC order), ``o``
    Out(stream of ``lanes*out_bits``): ``C/lanes`` words per frame, emitted while the
    frame's last pixel streams in. Memory: one accumulator word per channel chunk.
    Throughput one input word per cycle (:func:`global_pool_cycles`); latency 1 cycle after
    the last pixel's word; backpressure on ``o`` stalls the input only during the last pixel.
    """

    def __init__(self, channels, pixels, in_bits, out_bits, lanes, in_signed=False):
        if channels % lanes:
            raise ValueError(f"lanes={lanes} must divide channels={channels}")
        self.C, self.P, self.lanes, self.CW = channels, pixels, lanes, channels // lanes
        self.in_bits, self.out_bits, self.in_signed = in_bits, out_bits, in_signed
        super().__init__({"i": In(stream.Signature(lanes * in_bits)), "o": Out(stream.Signature(lanes * out_bits))})

    def elaborate(self, platform):
        m = Module()
        L, CW, ob = self.lanes, self.CW, self.out_bits
        acc = Array([Signal(L * ob, name=f"acc{c}") for c in range(CW)])
        ch = Signal(range(max(CW, 2)))
        pix = Signal(range(max(self.P, 2)))
        last = pix == self.P - 1
        free = ~self.o.valid | self.o.ready
        m.d.comb += self.i.ready.eq(~last | free)
        fire = self.i.valid & self.i.ready
        new = []
        for lane in range(L):
            v = Signal(signed(ob), name=f"sum{lane}")
            a = Mux(pix == 0, 0, acc[ch][lane * ob:(lane + 1) * ob].as_signed())
            m.d.comb += v.eq(a + _lane(self.i.payload, lane, self.in_bits, self.in_signed))
            new.append(v)
        with m.If(fire):
            m.d.sync += acc[ch].eq(Cat(*new))
            with m.If(ch == CW - 1):
                m.d.sync += [ch.eq(0), pix.eq(Mux(last, 0, pix + 1))]
            with m.Else():
                m.d.sync += ch.eq(ch + 1)
        with m.If(fire & last):
            m.d.sync += [self.o.valid.eq(1), self.o.payload.eq(Cat(*new))]
        with m.Elif(free):
            m.d.sync += self.o.valid.eq(0)
        return m


# ------------------------------------------------------------------------ concat

def concat_cycles(pixels: int, *words: int) -> int:
    """Cycles per frame of :class:`ConcatBlock`: one output word per cycle."""
    return pixels * sum(words)


class ConcatBlock(wiring.Component):
    """Channel concatenation of feature maps of one height and width.

    Parameters: ``words`` (words per pixel of each input: ``C_k/lanes``), ``width`` (bits per
    word, ``lanes*bits``, the same for every input).
    Ports: ``i0`` .. ``i{n-1}`` In(stream of ``width``), ``o`` Out(stream of ``width``): per
    pixel the ``words[0]`` words of ``i0``, then those of ``i1``, ... Latency 1 cycle, one word
    per cycle (:func:`concat_cycles`); each input is read only during its part of a pixel (the
    others wait); backpressure on ``o`` stalls every input.
    """

    def __init__(self, words, width: int):
        self.words, self.width = tuple(int(w) for w in words), width
        super().__init__({**{f"i{k}": In(stream.Signature(width)) for k in range(len(self.words))},
                          "o": Out(stream.Signature(width))})

    def elaborate(self, platform):
        m = Module()
        n = sum(self.words)
        k = Signal(range(max(n, 2)))
        free = ~self.o.valid | self.o.ready
        ins = [getattr(self, f"i{j}") for j in range(len(self.words))]
        sels, start = [], 0
        for j, w in enumerate(self.words):
            lo = (k >= start) if start else Const(1, 1)
            hi = (k < start + w) if j < len(self.words) - 1 else Const(1, 1)
            sels.append(lo & hi)
            start += w
        valid, payload = Const(0, 1), Const(0, self.width)
        for sel, i in zip(sels, ins):
            m.d.comb += i.ready.eq(sel & free)
            valid, payload = Mux(sel, i.valid, valid), Mux(sel, i.payload, payload)
        with m.If(valid & free):
            m.d.sync += [self.o.valid.eq(1), self.o.payload.eq(payload), k.eq(Mux(k == n - 1, 0, k + 1))]
        with m.Elif(free):
            m.d.sync += self.o.valid.eq(0)
        return m


# ------------------------------------------------------------------------ adapters

class Recode(wiring.Component):
    """Per-lane value map between two stream formats: a constant ``table`` (code -> integer,
    e.g. plane codes to their level values, two's complement in ``out_bits``), or, without a
    table, the value sign- (``in_signed``) or zero-extended, or truncated, to ``out_bits``.

    Ports: ``i`` In(stream of ``lanes*in_bits``), ``o`` Out(stream of ``lanes*out_bits``).
    One register stage (latency 1), one word per cycle; ``i.ready`` while the output
    register is empty or being read.
    """

    def __init__(self, lanes: int, in_bits: int, out_bits: int, in_signed: bool = False, table=()):
        self.lanes, self.in_bits, self.out_bits, self.in_signed = lanes, in_bits, out_bits, in_signed
        self.table = tuple(int(v) for v in table)
        super().__init__({"i": In(stream.Signature(lanes * in_bits)), "o": Out(stream.Signature(lanes * out_bits))})

    def elaborate(self, platform):
        m = Module()
        ob = self.out_bits
        vals = []
        for lane in range(self.lanes):
            x = _lane(self.i.payload, lane, self.in_bits, self.in_signed)
            if self.table:
                tab = Array([Const(v & ((1 << ob) - 1), ob) for v in self.table]
                            + [Const(0, ob)] * ((1 << self.in_bits) - len(self.table)))
                x = tab[self.i.payload[lane * self.in_bits:(lane + 1) * self.in_bits]]
            v = Signal(ob, name=f"v{lane}")
            m.d.comb += v.eq(x)
            vals.append(v)
        m.d.comb += self.i.ready.eq(~self.o.valid | self.o.ready)
        with m.If(self.i.ready):
            m.d.sync += [self.o.valid.eq(self.i.valid), self.o.payload.eq(Cat(*vals))]
        return m


class ChannelSlice(wiring.Component):
    """Keeps channels ``[start, start + count)`` of a feature map (a group of a grouped conv).

    Parameters: ``channels`` C, ``lanes`` per word (divides ``start`` and ``count``), ``bits``.
    Ports: ``i`` In(stream of ``lanes*bits``), ``o`` Out(same), HWC order: of every pixel's
    ``C/lanes`` words, those of the slice pass and the others are dropped. Latency 1 cycle;
    one input word per cycle; backpressure on ``o`` stalls ``i``.
    """

    def __init__(self, channels: int, lanes: int, start: int, count: int, bits: int):
        if channels % lanes or start % lanes or count % lanes:
            raise ValueError(f"lanes={lanes} must divide channels={channels}, start={start} and count={count}")
        self.C, self.lanes, self.start, self.count, self.bits = channels, lanes, start, count, bits
        super().__init__({"i": In(stream.Signature(lanes * bits)), "o": Out(stream.Signature(lanes * bits))})

    def elaborate(self, platform):
        m = Module()
        CW, a, b = self.C // self.lanes, self.start // self.lanes, (self.start + self.count) // self.lanes
        w = Signal(range(max(CW, 2)))
        free = ~self.o.valid | self.o.ready
        m.d.comb += self.i.ready.eq(free)
        fire = self.i.valid & free
        with m.If(fire):
            keep = ((w >= a) if a else Const(1, 1)) & ((w < b) if b < CW else Const(1, 1))
            m.d.sync += [w.eq(Mux(w == CW - 1, 0, w + 1)), self.o.valid.eq(keep),
                         self.o.payload.eq(self.i.payload)]
        with m.Elif(free):
            m.d.sync += self.o.valid.eq(0)
        return m


# ------------------------------------------------------------------------ block parameters
# The block interface (hw/layers.BlockParams) of the graph blocks: gen/hwmap.py builds them
# from the graph stages of gen/graph.py, hw/dag.py wires them.



class _Map(LaneMap):
    """A block on a feature map of ``channels`` x ``pixels`` with ``lanes`` values per word in
    and out (``lane_bits`` in; ``obits`` out) and one output pixel per input pixel."""

    @property
    def out_pixels(self) -> int:
        return self.pixels

    @property
    def raw_output(self) -> bool:
        return self.output

    def need(self, k: int = 0):
        return identity_need(self.pixels, self.c_words)

    def cycles(self) -> int:
        return self.pixels * self.c_words


@dataclass(frozen=True)
class RecodeParams(_Map):
    """:class:`Recode`: codes -> level integers (``table``), or sign/zero extension to
    ``obits`` (e.g. a network output widened to the 32/64-bit result, a sum read as codes)."""
    channels: int
    pixels: int
    lanes: int
    lane_bits: int
    obits: int
    in_signed: bool = False
    table: tuple = ()
    output: bool = False

    def describe(self) -> dict:
        return {"lanes": self.lanes, "in_bits": self.lane_bits, "out_bits": self.obits,
                "map": "table" if self.table else ("sign-extend" if self.in_signed else "zero-extend")}

    def build(self):
        return Recode(self.lanes, self.lane_bits, self.obits, self.in_signed, self.table)


@dataclass(frozen=True)
class LanesParams(_Map):
    """:class:`~bitplane.hw.stream_blocks.WidthConverter` from ``lanes`` to ``out_lanes_`` values
    per word (both divide ``channels``), so the inputs of a join have one word format."""
    channels: int
    pixels: int
    lanes: int
    lane_bits: int
    lanes_out: int
    output: bool = False

    @property
    def obits(self) -> int:
        return self.lane_bits

    @property
    def out_lanes(self) -> int:
        return self.lanes_out

    def cycles(self) -> int:
        return width_converter_cycles(self.pixels * self.c_words, self.lanes, self.lanes_out)

    def describe(self) -> dict:
        return {"lanes": self.lanes, "out_lanes": self.lanes_out, "bits": self.lane_bits}

    def build(self):
        return WidthConverter(self.lane_bits, self.lanes, self.lanes_out)


@dataclass(frozen=True)
class SliceParams(_Map):
    """:class:`ChannelSlice`: channels ``[start, start + count)`` (one group of a grouped conv)."""
    channels: int
    pixels: int
    lanes: int
    lane_bits: int
    start: int
    count: int
    output: bool = False

    @property
    def obits(self) -> int:
        return self.lane_bits

    @property
    def out_values(self) -> int:
        return self.pixels * self.count

    def describe(self) -> dict:
        return {"lanes": self.lanes, "bits": self.lane_bits, "channels": [self.start, self.start + self.count]}

    def build(self):
        return ChannelSlice(self.channels, self.lanes, self.start, self.count, self.lane_bits)


@dataclass(frozen=True)
class AddParams(_Map):
    """:class:`AddBlock` of a two-input ``add`` stage (``mult``: the stage's per-channel
    multipliers of each input; ``in_lane_bits``/``in_signed``: each input's values)."""
    channels: int
    pixels: int
    lanes: int
    in_lane_bits: tuple
    in_signed: tuple
    mult: tuple               # (M_a per channel, M_b per channel)
    obits: int
    output: bool = False
    shift: int = 0            # the stage's sum rounded right by this many bits
    sum_bits: int = 0         # signed width of the sum before the shift
    mult_shifts: tuple = (0, 0)   # each product's left shift (mult holds the multipliers >> it)
    clips: tuple = (None, None)   # per input None or ((L per channel), (U per channel)): product clip
    pre_shifts: tuple = (0, 0)    # per input, guard bits rounded away before the product
    in_ports = ("a", "b")

    @property
    def lane_bits(self) -> int:
        return self.in_lane_bits[0]

    def in_widths(self) -> tuple:
        return tuple(self.lanes * b for b in self.in_lane_bits)

    def describe(self) -> dict:
        d = {"lanes": self.lanes, "in_bits": list(self.in_lane_bits), "out_bits": self.obits,
             "max_multiplier": max(abs(v) for row in self.mult for v in row), "shift": self.shift}
        if any(c is not None for c in self.clips):
            d["clipped_inputs"] = [k for k, c in enumerate(self.clips) if c is not None]
        return d

    def build(self):
        return AddBlock(self.channels, self.lanes, self.in_lane_bits[0], self.in_lane_bits[1], self.obits,
                        self.mult[0], self.mult[1], self.in_signed[0], self.in_signed[1], self.shift, self.sum_bits,
                        *self.mult_shifts, *self.clips, *self.pre_shifts)


@dataclass(frozen=True)
class ConcatParams(_Map):
    """:class:`ConcatBlock` of feature maps with ``parts`` channels each (one word format)."""
    parts: tuple
    pixels: int
    lanes: int
    lane_bits: int
    output: bool = False

    @property
    def channels(self) -> int:
        return sum(self.parts)

    @property
    def in_ports(self) -> tuple:
        return tuple(f"i{k}" for k in range(len(self.parts)))

    @property
    def obits(self) -> int:
        return self.lane_bits

    def in_widths(self) -> tuple:
        return (self.in_bits,) * len(self.parts)

    def need(self, k: int = 0):
        return identity_need(self.pixels, self.parts[k] // self.lanes)

    def describe(self) -> dict:
        return {"lanes": self.lanes, "bits": self.lane_bits, "parts": list(self.parts)}

    def build(self):
        return ConcatBlock([c // self.lanes for c in self.parts], self.in_bits)


@dataclass(frozen=True)
class WindowPoolParams(Windowed, _Map):
    """A K x K pool: ``kind`` ``'sum'`` (:class:`AvgPoolBlock`: ``pad_q`` or ``recip``) or
    ``'max'`` (:class:`~bitplane.hw.stream_blocks.Pool` on signed values, ``maximize`` per
    channel: a max-pool on unquantized integers)."""
    channels: int
    height: int
    width: int
    kernel: int
    stride: int
    pads: tuple
    lanes: int
    lane_bits: int
    in_signed: bool
    obits: int
    kind: str = "sum"
    pad_q: tuple = ()
    recip: tuple = ()
    maximize: tuple = ()
    pad_mode: str = "constant"
    output: bool = False

    @property
    def pixels(self) -> int:
        return self.height * self.width

    def need(self, k: int = 0):
        return self.window_need(self.c_words)

    def cycles(self) -> int:
        return avgpool_cycles(self.height, self.width, self.c_words, self.kernel, self.stride, self.pads)

    def describe(self) -> dict:
        return {"lanes": self.lanes, "in_bits": self.lane_bits, "out_bits": self.obits, "pool": self.kind,
                "kernel": self.kernel, "stride": self.stride, "pads": list(self.pads), "pad_mode": self.pad_mode}

    def build(self):
        if self.kind == "max":
            return Pool(self.channels, self.height, self.width, self.kernel, self.stride, self.pads, self.lane_bits,
                        self.lanes, signed=self.in_signed, maximize=self.maximize, pad_mode=self.pad_mode)
        return AvgPoolBlock(self.channels, self.height, self.width, self.kernel, self.stride, self.pads,
                            self.lane_bits, self.obits, self.lanes, self.in_signed,
                            pad_q=self.pad_q or None, recip=self.recip or None, pad_mode=self.pad_mode)


@dataclass(frozen=True)
class GlobalPoolParams(_Map):
    """:class:`GlobalSumPool` over ``pixels`` (``global_avgpool``; 1/(H*W) is in the scale)."""
    channels: int
    pixels: int
    lanes: int
    lane_bits: int
    in_signed: bool
    obits: int
    output: bool = False

    out_pixels = 1

    def need(self, k: int = 0):
        return np.array([self.pixels * self.c_words])

    def describe(self) -> dict:
        return {"lanes": self.lanes, "in_bits": self.lane_bits, "out_bits": self.obits, "pool": "global sum"}

    def build(self):
        return GlobalSumPool(self.channels, self.pixels, self.lane_bits, self.obits, self.lanes, self.in_signed)


@dataclass(frozen=True)
class ThresholdBlockParams(_Map):
    """:class:`~bitplane.hw.bitserial.ThresholdUnit` of a ``quant_act`` on unquantized integers
    (after an add or a pool); its threshold memory is run-time loadable."""
    thr: ThresholdParams
    pixels: int
    output: bool = False

    @property
    def channels(self) -> int:
        return self.thr.rows

    @property
    def lanes(self) -> int:
        return self.thr.pe

    @property
    def lane_bits(self) -> int:
        return self.thr.in_bits

    @property
    def obits(self) -> int:
        return self.thr.out_bits

    def memories(self) -> tuple:
        return (LoadableMemory.thresholds(self.thr),)

    def memory_data(self, mem: LoadableMemory) -> list:
        return mem.dense(self.thr.init_words())

    def describe(self) -> dict:
        return {"lanes": self.lanes, "in_bits": self.lane_bits, "thresholds": self.thr.n_thresholds}

    def build(self):
        return ThresholdUnit(self.thr)
