"""hw/dag.py alone (amaranth.sim, no MVTU): a fork whose branches rejoin, a three-way fork
into a concat, the derived bypass depths against the rows a window must see ahead, and a
depth below the lead deadlocking; against NumPy under random gaps and backpressure."""
import numpy as np
import pytest

from bitplane.gen import nn
from bitplane.hw.dag import INPUT, Dag, bypass_depths, check_graph, edge_fifo_depths
from bitplane.hw.graph_blocks import AddParams, ConcatParams, RecodeParams, WindowPoolParams
from bitplane.hw.layers import REGISTER_LAG
from tests.support.stream_ref import feature_words
from tests.support.streams import run_stream

C, H, W = 2, 6, 5


def _residual(lanes=1):
    """input -> 3x3 max pool (pad 1) -> add <- input (the shortcut)."""
    pool = WindowPoolParams(C, H, W, 3, 1, (1, 1, 1, 1), lanes, 2, False, 2, "max", maximize=(True,) * C)
    add = AddParams(C, H * W, lanes, (2, 2), (False, False), ((1,) * C, (1,) * C), 4)
    return [pool, add], [(INPUT,), (0, INPUT)]


def _frames(n, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 4, (C, H, W)) for _ in range(n)]


def _pool_add(x):
    return nn.pool2d(x[None].astype(float), 3, 1, (1, 1, 1, 1))[0].astype(np.int64) + x


def test_fork_join_is_exact_under_gaps_and_backpressure():
    blocks, inputs = _residual()
    xs = _frames(3)
    words = sum((feature_words(x, 2, 1) for x in xs), [])
    want = sum((feature_words(_pool_add(x), 4, 1) for x in xs), [])
    dut = Dag(blocks, inputs, 2, H * W, C)
    got, _ = run_stream(dut, words, len(want), seed=1, gap=0.3, stall=0.4)
    assert got == want


def test_bypass_depth_is_the_window_lead_plus_slack():
    """The pool's output pixel at row oy needs input rows up to oy+1 while the add has taken
    the shortcut's pixels before the row's first: the shortcut is 2W*C words behind (the
    lead). The slack follows the schedule at the DAG's rate: the pool (540 cycles/frame, the
    slowest) takes a word each 540/60 = 9 cycles, so row oy+1 is complete at cycle
    90*(oy+2); the pool emits the row's first pixel 2*18 + 12 = 48 cycles later (its lag:
    two pixel periods of 18 cycles plus REGISTER_LAG registers), the add 2*2 + 12 = 16 after
    that: by then the fork has delivered ceil((90*(oy+2) + 64) / 9) = 10*(oy+2) + 8 words, of which
    the add has taken 10*oy: 28 words, plus 8 for the registers between and the fork's one."""
    blocks, inputs = _residual()
    lead = bypass_depths(blocks, inputs, H * W, C, slack=False)
    assert lead == {(INPUT, 1, 1): 2 * W * C + 1, (INPUT, 0, 0): C + 1}
    full = bypass_depths(blocks, inputs, H * W, C)
    assert REGISTER_LAG == 12 and [b.lag() for b in blocks] == [48, 16]
    assert full[(INPUT, 1, 1)] == 2 * W * C + 8 + 8 + 1
    d = edge_fifo_depths(blocks, inputs, H * W, C)
    assert d[(INPUT, 1, 1)] == full[(INPUT, 1, 1)] and d[(0, 1, 0)] == 4


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_derived_depth_keeps_the_rate_and_below_the_lead_deadlocks():
    blocks, inputs = _residual()
    xs = _frames(3, seed=2)
    words = sum((feature_words(x, 2, 1) for x in xs), [])
    want = sum((feature_words(_pool_add(x), 4, 1) for x in xs), [])
    dut = Dag(blocks, inputs, 2, H * W, C)
    got, stamps = run_stream(dut, words, len(want), gap=0.0, stall=0.0)
    assert got == want
    per = H * W * C
    assert (stamps[-1] - stamps[per - 1]) / 2 == blocks[0].cycles()     # the pool's rate: 9 words a pixel
    depths = edge_fifo_depths(blocks, inputs, H * W, C)
    # two words below the lead, with the edge's register slices (two words each) around its FIFO
    depths[(INPUT, 1, 1)] = 2 * W * C - 2 - 2 * 2
    with pytest.raises(TimeoutError, match="timeout"):
        run_stream(Dag(blocks, inputs, 2, H * W, C, depths=depths), words[:per], per, gap=0.0, stall=0.0,
                   limit=3000)


def test_three_way_fork_into_a_concat():
    """One source read three times (a widened copy, the pooled map, the map itself), joined
    channel-wise: the n-way fork and the n-input concat."""
    wide = RecodeParams(C, H * W, 1, 2, 2, False)
    pool = WindowPoolParams(C, H, W, 3, 1, (1, 1, 1, 1), 1, 2, False, 2, "max", maximize=(True,) * C)
    cat = ConcatParams((C, C, C), H * W, 1, 2)
    blocks, inputs = [wide, pool, cat], [(INPUT,), (INPUT,), (0, 1, INPUT)]
    check_graph(blocks, inputs, 2)
    xs = _frames(2, seed=3)
    words = sum((feature_words(x, 2, 1) for x in xs), [])
    pooled = [nn.pool2d(x[None].astype(float), 3, 1, (1, 1, 1, 1))[0].astype(np.int64) for x in xs]
    want = sum((feature_words(np.concatenate([x, p, x]), 2, 1) for x, p in zip(xs, pooled)), [])
    got, _ = run_stream(Dag(blocks, inputs, 2, H * W, C), words, len(want), seed=4, gap=0.2, stall=0.3)
    assert got == want


def test_check_graph_refuses_bad_wiring():
    blocks, inputs = _residual()
    with pytest.raises(ValueError, match="not an earlier block"):
        check_graph(blocks, [(INPUT,), (1, INPUT)], 2)
    with pytest.raises(ValueError, match="2-bit port fed by a 4-bit stream"):
        check_graph(blocks, [(INPUT,), (0, INPUT)], 4)
    with pytest.raises(ValueError, match="output is not used"):
        check_graph(blocks + [blocks[1]], [(INPUT,), (0, INPUT), (0, INPUT)], 2)
