"""microsoft/LQ-Nets pre-activation ResNet-18 (``imagenet.py --mode preact --depth 18``, W/A 2/2).

LQ-Nets' code is TensorFlow 1 with ``tf.contrib`` (``learned_quantization.py`` imports
``tensorflow.contrib.framework``), which TensorFlow 2 no longer has, so no checkpoint can be
written by its own code here. The test writes one with exactly the variable names and shapes
its code creates (``resnet_model.py`` ``preresnet_group``/``preresnet_basicblock``, type-B
shortcuts; ``Conv2DQuant`` -> ``<scope>/W``, ``<scope>/weight_quant/basis [bits, out]``,
``nl=BNReLU`` / ``get_bn`` -> ``<scope>/bn/*``; ``QuantizedActiv`` ->
``<scope>/ActivationQuantization/basis [bits, 1]``), at width 1/8 and 32x32, and computes
the logits with its own PyTorch transcription of that code's forward pass (TF SAME padding,
the quantizers' threshold loops), not with the importer's inverse. The integer path (the
unquantized ReLU shortcut stream clipped in the add, gen/graph.py) against the float path,
the full-size plan and per-device fit, and (slow) compile + RTL == golden int."""

import numpy as np
import pytest
import yaml

from bitplane.cli.main import main
from bitplane.core.errors import NotSupportedError
from bitplane.gen.golden import Golden
from bitplane.gen.lower import lower
from bitplane.gen.quant import ActQuant
from bitplane.gen.spec import load_network

