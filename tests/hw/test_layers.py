"""Conv and dense blocks built from lowered stages: bit-exact vs the golden model's int path
(amaranth.sim, random input gaps and output backpressure, frames back to back)."""
import numpy as np
import pytest

from bitplane.gen import hwmap
from bitplane.gen.lower import MatmulStage
from bitplane.core.packing import pack_words, stream_order, unpack_words
from bitplane.hw.layers import ConvBlock, ConvParams, DenseBlock
from tests.support.layers import CONV_CASES, conv_net, stage_and_input
from tests.support.streams import run_stream


def check_block(st, idx, pe, simd, in_lanes, seed=0, gap=0.2, stall=0.3):
    params = hwmap.layer_params(st, pe, simd, in_lanes)
    blk = ConvBlock(params) if isinstance(params, ConvParams) else DenseBlock(params)
    codes_in, out = hwmap.stage_io(st, idx)
    words = sum((pack_words(stream_order(f) if f.ndim == 3 else f.reshape(-1), st.in_act.planes, in_lanes)
                 for f in codes_in), [])
    ob = blk.out_bits
    flat = [stream_order(o) if o.ndim == 3 else o.reshape(-1) for o in out]
    n_words = sum(len(f) for f in flat) // pe
    got, stamps = run_stream(blk, words, n_words, seed=seed, gap=gap, stall=stall)
    want = np.concatenate(flat)
    vals = unpack_words(got, ob, pe, signed=st.raw)
    assert np.array_equal(vals, want), (vals[:20], want[:20])
    return params, stamps




@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: f"C{c[0]}H{c[1]}W{c[2]}K{c[3]}s{c[4]}{c[5]}-{c[7]['type']}-{c[9]}")
def test_conv_block_matches_golden(case, tmp_path):
    C, H, W, K, s, padding, O, wq, act, pool, (pe, simd, lanes) = case
    g, idx = stage_and_input(conv_net(C, H, W, K, s, padding, O, wq, act, pool), tmp_path)
    st = g.lowered.stages[0]
    assert isinstance(st, MatmulStage) and st.kind == "conv"
    if pool is not None:
        assert st.pool is not None and st.pool.where == "codes"
        if pool == "pre_bn":
            assert not st.pool.maximize.all()          # negative gammas -> min-pool channels
    check_block(st, idx, pe, simd, lanes, seed=C + K)


@pytest.mark.parametrize("pe,simd,lanes", [(1, 2, 2), (3, 18, 6), (3, 1, 1)])
def test_dense_block_after_conv_matches_golden(tmp_path, pe, simd, lanes):
    g, idx = stage_and_input(conv_net(2, 3, 3, 3, 1, "same", 6, {"type": "dorefa", "bits": 2},
                                      ("clip01", {"type": "dorefa", "bits": 2})), tmp_path)
    conv, dense = g.lowered.stages
    x2 = g.run_stage(conv, idx)
    check_block(dense, x2, pe, simd, lanes, seed=pe)                   # raw int32 accumulators


def test_conv_block_cycles_match_formula(tmp_path):
    g, idx = stage_and_input(conv_net(2, 8, 8, 3, 1, "same", 4, {"type": "dorefa", "bits": 2},
                                      ("clip01", {"type": "dorefa", "bits": 2})), tmp_path, frames=3)
    st = g.lowered.stages[0]
    params, stamps = check_block(st, idx, 2, 6, 2, gap=0, stall=0)
    per_frame = params.cycles()
    # engine-bound: 64 pixels x (4/2) x (18/6) x P_w=2 x P_a=4 (4-bit input codes) = 3072
    assert per_frame == 64 * (4 // 2) * (18 // 6) * st.wq.planes * st.in_act.planes == 3072
    words_per_frame = 64 * 4 // 2
    f1, f2 = stamps[words_per_frame - 1], stamps[2 * words_per_frame - 1]
    assert abs((f2 - f1) - per_frame) <= 4, (f2 - f1, per_frame)
