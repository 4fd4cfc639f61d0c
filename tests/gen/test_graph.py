"""Graph networks, golden model (issue #16): the float path against PyTorch's functional ops
(and TensorFlow's average-pool divisor against an independent loop), the integer path's
exact stages, and int-vs-float agreement on random graph networks."""
import copy

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from bitplane.cli.main import main
from bitplane.core.errors import NotSupportedError, SpecError
from bitplane.gen import nn
from bitplane.gen.golden import Golden
from bitplane.gen.graph import AddStage, AvgPoolStage, FixedPoolStage, LoweredGraph, ThresholdStage
from bitplane.gen.lower import lower
from bitplane.gen.quant import ActQuant
from bitplane.gen.spec import load_network
from tests.support.graphnets import DQ2, bn, conv, graph_nets, preact_spec, qact, resnet_spec, write_net

torch = pytest.importorskip("torch")
F = torch.nn.functional


def _t(x):
    return torch.from_numpy(np.asarray(x, np.float64))


# ------------------------------------------------------------------ float kernels vs PyTorch / TF rule

@pytest.mark.parametrize("k,s,pads", [(3, 2, (1, 1, 1, 1)), (2, 2, (0, 0, 0, 0)), (3, 1, (1, 1, 1, 1)),
                                      (5, 3, (2, 2, 2, 2))])
def test_avgpool_include_pad_matches_pytorch(k, s, pads):
    x = np.random.default_rng(k).normal(size=(2, 3, 9, 8))
    ref = F.avg_pool2d(_t(x), k, s, padding=pads[0], count_include_pad=True).numpy()
    assert np.allclose(nn.avgpool2d(x, k, s, pads, "include_pad"), ref, atol=1e-12)


