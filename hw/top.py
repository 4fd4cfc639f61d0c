"""The accelerator top level: every layer as a streaming block, AXI4-Stream in/out, AXI4-Lite.

Structure (docs/design.md section 6)::

    s_axis -> framer -> Dag[FIFO -> block 0 -> FIFO -> block 1 -> ... -> block n-1] -> width conv -> FIFO -> m_axis
           \\-> weight loader (while CTRL.LOAD_WEIGHTS) -> the blocks' weight/threshold/constant memories
    s_axil <-> register file (core/regmap.py)

Blocks are described by :class:`~hw.layers.BlockParams` objects (conv, dense, pool on codes):
the top asks each for its widths, burst, cycles and memories and lets it build its component
(the block interface, docs/design.md); all speak ``amaranth.lib.stream``.

Streams (formats defined once in :mod:`bitplane.core.packing`):

* ``s_axis``: ``AXIS_IN_BITS``-bit beats, ``in_lanes`` input codes per beat in the low bits,
  pixels in raster order with their channels (HWC), ``tlast`` on the last beat of a frame.
  A frame with an early ``tlast`` is completed with zero beats, one with a late ``tlast`` is
  cut at its length and the extra beats dropped; either sets ``ERROR.FRAMING``. Every input
  frame yields exactly one result frame, so a host never waits for a result that cannot come.
* ``m_axis``: one signed 32-bit last-layer accumulator per beat (two beats, low word first,
  when the proven accumulator range needs more than 32 bits), in the golden model's output
  order (HWC for a conv, feature order for a dense layer), ``tlast`` on the last of a frame.
* Weight images (:mod:`bitplane.core.weightimage`) arrive on ``s_axis`` as one frame after
  ``CTRL.LOAD_WEIGHTS``; the loader checks magic, headers and section sizes
  (``ERROR.WEIGHT_FORMAT``, rest of the frame dropped) and folds every accepted word into
  ``WEIGHT_CHECKSUM``.

The blocks are wired by :class:`~bitplane.hw.dag.Dag`: a chain, or for a graph network a DAG
with forks and per-edge FIFOs (bypass depths derived in hw/dag.py).

FIFO sizing (:func:`fifo_depths`): in a linear chain every block honours valid/ready,
so no FIFO size can deadlock it; FIFOs only decouple bursts. A producer emits an output
vector as a burst of ``R/PE`` words while its consumer may be busy with a whole vector, so
the FIFO in front of each block holds two producer bursts (at least 4 words, rounded up to a
power of two). The frame rate is then set by the slowest block alone
(:func:`top_cycles`), which the tests check against the simulation.

``SOFT_RESET`` resets everything but the register file and the memories' contents (weights
stay loaded); if a frame was in flight it sets ``ERROR.ABORTED``.
"""
from __future__ import annotations

from dataclasses import dataclass

from amaranth import Cat, Const, Module, Mux, ResetInserter, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from bitplane.core.packing import AXIS_IN_BITS, RESULT_BITS

from bitplane.core import regmap
from bitplane.core import weightimage as wimg
from .axil import AXILiteRegisters
from .dag import Dag, chain_depth, edge_fifo_depths, linear_inputs
from .layers import LoadableMemory
from .stream_blocks import StreamFIFO, WidthConverter


