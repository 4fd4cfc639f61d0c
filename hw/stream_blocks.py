"""Streaming building blocks: FIFO, width converter, sliding window, pooling, code LUT.

All speak ``amaranth.lib.stream`` (valid/ready) and are correct under arbitrary
backpressure. Feature maps stream in HWC order (``core/packing.py``): pixels in raster
order, each pixel's channels in chunks of ``lanes`` elements per word, lane ``l`` at bits
``[l*bits, (l+1)*bits)``. Each block has a cycle formula next to it.
"""
from __future__ import annotations

import math

import numpy as np
from amaranth import Array, Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from bitplane.core.intmath import window_out
from .memory import LUTRAM_DEPTH, block_memory


def counter_step(ctr, last, n: int) -> list:
    """Statements advancing counter ``ctr`` of ``n`` values by one, wrapping to 0 after ``n - 1``,
    and its flag ``last`` ("at ``n - 1``", a register kept with it, initialised to ``n == 1``), so
    that the enables of nested counters are ANDs of registers, not chains of comparators (the
    MVTU's issue counters, the sliding window's reader)."""
    return [ctr.eq(Mux(last, 0, ctr + 1)), last.eq(last_after_step(ctr, last, n))]


def local_reset(m: Module, reset, name: str) -> Signal:
    """A registered copy of ``reset`` for one part of the design, one cycle after ``reset``: a
    reset that reaches every flip-flop of a large design from one register is a long route, one
    copy per block can be placed near its block. The copies are marked ``keep``; yosys'
    ``opt_merge`` ignores that on a wire and would make them one flip-flop again, so the
    synthesis flow puts ``keep`` on their flip-flop cells (``synth.flow.KEEP_REGISTERS``)."""
    r = Signal(name=name, attrs={"keep": 1})
    m.d.sync += r.eq(reset)
    return r


def ready_copies(m: Module, name: str, nxt, init: int = 1) -> tuple:
    """An input ``ready`` register as two copies of ``nxt`` (reset to ``init``, 1), kept apart (``keep``,
    carried onto the flip-flops by ``synth.flow.KEEP_REGISTERS``): ``(port, own)``. The port's
    copy drives the producer's logic and this block's data enables, possibly far and wide; the
    other only this block's own next-state logic (``nxt`` itself), which so stays local. With one
    register, yosys shared the enable LUTs between both and ECP5 paths ran from it through the
    data's enables and back (TFC's engine input, 5.8 ns of routing; its two-bank converter,
    5.1 ns; CNV-W1A1's conv0 gather into ``o.valid``, 6.5 ns). ``nxt``: usually a signal the
    caller drives afterwards (from ``own``). The same for an output ``valid`` (``init=0``): the
    port's copy drives the consumer, the other this block's read-side state (TFC's two-bank
    converter's ``o.valid`` -> itself, 4 levels, 5.7 ns of routing)."""
    port, own = (Signal(init=init, name=nm, attrs={"keep": 1}) for nm in (name, f"{name}_own"))
    m.d.sync += [port.eq(nxt), own.eq(nxt)]
    return port, own


def last_after_step(ctr, last, n: int):
    """The value of :func:`counter_step`'s flag ``last`` after a step (``n - 1`` reached)."""
    return Mux(last, n == 1, ctr == n - 2)


def nested_lasts_after(en, counters) -> list:
    """The ``last`` flags after this cycle of nested counters ``(ctr, last, n)``, innermost first:
    the innermost steps with ``en``, each other one when all inside it are at their last values
    (for registers of loop ends set a cycle ahead: the sliding window's reader, the MVTU's issue)."""
    out = []
    for ctr, last, n in counters:
        out.append(Mux(en, last_after_step(ctr, last, n), last))
        en = en & last
    return out


#: Cycles from a word taken from a credit-controlled FIFO to its credit's return (:func:`credit_room`).
CREDIT_RETURN = 1


def credit_room(m, fifo: "StreamFIFO", spend) -> Signal:
    """Credit-based flow control into ``fifo`` (a :class:`StreamFIFO`) from a pipeline that never
    stops: ``spend`` marks a cycle that commits the pipeline to one more word for the FIFO; the
    returned ``room`` (a register) says one more may be committed: the words committed and not yet
    taken from the FIFO are below its depth, so the FIFO never overflows. The producer gates its
    issue with ``room``; the consumer's ``ready`` reaches only the FIFO's read side and a
    register here: a word taken returns its credit a cycle later (:data:`CREDIT_RETURN`; the
    consumer's ``ready`` straight into the count was CNV-W1A1's ECP5 path at one placement, from
    an MVTU's full flag through the width converter to the window's ``room``, 9.95 ns). The
    MVTU and the sliding window use it."""
    owed, nxt = Signal(range(fifo.depth + 1), name="owed"), Signal(range(fifo.depth + 1), name="owed_next")
    room = Signal(init=1, name="room")
    taken = Signal(name="taken")
    m.d.sync += taken.eq(fifo.o.valid & fifo.o.ready)
    m.d.comb += nxt.eq(owed + spend - taken)
    m.d.sync += [owed.eq(nxt), room.eq(nxt < fifo.depth)]
    return room


def _level_flags(m, n: int, put, read, notfull, nonempty):
    """A FIFO memory's level (``n`` words at most) and its ``notfull`` and ``nonempty`` flags
    (registers the caller made, reset to 1 and 0), each next value chosen by this cycle's
    ``put`` and ``read`` among values computed from the level register alone (``level + 1``,
    ``level - 1``, the compares with ``n - 1`` and 1): the producer's valid and the consumer's
    ready reach the flip-flops through the LUTs of ``put``/``read`` and the choice, not through
    ``level + put - read`` and a compare after it (edge FIFOs' flags were ECP5 paths of TFC and
    CNV-W1A1, 4-5 levels)."""
    level = Signal(range(n + 1), name="level")
    up, down = put & ~read, read & ~put
    at_top, at_one = Signal(name="at_top"), Signal(name="at_one")
    m.d.comb += [at_top.eq(level == n - 1), at_one.eq(level == 1)]
    m.d.sync += [level.eq(Mux(up, level + 1, Mux(down, level - 1, level))),
                 notfull.eq(Mux(up, ~at_top, Mux(down, 1, notfull))),
                 nonempty.eq(Mux(up, 1, Mux(down, ~at_one, nonempty)))]


