"""Graph stream blocks (issue #16): fork, add, average/sum pool, global pool, concat, mirror
padding in the sliding window, and the bypass-FIFO depth rule, against their Python
references (gen/graph.py stages, gen/nn.py) with random input gaps and output backpressure."""

import numpy as np
import pytest
from amaranth import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from bitplane.core.packing import pack_words, stream_order, unpack_words
from bitplane.gen import nn
from bitplane.gen.graph import round_shift
from bitplane.hw.graph_blocks import (AddBlock, AvgPoolBlock, ChannelSlice, ConcatBlock, GlobalSumPool, Recode,
                                      StreamFork, bypass_fifo_depth, chain_need, identity_need)
from bitplane.hw.lint_waivers import lint
from bitplane.hw.stream_blocks import Pool, SlidingWindow, StreamFIFO, mirror_fits, window_cycles, window_need
from tests.support.stream_ref import feature_words
from tests.support.streams import run_ports
from tests.support.verilog import component_verilog


def _words(x_chw, bits, lanes, sgn):
    return pack_words(stream_order(np.asarray(x_chw)), bits, lanes, sgn)


def _unwords(words, bits, lanes, shape):
    C, H, W = shape
    return unpack_words(words, bits, lanes, True).reshape(H, W, C).transpose(2, 0, 1)


# ------------------------------------------------------------------ fork / concat

def test_fork_duplicates_under_backpressure():
    words = list(range(3, 160))
    got, _ = run_ports(StreamFork(12), {"i": words}, {"o0": len(words), "o1": len(words)}, gap=0.3, stall=0.5)
    assert got["o0"] == words and got["o1"] == words


@pytest.mark.parametrize("ca,cb,lanes", [(2, 3, 1), (4, 2, 2), (1, 1, 1)])
def test_concat_matches_numpy(ca, cb, lanes):
    rng = np.random.default_rng(ca * 7 + cb)
    frames = [(rng.integers(0, 16, (ca * lanes, 3, 4)), rng.integers(0, 16, (cb * lanes, 3, 4))) for _ in range(2)]
    wa = sum((_words(a, 4, lanes, False) for a, _ in frames), [])
    wb = sum((_words(b, 4, lanes, False) for _, b in frames), [])
    want = sum((_words(np.concatenate([a, b]), 4, lanes, False) for a, b in frames), [])
    got, _ = run_ports(ConcatBlock((ca, cb), 4 * lanes), {"i0": wa, "i1": wb}, {"o": len(want)}, seed=ca)
    assert got["o"] == want


# ------------------------------------------------------------------ add

@pytest.mark.parametrize("lanes", [1, 2])
def test_add_block_is_the_add_stage(lanes, tmp_path):
    """The b1add stage of a lowered residual net (16 guard bits, per-channel multipliers):
    the block fed with the stage's own input integers gives the golden trace exactly."""
    from bitplane.gen.golden import Golden
    from bitplane.gen.spec import load_network
    from tests.support.graphnets import resnet_spec, write_net
    g = Golden(load_network(write_net(tmp_path, resnet_spec())))
    add = next(s for s in g.lowered.stages if s.name == "b1add")
    x = np.random.default_rng(lanes).integers(0, 256, (2, 3, 8, 8)).astype(np.uint8)
    _, tr = g.run_int(x, trace=True)
    acc = tr["b1c2"]
    sc = add.in_forms[1].level_ints[tr["stem"]]
    abits = next(s for s in g.lowered.stages if s.name == "b1c2").acc_bits
    dut = AddBlock(4, lanes, abits, 3, add.out.bits, add.mult[0], add.mult[1], True, True)
    wa = sum((_words(f, abits, lanes, True) for f in acc), [])
    wb = sum((_words(f, 3, lanes, True) for f in sc), [])
    want = sum((_words(f, add.out.bits, lanes, True) for f in tr["b1add"]), [])
    got, _ = run_ports(dut, {"a": wa, "b": wb}, {"o": len(want)}, seed=lanes)
    assert got["o"] == want