def test_avgpool_valid_divisor_matches_tensorflow_rule():
    """TF 'SAME' average pooling divides by the inside positions only: an explicit loop."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(1, 2, 7, 6))
    k, s, (t, b, l, r) = 3, 2, (1, 1, 0, 1)
    got = nn.avgpool2d(x, k, s, (t, b, l, r), "valid")
    H, W = 7, 6
    OH, OW = (H + t + b - k) // s + 1, (W + l + r - k) // s + 1
    ref = np.zeros((1, 2, OH, OW))
    for oy in range(OH):
        for ox in range(OW):
            vals = [x[0, :, y, xx] for y in range(oy * s - t, oy * s - t + k)
                    for xx in range(ox * s - l, ox * s - l + k) if 0 <= y < H and 0 <= xx < W]
            ref[0, :, oy, ox] = np.mean(vals, axis=0)
    assert np.allclose(got, ref, atol=1e-12)
    # the rule differs from PyTorch's exactly at the border
    assert not np.allclose(got, nn.avgpool2d(x, k, s, (t, b, l, r), "include_pad"))


def test_global_avgpool_matches_pytorch():
    x = np.random.default_rng(2).normal(size=(3, 4, 5, 6))
    assert np.allclose(nn.global_avgpool(x), F.adaptive_avg_pool2d(_t(x), 1).numpy(), atol=1e-12)


@pytest.mark.parametrize("pads", [(1, 2, 0, 3), (2, 0, 1, 1)])
def test_asymmetric_and_reflect_padding_match_pytorch(pads):
    rng = np.random.default_rng(sum(pads))
    x, w = rng.normal(size=(2, 4, 7, 6)), rng.normal(size=(6, 2, 3, 3))
    tp = (pads[2], pads[3], pads[0], pads[1])                 # torch F.pad: left, right, top, bottom
    for mode, tmode in (("constant", "constant"), ("reflect", "reflect")):
        ref = F.conv2d(F.pad(_t(x), tp, mode=tmode), _t(w), stride=2, groups=2).numpy()
        assert np.allclose(nn.conv2d(x, w, 2, pads, 2, 0.0, mode), ref, atol=1e-10), mode
    ref = F.max_pool2d(F.pad(_t(x), tp, mode="reflect"), 3, 1).numpy()
    assert np.allclose(nn.pool2d(x, 3, 1, pads, True, "reflect"), ref)


def test_symmetric_padding_is_tf_symmetric():
    """TF 'SYMMETRIC' repeats the edge: [a b c] padded by 2 -> [b a | a b c | c b]."""
    x = np.arange(3.0).reshape(1, 1, 1, 3)
    assert nn.pad_nchw(x, (0, 0, 2, 2), 0.0, "symmetric")[0, 0, 0].tolist() == [1, 0, 0, 1, 2, 2, 1]
    assert nn.pad_nchw(x, (0, 0, 2, 2), 0.0, "reflect")[0, 0, 0].tolist() == [2, 1, 0, 1, 2, 1, 0]


# ------------------------------------------------------------------ the whole float path vs PyTorch

def _torch_forward(net, g, x):
    """The spec evaluated with torch.nn.functional (weights fake-quantized by bitplane)."""
    vals = {"input": _t(x.astype(np.float64) * net.input_scale)}
    for L in net.layers:
        ins = [vals[v] for v in L.inputs]
        v = ins[0]
        if L.op == "conv":
            t, b, l, r = L.pads
            mode = L.get("pad_mode", "constant")
            v = F.pad(v, (l, r, t, b), mode="reflect" if mode == "reflect" else "constant")
            v = F.conv2d(v, _t(g.fq_weights(L)), stride=L["stride"], groups=L["groups"])
        elif L.op == "dense":
            v = F.linear(v.flatten(1), _t(g.fq_weights(L)))
        elif L.op == "batchnorm":
            p = {k: _t(L.params[k]) for k in ("mean", "var", "gamma", "beta")}
            v = F.batch_norm(v, p["mean"], p["var"], p["gamma"], p["beta"], False, 0.0, L["eps"])
        elif L.op == "quant_act":
            assert L["quant"]["type"] == "dorefa" and L["nonlin"] == "clip01"
            m = (1 << L["quant"]["bits"]) - 1
            v = torch.round(torch.clamp(v, 0, 1) * m) / m          # half to even, as bitplane's rnd
        elif L.op == "add":
            v = sum(ins[1:], ins[0])
        elif L.op == "concat":
            v = torch.cat(ins, 1)
        elif L.op == "avgpool":
            assert L["divisor"] == "include_pad" and len(set(L.pads)) == 1
            v = F.avg_pool2d(v, L["kernel"], L["stride"], L.pads[0], count_include_pad=True)
        elif L.op == "global_avgpool":
            v = F.adaptive_avg_pool2d(v, 1)
        elif L.op == "maxpool":
            t, b, l, r = L.pads
            v = F.max_pool2d(F.pad(v, (l, r, t, b), mode="reflect"), L["kernel"], L["stride"])
        if "b" in L.params:
            v = v + _t(L.params["b"]).reshape((1, -1) + (1,) * (v.dim() - 2))
        vals[L.name] = v
    return vals[net.layers[-1].name].numpy()


def test_float_path_matches_pytorch_on_a_residual_graph(tmp_path):
    spec = resnet_spec()
    spec["layers"].insert(3, {"name": "mp", "op": "maxpool", "kernel": 3, "stride": 1, "padding": 1,
                              "pad_mode": "reflect"})
    spec["layers"][4]["pad_mode"] = "reflect"                     # b1c1
    spec["layers"].insert(-2, {"name": "ap", "op": "avgpool", "kernel": 3, "stride": 1, "padding": 1})
    spec["layers"].insert(-2, qact("apq"))
    net = load_network(write_net(tmp_path, spec))
    g = Golden(net)
    x = np.random.default_rng(3).integers(0, 256, (16, 3, 8, 8)).astype(np.uint8)
    assert np.allclose(g.run_float(x), _torch_forward(net, g, x), atol=1e-9)


# ------------------------------------------------------------------ integer path

def test_sequential_nets_lower_identically_through_the_graph_path():
    """The graph lowering reproduces the sequential one stage for stage on the shipped nets."""
    from pathlib import Path
    root = Path(__file__).resolve().parents[2] / "examples"
    x = np.random.default_rng(4).integers(0, 256, (8, 1, 28, 28)).astype(np.uint8)
    for name in ("lenet-w2a2", "lenet-lq-w2a2", "lenet-ttq-a2"):
        net = load_network(root / f"{name}.yaml")
        ref = Golden(net).run_int(x)
        net.is_graph = True
        g = Golden(net)
        assert isinstance(g.lowered, LoweredGraph)
        assert [s.name for s in g.lowered.stages] == [s.name for s in lower(load_network(root / f"{name}.yaml")).stages]
        assert np.array_equal(g.run_int(x), ref), name


def test_resnet_int_path_stages_and_exact_forms(tmp_path):
    net = load_network(write_net(tmp_path, resnet_spec()))
    g = Golden(net)
    low = g.lowered
    kinds = {s.name: type(s).__name__ for s in low.stages}
    assert kinds["b1add"] == "AddStage" and kinds["b1out"] == "ThresholdStage" and kinds["gap"] == "AvgPoolStage"
    assert low.inputs["b1add"] == ("b1c2", "stem") and low.inputs["b2sc"] == ("b1out",)
    gap = next(s for s in low.stages if s.name == "gap")
    assert gap.exact                                  # sum pool; 1/16 goes into the dense layer's scale
    fc = low.stages[-1]
    assert fc.in_act.qtype == "uint" and fc.in_act.int_basis.scale == pytest.approx(1 / 3 / 16)
    x = np.random.default_rng(5).integers(0, 256, (64, 3, 8, 8)).astype(np.uint8)
    f = g.run_float(x)
    d = g.dequantize(g.run_int(x))
    assert np.allclose(d, f, atol=1e-9)               # no decision differs here


def test_exact_add_of_equal_scales(tmp_path):
    """Two codes of one quantizer add exactly (multipliers 1, no guard bits)."""
    spec = {"name": "e", "input": {"shape": [2, 6, 6], "bits": 8, "scale": 1 / 255}, "layers": [
        conv("c0", 3), bn("n0"), qact("a0"),
        conv("c1", 3), bn("n1"), qact("a1"),
        {"name": "s", "op": "add", "inputs": ["a0", "a1"]},
        qact("q"),
        conv("c2", 2, k=1, pad=0),
    ]}
    g = Golden(load_network(write_net(tmp_path, spec)))
    add = next(s for s in g.lowered.stages if isinstance(s, AddStage))
    assert add.exact and add.mult.tolist() == [[1, 1, 1], [1, 1, 1]] and add.out.scale[0] == pytest.approx(1 / 3)
    x = np.random.default_rng(6).integers(0, 256, (32, 2, 6, 6)).astype(np.uint8)
    assert np.allclose(g.dequantize(g.run_int(x)), g.run_float(x), atol=1e-9)


def test_add_rescale_is_the_documented_integer_formula(tmp_path):
    net = load_network(write_net(tmp_path, resnet_spec()))
    g = Golden(net)
    add = next(s for s in g.lowered.stages if s.name == "b1add")
    assert add.frac == 16
    x = np.random.default_rng(7).integers(0, 256, (4, 3, 8, 8)).astype(np.uint8)
    _, tr = g.run_int(x, trace=True)
    acc, codes = tr["b1c2"], tr["stem"]
    a0 = g.lowered.stages[0].out_act
    m = add.mult
    want = m[0][None, :, None, None] * acc + m[1][None, :, None, None] * a0.level_ints[codes]
    assert np.array_equal(tr["b1add"], want)
    # scale: the finest resolution (the accumulator's) over 2^16; each multiplier within 1/2
    A = next(s for s in g.lowered.stages if s.name == "b1c2").affine()[0]
    assert np.allclose(add.out.scale, np.minimum(np.abs(A), 1 / 3) / 2 ** 16)
    assert np.all(np.abs(m[0] - A / add.out.scale) <= 0.5) and np.all(np.abs(m[1] - (1 / 3) / add.out.scale) <= 0.5)


def test_valid_divisor_avgpool_int_formula(tmp_path):
    spec = {"name": "v", "input": {"shape": [2, 7, 7], "bits": 8, "scale": 1 / 255}, "layers": [
        conv("c0", 3), bn("n0"), qact("a0", q={"type": "dorefa", "bits": 3}),
        {"name": "ap", "op": "avgpool", "kernel": 3, "stride": 2, "padding": 1, "divisor": "valid"},
        qact("q"),
        conv("c1", 2, k=1, pad=0),
    ]}
    g = Golden(load_network(write_net(tmp_path, spec)))
    ap = next(s for s in g.lowered.stages if isinstance(s, AvgPoolStage))
    assert not ap.exact and ap.frac == 16 and ap.recip[9] == 1 << 16 and ap.recip[6] == 3 << 15
    x = np.random.default_rng(8).integers(0, 256, (64, 2, 7, 7)).astype(np.uint8)
    _, ti = g.run_int(x, trace=True)
    _, tf = g.run_float(x, trace=True)
    # D/n is dyadic for every n here (9/9, 9/6, 9/4): the rescale is exact, the value equal
    assert np.allclose(ap.out.value(ti["ap"]), tf["ap"], atol=1e-12)


# ------------------------------------------------------------------ unquantized ReLU streams (pre-activation)

@pytest.mark.parametrize("act,seed", [("relu", 0), ("relu", 3), ("clip01", 1)])
def test_preact_relu_stream_int_path(act, seed, tmp_path):
    """The unquantized ReLU stream of a pre-activation ResNet (stem bn -> relu -> max-pool ->
    quantizer and identity shortcut; add -> bn -> relu -> quantizer and shortcut): the relu joins
    the fixed form's chain, the pool runs on the accumulators, the thresholds fold it in, the
    add clips the input's product. Measured: every decision and logit of the float path."""
    g = Golden(load_network(write_net(tmp_path, preact_spec(act=act), seed=seed)))
    low = g.lowered
    st = {s.name: s for s in low.stages}
    assert isinstance(st["pool"], FixedPoolStage) and low.inputs["pool"] == ("stem",)
    assert isinstance(st["b1q"], ThresholdStage) and low.inputs["b1q"] == ("pool",)
    b1, b2 = st["b1add"], st["b2add"]
    assert low.inputs["b1add"] == ("b1c2", "pool") and b1.clips[0] is None and b1.clips[1] is not None
    assert low.inputs["b2add"] == ("b1add", "b2c2") and b2.clips[0] is not None and b2.clips[1] is None
    assert b1.frac == 16 and b2.shift == 16
    x = np.random.default_rng(seed).integers(0, 256, (64, 3, 8, 8)).astype(np.uint8)
    fo, ft = g.run_float(x, trace=True)
    qo, it = g.run_int(x, trace=True)
    # the clip engages: some stream values are below the relu's bend (the float path's zeros)
    assert (ft["stem_act"] == 0).mean() > 0.1 and (ft["b2act"] == 0).mean() > 0.1
    for name in ("b1add", "b2add"):
        v, f = st[name].out.value(it[name]), ft[name]
        # the add's value: its 16 guard bits' rescale (relative 2^-17 of each input) and the
        # clipped elements' bound rounded to the sum's unit
        assert np.abs(v - f).max() <= 1e-4 * np.abs(f).max(), name
    for name in ("b1q", "b2q", "last_q"):
        assert np.array_equal(_codes_of(g.net.layer(name), ft[name]), it[name]), name
    assert np.array_equal(g.dequantize(qo).argmax(1), fo.argmax(1))
    assert np.allclose(g.dequantize(qo), fo, atol=1e-9 * (1 + np.abs(fo).max()))


