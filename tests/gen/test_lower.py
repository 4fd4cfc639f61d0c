"""Integer lowering: kernels, thresholds, pooling placement, accumulator bounds."""
import itertools

import numpy as np
import pytest
import yaml
from hypothesis import given, settings

from bitplane.gen import nn
from bitplane.gen.golden import Golden
from bitplane.gen.lower import MatmulStage, apply_thresholds, lower, signed_bits
from bitplane.gen.quant import bitplane_dot
from bitplane.gen.spec import load_network
from tests.support.netgen import network_plans, random_inputs, write_network

SETTINGS = settings(max_examples=25)


def naive_conv(x, w, s, pads, groups, pad_value):
    t, b, l, r = pads
    x = np.pad(x, ((0, 0), (0, 0), (t, b), (l, r)), constant_values=pad_value)
    N, C, H, W = x.shape
    O, Cg, K, _ = w.shape
    OH, OW = (H - K) // s + 1, (W - K) // s + 1
    out = np.zeros((N, O, OH, OW))
    Og = O // groups
    for n, o, i, j in itertools.product(range(N), range(O), range(OH), range(OW)):
        g = o // Og
        out[n, o, i, j] = np.sum(x[n, g * Cg:(g + 1) * Cg, i * s:i * s + K, j * s:j * s + K] * w[o])
    return out


def naive_pool(x, k, s, pads, maximize):
    t, b, l, r = pads
    N, C, H, W = x.shape
    OH, OW = (H + t + b - k) // s + 1, (W + l + r - k) // s + 1
    out = np.zeros((N, C, OH, OW))
    for n, c, i, j in itertools.product(range(N), range(C), range(OH), range(OW)):
        vals = [x[n, c, y, z] for y in range(i * s - t, i * s - t + k) for z in range(j * s - l, j * s - l + k)
                if 0 <= y < H and 0 <= z < W]
        out[n, c, i, j] = max(vals) if maximize[c] else min(vals)
    return out


@pytest.mark.parametrize("k,s,pads,groups", [(3, 1, (1, 1, 1, 1), 1), (3, 2, (0, 1, 0, 1), 2),
                                             (5, 2, (2, 2, 2, 2), 1), (1, 1, (0, 0, 0, 0), 4),
                                             (3, 1, (0, 0, 0, 0), 2)])
