"""Stream blocks for graph networks (issue #16): fork, add, average/sum pool, global pool,
channel concat, and the bypass-FIFO depth rule for a fork whose two paths rejoin.

All speak ``amaranth.lib.stream`` (valid/ready), feature maps in HWC order with ``lanes``
elements per word (as :mod:`bitplane.hw.stream_blocks`), and compute exactly the integer
stages of :mod:`bitplane.gen.graph` on integers ``q`` (a code tensor enters as its integer
level values, e.g. through a :class:`~bitplane.hw.stream_blocks.CodeLUT`; for DoReFa and
uint activations the level values are the codes). Each block has a ``*_cycles`` formula
(cycles per frame at full rate) for the planner. None is wired into the accelerator top.
"""
from __future__ import annotations

import numpy as np
from amaranth import Array, Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .stream_blocks import SlidingWindow, window_cycles


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
    """Broadcast of one stream to two (``1 -> 2``).

    Ports: ``i`` In(stream of ``width``); ``o0``, ``o1`` Out(stream of ``width``), each word
    of ``i`` appears once on both. Latency 1 cycle (one output register per branch); full
    rate while both branches take a word per cycle. Backpressure: a word enters only when
    both output registers can take it, so a stalled branch stalls the other; the branch
    that needs fewer words ahead (the shortcut) therefore gets a bypass FIFO of
    :func:`bypass_fifo_depth` words, or the pipeline deadlocks.
    """

    def __init__(self, width: int):
        self.width = width
        super().__init__({"i": In(stream.Signature(width)), "o0": Out(stream.Signature(width)),
                          "o1": Out(stream.Signature(width))})

    def elaborate(self, platform):
        m = Module()
        free0 = ~self.o0.valid | self.o0.ready
        free1 = ~self.o1.valid | self.o1.ready
        m.d.comb += self.i.ready.eq(free0 & free1)
        fire = self.i.valid & self.i.ready
        for o, free in ((self.o0, free0), (self.o1, free1)):
            with m.If(fire):
                m.d.sync += [o.valid.eq(1), o.payload.eq(self.i.payload)]
            with m.Elif(free):
                m.d.sync += o.valid.eq(0)
        return m


def window_need(height: int, width: int, c_words: int, kernel: int, stride: int, pads) -> np.ndarray:
    """``need[p]``: input words a :class:`~bitplane.hw.stream_blocks.SlidingWindow` (and every
    block built on it: MVTU conv, pools) must have received before it emits output pixel
    ``p`` (raster order): the window waits for whole rows, up to row ``min(oy*s - t + K - 1,
    H - 1)``, so ``need[p] = min(oy*s - t + K, H) * W * CW``."""
    t, b, l, r = pads
    oh = (height + t + b - kernel) // stride + 1
    ow = (width + l + r - kernel) // stride + 1
    oy = np.repeat(np.arange(oh), ow)
    rows = np.clip(oy * stride - t + kernel, 1, height)
    return rows * width * c_words


def identity_need(pixels: int, c_words: int) -> np.ndarray:
    """``need[p] = (p + 1) * CW``: a path without a window (wire, FIFO, pixel-wise block)."""
    return (np.arange(pixels) + 1) * c_words


def chain_need(first: np.ndarray, *later: np.ndarray) -> np.ndarray:
    """``need`` of blocks in series, in words at the first block's input: block ``k``'s
    output pixel ``p`` needs ``later[k][p]`` words from block ``k-1``, i.e. its pixel
    ``ceil(later[k][p] / CW_k) - 1`` — pass each later block's ``need`` in *pixels* of its
    input (``window_need(..., c_words=1)``)."""
    need = np.asarray(first)
    for nxt in later:
        need = need[np.asarray(nxt) - 1]
    return need