def test_inspect_names_the_clipped_add_input(tmp_path, capsys):
    path = write_net(tmp_path, preact_spec())
    assert main(["inspect", str(path)]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines() if line.strip()}
    assert "input 2 an unquantized relu/clip" in rows["b1add"] and "input 1 an unquantized" in rows["b2add"]


def test_add_clip_is_the_documented_integer_formula(tmp_path):
    """``t = min(max(M * q, L), U)``: the add's sum is ``M_a * acc + t`` with ``t`` the clipped
    product of the relu stream; ``t`` times the sum's unit is ``relu(A * q + B) - B`` (the relu'd
    input without its offset, which the add's offset holds) within the documented bounds: the
    multiplier's rounding (half a unit per unit of ``q``) and, where the relu is 0, the rounding of
    ``M * z`` (half a unit) and the multiplier's at ``q = z``."""
    g = Golden(load_network(write_net(tmp_path, preact_spec(), seed=2)))
    add = next(s for s in g.lowered.stages if s.name == "b1add")
    x = np.random.default_rng(9).integers(0, 256, (8, 3, 8, 8)).astype(np.uint8)
    _, tr = g.run_int(x, trace=True)
    A, B = (v[None, :, None, None] for v in g.lowered.stages[0].affine())    # stem acc -> bn value
    q = tr["pool"]
    lo, hi = (v[None, :, None, None] for v in add.clips[1])
    mq = add.mult[1][None, :, None, None] * q
    t = np.minimum(np.maximum(mq, lo), hi)
    assert np.array_equal(tr["b1add"], add.mult[0][None, :, None, None] * tr["b1c2"] + t)
    unit = add.out.scale[None, :, None, None] / 2 ** add.shift
    relu_zero = A * q + B < 0
    assert relu_zero.mean() > 0.1 and np.all((t != mq) <= relu_zero)      # only the relu's zeros are clipped
    err = np.abs(t * unit - (np.maximum(A * q + B, 0) - B))
    # unclipped: |M*unit - A| * |q| <= unit/2 * |q|; clipped: round(M*z)*unit vs A*z = -B, i.e. that
    # rounding (half a unit) and the multiplier's at q = z
    bound = unit * 0.5 * np.where(relu_zero, 1 + np.abs(B / A), np.abs(q))
    assert np.all(err <= bound * (1 + 1e-9) + 1e-12)


