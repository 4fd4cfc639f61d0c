"""The memories of bitplane's blocks: :func:`block_memory`, and the ports of a run-time loadable
memory: :func:`loadable_ports`.

Every memory of a block is written and read at different addresses in any one cycle (a sliding
window's line buffer writes a row slot no output row needs; the MVTU's activation buffer
writes the bank it is not reading; weight, threshold and constant memories are written while
the host loads them, not while frames use them), so what a read returns when it meets a write to
the same address is never used. ``no_rw_check`` says so to yosys: without it yosys keeps a
non-transparent read's old-data result on a collision with a copy of the write data and
address and a multiplexer after the block RAM (on ECP5's DP16KD, whose pseudo-dual-port mode
leaves collisions undefined: a test memory of five ports took 164 LUT4 and 331 FFs instead of 7
and 90), and the multiplexer stands between the block RAM and the register after it, which
then cannot become the block RAM's output register (:mod:`bitplane.synth.ecp5_outreg`).
"""
from __future__ import annotations

from amaranth import Mux, Signal
from amaranth.lib.memory import Memory


#: Memories at most this deep are taken to be built in LUT RAM when their ``ram_style`` is
#: ``auto`` (the planner's and the engines' assumption; yosys chooses by cost on xc7 and ECP5).
LUTRAM_DEPTH = 64


def in_lut_ram(style: str, entries: int) -> bool:
    """A memory of ``entries`` words (more than one: one word is registers) with ``ram_style``
    ``style`` is built in LUT RAM: ``distributed``, or ``auto`` and at most :data:`LUTRAM_DEPTH` deep."""
    return entries > 1 and (style == "distributed" or (style == "auto" and entries <= LUTRAM_DEPTH))


def block_memory(shape, depth: int, init=(), attrs=None) -> Memory:
    """An ``amaranth.lib.memory.Memory`` whose read/write collisions are don't-care (module
    docstring); ``attrs`` are added (e.g. ``ram_style``)."""
    return Memory(shape=shape, depth=depth, init=list(init), attrs={"no_rw_check": 1, **(attrs or {})})


def loadable_ports(m, mem: Memory, wr, addr, en, shared: bool = False):
    """Write port of ``mem`` fed by the stream ``wr`` (``{addr, data}``, always ready) and a read
    port at ``addr`` with enable ``en``; returns the read port.

    ``shared``: both ports use one address, the write's while ``wr`` offers an entry, else
    ``addr``. Yosys maps such a memory, as Xilinx distributed RAM, to single-port primitives
    (RAM64X1S .. RAM256X1S: 1 LUT6 per 64 bits of one column, 4 per 256) instead of the
    simple-dual-port RAM64M (4 LUT6 per three 64-bit columns, and read multiplexers beyond 64
    entries): 27 % fewer LUT6 at 64 entries, 35 % at 256 (bench/REPORT.md). A read in a cycle
    that writes returns the written entry's word; the loadable memories are written only
    while no frame reads them (module docstring). ECP5's LUT RAM (TRELLIS_DPR16X4) has separate
    ports anyway, so there a shared address would only add a multiplexer level."""
    wp = mem.write_port()
    rp = mem.read_port()
    wa, ra = wr.payload.addr, addr
    if shared:
        wa = ra = Signal(range(mem.depth))
        m.d.comb += wa.eq(Mux(wr.valid, wr.payload.addr, addr))
    m.d.comb += [wp.addr.eq(wa), wp.data.eq(wr.payload.data), wp.en.eq(wr.valid), rp.addr.eq(ra), rp.en.eq(en)]
    return rp
