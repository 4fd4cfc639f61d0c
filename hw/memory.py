"""The memories of bitplane's blocks: :func:`block_memory`, and the ports of a run-time loadable
memory: :func:`loadable_ports`, or of one built as block-RAM tiles: :func:`block_tiles`, :func:`tiled_read`.

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

from amaranth import Array, Cat, Mux, Signal
from amaranth.lib.memory import Memory


#: Memories at most this deep are taken to be built in LUT RAM when their ``ram_style`` is
#: ``auto`` (the planner's and the engines' assumption; yosys chooses by cost on xc7 and ECP5).
LUTRAM_DEPTH = 64


def in_lut_ram(style: str, entries: int) -> bool:
    """A memory of ``entries`` words (more than one: one word is registers) with ``ram_style``
    ``style`` is built in LUT RAM: ``distributed``, or ``auto`` and at most :data:`LUTRAM_DEPTH` deep."""
    return entries > 1 and (style == "distributed" or (style == "auto" and entries <= LUTRAM_DEPTH))


def placed_style(entries: int) -> str:
    """The ``ram_style`` written on a memory whose placement the model decides (threshold and
    row-constant memories: :func:`in_lut_ram` with ``auto``), so that synthesis builds what the
    planner counted and the engine's read pipeline assumes: ``logic`` for one word (registers),
    ``distributed`` up to :data:`LUTRAM_DEPTH` words, ``block`` deeper. Left to yosys, CNV's
    64-word threshold memories went to ECP5 DP16KD, read without the early stage a block RAM
    gets, and their output route was CNV-W1A1's critical path."""
    return "logic" if entries <= 1 else "distributed" if in_lut_ram("auto", entries) else "block"


def block_memory(shape, depth: int, init=(), attrs=None) -> Memory:
    """An ``amaranth.lib.memory.Memory`` whose read/write collisions are don't-care (module
    docstring); ``attrs`` are added (e.g. ``ram_style``)."""
    return Memory(shape=shape, depth=depth, init=list(init), attrs={"no_rw_check": 1, **(attrs or {})})


#: The (width, depth) shapes of an 18-Kbit block RAM: ECP5 DP16KD (Lattice TN1264, incl. the
#: 36-bit pseudo-dual-port PDPW16KD) and Xilinx RAMB18 (UG473; a RAMB36 is two).
BLOCK_RAM_18K_SHAPES = ((36, 512), (18, 1024), (9, 2048), (4, 4096), (2, 8192), (1, 16384))


def splittable(entries: int) -> bool:
    """A memory of ``entries`` words can be split by columns between block RAM and LUT RAM
    (``hw.bitserial.EngineConfig.split_weights``): more than one word (one word is registers)
    and one block RAM deep (deeper ones are tiles: :func:`block_tiles`)."""
    return 1 < entries <= BLOCK_RAM_18K_SHAPES[0][1]


def block_tiles(width: int, depth: int) -> tuple[int, int]:
    """``(column width, bank depth)`` to build a ``width`` x ``depth`` block-RAM memory from, each
    tile one 18-Kbit block RAM: the shape taking the fewest block RAMs, of those the fewest banks
    in depth (``(width, depth)`` itself, one tile, at most 512 words deep). Built so (rather than
    left to yosys, which cascades in depth behind a read multiplexer), every tile's read data can
    go straight into a register, the block RAM's own output register on ECP5 (the DP16KD's
    clock-to-out is 5.8 ns without it): a 4-bit, 31,360-word memory is four 1-bit columns in two
    16,384-word banks."""
    if depth <= BLOCK_RAM_18K_SHAPES[0][1]:
        return width, depth
    cost = {(sw, sd): -(-width // sw) * -(-depth // sd) for sw, sd in BLOCK_RAM_18K_SHAPES}
    sw, sd = min(cost, key=lambda k: (cost[k], -(-depth // k[1]), -k[0]))
    return min(sw, width), min(sd, depth)


#: Registers between the address given to :func:`tiled_read` and the read data it returns.
TILED_READ_LATENCY = 4


def tiled_read(m, tiles, wr, addr, bank_depth: int, columns):
    """Write and read ports of a memory built as ``tiles[bank][column]`` (:func:`block_tiles`),
    fed by the stream ``wr`` (``{addr, data}``) and read at ``addr`` every cycle; returns
    the read data, four registers after the address (:data:`TILED_READ_LATENCY`): the address
    registered once per tile (a kept copy each, placed near its tile), each bank's read data
    registered as it is (the block RAM's own output register on ECP5:
    :mod:`bitplane.synth.ecp5_outreg`) and again in the fabric, then the bank selected by the
    address's high bits (registered four times). A write reaches the tiles one cycle
    after ``wr`` offers it: the address and data registered once more, and every tile's write
    enable (its bank's address test) a register of its own, kept apart in synthesis (``keep``:
    :data:`bitplane.synth.flow.KEEP_REGISTERS`).

    A deep memory's tiles lie all over the device (CNV-W1A1's on ECP5: 134 of 208 block RAMs
    in use): with the write enables decoded at the tiles from one ``valid``, and then with a
    far tile's output register straight into the bank multiplexer, those were CNV-W1A1's
    critical paths on ECP5 (9.62 ns, 8.49 of them routing; 10.22 ns, 7.09 of them one net); with
    one read address register for all tiles, its net to a far tile (CNV-W1A1's block 7: 0 levels,
    7.04 ns of one net)."""
    lb = max(0, (bank_depth - 1).bit_length()) if len(tiles) > 1 else None
    wa = Signal.like(wr.payload.addr, name="tiles_wr_addr", reset_less=True)
    wd = Signal.like(wr.payload.data, name="tiles_wr_data", reset_less=True)
    m.d.sync += [wa.eq(wr.payload.addr), wd.eq(wr.payload.data)]
    banks = []
    for b, row in enumerate(tiles):
        parts = []
        for k, (mem, (lo, hi)) in enumerate(zip(row, columns)):
            wp, rp = mem.write_port(), mem.read_port()
            we = Signal(name=f"tile_b{b}_c{k}_we", attrs={"keep": 1})
            ra = Signal.like(rp.addr, name=f"tile_b{b}_c{k}_ra", attrs={"keep": 1})
            m.d.sync += [we.eq(wr.valid if lb is None else wr.valid & (wr.payload.addr[lb:] == b)),
                         ra.eq(addr)]
            m.d.comb += [wp.addr.eq(wa), wp.data.eq(wd[lo:hi]), wp.en.eq(we), rp.addr.eq(ra)]
            parts.append(rp.data)
        q = Signal(columns[-1][1], name=f"bank{b}_q", reset_less=True)
        q2 = Signal(columns[-1][1], name=f"bank{b}_q2", reset_less=True)
        m.d.sync += [q.eq(Cat(*parts)), q2.eq(q)]
        banks.append(q2)
    if lb is None:
        return banks[0]
    sel = [Signal(range(len(tiles)), name=f"bank_sel{k}") for k in range(1, TILED_READ_LATENCY + 1)]
    m.d.sync += [sel[0].eq(addr[lb:]), *(b.eq(a) for a, b in zip(sel, sel[1:]))]
    return Array(banks)[sel[-1]]


def loadable_ports(m, mem: Memory, wr, addr, shared: bool = False):
    """Write port of ``mem`` fed by the stream ``wr`` (``{addr, data}``, always ready) and a read
    port at ``addr``, read every cycle; returns the read port.

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
    m.d.comb += [wp.addr.eq(wa), wp.data.eq(wr.payload.data), wp.en.eq(wr.valid), rp.addr.eq(ra)]
    return rp
