"""amaranth.sim drivers for ``lib.stream`` components: sources with random gaps and sinks with
random backpressure (seeded)."""
from __future__ import annotations

import random

from amaranth.hdl import Value
from amaranth.sim import Simulator


def run_ports(dut, sources: dict, sinks: dict, seed=0, gap=0.3, stall=0.3, limit=200000, setup=None, field=None):
    """Drive each In port ``dut.<name>`` of ``sources`` with its words (random gaps) and collect
    the given number of words from each Out port of ``sinks`` (random backpressure).

    ``setup``: an ``async def setup(ctx)`` run before the first word of any source (e.g. memory
    writes through another port); ``field``: collect this field of a structured payload.
    Returns ``({name: words}, {name: the sink cycle each word was taken})``; raises
    ``TimeoutError`` when a sink waits more than ``limit`` cycles in all (a deadlock).

    While a source's ``valid`` is low its payload is random (a stream's payload means nothing
    then), so a block that takes a payload without its ``valid`` is caught."""
    rng = random.Random(seed)
    noise = random.Random(seed + 1)
    got = {k: [] for k in sinks}
    stamps = {k: [] for k in sinks}
    state = {"ready": setup is None}

    def source(name, words, first):
        port = getattr(dut, name)
        raw = Value.cast(port.payload)

        def garbage(ctx):
            ctx.set(raw, noise.getrandbits(len(raw)))

        async def run(ctx):
            garbage(ctx)
            if first and setup is not None:
                await setup(ctx)
                state["ready"] = True
            while not state["ready"]:
                await ctx.tick()
            for w in words:
                while rng.random() < gap:
                    await ctx.tick()
                    garbage(ctx)
                ctx.set(port.payload, w)
                ctx.set(port.valid, 1)
                await ctx.tick().until(port.ready)
                ctx.set(port.valid, 0)
                garbage(ctx)
        return run

    def sink(name, n):
        port = getattr(dut, name)

        async def run(ctx):
            cyc = 0
            while len(got[name]) < n:
                r = rng.random() >= stall
                ctx.set(port.ready, r)
                _, _, valid, payload = await ctx.tick().sample(port.valid, port.payload)
                cyc += 1
                if cyc > limit:
                    raise TimeoutError(f"timeout: {name}: {len(got[name])} of {n} words after {limit} cycles")
                if r and valid:
                    got[name].append(int(payload if field is None else getattr(payload, field)))
                    stamps[name].append(cyc)
        return run

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    for k, (name, words) in enumerate(sources.items()):
        sim.add_testbench(source(name, words, k == 0))
    for name, n in sinks.items():
        sim.add_testbench(sink(name, n))
    sim.run()
    return got, stamps


def run_stream(dut, words, n_out, seed=0, gap=0.3, stall=0.3, field=None, limit=200000, setup=None,
               ports=("i", "o")):
    """:func:`run_ports` with one source and one sink: drive ``dut.i`` with words, collect
    ``n_out`` words of ``dut.o`` (``ports``: other names for the two); returns the words and
    the sink cycle each was taken."""
    i, o = ports
    got, stamps = run_ports(dut, {i: words}, {o: n_out}, seed, gap, stall, limit, setup, field)
    return got[o], stamps[o]
