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
* levels 1...: per bit weight (column), groups of 6 bits through 6:3 counters, a remainder of
  3-5 bits through a 3:2 / 4:3 / 5:3 counter, fewer bits passed on; each level registered,
  until no column holds more than 2 bits;
* last: the two rows added (a carry chain) into ``count``.

About 1.35-1.4 LUT6 per lane for 192-1,024 XNOR lanes (2.1 as an adder tree), for about one
more flip-flop per lane. On 4-input-LUT devices (ECP5) a 6-input function costs several LUT4s
and the adder tree is smaller: the engine uses this only when compiled for a 6-input-LUT device
(``EngineConfig.popcount``).
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


def _compress(heap: dict[int, list], counter, carry) -> dict[int, list]:
    """One compressor level (module docstring): per column, groups of 6 bits through 6:3
    counters, a remainder of 3-5 through one counter, fewer bits passed on; ``counter(group,
    bit)`` makes output bit ``bit`` of a group's count, ``carry(x)`` passes ``x`` on."""
    new: dict[int, list] = {}
    for col in sorted(heap):
        bits = heap[col]
        full = len(bits) // 6 * 6
        groups = [bits[i:i + 6] for i in range(0, full, 6)]
        rest = bits[full:]
        if len(rest) >= 3:
            groups.append(rest)
            rest = []
        for g in groups:
            for b in range(len(g).bit_length()):
                new.setdefault(col + b, []).append(counter(g, b))
        new.setdefault(col, []).extend(carry(x) for x in rest)
    return {k: v for k, v in new.items() if v}


def popcount_latency(n: int, kind: str) -> int:
    """Cycles (enabled ones) from ``a``/``w`` to ``count`` of the shortest
    :class:`CompressorPopcount` for ``n`` lanes: level 0, the compressor levels, the final add."""
    if kind not in KINDS:
        raise ValueError(f"popcount kind must be one of {KINDS}, got {kind!r}")
    if n < 1:
        raise ValueError("a popcount needs at least one lane")
    heap, levels = _level0(n, kind, lambda lanes, b: None), 0      # the same schedule, no logic
    while max(len(v) for v in heap.values()) > 2:
        heap = _compress(heap, lambda g, b: None, lambda x: None)
        levels += 1
    return 2 + levels


class CompressorPopcount(wiring.Component):
    """Popcount of ``n`` lanes through registered 6-input-LUT compressors (module docstring).

    Ports:
    ``a``: In(n)        activation bits
    ``a_copy``: In(n)   the same bits from a register of their own (``xnor``/``and`` only; a
                        flip-flop yosys cannot merge with ``a``'s, e.g. another reset value)
    ``w``: In(n)        weight bits (``xnor``/``and`` only)
    ``en``: In(1)       every register of the tree moves only while ``en`` (the engine's
                        ``advance``): a stall holds all stages
    ``count``: Out(range(n + 1))   the count of matching lanes (``xnor``: a == w; ``and``:
                        a & w; ``ones``: a)

    Latency: ``latency`` enabled cycles (default and minimum :func:`popcount_latency`; more
    adds plain registers at the end, to line up with another tree). Throughput one count per
    enabled cycle; no backpressure of its own.
    """

    def __init__(self, n: int, kind: str, latency: int | None = None):
        self.n, self.kind = n, kind
        self.min_latency = popcount_latency(n, kind)
        self.latency = self.min_latency if latency is None else latency
        if self.latency < self.min_latency:
            self._MustUse__silence = True       # never elaborated: no "created but never used" warning
            raise ValueError(f"a {n}-lane {kind} popcount needs at least {self.min_latency} cycles, "
                             f"got {self.latency}")
        ports = {"a": In(n), "en": In(1), "count": Out(range(n + 1))}
        if kind != "ones":
            ports.update(a_copy=In(n), w=In(n))
        super().__init__(ports)

    def elaborate(self, platform):
        m = Module()
        n, kind = self.n, self.kind
        serial = [0]

        def reg(expr, name):
            serial[0] += 1
            r = Signal(name=f"{name}{serial[0]}")
            with m.If(self.en):
                m.d.sync += r.eq(expr)
            return r

        def first(lanes, b):
            if kind == "ones":
                return reg(_lut([self.a[l] for l in lanes], _count_table(len(lanes), b, False, kind)), "l0_")
            src = self.a if b == 0 else self.a_copy
            ins = [x for l in lanes for x in (src[l], self.w[l])]
            return reg(_lut(ins, _count_table(2 * len(lanes), b, True, kind)), "l0_")

        heap, level = _level0(n, kind, first), 0
        while max(len(v) for v in heap.values()) > 2:
            level += 1
            tag = f"l{level}_"
            heap = _compress(heap, lambda g, b: reg(_lut(g, _count_table(len(g), b, False, kind)), tag),
                             lambda x: reg(x, tag))
        rows = [0, 0]
        for col, bits in heap.items():
            for r, x in enumerate(bits):
                rows[r] = rows[r] | (x.as_unsigned() << col)
        total = Signal(range(n + 1), name="total")
        with m.If(self.en):
            m.d.sync += total.eq(rows[0] + rows[1])
        for _ in range(self.latency - self.min_latency):
            nxt = Signal.like(total)
            with m.If(self.en):
                m.d.sync += nxt.eq(total)
            total = nxt
        m.d.comb += self.count.eq(total)
        return m