def test_unquantized_act_refusals(tmp_path):
    """Where an unquantized activation's values themselves are needed, refused naming the layer."""
    head = [conv("c0", 3), bn("n0")]
    relu = {"name": "r", "op": "act", "nonlin": "relu"}
    cases = {
        "gap": head + [relu, {"name": "gap", "op": "global_avgpool"},
                       {"name": "fc", "op": "dense", "out_features": 2, "weight_quant": DQ2}],
        "r": head + [relu],
        "cab": head + [{"name": "cab", "op": "act", "nonlin": "cabs"}, qact("q"), conv("c1", 2, k=1, pad=0)],
        "r2": head + [qact("q"), {"name": "r2", "op": "act", "nonlin": "relu"}, conv("c1", 2, k=1, pad=0)],
        "c1": head + [relu, conv("c1", 2, k=1, pad=0)],
    }
    for bad, layers in cases.items():
        spec = {"name": "u", "input": {"shape": [2, 6, 6], "bits": 8, "scale": 1 / 255}, "layers": layers}
        net = load_network(write_net(tmp_path, spec, name=bad))
        net.is_graph = True
        with pytest.raises((NotSupportedError, SpecError), match=f"'{bad}'"):
            lower(net)


# ------------------------------------------------------------------ random graph networks

def _codes_of(act_layer, v):
    return ActQuant(act_layer["quant"], act_layer["nonlin"], act_layer.params).encode(v)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=graph_nets())
