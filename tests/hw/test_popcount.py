"""CompressorPopcount against a Python popcount (amaranth.sim)."""
import random

import pytest
from amaranth.sim import Simulator

from bitplane.hw.popcount import CompressorPopcount, popcount_latency


def _expect(kind, n, a, w):
    mask = (1 << n) - 1
    if kind == "ones":
        return bin(a).count("1")
    if kind == "and":
        return bin(a & w).count("1")
    return bin(~(a ^ w) & mask).count("1")


@pytest.mark.parametrize("kind,n,extra", [("xnor", 1, 0), ("xnor", 2, 0), ("xnor", 7, 1), ("xnor", 27, 0),
                                          ("xnor", 64, 2), ("and", 5, 0), ("and", 192, 0), ("ones", 1, 0),
                                          ("ones", 13, 0), ("ones", 100, 3)])
def test_counts_after_latency_cycles(kind, n, extra):
    """Random inputs, one per cycle: the count of item k comes out after exactly ``latency``
    cycles."""
    lat = popcount_latency(n, kind) + extra
    dut = CompressorPopcount(n, kind, latency=lat)
    rng = random.Random(n * 7 + extra)
    items = [(rng.getrandbits(n), rng.getrandbits(n)) for _ in range(60)]
    items += [((1 << n) - 1, (1 << n) - 1), (0, 0), ((1 << n) - 1, 0)]      # the extremes
    got = []

    async def bench(ctx):
        issued = []
        k = 0
        while len(got) < len(items):
            a, w = items[k] if k < len(items) else (rng.getrandbits(n), rng.getrandbits(n))
            ctx.set(dut.a, a)
            if kind != "ones":
                ctx.set(dut.w, w)
                ctx.set(dut.a_copy, a)
            await ctx.tick()
            issued.append(k)
            k += 1
            if len(issued) >= lat:             # item len(issued) - lat is out after `lat` edges
                got.append(ctx.get(dut.count))
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert got == [_expect(kind, n, a, w) for a, w in items]


def test_latency_grows_with_lanes_and_rejects_short_latency():
    assert popcount_latency(3, "xnor") == 2          # one level-0 group: no compressor level
    assert popcount_latency(1024, "xnor") > popcount_latency(64, "xnor") > popcount_latency(3, "xnor")
    with pytest.raises(ValueError, match="at least"):
        CompressorPopcount(64, "xnor", latency=popcount_latency(64, "xnor") - 1)
    with pytest.raises(ValueError, match="kind"):
        popcount_latency(8, "or")
