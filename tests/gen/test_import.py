"""``bitplane import``: tensorpack DoReFa-Net .npz, PyTorch state_dict and QONNX importers.

Round trips start from a network exported by train/ (a QNet with random float32-exact
parameters and calibrated batch-norm statistics) or from gen/randnet, write it in each
format with the independent inverse mappings of tests/import_helpers.py, import it with
``gen.cli.main`` and require the imported spec's golden float logits to equal the source's
(and the torch eval logits) within 1e-4 relative. Rejections go through the CLI: exit 1,
one ``bitplane: error:`` line, nothing written, nothing executed from the file.
"""
import builtins
import pickle
from pathlib import Path

import numpy as np
import pytest
import yaml

from bitplane.cli.main import main
from bitplane.gen.golden import Golden
from bitplane.gen.spec import load_network
from tests.support import import_helpers as ih
from tests.support.cli import cli_rejects as _cli_rejects
from tests.support.networks import small_spec

ROOT = Path(__file__).resolve().parents[2]
SVHN_EXAMPLE = ROOT / "examples" / "svhn-dorefa-w1a2.yaml"


# ------------------------------------------------------------------------------ helpers

def _close(got, want):
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape
    assert np.allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max()), np.abs(got - want).max()


def _cli_ok(argv, capsys):
    rc = main(argv)
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    return cap


def _svhn_spec(wq, aq):
    doc = yaml.safe_load(SVHN_EXAMPLE.read_text())
    doc.pop("weights")
    doc["layers"] = [dict(L) for L in doc["layers"]]
    for L in doc["layers"]:
        if "weight_quant" in L:
            L["weight_quant"] = dict(wq)
        if L["op"] == "quant_act":
            L["quant"] = dict(aq)
    return doc


def _small_spec(name, wq, aq, nonlin, first_wq=None, last_wq=None, bias0=False):
    """:func:`small_spec` on 3 x 14 x 14 with an unpadded first conv: the dense layer sees a
    [6, 3, 3] map, so the row order of its weights matters."""
    return small_spec(name, wq, aq, nonlin, (3, 14, 14), "valid", bias0, first_wq, last_wq)


def _qnet_source(spec, d, seed=0, n=6, neg_gamma=0.2, beta=0.0):
    """A QNet of ``spec`` with float32-exact random parameters and batch-norm statistics of a
    random batch, exported by train/; returns (model, source Network, codes, torch logits)."""
    torch = pytest.importorskip("torch")
    from bitplane.train.nn import QNet, export
    rng = np.random.default_rng(seed)
    model = QNet(spec, seed=seed).double()
    codes = rng.integers(0, 256, (n, *spec["input"]["shape"])).astype(np.uint8)
    x = torch.tensor(codes * spec["input"]["scale"], dtype=torch.float64)
    with torch.no_grad():
        for bn in model.bns.values():
            bn.momentum = 1.0                        # running statistics = this batch's
        model.train()
        model(x)
        for bn in model.bns.values():
            C = bn.num_features
            sgn = np.where(rng.random(C) < neg_gamma, -1.0, 1.0)
            bn.weight.copy_(torch.tensor(sgn * rng.uniform(0.5, 1.5, C)))
            bn.bias.copy_(torch.tensor(beta + rng.normal(0, 0.1, C)))
        for t in list(model.parameters()) + list(model.buffers()):
            if t.is_floating_point():
                t.copy_(t.float().double())
        model.eval()
        want = model(x).numpy()
    path = export(model, d / f"{spec['name']}.yaml")
    return model, load_network(path), codes, want


def _golden(path, codes):
    return Golden(load_network(path)).run_float(codes)


def _layer_table(net):
    return [(L.name, L.op, {k: v for k, v in L.attrs.items() if k not in ("name", "op")}) for L in net.layers]


# ------------------------------------------------------------------------------ tensorpack

LEGACY_SVHN = ["--activation", "cabs", "--input-scale", repr(1 / 255)]     # the example's (pre-f5cf2e14) form


