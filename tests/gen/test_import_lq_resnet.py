"""microsoft/LQ-Nets pre-activation ResNet-18 (``imagenet.py --mode preact --depth 18``, W/A 2/2).

LQ-Nets' code is TensorFlow 1 with ``tf.contrib`` (``learned_quantization.py`` imports
``tensorflow.contrib.framework``), which TensorFlow 2 no longer has, so no checkpoint can be
written by its own code here. The test writes one with exactly the variable names and shapes
its code creates (``resnet_model.py`` ``preresnet_group``/``preresnet_basicblock``, type-B
shortcuts; ``Conv2DQuant`` -> ``<scope>/W``, ``<scope>/weight_quant/basis [bits, out]``,
``nl=BNReLU`` / ``get_bn`` -> ``<scope>/bn/*``; ``QuantizedActiv`` ->
``<scope>/ActivationQuantization/basis [bits, 1]``), at width 1/8 and 32x32, and computes
the logits with its own PyTorch transcription of that code's forward pass (TF SAME padding,
the quantizers' threshold loops), not with the importer's inverse."""

import numpy as np
import pytest

from bitplane.cli.main import main
from bitplane.core.errors import NotSupportedError
from bitplane.gen.golden import Golden
from bitplane.gen.lower import lower
from bitplane.gen.spec import load_network

