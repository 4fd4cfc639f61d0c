"""Small conv/dense networks around one block and their stage inputs (hw and RTL block tests)."""
from __future__ import annotations

import numpy as np

from bitplane.gen.golden import Golden
from bitplane.gen.spec import load_network
from bitplane.randnet import write_random_network


def conv_net(C, H, W, K, s, padding, O, wq, act, pool=None, name="blk"):
    layers = [{"name": "c", "op": "conv", "out_channels": O, "kernel": K, "stride": s, "padding": padding,
               "bias": True, "weight_quant": wq}]
    if pool == "pre_bn":
        layers.append({"name": "p", "op": "maxpool", "kernel": 2, "stride": 2, "padding": "same"})
    layers.append({"name": "bn", "op": "batchnorm", "eps": 1e-4})
    if pool == "post_bn":
        layers.append({"name": "p", "op": "maxpool", "kernel": 2, "stride": 2, "padding": "same"})
    layers.append({"name": "a", "op": "quant_act", "nonlin": act[0], "quant": act[1]})
    layers.append({"name": "fc", "op": "dense", "out_features": 3, "weight_quant": {"type": "int", "bits": 8}})
    return {"name": name, "input": {"shape": [C, H, W], "bits": 4, "scale": 1 / 15}, "layers": layers}


def stage_and_input(spec, tmp, frames=2, seed=0):
    net = load_network(write_random_network(spec, tmp, seed=seed))
    g = Golden(net)
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 1 << net.input_bits, (frames, *net.input_shape)).astype(np.uint8)
    return g, g.check_input(x)


CONV_CASES = [
    # C, H, W, K, s, padding, O, weights, act, pool, (pe, simd, in_lanes)
    (2, 7, 5, 3, 1, "same", 4, {"type": "dorefa", "bits": 2}, ("clip01", {"type": "dorefa", "bits": 2}), None, (2, 2, 1)),
    (3, 6, 7, 5, 2, "same", 2, {"type": "dorefa", "bits": 1}, ("clip01", {"type": "dorefa", "bits": 1}), None, (1, 3, 3)),
    (4, 5, 5, 1, 1, "valid", 6, {"type": "int", "bits": 4}, ("relu", {"type": "uint", "bits": 3, "scale": 0.125}), None, (3, 2, 2)),
    (2, 9, 7, 3, 2, "valid", 4, {"type": "ttq"}, ("clip01", {"type": "dorefa", "bits": 2}), None, (4, 6, 2)),
    (2, 6, 6, 3, 1, "same", 4, {"type": "lq", "bits": 2}, ("relu", {"type": "lq", "bits": 2}), "post_bn", (2, 2, 2)),
    (3, 7, 7, 3, 1, "same", 4, {"type": "dorefa", "bits": 2}, ("clip01", {"type": "dorefa", "bits": 2}), "pre_bn", (2, 9, 3)),
    (2, 5, 6, 3, 1, "same", 4, {"type": "sign"}, ("none", {"type": "sign"}), "post_bn", (4, 2, 1)),
]