@pytest.mark.parametrize("bits", ["1,2", "t,2"])
def test_tensorpack_svhn_round_trip(bits, tmp_path, capsys):
    """Every option that departs from the current script: 1,2 with cabs, 1/255, float first/last
    weights and a 2-bit last activation is the example's layer list; t,2: TTQ weights and the
    script's unquantized last cabs (--float-last-act)."""
    ttq = bits.startswith("t")
    spec = _svhn_spec({"type": "ttq"} if ttq else {"type": "dorefa", "bits": 1}, {"type": "dorefa", "bits": 2})
    if ttq:
        spec["layers"][-2] = {"name": "act6", "op": "act", "nonlin": "cabs"}
    model, src, codes, want = _qnet_source(spec, tmp_path, beta=0.3)
    arrays = ih.to_tensorpack(src)
    assert arrays["conv1/W:0"].shape == (3, 3, 48, 64) and arrays["fc1/W:0"].shape == (512, 10)
    arrays.update({"global_step:0": np.array(1234), "learning_rate:0": np.float32(1e-3),
                   "conv1/W/Adam:0": np.zeros((3, 3, 48, 64), np.float32), "train_error/EMA:0": np.float32(0.1)})
    npz = tmp_path / "svhn-tp.npz"
    np.savez(npz, **arrays)
    out = tmp_path / "imp" / "svhn.yaml"
    cap = _cli_ok(["import", "tensorpack", str(npz), "-o", str(out), "--arch", "svhn", "--bits", bits, *LEGACY_SVHN]
                  + (["--float-last-act"] if ttq else ["--first-bits", "float", "--last-bits", "float",
                                                       "--last-act-bits", "2"]), capsys)
    assert "ignored 4 training-state tensor(s)" in cap.err and "act6" in cap.err
    got = _golden(out, codes)
    _close(got, Golden(src).run_float(codes))
    _close(got, want)
    imp = load_network(out)
    assert _layer_table(imp) == _layer_table(src)         # the seed's layer list, biases from the archive
    if bits == "1,2":
        assert _layer_table(imp) == _layer_table(load_network(SVHN_EXAMPLE))
        assert imp.name == "svhn-dorefa-w1a2"


@pytest.mark.parametrize("layout", ["nhwc", "nchw"])
def test_tensorpack_spec_layer_list_dense_row_order(layout, tmp_path, capsys):
    """A dense layer after a 6x3x3 map: rows are permuted from NHWC (or kept for NCHW)."""
    spec = _small_spec("tp", {"type": "dorefa", "bits": 2}, {"type": "dorefa", "bits": 2}, "clip01")
    _, src, codes, want = _qnet_source(spec, tmp_path, beta=0.5)
    npz = tmp_path / "tp.npz"
    arrays = ih.to_tensorpack(src, layout)
    np.savez(npz, **{k[:-2] if k.startswith("bn") else k: v for k, v in arrays.items()})   # ':0' is optional
    out = tmp_path / "o" / "tp.yaml"
    _cli_ok(["import", "tensorpack", str(npz), "-o", str(out), "--spec", str(src.path), "--layout", layout], capsys)
    _close(_golden(out, codes), want)
    if layout == "nchw":             # importing with the wrong layout gives other logits
        _cli_ok(["import", "tensorpack", str(npz), "-o", str(out), "--spec", str(src.path)], capsys)
        assert not np.allclose(_golden(out, codes), want, rtol=1e-3)


def test_tensorpack_imagenet_norm_folds_into_first_conv(tmp_path, capsys):
    spec = _small_spec("norm", {"type": "dorefa", "bits": 2}, {"type": "dorefa", "bits": 2}, "clip01", bias0=True)
    _, src, codes, _ = _qnet_source(spec, tmp_path, beta=0.5)
    npz = tmp_path / "n.npz"
    np.savez(npz, **ih.to_tensorpack(src))
    out = tmp_path / "o" / "n.yaml"
    cap = _cli_ok(["import", "tensorpack", str(npz), "-o", str(out), "--spec", str(src.path), "--imagenet-norm"],
                  capsys)
    assert "folded ImageNet" in cap.err
    mean = np.array([0.406, 0.456, 0.485])[None, :, None, None] * 255     # BGR
    std = np.array([0.225, 0.224, 0.229])[None, :, None, None] * 255
    g = Golden(src)
    v = (codes - mean) / std                           # what tensorpack's ImageNetModel feeds conv0
    for L in src.layers:
        v = g.float_layer(L, v)
    _close(_golden(out, codes), v)


