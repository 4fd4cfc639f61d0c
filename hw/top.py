"""The accelerator top level: every layer as a streaming block, AXI4-Stream in/out, AXI4-Lite.

Structure (docs/design.md section 6)::

    s_axis -> input framer -> Dag[slice -> FIFO -> slice -> block 0 -> ... -> block n-1] -> output framer (width conv, FIFO) -> m_axis
           \\-> weight loader (while CTRL.LOAD_WEIGHTS) -> the blocks' weight/threshold/constant memories
    s_axil <-> register file (core/regmap.py)

Blocks are described by :class:`~hw.layers.BlockParams` objects (conv, dense, pool on codes):
the top asks each for its widths, burst, cycles and memories and lets it build its component
(the block interface, docs/design.md); all speak ``amaranth.lib.stream``.

Streams (formats defined once in :mod:`bitplane.core.packing`):

Both AXI4-Stream ports are ``stream_bits`` wide (32..512, a compile parameter); what a beat
carries is :class:`bitplane.core.packing.BeatLayout` (the host packs by the same definition):

* ``s_axis``: the input codes in raster order with their channels (HWC), words of ``in_lanes``
  codes for the first block, as many words per beat as fit, ``tlast`` on the last beat of a
  frame (:class:`~hw.framing.InputFramer`). A frame with an early ``tlast`` is completed with
  zero words, one with a late ``tlast`` is cut at its length and the extra beats dropped;
  either sets ``ERROR.FRAMING``. Every input frame yields exactly one result frame, so a host
  never waits for a result that cannot come.
* ``m_axis``: 32-bit result words, ``stream_bits // 32`` per beat: one signed last-layer
  accumulator each (two words, low first, when the proven accumulator range needs more than 32
  bits), in the golden model's output order (HWC for a conv, feature order for a dense layer),
  ``tlast`` on the last beat of a frame (:class:`~hw.framing.OutputFramer`).
* Weight images (:mod:`bitplane.core.weightimage`) arrive on ``s_axis`` as one frame of
  32-bit words after ``CTRL.LOAD_WEIGHTS``; the loader (:class:`~hw.framing.WeightLoader`) checks magic, headers and section sizes
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
stay loaded), one cycle after the CTRL pulse, each block and each part of the core through a
register of its own (:func:`~hw.stream_blocks.local_reset`); if a frame was in flight it sets
``ERROR.ABORTED``. The port's ``rst`` takes the same way into the core (a clock domain without
a reset of its own), so only the register file is reset by the ``rst`` net itself.
"""
from __future__ import annotations

from dataclasses import dataclass

from amaranth import (Cat, ClockDomain, ClockSignal, Const, DomainRenamer, Module, Mux, ResetInserter, ResetSignal, Signal,
                      signed)
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from bitplane.core.packing import (AXIS_IN_BITS, RESULT_BITS, BeatLayout, check_stream_bits, input_layout,
                                   word_layout)

from bitplane.core import regmap
from .axil import AXILiteRegisters
from .dag import Dag, block_name, chain_depth, edge_fifo_depths, linear_inputs
from .framing import InputFramer, OutputFramer, WeightLoader
from .layers import LoadableMemory
from .stream_blocks import RegisterSlice, local_reset


CORE, DAG = "core", "dag"       # submodule names: Accelerator -> Core -> Dag -> blocks


def block_module(top: str, k: int) -> str:
    """The Verilog module name of block ``k`` in an accelerator whose top module is ``top``
    (Amaranth names a submodule's module by its hierarchy path): what out-of-context
    synthesis (:mod:`bitplane.synth.ooc`) cuts the design at."""
    return f"{top}.{CORE}.{DAG}.{block_name(k)}"


