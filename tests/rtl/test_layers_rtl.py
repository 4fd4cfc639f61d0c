"""Conv and dense blocks on Verilator (cocotb): bit-exact vs the golden int path under random
input gaps and output backpressure, frames back to back; generated Verilog lints clean."""
import numpy as np
import pytest

from bitplane.gen import hwmap
from bitplane.core.packing import pack_words, stream_order, unpack_words
from bitplane.hw.layers import ConvBlock, ConvParams, DenseBlock
from bitplane.hw.lint_waivers import lint
from bitplane.sim.cocotb_run import run
from tests.support.layers import CONV_CASES, conv_net, stage_and_input
from tests.support.verilog import component_verilog

RTL_CONV_CASES = CONV_CASES + [
    # K=5 stride 1 valid with several channel folds; K=1 stride 2 same
    (4, 9, 7, 5, 1, "valid", 6, {"type": "dorefa", "bits": 3}, ("clip01", {"type": "dorefa", "bits": 2}), None, (3, 4, 2)),
    (2, 7, 9, 1, 2, "same", 4, {"type": "dorefa", "bits": 2}, ("cabs", {"type": "dorefa", "bits": 2}), None, (2, 1, 1)),
]


def rtl_block(st, idx, pe, simd, lanes, seed):
    params = hwmap.layer_params(st, pe, simd, lanes)
    blk = ConvBlock(params) if isinstance(params, ConvParams) else DenseBlock(params)
    v = component_verilog(blk, "blk")
    assert lint(v, "blk") == []
    codes_in, out = hwmap.stage_io(st, idx)
    words = sum((pack_words(stream_order(f) if f.ndim == 3 else f.reshape(-1), st.in_act.planes, lanes)
                 for f in codes_in), [])
    want = np.concatenate([stream_order(o) if o.ndim == 3 else o.reshape(-1) for o in out])
    res = run(v, "blk", "tests.support.tb_stream", {"seed": seed, "idle": 0.25, "stall": 0.3, "words": words,
                                          "n_out": len(want) // pe,
                                          "idle_inputs": [f"{n}__valid" for n in ("w_wr", "t_wr", "k_wr")
                                                          if n in blk.signature.members]},
              name="blk")
    got = unpack_words([int(w) for w in res["out"]], blk.out_bits, pe, signed=st.raw)
    assert np.array_equal(got, want)


@pytest.mark.parametrize("case", RTL_CONV_CASES,
                         ids=lambda c: f"C{c[0]}H{c[1]}W{c[2]}K{c[3]}s{c[4]}{c[5]}-{c[7]['type']}-{c[9]}")
def test_conv_block_rtl(case, tmp_path):
    C, H, W, K, s, padding, O, wq, act, pool, (pe, simd, lanes) = case
    g, idx = stage_and_input(conv_net(C, H, W, K, s, padding, O, wq, act, pool), tmp_path, frames=2, seed=K)
    rtl_block(g.lowered.stages[0], idx, pe, simd, lanes, seed=C)


def test_dense_block_rtl(tmp_path):
    g, idx = stage_and_input(conv_net(2, 3, 3, 3, 1, "same", 6, {"type": "dorefa", "bits": 2},
                                      ("clip01", {"type": "dorefa", "bits": 2})), tmp_path)
    conv, dense = g.lowered.stages
    rtl_block(dense, g.run_stage(conv, idx), 3, 18, 6, seed=5)
