"""Stream blocks (amaranth.sim): FIFO, width converter, sliding window, pool, code LUT,
against NumPy references with random input gaps and output backpressure."""

import math

import numpy as np
import pytest

from bitplane.gen import nn
from bitplane.gen.spec import window_geometry
from bitplane.core.packing import pack_words, unpack_words
from bitplane.hw.lint_waivers import lint
from bitplane.hw.stream_blocks import (LCM_LIMIT, CodeLUT, Pool, RegisterSlice, SlidingWindow, StreamFIFO, WidthConverter,
                                       window_cycles)
from tests.support.stream_ref import feature_words, window_words
from tests.support.streams import run_stream
from tests.support.verilog import component_verilog


@pytest.mark.parametrize("depth", [2, 4, 70, 128])
def test_fifo_keeps_order_under_backpressure(depth):
    words = list(range(1, 400))
    got, _ = run_stream(StreamFIFO(16, depth), words, len(words), gap=0.4, stall=0.5)
    assert got == words


@pytest.mark.parametrize("depth", [3, 4, 7, 33, 64])
def test_lutram_fifo_same_cycles_as_amaranths(depth):
    """The LUT-RAM FIFO (flags as registers) and amaranth's ``SyncFIFOBuffered`` of the same depth,
    fed the same random valid, payload and ready: the same ``i.ready``, ``o.valid`` and ``o.payload``
    in every cycle (the planner's cycle counts assume amaranth's)."""
    from amaranth import Module
    from amaranth.lib import fifo
    from amaranth.sim import Simulator
    m = Module()
    m.submodules.ours = ours = StreamFIFO(9, depth)
    m.submodules.ref = ref = fifo.SyncFIFOBuffered(width=9, depth=depth)
    assert not ours.registered
    m.d.comb += [ref.w_data.eq(ours.i.payload), ref.w_en.eq(ours.i.valid), ref.r_en.eq(ours.o.ready)]
    diffs, moved = [], [0, 0]

    async def bench(ctx):
        rng = np.random.default_rng(depth)
        for k in range(3000):
            phase = (k // 300) % 3          # stretches of a slow producer, a slow consumer, both random
            ctx.set(ours.i.valid, int(rng.random() < (0.3 if phase == 0 else 0.9 if phase == 1 else 0.6)))
            ctx.set(ours.i.payload, int(rng.integers(0, 512)))
            ctx.set(ours.o.ready, int(rng.random() < (0.9 if phase == 0 else 0.2 if phase == 1 else 0.5)))
            a = (ctx.get(ours.i.ready), ctx.get(ours.o.valid), ctx.get(ours.o.payload) if ctx.get(ours.o.valid) else 0)
            r = (ctx.get(ref.w_rdy), ctx.get(ref.r_rdy), ctx.get(ref.r_data) if ctx.get(ref.r_rdy) else 0)
            if a != r:
                diffs.append((k, a, r))
            moved[0] += a[0] and ctx.get(ours.i.valid)
            moved[1] += a[1] and ctx.get(ours.o.ready)
            await ctx.tick()
    sim = Simulator(m)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert not diffs, diffs[:5]
    assert min(moved) > 500                     # words went through, the FIFO full and empty in turn


@pytest.mark.parametrize("depth,latency", [(2, 1), (4, 1), (64, 1), (65, 2), (128, 2)])
def test_fifo_capacity_latency_and_rate(depth, latency):
    """With ``o`` stalled the FIFO takes exactly ``depth`` words; a word entering an empty FIFO
    is offered ``latency`` cycles after the one it was taken in (2 once the read data is registered after a block RAM:
    ``StreamFIFO.registered``); then, ``o`` always ready, one word per cycle."""
    from amaranth.sim import Simulator
    dut = StreamFIFO(12, depth)
    assert dut.registered == (depth > 64)
    seen = {}

    async def bench(ctx):
        ctx.set(dut.i.payload, 5)
        ctx.set(dut.i.valid, 1)
        await ctx.tick()
        ctx.set(dut.i.valid, 0)
        for k in range(1, 6):
            await ctx.tick()
            if ctx.get(dut.o.valid):
                seen["latency"] = k
                break
        ctx.set(dut.o.ready, 1)
        await ctx.tick()
        ctx.set(dut.o.ready, 0)
        taken = 0
        for n in range(depth + 10):
            ctx.set(dut.i.payload, n)
            ctx.set(dut.i.valid, 1)
            if ctx.get(dut.i.ready):
                taken += 1
            await ctx.tick()
        ctx.set(dut.i.valid, 0)
        seen["taken"] = taken
        ctx.set(dut.o.ready, 1)
        out, cycles = [], 0
        while len(out) < taken:
            if ctx.get(dut.o.valid):
                out.append(ctx.get(dut.o.payload))
            await ctx.tick()
            cycles += 1
        seen["out"], seen["cycles"] = out, cycles

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert seen["latency"] == latency
    assert seen["taken"] == depth
    assert seen["out"] == list(range(depth))
    assert seen["cycles"] == depth


@pytest.mark.parametrize("gap,stall", [(0.0, 0.0), (0.4, 0.5), (0.0, 0.7)])
def test_register_slice_keeps_order_and_rate(gap, stall):
    words = list(range(1, 300))
    got, stamps = run_stream(RegisterSlice(12), words, len(words), seed=3, gap=gap, stall=stall)
    assert got == words
    if not gap and not stall:                       # one word per cycle
        assert stamps[-1] - stamps[0] == len(words) - 1


def test_register_slice_ready_is_a_register():
    """``i.ready`` does not follow ``o.ready`` within a cycle: it drops one cycle after a word
    could not leave (both entries full), and rises one cycle after an entry is read."""
    from amaranth.sim import Simulator
    dut = RegisterSlice(4)
    seen = []

    async def bench(ctx):
        ctx.set(dut.i.valid, 1)
        for cyc, o_ready in enumerate([1, 1, 0, 0, 1, 1]):
            ctx.set(dut.i.payload, cyc)
            ready_before = ctx.get(dut.i.ready)
            ctx.set(dut.o.ready, o_ready)
            assert ctx.get(dut.i.ready) == ready_before        # no combinational path
            seen.append(ready_before)
            await ctx.tick()
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert seen == [1, 1, 1, 0, 0, 1]


# (3, 2), (2, 3), (4, 6), (6, 4): a gather to the lcm and a scatter; (13, 11), (11, 13): lcm 143 is
# past LCM_LIMIT, the shifting buffer
@pytest.mark.parametrize("li,lo", [(1, 4), (4, 1), (3, 2), (2, 3), (2, 6), (5, 5), (8, 2), (6, 3), (1, 2), (2, 1),
                                   (4, 6), (6, 4), (13, 11), (11, 13)])
def test_width_converter(li, lo):
    rng = np.random.default_rng(li * 10 + lo)
    n = 2 * li * lo * 3
    el = rng.integers(0, 8, n)
    got, _ = run_stream(WidthConverter(3, li, lo), pack_words(el, 3, li), n // lo, seed=li, gap=0.2, stall=0.3)
    assert np.array_equal(unpack_words(got, 3, lo), el)


def test_width_converter_full_rate():
    el = np.arange(256) % 16
    got, stamps = run_stream(WidthConverter(4, 1, 4), pack_words(el, 4, 1), 64, gap=0, stall=0)
    assert np.array_equal(unpack_words(got, 4, 4), el)
    assert stamps[-1] - stamps[0] <= 4 * 63 + 2


@pytest.mark.parametrize("li,lo", [(4, 6), (6, 4)])
def test_width_converter_pair_full_rate(li, lo):
    """A non-integer ratio through the lcm (12 lanes): one word per cycle on the busier side."""
    assert math.lcm(li, lo) <= LCM_LIMIT * (li + lo)
    el = np.arange(240) % 16
    got, stamps = run_stream(WidthConverter(4, li, lo), pack_words(el, 4, li), 240 // lo, gap=0, stall=0)
    assert np.array_equal(unpack_words(got, 4, lo), el)
    assert stamps[-1] - stamps[0] <= max(240 // li, 240 // lo) + 1


@pytest.mark.parametrize("li,lo", [(4, 6), (6, 4), (4, 98), (1, 4), (4, 8)])
def test_width_converter_ready_is_a_register(li, lo):
    """The two-bank converter's and the gather's ``i.ready`` and ``o.valid`` do not follow the
    consumer's ``ready`` within a cycle (registers: the producer's and consumer's paths stay
    apart)."""
    from amaranth.sim import Simulator
    dut = WidthConverter(2, li, lo)
    seen = []

    async def bench(ctx):
        rng = np.random.default_rng(li)
        for _ in range(60):
            ctx.set(dut.i.valid, int(rng.random() < 0.7))
            ctx.set(dut.i.payload, int(rng.integers(0, 1 << (2 * li))))
            both = []
            for r in (0, 1):
                ctx.set(dut.o.ready, r)
                both.append((ctx.get(dut.i.ready), ctx.get(dut.o.valid)))
            seen.append(both[0] == both[1])
            ctx.set(dut.o.ready, int(rng.random() < 0.5))
            await ctx.tick()
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert all(seen)


@pytest.mark.parametrize("li,lo,name", [(4, 6, "i_rdy"), (1, 4, "rdy")])
def test_width_converter_ready_in_two_kept_copies(li, lo, name):
    """The two-bank converter's and the gather's ``i.ready`` are two flip-flops marked ``keep``
    (``hw.stream_blocks.ready_copies``: the port's copy drives the enables, the other the
    converter's own state), which the synthesis flow keeps apart."""
    import re
    v = component_verilog(WidthConverter(2, li, lo), "wc")
    # the port's copy is the output register itself (its wire `name` an alias marked keep)
    assert re.search(r"\breg i__ready = 1'h1;", v) and re.search(rf"assign {name} = i__ready;", v)
    assert re.search(rf"keep = 32'd1 \*\)\s*(\(\*[^)]*\)\s*)*reg {name}_own = 1'h1;", v)
    if name == "i_rdy":     # the two-bank converter's o.valid too (ready_copies with init 0)
        assert re.search(r"\breg o__valid = 1'h0;", v) and re.search(r"assign o_vld = o__valid;", v)
        assert re.search(r"keep = 32'd1 \*\)\s*(\(\*[^)]*\)\s*)*reg o_vld_own = 1'h0;", v)


def test_width_converter_scatter_full_rate():
    el = np.arange(256) % 16
    got, stamps = run_stream(WidthConverter(4, 4, 1), pack_words(el, 4, 4), 256, gap=0, stall=0)
    assert np.array_equal(unpack_words(got, 4, 1), el)
    assert stamps[-1] - stamps[0] == 255


WINDOW_CASES = [
    # C, H, W, K, s, padding, lanes
    (2, 5, 7, 3, 1, "same", 1),
    (4, 7, 5, 3, 2, "same", 2),
    (3, 6, 6, 5, 1, "valid", 3),
    (2, 9, 8, 5, 2, "same", 1),
    (4, 5, 5, 1, 1, "valid", 4),
    (2, 8, 7, 1, 2, "valid", 2),
    (1, 7, 9, 3, 2, 1, 1),
    (6, 4, 5, 3, 1, "same", 3),
    (3, 2, 3, 3, 1, "same", 1),            # fewer rows than the line buffer holds
    (2, 3, 2, 3, 2, "same", 2),
    (1, 1, 1, 1, 1, "valid", 1),
]


@pytest.mark.parametrize("case", WINDOW_CASES, ids=lambda c: "C{}H{}W{}K{}s{}{}L{}".format(*c))
def test_sliding_window(case):
    C, H, W, K, s, padding, lanes = case
    oh, ow, pads = window_geometry(H, W, K, s, padding)
    rng = np.random.default_rng(sum(case[:5]))
    frames = [rng.integers(0, 8, (C, H, W)) for _ in range(3)]        # back to back
    words = sum((feature_words(f, 3, lanes) for f in frames), [])
    want = sum((window_words(f, K, s, pads, 5, 3, lanes) for f in frames), [])
    dut = SlidingWindow(C, H, W, K, s, pads, 3, lanes, pad_code=5)
    got, _ = run_stream(dut, words, len(want), seed=len(words), field="data")
    assert got == want


def test_sliding_window_throughput():
    C, H, W, K, s = 2, 8, 8, 3, 1
    pads = window_geometry(H, W, K, s, "same")[2]
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 4, (C, H, W)) for _ in range(3)]
    words = sum((feature_words(f, 2, 1) for f in frames), [])
    n = 3 * window_cycles(H, W, C, K, s, pads)
    got, stamps = run_stream(SlidingWindow(C, H, W, K, s, pads, 2, 1), words, n, gap=0, stall=0, field="data")
    per_frame = window_cycles(H, W, C, K, s, pads)
    assert stamps[-1] - stamps[0] <= n + 2 * (W * C) + 8           # one word/cycle after the first rows
    assert per_frame == 8 * 8 * 9 * 2
    # the input arrives faster than the window reads it, so no output word waits: the output
    # FIFO's credits (WINDOW_CREDITS) cover their round trip
    assert np.all(np.diff(stamps) == 1), np.flatnonzero(np.diff(stamps) != 1)[:10]


POOL_CASES = [
    # C, H, W, K, s, padding, lanes, signed
    (2, 6, 6, 2, 2, "valid", 1, False),
    (4, 7, 5, 2, 2, "same", 2, False),
    (3, 5, 5, 3, 2, "same", 3, True),
    (2, 6, 5, 3, 1, "valid", 2, True),
    # three and five channel words: the accumulator ring and its directions rotate in one sense
    (6, 5, 5, 2, 1, "valid", 2, False),
    (5, 4, 4, 3, 1, "same", 1, True),
    # a 1 x 1 window: every word is a window's first and last (the registered first/last flags)
    (3, 4, 4, 1, 1, "valid", 1, False),
    (4, 5, 4, 1, 2, "valid", 4, True),
]


@pytest.mark.parametrize("case", POOL_CASES, ids=lambda c: "C{}H{}W{}K{}s{}{}L{}{}".format(*c))
def test_pool_both_directions(case):
    C, H, W, K, s, padding, lanes, sgn = case
    oh, ow, pads = window_geometry(H, W, K, s, padding)
    rng = np.random.default_rng(sum(case[:5]))
    maximize = [bool(v) for v in rng.integers(0, 2, C)]
    maximize[0], maximize[-1] = True, False
    lo, hi = (-8, 8) if sgn else (0, 16)
    frames = [rng.integers(lo, hi, (C, H, W)) for _ in range(2)]
    words = sum((feature_words(f, 5, lanes, signed=sgn) for f in frames), [])
    ref = [nn.pool2d(f[None].astype(float), K, s, pads, np.array(maximize))[0].astype(np.int64) for f in frames]
    want = sum((feature_words(r, 5, lanes, signed=sgn) for r in ref), [])
    dut = Pool(C, H, W, K, s, pads, 5, lanes, signed=sgn, maximize=maximize)
    got, _ = run_stream(dut, words, len(want), seed=C)
    assert got == want


def test_code_lut():
    table = [3, 0, 2, 1]
    words = pack_words([0, 1, 2, 3, 3, 2], 2, 2)
    got, _ = run_stream(CodeLUT(table, 2, 2, 2), words, 3)
    assert list(unpack_words(got, 2, 2)) == [3, 0, 2, 1, 1, 2]


@pytest.mark.parametrize("comp,name", [
    (lambda: StreamFIFO(8, 4), "fifo"), (lambda: StreamFIFO(8, 100), "fifo_bram"),
    (lambda: WidthConverter(2, 3, 2), "wconv"),
    (lambda: RegisterSlice(5), "slice"),
    (lambda: SlidingWindow(4, 7, 5, 3, 2, (1, 1, 1, 1), 2, 2), "window"),
    (lambda: Pool(4, 6, 6, 2, 2, (0, 0, 0, 0), 4, 2, signed=True, maximize=[1, 0, 1, 0]), "pool"),
    (lambda: CodeLUT([1, 0], 1, 1, 4), "lut")])
def test_blocks_lint_clean(comp, name):
    assert lint(component_verilog(comp(), name), name) == []


@pytest.mark.parametrize("rows,pe,T,load,signed", [(6, 2, 3, False, True), (4, 4, 6, True, True),
                                                   (3, 1, 1, False, True), (8, 4, 2, False, False)])
def test_threshold_unit_matches_reference(rows, pe, T, load, signed):
    """ThresholdUnit == gen.lower.apply_thresholds on random signed values (or unsigned, as the
    input stage's codes: values >= 64 would read negative as signed), mixed directions, out_lut
    applied; with ``load`` the thresholds arrive through ``t_wr`` at run time."""
    from bitplane.hw.bitserial import ThresholdParams, ThresholdUnit, pack_threshold_words
    from bitplane.gen.lower import apply_thresholds
    rng = np.random.default_rng(rows * 10 + T)
    B, TW = 7, 9
    thr = np.sort(rng.integers(-70, 70, (rows, T)) if signed else rng.integers(20, 130, (rows, T)), axis=1)
    up = rng.integers(0, 2, (rows, T)).astype(bool)
    lut = tuple(int(v) for v in rng.permutation(T + 1))
    init = {} if load else {"init_thresholds": tuple(map(tuple, thr.tolist())),
                            "init_dirs": tuple(map(tuple, up.astype(int).tolist()))}
    p = ThresholdParams(rows=rows, pe=pe, in_bits=B, n_thresholds=T, width=TW, levels=T + 1, out_lut=lut,
                        in_signed=signed, **init)
    dut = ThresholdUnit(p)
    pixels = 9
    x = rng.integers(-64, 64, (pixels, rows)) if signed else rng.integers(0, 128, (pixels, rows))
    want = np.asarray(lut)[apply_thresholds(x[:, :, None], thr, up)[:, :, 0]]
    words = pack_words(x.reshape(-1), B, pe, signed=signed)

    async def load_thresholds(ctx):
        for addr, data in pack_threshold_words(rows, pe, T, TW, thr, up.astype(int)):
            ctx.set(dut.t_wr.payload.addr, addr)
            ctx.set(dut.t_wr.payload.data, data)
            ctx.set(dut.t_wr.valid, 1)
            await ctx.tick()
        ctx.set(dut.t_wr.valid, 0)

    got, _ = run_stream(dut, words, len(words), seed=3, gap=0.3, stall=0.4, limit=20000,
                        setup=load_thresholds if load else None)
    assert np.array_equal(unpack_words(got, p.out_bits, pe).reshape(pixels, rows), want)


def test_threshold_unit_lint_clean():
    from bitplane.hw.bitserial import ThresholdParams, ThresholdUnit
    p = ThresholdParams(rows=4, pe=2, in_bits=6, n_thresholds=3, width=8, levels=4,
                        init_thresholds=((1, 2, 3),) * 4, init_dirs=((1, 0, 1),) * 4)
    assert lint(component_verilog(ThresholdUnit(p), "thr"), "thr") == []