def test_conv_kernel_matches_naive(k, s, pads, groups):
    rng = np.random.default_rng(k * 10 + s)
    x = rng.integers(-3, 4, (2, 4, 7, 6)).astype(float)
    w = rng.integers(-2, 3, (4, 4 // groups, k, k)).astype(float)
    got = nn.conv2d(x, w, s, pads, groups, pad_value=-1.0)
    assert np.array_equal(got, naive_conv(x, w, s, pads, groups, -1.0))


@pytest.mark.parametrize("k,s,pads", [(2, 2, (0, 0, 0, 0)), (3, 2, (1, 1, 1, 1)), (2, 2, (0, 1, 0, 1)),
                                      (3, 1, (0, 0, 0, 0))])
def test_pool_kernel_matches_naive(k, s, pads):
    rng = np.random.default_rng(k)
    x = rng.integers(-9, 9, (2, 3, 7, 5)).astype(float)
    mx = np.array([True, False, True])
    assert np.array_equal(nn.pool2d(x, k, s, pads, mx), naive_pool(x, k, s, pads, mx))


def test_signed_bits():
    assert signed_bits(-128, 127) == 8
    assert signed_bits(-129, 0) == 9
    assert signed_bits(0, 128) == 9
    assert signed_bits(0, 0) == 1


def _threshold_stages(plan, tmp_path, seed):
    y = write_network(plan, tmp_path / f"n{seed}", seed=seed)
    return [s for s in lower(load_network(y)).stages if isinstance(s, MatmulStage) and not s.raw]


@SETTINGS
@given(network_plans())
def test_thresholds_reproduce_the_activation_function(tmp_path_factory, plan):
    """apply_thresholds(acc) == f(acc) at every threshold, its neighbours, the range ends and at random."""
    tmp = tmp_path_factory.mktemp("thr")
    rng = np.random.default_rng(0)
    for st in _threshold_stages(plan, tmp, 0):
        C = st.out_channels
        T = st.thresholds
        probe = np.concatenate([T.ravel() - 1, T.ravel(), T.ravel() + 1,
                                [st.acc_lo, st.acc_hi, 0],
                                rng.integers(st.acc_lo, st.acc_hi + 1, 200)])
        probe = np.clip(probe, st.acc_lo, st.acc_hi)
        acc = np.tile(probe[:, None], (1, C))                       # [P, C]
        want = st.f(acc.astype(np.float64), 2)
        got = apply_thresholds(acc, T, st.up)
        assert np.array_equal(got, want), st.name
        assert T.min() >= st.acc_lo - 1 and T.max() <= st.acc_hi + 1
        assert signed_bits(st.acc_lo - 1, st.acc_hi + 1) <= st.acc_bits + 1


def _net(tmp_path, layers, params, shape=(2, 6, 6)):
    spec = {"name": "t", "weights": "t.npz", "input": {"shape": list(shape), "bits": 8, "scale": 1 / 255},
            "layers": layers}
    (tmp_path / "t.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    np.savez(tmp_path / "t.npz", **params)
    return load_network(tmp_path / "t.yaml")


def _bn(name, gamma):
    C = len(gamma)
    return {f"{name}/gamma": np.array(gamma, float), f"{name}/beta": np.full(C, 0.5),
            f"{name}/mean": np.zeros(C), f"{name}/var": np.ones(C)}


@pytest.mark.parametrize("order,nonlin,where,maximize", [
    (["bn", "pool"], "clip01", "codes", [True, True]),      # pool on z: codes, max whatever gamma's sign
    (["pool", "bn"], "clip01", "codes", [True, False]),     # pool on y before a negative gamma: min-pool
    (["bn", "pool"], "cabs", "acc", [True, False]),         # non-monotone |x|: pool accumulators
    (["pool", "bn"], "cabs", "acc", [True, True]),
])
def test_pool_placement(tmp_path, order, nonlin, where, maximize):
    rng = np.random.default_rng(0)
    layers = [{"name": "c", "op": "conv", "out_channels": 2, "kernel": 3, "padding": "same",
               "weight_quant": {"type": "dorefa", "bits": 2}}]
    for o in order:
        layers.append({"name": "bn", "op": "batchnorm"} if o == "bn" else
                      {"name": "p", "op": "maxpool", "kernel": 2, "stride": 2, "padding": "same"})
    layers += [{"name": "a", "op": "quant_act", "nonlin": nonlin, "quant": {"type": "dorefa", "bits": 2}},
               {"name": "fc", "op": "dense", "out_features": 3, "weight_quant": {"type": "int", "bits": 8}}]
    params = {"c/W": rng.normal(size=(2, 2, 3, 3)), "fc/W": rng.normal(size=(3, 18)), **_bn("bn", [1.0, -1.0])}
    net = _net(tmp_path, layers, params)
    st = lower(net).stages[0]
    assert st.pool.where == where
    assert st.pool.maximize.tolist() == maximize
    from bitplane.gen.compare import compare_paths
    r = compare_paths(Golden(net), random_inputs(net, 32))
    s0 = r["stages"][0]
    assert r["unexplained"] == 0                       # replay exact, rounding within bound
    assert s0["code_mismatches"] <= 0.01 * s0["elements"]      # only threshold ties


def test_negative_gamma_gives_falling_thresholds(tmp_path):
    rng = np.random.default_rng(0)
    layers = [{"name": "c", "op": "conv", "out_channels": 2, "kernel": 3, "padding": "same",
               "weight_quant": {"type": "dorefa", "bits": 2}},
              {"name": "bn", "op": "batchnorm"},
              {"name": "a", "op": "quant_act", "nonlin": "clip01", "quant": {"type": "dorefa", "bits": 2}},
              {"name": "fc", "op": "dense", "out_features": 3, "weight_quant": {"type": "int", "bits": 8}}]
    net = _net(tmp_path, layers, {"c/W": rng.normal(size=(2, 2, 3, 3)), "fc/W": rng.normal(size=(3, 72)),
                                  **_bn("bn", [0.3, -0.3])})
    st = lower(net).stages[0]
    assert st.up[0].all() and not st.up[1].any()
    assert np.all(np.diff(st.thresholds[0]) >= 0) and np.all(np.diff(st.thresholds[1]) <= 0)


@pytest.mark.parametrize("wq,aq", [({"type": "int", "bits": 8}, None),
                                   ({"type": "dorefa", "bits": 3}, ("clip01", {"type": "dorefa", "bits": 2})),
                                   ({"type": "ttq"}, ("relu", {"type": "lq", "bits": 2})),
                                   ({"type": "lq", "bits": 2}, ("none", {"type": "sign"})),
                                   ({"type": "sign"}, ("relu", {"type": "uint", "bits": 4, "scale": 0.1}))])
def test_accumulator_bound_is_reached_and_fits(tmp_path, wq, aq):
    """The proven range [lo, hi] is attained by extreme codes and fits acc_bits exactly."""
    rng = np.random.default_rng(0)
    layers, params = [], {}
    if aq is not None:
        layers += [{"name": "c", "op": "conv", "out_channels": 2, "kernel": 1,
                    "weight_quant": {"type": "int", "bits": 8}},
                   {"name": "a", "op": "quant_act", "nonlin": aq[0], "quant": aq[1]}]
        params["c/W"] = rng.normal(size=(2, 2, 1, 1))
        if aq[1]["type"] == "lq":
            params["a/basis"] = np.array([0.3, 0.7])
    layers.append({"name": "fc", "op": "dense", "out_features": 4, "weight_quant": wq})
    params["fc/W"] = rng.normal(size=(4, 72))
    if wq["type"] == "ttq":
        params.update({"fc/Wp": np.array(0.8), "fc/Wn": np.array(1.1)})
    if wq["type"] == "lq":
        params["fc/basis"] = np.array([[0.1, 0.2, 0.3, 0.4], [0.5, 0.6, 0.7, 0.9]])
    st = lower(_net(tmp_path, layers, params)).last
    wb, ab = st.wq.int_basis, st.in_act.int_basis
    C = st.out_channels
    wv = wb.int_values(np.tile(np.arange(1 << wb.planes), (C, 1)))
    best = {}
    for c in range(C):
        for wc in range(1 << wb.planes):
            for n in range(st.in_act.L):
                prod = int(wv[c, wc]) * int(st.in_act.level_ints[n])
                for key, better in (("hi", prod > best.get("hi", (-np.inf,))[0]),
                                    ("lo", prod < best.get("lo", (np.inf,))[0])):
                    if better:
                        best[key] = (prod, c, wc, st.in_act.level_codes[n])
    for key, want in (("hi", st.acc_hi), ("lo", st.acc_lo)):
        _, c, wc, ac = best[key]
        got = bitplane_dot(np.full(st.n_dot, wc), np.full(st.n_dot, ac), wb, ab, c)
        assert got == want
    bits = st.acc_bits
    assert -(1 << (bits - 1)) <= st.acc_lo and st.acc_hi <= (1 << (bits - 1)) - 1
    assert not (-(1 << (bits - 2)) <= st.acc_lo and st.acc_hi <= (1 << (bits - 2)) - 1)


def test_int_path_reaches_the_bound_end_to_end(tmp_path):
    """A dense layer whose weights all quantize to +127 on an all-255 image hits acc_hi."""
    layers = [{"name": "fc", "op": "dense", "out_features": 2, "weight_quant": {"type": "int", "bits": 8}}]
    net = _net(tmp_path, layers, {"fc/W": np.ones((2, 72))})
    g = Golden(net)
    acc = g.run_int(np.full((1, 2, 6, 6), 255, np.uint8))
    assert acc.tolist() == [[g.lowered.last.acc_hi] * 2] and g.lowered.last.acc_hi == 72 * 127 * 255


def test_grouped_conv_int_matches_float(tmp_path):
    rng = np.random.default_rng(5)
    layers = [{"name": "c", "op": "conv", "out_channels": 4, "kernel": 3, "stride": 2, "padding": "same",
               "groups": 2, "bias": True, "weight_quant": {"type": "int", "bits": 8}}]
    net = _net(tmp_path, layers, {"c/W": rng.normal(size=(4, 1, 3, 3)), "c/b": rng.normal(size=4)})
    g = Golden(net)
    x = random_inputs(net, 8)
    np.testing.assert_allclose(g.dequantize(g.run_int(x)), g.run_float(x), rtol=1e-10, atol=1e-12)


def test_implicit_int8_for_unquantized_layers(tmp_path):
    rng = np.random.default_rng(6)
    layers = [{"name": "fc", "op": "dense", "out_features": 3}]
    net = _net(tmp_path, layers, {"fc/W": rng.normal(size=(3, 72))})
    st = lower(net).last
    assert st.weight_quant_implicit and st.wq.qtype == "int" and st.wq.bits == 8
    g = Golden(net)
    x = random_inputs(net, 16)
    f, i = g.run_float(x), g.dequantize(g.run_int(x))
    assert np.abs(f - i).max() <= 0.02 * np.abs(f).max()     # int8 per-channel rounding only
