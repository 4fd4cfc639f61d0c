"""The top's frame counters (hw.top.event_counter): +1 per step, 0 on clear, the wrap flag."""
import random

import pytest
from amaranth import ClockDomain, Module, ResetSignal, Signal
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


def test_port_reset_reaches_the_core_as_a_registered_reset():
    """The port's ``rst`` reaches the core like SOFT_RESET, through a register per part (the core
    is in a clock domain without a reset of its own: hw.top.Accelerator): its parts are still
    reset at the first clock edge after ``rst`` falls. ``s_axis_tready`` is low while ``rst`` is
    high (it was the input slice's reset value, 1: a beat offered then was taken and dropped) and
    high from the first cycle after it, whose beat the slice, out of reset at the next edge, takes."""
    from pathlib import Path
    from bitplane.gen.compile import build_top
    from bitplane.gen.golden import Golden
    from bitplane.gen.plan import plan
    from bitplane.gen.spec import load_network
    from bitplane.hw.top import Accelerator
    g = Golden(load_network(Path(__file__).parents[2] / "examples" / "tfc-w1a1.yaml"))
    tp, _, _ = build_top(g, plan(g.lowered, target_fps=1000), embed_weights=False)
    m = Module()
    m.domains.sync = ClockDomain()
    m.submodules.dut = dut = Accelerator(tp)
    rst = Signal(name="rst")
    m.d.comb += ResetSignal().eq(rst)
    seen = []

    async def bench(ctx):
        ctx.set(dut.s_axis_tvalid, 1)           # offered throughout
        for r in (1, 1, 1, 0, 0, 0):
            ctx.set(rst, r)
            await ctx.tick()
            seen.append(ctx.get(dut.s_axis_tready))

    sim = Simulator(m)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    # (sampled after each edge: the cycles with rst high not ready, the first cycle after it ready)
    assert seen == [0, 0, 0, 1, 1, 1], seen
