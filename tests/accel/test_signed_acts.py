"""Signed activations (``quant: {type: int, bits: k, narrow: ...}``) and the input stage in RTL.

A small conv net with everything FINN's A2 models need and more: input preprocessing (2x-1)
and a signed 8-bit input quantizer on 3 channels (the input stage: identity 1x1 conv with
2-bit weights, 255 thresholds), signed narrow 2-bit activations with zero padding (the pad
code is the zero level) and a max-pool on their level indices, signed 3-bit non-narrow
activations, a TensorNorm-like batchnorm on the raw outputs. RTL == golden int under random
input gaps and output stalls, and the float path agrees with the int path.
"""
from __future__ import annotations

import numpy as np

from bitplane.gen.compare import compare_paths
from bitplane.gen.compile import compile_network
from bitplane.gen.golden import Golden
from bitplane.gen.hwmap import pad_code
from bitplane.gen.plan import plan
from bitplane.gen.spec import load_network
from bitplane.randnet import write_random_network
from bitplane.sim.accel import simulate

SPEC = {"name": "signed", "input": {"shape": [3, 6, 6], "bits": 8, "scale": 1 / 255}, "layers": [
    {"name": "pre", "op": "batchnorm", "eps": 0.0},
    {"name": "qin", "op": "quant_act", "nonlin": "none",
     "quant": {"type": "int", "bits": 8, "narrow": False, "scale": 2 ** -7}},
    {"name": "c0", "op": "conv", "out_channels": 4, "kernel": 3, "padding": 1, "weight_quant": {"type": "sign"}},
    {"name": "bn0", "op": "batchnorm", "eps": 1e-4},
    {"name": "a0", "op": "quant_act", "nonlin": "none",
     "quant": {"type": "int", "bits": 2, "narrow": True, "scale": 1.0}},
    {"name": "p0", "op": "maxpool", "kernel": 2},
    {"name": "c1", "op": "conv", "out_channels": 4, "kernel": 3, "padding": 1,
     "weight_quant": {"type": "int", "bits": 2}},
    {"name": "bn1", "op": "batchnorm", "eps": 1e-4},
    {"name": "a1", "op": "quant_act", "nonlin": "none",
     "quant": {"type": "int", "bits": 3, "narrow": False, "scale": 0.25}},
    {"name": "fc", "op": "dense", "out_features": 5, "weight_quant": {"type": "dorefa", "bits": 1}},
    {"name": "tn", "op": "batchnorm", "eps": 1e-4}]}


def test_signed_activation_network_bit_exact_in_rtl(tmp_path):
    y = write_random_network(SPEC, tmp_path / "src", seed=1)
    z = dict(np.load(y.with_suffix(".npz")))
    z.update({"pre/gamma": np.full(3, 2.0), "pre/beta": np.full(3, -1.0), "pre/mean": np.zeros(3),
              "pre/var": np.ones(3)})
    np.savez(y.with_suffix(".npz"), **z)
    net = load_network(y)
    g = Golden(net)
    st = g.lowered.stages
    assert st[0].identity and st[0].thresholds.shape[1] == 255 and st[0].in_act.qtype == "uint"
    assert pad_code(st[1]) == 128 and pad_code(st[3]) == 1      # the code of the value 0
    x = np.random.default_rng(0).integers(0, 256, (8, 3, 6, 6)).astype(np.uint8)
    _, trace = g.run_int(x, trace=True)
    assert set(np.unique(trace["c0"])) == {0, 1, 2}            # all three narrow levels used
    r = compare_paths(g, x)
    assert r["unexplained"] == 0 and r["argmax_agreement"] == 1.0
    m = compile_network(net, tmp_path / "out", target_fps=20000, progress=lambda s: None)
    want = g.run_int(x)
    out, _ = simulate(tmp_path / "out", x, gap_pct=20, stall_pct=30, seed=3)
    assert np.array_equal(out, want)
    out2, st2 = simulate(tmp_path / "out", x[:4])
    assert np.array_equal(out2, want[:4])
    assert abs(st2["cycles_per_frame"] - m["cycles_per_frame"]) <= 0.05 * m["cycles_per_frame"]


FC_SPEC = {"name": "flatin", "input": {"shape": [3, 5, 4], "bits": 8, "scale": 1 / 255}, "layers": [
    {"name": "pre", "op": "batchnorm", "eps": 0.0},
    {"name": "qin", "op": "quant_act", "nonlin": "none", "quant": {"type": "sign"}},
    {"name": "fc0", "op": "dense", "out_features": 8, "weight_quant": {"type": "sign"}},
    {"name": "bn0", "op": "batchnorm", "eps": 1e-4},
    {"name": "a0", "op": "quant_act", "nonlin": "none", "quant": {"type": "sign"}},
    {"name": "fc1", "op": "dense", "out_features": 5, "weight_quant": {"type": "sign"}},
    {"name": "bn1", "op": "batchnorm", "eps": 1e-4}]}


def test_input_stage_is_a_threshold_unit_on_several_codes_per_word(tmp_path):
    """FINN's FC nets binarize the input (2x-1, then sign) before a dense layer. The input stage is
    a threshold unit (no bit-serial engine) taking as many codes per word as the stream carries,
    not one channel's worth: 4 codes of 3 channels per 32-bit word (channel of lane l in word k:
    (4k + l) mod 3) is bit-exact in RTL under gaps and stalls, at one word per cycle, with its
    threshold memory loaded at run time from the weight image."""
    y = write_random_network(FC_SPEC, tmp_path / "src", seed=2)
    z = dict(np.load(y.with_suffix(".npz")))
    z.update({"pre/gamma": np.array([2.0, 1.5, -2.0]), "pre/beta": np.array([-1.0, -0.5, 1.2]),
              "pre/mean": np.zeros(3), "pre/var": np.ones(3)})
    np.savez(y.with_suffix(".npz"), **z)
    net = load_network(y)
    g = Golden(net)
    assert g.lowered.stages[0].identity and not g.lowered.stages[0].folds
    m = compile_network(net, tmp_path / "out", target_fps=5e6, stream_bits=32, embed_weights=False,
                        progress=lambda s: None)                 # thresholds arrive through s_axis
    first = m["layers"][0]
    assert first["stage"] == "pre" and first["kind"] == "input_threshold" and first["lanes"] == 4
    assert first["thresholds"] == 1 and "pe" not in first
    assert first["cycles_per_frame"] == 60 // 4                     # one word of 4 codes per cycle
    assert [f.stage for f in plan(g.lowered, target_fps=5e6, stream_bits=32)["folds"]] == ["fc0", "fc1"]
    x = np.random.default_rng(4).integers(0, 256, (12, 3, 5, 4)).astype(np.uint8)
    want = g.run_int(x)
    _, trace = g.run_int(x, trace=True)
    assert set(np.unique(trace["pre"])) == {0, 1}                   # both signs occur
    out, _ = simulate(tmp_path / "out", x, gap_pct=25, stall_pct=35, seed=5)
    assert np.array_equal(out, want)
    out2, st2 = simulate(tmp_path / "out", x[:6])
    assert np.array_equal(out2, want[:6])
    assert abs(st2["cycles_per_frame"] - m["cycles_per_frame"]) <= 0.05 * m["cycles_per_frame"]