def test_random_graph_int_agrees_with_float(case, tmp_path_factory):
    """Per input, the first quant_act (in spec order) where the integer path's code differs
    from the float path's must be a rounding tie of the float path (a value exactly half way
    between levels, as an average of codes can be): every decision after an add (exact or
    rescaled with 16 guard bits), a matmul or an average pool otherwise matches."""
    spec, seed = case
    path = write_net(tmp_path_factory.mktemp("g"), spec, seed=seed)
    net = load_network(path)
    g = Golden(net)
    x = np.random.default_rng(seed).integers(0, 256, (48,) + net.input_shape).astype(np.uint8)
    fo, ft = g.run_float(x, trace=True)
    qo, it = g.run_int(x, trace=True)
    stage_of = {}
    for s in g.lowered.stages:
        for name in getattr(s, "layers", [s.name]):
            stage_of[name] = s.name
    settled = np.zeros(len(x), bool)          # a sample's first mismatch was seen
    for L in net.layers:
        if L.op != "quant_act":
            continue
        act = ActQuant(L["quant"], L["nonlin"], L.params)
        a, b = _codes_of(L, ft[L.name]), it[stage_of[L.name]]
        bad = (a != b).reshape(len(x), -1) & ~settled[:, None]
        if bad.any():
            pre = ft[L.inputs[0]].reshape(len(x), -1)[bad]          # the float value quantized
            m = (1 << act.bits) - 1
            assert act.qtype == "dorefa" and np.allclose(np.clip(pre, 0, 1) * m % 1, 0.5, atol=1e-9), \
                f"{L.name}: {int(bad.sum())} decisions differ away from a tie"
        settled |= bad.any(1)
    d = g.dequantize(qo).reshape(len(x), -1)
    ok = ~settled
    assert np.allclose(d[ok], fo.reshape(len(x), -1)[ok], atol=1e-6 * (1 + np.abs(fo).max()))


def test_inspect_shows_graph_stages(tmp_path, capsys):
    path = write_net(tmp_path, resnet_spec())
    assert main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    assert "b1add      add" in out and "fixed-point, 16 guard bits" in out and "<- b1c2, stem" in out
    assert "gap        avgpool" in out and "global on codes, exact" in out
    assert "b1out      thresho" in out
    assert main(["inspect", str(path), "--json"]) == 0
    assert '"kind": "add"' in capsys.readouterr().out
