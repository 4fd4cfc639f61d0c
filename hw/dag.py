"""The blocks of an accelerator wired as a directed acyclic graph (graph networks, issue #16).

A network is a list of blocks (:class:`~bitplane.hw.layers.BlockParams`) in topological
order plus, for every block, the sources of its inputs (``inputs[k]``: one entry per
``in_ports`` name, a block index or :data:`INPUT` for the network input). A linear chain
(``inputs[k] = (k - 1,)``) is the special case the sequential networks use. The last block
is the network output; every other block's output must be consumed.

Wiring (:class:`Dag`):

* every edge (source -> block port) has a :class:`~bitplane.hw.stream_blocks.StreamFIFO`
  between two :class:`~bitplane.hw.stream_blocks.RegisterSlice` (one-cycle registers on both
  the payload/valid and the ready): blocks, and a deep FIFO's block RAM, may be placed far
  apart, and the slices leave every route between them a hop from flip-flops through one LUT,
  however deep the blocks' handshake logic (CNV-W1A1's ECP5 paths at two placements: a
  window's ready into its edge FIFO's read register, 1 level and 5.9 ns of routing; the
  next edge FIFO's ``i.ready`` into a pool's output state, 4 levels and 5.8 ns of routing).
  Edges carry a few lanes, so a slice costs a few flip-flops and LUTs;
* a source read by ``n >= 2`` ports drives an ``n``-way
  :class:`~bitplane.hw.graph_blocks.StreamFork`, each of whose outputs feeds its edge's FIFO.

**FIFO depths** (:func:`edge_fifo_depths`, one number per edge). Every edge gets the FIFO a
linear chain has: two output bursts of its source, at least 4 words, rounded up to a power
of two (``2^ceil_log2(max(4, 2*burst))``). An edge out of a fork additionally gets the
*bypass depth* of the fork's branches that rejoin. For fork ``f`` (``W_f`` words per pixel,
``F_f`` words per frame) and its out-edge ``e``, ``G_e[v][p]`` is the number of words of
``f``'s output a node ``v`` reached through ``e`` must have received (through ``e``) before
it emits its pixel ``p``: ``G_e[c] = need_c`` at the edge's consumer ``c``, and along the
graph ``G_e[v][p] = max over v's inputs u of G_e[u][ceil(need_v[p] / w_u) - 1]`` (``w_u``:
words per output pixel of ``u``; ``need`` is :meth:`~bitplane.hw.layers.BlockParams.need`).
With *slack*, the lead becomes a schedule at the DAG's rate (the fork delivers a word every
``tau = T / F_f`` cycles, ``T`` = :func:`frame_period`, its slowest block): the branch's
pixel ``p`` of ``v`` arrives at ``A_e[v][p]`` (``need_c[p] * tau`` at the consumer, then
the latest of ``v``'s inputs' pixels it needs, indexed as in ``G``) and leaves at

``E_e[v][p] = max(A_e[v][p] + lag_v, E_e[v][p-1] + c_v)``

(``c_v = cycles_v / out_pixels_v``: a block works on one pixel at a time; ``lag_v``:
:meth:`~bitplane.hw.layers.BlockParams.lag`, two pixel periods plus registers, since a
block takes pixel ``p``'s input while it still works on ``p - 1``), computed over two frames
back to back. At every node ``v`` that two or more of ``f``'s edges reach (a join), edge
``e`` needs

``depth_e >= max_p( max_{e' != e} ceil(E_e'[v][p] / tau) - G_e[v][p-1] ) + LATENCY_SLACK + 1``

words (:func:`~bitplane.hw.graph_blocks.bypass_fifo_depth`, ``G_e[v][-1] = 0``): the fork
delivers every word to all its branches at once; when the longest branch has pixel ``p``
ready, the fork, running at the planned rate, has delivered ``ceil(E / tau)`` words, while
the join has taken branch ``e``'s pixels before ``p``, so at least ``G_e[v][p-1]`` words
left ``e``'s FIFO and the rest sits in it; ``LATENCY_SLACK`` covers the FIFO and slice registers
between the blocks and the ``+ 1`` the fork's output register. The schedule matters where
a window needs whole rows: a 3x3 conv's output row ``oy`` needs input row ``oy + 1``
complete, and a second 3x3 conv at the same rate works on row ``oy - 1`` while the first
one works through row ``oy`` pixel by pixel, so an identity shortcut around two such
convs holds four rows, not the three of the lead. With only the lead plus a pixel period
per block, the shipped ResNet-20 (tests/accel/test_graph_accel.py) ran at 183,015
cycles/frame against 98,304 planned: the fork waited for the shortcut's FIFO while the
long branch starved. With less than the lead (``slack=False``: ``G`` in place of ``E``,
no slack) the fork stops before the long branch has its rows and the join waits forever
(tests/hw/test_dag.py shows it). The bound is generous where the short branch has a line
buffer of its own that holds part of the lead.
"""
from __future__ import annotations