class StreamFIFO(wiring.Component):
    """First-in first-out buffer between two streams.

    Ports: ``i`` In(stream of ``width``), ``o`` Out(stream of ``width``).
    One transfer per cycle on both sides in steady state; ``i.ready`` is low only when
    ``depth`` words are held. Backpressure on ``o`` never loses data.

    Two words: a :class:`RegisterSlice`. Up to :data:`~bitplane.hw.memory.LUTRAM_DEPTH` words (LUT
    RAM or registers): amaranth's ``SyncFIFOBuffered``'s design with its flags as registers
    (:meth:`_lutram`). Both latency 1 cycle (a word taken at one clock edge is offered after the
    next). Deeper (a block RAM): the memory's read data goes into a plain register (no reset,
    no logic in front: the block RAM's own output register on ECP5,
    :mod:`bitplane.synth.ecp5_outreg`; a DP16KD read without it has a 5.8 ns clock-to-out,
    CNV-W1A1's critical path at grade 6), and ``o`` is that register: ``depth - 2`` words in
    the memory, one in its read latch, one in the register; latency 2 cycles.
    """

    def __init__(self, width: int, depth: int):
        self.width, self.depth = width, depth
        super().__init__({"i": In(stream.Signature(width)), "o": Out(stream.Signature(width))})

    @property
    def registered(self) -> bool:
        """The read data is registered after the memory (a block-RAM deep FIFO)."""
        return self.depth > LUTRAM_DEPTH

    def elaborate(self, platform):
        m = Module()
        if self.depth == 2:         # two entries: a register slice (amaranth's FIFO of 2 has 0-bit pointers)
            m.submodules.q = q = RegisterSlice(self.width)
            wiring.connect(m, wiring.flipped(self.i), q.i)
            wiring.connect(m, q.o, wiring.flipped(self.o))
            return m
        if self.depth < 3:
            m.submodules.q = q = fifo.SyncFIFOBuffered(width=self.width, depth=self.depth)
            m.d.comb += [q.w_data.eq(self.i.payload), q.w_en.eq(self.i.valid), self.i.ready.eq(q.w_rdy),
                         self.o.payload.eq(q.r_data), self.o.valid.eq(q.r_rdy), q.r_en.eq(self.o.ready)]
            return m
        if not self.registered:
            self._lutram(m)
            return m
        n = self.depth - 2
        m.submodules.storage = mem = block_memory(self.width, n)
        wp, rp = mem.write_port(), mem.read_port()
        produce, consume = Signal(range(n)), Signal(range(n))
        # "not empty" and "not full" as registers set with the level (not compares after it):
        # the block RAM's read enable is then one LUT after registers and the consumer's ready
        # (a deep FIFO's block RAM may sit far across the device from its control: CNV-W1A1's
        # ECP5 path at one placement, the level's compare -> the read enable, 6.35 ns of routing)
        latched, held = Signal(), Signal()      # a word in the read latch / in the output register
        out = Signal(self.width, reset_less=True)
        notfull, nonempty = Signal(init=1), Signal()
        load = latched & (~held | self.o.ready)          # read latch -> output register
        read = nonempty & (~latched | load)              # memory -> read latch
        put = self.i.valid & notfull
        _level_flags(m, n, put, read, notfull, nonempty)
        m.d.comb += [self.i.ready.eq(notfull), self.o.valid.eq(held), self.o.payload.eq(out),
                     wp.addr.eq(produce), wp.data.eq(self.i.payload), wp.en.eq(put),
                     rp.addr.eq(consume), rp.en.eq(read)]
        with m.If(put):
            m.d.sync += produce.eq(Mux(produce == n - 1, 0, produce + 1))
        with m.If(read):
            m.d.sync += consume.eq(Mux(consume == n - 1, 0, consume + 1))
        with m.If(read):
            m.d.sync += latched.eq(1)
        with m.Elif(load):
            m.d.sync += latched.eq(0)
        with m.If(load):
            m.d.sync += [out.eq(rp.data), held.eq(1)]
        with m.Elif(self.o.ready):
            m.d.sync += held.eq(0)
        return m

    def _lutram(self, m):
        """``depth - 1`` words in LUT RAM and one in the read port's register, as amaranth's
        ``SyncFIFOBuffered`` (the same cycles: a word written is offered two edges later, one
        word in and one out per cycle), but with the memory's "not full" (``i.ready``) and "not
        empty" flags as registers whose next values are chosen by this cycle's write and read
        from compares of the level register, and the level's next value chosen from ``level +
        1`` and ``level - 1`` the same way: the producer's valid and the consumer's ready reach
        flip-flops through two LUTs, not through the level's adder and a compare after it (with
        SyncFIFOBuffered, ``i.ready`` a compare of the level: TFC's ECP5 path ran from an
        engine's output FIFO's valid through the edge FIFO's write into its level, 4 levels)."""
        n = self.depth - 1
        mem = m.submodules.storage = Memory(shape=self.width, depth=n, init=[])
        wp, rp = mem.write_port(), mem.read_port(domain="sync")
        produce, consume = Signal(range(n)), Signal(range(n))
        notfull, nonempty = Signal(init=1), Signal()
        held = Signal()                                  # a word in the read port's register
        put = self.i.valid & notfull
        read = nonempty & (~held | self.o.ready)         # memory -> the read register
        _level_flags(m, n, put, read, notfull, nonempty)
        m.d.comb += [self.i.ready.eq(notfull), self.o.valid.eq(held), self.o.payload.eq(rp.data),
                     wp.addr.eq(produce), wp.data.eq(self.i.payload), wp.en.eq(put),
                     rp.addr.eq(consume), rp.en.eq(read)]
        with m.If(put):
            m.d.sync += produce.eq(Mux(produce == n - 1, 0, produce + 1))
        with m.If(read):
            m.d.sync += [consume.eq(Mux(consume == n - 1, 0, consume + 1)), held.eq(1)]
        with m.Elif(self.o.ready):
            m.d.sync += held.eq(0)


class RegisterSlice(wiring.Component):
    """A stream register with a registered ``ready`` (AXI's register slice).

    Ports: ``i`` In(stream of ``width``), ``o`` Out(stream of ``width``).
    Latency 1 cycle, one word per cycle in steady state. Two entries written in turn and read
    in turn: ``i.ready`` is a register ("not both full"), so the producer's stall logic does
    not wait on the consumer's ready through this block (it cuts a backpressure path that
    would otherwise run from the consumer's state to every clock enable of the producer's
    pipeline), and the consumer's ready reaches only the read pointer and the two flags, not
    the entries' clock enables. The entry at the write pointer is written whenever the slice
    has room, the producer's word or not (it is not offered while it is empty, and the word that
    moves the pointer writes it again), so the producer's valid reaches the pointer and the
    flags only. ``o`` is the entry at the read pointer. Backpressure on ``o`` never loses data.
    """

    def __init__(self, width: int):
        self.width = width
        super().__init__({"i": In(stream.Signature(width)), "o": Out(stream.Signature(width))})

    def elaborate(self, platform):
        m = Module()
        ent = [Signal(self.width, reset_less=True, name=f"e{k}") for k in range(2)]
        wp, rp = Signal(), Signal()
        count = Signal(range(3))
        not_full, not_empty = Signal(init=1), Signal()
        m.d.comb += [self.i.ready.eq(not_full), self.o.valid.eq(not_empty),
                     self.o.payload.eq(Mux(rp, ent[1], ent[0]))]
        put = self.i.valid & not_full
        take = not_empty & self.o.ready
        for k in range(2):
            with m.If(not_full & (wp == k)):
                m.d.sync += ent[k].eq(self.i.payload)
        with m.If(put):
            m.d.sync += wp.eq(~wp)
        with m.If(take):
            m.d.sync += rp.eq(~rp)
        nxt = Signal(range(3))
        m.d.comb += nxt.eq(count + put - take)
        m.d.sync += [count.eq(nxt), not_full.eq(nxt != 2), not_empty.eq(nxt != 0)]
        return m