def test_tensorpack_alexnet_shapes_and_golden(tmp_path, capsys):
    """AlexNet at full size (61M parameters): random tensorpack-layout arrays of the seed's shapes,
    grouped convs as HWIO with I = C/2, fc0 rows in NHWC order of the 256x6x6 map, some
    batchnorms without gamma/beta; imported, loaded, permutation spot-checked, one golden frame."""
    from bitplane.gen.importers.checkpoint import _walk, arch_spec
    rng = np.random.default_rng(3)
    arrays, no_affine = {}, {"bn2", "bnfc1"}
    for _, L, ins in _walk(arch_spec("alexnet", 1, 2), "alexnet"):
        n = L["name"]
        if L["op"] == "conv":
            C, g, k, O = ins[0], L.get("groups", 1), L["kernel"], L["out_channels"]
            arrays[f"{n}/W:0"] = rng.standard_normal((k, k, C // g, O), dtype=np.float32) / np.float32(k * np.sqrt(C / g))
        elif L["op"] == "dense":
            nin, F = int(np.prod(ins)), L["out_features"]
            arrays[f"{n}/W:0"] = rng.standard_normal((nin, F), dtype=np.float32) / np.float32(np.sqrt(nin))
        elif L["op"] == "batchnorm":
            C = ins[0]
            arrays[f"{n}/mean/EMA:0"] = rng.normal(0, 0.1, C).astype(np.float32)
            arrays[f"{n}/variance/EMA:0"] = rng.uniform(0.5, 1.5, C).astype(np.float32)
            if n not in no_affine:
                arrays[f"{n}/gamma:0"] = rng.uniform(0.5, 1.5, C).astype(np.float32)
                arrays[f"{n}/beta:0"] = rng.normal(0.5, 0.1, C).astype(np.float32)
    arrays["conv0/b:0"] = rng.normal(0, 0.1, 96).astype(np.float32)
    arrays["fc0/b:0"] = rng.normal(0, 0.1, 4096).astype(np.float32)
    arrays["fct/b:0"] = rng.normal(0, 0.1, 1000).astype(np.float32)
    assert arrays["conv1/W:0"].shape == (5, 5, 48, 256) and arrays["fc0/W:0"].shape == (9216, 4096)
    npz = tmp_path / "alexnet-126.npz"
    np.savez(npz, **arrays)
    out = tmp_path / "o" / "alexnet.yaml"
    # the current script: channels_first (fc0 rows already C,H,W), ImageNetModel normalisation folded
    cap = _cli_ok(["import", "tensorpack", str(npz), "-o", str(out), "--arch", "alexnet", "--float-last-act"], capsys)
    assert "layout nchw" in cap.err and "folded ImageNet" in cap.err and "activation clip01" in cap.err
    net = load_network(out)
    assert np.array_equal(net.layer("fc0").params["W"], arrays["fc0/W:0"].T)
    assert not np.array_equal(net.layer("conv0").params["W"], arrays["conv0/W:0"].transpose(3, 2, 0, 1))
    # before tensorpack 18b19d6d: NHWC rows, image/255 only
    cap = _cli_ok(["import", "tensorpack", str(npz), "-o", str(out), "--arch", "alexnet", "--float-last-act",
                   "--layout", "nhwc", "--no-imagenet-norm"], capsys)
    assert "bn2 (gamma/beta), bnfc1 (gamma/beta)" in cap.err and "'actfc1' keeps" in cap.err
    net = load_network(out)
    shapes = {L.name: (L.op, L.out_shape) for L in net.layers}
    assert shapes["conv0"] == ("conv", (96, 54, 54)) and shapes["pool1"] == ("maxpool", (256, 27, 27))
    assert shapes["pool4"] == ("maxpool", (256, 6, 6)) and shapes["fct"] == ("dense", (1000,))
    L = {L.name: L for L in net.layers}
    assert L["conv1"]["groups"] == 2 and L["conv3"]["groups"] == 2 and L["conv4"]["groups"] == 2
    assert L["conv2"]["groups"] == 1 and L["conv0"]["bias"] and L["fc0"]["bias"] and not L["fc1"]["bias"]
    assert "weight_quant" not in L["conv0"].attrs and "weight_quant" not in L["fct"].attrs
    assert L["fc1"]["weight_quant"] == {"type": "dorefa", "bits": 1}
    assert L["act0"]["nonlin"] == "clip01" and L["act0"]["quant"] == {"type": "dorefa", "bits": 2}
    assert np.array_equal(L["conv3"].params["W"], arrays["conv3/W:0"].transpose(3, 2, 0, 1))
    assert np.array_equal(L["bn2"].params["gamma"], np.ones(384)) and not L["bn2"].params["beta"].any()
    W, Wtp = L["fc0"].params["W"], arrays["fc0/W:0"]
    for o, c, h, w in [(0, 0, 0, 0), (5, 3, 2, 4), (4095, 255, 5, 5), (77, 128, 0, 5)]:
        assert W[o, c * 36 + h * 6 + w] == Wtp[(h * 6 + w) * 256 + c, o]
    y = Golden(net).run_float(rng.integers(0, 256, (1, 3, 224, 224)).astype(np.uint8))
    assert y.shape == (1, 1000) and np.all(np.isfinite(y)) and np.ptp(y) > 0


# ------------------------------------------------------------------------------ state_dict

@pytest.mark.parametrize("style,wrap", [("conventional", "module"), ("qnet", "model")])
def test_state_dict_svhn_arch_round_trip(style, wrap, tmp_path, capsys):
    torch = pytest.importorskip("torch")
    _, src, codes, want = _qnet_source(_svhn_spec({"type": "dorefa", "bits": 1}, {"type": "dorefa", "bits": 2}),
                                       tmp_path, seed=2)
    sd = ih.to_state_dict(src, style)
    obj = {"module": {f"module.{k}": v for k, v in sd.items()}, "model": {"model": sd, "optimizer": {}}}[wrap]
    pt = tmp_path / "svhn.pt"
    torch.save(obj, pt)
    out = tmp_path / "o" / "svhn.yaml"
    cap = _cli_ok(["import", "state-dict", str(pt), "-o", str(out), "--arch", "svhn", "--name", "svhn-pt",
                   *LEGACY_SVHN, "--first-bits", "float", "--last-bits", "float", "--last-act-bits", "2"], capsys)
    assert ("QNet" in cap.err) == (style == "qnet")
    got = _golden(out, codes)
    _close(got, Golden(src).run_float(codes))
    _close(got, want)
    assert load_network(out).name == "svhn-pt"


@pytest.mark.parametrize("wq,aq,nonlin", [({"type": "ttq"}, {"type": "dorefa", "bits": 2}, "clip01"),
                                          ({"type": "lq", "bits": 2}, {"type": "lq", "bits": 2}, "relu"),
                                          ({"type": "sign"}, {"type": "sign"}, "none")])
def test_state_dict_own_qnet_checkpoint_with_spec(wq, aq, nonlin, tmp_path, capsys):
    """bitplane's own QNet.state_dict() (params_, bns., basis__ names) + its layer list."""
    torch = pytest.importorskip("torch")
    spec = _small_spec("own", wq, aq, nonlin, first_wq={"type": "int", "bits": 8})
    model, src, codes, want = _qnet_source(spec, tmp_path, seed=4, beta=0.5 if nonlin == "clip01" else 0.0)
    pt = tmp_path / "own.pt"
    torch.save(model.state_dict() if wq["type"] == "ttq" else {"state_dict": model.state_dict(), "epoch": 3}, pt)
    out = tmp_path / "o" / "own.yaml"
    _cli_ok(["import", "state-dict", str(pt), "-o", str(out), "--spec", str(src.path)], capsys)
    _close(_golden(out, codes), want)
    assert _layer_table(load_network(out)) == _layer_table(src)


# ------------------------------------------------------------------------------ QONNX

def _write_onnx(model, path):
    import onnx
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("case", ["bnn-int8-first", "dorefa-int4-bwn", "bnn-multithreshold"])
def test_qonnx_round_trip_from_train_export(case, tmp_path, capsys):
    pytest.importorskip("onnx")
    if case.startswith("bnn"):
        spec = _small_spec(case, {"type": "sign"}, {"type": "sign"}, "none", first_wq={"type": "int", "bits": 8})
    else:
        spec = _small_spec(case, {"type": "dorefa", "bits": 1}, {"type": "dorefa", "bits": 2}, "clip01",
                           first_wq={"type": "int", "bits": 4}, last_wq={"type": "int", "bits": 8}, bias0=True)
    mt = case.endswith("multithreshold")
    _, src, codes, want = _qnet_source(spec, tmp_path, seed=5, neg_gamma=0.0 if mt else 0.2,
                                       beta=0.0 if case.startswith("bnn") else 0.5)
    onnx_path = _write_onnx(ih.to_qonnx(src, multithreshold=mt), tmp_path / f"{case}.onnx")
    out = tmp_path / "o" / f"{case}.yaml"
    _cli_ok(["import", "qonnx", str(onnx_path), "-o", str(out)], capsys)
    got = _golden(out, codes)
    _close(got, Golden(src).run_float(codes))
    _close(got, want)
    imp = load_network(out)
    kinds = [(L.op, L.get("weight_quant"), L.get("quant")) for L in imp.layers]
    want_w = [L.get("weight_quant") for L in src.layers if L.op in ("conv", "dense")]
    assert [w for op, w, _ in kinds if op in ("conv", "dense")] == want_w
    if mt:   # each MultiThreshold became a batchnorm + sign activation
        assert [L.op for L in imp.layers].count("batchnorm") == 2
        assert all(L["quant"]["type"] == "sign" for L in imp.layers if L.op == "quant_act")


@pytest.mark.parametrize("mt", [False, True])
def test_qonnx_uint_activations(mt, tmp_path, capsys):
    """uint activations (relu + Quant, or FINN MultiThreshold) from a calibrated random network."""
    pytest.importorskip("onnx")
    aq = {"type": "uint", "bits": 3, "scale": 0.125}
    spec = _small_spec("uintnet", {"type": "int", "bits": 4}, aq, "relu", first_wq={"type": "int", "bits": 8})
    src = ih.float32_source(spec, tmp_path / "src", seed=6)
    onnx_path = _write_onnx(ih.to_qonnx(src, multithreshold=mt), tmp_path / "u.onnx")
    out = tmp_path / "o" / "u.yaml"
    _cli_ok(["import", "qonnx", str(onnx_path), "-o", str(out)], capsys)
    codes = np.random.default_rng(7).integers(0, 256, (16, 3, 14, 14)).astype(np.uint8)
    want = Golden(src).run_float(codes)
    _close(_golden(out, codes), want)
    acts = [L["quant"] for L in load_network(out).layers if L.op == "quant_act"]
    assert [(q["type"], q["bits"]) for q in acts] == [("uint", 3), ("uint", 3)]
    assert all(abs(q["scale"] - 0.125) < 1e-12 for q in acts)


def test_qonnx_equivalent_graph_forms(tmp_path, capsys):
    """Gemm with transB=0, Reshape instead of Flatten, Identity/trivial Transpose nodes, weights
    through an Identity, no input quantizer (then --input-scale), Clip(0) as relu: same network."""
    pytest.importorskip("onnx")
    from onnx import helper, numpy_helper
    aq = {"type": "uint", "bits": 2, "scale": 0.25}
    spec = _small_spec("forms", {"type": "int", "bits": 3}, aq, "relu", first_wq={"type": "int", "bits": 8})
    src = ih.float32_source(spec, tmp_path / "src", seed=11)
    m = ih.to_qonnx(src)
    g = m.graph
    nodes = list(g.node)
    inits = {t.name: t for t in g.initializer}
    gemm = next(n for n in nodes if n.op_type == "Gemm")
    w = inits[gemm.input[1]]
    w.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(w).T.copy(), w.name))
    for a in gemm.attribute:
        if a.name == "transB":
            a.i = 0
    flat = next(n for n in nodes if n.op_type == "Flatten")
    g.initializer.append(numpy_helper.from_array(np.array([0, -1], np.int64), "flat_shape"))
    flat.CopyFrom(helper.make_node("Reshape", [flat.input[0], "flat_shape"], [flat.output[0]], name="flatten_reshape"))
    conv1 = next(n for n in nodes if n.op_type == "Conv" and "conv1" in "".join(
        p.input[0] for p in nodes if p.output[0] == n.input[1]))
    wq = next(p for p in nodes if p.output[0] == conv1.input[1])
    g.node.append(helper.make_node("Identity", [wq.input[0]], ["conv1_w_id"], name="w_identity"))
    wq.input[0] = "conv1_w_id"
    relu = next(n for n in nodes if n.op_type == "Relu")
    g.initializer.append(numpy_helper.from_array(np.array(0.0, np.float32), "zero"))
    relu.CopyFrom(helper.make_node("Clip", [relu.input[0], "zero"], [relu.output[0]], name="relu_as_clip"))
    pool = next(n for n in nodes if n.op_type == "MaxPool")
    after = [n for n in g.node if pool.output[0] in n.input]
    g.node.append(helper.make_node("Identity", [pool.output[0]], ["pool_id"], name="id"))
    g.node.append(helper.make_node("Transpose", ["pool_id"], ["pool_t"], name="t", perm=[0, 1, 2, 3]))
    for n in after:
        n.input[0] = "pool_t"
    inq = nodes[0]
    assert inq.op_type == "Quant" and inq.input[0] == "input"
    for n in g.node:
        if inq.output[0] in n.input:
            n.input[0] = "input"
    g.node.remove(inq)
    p = _write_onnx(m, tmp_path / "forms.onnx")
    out = tmp_path / "o" / "forms.yaml"
    cap = _cli_ok(["import", "qonnx", str(p), "-o", str(out), "--input-scale", str(1 / 255)], capsys)
    assert "no input quantizer" in cap.err
    codes = np.random.default_rng(12).integers(0, 256, (16, 3, 14, 14)).astype(np.uint8)
    _close(_golden(out, codes), Golden(src).run_float(codes))
    assert _layer_table(load_network(out))[2] == ("act0", "quant_act", {"nonlin": "relu", "quant": {
        "type": "uint", "bits": 2, "scale": 0.25}})


