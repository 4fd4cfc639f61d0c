"""Random quantized networks for tests: hypothesis strategies + a spec writer.

``network_plans()`` draws a layer list (conv with stride 1/2, same/valid/explicit padding
and groups; dense; batchnorm with negative gammas; maxpool before and after the
activation; every quantizer type). ``write_network(plan, dir, seed)`` writes the YAML +
NPZ with random weights and batch-norm statistics calibrated on random inputs so that
every activation level is actually used.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from hypothesis import strategies as st

from bitplane.randnet import write_random_network
from bitplane.gen.spec import window_geometry

WEIGHT_QUANTS = [
    {"type": "dorefa", "bits": 1}, {"type": "dorefa", "bits": 2}, {"type": "dorefa", "bits": 3},
    {"type": "sign"}, {"type": "ttq"}, {"type": "lq", "bits": 1}, {"type": "lq", "bits": 2},
    {"type": "lq", "bits": 3}, {"type": "int", "bits": 2}, {"type": "int", "bits": 4}, {"type": "int", "bits": 8},
]
ACT_QUANTS = [
    ("clip01", {"type": "dorefa", "bits": 1}), ("clip01", {"type": "dorefa", "bits": 2}),
    ("clip01", {"type": "dorefa", "bits": 4}), ("cabs", {"type": "dorefa", "bits": 2}),
    ("none", {"type": "sign"}), ("relu", {"type": "lq", "bits": 2}), ("relu", {"type": "lq", "bits": 3}),
    ("relu", {"type": "uint", "bits": 3, "scale": 0.125}),
    ("none", {"type": "int", "bits": 2, "narrow": True, "scale": 0.5}),
    ("none", {"type": "int", "bits": 3, "narrow": False, "scale": 0.25}),
]


@st.composite
def network_plans(draw, max_convs: int = 3, weight_quants=None, act_quants=None):
    wqs = weight_quants or WEIGHT_QUANTS
    aqs = act_quants or ACT_QUANTS
    C, H, W = draw(st.integers(1, 3)), draw(st.integers(4, 9)), draw(st.integers(4, 9))
    plan = {"name": "rand", "input": {"shape": [C, H, W], "bits": 8, "scale": 1 / 255}, "layers": []}
    L = plan["layers"]
    prev_sign = False
    n = 0
    for i in range(draw(st.integers(0, max_convs))):
        k = draw(st.sampled_from([1, 3, 5]))
        s = draw(st.sampled_from([1, 2]))
        pad = draw(st.sampled_from(["same", "valid", 1]))
        oh, ow, _ = window_geometry(H, W, k, s, pad)
        if oh < 1 or ow < 1:
            pad = "same"
            oh, ow, _ = window_geometry(H, W, k, s, pad)
        g = draw(st.sampled_from([g for g in (1, 2) if C % g == 0]))
        O = g * draw(st.integers(1, 3))
        conv = {"name": f"conv{i}", "op": "conv", "out_channels": O, "kernel": k, "stride": s,
                "padding": pad, "groups": g, "bias": draw(st.booleans()),
                "weight_quant": dict(draw(st.sampled_from(wqs)))}
        if prev_sign and any(window_geometry(H, W, k, s, pad)[2]):
            conv["pad_value"] = draw(st.sampled_from([-1, 1]))
        L.append(conv)
        C, H, W = O, oh, ow
        nonlin, q = draw(st.sampled_from(aqs))
        pool_pos = draw(st.sampled_from(["none", "none", "pre_bn", "post_bn", "post_act"])) \
            if min(H, W) >= 2 else "none"
        pool = {"name": f"pool{i}", "op": "maxpool", "kernel": 2, "stride": 2,
                "padding": draw(st.sampled_from(["valid", "same"]))}
        if pool_pos == "pre_bn":
            L.append(pool)
        if draw(st.integers(0, 9)) > 0:
            L.append({"name": f"bn{i}", "op": "batchnorm", "eps": 1e-4})
        if pool_pos == "post_bn":
            L.append(pool)
        L.append({"name": f"act{i}", "op": "quant_act", "nonlin": nonlin, "quant": dict(q)})
        if pool_pos == "post_act":
            L.append(pool)
        if pool_pos != "none":
            H, W = window_geometry(H, W, 2, 2, pool["padding"])[:2]
        prev_sign = q["type"] == "sign"
        n += 1
    for i in range(draw(st.integers(0, 1))):
        L.append({"name": f"fc{i}", "op": "dense", "out_features": draw(st.integers(2, 8)),
                  "bias": draw(st.booleans()), "weight_quant": dict(draw(st.sampled_from(wqs)))})
        L.append({"name": f"fcbn{i}", "op": "batchnorm", "eps": 1e-4})
        nonlin, q = draw(st.sampled_from(aqs))
        L.append({"name": f"fcact{i}", "op": "quant_act", "nonlin": nonlin, "quant": dict(q)})
    L.append({"name": "out", "op": "dense", "out_features": draw(st.integers(2, 10)), "bias": True,
              "weight_quant": dict(draw(st.sampled_from(wqs + [{"type": "int", "bits": 8}])))})
    if draw(st.booleans()):
        L.append({"name": "outbn", "op": "batchnorm", "eps": 1e-4})
    return plan


def write_network(plan: dict, out_dir, seed: int = 0, n_calib: int = 64) -> Path:
    """Write ``<out_dir>/<name>.yaml`` + ``.npz`` for a plan; return the YAML path."""
    return write_random_network(plan, out_dir, seed=seed, n_calib=n_calib)


def random_inputs(net, n: int, seed: int = 1):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 1 << net.input_bits, (n, *net.input_shape)).astype(np.uint8)
