"""Pipelined popcount as a tree of 6-input-LUT compressors (for FPGAs with 6-input LUTs).

The bit-serial engine counts, per PE and cycle, how many of ``N`` lanes match (XNOR of a
weight and an activation bit on the +-1 path, AND otherwise), and how many activation bits
are set (``S_a``). As a balanced adder tree that costs about 2 LUT6 per lane in yosys
``synth_xilinx`` whatever its shape (measured in issue #17: adder trees of 8-lane chunks (now 4),
kept 6:3 counters without registers): ABC maps across the tree and shares each lane's XNOR
between several LUTs. :class:`CompressorPopcount` builds it so that every LUT has at most six
inputs that are register outputs and exactly one output that a register takes:

* level 0, for ``xnor``/``and``: each group of 3 lanes (6 inputs: ``a`` and ``w`` bits) gives
  its count's bit 0 from ``a`` and its bit 1 from ``a_copy``, a second register holding the
  same activation bits (``a`` and ``a_copy`` are different signals, so no XNOR can be shared
  between the two LUTs); for ``ones`` (a popcount of ``a`` alone) each group of 6 bits gives a
  3-bit count (a 6:3 counter);
* levels 1...: per bit weight (column), from the lowest, carry-chain compressors of up to 7
  bits of a column, each taking one bit of each of the next two columns too while both hold 3
  or more (:func:`_compress`): 3 LUT6 and a CARRY4 for 9 bits -> 4 (a 6:3 LUT counter takes 3
  LUT6 for 6 -> 3); fewer than 3 bits passed on; each level registered, until no column holds
  more than 2 bits;
* last: the two rows added (a carry chain) into ``count``.

About 1.26-1.28 LUT6 per lane for 27-1,024 lanes (1.35-1.4 with 6:3 LUT counters, 2.1 as an
adder tree), for about one more flip-flop per lane. On 4-input-LUT devices (ECP5) a 6-input
function costs several LUT4s and the adder tree is smaller: the engine uses this only when
compiled for a 6-input-LUT device (``EngineConfig.popcount``).
"""
from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

KINDS = ("xnor", "and", "ones")