@dataclass(frozen=True)
class TopParams:
    name: str
    in_shape: tuple           # (C, H, W)
    in_bits: int
    in_lanes: int             # input codes per first-block word
    blocks: tuple             # BlockParams (hw.layers), in stream (topological) order; the last is the output
    build_id: int = 0
    inputs: tuple = ()        # sources of each block's inputs (hw/dag.py); empty: a linear chain
    stream_bits: int = AXIS_IN_BITS     # tdata width of s_axis and m_axis

    def __post_init__(self):
        check_stream_bits(self.stream_bits)
        C, H, W = self.in_shape
        if (C * H * W) % self.in_lanes or self.in_lanes * self.in_bits > self.stream_bits:
            raise ValueError(f"in_lanes={self.in_lanes} must divide the {C * H * W} input codes and fit "
                             f"{self.stream_bits} bits")
        last = self.blocks[-1] if self.blocks else None
        if last is None or not last.raw_output:
            raise ValueError("the last block must be a conv/dense block with raw accumulator output")
        if last.result_width not in (RESULT_BITS, 2 * RESULT_BITS):
            raise ValueError(f"the last block's raw width must be {RESULT_BITS} or {2 * RESULT_BITS}")

    @property
    def in_layout(self) -> BeatLayout:
        return input_layout(self.in_shape, self.in_bits, self.in_lanes, self.stream_bits)

    @property
    def in_words(self) -> int:
        """First-block words per frame (the input framer passes one per cycle)."""
        C, H, W = self.in_shape
        return C * H * W // self.in_lanes

    @property
    def in_beats(self) -> int:
        return self.in_layout.beats

    @property
    def out_layout(self) -> BeatLayout:
        return word_layout(self.out_words, self.stream_bits)

    @property
    def edges(self) -> tuple:
        """Sources of every block's inputs (hw/dag.py); a linear chain unless ``inputs`` is given."""
        return self.inputs or linear_inputs(len(self.blocks))

    @property
    def in_geometry(self) -> tuple[int, int]:
        """``(pixels, words per pixel)`` of the first block's input stream: HWC pixels, or one
        flat vector when a dense first block takes words across channels (``in_lanes`` does not
        divide the channels)."""
        C, H, W = self.in_shape
        return (H * W, C // self.in_lanes) if C % self.in_lanes == 0 else (1, self.in_words)

    def dag_depths(self) -> dict:
        """``{(source, block, port): words}``: every edge FIFO of the DAG (hw/dag.py)."""
        return edge_fifo_depths(self.blocks, self.edges, *self.in_geometry)

    def dag(self):
        """The blocks wired by :class:`~bitplane.hw.dag.Dag`."""
        return Dag(self.blocks, self.edges, self.in_lanes * self.in_bits, *self.in_geometry)

    @property
    def words_per_value(self) -> int:
        """m_axis beats per accumulator: 1, or 2 (low word first) when the proven range needs
        more than 32 bits."""
        return self.blocks[-1].result_width // RESULT_BITS

    @property
    def out_words(self) -> int:
        return self.blocks[-1].out_values * self.words_per_value


def top_cycles(p: TopParams) -> int:
    """Steady-state cycles per frame of the whole pipeline: its slowest stage (the framers
    move one word per cycle)."""
    return max([p.in_words, p.out_words] + [b.cycles() for b in p.blocks])


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


def event_counter(m: Module, count: Signal, step, clear):
    """``count`` (a register) plus one at each ``step``, 0 at ``clear`` (which wins). Returns
    "this step wraps ``count`` to 0" (``step`` and the increment's carry out: no compare of the
    count with all ones, whose AND tree before the ERROR register was the demo's ECP5 path at
    grade 8 once the loader's was gone)."""
    nx = Signal(len(count) + 1, name=f"{count.name}_inc")
    m.d.comb += nx.eq(count + 1)
    with m.If(clear):
        m.d.sync += count.eq(0)
    with m.Elif(step):
        m.d.sync += count.eq(nx[:len(count)])
    return step & nx[-1]


class Core(wiring.Component):
    """Everything of :class:`Accelerator` but the register file (so SOFT_RESET can reset it).

    Ports: ``s_axis_*`` / ``m_axis_*`` as the top; ``load`` (pulse: the next input frame is a
    weight image), ``clear_counters``, ``clear_checksum`` (pulses); ``frames_in``,
    ``frames_out`` (32), ``cycles`` (64), ``checksum``, ``words`` (32), ``loading``,
    ``busy`` (1), ``err`` (3: ERROR bits 2..0 to set, registered: a cycle after the event, and
    not cleared by ``soft_reset``, so an event in the cycle of a reset is still reported);
    ``soft_reset`` (In(1)): resets
    everything here one cycle later, each part through a register of its own, but the memories'
    contents.
    """

    def __init__(self, p: TopParams):
        self.p = p
        super().__init__({
            "s_axis_tdata": In(p.stream_bits), "s_axis_tvalid": In(1), "s_axis_tready": Out(1),
            "s_axis_tlast": In(1), "m_axis_tdata": Out(p.stream_bits), "m_axis_tvalid": Out(1), "m_axis_tready": In(1),
            "m_axis_tlast": Out(1),
            "load": In(1), "clear_counters": In(1), "clear_checksum": In(1),
            "frames_in": Out(32), "frames_out": Out(32), "cycles": Out(64), "checksum": Out(32), "words": Out(32),
            "loading": Out(1), "busy": Out(1), "err": Out(3), "soft_reset": In(1),
        })

    def elaborate(self, platform):
        # SOFT_RESET (``soft_reset``) reaches each part through a register of its own
        # (hw.stream_blocks.local_reset): the DAG's blocks (hw.dag.Dag), the framers, the loader,
        # the input slice and this module's own registers (``counters``), all one cycle later
        top = Module()
        p = self.p

        resets = {}

        def reset_by(name, sub):
            resets[name] = local_reset(top, self.soft_reset, f"soft_reset_{name}")
            return ResetInserter({"sync": resets[name]})(sub)
        E = {f.name: f.lsb for f in regmap.by_name("ERROR").fields}
        depths = fifo_depths(p)
        top.submodules[DAG] = dag = p.dag()        # blocks, edge FIFOs, forks (hw/dag.py)
        top.d.comb += dag.soft_reset.eq(self.soft_reset)

        sb = p.stream_bits
        out = p.blocks[-1]
        fr = InputFramer(sb, p.in_lanes * p.in_bits, p.in_words)
        ld = WeightLoader(sb, memory_sections(p))
        of = OutputFramer(out.result_width, out.out_lanes, p.out_words, depths[-1], sb)
        # s_axis through a register slice (its tready is a register: the input FIFO's level and
        # the framer's state stay off the path to the port), then to the weight loader while
        # loading, else to the input framer
        sl = RegisterSlice(sb + 1)
        for name, sub in (("framer", fr), ("loader", ld), ("out_framer", of), ("in_slice", sl)):
            top.submodules[name] = reset_by(name, sub)
        m = Module()                                # the rest: wiring, write bus, counters
        top.submodules.counters = reset_by("counters", m)
        m.d.comb += [sl.i.payload.eq(Cat(self.s_axis_tdata, self.s_axis_tlast)), sl.i.valid.eq(self.s_axis_tvalid),
                     self.s_axis_tready.eq(sl.i.ready & ~resets["in_slice"])]
        loading = ld.loading
        m.d.comb += [ld.load.eq(self.load), ld.idle.eq(fr.idle), ld.clear.eq(self.clear_checksum),
                     fr.hold.eq(ld.pending), self.loading.eq(loading)]
        for s in (fr.i, ld.i):
            m.d.comb += [s.payload.data.eq(sl.o.payload[:sb]), s.payload.last.eq(sl.o.payload[sb])]
        m.d.comb += [fr.i.valid.eq(sl.o.valid & ~loading), ld.i.valid.eq(sl.o.valid & loading),
                     sl.o.ready.eq(Mux(loading, ld.i.ready, fr.i.ready))]
        wiring.connect(m, fr.o, dag.i)
        # the loader's write bus reaches memories all over the device: registered once per block
        # (entries are written one cycle later), each block's copy kept apart (`keep`, which the
        # synthesis flow carries onto the flip-flops: synth.flow.KEEP_REGISTERS), so no route from
        # the loader ends in logic
        by_block = {}
        for k, (kb, _, mem) in enumerate(loadable_memories(p)):
            by_block.setdefault(kb, []).append((k, mem))
        for kb, mems in by_block.items():
            addr = Signal.like(ld.wr.payload.addr, name=f"wr{kb}_addr", attrs={"keep": 1}, reset_less=True)
            wdata = Signal(max(mem.width for _, mem in mems), name=f"wr{kb}_data", attrs={"keep": 1}, reset_less=True)
            m.d.sync += [addr.eq(ld.wr.payload.addr), wdata.eq(ld.wr.payload.data[:len(wdata)])]
            for k, mem in mems:
                valid = Signal(name=f"wr{kb}_valid{mem.port}")
                m.d.sync += valid.eq(ld.wr.valid & (ld.wr.payload.sel == k))
                port = dag.mem_port(kb, mem.port)
                m.d.comb += [port.valid.eq(valid), port.payload.addr.eq(addr),
                             port.payload.data.eq(wdata[:mem.width])]

        # m_axis
        wiring.connect(m, dag.o, of.i)
        m.d.comb += [self.m_axis_tdata.eq(of.o.payload.data), self.m_axis_tlast.eq(of.o.payload.last),
                     self.m_axis_tvalid.eq(of.o.valid), of.o.ready.eq(self.m_axis_tready)]

        # ------------------------------------------------------------ counters and status
        # the framers' pulses registered before the counters (their adders stay off the stream
        # handshakes' paths); `busy` covers a pulse still in its register
        frame_done, frame_out = Signal(), Signal()
        m.d.sync += [frame_done.eq(fr.frame_done), frame_out.eq(of.frame_done)]
        err = Signal(3)                  # FRAMING, OVERFLOW, WEIGHT_FORMAT (ABORTED is set by the top)
        m.d.comb += [err[E["FRAMING"]].eq(fr.framing_error), err[E["WEIGHT_FORMAT"]].eq(ld.format_error),
                     self.checksum.eq(ld.checksum), self.words.eq(ld.words)]
        # frames in flight: the pulses' difference registered as a step of -1, 0 or +1 first, so
        # the count is one add of a sign-extended step (one carry chain, not two in a row: the
        # demo's ECP5 critical path at one placement); `busy` covers the step in its register
        inflight, step = Signal(32), Signal(signed(2))
        m.d.sync += [step.eq(frame_done - frame_out), inflight.eq(inflight + step)]
        m.d.comb += self.busy.eq((inflight != 0) | ~fr.idle | frame_done | (step != 0))
        m.d.sync += self.cycles.eq(self.cycles + 1)
        wrap_in = event_counter(m, self.frames_in, frame_done, self.clear_counters)
        wrap_out = event_counter(m, self.frames_out, frame_out, self.clear_counters)
        m.d.comb += err[E["OVERFLOW"]].eq(wrap_in | wrap_out)
        with m.If(self.clear_counters):
            m.d.sync += self.cycles.eq(0)
        # the events registered before the ERROR register (the loader's format test through its
        # FSM into ERROR was the demo's ECP5 path at one placement, 7.17 ns)
        err_r = Signal(3, reset_less=True)
        m.d.sync += err_r.eq(err)
        m.d.comb += self.err.eq(err_r)
        return top


class Accelerator(wiring.Component):
    """The accelerator top level (docs/design.md section 6).

    Ports (Xilinx names; clock ``clk``, synchronous active-high reset ``rst``):

    ============================== ===== ==================================================
    ``s_axis_t{data,valid,last}``  In    input codes (HWC, BeatLayout beats) or, after
                                         ``CTRL.LOAD_WEIGHTS``, one weight-image frame
    ``s_axis_tready``              Out
    ``m_axis_t{data,valid,last}``  Out   int32 last-layer accumulators, ``tlast`` per frame
    ``m_axis_tready``              In    any backpressure
    ``s_axil_*``                   both  control/status (:mod:`bitplane.core.regmap`,
                                         :class:`~hw.axil.AXILiteRegisters`)
    ============================== ===== ==================================================

    Throughput: :func:`top_cycles` per frame in steady state (frames back to back); latency:
    the sum of the blocks' fill latencies, plus one cycle for ``s_axis``'s register slice
    (``s_axis_tready`` is a register). See the module docstring for framing, weight
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
        # the core in a clock domain without a reset of its own: the port's reset reaches it as
        # SOFT_RESET does, through a register per part (Core), not as one net to every flip-flop
        # of the design (the ECP5 paths of CNV-W1A1 and TFC-W1A1 at some placements began at the
        # reset: 5.1-5.5 ns of routing); the core is so reset one cycle later and one cycle
        # longer than the port's reset, `s_axis_tready` low meanwhile
        m.domains.core = ClockDomain("core", reset_less=True, local=True)
        m.d.comb += ClockSignal("core").eq(ClockSignal("sync"))
        m.submodules[CORE] = DomainRenamer("core")(core)
        m.d.comb += core.soft_reset.eq(soft | ResetSignal("sync"))
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
