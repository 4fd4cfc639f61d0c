"""A first conv that pads the input with one value per channel (``pad_value: [..]``, what a
folded mean/std normalisation needs): float path, integer path in fractional planes below
the input code (exact for dyadic values, within 2^-9 of a code step otherwise), and the
refusals."""

import numpy as np
import pytest

from bitplane.core.errors import SpecError
from bitplane.gen import nn
from bitplane.gen.compare import compare_paths
from bitplane.gen.golden import Golden
from bitplane.gen.lower import PAD_FRAC_BITS, lower
from bitplane.gen.spec import load_network
from tests.support.graphnets import write_net

SCALE = 1 / 255


def _spec(pad_value, first_quant=True, second_pad=None):
    c1 = {"name": "c1", "op": "conv", "out_channels": 4, "kernel": 3, "stride": 2, "padding": "same", "bias": True,
          "pad_value": pad_value}
    if first_quant:
        c1["weight_quant"] = {"type": "int", "bits": 6}
    layers = [c1, {"name": "bn1", "op": "batchnorm"},
              {"name": "a1", "op": "quant_act", "nonlin": "relu", "quant": {"type": "uint", "bits": 3, "scale": 0.25}}]
    if second_pad is not None:
        layers += [{"name": "c2", "op": "conv", "out_channels": 4, "kernel": 3, "padding": "same",
                    "pad_value": second_pad, "weight_quant": {"type": "int", "bits": 4}},
                   {"name": "a2", "op": "quant_act", "nonlin": "relu", "quant": {"type": "uint", "bits": 3,
                                                                                  "scale": 0.25}}]
    layers.append({"name": "fc", "op": "dense", "out_features": 5, "weight_quant": {"type": "int", "bits": 8}})
    return {"name": "padnet", "input": {"shape": [3, 9, 8], "bits": 8, "scale": SCALE}, "layers": layers}


def _x(n=6, seed=3):
    return np.random.default_rng(seed).integers(0, 256, (n, 3, 9, 8)).astype(np.uint8)


def test_float_path_pads_each_channel_with_its_value(tmp_path):
    pv = [0.3, 0.5, 0.9]
    net = load_network(write_net(tmp_path, _spec(pv, first_quant=False)))
    g = Golden(net)
    L = net.layer("c1")
    x = _x()
    v = x.astype(np.float64) * SCALE
    # the padded image by hand: a constant border per channel
    t, b, l, r = L.pads
    xp = np.empty((len(x), 3, 9 + t + b, 8 + l + r))
    for c in range(3):
        xp[:, c] = pv[c]
    xp[:, :, t:t + 9, l:l + 8] = v
    want = nn.conv2d(xp, L.params["W"], 2, (0, 0, 0, 0)) + L.params["b"][None, :, None, None]
    assert np.allclose(g.float_layer(L, v), want, rtol=0, atol=1e-12)
    # and the border differs from zero padding (the test can fail)
    assert not np.allclose(nn.conv2d(v, L.params["W"], 2, L.pads), want - L.params["b"][None, :, None, None])


def test_dyadic_pad_values_are_exact_in_the_integer_path(tmp_path):
    """Values on a 1/4 code grid: 2 fractional planes, integer path == float path."""
    pv = [v * SCALE for v in (12.25, 0.5, 200.75)]
    net = load_network(write_net(tmp_path, _spec(pv)))
    st = lower(net).stages[0]
    assert st.in_act.frac_bits == 2 and st.in_act.planes == 10
    assert list(st.pad_codes) == [49, 2, 803]
    assert st.describe()["pad_frac_bits"] == 2
    rep = compare_paths(Golden(net), _x(24))
    first = rep["stages"][0]
    assert first["stage"] == "c1" and first["rounding_violations"] == 0 and first["replay_mismatches"] == 0


def test_imagenet_mean_is_held_within_half_a_fractional_step(tmp_path):
    mean = np.array([0.406, 0.456, 0.485]) * 255
    net = load_network(write_net(tmp_path, _spec([float(m * SCALE) for m in mean])))
    g = Golden(net)
    st = g.lowered.stages[0]
    assert st.in_act.frac_bits == PAD_FRAC_BITS
    held = np.asarray(st.pad_values()) / SCALE
    assert np.all(np.abs(held - mean) <= 2.0 ** -(PAD_FRAC_BITS + 1) + 1e-12)
    # accumulators: the integer conv over the raw codes, each channel padded with its code
    x = _x(4)
    acc = st.acc(g.check_input(x))
    t, b, l, r = st.pads
    xp = np.empty((4, 3, 9 + t + b, 8 + l + r))
    for c in range(3):
        xp[:, c] = st.pad_codes[c]
    xp[:, :, t:t + 9, l:l + 8] = x.astype(np.int64) << PAD_FRAC_BITS
    assert np.array_equal(acc, nn.conv2d(xp, st.w_int, 2, (0, 0, 0, 0)).astype(np.int64))
    # interior pixels see no padding: y_int = y_float there up to float rounding
    L = net.layer("c1")
    y_f = g.float_layer(L, x.astype(np.float64) * SCALE)
    y_i = st.scale[None, :, None, None] * acc + st.bias[None, :, None, None]
    assert np.allclose(y_i[:, :, 1:-1, 1:-1], y_f[:, :, 1:-1, 1:-1], rtol=1e-12, atol=1e-12)
    w = np.abs(g.fq_weights(L)).sum(axis=(1, 2, 3))
    assert np.all(np.abs(y_i - y_f) <= w[None, :, None, None] * SCALE * 2.0 ** -(PAD_FRAC_BITS + 1) + 1e-9)


def test_per_channel_padding_is_refused_inside_the_network(tmp_path):
    net = load_network(write_net(tmp_path, _spec(0.0, second_pad=[0.0, 0.25, 0.5, 0.0])))
    with pytest.raises(SpecError, match="layer 'c2'.*network input"):
        lower(net)


def test_pad_value_list_is_checked(tmp_path):
    with pytest.raises(SpecError, match="layer 'c1'.*pad_value.*list of 3 numbers"):
        load_network(write_net(tmp_path, _spec([0.1, 0.2])))
    with pytest.raises(SpecError, match="outside the input's range"):
        lower(load_network(write_net(tmp_path, _spec([0.1, 2.0, 0.2]), name="big")))
