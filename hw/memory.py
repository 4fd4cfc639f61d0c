"""The memories of bitplane's blocks: :func:`block_memory`.

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

from amaranth.lib.memory import Memory


def block_memory(shape, depth: int, init=(), attrs=None) -> Memory:
    """An ``amaranth.lib.memory.Memory`` whose read/write collisions are don't-care (module
    docstring); ``attrs`` are added (e.g. ``ram_style``)."""
    return Memory(shape=shape, depth=depth, init=list(init), attrs={"no_rw_check": 1, **(attrs or {})})