def test_qonnx_brevitas_export(tmp_path, capsys):
    """A real Brevitas QONNX export: 8-bit input, per-channel int4 conv, QuantReLU 2-bit, maxpool,
    binary-weight conv (per-tensor scale -> BWN), bipolar activations, int8 per-channel dense."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnx")
    pytest.importorskip("onnxoptimizer")
    qnn = pytest.importorskip("brevitas.nn")
    import warnings
    from brevitas.export import export_qonnx
    from brevitas.quant import (Int8WeightPerChannelFloat, SignedBinaryActPerTensorConst,
                                SignedBinaryWeightPerTensorConst, Uint8ActPerTensorFloat)

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inp = qnn.QuantIdentity(act_quant=Uint8ActPerTensorFloat, bit_width=8)
            self.c0 = qnn.QuantConv2d(3, 8, 3, padding=1, bias=False, weight_quant=Int8WeightPerChannelFloat,
                                      weight_bit_width=4)
            self.bn0 = torch.nn.BatchNorm2d(8)
            self.a0 = qnn.QuantReLU(bit_width=2)
            self.pool = torch.nn.MaxPool2d(2)
            self.c1 = qnn.QuantConv2d(8, 8, 3, padding=0, bias=False, weight_quant=SignedBinaryWeightPerTensorConst)
            self.bn1 = torch.nn.BatchNorm2d(8)
            self.a1 = qnn.QuantIdentity(act_quant=SignedBinaryActPerTensorConst)
            self.fc = qnn.QuantLinear(8 * 3 * 3, 5, bias=True, weight_quant=Int8WeightPerChannelFloat)

        def forward(self, x):
            x = self.pool(self.a0(self.bn0(self.c0(self.inp(x)))))
            return self.fc(torch.flatten(self.a1(self.bn1(self.c1(x))), 1))

    torch.manual_seed(0)
    m = Net()
    m.train()
    with torch.no_grad():
        for _ in range(4):
            m(torch.rand(16, 3, 10, 10))
    m.eval()
    path = tmp_path / "brevitas.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_qonnx(m, input_t=torch.rand(1, 3, 10, 10), export_path=str(path), dynamo=False)
    out = tmp_path / "o" / "brevitas.yaml"
    _cli_ok(["import", "auto", str(path), "-o", str(out)], capsys)
    net = load_network(out)
    wq = [L.get("weight_quant") for L in net.layers if L.op in ("conv", "dense")]
    assert wq == [{"type": "int", "bits": 4}, {"type": "dorefa", "bits": 1}, {"type": "int", "bits": 8}]
    acts = [(L["nonlin"], L["quant"]["type"], L["quant"]["bits"]) for L in net.layers if L.op == "quant_act"]
    assert acts == [("relu", "uint", 2), ("none", "sign", 1)]
    codes = np.random.default_rng(8).integers(0, 256, (16, 3, 10, 10)).astype(np.uint8)
    with torch.no_grad():
        want = m(torch.tensor(codes * net.input_scale, dtype=torch.float32)).numpy().astype(np.float64)
    got = Golden(net).run_float(codes)
    assert np.allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max()), np.abs(got - want).max()


# ------------------------------------------------------------------------------ auto-detection

def test_auto_detects_each_format(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnx")
    spec = _small_spec("auto", {"type": "sign"}, {"type": "sign"}, "none", first_wq={"type": "int", "bits": 8})
    model, src, codes, want = _qnet_source(spec, tmp_path, seed=9)
    np.savez(tmp_path / "a.npz", **ih.to_tensorpack(src))
    torch.save(model.state_dict(), tmp_path / "a.pt")
    _write_onnx(ih.to_qonnx(src), tmp_path / "a.onnx")
    for f, extra in (("a.npz", ["--spec", str(src.path)]), ("a.pt", ["--spec", str(src.path)]), ("a.onnx", [])):
        out = tmp_path / "o" / f"{f.replace('.', '-')}.yaml"
        _cli_ok(["import", "auto", str(tmp_path / f), "-o", str(out), *extra], capsys)
        _close(_golden(out, codes), want)


# ------------------------------------------------------------------------------ rejections

class _Evil:
    """Unpickling this would create the marker file (``open(marker, 'w')``)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (builtins.open, (self.marker, "w"))


