"""The top's frame counters (hw.top.event_counter): +1 per step, 0 on clear, the wrap flag."""
import random

import pytest
from amaranth import Module, Signal
from amaranth.sim import Simulator

from bitplane.hw.top import event_counter


@pytest.mark.parametrize("width,start", [(4, 0), (32, 0xFFFF_FFF0)])
def test_event_counter_wraps_once_and_clear_wins(width, start):
    m = Module()
    count, step, clear, wrap = Signal(width, name="count"), Signal(), Signal(), Signal()
    m.d.comb += wrap.eq(event_counter(m, count, step, clear))
    rng = random.Random(width)
    seen = []

    async def bench(ctx):
        ctx.set(count, start)               # (a register of the design: the testbench may preset it)
        await ctx.tick()
        want = start
        for i in range(300):
            st, cl = rng.random() < 0.7, i > 40 and rng.random() < 0.05     # (the wrap first)
            ctx.set(step, st)
            ctx.set(clear, cl)
            await ctx.delay(1e-9)
            seen.append(ctx.get(wrap))
            assert ctx.get(wrap) == int(st and want == (1 << width) - 1), (want, st)
            await ctx.tick()
            want = 0 if cl else (want + st) % (1 << width)
            assert ctx.get(count) == want

    sim = Simulator(m)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert sum(seen) >= 1                   # the case under test happened