import numpy as np
from amaranth import Module, ResetInserter
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from .graph_blocks import StreamFork, bypass_fifo_depth
from .stream_blocks import RegisterSlice, StreamFIFO, local_reset

INPUT = -1              # source index of the network input
LATENCY_SLACK = 8       # words of slack per block on a branch for the FIFO, slice and fork registers between blocks


def block_name(k: int) -> str:
    """The submodule name of block ``k`` in :class:`Dag` (its Verilog module is the
    hierarchy path ending in it: :func:`bitplane.hw.top.block_module`)."""
    return f"block{k}"


def linear_inputs(n: int) -> tuple:
    """``inputs`` of a chain of ``n`` single-input blocks."""
    return tuple((k - 1,) for k in range(n))


def edges(inputs) -> list[tuple[int, int, int]]:
    """``(source, block, port index)`` of every edge, in block then port order."""
    return [(src, k, j) for k, srcs in enumerate(inputs) for j, src in enumerate(srcs)]


def consumers(inputs) -> dict:
    """``source -> [(block, port index), ...]``."""
    out: dict = {}
    for src, k, j in edges(inputs):
        out.setdefault(src, []).append((k, j))
    return out


def check_graph(blocks, inputs, in_bits: int) -> None:
    """Topological order, one source per port, widths that match, every output consumed."""
    if len(inputs) != len(blocks):
        raise ValueError("one inputs entry per block")
    for k, (b, srcs) in enumerate(zip(blocks, inputs)):
        if len(srcs) != len(b.in_ports):
            raise ValueError(f"block {k} has {len(b.in_ports)} input ports, {len(srcs)} sources")
        for j, (src, w) in enumerate(zip(srcs, b.in_widths())):
            if not INPUT <= src < k:
                raise ValueError(f"block {k} input {j}: source {src} is not an earlier block")
            have = in_bits if src == INPUT else blocks[src].out_bits
            if have != w:
                raise ValueError(f"block {k} input {j}: {w}-bit port fed by a {have}-bit stream from {src}")
    used = consumers(inputs)
    for k in range(len(blocks) - 1):
        if k not in used:
            raise ValueError(f"block {k}'s output is not used (only the last block may end the network)")


class _Source:
    """The network input seen as a block output (for the depth computation)."""
    burst = 1

    def __init__(self, pixels: int, words_per_pixel: int):
        self.out_pixels, self.wpp = pixels, words_per_pixel


def _wpp(b) -> int:
    """Output words per output pixel."""
    if isinstance(b, _Source):
        return b.wpp
    return b.out_values // b.out_pixels // b.out_lanes


def frame_period(blocks, in_pixels: int, in_words_per_pixel: int) -> int:
    """Cycles per frame of the slowest block or of the input stream (the DAG's rate; the
    accelerator's period is at least this, so a fork's words per cycle are at most
    ``F_f / frame_period``)."""
    return max([in_pixels * in_words_per_pixel] + [b.cycles() for b in blocks])


def chain_depth(burst: int) -> int:
    """The FIFO of a linear chain edge: two output bursts of its source, at least 4, a power of 2."""
    return 1 << ceil_log2(max(4, 2 * burst))


def _frames2(need, frame_words: int) -> np.ndarray:
    """``need`` of two frames back to back (the second frame's words follow the first's)."""
    need = np.asarray(need, np.int64)
    return np.concatenate([need, need + frame_words])