@dataclass(frozen=True)
class TopParams:
    name: str
    in_shape: tuple           # (C, H, W)
    in_bits: int
    in_lanes: int             # input codes per s_axis beat
    blocks: tuple             # BlockParams (hw.layers), in stream (topological) order; the last is the output
    build_id: int = 0
    inputs: tuple = ()        # sources of each block's inputs (hw/dag.py); empty: a linear chain

    def __post_init__(self):
        C, H, W = self.in_shape
        if C % self.in_lanes or self.in_lanes * self.in_bits > AXIS_IN_BITS:
            raise ValueError(f"in_lanes={self.in_lanes} must divide C={C} and fit {AXIS_IN_BITS} bits")
        last = self.blocks[-1] if self.blocks else None
        if last is None or not last.raw_output:
            raise ValueError("the last block must be a conv/dense block with raw accumulator output")
        if last.result_width not in (RESULT_BITS, 2 * RESULT_BITS):
            raise ValueError(f"the last block's raw width must be {RESULT_BITS} or {2 * RESULT_BITS}")

    @property
    def in_beats(self) -> int:
        C, H, W = self.in_shape
        return C * H * W // self.in_lanes

    @property
    def edges(self) -> tuple:
        """Sources of every block's inputs (hw/dag.py); a linear chain unless ``inputs`` is given."""
        return self.inputs or linear_inputs(len(self.blocks))

    def dag_depths(self) -> dict:
        """``{(source, block, port): words}``: every edge FIFO of the DAG (hw/dag.py)."""
        C, H, W = self.in_shape
        return edge_fifo_depths(self.blocks, self.edges, H * W, C // self.in_lanes)

    def dag(self):
        """The blocks wired by :class:`~bitplane.hw.dag.Dag`."""
        C, H, W = self.in_shape
        return Dag(self.blocks, self.edges, self.in_lanes * self.in_bits, H * W, C // self.in_lanes)

    @property
    def words_per_value(self) -> int:
        """m_axis beats per accumulator: 1, or 2 (low word first) when the proven range needs
        more than 32 bits."""
        return self.blocks[-1].result_width // RESULT_BITS

    @property
    def out_words(self) -> int:
        return self.blocks[-1].out_values * self.words_per_value


def top_cycles(p: TopParams) -> int:
    """Steady-state cycles per frame of the whole pipeline: its slowest stage."""
    return max([p.in_beats, p.out_words] + [b.cycles() for b in p.blocks])


def fifo_depths(p: TopParams) -> list[int]:
    """Depth of the FIFO in front of each block (its first input; hw/dag.py), then of the output FIFO."""
    d = p.dag_depths()
    return [d[(srcs[0], k, 0)] for k, srcs in enumerate(p.edges)] + [chain_depth(p.blocks[-1].burst)]


def loadable_memories(p: TopParams) -> list[tuple[int, int, LoadableMemory]]:
    """``(block index, layer, memory)`` of every run-time loadable memory, in image order;
    ``layer`` numbers the blocks that have memories (the weight image's section layer)."""
    out, layer = [], 0
    for k, b in enumerate(p.blocks):
        mems = b.memories()
        out += [(k, layer, mem) for mem in mems]
        layer += bool(mems)
    return out


def memory_sections(p: TopParams) -> list[tuple[int, int, int, int]]:
    """``(layer, kind, entries, width)`` of every run-time loadable memory, in image order."""
    return [(layer, mem.kind, mem.entries, mem.width) for _, layer, mem in loadable_memories(p)]


def _xor(bits):
    """XOR of a list of 1-bit values (the CRC-32 taps)."""
    out = bits[0]
    for b in bits[1:]:
        out = out ^ b
    return out


class Core(wiring.Component):
    """Everything of :class:`Accelerator` but the register file (so SOFT_RESET can reset it).

    Ports: ``s_axis_*`` / ``m_axis_*`` as the top; ``load`` (pulse: the next input frame is a
    weight image), ``clear_counters``, ``clear_checksum`` (pulses); ``frames_in``,
    ``frames_out`` (32), ``cycles`` (64), ``checksum``, ``words`` (32), ``loading``,
    ``busy`` (1), ``err`` (3: ERROR bits 2..0 to set this cycle).
    """

    def __init__(self, p: TopParams):
        self.p = p
        super().__init__({
            "s_axis_tdata": In(AXIS_IN_BITS), "s_axis_tvalid": In(1), "s_axis_tready": Out(1), "s_axis_tlast": In(1),
            "m_axis_tdata": Out(RESULT_BITS), "m_axis_tvalid": Out(1), "m_axis_tready": In(1),
            "m_axis_tlast": Out(1),
            "load": In(1), "clear_counters": In(1), "clear_checksum": In(1),
            "frames_in": Out(32), "frames_out": Out(32), "cycles": Out(64), "checksum": Out(32), "words": Out(32),
            "loading": Out(1), "busy": Out(1), "err": Out(3),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.p
        E = {f.name: f.lsb for f in regmap.by_name("ERROR").fields}
        depths = fifo_depths(p)
        m.submodules.dag = dag = p.dag()           # blocks, edge FIFOs, forks (hw/dag.py)

        # ------------------------------------------------------------ input framer
        B = p.in_beats
        width0 = p.in_lanes * p.in_bits
        loading, load_pending = Signal(), Signal()
        beat = Signal(range(max(2, B)))
        fill, drop = Signal(), Signal()
        frame_done = Signal()
        err = Signal(3)                  # FRAMING, OVERFLOW, WEIGHT_FORMAT (ABORTED is set by the top)
        f0 = dag.i
        with m.If(self.load):
            m.d.sync += load_pending.eq(1)
        at_boundary = (beat == 0) & ~fill & ~drop
        with m.If(load_pending & at_boundary & ~loading):
            m.d.sync += [loading.eq(1), load_pending.eq(0)]
        m.d.comb += [self.loading.eq(loading)]
        with m.If(loading):
            m.d.comb += self.s_axis_tready.eq(1)
        with m.Elif(load_pending & at_boundary):
            m.d.comb += self.s_axis_tready.eq(0)          # switching to weight mode next cycle
        with m.Elif(fill):
            m.d.comb += [f0.valid.eq(1), f0.payload.eq(0)]
        with m.Elif(drop):
            m.d.comb += self.s_axis_tready.eq(1)
            with m.If(self.s_axis_tvalid & self.s_axis_tlast):
                m.d.sync += drop.eq(0)
        with m.Else():
            m.d.comb += [f0.valid.eq(self.s_axis_tvalid), f0.payload.eq(self.s_axis_tdata[:width0]),
                         self.s_axis_tready.eq(f0.ready)]
        with m.If(f0.valid & f0.ready):
            with m.If(beat == B - 1):
                m.d.sync += [beat.eq(0), fill.eq(0)]
                m.d.comb += frame_done.eq(1)
                with m.If(~fill & ~self.s_axis_tlast):
                    m.d.sync += drop.eq(1)
                    m.d.comb += err[E["FRAMING"]].eq(1)
            with m.Else():
                m.d.sync += beat.eq(beat + 1)
                with m.If(~fill & self.s_axis_tlast):
                    m.d.sync += fill.eq(1)
                    m.d.comb += err[E["FRAMING"]].eq(1)

        # ------------------------------------------------------------ weight loader
        mem_ports = [((layer, mem.kind, mem.entries, mem.width), dag.mem_port(k, mem.port))
                     for k, layer, mem in loadable_memories(p)]
        max_wpe = max(wimg.words_per_entry(s[3]) for s, _ in mem_ports)
        asm = Signal(32 * max_wpe)
        sel = Signal(range(max(2, len(mem_ports))))
        left = Signal(20)
        wi = Signal(range(max(2, max_wpe)))
        max_entries = max(s[2] for s, _ in mem_ports)
        addr = Signal(range(max(2, max_entries)))
        wr, wr_addr = Signal(), Signal.like(addr)
        word = self.s_axis_tdata[:32]
        accept = Signal()
        m.d.comb += accept.eq(loading & self.s_axis_tvalid)
        wpe_tab = [wimg.words_per_entry(s[3]) for s, _ in mem_ports]
        sel_wpe_last = Signal(range(max(2, max_wpe)))
        m.d.comb += sel_wpe_last.eq(0)
        for k, w in enumerate(wpe_tab):
            with m.If(sel == k):
                m.d.comb += sel_wpe_last.eq(w - 1)
        m.d.sync += wr.eq(0)
        for k, ((lay, kind, entries, width), port) in enumerate(mem_ports):
            m.d.comb += [port.valid.eq(wr & (sel == k)), port.payload.addr.eq(wr_addr),
                         port.payload.data.eq(asm[:width])]
        with m.If(accept & self.s_axis_tlast):
            m.d.sync += loading.eq(0)
        crc = Signal(32, init=wimg.CRC32_INIT)           # CRC-32 state; the register reads ~crc (zlib)
        crc_next = Cat(*[_xor([crc[j] for j in ss] + [word[j] for j in ws]) for ss, ws in wimg.crc32_word_taps()])
        m.d.comb += self.checksum.eq(~crc)
        with m.If(accept):
            m.d.sync += [crc.eq(crc_next), self.words.eq(self.words + 1)]
        with m.FSM(name="loader"):
            with m.State("MAGIC"):
                with m.If(accept):
                    with m.If(self.s_axis_tlast | (word != wimg.IMAGE_MAGIC)):
                        m.d.comb += err[E["WEIGHT_FORMAT"]].eq(1)
                        with m.If(~self.s_axis_tlast):
                            m.next = "DROP"
                    with m.Else():
                        m.next = "HEADER"
            with m.State("HEADER"):
                with m.If(accept):
                    with m.If(word == wimg.END_WORD):
                        m.next = "MAGIC"
                        with m.If(~self.s_axis_tlast):
                            m.d.comb += err[E["WEIGHT_FORMAT"]].eq(1)
                            m.next = "DROP"
                    with m.Else():
                        hit = Signal()
                        for k, ((lay, kind, entries, width), _) in enumerate(mem_ports):
                            h = wimg.header(lay, kind, entries * wimg.words_per_entry(width))
                            with m.If(word == h):
                                m.d.comb += hit.eq(1)
                                m.d.sync += sel.eq(k)
                        m.d.sync += [left.eq(word[:20]), wi.eq(0), addr.eq(0)]
                        with m.If(hit & ~self.s_axis_tlast):
                            m.next = "PAYLOAD"
                        with m.Else():
                            m.d.comb += err[E["WEIGHT_FORMAT"]].eq(1)
                            m.next = "DROP"
                            with m.If(self.s_axis_tlast):
                                m.next = "MAGIC"
            with m.State("PAYLOAD"):
                with m.If(accept):
                    m.d.sync += [asm.word_select(wi, 32).eq(word), left.eq(left - 1)]
                    with m.If(wi == sel_wpe_last):
                        m.d.sync += [wi.eq(0), wr.eq(1), wr_addr.eq(addr), addr.eq(addr + 1)]
                    with m.Else():
                        m.d.sync += wi.eq(wi + 1)
                    with m.If(self.s_axis_tlast):
                        m.d.comb += err[E["WEIGHT_FORMAT"]].eq(1)
                        m.next = "MAGIC"
                    with m.Elif(left == 1):
                        m.next = "HEADER"
            with m.State("DROP"):
                with m.If(accept & self.s_axis_tlast):
                    m.next = "MAGIC"

        # ------------------------------------------------------------ output
        pe, rw = p.blocks[-1].out_lanes, p.blocks[-1].result_width
        src = dag.o
        if pe != 1:
            m.submodules.out_conv = oc = WidthConverter(rw, pe, 1)
            wiring.connect(m, src, oc.i)
            src = oc.o
        if rw != RESULT_BITS:                        # 64-bit results: low word, then high word
            m.submodules.out_split = sp = WidthConverter(RESULT_BITS, rw // RESULT_BITS, 1)
            wiring.connect(m, src, sp.i)
            src = sp.o
        m.submodules.out_fifo = of = StreamFIFO(RESULT_BITS, depths[-1])
        wiring.connect(m, src, of.i)
        OW = p.out_words
        ocount = Signal(range(max(2, OW)))
        m.d.comb += [self.m_axis_tdata.eq(of.o.payload), self.m_axis_tvalid.eq(of.o.valid),
                     of.o.ready.eq(self.m_axis_tready), self.m_axis_tlast.eq(ocount == OW - 1)]
        frame_out = Signal()
        with m.If(self.m_axis_tvalid & self.m_axis_tready):
            m.d.sync += ocount.eq(Mux(ocount == OW - 1, 0, ocount + 1))
            m.d.comb += frame_out.eq(ocount == OW - 1)

        # ------------------------------------------------------------ counters and status
        inflight = Signal(32)
        m.d.sync += inflight.eq(inflight + frame_done - frame_out)
        m.d.comb += self.busy.eq((inflight != 0) | (beat != 0) | fill | drop)
        m.d.sync += self.cycles.eq(self.cycles + 1)
        with m.If(frame_done):
            m.d.sync += self.frames_in.eq(self.frames_in + 1)
            with m.If(self.frames_in == 0xFFFF_FFFF):
                m.d.comb += err[E["OVERFLOW"]].eq(1)
        with m.If(frame_out):
            m.d.sync += self.frames_out.eq(self.frames_out + 1)
            with m.If(self.frames_out == 0xFFFF_FFFF):
                m.d.comb += err[E["OVERFLOW"]].eq(1)
        with m.If(self.clear_counters):
            m.d.sync += [self.frames_in.eq(0), self.frames_out.eq(0), self.cycles.eq(0)]
        with m.If(self.clear_checksum):
            m.d.sync += [crc.eq(wimg.CRC32_INIT), self.words.eq(0)]
        m.d.comb += self.err.eq(err)
        return m


class Accelerator(wiring.Component):
    """The accelerator top level (docs/design.md section 6).

    Ports (Xilinx names; clock ``clk``, synchronous active-high reset ``rst``):

    ============================== ===== ==================================================
    ``s_axis_t{data,valid,last}``  In    pixels (HWC, ``in_lanes`` codes per beat) or, after
                                         ``CTRL.LOAD_WEIGHTS``, one weight-image frame
    ``s_axis_tready``              Out
    ``m_axis_t{data,valid,last}``  Out   int32 last-layer accumulators, ``tlast`` per frame
    ``m_axis_tready``              In    any backpressure
    ``s_axil_*``                   both  control/status (:mod:`bitplane.core.regmap`,
                                         :class:`~hw.axil.AXILiteRegisters`)
    ============================== ===== ==================================================

    Throughput: :func:`top_cycles` per frame in steady state (frames back to back); latency:
    the sum of the blocks' fill latencies. See the module docstring for framing, weight
    loading, FIFO sizing and reset behaviour.
    """

    def __init__(self, p: TopParams):
        self.p = p
        self.regs = AXILiteRegisters()
        self.core = Core(p)
        members = {n: mem for n, mem in self.core.signature.members.items() if n.startswith(("s_axis", "m_axis"))}
        members.update({n: mem for n, mem in self.regs.signature.members.items() if n.startswith("s_axil_")})
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        regs, core = self.regs, self.core
        m.submodules.regs = regs
        ctrl = regs.reg_ctrl
        C = {f.name: f.lsb for f in regmap.by_name("CTRL").fields}
        E = {f.name: f.lsb for f in regmap.by_name("ERROR").fields}
        S = {f.name: f.lsb for f in regmap.by_name("STATUS").fields}
        soft = ctrl[C["SOFT_RESET"]]
        m.submodules.core = ResetInserter({"sync": soft})(core)
        for n, mem in self.signature.members.items():
            src = getattr(self, n)
            dst = getattr(regs if n.startswith("s_axil_") else core, n)
            if mem.flow == In:
                m.d.comb += dst.eq(src)
            else:
                m.d.comb += src.eq(dst)
        m.d.comb += [
            core.load.eq(ctrl[C["LOAD_WEIGHTS"]]),
            core.clear_counters.eq(ctrl[C["CLEAR_COUNTERS"]]),
            core.clear_checksum.eq(ctrl[C["CLEAR_CHECKSUM"]]),
            regs.reg_id.eq(regmap.ID_MAGIC),
            regs.reg_version.eq(regmap.REGMAP_VERSION | (regmap.STREAM_VERSION << 16)),
            regs.reg_build_id.eq(Const(self.p.build_id & 0xFFFF_FFFF, 32)),
            regs.reg_frames_in.eq(core.frames_in),
            regs.reg_frames_out.eq(core.frames_out),
            regs.reg_cycles_lo.eq(core.cycles[:32]),
            regs.reg_cycles_hi.eq(core.cycles[32:]),
            regs.reg_weight_checksum.eq(core.checksum),
            regs.reg_weight_words.eq(core.words),
            regs.reg_error_set.eq(core.err | Mux(soft & core.busy, 1 << E["ABORTED"], 0)),
        ]
        status = Signal(32)
        m.d.comb += [status[S["BUSY"]].eq(core.busy), status[S["WEIGHTS_LOADING"]].eq(core.loading),
                     status[S["ERROR"]].eq(regs.reg_error != 0), regs.reg_status.eq(status)]
        return m
