"""amaranth.sim drivers for ``lib.stream`` components: a source with random gaps and a sink with
random backpressure (seeded)."""
from __future__ import annotations

import random

from amaranth.sim import Simulator


def run_stream(dut, words, n_out, seed=0, gap=0.3, stall=0.3, field=None, limit=200000, setup=None):
    """Drive ``dut.i`` with words (random gaps), collect ``n_out`` words of ``dut.o``.

    ``setup``: an ``async def setup(ctx)`` the source awaits before its first word (e.g.
    memory writes through another port)."""
    rng = random.Random(seed)
    got, stamps = [], []

    async def source(ctx):
        if setup is not None:
            await setup(ctx)
        for w in words:
            while rng.random() < gap:
                await ctx.tick()
            ctx.set(dut.i.payload, w)
            ctx.set(dut.i.valid, 1)
            await ctx.tick().until(dut.i.ready)
            ctx.set(dut.i.valid, 0)

    async def sink(ctx):
        cyc = 0
        while len(got) < n_out:
            r = rng.random() >= stall
            ctx.set(dut.o.ready, r)
            _, _, valid, payload = await ctx.tick().sample(dut.o.valid, dut.o.payload)
            cyc += 1
            if cyc > limit:
                raise AssertionError(f"timeout: {len(got)} of {n_out} words")
            if r and valid:
                got.append(payload if field is None else getattr(payload, field))
                stamps.append(cyc)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(source)
    sim.add_testbench(sink)
    sim.run()
    return [int(g) for g in got], stamps