torch = pytest.importorskip("torch")
F = torch.nn.functional
W8 = 8                     # width divisor
CH = [64 // W8, 128 // W8, 256 // W8, 512 // W8]
SIZE = 32


def _ckpt(rng):
    """The variables LQ-Nets' preact ResNet-18 creates (TF names with ':0'), random values."""
    T = {}

    def conv(scope, k, cin, cout, quant=True):
        T[f"{scope}/W:0"] = rng.normal(0, (2 / (k * k * cout)) ** 0.5, (k, k, cin, cout))
        if quant:
            b0 = rng.uniform(0.3, 1.0, cout) * (2 / (k * k * cout)) ** 0.5
            T[f"{scope}/weight_quant/basis:0"] = np.stack([b0, 2 * b0 * rng.uniform(0.8, 1.2, cout)])

    def bn(scope, c):
        T[f"{scope}/gamma:0"] = rng.uniform(0.5, 1.5, c)
        T[f"{scope}/beta:0"] = rng.normal(0, 0.3, c)
        T[f"{scope}/mean/EMA:0"] = rng.normal(0, 0.5, c)
        T[f"{scope}/variance/EMA:0"] = rng.uniform(0.5, 2.0, c)

    def act(scope):
        T[f"{scope}/ActivationQuantization/basis:0"] = np.array([[0.3], [0.6]]) * rng.uniform(0.8, 1.2, (2, 1))

    conv("conv0", 7, 3, CH[0], quant=False)
    bn("conv0/bn", CH[0])
    cin = CH[0]
    for gi, ch in enumerate(CH):
        for b in (0, 1):
            s = f"group{gi}/block{b}"
            if b == 1:
                bn(f"{s}/preact/bn", ch)
            if b == 1 or gi == 0:
                act(f"{s}/quant1")
            conv(f"{s}/conv1", 3, cin, ch)
            bn(f"{s}/conv1/bn", ch)
            act(f"{s}/quant2")
            conv(f"{s}/conv2", 3, ch, ch)
            bn(f"{s}/conv2/bn", ch)
            if cin != ch:
                conv(f"{s}/convshortcut", 1, cin, ch)
                bn(f"{s}/convshortcut/bn", ch)
            cin = ch
        bn(f"group{gi}/bnlast/bn", ch)
        if gi < 3:
            act(f"group{gi}/quant_last")
    T["linear/W:0"] = rng.normal(0, 0.1, (CH[3], 1000))
    T["linear/b:0"] = rng.normal(0, 0.1, 1000)
    return {k: v.astype(np.float32) for k, v in T.items()}


# ---------------------------------------------------------------- transcription of LQ-Nets' forward

def _t(a):
    return torch.from_numpy(np.asarray(a, np.float64))


def _same(h, k, s):
    out = -(-h // s)
    tot = max((out - 1) * s + k - h, 0)
    return tot // 2, tot - tot // 2


def _quant_act(x, basis):            # QuantizedActiv: codes {0,1}, y = 0 below the first threshold
    nbit = basis.shape[0]
    codes = np.array([[(i >> j) & 1 for j in range(nbit)] for i in range(2 ** nbit)], np.float64)
    lv = np.sort((codes @ basis.astype(np.float64)).ravel())
    y = torch.zeros_like(x)
    for i in range(len(lv) - 1):
        y = torch.where(x > (lv[i] + lv[i + 1]) / 2, torch.full_like(x, lv[i + 1]), y)
    return y


def _quant_w(w, basis):              # QuantizedWeight: codes {-1,+1}, per output channel (last axis)
    nbit = basis.shape[0]
    codes = np.array([[1.0 if (i >> j) & 1 else -1.0 for j in range(nbit)] for i in range(2 ** nbit)])
    lv = np.sort(codes @ basis.astype(np.float64), axis=0)          # [levels, out]
    w = w.astype(np.float64)
    y = np.broadcast_to(lv[0], w.shape).copy()
    for i in range(len(lv) - 1):
        y = np.where(w > (lv[i] + lv[i + 1]) / 2, lv[i + 1], y)
    return y


def _reference(T, x_codes):
    g = lambda k: T[k + ":0"]                                         # noqa: E731

    def conv(x, scope, stride=1, quant=True):
        w = g(f"{scope}/W")
        if quant:
            w = _quant_w(w, g(f"{scope}/weight_quant/basis"))
        k = w.shape[0]
        t, b = _same(x.shape[2], k, stride)
        l_, r = _same(x.shape[3], k, stride)
        return F.conv2d(F.pad(x, (l_, r, t, b)), _t(w.transpose(3, 2, 0, 1)), stride=stride)

    def bn(x, scope):
        v = [_t(g(f"{scope}/{p}")).view(1, -1, 1, 1) for p in ("gamma", "beta", "mean/EMA", "variance/EMA")]
        return v[0] * (x - v[2]) / torch.sqrt(v[3] + 1e-5) + v[1]

    def qa(x, scope):
        return _quant_act(x, g(f"{scope}/ActivationQuantization/basis"))

    x = _t(x_codes) / 255.0
    x = torch.relu(bn(conv(x, "conv0", 2, quant=False), "conv0/bn"))
    t, b = _same(x.shape[2], 3, 2)
    x = F.max_pool2d(F.pad(x, (t, b, t, b), value=-np.inf), 3, 2)
    for gi in range(4):
        for b in (0, 1):
            s = f"group{gi}/block{b}"
            stride = 2 if (b == 0 and gi > 0) else 1
            if b == 0 and gi == 0:
                short, l_ = x, qa(x, f"{s}/quant1")
            elif b == 0:
                short, l_ = x, x
            else:
                short, l_ = x, qa(torch.relu(bn(x, f"{s}/preact/bn")), f"{s}/quant1")
            l_ = qa(torch.relu(bn(conv(l_, f"{s}/conv1", stride), f"{s}/conv1/bn")), f"{s}/quant2")
            l_ = bn(conv(l_, f"{s}/conv2"), f"{s}/conv2/bn")
            if f"{s}/convshortcut/W:0" in T:
                short = bn(conv(short, f"{s}/convshortcut", stride), f"{s}/convshortcut/bn")
            x = l_ + short
        x = torch.relu(bn(x, f"group{gi}/bnlast/bn"))
        if gi < 3:
            x = qa(x, f"group{gi}/quant_last")
    x = x.mean(dim=(2, 3))
    return (x @ _t(g("linear/W")) + _t(g("linear/b"))).numpy()


@pytest.fixture(scope="module")
def lq(tmp_path_factory):
    d = tmp_path_factory.mktemp("lq-resnet")
    T = _ckpt(np.random.default_rng(5))
    np.savez(d / "lq-preact-resnet18.npz", **T)
    x = np.random.default_rng(6).integers(0, 256, (12, 3, SIZE, SIZE)).astype(np.uint8)
    return d, T, x


def test_lq_preact_resnet18_golden_float_equals_the_transcription(lq, capsys):
    d, T, x = lq
    out = d / "net.yaml"
    assert main(["import", "tensorpack", str(d / "lq-preact-resnet18.npz"), "-o", str(out), "--arch", "lq-resnet18",
                 "--input-size", str(SIZE), "--no-imagenet-norm", "--float-last-act"]) == 0
    err = capsys.readouterr().err
    assert "width multiplier 1/8" in err
    net = load_network(out)
    ref = _reference(T, x)
    got = Golden(net).run_float(x)
    assert np.abs(got - ref).max() <= 1e-9 * np.abs(ref).max() + 1e-4
    assert np.array_equal(got.argmax(1), ref.argmax(1))
    # the identity shortcut of group0/block0 is the unquantized ReLU stream: no integer form yet
    with pytest.raises(NotSupportedError, match="conv0_relu"):
        lower(net)


def test_lq_preact_resnet18_default_import(lq, capsys):
    """Default hardware quantizer before the classifier; the ImageNet mean/std folds into the
    SAME-padded conv0 (its padding holds the mean per channel, tests/gen/test_import_lq_vgg.py)
    -- --no-imagenet-norm imports a checkpoint trained on image/255."""
    d, T, x = lq
    out = d / "def.yaml"
    assert main(["import", "tensorpack", str(d / "lq-preact-resnet18.npz"), "-o", str(out), "--arch", "lq-resnet18",
                 "--input-size", str(SIZE)]) == 0
    assert len(load_network(out).layer("conv0")["pad_value"]) == 3
    assert main(["import", "tensorpack", str(d / "lq-preact-resnet18.npz"), "-o", str(out), "--arch", "lq-resnet18",
                 "--input-size", str(SIZE), "--no-imagenet-norm"]) == 0
    net = load_network(out)
    q = net.layer("group3_bnlast_act")["quant"]
    assert q["type"] == "uint" and q["bits"] == 8
    ref = _reference(T, x)
    assert (Golden(net).run_float(x).argmax(1) == ref.argmax(1)).mean() >= 0.9


def test_lq_resnet_wrong_names_are_named(lq, tmp_path, capsys):
    d, T, x = lq
    bad = dict(T)
    bad["group1/block0/convshortcut/weight_quant/basis:0"] = bad.pop("group1/block0/convshortcut/weight_quant/basis:0")[:1]
    np.savez(tmp_path / "bad.npz", **bad)
    assert main(["import", "tensorpack", str(tmp_path / "bad.npz"), "-o", str(tmp_path / "x.yaml"), "--arch",
                 "lq-resnet18", "--input-size", str(SIZE), "--no-imagenet-norm"]) != 0
    assert "group1/block0/convshortcut/weight_quant/basis:0" in capsys.readouterr().err
    assert not (tmp_path / "x.yaml").exists()