def _count_table(n_inputs: int, bit: int, pairs: bool, kind: str) -> int:
    """Truth table (bit ``v`` = output for input word ``v``) of bit ``bit`` of a count: of the
    set bits of ``v`` (``pairs`` False), or of the matching (a, w) pairs, a at even positions."""
    def count(v):
        if not pairs:
            return bin(v).count("1")
        n = 0
        for t in range(n_inputs // 2):
            a, w = (v >> (2 * t)) & 1, (v >> (2 * t + 1)) & 1
            n += (a == w) if kind == "xnor" else (a & w)
        return n
    return sum(((count(v) >> bit) & 1) << v for v in range(1 << n_inputs))


def _lut(inputs: list, table: int):
    """One LUT: bit ``Cat(inputs)`` of the constant ``table``."""
    return Const(table, 1 << len(inputs)).bit_select(Cat(*inputs), 1)


def _level0(n: int, kind: str, counter) -> dict[int, list]:
    """Level 0 as a heap ``{bit weight: [outputs]}``: lanes in groups of 3 (``a``/``w`` pairs) or
    6 (``ones``); ``counter(lanes, bit)`` makes output bit ``bit`` of a group's count."""
    g = 6 if kind == "ones" else 3
    heap: dict[int, list] = {}
    for lo in range(0, n, g):
        lanes = range(lo, min(n, lo + g))
        for b in range(len(lanes).bit_length()):
            heap.setdefault(b, []).append(counter(lanes, b))
    return heap


#: Bits of one column a compressor of :func:`_compress` takes: ``X`` counts up to 5 of them
#: (each of its bits a 5-input function), a 6th is ``Y``'s bit 0 and a 7th the carry-in.
GPC_BITS = 7


def _compress(heap: dict[int, list], gpc, carry) -> dict[int, list]:
    """One compressor level (module docstring): per column, from the lowest, groups of up to
    :data:`GPC_BITS` of its bits (at least 3) through a carry-chain compressor, each taking
    one bit of each of the next two columns too while both of those still hold 3 bits or more
    (they are compressed anyway, and 7 + 2 + 4 -> 4 bits removes one bit more than 7 -> 3 for
    the same three LUTs); ``gpc(col_bits, next1, next2)`` returns the output bits from the
    column up. Fewer than 3 bits are passed on (``carry(x)``)."""
    heap = {k: list(v) for k, v in heap.items()}
    new: dict[int, list] = {}
    for col in range(min(heap), max(heap) + 1):
        bits = heap.get(col, [])
        while len(bits) >= 3:
            g = bits[:GPC_BITS]
            del bits[:GPC_BITS]
            y1 = y2 = None
            if len(heap.get(col + 1, [])) >= 3 and len(heap.get(col + 2, [])) >= 3:
                y1, y2 = heap[col + 1].pop(), heap[col + 2].pop()
            for b, x in enumerate(gpc(g, y1, y2)):
                new.setdefault(col + b, []).append(x)
        new.setdefault(col, []).extend(carry(x) for x in bits)
    return {k: v for k, v in new.items() if v}


def gpc_width(n0: int, y1: bool, y2: bool) -> int:
    """Output bits of a compressor of ``n0`` column bits and optional bits of the next two columns."""
    return (n0 + 2 * y1 + 4 * y2).bit_length()


def popcount_latency(n: int, kind: str) -> int:
    """Cycles (enabled ones) from ``a``/``w`` to ``count`` of the shortest
    :class:`CompressorPopcount` for ``n`` lanes: level 0, the compressor levels, the final add."""
    if kind not in KINDS:
        raise ValueError(f"popcount kind must be one of {KINDS}, got {kind!r}")
    if n < 1:
        raise ValueError("a popcount needs at least one lane")
    bit = object()                      # the same schedule, placeholders for the bits (no logic)
    heap, levels = _level0(n, kind, lambda lanes, b: bit), 0
    while max(len(v) for v in heap.values()) > 2:
        heap = _compress(heap, lambda g, y1, y2: [bit] * gpc_width(len(g), y1 is not None, y2 is not None),
                         lambda x: bit)
        levels += 1
    return 2 + levels


class CompressorPopcount(wiring.Component):
    """Popcount of ``n`` lanes through registered 6-input-LUT compressors (module docstring).

    Ports:
    ``a``: In(n)        activation bits
    ``a_copy``: In(n)   the same bits from a register of their own (``xnor``/``and`` only; a
                        flip-flop yosys cannot merge with ``a``'s, e.g. another reset value)
    ``w``: In(n)        weight bits (``xnor``/``and`` only)
    ``count``: Out(range(n + 1))   the count of matching lanes (``xnor``: a == w; ``and``:
                        a & w; ``ones``: a)

    Latency: ``latency`` cycles (default and minimum :func:`popcount_latency`; more adds plain
    registers at the end, to line up with another tree). Throughput one count per cycle; no
    enable and no backpressure: every register moves at every clock (the engine's pipeline
    never stops, :class:`~bitplane.hw.bitserial.BitSerialMVTU`).
    """

    def __init__(self, n: int, kind: str, latency: int | None = None):
        self.n, self.kind = n, kind
        self.min_latency = popcount_latency(n, kind)
        self.latency = self.min_latency if latency is None else latency
        if self.latency < self.min_latency:
            self._MustUse__silence = True       # never elaborated: no "created but never used" warning
            raise ValueError(f"a {n}-lane {kind} popcount needs at least {self.min_latency} cycles, "
                             f"got {self.latency}")
        ports = {"a": In(n), "count": Out(range(n + 1))}
        if kind != "ones":
            ports.update(a_copy=In(n), w=In(n))
        super().__init__(ports)

    def elaborate(self, platform):
        m = Module()
        n, kind = self.n, self.kind
        serial = [0]

        # the stages' registers keep their reset (unlike the engine's other data registers):
        # bits that pass a level uncompressed are registers in a row, which yosys packs into
        # shift-register LUTs (SRL16E, a LUT6 site each) on the xc7 when they have no reset
        # (256 in CNV-W1A1's conv0); flip-flops cost no LUT
        def reg(expr, name):
            serial[0] += 1
            r = Signal(name=f"{name}{serial[0]}")
            m.d.sync += r.eq(expr)
            return r

        def first(lanes, b):
            if kind == "ones":
                return reg(_lut([self.a[l] for l in lanes], _count_table(len(lanes), b, False, kind)), "l0_")
            src = self.a if b == 0 else self.a_copy
            ins = [x for l in lanes for x in (src[l], self.w[l])]
            return reg(_lut(ins, _count_table(2 * len(lanes), b, True, kind)), "l0_")

        def gpc(g, y1, y2, tag):
            # X (the count of up to 5 column bits, each bit a 5-input function) + Y (a 6th column
            # bit, one bit of each of the next two columns) + the 7th column bit as carry-in: on
            # xc7 every sum bit's LUT takes X's bit's 5 inputs and Y's bit (6 inputs), Y goes
            # straight to the carry chain's DI and the carry-in to CYINIT (yosys infers this from
            # the add, Y the first operand): 3 LUT6 and a CARRY4 for 7 + 1 + 1 bits -> 4
            xs, rest = g[:5], g[5:]
            X = Cat(*[_lut(xs, _count_table(len(xs), b, False, "ones")) for b in range(len(xs).bit_length())])
            Y = Cat(rest[0] if rest else Const(0, 1), y1 if y1 is not None else Const(0, 1),
                    y2 if y2 is not None else Const(0, 1))
            ci = rest[1] if len(rest) > 1 else Const(0, 1)
            w = gpc_width(len(g), y1 is not None, y2 is not None)
            total = Signal(w, name=f"{tag}g{serial[0]}")
            m.d.comb += total.eq(Y + X + ci)
            return [reg(total[b], tag) for b in range(w)]

        heap, level = _level0(n, kind, first), 0
        while max(len(v) for v in heap.values()) > 2:
            level += 1
            tag = f"l{level}_"
            heap = _compress(heap, lambda g, y1, y2: gpc(g, y1, y2, tag), lambda x: reg(x, tag))
        rows = [0, 0]
        for col, bits in heap.items():
            for r, x in enumerate(bits):
                rows[r] = rows[r] | (x.as_unsigned() << col)
        total = Signal(range(n + 1), name="total")
        m.d.sync += total.eq(rows[0] + rows[1])
        for _ in range(self.latency - self.min_latency):
            nxt = Signal.like(total)
            m.d.sync += nxt.eq(total)
            total = nxt
        m.d.comb += self.count.eq(total)
        return m