def test_add_block_rounds_a_chained_stream_add_as_the_stage(tmp_path):
    """The second add of a float residual stream (its input ``s1`` already carries 16 guard
    bits, so the stage sums with ``shift`` more bits and rounds back): the block fed with the
    stage's own input integers gives the golden trace exactly, also at the rounding ties."""
    from bitplane.gen.golden import Golden
    from bitplane.gen.spec import load_network
    from tests.support.graphnets import stream_spec, write_net
    g = Golden(load_network(write_net(tmp_path, stream_spec())))
    add = next(s for s in g.lowered.stages if s.name == "s2")
    assert add.shift == 16 and add.sum_bits > add.out.bits
    x = np.random.default_rng(5).integers(0, 256, (2, 3, 8, 8)).astype(np.uint8)
    _, tr = g.run_int(x, trace=True)
    abits = next(s for s in g.lowered.stages if s.name == "b2c2").acc_bits
    bbits = add.in_forms[1].bits
    ka, kb = add.mult_shifts
    assert (ka, kb) == (16, 0)           # the accumulator keeps its multiplier, aligned by 16 bits
    dut = AddBlock(4, 2, abits, bbits, add.out.bits, add.mult[0] >> ka, add.mult[1] >> kb, True, True, add.shift,
                   add.sum_bits, ka, kb)
    # one more pixel with b = 2^15 (a value beyond 16 bits through the b path); the rounding at
    # a tie (+-2^15 of 2^16) is checked on round_shift itself: these multipliers put no sum there
    tie_b = np.full(4, 1 << 15, np.int64)
    assert bbits > 16 and round_shift(np.int64(-(1 << 15)), 16) == 0 and round_shift(np.int64(1 << 15), 16) == 1
    frames_a = [tr["b2c2"][0], tr["b2c2"][1], np.zeros((4, 1, 1), np.int64)]
    frames_b = [tr["s1"][0], tr["s1"][1], tie_b.reshape(4, 1, 1)]
    want = [add.run(fa[None], fb[None])[0] for fa, fb in zip(frames_a, frames_b)]
    assert np.array_equal(np.stack(want[:2]), tr["s2"])
    wa = sum((_words(f, abits, 2, True) for f in frames_a), [])
    wb = sum((_words(f, bbits, 2, True) for f in frames_b), [])
    wo = sum((_words(f, add.out.bits, 2, True) for f in want), [])
    got, _ = run_ports(dut, {"a": wa, "b": wb}, {"o": len(wo)}, seed=7)
    assert got["o"] == wo


@pytest.mark.parametrize("name", ["b1add", "b2add"])
def test_add_block_clips_an_unquantized_relu_input_as_the_stage(name, tmp_path):
    """A pre-activation net's adds whose shortcut is the unquantized ReLU stream (b1add: input
    b, the pooled stem accumulators; b2add: input a, the previous add's guard-bit sum): the
    block with the stage's clip bounds, fed with the stage's own input integers, gives the
    golden trace exactly, under gaps and backpressure."""
    from bitplane.gen.golden import Golden
    from bitplane.gen.spec import load_network
    from tests.support.graphnets import preact_spec, write_net
    g = Golden(load_network(write_net(tmp_path, preact_spec(), seed=3)))
    add = next(s for s in g.lowered.stages if s.name == name)
    srcs = g.lowered.inputs[name]
    x = np.random.default_rng(4).integers(0, 256, (2, 3, 8, 8)).astype(np.uint8)
    _, tr = g.run_int(x, trace=True)
    bits = [add.in_forms[k].bits for k in range(2)]
    ka, kb = add.mult_shifts
    clipped = [c is not None for c in add.clips]
    assert clipped == ([False, True] if name == "b1add" else [True, False])
    dut = AddBlock(4, 2, bits[0], bits[1], add.out.bits, add.mult[0] >> ka, add.mult[1] >> kb, True, True,
                   add.shift, add.sum_bits, ka, kb, *add.clips, *add.pre_shifts)
    wa = sum((_words(f, bits[0], 2, True) for f in tr[srcs[0]]), [])
    wb = sum((_words(f, bits[1], 2, True) for f in tr[srcs[1]]), [])
    want = sum((_words(f, add.out.bits, 2, True) for f in tr[name]), [])
    got, _ = run_ports(dut, {"a": wa, "b": wb}, {"o": len(want)}, seed=11)
    assert got["o"] == want