def _schedule(arrive, b) -> np.ndarray:
    """Cycle each output pixel of block ``b`` leaves when its inputs arrive at ``arrive[p]``:
    ``E[p] = max(arrive[p] + lag, E[p-1] + c)`` (``c`` = :meth:`~BlockParams.pixel_cycles`:
    the block works on one pixel at a time; ``lag``: :meth:`~BlockParams.lag`)."""
    c = b.cycles() / b.out_pixels
    k = np.arange(len(arrive)) * c
    return k + np.maximum.accumulate(np.asarray(arrive, np.float64) + b.lag() - k)


def bypass_depths(blocks, inputs, in_pixels: int, in_words_per_pixel: int, slack: bool = True) -> dict:
    """``{(source, block, port): words}`` a fork's out-edges need so that its rejoining
    branches neither deadlock nor stall (module docstring); edges without a join: absent.
    ``slack=False``: the lead plus one word only (deadlock-free, but the fork may then hold
    the long branch back: tests/accel/test_graph_accel.py measures the slower period)."""
    src_of = {INPUT: _Source(in_pixels, in_words_per_pixel)}
    period = frame_period(blocks, in_pixels, in_words_per_pixel)
    node = lambda u: src_of[INPUT] if u == INPUT else blocks[u]
    out: dict = {}
    for f, cons in consumers(inputs).items():
        if len(cons) < 2:
            continue
        fb = node(f)
        frame_words = fb.out_pixels * _wpp(fb)
        tau = period / frame_words             # cycles per fork word at the DAG's rate
        G, T, P = [], [], []
        for (c, port) in cons:
            g, t, ports = {}, {}, {}
            for v in range(c, len(blocks)):
                base, arrive = None, None
                for j, u in enumerate(inputs[v]):
                    if u == f and (v, j) == (c, port):
                        b = _frames2(blocks[v].need(j), frame_words)
                        a = b * tau
                    elif u != INPUT and u in g:
                        need = _frames2(blocks[v].need(j), blocks[u].out_pixels * _wpp(blocks[u]))
                        idx = np.maximum(-(-need // _wpp(blocks[u])) - 1, 0)
                        b, a = g[u][idx], t[u][idx]
                    else:
                        continue
                    base = b if base is None else np.maximum(base, b)
                    arrive = a if arrive is None else np.maximum(arrive, a)
                    ports.setdefault(v, set()).add(j)
                if base is not None:
                    g[v], t[v] = base, _schedule(arrive, blocks[v])
            G.append(g)
            T.append(t)
            P.append(ports)
        for i, (c, port) in enumerate(cons):
            depth = 0
            for v in G[i]:
                # a join of edge i: another edge reaches v through a port edge i does not use
                others = [e for e in range(len(cons)) if e != i and v in G[e] and P[e][v] - P[i][v]]
                if not others:
                    continue
                # the fork's words delivered (at the DAG's rate) when the other branches have
                # pixel p ready: their need, or with slack their schedule
                if slack:
                    longest = np.ceil(np.max([T[e][v] for e in others], axis=0) / tau).astype(np.int64)
                else:
                    longest = np.max([G[e][v] for e in others], axis=0)
                lat = LATENCY_SLACK if slack else 0
                depth = max(depth, bypass_fifo_depth(longest, G[i][v], latency_long=lat))
            if depth:
                out[(f, c, port)] = depth
    return out


def edge_fifo_depths(blocks, inputs, in_pixels: int, in_words_per_pixel: int) -> dict:
    """Depth of every edge's FIFO: the chain depth, or the bypass depth where larger."""
    byp = bypass_depths(blocks, inputs, in_pixels, in_words_per_pixel)
    out = {}
    for src, k, j in edges(inputs):
        burst = 1 if src == INPUT else blocks[src].burst
        out[(src, k, j)] = max(chain_depth(burst), byp.get((src, k, j), 0))
    return out


class Dag(wiring.Component):
    """The blocks wired as a DAG (module docstring): edge FIFOs, forks, bypass FIFOs.

    Parameters: ``blocks`` (BlockParams, topological order, the last is the output),
    ``inputs`` (sources per block, :data:`INPUT` = network input), ``in_bits`` (input word
    width), ``in_pixels``/``in_words_per_pixel`` (the input frame's geometry, for the depths),
    ``depths`` (optional ``{edge: words}`` override of :func:`edge_fifo_depths`, for tests).

    Ports: ``i`` In(stream of ``in_bits``): the network input (HWC words); ``o`` Out(stream of
    the last block's ``out_bits``); ``m{k}_{port}`` for every run-time loadable memory of
    block ``k`` (the block's own write port, e.g. ``m0_w_wr``); ``soft_reset`` In(1): resets every
    block, FIFO and fork one cycle later, through a register of its own per block (the FIFOs
    in front of a block and a fork after it take the block's), not the memories' contents.
    Latency: the longest path's
    block latencies plus one cycle per FIFO, fork and register slice (two per edge); throughput: the slowest block's
    ``cycles()`` per frame when the depths are at least :func:`edge_fifo_depths`;
    backpressure on ``o`` propagates to ``i`` through every block.
    """

    def __init__(self, blocks, inputs, in_bits: int, in_pixels: int, in_words_per_pixel: int, depths=None):
        self.params, self.inputs = tuple(blocks), tuple(tuple(s) for s in inputs)
        check_graph(self.params, self.inputs, in_bits)
        self.in_bits = in_bits
        self.depths = depths if depths is not None else edge_fifo_depths(self.params, self.inputs, in_pixels,
                                                                          in_words_per_pixel)
        self.blocks = [b.build() for b in self.params]
        members = {"i": In(stream.Signature(in_bits)), "o": Out(stream.Signature(self.params[-1].out_bits)),
                   "soft_reset": In(1)}
        for k, (b, comp) in enumerate(zip(self.params, self.blocks)):
            for mem in b.memories():
                members[self.mem_port_name(k, mem.port)] = comp.signature.members[mem.port]
        super().__init__(members)

    @staticmethod
    def mem_port_name(block: int, port: str) -> str:
        return f"m{block}_{port}"

    def mem_port(self, block: int, port: str):
        """The Dag's write port of memory ``port`` of block ``block``."""
        return getattr(self, self.mem_port_name(block, port))

    def elaborate(self, platform):
        m = Module()
        soft = {k: local_reset(m, self.soft_reset, f"soft_reset{k}") for k in range(len(self.blocks))}
        soft[INPUT] = soft[0]

        def reset_by(k, sub):
            return ResetInserter({"sync": soft[k]})(sub)
        for k, (b, comp) in enumerate(zip(self.params, self.blocks)):
            m.submodules[block_name(k)] = reset_by(k, comp)
            for mem in b.memories():
                wiring.connect(m, wiring.flipped(self.mem_port(k, mem.port)), getattr(comp, mem.port))
        outs = {INPUT: wiring.flipped(self.i)}
        outs.update({k: comp.o for k, comp in enumerate(self.blocks[:-1])})
        width = {INPUT: self.in_bits, **{k: b.out_bits for k, b in enumerate(self.params)}}
        for src, cons in consumers(self.inputs).items():
            taps = [outs[src]]
            if len(cons) > 1:
                fork = StreamFork(width[src], len(cons))
                m.submodules[f"fork{'_in' if src == INPUT else src}"] = reset_by(src, fork)
                wiring.connect(m, outs[src], fork.i)
                taps = [getattr(fork, f"o{n}") for n in range(len(cons))]
            for tap, (k, j) in zip(taps, cons):
                fifo = StreamFIFO(width[src], self.depths[(src, k, j)])
                m.submodules[f"fifo{k}_{j}"] = reset_by(k, fifo)
                pre, post = RegisterSlice(width[src]), RegisterSlice(width[src])
                m.submodules[f"slice{k}_{j}_in"] = reset_by(k, pre)
                m.submodules[f"slice{k}_{j}"] = reset_by(k, post)
                wiring.connect(m, tap, pre.i)
                wiring.connect(m, pre.o, fifo.i)
                wiring.connect(m, fifo.o, post.i)
                wiring.connect(m, post.o, getattr(self.blocks[k], self.params[k].in_ports[j]))
        wiring.connect(m, self.blocks[-1].o, wiring.flipped(self.o))
        return m