def width_converter_cycles(words_in: int, lanes_in: int, lanes_out: int) -> int:
    """Cycles to move ``words_in`` input words without stalls: one word per cycle on the busier side."""
    return max(words_in, -(-words_in * lanes_in // lanes_out))


# A width converter with a non-integer ratio goes through two banks of the least common multiple
# of the two widths when that is at most this many times the sum of the two (flip-flops instead
# of the shifting buffer's shifter).
LCM_LIMIT = 4


class WidthConverter(wiring.Component):
    """Re-packs a stream of ``lanes_in`` elements per word into ``lanes_out`` per word.

    Ports: ``i`` In(stream of ``lanes_in*bits``), ``o`` Out(stream of ``lanes_out*bits``).
    Any ratio; element order is kept (lane 0 first). Full rate for integer ratios and the
    two-bank converters below; latency 1 cycle. The element count of a frame must be a multiple
    of ``lanes_out`` (no partial words).

    Integer ratios have no shifter: ``lanes_out = k * lanes_in`` gathers ``k - 1`` input words in
    slots and moves the whole word into the output register with the ``k``-th
    (``i.ready`` a register: "not at the ``k``-th word, or the output register free", a ``k``-th
    word arriving as the consumer takes the word before waiting a cycle); ``lanes_in
    = k * lanes_out`` holds one input word and shifts ``lanes_out`` elements out per output word
    (``i.ready`` is "nothing held, or the last part leaving"). Counters carry their "last" flags
    as registers, so no compare lies between the consumer's ``ready`` and the producer's.
    Other ratios, when the least common multiple ``L`` of the two is at most
    :data:`LCM_LIMIT` times ``lanes_in + lanes_out``: two banks of ``L`` lanes in turn, input
    words written into their slots, output words read through a multiplexer (no shifter; full
    rate on the busier side; both handshakes registers, the consumer's ``ready`` reaching only
    the read side's counters). Beyond that: a
    buffer of ``lanes_in + lanes_out`` elements written at a variable shift; ``i.ready`` when it
    has room for a whole input word, ``o.valid`` when it holds a whole output word.
    """

    def __init__(self, bits: int, lanes_in: int, lanes_out: int):
        self.bits, self.lanes_in, self.lanes_out = bits, lanes_in, lanes_out
        super().__init__({"i": In(stream.Signature(lanes_in * bits)),
                          "o": Out(stream.Signature(lanes_out * bits))})

    def elaborate(self, platform):
        m = Module()
        b, li, lo = self.bits, self.lanes_in, self.lanes_out
        if lo % li == 0:
            self._gather(m, b, li, lo // li)
        elif li % lo == 0:
            self._scatter(m, b, lo, li // lo)
        elif (lcm := math.lcm(li, lo)) <= LCM_LIMIT * (li + lo):
            self._banks(m, b, li, lo, lcm)
        else:
            self._general(m, b, li, lo)
        return m

    def _gather(self, m, b, li, k):
        n, last = Signal(range(max(k, 2))), Signal(init=int(k == 1))
        # the first k - 1 words, each in its slot (slot n: the word the counter is at). Slot n and
        # the output register are written whenever the port is ready, the producer's word or not:
        # slot n is rewritten by the word that advances n, and the output register is written
        # (with the k-th word) only while it holds nothing (ready and the k-th word: the output
        # register empty, below), so the producer's valid reaches the counter and the flags only,
        # not the data registers' enables (CNV-W1A1's ECP5 path at one placement: a window's
        # output FIFO's o.valid -> the gather's word registers, 2 levels, 5.97 ns of routing)
        slots = [Signal(li * b, name=f"slot{s}", reset_less=True) for s in range(k - 1)]
        word = Cat(*slots, self.i.payload)
        # i.ready is a register: "not at the k-th word, or the output register empty" after this
        # cycle, leaving out that the consumer may take the word in the same cycle (a k-th word
        # then waits a cycle; with k >= 2 and a consumer that takes the word when it comes, never).
        # The consumer's ready reaches the output register's valid only: with it in i.ready, the
        # demo's ECP5 path at one placement ran from the valid through the window FIFO's read
        # back to the valid (7.3 ns, 6.0 routing)
        # (k = 1, a plain register: i.ready is "empty or taken", else it would halve the rate;
        # the register is written when the consumer takes its word, the next word or not)
        # (k > 1: two kept copies, :func:`ready_copies`; the port's enables the data registers)
        rdy_nx = Signal()
        if k > 1:
            rdy, rdy_own = ready_copies(m, "rdy", rdy_nx)
        else:
            rdy = rdy_own = ~self.o.valid | self.o.ready
        out = Signal.like(self.o.payload, name="out", reset_less=True)
        m.d.comb += [self.i.ready.eq(rdy), self.o.payload.eq(out)]
        fire_own = self.i.valid & rdy_own
        valid_nx = Mux(fire_own & last, 1, self.o.valid & ~self.o.ready)
        m.d.sync += self.o.valid.eq(valid_nx)
        if k > 1:
            # (rdy & last after this: valid_nx low, so o.valid is low whenever out is written)
            m.d.comb += rdy_nx.eq(~Mux(fire_own, ~last & (n == k - 2), last) | ~valid_nx)
            with m.If(fire_own):
                m.d.sync += [n.eq(Mux(last, 0, n + 1)), last.eq(n == k - 2)]
        for s, slot in enumerate(slots):
            with m.If(rdy & ~last & (n == s)):
                m.d.sync += slot.eq(self.i.payload)
        with m.If(rdy & last):
            m.d.sync += out.eq(word)

    def _scatter(self, m, b, lo, k):
        n, last = Signal(range(k)), Signal()
        held = Signal()
        hold = Signal(self.lanes_in * b, reset_less=True)
        m.d.comb += [self.o.valid.eq(held), self.o.payload.eq(hold[:lo * b]),
                     self.i.ready.eq(~held | (last & self.o.ready))]
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += [hold.eq(hold[lo * b:]), n.eq(n + 1), last.eq(n == k - 2)]
            with m.If(last):
                m.d.sync += held.eq(0)
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [hold.eq(self.i.payload), held.eq(1), n.eq(0), last.eq(0)]

    def _banks(self, m, b, li, lo, lcm):
        """Two banks of ``lcm`` lanes in turn: input words written into their slot of the bank
        being filled, output words read as a multiplexer of (bank, part). Both handshakes are
        registers set from the banks' next ``full`` flags (as the engine's input buffer), so the
        consumer's ``ready`` reaches the read side's counters only, and no slot's clock enable
        waits on it (a gather into a register and a shifting scatter from it, each stage's
        ``ready`` into the other's enables: TFC's ECP5 path, 7.8 ns, 6.6 of them routing)."""
        kin, kout = lcm // li, lcm // lo
        banks = [[Signal(li * b, name=f"bank{k}_{s}", reset_less=True) for s in range(kin)] for k in range(2)]
        full, full_nx, set_full, clr_full = Signal(2), Signal(2), Signal(2), Signal(2)
        wb, rb = Signal(), Signal()
        wsel = Signal(kin, init=1)                          # the slot written next, one-hot
        rp, rp_last = Signal(range(kout)), Signal()
        # i.ready: :func:`ready_copies`, the port's driving the slots' enables spread over the banks;
        # a slot is written whenever the port is ready, the producer's word or not: the slot is
        # the next one of the bank being filled (not full, so not read), and it is written again
        # with the word that advances ``wsel``. The producer's ``valid`` reaches the write side's
        # state only, not every slot's enable (TFC's ECP5 path, the edge FIFO's ``o.valid`` ->
        # the converter's ``i_rdy``, 4 levels, 4.0-5.3 ns of routing: a net to the enables)
        rdy_nx = Signal()
        i_rdy, i_rdy_own = ready_copies(m, "i_rdy", rdy_nx)
        # o.valid likewise: the port's copy to the consumer, the other for the read side's state
        vld_nx = Signal()
        o_vld, o_vld_own = ready_copies(m, "o_vld", vld_nx, init=0)
        m.d.comb += [self.i.ready.eq(i_rdy), self.o.valid.eq(o_vld)]
        put = self.i.valid & i_rdy_own
        take = o_vld_own & self.o.ready
        for k in range(2):
            for sl in range(kin):
                with m.If(i_rdy & wsel[sl] & (wb == k)):
                    m.d.sync += banks[k][sl].eq(self.i.payload)
        # (kin, kout >= 2: a ratio of whole words is a gather or a scatter)
        words = [Cat(*bank).word_select(rp, lo * b) for bank in banks]
        m.d.comb += self.o.payload.eq(Mux(rb, words[1], words[0]))
        w_end, r_end = put & wsel[kin - 1], take & rp_last
        with m.If(put):
            m.d.sync += wsel.eq(wsel.rotate_left(1))
        with m.If(w_end):
            m.d.sync += wb.eq(~wb)
            m.d.comb += set_full.eq(Mux(wb, 0b10, 0b01))
        with m.If(take):
            m.d.sync += [rp.eq(Mux(rp_last, 0, rp + 1)), rp_last.eq(~rp_last & (rp == kout - 2))]
        with m.If(r_end):
            m.d.sync += rb.eq(~rb)
            m.d.comb += clr_full.eq(Mux(rb, 0b10, 0b01))
        m.d.comb += full_nx.eq((full | set_full) & ~clr_full)
        # the next i.ready for both outcomes of this cycle's write, then chosen by w_end: the
        # producer's valid reaches the register through two LUTs (put, the choice), not through
        # the full flags' next state (TFC's ECP5 path: the edge FIFO's read -> put -> the write
        # slot -> set_full -> i.ready, 5 levels, 8.6 ns); likewise o.valid by r_end
        clr_wb, clr_nb = r_end & (rb == wb), r_end & (rb != wb)
        rdy_stay = ~(full.bit_select(wb, 1) & ~clr_wb)       # no bank ends: the same bank next
        rdy_next = ~(full.bit_select(~wb, 1) & ~clr_nb)      # this word ends the bank: the other
        set_rb, set_nb = w_end & (wb == rb), w_end & (wb != rb)
        vld_stay = full.bit_select(rb, 1) | set_rb
        vld_next = full.bit_select(~rb, 1) | set_nb
        m.d.comb += rdy_nx.eq(Mux(w_end, rdy_next, rdy_stay))
        m.d.comb += vld_nx.eq(Mux(r_end, vld_next, vld_stay))
        m.d.sync += full.eq(full_nx)

    def _general(self, m, b, li, lo):
        cap = li + lo
        buf = Signal(cap * b)
        count = Signal(range(cap + 1))
        m.d.comb += [self.o.valid.eq(count >= lo), self.o.payload.eq(buf[:lo * b]),
                     self.i.ready.eq(count <= cap - li)]
        out_fire = self.o.valid & self.o.ready
        in_fire = self.i.valid & self.i.ready
        kept = Signal(cap * b)
        left = Signal(range(cap + 1))
        m.d.comb += [kept.eq(Mux(out_fire, buf >> (lo * b), buf)), left.eq(Mux(out_fire, count - lo, count))]
        with m.If(in_fire):
            m.d.sync += [buf.eq(kept | (self.i.payload << (left * b))), count.eq(left + li)]
        with m.Else():
            m.d.sync += [buf.eq(kept), count.eq(left)]


def window_cycles(h: int, w: int, c_words: int, k: int, stride: int, pads) -> int:
    """Output words of one frame of :class:`SlidingWindow` (its cycles per frame at full rate)."""
    t, bm, l, r = pads
    return window_out(h, t, bm, k, stride) * window_out(w, l, r, k, stride) * k * k * c_words


def window_rows(kernel: int, stride: int) -> int:
    """Rows of a :class:`SlidingWindow`'s circular line buffer: ``2K + s - 1``.

    The last output row of a frame reads rows from ``H + b - K - s + 1`` on (``b``: bottom
    padding); the first output row of the next frame needs rows ``0 .. K-1-t``. With
    ``2K + s - 1`` rows the producer can write all of those while the reader finishes the
    frame, so a slow consumer never waits at a frame boundary for rows a faster producer
    could have delivered (with ``K + s`` rows, CNV-W2A2 lost 6 % of its frame rate there).
    """
    return 2 * kernel + stride - 1


def window_need(height: int, width: int, c_words: int, kernel: int, stride: int, pads) -> np.ndarray:
    """``need[p]``: input words a :class:`SlidingWindow` (and every block built on it: MVTU
    conv, pools) must have received before it emits output pixel ``p`` (raster order): the
    window waits for whole rows, up to row ``min(oy*s - t + K - 1, H - 1)``, so
    ``need[p] = min(oy*s - t + K, H) * W * CW`` (sizes bypass FIFOs: hw/graph_blocks.py)."""
    t, b, l, r = pads
    oy = np.repeat(np.arange(window_out(height, t, b, kernel, stride)), window_out(width, l, r, kernel, stride))
    rows = np.clip(oy * stride - t + kernel, 1, height)
    return rows * width * c_words


#: Words of a :class:`SlidingWindow`'s output FIFO, its credits: a credit's round trip (the issue,
#: the read address register, the block RAM read, its register, into the FIFO, offered, taken,
#: returned: ``6 +`` :data:`CREDIT_RETURN` cycles), so that a consumer always ready sees a word
#: every cycle (with one fewer, a gap every few words: tests/hw/test_stream_blocks.py).
WINDOW_CREDITS = 6 + CREDIT_RETURN


class SlidingWindow(wiring.Component):
    """Line-buffered K x K sliding window with stride and padding.

    Parameters: ``channels`` C, ``height``/``width`` H/W, ``kernel`` K, ``stride`` s,
    ``pads`` (top, bottom, left, right), ``bits`` per element, ``lanes`` (divides C),
    ``pad_code`` inserted for out-of-bounds positions (``pad_codes``: one per channel
    instead, each ``bits + out_shift`` wide), ``out_shift``: every in-bounds element leaves
    shifted left by that many bits (zero low bits: fractional planes below an input code, so
    the line buffer keeps ``bits``-bit elements), ``pad_mode``: ``'constant'``
    (default: ``pad_code``) or a mirror mode, ``'reflect'`` (row ``-1`` reads row ``1``) or
    ``'symmetric'`` (row ``-1`` reads row ``0``); a mirrored position reads the line buffer
    (``pad`` stays 0), which needs :func:`mirror_fits` (``2*max(t, b) <= K-1`` for reflect,
    ``<= K`` for symmetric, so every mirrored row lies among the rows the window holds).

    Ports
    -----
    ``i``: In(stream of ``lanes*bits``): the input feature map in HWC order, ``C/lanes``
        words per pixel, frames back to back.
    ``o``: Out(stream of ``{data: lanes*(bits+out_shift), pad: 1}``): for each output pixel
        (raster order), each kernel position (kh, kw) (raster order), each channel chunk: one
        word; ``pad`` marks words that lie in the padding (``data`` is then ``pad_code`` in
        every lane, or the chunk's channels' ``pad_codes``). So element ``(kh*K + kw)*C + c``
        of an output pixel's window is the MVTU's column of that index.

    Memory: :func:`window_rows` input rows (circular), ``W*C/lanes`` words each, addressed by
    registers advanced by adds (write address +1 around the ring; read address = a row base
    register + a column register stepping by 1 through a kernel row), no multiplier in front of
    the block RAM. Throughput: one output word per cycle when the
    rows it needs have arrived (:func:`window_cycles` per frame); input is accepted while a
    row slot is free. Both tests are registers (``i.ready``: a slot the reader frees is offered a
    cycle later; the reader's "rows available": a row the writer completes is seen a cycle
    later), so neither side's handshake waits on the other's counters. Latency: the first
    output word follows the last input word it needs by 6 cycles (the row test, the read
    address register, the block RAM read, then a register with no reset: nothing but a
    register follows the memory, and on ECP5 it becomes the block RAM's output register,
    ``synth.ecp5_outreg``; then an output FIFO). Both memory ports are driven by registers:
    the read address, and the write's address, data and enable (a word is written a cycle after
    it is taken, before the reader can issue for its row).
    Backpressure on ``o``: the reader issues a word only while the output FIFO has a word free
    for it (:data:`WINDOW_CREDITS`, counting the words in flight), so its pipeline never stops
    and nothing is lost; the write side keeps filling free slots.
    """

    def __init__(self, channels, height, width, kernel, stride, pads, bits, lanes, pad_code=0,
                 pad_mode="constant", pad_codes=(), out_shift=0):
        if channels % lanes:
            raise ValueError(f"lanes={lanes} must divide channels={channels}")
        self.out_shift, self.pad_codes = int(out_shift), tuple(int(v) for v in pad_codes)
        if self.pad_codes and (len(self.pad_codes) != channels or pad_mode != "constant"
                               or not all(0 <= v < (1 << (bits + self.out_shift)) for v in self.pad_codes)):
            raise ValueError(f"pad_codes must be {channels} codes of {bits + self.out_shift} bits (constant padding)")
        if pad_mode != "constant" and not mirror_fits(kernel, pads, height, width, pad_mode):
            raise ValueError(f"{pad_mode} padding {tuple(pads)} does not fit a {kernel}x{kernel} window on "
                             f"{height}x{width} (needs 2*max(top, bottom) <= K-1 for reflect, <= K for "
                             f"symmetric, left/right within the row)")
        self.pad_mode = pad_mode
        self.C, self.H, self.W, self.K, self.s = channels, height, width, kernel, stride
        self.pads, self.bits, self.lanes, self.pad_code = tuple(pads), bits, lanes, pad_code
        t, bm, l, r = self.pads
        self.OH = window_out(height, t, bm, kernel, stride)
        self.OW = window_out(width, l, r, kernel, stride)
        if self.OH < 1 or self.OW < 1:
            raise ValueError("kernel does not fit the padded input")
        self.CW = channels // lanes
        self.RB = window_rows(kernel, stride)
        ob = bits + self.out_shift
        super().__init__({"i": In(stream.Signature(lanes * bits)),
                          "o": Out(stream.Signature(data.StructLayout({"data": lanes * ob, "pad": 1})))})

    def elaborate(self, platform):
        m = Module()
        H, W, K, s, CW, RB = self.H, self.W, self.K, self.s, self.CW, self.RB
        t, _, l, _ = self.pads
        WC = W * CW                                     # words per row
        RING = RB * WC                                  # words in the circular line buffer
        m.submodules.mem = mem = block_memory(self.lanes * self.bits, max(2, RING))
        # Every memory address is a register advanced by adds (no multiplier in front of the
        # block RAM): the write address counts 0 .. RING-1 around the ring; the read address is
        # a row base (the slot of row y0 + kh, times WC) plus a column offset x*CW + ch that
        # steps by 1 through a kernel row (kw, ch) and jumps by s*CW per output column.

        def ring_add(a, k, n=None):
            """``(a + k) mod n`` (default ``RING``) for ``a`` < n and a constant ``k``: the wrap test
            compares ``a`` with a constant, beside the two adds (not after one of them)."""
            n = RING if n is None else n
            k %= n
            return Mux(a >= n - k, a + (k - n), a + k)

        # ---------------- writer: global row bookkeeping via (frame parity, row in frame)
        w_row, w_pos = Signal(range(H + 1)), Signal(range(max(WC, 2)))   # row in frame, word in row
        w_addr = Signal(range(max(RING, 2)))            # = slot * WC + w_pos
        # ---------------- reader state
        oy, ox = Signal(range(max(self.OH, 2))), Signal(range(max(self.OW, 2)))
        kh, kw, ch = Signal(range(max(K, 2))), Signal(range(max(K, 2))), Signal(range(max(CW, 2)))
        y0 = Signal(signed(ceil_log2(H + K + s + t + 2) + 2), init=-t)        # oy*s - t
        x0 = Signal(signed(ceil_log2(W + K + s + l + 2) + 2), init=-l)        # ox*s - l
        slot0 = (-t) % RB
        slot_y0 = Signal(range(max(RB, 2)), init=slot0)   # slot of row y0 (mod RB, also for y0 < 0)
        # slot of row -t of the reader's next frame (row 0 of a frame is H slots after the one
        # before), kept ahead so that a frame end loads registers (no add in that path)
        slot_nf = Signal(range(max(RB, 2)), init=(H - t) % RB)
        # the same slots as addresses (slot * WC), advanced by constant adds mod RING
        a_y0 = Signal(range(max(RING, 2)), init=slot0 * WC)
        a_nf = Signal(range(max(RING, 2)), init=(H - t) % RB * WC)
        a_row = Signal(range(max(RING, 2)), init=slot0 * WC)    # slot of row y0 + kh, times WC
        cw_bits = ceil_log2((W + K + s + l + 2) * CW + 1) + 2
        c_x0 = Signal(signed(cw_bits), init=-l * CW)    # x0 * CW
        c_x1 = Signal(signed(cw_bits), init=(s - l) * CW)   # (x0 + s) * CW: the next window's
        col = Signal(signed(cw_bits), init=-l * CW)     # (x0 + kw) * CW + ch

        # ahead: frames the writer is ahead of the reader (mod 4; w_next/r_next: the writer/the
        # reader moves on to its next frame this cycle), a register of its own, so no
        # subtraction of frame counters precedes the writer's and reader's tests
        ahead, w_next, r_next = Signal(2), Signal(), Signal()
        m.d.sync += ahead.eq(ahead + w_next - r_next)
        # the rows output row oy needs, lo_needed = max(y0, 0) .. min(y0 + K - 1, H - 1), are
        # registers set with y0: the last as hi_c, the first as the writer's limits lim =
        # lo_needed + RB (same frame) and lim_next = lo_needed + RB - H (the writer a frame ahead),
        # so the adds and clips stay off the paths from the rows to `issue` and to `i.ready`.
        # Their unclipped values (y0 + K - 1, y0 + RB, y0 + RB - H) are registers too, stepped by
        # s per output row, so a step is one add and a clip decided by comparing y0 with a constant.
        yw = y0.shape().width + 2
        regs = {}

        def clips(y_top: int, off, lo):
            """The register's step from output row top ``y_top`` (a constant) to ``y_top + s`` clips."""
            return int(y_top + s + off > H - 1) if lo is None else int(y_top + s + off < lo)
        # hi_nx: hi_c of the next output row (the reader's test for the row after a row end)
        for nm, off, lo in (("hi_c", K - 1, None), ("hi_nx", K - 1 + s, None), ("lim", RB, RB),
                            ("lim_next", RB - H, RB - H)):
            first = min(-t + off, H - 1) if lo is None else max(-t + off, lo)      # at y0 = -t
            regs[nm] = (Signal(signed(yw), name=nm, init=first), Signal(signed(yw), name=f"{nm}_u", init=-t + off),
                        off, lo, Signal(name=f"{nm}_clip", init=clips(-t, off, lo)))
        hi_c, lim, lim_next = (regs[nm][0] for nm in ("hi_c", "lim", "lim_next"))

        def rows_at(y0_now: int):
            """The assignments of the registers above for output row top ``y0_now`` (a constant)."""
            out = []
            for r, u, off, lo, clip in regs.values():
                val = y0_now + off
                out += [r.eq(min(val, H - 1) if lo is None else max(val, lo)), u.eq(val),
                        clip.eq(clips(y0_now, off, lo))]
            return out

        def rows_step():
            """The assignments for the next output row (``y0 + s``). Whether that step clips is a
            register (``clip``, set a step ahead by comparing ``y0`` with a constant), so the step
            is an add and a multiplexer, no compare before them."""
            out = []
            for r, u, off, lo, clip in regs.values():
                out += [r.eq(Mux(clip, H - 1 if lo is None else lo, u + s)), u.eq(u + s),
                        clip.eq((y0 > H - 1 - off - 2 * s) if lo is None else (y0 < lo - off - 2 * s))]
            return out

        # writer may write row w_row if that global row is < lo_needed + RB. i.ready is a register:
        # the test of the writer's state after this cycle against the reader's state of this
        # cycle. Only the writer's own row ends can make the test false; the reader's moves only
        # make it true (its limits grow, ahead falls), so a test one reader move late is safe and
        # at worst admits the next word a cycle later.
        def row_tests(row):
            """The writer's compares of ``row``: in the frame, below the limit of the reader's
            frame, below the limit when the writer is a frame ahead."""
            return [row < H, row < lim, row < lim_next]

        def can_write(tests, ahd):
            in_frame, below, below_next = tests
            return Mux(ahd == 0, in_frame & below, Mux(ahd == 1, below_next, ahd == 3))
        # the writer's next row (w_row + 1 around the frame) and its "last word of the row" and
        # "last row of the frame" flags are registers, so both tests compare registers only and
        # the write decides between them in one multiplexer before the ready register
        w_row_nx = Signal(range(H + 1), init=int(H > 1))
        pos_last, row_last = Signal(init=int(WC == 1)), Signal(init=int(H == 1))
        ready = Signal(init=1)
        m.d.comb += self.i.ready.eq(ready)
        wrote = self.i.valid & ready
        row_end = wrote & pos_last
        m.d.comb += w_next.eq(row_end & row_last)
        ahd_nx = (ahead + row_last)[:2]
        if WC > 2:
            # rows of three or more words: the test's parts registered from one snapshot (the
            # next row's three compares and the frames ahead), the test of them registered
            # again: two cycles old at the row end, when the writer's state is still the one
            # of the snapshot and the reader's at most two moves older (safe, as above)
            snap = [Signal(name=f"adv_{n}") for n in ("h", "lim", "limn")]
            ahd_s = Signal(2)
            m.d.sync += [*(r.eq(t) for r, t in zip(snap, row_tests(w_row_nx))), ahd_s.eq(ahd_nx)]
            adv_r = Signal()
            m.d.sync += adv_r.eq(can_write(snap, ahd_s))
            adv = adv_r
        elif WC > 1:
            # a row end is at least WC cycles after the one before, so the test for the next row
            # can be registered a cycle early: the writer's state is the same then, the reader's
            # one move older (safe, as above)
            adv_r = Signal()
            m.d.sync += adv_r.eq(can_write(row_tests(w_row_nx), ahd_nx))
            adv = adv_r
        else:
            adv = can_write(row_tests(w_row_nx), ahd_nx)
        # within a row, the test of the writer's row in three stages: its compares (`w_tests`),
        # the choice by the frames ahead (`stay_pre`), then `stay`, which takes the next row's
        # test at a row end (as `ready` does, so the compares of `w_row_nx` are not made twice)
        # and keeps its value for the two cycles after one (`keep`: `stay_pre` still tests the
        # old row then). Each stage is a compare or a few multiplexers before a register (the
        # demo's ECP5 path was a compare and both choices in one cycle); the tests are up to
        # four cycles old, the reader's state older only (safe, as above)
        # (initial values: row 0 of the first frame may be written, as in the reset state)
        w_tests = [Signal(name=f"w_{n}", init=v) for n, v in (("h", 1), ("lim", 1), ("limn", 0))]
        ahd_w = Signal(2)
        stay_pre, stay = Signal(init=1, name="stay_pre"), Signal(init=1, name="stay")
        ended, keep = Signal(name="ended"), Signal(name="keep")
        m.d.sync += [*(r.eq(t) for r, t in zip(w_tests, row_tests(w_row))), ahd_w.eq(ahead),
                     stay_pre.eq(can_write(w_tests, ahd_w)),
                     ended.eq(row_end), keep.eq(row_end | ended),
                     stay.eq(Mux(row_end, adv, Mux(keep, stay, stay_pre))),
                     ready.eq(Mux(row_end, adv, stay))]
        wp = mem.write_port()
        # the write registered before the block RAM (address, data, enable: a cycle later, so only a
        # route lies between registers and the memory's write pins; without it CNV-W1A1's ECP5 path
        # ran from block 4's window `ready` to a far DP16KD's write enable, 6.7 ns of routing). The
        # reader is not affected: it reads a row two cycles after the writer's row count shows it
        # complete (`avail` registered, then the read address), the word written a cycle after it
        # was taken; the writer's slot test only gets later.
        wa_r = Signal.like(w_addr, name="wr_addr", reset_less=True)
        wd_r = Signal.like(self.i.payload, name="wr_data", reset_less=True)
        we_r = Signal(name="wr_en")
        m.d.sync += [wa_r.eq(w_addr), wd_r.eq(self.i.payload), we_r.eq(wrote)]
        m.d.comb += [wp.addr.eq(wa_r), wp.data.eq(wd_r), wp.en.eq(we_r)]
        with m.If(wrote):
            m.d.sync += w_addr.eq(Mux(w_addr == RING - 1, 0, w_addr + 1))
            with m.If(pos_last):
                m.d.sync += [w_pos.eq(0), pos_last.eq(WC == 1), w_row.eq(w_row_nx),
                             w_row_nx.eq(Mux(w_row_nx == H - 1, 0, w_row_nx + 1)), row_last.eq(w_row_nx == H - 1)]
            with m.Else():
                m.d.sync += [w_pos.eq(w_pos + 1), pos_last.eq(w_pos == WC - 2)]

        # reader may emit output row oy when rows up to hi_c (y0 + K - 1 clipped to H - 1) are complete
        # ahead == 3: the reader finished its frame before the writer did (trailing rows unused).
        # avail is a register: the test of the reader's state after this cycle (the same row, the
        # next row or the next frame's first row: three tests of registers, one multiplexer)
        # against the writer's state of this cycle; the writer's moves only complete rows, so a
        # test one writer move late is safe and at worst issues a cycle later.
        def rows_in(ahd_is, hi):
            return ahd_is(1) | ahd_is(2) | (ahd_is(0) & (w_row > hi))
        hi_first = min(-t + K - 1, H - 1)
        avail = Signal()
        hi_nx = regs["hi_nx"][0]
        # three stages that never stop: the read address (v0), the block RAM's data (v1) and a
        # register after it, so nothing but the register follows the memory (its clock-to-out is
        # long on ECP5) and nothing but a register precedes it; then a
        # FIFO of WINDOW_CREDITS words. A word is issued only with a credit (`room`, a register:
        # words issued and not yet taken from the FIFO below its depth), so the consumer's
        # `ready` reaches the FIFO's read side and the credit count, not the reader's counters.
        m.submodules.out_fifo = q = StreamFIFO(self.lanes * (self.bits + self.out_shift) + 1, WINDOW_CREDITS)
        m.d.comb += [self.o.valid.eq(q.o.valid), self.o.payload.eq(q.o.payload), q.o.ready.eq(self.o.ready)]
        v1 = Signal()
        issue = Signal()
        m.d.comb += issue.eq(avail & credit_room(m, q, issue))
        # each reader counter's "at its last value" is a register stepped with it, so the
        # enables of the nested counters and address bases are ANDs of registers, not chains of
        # comparators (CNV-W1A1's ECP5 path ran from ch through five levels to a_base)
        ch_l, kw_l, kh_l, ox_l, oy_l = (Signal(name=f"{nm}_last", init=int(n == 1)) for nm, n in
                                        (("ch", CW), ("kw", K), ("kh", K), ("ox", self.OW), ("oy", self.OH)))

        # the ends of the nested loops as registers too (e_kw: the next issue ends a kernel row;
        # e_win: a window; e_row: an output row; e_frame: the frame), set from the flags' values
        # after this cycle, so each loop's enable is `issue` and one register
        n_ch, n_kw, n_kh, n_ox, n_oy = nested_lasts_after(issue, ((ch, ch_l, CW), (kw, kw_l, K), (kh, kh_l, K),
                                                                 (ox, ox_l, self.OW), (oy, oy_l, self.OH)))
        e_kw, e_win, e_row, e_frame = (Signal(name=f"end_{nm}", init=int(init)) for nm, init in (
            ("kw", CW == K == 1), ("win", CW == K == 1), ("row", CW == K == self.OW == 1),
            ("frame", CW == K == self.OW == self.OH == 1)))
        m.d.sync += [e_kw.eq(n_ch & n_kw), e_win.eq(n_ch & n_kw & n_kh), e_row.eq(n_ch & n_kw & n_kh & n_ox),
                     e_frame.eq(n_ch & n_kw & n_kh & n_ox & n_oy)]
        same = rows_in(lambda a: ahead == a, hi_c)
        t_first, t_next = rows_in(lambda a: ahead == (a + 1) % 4, hi_first), rows_in(lambda a: ahead == a, hi_nx)
        if self.OW * K * K * CW > 1:
            # rows of two or more issues: the three tests registered first (the compares of the
            # writer's row with the reader's limits and both choices in one cycle were the
            # demo's ECP5 path at one placement, 7.4 ns). At a row end the limits of this cycle
            # are those of the cycle before (the row before ended at least two cycles earlier);
            # in the cycle after one, `same` still tests the old row, so avail keeps the value
            # the row end gave it (a cycle late at worst: safe, as above)
            a_first, a_next, a_same = (Signal(name=f"avail_{nm}") for nm in ("first", "next", "same"))
            a_end = Signal(name="avail_end")
            m.d.sync += [a_first.eq(t_first), a_next.eq(t_next), a_same.eq(same), a_end.eq(issue & e_row),
                         avail.eq(Mux(issue & e_row, Mux(oy_l, a_first, a_next), Mux(a_end, avail, a_same)))]
        else:
            m.d.sync += avail.eq(Mux(issue & e_row, Mux(oy_l, t_first, t_next), same))

        y = Signal(signed(y0.shape().width))
        x = Signal(signed(x0.shape().width))
        m.d.comb += [y.eq(y0 + kh), x.eq(x0 + kw)]
        rp = mem.read_port()
        aw = len(rp.addr)
        # the read address a register of its own (the add of the row base and the column in
        # front of the block RAM's address was CNV-W1A1's ECP5 path: block 7's `col` -> a DP16KD
        # address, 6.7 ns of routing, CNV's block RAMs spread over the die)
        raddr = Signal(aw, name="rd_addr", reset_less=True)
        m.d.comb += rp.addr.eq(raddr)
        if self.pad_mode == "constant":
            # outside the map the address is don't-care (the word is replaced by pad_code)
            m.d.sync += raddr.eq((a_row + col)[:aw])
        else:
            c_r, a_r = self._mirror(m, x, y, col, ch, slot_y0, kh)
            m.d.sync += raddr.eq((a_r + c_r)[:aw])
        # the position registered with the address (y0r, x0r) and with the read (y1, x1), its
        # "outside the map" test registered with the read data (pad2): the adds and the compares
        # in separate stages
        v0 = Signal()
        m.d.sync += [v0.eq(issue), v1.eq(v0)]
        outside = Const(0)
        if self.pad_mode == "constant":
            y0r, x0r = Signal.like(y, reset_less=True), Signal.like(x, reset_less=True)
            y1, x1 = Signal.like(y, reset_less=True), Signal.like(x, reset_less=True)
            m.d.sync += [y0r.eq(y), x0r.eq(x), y1.eq(y0r), x1.eq(x0r)]
            outside = ~((y1 >= 0) & (y1 < H) & (x1 >= 0) & (x1 < W))
        ob, sh, B = self.bits + self.out_shift, self.out_shift, self.bits
        # the memory's data into a register of its own (no reset, no logic in front: on ECP5
        # synth.ecp5_outreg moves it into the block RAM's output register), the padding after it
        data2 = Signal.like(rp.data, reset_less=True)
        v2, pad2 = Signal(), Signal()
        m.d.sync += [v2.eq(v1), pad2.eq(outside), data2.eq(rp.data)]
        word = data2 if not sh else Cat(*[Cat(Const(0, sh), data2[j * B:(j + 1) * B]) for j in range(self.lanes)])
        if self.pad_codes:                  # the chunk's channels' codes: the chunk index three cycles late
            ch0, ch1, ch2 = (Signal.like(ch, reset_less=True) for _ in range(3))
            m.d.sync += [ch0.eq(ch), ch1.eq(ch0), ch2.eq(ch1)]
            words = [Cat(*[Const(self.pad_codes[k * self.lanes + j], ob) for j in range(self.lanes)])
                     for k in range(CW)]
            padword = Array(words)[ch2] if CW > 1 else words[0]
        else:
            padword = Cat(*[Const(self.pad_code, ob) for _ in range(self.lanes)])
        m.d.comb += [q.i.valid.eq(v2), q.i.payload.eq(Cat(Mux(pad2, padword, word), pad2))]

        # reader counters
        def mod_add(a, k):
            return ring_add(a, k, RB)

        # the loop ends tested one at a time, the widest first (e_frame implies e_row, e_row
        # e_win, e_win e_kw: they are set together), not nested: every enable is `issue` and
        # registers (nested, each end's enable was an AND chain after `issue`: five LUT levels
        # from the credit `room` to a_nf's enable, CNV-W1A1's ECP5 path in block 5's pool)
        with m.If(issue):
            m.d.sync += counter_step(ch, ch_l, CW)
            with m.If(ch_l):
                m.d.sync += counter_step(kw, kw_l, K)
            with m.If(e_kw):  # end of a kernel row
                m.d.sync += counter_step(kh, kh_l, K)
            with m.If(e_win):
                m.d.sync += counter_step(ox, ox_l, self.OW)
            with m.If(e_row):
                m.d.sync += counter_step(oy, oy_l, self.OH)
            # col: the next channel word, or at a kernel row's end (e_win, e_row imply it) a
            # column base from registers, chosen before the one add (`+ 1` unless at an end):
            # col -> a LUT -> the carry chain -> col (as a mux after `col + 1` and after
            # `c_x0 + s*CW`: 4 levels, 7.17 ns, CNV-W1A1's ECP5 path at one placement)
            base = Mux(e_row, -l * CW, Mux(e_win, c_x1, c_x0))
            m.d.sync += col.eq(Mux(e_kw, base, col) + ~e_kw)
            with m.If(e_frame):
                # next frame: row 0 of the next frame sits H slots further
                m.d.sync += rows_at(-t)
                m.d.comb += r_next.eq(1)
                m.d.sync += [slot_nf.eq(mod_add(slot_nf, H)), a_nf.eq(ring_add(a_nf, H * WC))]
            with m.Elif(e_row):
                m.d.sync += rows_step()
        # the address bases, each loaded by `issue` AND the one end register that covers all
        # the ends that change it (e_frame implies e_row, e_row e_win, e_win e_kw), the others
        # choosing the value: with them in the chain above, yosys made each clock enable the
        # OR of the ends after `issue`, three LUT levels (the demo's ECP5 path at one placement,
        # block 1's pool `avail` -> `a_row`, 5.0 ns of routing)
        a_y0_step = ring_add(a_y0, s * WC)    # the next output row's base (a_row and a_y0 load it)
        with m.If(issue & e_kw):      # the row of y0 + kh: a kernel row's end
            m.d.sync += a_row.eq(Mux(e_frame, a_nf, Mux(e_row, a_y0_step, Mux(e_win, a_y0, ring_add(a_row, WC)))))
        with m.If(issue & e_win):     # the window's column: a window's end
            m.d.sync += [x0.eq(Mux(e_row, -l, x0 + s)), c_x0.eq(Mux(e_row, -l * CW, c_x1)),
                         c_x1.eq(Mux(e_row, (s - l) * CW, c_x1 + s * CW))]
        with m.If(issue & e_row):     # the window's row: an output row's end
            m.d.sync += [y0.eq(Mux(e_frame, -t, y0 + s)), slot_y0.eq(Mux(e_frame, slot_nf, mod_add(slot_y0, s))),
                         a_y0.eq(Mux(e_frame, a_nf, a_y0_step))]
        return m

    def _mirror(self, m, x, y, col, ch, slot_y0, kh):
        """Column offset and row address of the mirrored position of ``(y, x)`` (mirror pad
        modes), without multipliers: ``col = x*CW + ch`` mirrors to ``xr*CW + ch`` =
        ``2*ch - col + const``; the mirrored row's slot picks its address from a table."""
        H, W, RB, CW = self.H, self.W, self.RB, self.CW
        sym = 1 if self.pad_mode == "symmetric" else 0
        c_r = Signal(range(max(W * CW, 2)))
        ch2 = ch << 1
        m.d.comb += c_r.eq(Mux(x < 0, ch2 - col - sym * CW,
                               Mux(x >= W, (2 * W - 2 + sym) * CW + ch2 - col, col)))
        # rows: the mirrored row lies (yr - y) rows from row y, whose slot is slot_y0 + kh
        dy = Signal(signed(y.shape().width + 2))
        m.d.comb += dy.eq(Mux(y < 0, -(y << 1) - sym, Mux(y >= H, 2 * H - 2 + sym - (y << 1), 0)))
        ssum = Signal(signed(ceil_log2(3 * RB + 2 * self.K + 4) + 2))
        m.d.comb += ssum.eq(slot_y0 + kh + dy)
        slot_r = Signal(range(max(RB, 2)))
        m.d.comb += slot_r.eq(Mux(ssum < 0, ssum + RB, Mux(ssum >= 2 * RB, ssum - 2 * RB,
                                                        Mux(ssum >= RB, ssum - RB, ssum))))
        a_r = Signal(range(max(RB * W * CW, 2)))
        m.d.comb += a_r.eq(Array([Const(k * W * CW, len(a_r)) for k in range(RB)])[slot_r])
        return c_r, a_r


def mirror_fits(kernel: int, pads, height: int, width: int, mode: str) -> bool:
    """Whether :class:`SlidingWindow` can mirror-pad: every mirrored row must be one the
    window holds anyway (``2*max(top, bottom) <= K-1`` reflect, ``<= K`` symmetric) and
    every mirrored column must exist (``max(left, right) <= W-1`` reflect, ``<= W``)."""
    t, b, l, r = pads
    lim = kernel - 1 if mode == "reflect" else kernel
    wl = width - 1 if mode == "reflect" else width
    hl = height - 1 if mode == "reflect" else height
    return 2 * max(t, b) <= lim and max(l, r) <= wl and max(t, b) <= hl


def pool_cycles(h: int, w: int, c_words: int, k: int, stride: int, pads) -> int:
    """Cycles per frame of :class:`Pool`: it consumes its window's words one per cycle."""
    return window_cycles(h, w, c_words, k, stride, pads)


class Pool(wiring.Component):
    """K x K max/min pooling with stride and padding, per-channel direction.

    Parameters: ``channels``, ``height``, ``width``, ``kernel``, ``stride``, ``pads``,
    ``bits``, ``lanes``, ``signed`` (elements are two's complement, e.g. accumulators),
    ``maximize`` (one bool per channel: True max-pool, False min-pool), ``pad_mode``
    (:class:`SlidingWindow`'s). Constant padding positions never win.

    Ports: ``i`` In(stream of ``lanes*bits``), ``o`` Out(stream of ``lanes*bits``), HWC order.
    Built from a :class:`SlidingWindow` and a reducer with one accumulator word per channel
    chunk. Throughput: one window word per cycle (:func:`pool_cycles`); latency 4 cycles
    after the last input word of a window; backpressure on ``o`` stalls the reducer and the window.
    """

    def __init__(self, channels, height, width, kernel, stride, pads, bits, lanes, signed=False, maximize=None,
                 pad_mode="constant"):
        self.win = SlidingWindow(channels, height, width, kernel, stride, pads, bits, lanes, pad_code=0,
                                 pad_mode=pad_mode)
        self.C, self.K, self.bits, self.lanes, self.signed = channels, kernel, bits, lanes, signed
        self.maximize = tuple(bool(v) for v in (maximize if maximize is not None else [True] * channels))
        if len(self.maximize) != channels:
            raise ValueError("maximize needs one flag per channel")
        self.OH, self.OW = self.win.OH, self.win.OW
        super().__init__({"i": In(stream.Signature(lanes * bits)), "o": Out(stream.Signature(lanes * bits))})

    def elaborate(self, platform):
        m = Module()
        m.submodules.win = win = self.win
        wiring.connect(m, wiring.flipped(self.i), win.i)
        b, L, K, CW = self.bits, self.lanes, self.K, self.win.CW
        shape = signed(b) if self.signed else b
        lo, hi = (-(1 << (b - 1)), (1 << (b - 1)) - 1) if self.signed else (0, (1 << b) - 1)
        # the chunks' accumulators in a ring shifted by one at every word: the current chunk's is
        # always ring[0] (no multiplexer by the chunk index: a word-ahead read of acc[ch] through
        # one was the demo's ECP5 path at one placement, `ch1` -> `cur`, 5 levels)
        ring = [Signal(L * b, name=f"acc{c}", reset_less=True) for c in range(CW)]
        pos = Signal(range(max(K * K, 2)))
        first = Signal(init=1)          # pos == 0: the window's first word
        last = Signal(init=K * K == 1)  # pos == K*K - 1
        ch = Signal(range(max(CW, 2)))
        advance = Signal()
        m.d.comb += [advance.eq(~self.o.valid | self.o.ready), win.o.ready.eq(advance)]
        fire = win.o.valid & advance
        d, pad = win.o.payload.data, win.o.payload.pad
        # the current chunk's directions a register read a word ahead (the chunk after ch)
        dirs = [sum(int(self.maximize[c * L + lane]) << lane for lane in range(L)) for c in range(CW)]
        cur = ring[0]
        if CW == 1:
            mxs = Const(dirs[0], L)
        else:
            ch1 = Signal(range(CW), init=1)  # the chunk after ch
            mxs = Signal(L, init=dirs[0], name="dirs")
            dtab = Array(Const(v, L) for v in dirs)
            with m.If(fire):
                m.d.sync += [mxs.eq(dtab[ch1]), ch1.eq(Mux(ch1 == CW - 1, 0, ch1 + 1))]
        new = []
        for lane in range(L):
            mx = mxs[lane]
            a = cur[lane * b:(lane + 1) * b].as_signed() if self.signed else cur[lane * b:(lane + 1) * b]
            x = d[lane * b:(lane + 1) * b].as_signed() if self.signed else d[lane * b:(lane + 1) * b]
            ident = Mux(mx, Const(lo, shape), Const(hi, shape))
            base = Mux(first, ident, a)
            best = Mux(mx, Mux(x > base, x, base), Mux(x < base, x, base))
            v = Signal(shape, name=f"red{lane}")
            m.d.comb += v.eq(Mux(pad, base, best))
            new.append(v)
        newword = Cat(*new)
        with m.If(fire):
            m.d.sync += [r.eq(nxt) for r, nxt in zip(ring, ring[1:] + [newword])]
            with m.If(ch == CW - 1):
                m.d.sync += [ch.eq(0), pos.eq(Mux(last, 0, pos + 1)), first.eq(last),
                             last.eq(Mux(last, K * K == 1, pos == K * K - 2))]
            with m.Else():
                m.d.sync += ch.eq(ch + 1)
        with m.If(advance):
            m.d.sync += self.o.valid.eq(fire & last)
            with m.If(fire & last):
                m.d.sync += self.o.payload.eq(newword)
        return m


class CodeLUT(wiring.Component):
    """Maps each lane's level index to a plane code through a constant table.

    Ports: ``i`` In(stream of ``lanes*in_bits``), ``o`` Out(stream of ``lanes*out_bits``).
    One register stage (latency 1), full rate; ``i.ready`` while the output register is
    empty or being read.
    """

    def __init__(self, table, in_bits: int, out_bits: int, lanes: int):
        self.table, self.in_bits, self.out_bits, self.lanes = tuple(int(v) for v in table), in_bits, out_bits, lanes
        super().__init__({"i": In(stream.Signature(lanes * in_bits)), "o": Out(stream.Signature(lanes * out_bits))})

    def elaborate(self, platform):
        m = Module()
        tab = Array([Const(v, self.out_bits) for v in self.table] +
                    [Const(0, self.out_bits)] * ((1 << self.in_bits) - len(self.table)))
        m.d.comb += self.i.ready.eq(~self.o.valid | self.o.ready)
        with m.If(self.i.ready):
            m.d.sync += [self.o.valid.eq(self.i.valid),
                         self.o.payload.eq(Cat(*[tab[self.i.payload[l * self.in_bits:(l + 1) * self.in_bits]]
                                                 for l in range(self.lanes)]))]
        return m