def _tp_source(tmp_path):
    spec = _small_spec("rej", {"type": "dorefa", "bits": 1}, {"type": "dorefa", "bits": 2}, "clip01")
    from bitplane.randnet import write_random_network
    return load_network(write_random_network(spec, tmp_path / "src", seed=1, weight_dtype=np.float32))


def test_tensorpack_rejections(tmp_path, capsys):
    src = _tp_source(tmp_path)
    base = ih.to_tensorpack(src)
    out = tmp_path / "out" / "x.yaml"

    def run(arrays, *needles, extra=("--spec", str(src.path))):
        npz = tmp_path / "bad.npz"
        np.savez(npz, **arrays)
        return _cli_rejects(["import", "tensorpack", str(npz), "-o", str(out), *extra], capsys, *needles)

    bad = dict(base, **{"conv1/W:0": base["conv1/W:0"].transpose(3, 2, 0, 1)})        # OIHW, not HWIO
    run(bad, "bad.npz", "layer 'conv1' (#4)", "'conv1/W:0'", "[6, 4, 3, 3]", "expected [3, 3, 4, 6]")
    run({k: v for k, v in base.items() if k != "bn1/variance/EMA:0"}, "layer 'bn1'", "missing tensor 'bn1/variance/EMA'")
    run(dict(base, **{"conv7/W:0": np.zeros((3, 3, 6, 6), np.float32)}), "unexpected tensor", "conv7/W:0")
    run(dict(base, **{"fc0/W:0": base["fc0/W:0"][:-1]}), "layer 'fc0'", "[53, 5]", "expected [54, 5]")
    run(dict(base, **{"conv1/W:0": base["conv1/W:0"].astype(complex)}), "dtype complex128")
    # the SVHN architecture does not fit this archive
    run(base, "layer 'conv0' (#0)", "'conv0/W:0' has shape [3, 3, 3, 4], expected [5, 5, 3, 48]",
        extra=("--arch", "svhn"))
    # not a zip, a single .npy, a pickle
    (tmp_path / "text.npz").write_text("definitely not an archive\n")
    _cli_rejects(["import", "tensorpack", str(tmp_path / "text.npz"), "-o", str(out), "--arch", "svhn"], capsys,
                 "text.npz", "not a tensorpack .npz archive")
    np.save(tmp_path / "one.npy", np.zeros(3))
    _cli_rejects(["import", "tensorpack", str(tmp_path / "one.npy"), "-o", str(out), "--arch", "svhn"], capsys,
                 "a single .npy array")
    _cli_rejects(["import", "tensorpack", str(tmp_path / "missing.npz"), "-o", str(out), "--arch", "svhn"], capsys,
                 "missing.npz: file not found")
    # bad options
    npz = tmp_path / "ok.npz"
    np.savez(npz, **base)
    _cli_rejects(["import", "tensorpack", str(npz), "-o", str(out), "--arch", "svhn", "--bits", "1,32"], capsys,
                 "activation bits 32")
    _cli_rejects(["import", "tensorpack", str(npz), "-o", str(out)], capsys, "exactly one of --arch")
    before = npz.read_bytes()
    assert main(["import", "tensorpack", str(npz), "-o", str(tmp_path / "ok.yaml"), "--spec", str(src.path)]) == 1
    assert "would overwrite the model being imported" in capsys.readouterr().err
    assert npz.read_bytes() == before and not (tmp_path / "ok.yaml").exists()


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_pickled_objects_are_never_loaded(tmp_path, capsys):
    marker = tmp_path / "pwned"
    evil = np.empty(1, dtype=object)
    evil[0] = _Evil(marker)
    src = _tp_source(tmp_path)
    npz = tmp_path / "evil.npz"
    np.savez(npz, **ih.to_tensorpack(src), **{"conv0/b:0": evil})
    out = tmp_path / "out" / "x.yaml"
    _cli_rejects(["import", "tensorpack", str(npz), "-o", str(out), "--spec", str(src.path)], capsys,
                 "evil.npz", "pickled Python objects")
    pkl = tmp_path / "evil.pkl"
    pkl.write_bytes(pickle.dumps({"conv0/W": _Evil(marker)}))
    _cli_rejects(["import", "tensorpack", str(pkl), "-o", str(out), "--arch", "svhn"], capsys, "pickled")
    assert not marker.exists()

    torch = pytest.importorskip("torch")
    sd = ih.to_state_dict(src)
    pt = tmp_path / "evil.pt"
    torch.save({"state_dict": sd, "hook": _Evil(marker)}, pt)
    _cli_rejects(["import", "state-dict", str(pt), "-o", str(out), "--spec", str(src.path)], capsys,
                 "evil.pt", "weights_only=True", "UnpicklingError")
    pt2 = tmp_path / "evil2.pt"
    with open(pt2, "wb") as f:                     # a legacy (non-zip) pickle with the object
        pickle.dump({"conv0.weight": _Evil(marker)}, f)
    _cli_rejects(["import", "auto", str(pt2), "-o", str(out), "--spec", str(src.path)], capsys, "evil2.pt",
                 "weights_only=True")
    assert not marker.exists()