torch = pytest.importorskip("torch")
F = torch.nn.functional
W8 = 8                     # width divisor
CH = [64 // W8, 128 // W8, 256 // W8, 512 // W8]
SIZE = 32


def _ckpt(rng, width=W8):
    """The variables LQ-Nets' preact ResNet-18 creates (TF names with ':0'), random values, at
    width multiplier ``1/width``."""
    T = {}
    CH = [64 // width, 128 // width, 256 // width, 512 // width]

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
    # the unquantized ReLU before the classifier is summed by the global pool: its values
    # themselves would be needed (the default import quantizes it, below)
    with pytest.raises(NotSupportedError, match="'gap'"):
        lower(net)


def test_lq_preact_resnet18_default_import(lq, capsys):
    """Default hardware quantizer before the classifier; the ImageNet mean/std folds into the
    SAME-padded conv0 (its padding holds the mean per channel, tests/gen/test_import_lq_vgg.py)
    -- --no-imagenet-norm imports a checkpoint trained on image/255."""
    d, T, x = lq
    out = d / "def.yaml"
    assert main(["import", "tensorpack", str(d / "lq-preact-resnet18.npz"), "-o", str(out), "--arch", "lq-resnet18",
                 "--input-size", str(SIZE), "--first-bits", "float", "--last-bits", "float", "--last-act-bits", "8",
                 "--coef-bits", "12"]) == 0                   # all given: nothing to measure
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


# ---------------------------------------------------------------- the integer path and hardware

def _structured(n_rand=24):
    """Random codes and structured images: flat grey levels, ramps, checkerboards, one colour
    channel, stripes (uint8 [N, 3, SIZE, SIZE])."""
    rng = np.random.default_rng(17)
    xs = [rng.integers(0, 256, (n_rand, 3, SIZE, SIZE))]
    yy, xx = np.mgrid[:SIZE, :SIZE]
    imgs = [np.full((3, SIZE, SIZE), v) for v in (0, 64, 128, 255)]
    imgs += [np.stack([xx * 255 // (SIZE - 1)] * 3), np.stack([yy * 255 // (SIZE - 1)] * 3),
             np.stack([(xx + yy) * 255 // (2 * SIZE - 2), xx * 8 % 256, yy * 8 % 256])]
    imgs += [np.stack([((xx // k + yy // k) % 2) * 255] * 3) for k in (1, 2, 4, 8)]
    imgs += [np.stack([np.full((SIZE, SIZE), 200) if c == j else np.zeros((SIZE, SIZE)) for c in range(3)])
             for j in range(3)]
    imgs += [np.stack([(xx // 3 % 2) * 180, (yy // 5 % 2) * 220, np.full((SIZE, SIZE), 90)])]
    xs.append(np.stack(imgs))
    return np.concatenate(xs).astype(np.uint8)


def _import(d, out, *extra):
    assert main(["import", "tensorpack", str(d / "lq-preact-resnet18.npz"), "-o", str(out), "--arch", "lq-resnet18",
                 "--input-size", str(SIZE), "--no-imagenet-norm", *extra]) == 0
    return load_network(out)


def _flips(g, x):
    """Per quant_act, how many codes of the integer path differ from the float path's."""
    _, ft = g.run_float(x, trace=True)
    _, it = g.run_int(x, trace=True)
    stage_of = {n: s.name for s in g.lowered.stages for n in getattr(s, "layers", [s.name])}
    return {L.name: int((ActQuant(L["quant"], L["nonlin"], L.params).encode(ft[L.name])
                         != it[stage_of[L.name]]).sum())
            for L in g.net.layers if L.op == "quant_act"}


def test_lq_preact_resnet18_integer_path(lq, capsys):
    """The unquantized ReLU stream (conv0 -> bn -> ReLU -> pool0: group0/block0's quantizer input
    and identity shortcut) in the integer path: the ReLU folds into quant1's thresholds, the
    pool runs on conv0's accumulators, the add clips the shortcut's product (gen/graph.py).

    The import measures its integer path on synthetic images and chooses the fixed point of
    LQ-Nets' learned bases (``coef_bits``, docs/design.md section 5.4) for every lq quantizer.
    Measured on 24 random and 15 structured inputs: golden int argmax == golden float argmax on
    39/39 and every one of the 17 quantizers' codes is the float path's, with integer first/last
    weights given (``--first-bits 16 --last-bits 8``) and by default (first/last chosen too).
    The same spec with the quantizer's default 12 bits (``--coef-bits 12``) flips codes (measured:
    443, at most 100 of 2,496 at one quantizer), though not these decisions."""
    d, T, _ = lq
    x = _structured()
    net = _import(d, d / "int.yaml", "--first-bits", "16", "--last-bits", "8")
    cb = {L.name: L[k].get("coef_bits") for L in net.layers for k in ("weight_quant", "quant")
          if isinstance(L.get(k), dict) and L[k]["type"] == "lq"}
    q = cb["group0_block0_conv1"]
    assert set(cb.values()) == {q} and q > 12
    g = Golden(net)
    low = g.lowered
    st = {s.name: s for s in low.stages}
    assert low.inputs["group0_block0_add"] == ("group0_block0_conv2", "pool0")
    add = st["group0_block0_add"]
    assert add.clips[0] is None and add.clips[1] is not None and not add.exact
    assert type(st["pool0"]).__name__ == "FixedPoolStage" and low.inputs["group0_block0_quant1"] == ("pool0",)
    assert any(s.pre_shifts and any(s.pre_shifts) for s in low.stages if s.kind == "add")
    fl = g.run_float(x)
    it = g.dequantize(g.run_int(x))
    assert np.array_equal(it.argmax(1), fl.argmax(1))
    flips = _flips(g, x)
    assert len(flips) == 17 and sum(flips.values()) == 0, flips
    # against LQ-Nets' own function (transcription): its unquantized last activation vs the
    # import's 8-bit quantizer
    assert (it.argmax(1) == _reference(T, x).argmax(1)).mean() >= 0.9
    # the default import: first/last precision and coef_bits chosen
    gd = Golden(_import(d, d / "default.yaml"))
    assert set(gd.net.layer("group0_block0_conv1")["weight_quant"].items()) >= {("coef_bits", q)}
    assert np.array_equal(gd.dequantize(gd.run_int(x)).argmax(1), gd.run_float(x).argmax(1))
    assert sum(_flips(gd, x).values()) == 0
    # the choice is what does it: the same spec with 12-bit coefficients flips codes
    ka = net.layer("group3_bnlast_act")["quant"]["bits"]
    g12 = Golden(_import(d, d / "cb12.yaml", "--first-bits", "16", "--last-bits", "8", "--last-act-bits", str(ka),
                         "--coef-bits", "12"))
    flips12 = _flips(g12, x)
    assert sum(flips12.values()) > 0, flips12
    print(f"lq-resnet18 {SIZE}x{SIZE} 1/{W8}, {len(x)} inputs: chose coef_bits {q} ({ka}-bit last activation): "
          f"no code differs; "
          f"--coef-bits 12: {sum(flips12.values())} codes differ (max {max(flips12.values())} at one quantizer)")


@pytest.mark.slow
def test_lq_preact_resnet18_plan_and_fit_full_size(tmp_path, capsys):
    """Full size (224x224, width 1, random weights of LQ-Nets' shapes): the plan maps every
    stage (the ReLU shortcut's add included) and the per-device fit puts it on the U250 and the
    ZCU104 at 10 frames/s (measured 13.8 frames/s: 293.5 RAMB36 + 69 URAM on the ZCU104), not
    on the xc7z020 (docs/import-tensorpack.md). Slow: ~2 min, most of it the planner's folds.
    The precisions are pinned to the import's earlier defaults (float conv0/linear: int8 in
    hardware, 8-bit last activation, 12-bit bases): a random net's measured choice is arbitrary
    (it reaches no target; docs/seed-networks.md says what the measured default costs)."""
    from bitplane.gen.devices import fit
    from bitplane.gen.plan import plan
    T = _ckpt(np.random.default_rng(8), width=1)
    np.savez(tmp_path / "ckpt.npz", **T)
    assert main(["import", "tensorpack", str(tmp_path / "ckpt.npz"), "-o", str(tmp_path / "full.yaml"), "--arch",
                 "lq-resnet18", "--no-imagenet-norm", "--first-bits", "float", "--last-bits", "float",
                 "--last-act-bits", "8", "--coef-bits", "12"]) == 0
    net = load_network(tmp_path / "full.yaml")
    assert net.input_shape == (3, 224, 224)
    low = lower(net)
    p = plan(low, target_fps=10)
    assert p["cycles_per_frame"] <= 10_000_000
    rows = {r["device"]: r for r in fit(low, p)}
    assert rows["xcu250"]["fits"] and rows["xczu7ev"]["fits"] and not rows["xc7z020"]["fits"]
    capsys.readouterr()
    assert main(["plan", str(tmp_path / "full.yaml"), "--target-fps", "10"]) == 0
    out = capsys.readouterr().out
    assert "xczu7ev" in out and "xcu250" in out and "group0_block0_add" in out


@pytest.mark.slow
def test_lq_preact_resnet18_compiles_and_rtl_equals_golden_int(lq, tmp_path, capsys):
    """The whole LQ-Nets graph at 32x32, width 1/8 (unquantized ReLU shortcut, projection and
    identity shortcuts, global pool, LQ-Nets' learned bases) compiles and runs in RTL (native
    harness, input gaps and output stalls) == golden int on three frames; back to back, the
    measured period is the plan's (measured 73,728 = 73,728 cycles/frame; compile 309 s,
    Verilator build ~32 min and ~3 min per simulation on the loaded 2-core machine)."""
    from bitplane.gen.compile import compile_network
    from bitplane.sim.accel import simulate
    d, T, _ = lq
    net = _import(d, tmp_path / "net.yaml")
    x = _structured()[[0, 1, 30]]
    m = compile_network(net, tmp_path / "out", target_fps=1000, progress=lambda s: None)
    want = Golden(net).run_int(x)
    y, _ = simulate(tmp_path / "out", x, gap_pct=10, stall_pct=10, seed=1)
    assert np.array_equal(y, want)
    y, st = simulate(tmp_path / "out", x)
    assert np.array_equal(y, want)
    assert abs(st["cycles_per_frame"] - m["cycles_per_frame"]) <= 0.05 * m["cycles_per_frame"]