def test_add_block_pre_rounds_an_input_as_the_stage_formula():
    """``pre_a``: input a loses 5 guard bits, rounded half up (``round_shift``), before its
    product; with a clip on b and a rounding shift of the sum (the LQ-Nets chained add's form),
    under gaps and backpressure, ties included (a = +-16 mod 32)."""
    rng = np.random.default_rng(3)
    C, L, H, W = 4, 2, 3, 3
    a = rng.integers(-(1 << 19), 1 << 19, (C, H, W))
    a[:, 0, 0] = [16, -16, 48, -48]
    b = rng.integers(-(1 << 11), 1 << 11, (C, H, W))
    ma, mb, sh = np.array([7, -3, 5, 1]), np.array([300, 41, -77, 1000]), 4
    lo, hi = np.array([-20000, -5000, -9000, 0]), np.array([20000, 80000, 9000, 1 << 20])
    ka, kb = 2, 0
    tb = np.clip(mb[:, None, None] * b, lo[:, None, None], hi[:, None, None])
    tot = (ma[:, None, None] << ka) * round_shift(a, 5) + tb
    want = round_shift(tot, sh)
    ob = int(max(abs(int(want.min())), int(want.max()))).bit_length() + 1
    dut = AddBlock(C, L, 20, 12, ob, ma, mb, True, True, sh, 40, ka, kb, None, (lo, hi), 5, 0)
    got, _ = run_ports(dut, {"a": _words(a, 20, L, True), "b": _words(b, 12, L, True)},
                       {"o": H * W * C // L}, seed=2)
    assert got["o"] == _words(want, ob, L, True)


# ------------------------------------------------------------------ average / sum / global pool

AVG_CASES = [
    # C, H, W, K, s, pads, lanes, divisor, pad_mode
    (2, 6, 6, 3, 2, (1, 1, 1, 1), 1, "include_pad", "constant"),
    (4, 7, 5, 3, 1, (1, 1, 1, 1), 2, "valid", "constant"),
    (2, 5, 6, 2, 2, (0, 1, 0, 1), 2, "valid", "constant"),
    (3, 6, 5, 3, 1, (1, 1, 1, 1), 3, "include_pad", "reflect"),
    (2, 5, 5, 3, 2, (1, 0, 0, 1), 1, "include_pad", "symmetric"),
]


@pytest.mark.parametrize("case", AVG_CASES, ids=lambda c: "C{}H{}W{}K{}s{}{}L{}{}{}".format(*c))
def test_avgpool_block_matches_stage_formula(case):
    C, H, W, K, s, pads, lanes, div, mode = case
    rng = np.random.default_rng(sum(case[:5]))
    frames = [rng.integers(-8, 8, (C, H, W)) for _ in range(2)]
    ob = 24
    if div == "valid":
        recip = np.array([0] + [round((1 << 16) * K * K / n) for n in range(1, K * K + 1)])
        dut = AvgPoolBlock(C, H, W, K, s, pads, 4, ob, lanes, in_signed=True, recip=recip, pad_mode=mode)
        ref = [nn.sum_pool2d(f[None], K, s, pads, 0.0)[0].astype(np.int64)
               * recip[nn.valid_counts(H, W, K, s, pads)] for f in frames]
    else:
        pad_q = rng.integers(-5, 5, C)
        dut = AvgPoolBlock(C, H, W, K, s, pads, 4, ob, lanes, in_signed=True, pad_q=pad_q, pad_mode=mode)
        ref = [nn.sum_pool2d(f[None], K, s, pads, pad_q, mode)[0].astype(np.int64) for f in frames]
    words = sum((_words(f, 4, lanes, True) for f in frames), [])
    want = sum((_words(r, ob, lanes, True) for r in ref), [])
    got, _ = run_ports(dut, {"i": words}, {"o": len(want)}, seed=C)
    assert got["o"] == want


def test_avgpool_block_runs_a_lowered_valid_divisor_stage(tmp_path):
    from bitplane.gen.golden import Golden
    from bitplane.gen.graph import AvgPoolStage
    from bitplane.gen.spec import load_network
    from tests.support.graphnets import bn, conv, qact, write_net
    spec = {"name": "v", "input": {"shape": [2, 7, 7], "bits": 8, "scale": 1 / 255}, "layers": [
        conv("c0", 2), bn("n0"), qact("a0", q={"type": "dorefa", "bits": 3}),
        {"name": "ap", "op": "avgpool", "kernel": 3, "stride": 2, "padding": 1, "divisor": "valid"},
        qact("q"), conv("c1", 2, k=1, pad=0)]}
    g = Golden(load_network(write_net(tmp_path, spec)))
    ap = next(s for s in g.lowered.stages if isinstance(s, AvgPoolStage))
    x = np.random.default_rng(9).integers(0, 256, (2, 2, 7, 7)).astype(np.uint8)
    _, tr = g.run_int(x, trace=True)
    dut = AvgPoolBlock(2, 7, 7, 3, 2, ap.pads, 3, ap.out.bits, 1, recip=ap.recip)
    words = sum((_words(f, 3, 1, False) for f in tr["c0"]), [])
    want = sum((_words(f, ap.out.bits, 1, True) for f in tr["ap"]), [])
    got, _ = run_ports(dut, {"i": words}, {"o": len(want)}, seed=2)
    assert got["o"] == want


@pytest.mark.parametrize("C,lanes,pixels", [(4, 2, 9), (3, 1, 4), (2, 2, 1)])
def test_global_sum_pool(C, lanes, pixels):
    rng = np.random.default_rng(C + pixels)
    frames = [rng.integers(-30, 30, (C, pixels, 1)) for _ in range(3)]
    words = sum((_words(f, 6, lanes, True) for f in frames), [])
    want = sum((_words(f.sum(axis=(1, 2), keepdims=True), 12, lanes, True) for f in frames), [])
    got, _ = run_ports(GlobalSumPool(C, pixels, 6, 12, lanes, in_signed=True), {"i": words}, {"o": len(want)},
                       seed=pixels)
    assert got["o"] == want


# ------------------------------------------------------------------ mirror padding in the window

def _mirror_window_ref(x, k, s, pads, mode, bits, lanes):
    t, b, l, r = pads
    xp = np.pad(x, ((0, 0), (t, b), (l, r)), mode=mode)
    C, H, W = xp.shape
    out = [xp[:, i * s:i * s + k, j * s:j * s + k].transpose(1, 2, 0).reshape(-1)
           for i in range((H - k) // s + 1) for j in range((W - k) // s + 1)]
    return pack_words(np.concatenate(out), bits, lanes)


@pytest.mark.parametrize("case", [(2, 5, 6, 3, 1, (1, 1, 1, 1), 1, "reflect"),
                                  (2, 6, 5, 3, 2, (1, 1, 1, 1), 2, "symmetric"),
                                  (1, 9, 9, 7, 2, (3, 2, 3, 2), 1, "reflect"),
                                  (2, 4, 4, 3, 1, (1, 1, 2, 0), 1, "symmetric")],
                         ids=lambda c: "C{}H{}W{}K{}s{}{}L{}{}".format(*c))
def test_sliding_window_mirror_padding(case):
    C, H, W, K, s, pads, lanes, mode = case
    rng = np.random.default_rng(C + H)
    frames = [rng.integers(0, 8, (C, H, W)) for _ in range(3)]
    words = sum((feature_words(f, 3, lanes) for f in frames), [])
    want = sum((_mirror_window_ref(f, K, s, pads, mode, 3, lanes) for f in frames), [])
    dut = SlidingWindow(C, H, W, K, s, pads, 3, lanes, pad_mode=mode)
    got, _ = run_ports(_DataOnly(dut), {"i": words}, {"o": len(want)}, seed=3)
    assert got["o"] == want


def test_mirror_limits():
    assert mirror_fits(3, (1, 1, 1, 1), 5, 5, "reflect") and not mirror_fits(3, (2, 0, 0, 0), 5, 5, "reflect")
    assert mirror_fits(7, (3, 2, 3, 2), 9, 9, "reflect") and mirror_fits(2, (1, 0, 0, 0), 4, 4, "symmetric")
    with pytest.raises(ValueError, match="reflect padding"):
        SlidingWindow(1, 5, 5, 3, 1, (2, 0, 0, 0), 2, 1, pad_mode="reflect")


def test_reflect_maxpool():
    C, H, W = 2, 5, 6
    rng = np.random.default_rng(11)
    f = rng.integers(0, 16, (C, H, W))
    ref = nn.pool2d(f[None].astype(float), 3, 1, (1, 1, 1, 1), True, "reflect")[0].astype(np.int64)
    got, _ = run_ports(Pool(C, H, W, 3, 1, (1, 1, 1, 1), 4, 1, pad_mode="reflect"),
                       {"i": feature_words(f, 4, 1)}, {"o": C * H * W})
    assert got["o"] == feature_words(ref, 4, 1)


class _DataOnly(wiring.Component):
    """A SlidingWindow with its ``data`` field as a plain output stream."""

    def __init__(self, win):
        self.win = win
        super().__init__({"i": In(stream.Signature(win.lanes * win.bits)),
                          "o": Out(stream.Signature(win.lanes * win.bits))})

    def elaborate(self, platform):
        m = Module()
        m.submodules.win = self.win
        wiring.connect(m, wiring.flipped(self.i), self.win.i)
        m.d.comb += [self.o.valid.eq(self.win.o.valid), self.o.payload.eq(self.win.o.payload.data),
                     self.win.o.ready.eq(self.o.ready)]
        return m


# ------------------------------------------------------------------ fork + paths + join: FIFO depth

class _Join(wiring.Component):
    """x -> fork -> (3x3/``stride`` max pool, pad 1) + (bypass FIFO of ``depth``, then a
    1x1/``stride`` pool when strided: a projection-style join) -> add."""

    def __init__(self, C, H, W, depth, stride=1):
        self.C, self.H, self.W, self.depth, self.stride = C, H, W, depth, stride
        super().__init__({"i": In(stream.Signature(2)), "o": Out(stream.Signature(4))})

    def elaborate(self, platform):
        m = Module()
        C, H, W, s = self.C, self.H, self.W, self.stride
        m.submodules.fork = fork = StreamFork(2)
        m.submodules.long = long = Pool(C, H, W, 3, s, (1, 1, 1, 1), 2, 1)
        m.submodules.fifo = short = StreamFIFO(2, self.depth)
        m.submodules.add = add = AddBlock(C, 1, 2, 2, 4, 1, 1, a_signed=False, b_signed=False)
        wiring.connect(m, wiring.flipped(self.i), fork.i)
        wiring.connect(m, fork.o0, long.i)
        wiring.connect(m, fork.o1, short.i)
        if s > 1:
            m.submodules.short = pool = Pool(C, H, W, 1, s, (0, 0, 0, 0), 2, 1)
            wiring.connect(m, short.o, pool.i)
            short = pool
        wiring.connect(m, long.o, add.a)
        wiring.connect(m, short.o, add.b)
        wiring.connect(m, add.o, wiring.flipped(self.o))
        return m


def _residual_depth(C, H, W):
    return bypass_fifo_depth(window_need(H, W, C, 3, 1, (1, 1, 1, 1)), identity_need(H * W, C), latency_long=3)


def _residual_run(C, H, W, depth, frames, gap=0.0, stall=0.0, limit=20000):
    rng = np.random.default_rng(depth)
    xs = [rng.integers(0, 4, (C, H, W)) for _ in range(frames)]
    words = sum((feature_words(x, 2, 1) for x in xs), [])
    want = sum((feature_words(nn.pool2d(x[None].astype(float), 3, 1, (1, 1, 1, 1))[0].astype(np.int64) + x, 4, 1)
                for x in xs), [])
    got, st = run_ports(_Join(C, H, W, depth), {"i": words}, {"o": len(want)}, gap=gap, stall=stall,
                        limit=limit)
    assert got["o"] == want
    return st["o"]


def test_bypass_fifo_depth_formula():
    # 3x3 window, pad 1: output row oy needs input rows up to oy+1, while the join has taken
    # the wire's pixels before the row's first: 2W*C words ahead
    need = window_need(6, 5, 2, 3, 1, (1, 1, 1, 1))
    assert need[0] == 2 * 5 * 2 and need[-1] == 6 * 5 * 2
    assert bypass_fifo_depth(need, identity_need(30, 2), latency_long=3) == 2 * 5 * 2 + 3 + 1
    # chains compose: a 1x1 window after a 3x3 needs what the 3x3 needs for the same pixel
    one = window_need(6, 5, 1, 1, 1, (0, 0, 0, 0))
    assert np.array_equal(chain_need(need, one), need[one - 1])


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")   # the deadlocked source
def test_derived_depth_holds_the_rate_and_a_smaller_one_deadlocks():
    C, H, W = 2, 6, 6
    depth = _residual_depth(C, H, W)
    st = _residual_run(C, H, W, depth, frames=3)
    per_frame = window_cycles(H, W, C, 3, 1, (1, 1, 1, 1))          # the pool's words: the slowest block
    period = (st[-1] - st[H * W * C - 1]) / 2
    assert period == per_frame
    # under random gaps and backpressure: still complete and exact
    _residual_run(C, H, W, depth, frames=2, gap=0.3, stall=0.3, limit=60000)
    # the bound is tight: one word less than the lead still runs (the fork's output register
    # holds the last one) but the fork stalls the pool (slower); two words less deadlock
    lead = depth - 3 - 1
    assert lead == 2 * W * C
    st = _residual_run(C, H, W, lead - 1, frames=3)
    assert (st[-1] - st[H * W * C - 1]) / 2 > per_frame
    with pytest.raises(TimeoutError):
        _residual_run(C, H, W, lead - 2, frames=1, limit=3000)


@pytest.mark.parametrize("comp,name", [
    (lambda: StreamFork(8), "fork"), (lambda: ConcatBlock((2, 3), 8), "concat"),
    (lambda: AddBlock(4, 2, 6, 3, 12, [3, -5, 7, 1], [1, 2, 3, 4]), "add"),
    (lambda: AddBlock(4, 2, 6, 3, 12, [3, -5, 7, 1], [1, 2, 3, 4], clip_a=([-9, -150, 0, -5], [90, 150, 60, 40])),
     "addclip"),
    (lambda: AvgPoolBlock(2, 5, 5, 3, 2, (1, 1, 1, 1), 3, 12, 1, recip=[0] + [9 * 64 // n for n in range(1, 10)]),
     "avgpool"),
    (lambda: GlobalSumPool(4, 9, 3, 8, 2), "gpool"),
    (lambda: SlidingWindow(2, 5, 5, 3, 1, (1, 1, 1, 1), 2, 1, pad_mode="reflect"), "mirror"),
    (lambda: StreamFork(6, 3), "fork3"), (lambda: ConcatBlock((1, 2, 1), 6), "concat3"),
    (lambda: Recode(2, 3, 5, table=[0, -1, 2, 3]), "recode"), (lambda: Recode(2, 6, 32, True), "widen"),
    (lambda: ChannelSlice(8, 2, 2, 4, 3), "slice")])
def test_graph_blocks_lint_clean(comp, name):
    assert lint(component_verilog(comp(), name), name) == []


# ------------------------------------------------------------------ cycle formulas = measured periods

def _period(dut, sources, sink, n_out, frames, also=()):
    _, st = run_ports(dut, sources, {sink: n_out, **{k: n_out for k in also}}, gap=0.0, stall=0.0)
    s = st[sink]
    per = n_out // frames
    return (s[-1] - s[per - 1]) / (frames - 1)


def test_cycle_formulas_are_the_measured_periods():
    from bitplane.hw.graph_blocks import add_cycles, avgpool_cycles, concat_cycles, fork_cycles, global_pool_cycles
    rng = np.random.default_rng(0)
    C, H, W, lanes, F = 4, 5, 6, 2, 3
    frames = [rng.integers(0, 8, (C, H, W)) for _ in range(F)]
    words = sum((_words(f, 4, lanes, False) for f in frames), [])
    cw, px = C // lanes, H * W
    assert _period(StreamFork(8), {"i": words}, "o0", len(words), F, also=("o1",)) == fork_cycles(px * cw)
    assert _period(AddBlock(C, lanes, 4, 4, 6, 1, 1, False, False), {"a": words, "b": words}, "o",
                   len(words), F) == add_cycles(px, cw)
    assert _period(ConcatBlock((cw, cw), 8), {"i0": words, "i1": words}, "o", 2 * len(words), F) \
        == concat_cycles(px, cw, cw)
    assert _period(GlobalSumPool(C, px, 4, 10, lanes), {"i": words}, "o", F * cw, F) == global_pool_cycles(px, cw)
    pads = (1, 1, 1, 1)
    n = F * ((H - 1) // 2 + 1) * ((W - 1) // 2 + 1) * cw
    assert _period(AvgPoolBlock(C, H, W, 3, 2, pads, 4, 10, lanes), {"i": words}, "o", n, F) \
        == avgpool_cycles(H, W, cw, 3, 2, pads)


# ------------------------------------------------------------------ a projection-style join: both paths strided

def test_bypass_depth_for_a_strided_projection_join():
    """Both paths windowed (3x3/2 and 1x1/2): the derived depth holds the long path's rate.
    Here the short path's own line buffer (3 rows) absorbs the lead, so the formula, which
    does not count it, is an upper bound (measured: even a 1-word FIFO runs). The long path's
    pixel in output row oy needs input rows up to 2oy+1, the short path's pixel before it
    (the last of row oy-1) rows up to 2oy-2: three rows."""
    C, H, W = 2, 7, 6
    need_long = window_need(H, W, C, 3, 2, (1, 1, 1, 1))
    need_short = window_need(H, W, C, 1, 2, (0, 0, 0, 0))
    depth = bypass_fifo_depth(need_long, need_short, latency_long=3, latency_short=3)
    assert depth == 3 * W * C + 1
    rng = np.random.default_rng(1)
    xs = [rng.integers(0, 4, (C, H, W)) for _ in range(3)]
    words = sum((feature_words(x, 2, 1) for x in xs), [])
    ref = [nn.pool2d(x[None].astype(float), 3, 2, (1, 1, 1, 1))[0].astype(np.int64) + x[:, ::2, ::2] for x in xs]
    want = sum((feature_words(r, 4, 1) for r in ref), [])
    got, st = run_ports(_Join(C, H, W, depth, stride=2), {"i": words}, {"o": len(want)}, gap=0.0, stall=0.0)
    assert got["o"] == want
    per = len(want) // 3
    assert (st["o"][-1] - st["o"][per - 1]) / 2 == window_cycles(H, W, C, 3, 2, (1, 1, 1, 1))
    got, _ = run_ports(_Join(C, H, W, depth, stride=2), {"i": words}, {"o": len(want)}, seed=5)
    assert got["o"] == want


class _AddThreshold(wiring.Component):
    """A residual join as the lead will wire it: AddBlock -> ThresholdUnit (gen/graph.py's
    AddStage then ThresholdStage)."""

    def __init__(self, add_blk, thr_unit):
        self.add_blk, self.thr = add_blk, thr_unit
        super().__init__({"a": In(stream.Signature(add_blk.a.payload.shape())),
                          "b": In(stream.Signature(add_blk.b.payload.shape())),
                          "o": Out(stream.Signature(thr_unit.o.payload.shape()))})

    def elaborate(self, platform):
        m = Module()
        m.submodules.add = self.add_blk
        m.submodules.thr = self.thr
        wiring.connect(m, wiring.flipped(self.a), self.add_blk.a)
        wiring.connect(m, wiring.flipped(self.b), self.add_blk.b)
        wiring.connect(m, self.add_blk.o, self.thr.i)
        wiring.connect(m, self.thr.o, wiring.flipped(self.o))
        m.d.comb += self.thr.t_wr.valid.eq(0)
        return m


def test_residual_join_add_then_thresholds_is_the_golden_trace(tmp_path):
    """The b1add + b1out stages of a lowered residual net on AddBlock + the existing
    ThresholdUnit: codes identical to the golden integer path."""
    from bitplane.gen.golden import Golden
    from bitplane.gen.lower import signed_bits
    from bitplane.gen.spec import load_network
    from bitplane.hw.bitserial import ThresholdParams, ThresholdUnit
    from tests.support.graphnets import resnet_spec, write_net
    g = Golden(load_network(write_net(tmp_path, resnet_spec())))
    st = {s.name: s for s in g.lowered.stages}
    add, thr = st["b1add"], st["b1out"]
    x = np.random.default_rng(12).integers(0, 256, (2, 3, 8, 8)).astype(np.uint8)
    _, tr = g.run_int(x, trace=True)
    abits = st["b1c2"].acc_bits
    tw = signed_bits(thr.acc_lo - 1, thr.acc_hi + 1)
    T = thr.thresholds.shape[1]
    p = ThresholdParams(rows=4, pe=2, in_bits=add.out.bits, n_thresholds=T, width=tw, levels=thr.out_act.L,
                        init_thresholds=tuple(map(tuple, thr.thresholds.tolist())),
                        init_dirs=tuple(map(tuple, thr.up.astype(int).tolist())))
    dut = _AddThreshold(AddBlock(4, 2, abits, 3, add.out.bits, add.mult[0], add.mult[1]), ThresholdUnit(p))
    wa = sum((_words(f, abits, 2, True) for f in tr["b1c2"]), [])
    wb = sum((_words(f, 3, 2, True) for f in add.in_forms[1].level_ints[tr["stem"]]), [])
    want = sum((_words(f, p.out_bits, 2, False) for f in tr["b1out"]), [])
    got, _ = run_ports(dut, {"a": wa, "b": wb}, {"o": len(want)}, seed=4)
    assert got["o"] == want


def test_recode_and_channel_slice():
    """Codes -> level integers through a table (two's complement out), sign extension, and a
    slice keeping channels 2..5 of 8 (two lanes per word) under gaps and backpressure."""
    words = [0b01_10, 0b11_00, 0b10_01]                       # two 2-bit lanes per word
    got, _ = run_ports(Recode(2, 2, 4, table=[-1, 1, 3, -2]), {"i": words}, {"o": 3}, seed=5)
    tab = {0: -1, 1: 1, 2: 3, 3: -2}
    assert got["o"] == [(tab[w & 3] & 15) | ((tab[w >> 2] & 15) << 4) for w in words]
    got, _ = run_ports(Recode(1, 3, 8, True), {"i": [3, 4, 7]}, {"o": 3}, seed=6)
    assert got["o"] == [3, 0xFC, 0xFF]
    rng = np.random.default_rng(7)
    xs = [rng.integers(0, 8, (8, 2, 3)) for _ in range(2)]
    words = sum((_words(x, 3, 2, False) for x in xs), [])
    want = sum((_words(x[2:6], 3, 2, False) for x in xs), [])
    got, _ = run_ports(ChannelSlice(8, 2, 2, 4, 3), {"i": words}, {"o": len(want)}, seed=8)
    assert got["o"] == want