def bypass_fifo_depth(need_long, need_short, latency_long: int = 0, latency_short: int = 0) -> int:
    """Words of the FIFO between a :class:`StreamFork` and its *short* path, so that the two
    paths rejoining at an :class:`AddBlock` (or :class:`ConcatBlock`) never deadlock:

    ``depth = max_p(need_long[p] - need_short[p]) + max(0, latency_long - latency_short) + 1``

    where ``need_*[p]`` is the number of words the fork must have delivered to that path
    before it emits output pixel ``p`` (:func:`window_need`, :func:`identity_need`,
    :func:`chain_need`), and ``latency_*`` the cycles a word spends in the path's pipeline
    registers beyond that (each cycle the fork can deliver one more word). When the long
    path stands at pixel ``p`` waiting for input, the short path has taken at least
    ``need_short[p]`` words and is itself waiting at the join, so the rest of the
    ``need_long[p]`` words the fork delivered sit in the FIFO. The ``+ 1`` is the fork's
    own output register. A smaller FIFO fills before the long path has its rows: the fork
    stops, the long path never gets them, the join waits forever (tests/hw/
    test_graph_blocks.py: with a 3x3 pool on the long path and a wire on the short one, the
    lead plus one word runs but stalls, the lead alone deadlocks). It is an upper bound
    where the short path has a line buffer of its own (a strided 1x1 window) that holds
    part of the lead.
    """
    lead = int(np.max(np.asarray(need_long) - np.asarray(need_short)))
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
    ``out.bits``).

    Ports: ``a`` In(stream of ``lanes*a_bits``), ``b`` In(stream of ``lanes*b_bits``), ``o``
    Out(stream of ``lanes*out_bits``, two's complement), HWC order; words pair up in order.
    Latency 1 cycle; one word per cycle (:func:`add_cycles`); a word pair is taken only when
    both are valid and the output register is free or being read (backpressure on ``o``
    stalls both inputs).
    """

    def __init__(self, channels, lanes, a_bits, b_bits, out_bits, mult_a, mult_b, a_signed=True, b_signed=True):
        if channels % lanes:
            raise ValueError(f"lanes={lanes} must divide channels={channels}")
        self.C, self.lanes, self.CW = channels, lanes, channels // lanes
        self.a_bits, self.b_bits, self.out_bits = a_bits, b_bits, out_bits
        self.a_signed, self.b_signed = a_signed, b_signed
        self.mult_a = [int(v) for v in np.broadcast_to(mult_a, (channels,))]
        self.mult_b = [int(v) for v in np.broadcast_to(mult_b, (channels,))]
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
            v = Signal(signed(ob), name=f"sum{lane}")
            m.d.comb += v.eq(ma * _lane(self.a.payload, lane, self.a_bits, self.a_signed)
                             + mbv * _lane(self.b.payload, lane, self.b_bits, self.b_signed))
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

def concat_cycles(pixels: int, a_words: int, b_words: int) -> int:
    """Cycles per frame of :class:`ConcatBlock`: one output word per cycle."""
    return pixels * (a_words + b_words)


class ConcatBlock(wiring.Component):
    """Channel concatenation of two feature maps of one height and width.

    Parameters: ``a_words``/``b_words`` (words per pixel of each input: ``C_a/lanes``,
    ``C_b/lanes``), ``width`` (bits per word, ``lanes*bits``, the same for both).
    Ports: ``a``, ``b`` In(stream of ``width``), ``o`` Out(stream of ``width``): per pixel
    the ``a_words`` words of ``a`` then the ``b_words`` words of ``b``. Latency 1 cycle, one
    word per cycle (:func:`concat_cycles`); each input is read only during its part of a
    pixel (the other waits); backpressure on ``o`` stalls both.
    """

    def __init__(self, a_words: int, b_words: int, width: int):
        self.a_words, self.b_words, self.width = a_words, b_words, width
        super().__init__({"a": In(stream.Signature(width)), "b": In(stream.Signature(width)),
                          "o": Out(stream.Signature(width))})

    def elaborate(self, platform):
        m = Module()
        n = self.a_words + self.b_words
        k = Signal(range(max(n, 2)))
        sel_a = k < self.a_words
        free = ~self.o.valid | self.o.ready
        m.d.comb += [self.a.ready.eq(sel_a & free), self.b.ready.eq(~sel_a & free)]
        valid = Mux(sel_a, self.a.valid, self.b.valid)
        with m.If(valid & free):
            m.d.sync += [self.o.valid.eq(1), self.o.payload.eq(Mux(sel_a, self.a.payload, self.b.payload)),
                         k.eq(Mux(k == n - 1, 0, k + 1))]
        with m.Elif(free):
            m.d.sync += self.o.valid.eq(0)
        return m