def test_state_dict_rejections(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    src = _tp_source(tmp_path)
    sd = ih.to_state_dict(src)
    out = tmp_path / "out" / "x.yaml"

    def run(obj, *needles):
        pt = tmp_path / "bad.pt"
        torch.save(obj, pt)
        return _cli_rejects(["import", "state-dict", str(pt), "-o", str(out), "--spec", str(src.path)], capsys,
                            *needles)

    run(dict(sd, **{"conv1.weight": sd["conv1.weight"][:, :, :2]}), "layer 'conv1'", "'conv1.weight'",
        "[6, 4, 2, 3]", "expected [6, 4, 3, 3]")
    run({k: v for k, v in sd.items() if k != "bn0.running_mean"}, "missing tensor 'bn0.running_mean'")
    run(dict(sd, **{"head.weight": torch.zeros(3)}), "unexpected tensor", "head.weight")
    run(dict(sd, **{"conv0.bias": torch.zeros(4)}), "unexpected tensor 'conv0.bias'", "bias: false")
    run(dict(sd, **{"fc0.weight": [1, 2]}), "'fc0.weight' is a list, not a tensor")
    run(torch.zeros(3), "expected a state_dict")
    (tmp_path / "junk.pt").write_bytes(b"PK\x03\x04 not really a zip")
    _cli_rejects(["import", "state-dict", str(tmp_path / "junk.pt"), "-o", str(out), "--spec", str(src.path)],
                 capsys, "junk.pt", "weights_only=True")


def test_qonnx_rejections(tmp_path, capsys):
    pytest.importorskip("onnx")
    from onnx import helper, numpy_helper
    spec = _small_spec("q", {"type": "int", "bits": 4}, {"type": "uint", "bits": 2, "scale": 0.25}, "relu",
                       first_wq={"type": "int", "bits": 8})
    from bitplane.randnet import write_random_network
    src = load_network(write_random_network(spec, tmp_path / "src", seed=2, neg_gamma=0.0))
    out = tmp_path / "out" / "x.yaml"

    def run(model, *needles):
        p = _write_onnx(model, tmp_path / "bad.onnx")
        return _cli_rejects(["import", "qonnx", str(p), "-o", str(out)], capsys, "bad.onnx", *needles)

    # an op outside the subset, named with its op type
    m = ih.to_qonnx(src)
    last = m.graph.node[-1]
    sm = helper.make_node("Softmax", [last.output[0]], ["probs"], name="head_softmax", axis=1)
    m.graph.node.append(sm)
    m.graph.output[0].name = "probs"
    run(m, "node 'head_softmax' (Softmax)", "outside the supported QONNX subset")
    # a branch
    m = ih.to_qonnx(src)
    relu = next(n for n in m.graph.node if n.op_type == "Relu")
    m.graph.node.append(helper.make_node("Relu", [relu.input[0]], ["side"], name="side_relu"))
    run(m, "only sequential graphs")
    # an unquantized activation (Relu not followed by a quantizer)
    m = ih.to_qonnx(src)
    q = next(n for n in m.graph.node if n.op_type == "Quant" and n.input[0].endswith("_Relu"))
    nxt = [n for n in m.graph.node if q.output[0] in n.input]
    for n in nxt:
        n.input[list(n.input).index(q.output[0])] = q.input[0]
    m.graph.node.remove(q)
    run(m, "(Relu)", "must be followed by an activation quantizer")
    # per-tensor weight scale: channels whose largest code is not 7 are not the spec's int4
    m = ih.to_qonnx(src)
    wq = next(n for n in m.graph.node if n.op_type == "Quant" and n.input[0] == "conv1.weight")
    init = next(t for t in m.graph.initializer if t.name == wq.input[1])
    per_channel = numpy_helper.to_array(init)
    init.CopyFrom(numpy_helper.from_array(np.full((), per_channel.max(), np.float32), init.name))
    run(m, f"node '{wq.name}' (Quant)", "not reproduced by the spec's int rule", "Int8WeightPerChannelFloat")
    # an activation zero point (asymmetric activations)
    m = ih.to_qonnx(src)
    aq = next(n for n in m.graph.node if n.op_type == "Quant" and n.input[0].endswith("_Relu"))
    zp = next(t for t in m.graph.initializer if t.name == aq.input[2])
    zp.CopyFrom(numpy_helper.from_array(np.array(1.0, np.float32), zp.name))
    run(m, f"node '{aq.name}' (Quant)", "zero point must be 0")
    # an affine on quantized activations (between a quantizer and the next conv)
    m = ih.to_qonnx(src)
    aq = next(n for n in m.graph.node if n.op_type == "Quant" and n.input[0].endswith("_Relu"))
    for n in m.graph.node:
        if aq.output[0] in n.input:
            n.input[list(n.input).index(aq.output[0])] = "scaled"
    m.graph.initializer.append(numpy_helper.from_array(np.array(3.0, np.float32), "three"))
    m.graph.node.append(helper.make_node("Mul", [aq.output[0], "three"], ["scaled"], name="mid_mul"))
    run(m, "node 'mid_mul' (Mul)", "affine on quantized activations")
    # input preprocessing without an input quantizer
    m = ih.to_qonnx(src)
    inq = m.graph.node[0]
    for n in m.graph.node:
        if inq.output[0] in n.input:
            n.input[list(n.input).index(inq.output[0])] = "pre"
    m.graph.node.remove(inq)
    m.graph.node.insert(0, helper.make_node("Sub", ["input", "three_"], ["pre"], name="pre_sub"))
    m.graph.initializer.append(numpy_helper.from_array(np.array(0.5, np.float32), "three_"))
    run(m, "node 'pre_sub' (Sub)", "not followed by an input quantizer")
    # MultiThreshold with thresholds that are not equally spaced
    m = ih.to_qonnx(src, multithreshold=True)
    mt = next(n for n in m.graph.node if n.op_type == "MultiThreshold")
    init = next(t for t in m.graph.initializer if t.name == mt.input[1])
    T = numpy_helper.to_array(init).copy()
    T[0, 1] += 0.3 * (T[0, 2] - T[0, 1])
    init.CopyFrom(numpy_helper.from_array(T, init.name))
    run(m, f"node '{mt.name}' (MultiThreshold)", "not equally spaced")
    # not an ONNX file at all
    (tmp_path / "noise.onnx").write_bytes(np.random.default_rng(0).bytes(300))
    _cli_rejects(["import", "qonnx", str(tmp_path / "noise.onnx"), "-o", str(out)], capsys, "noise.onnx",
                 "not an ONNX model")
    _cli_rejects(["import", "qonnx", str(tmp_path / "noise.onnx"), "-o", str(out), "--arch", "svhn"], capsys,
                 "--arch does not apply to QONNX")
