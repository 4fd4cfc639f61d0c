"""microsoft/LQ-Nets "VGG-Variant" (``vgg_model.py``, ``imagenet.py --mode vgg``, W/A 2/2).

LQ-Nets' code is TensorFlow 1 with ``tf.contrib``, which TensorFlow 2 no longer has, so no
checkpoint can be written by its own code here. The test writes one with exactly the
variable names and shapes its code creates (``vgg_backbone``: ``Conv2DQuant`` ->
``<scope>/W``, ``<scope>/weight_quant/basis [bits, out]``, ``<scope>/b`` for fc5/fc6;
``nl=getBNReLUQuant`` and ``BNReLUQuant('bnquant*')`` -> ``<scope>/bn/*`` and
``<scope>/quant/ActivationQuantization/basis [bits, 1]``; ``getfcBNReLU(Quant)`` ->
``fc5/bn``, ``fc6/bn`` without gamma/beta and, in the script's default NCHW, one statistic
(``[1]``: tensorpack's BatchNorm with ``data_format='NHWC'`` normalises axis 3 of the
``[N, 4096, 1, 1]`` tensor); ``FullyConnected('fc7')`` -> ``fc7/W [4096, 1000]``, ``fc7/b``),
at reduced width and input size, and computes the logits with its own PyTorch
transcription of that code's forward pass (ImageNetModel's BGR mean/std, TF SAME padding of
the *normalised* image with 0, the quantizers' threshold loops), not with the importer's
inverse. Its batchnorm statistics are the transcription's own batch statistics on the
test images (so activations spread over the quantizer levels, as in a trained net)."""

import numpy as np
import pytest

from bitplane.cli.main import main
from bitplane.gen.golden import Golden
from bitplane.gen.spec import load_network
from tests.gen.test_import_lq_resnet import _quant_act, _quant_w, _same, _t

torch = pytest.importorskip("torch")
F = torch.nn.functional

MEAN_BGR = np.array([0.406, 0.456, 0.485])            # ImageNetModel: RGB [0.485, 0.456, 0.406], reversed
STD_BGR = np.array([0.225, 0.224, 0.229])
FULL = [96, 256, 512, 512, 4096]          # conv1, stage 2, 3, 4, fc5/fc6


def _fc5_kernel(size):
    m = -(-size // 2)
    for _ in range(4):
        m //= 2
    return m


def _scopes(div, size):
    """[(kind, scope, args)] of vgg_backbone in order; kind: conv/bnq/pool/fc."""
    c = [w // div for w in FULL]
    out = [("conv1", "conv1", (7, 3, c[0])), ("pool", "pool1", None), ("bnq", "bnquant2_0", c[0])]
    cin = c[0]
    for st, ch in ((2, c[1]), (3, c[2]), (4, c[3])):
        for i in (1, 2):
            out += [("conv", f"conv{st}_{i}", (3, cin, ch)), ("bnq", f"conv{st}_{i}", ch)]
            cin = ch
        out += [("conv", f"conv{st}_3", (3, ch, ch)), ("pool", f"pool{st}", None),
                ("bnq", f"bnquant{st + 1}" + ("_0" if st < 4 else ""), ch)]
    out += [("fc5", "fc5", (_fc5_kernel(size), cin, c[4])), ("fc6", "fc6", (1, c[4], c[4])),
            ("fc7", "fc7", (c[4], 1000))]
    return out


def _ckpt(rng, div, size, nchw=True):
    """The variables LQ-Nets' VGG creates (TF names with ':0'), random weights; batchnorm
    statistics are filled in by :func:`_reference` with ``calibrate``."""
    T = {}

    def conv_w(scope, k, cin, cout, quant=True, bias=False):
        T[f"{scope}/W:0"] = rng.normal(0, (2 / (k * k * cin)) ** 0.5, (k, k, cin, cout))
        if quant:
            b0 = rng.uniform(0.3, 1.0, cout) * (2 / (k * k * cout)) ** 0.5
            T[f"{scope}/weight_quant/basis:0"] = np.stack([b0, 2 * b0 * rng.uniform(0.8, 1.2, cout)])
        if bias:
            T[f"{scope}/b:0"] = rng.normal(0, 0.1, cout)

    def bn(scope, c, affine=True):
        if affine:
            T[f"{scope}/gamma:0"] = rng.uniform(0.5, 1.5, c)
            T[f"{scope}/beta:0"] = rng.normal(0, 0.3, c)
        n = 1 if (not affine and nchw) else c
        T[f"{scope}/mean/EMA:0"] = np.zeros(n)
        T[f"{scope}/variance/EMA:0"] = np.ones(n)

    def act(scope):
        T[f"{scope}/ActivationQuantization/basis:0"] = np.array([[0.3], [0.6]]) * rng.uniform(0.8, 1.2, (2, 1))

    for kind, scope, a in _scopes(div, size):
        if kind == "conv1":
            conv_w(scope, *a, quant=False)
        elif kind == "conv":
            conv_w(scope, *a)
        elif kind == "bnq":
            bn(f"{scope}/bn", a)
            act(f"{scope}/quant")
        elif kind in ("fc5", "fc6"):
            conv_w(scope, *a, bias=True)
            bn(f"{scope}/bn", a[2], affine=False)
            if kind == "fc5":
                act("fc5/quant")
        elif kind == "fc7":
            T["fc7/W:0"] = rng.normal(0, 0.1, a)
            T["fc7/b:0"] = rng.normal(0, 0.1, a[1])
    return T


def _reference(T, x_codes, div, size, calibrate=False):
    """vgg_backbone's forward pass on ImageNetModel.image_preprocess(image) (NCHW, BGR codes).
    With ``calibrate``, every batchnorm's moving statistics are first set to its batch
    statistics (the per-channel ones over N, H, W; fc5/fc6 in NCHW: over everything)."""
    g = lambda k: T[k + ":0"]                                         # noqa: E731

    def conv(x, scope, pad="same", stride=1, quant=True, bias=False):
        w = g(f"{scope}/W")
        if quant:
            w = _quant_w(w, g(f"{scope}/weight_quant/basis"))
        k = w.shape[0]
        if pad == "same":
            t, b = _same(x.shape[2], k, stride)
            l_, r = _same(x.shape[3], k, stride)
            x = F.pad(x, (l_, r, t, b))                  # zeros: of the normalised image for conv1
        y = F.conv2d(x, _t(w.transpose(3, 2, 0, 1)), stride=stride)
        return y + _t(g(f"{scope}/b")).view(1, -1, 1, 1) if bias else y

    def bn(x, scope):
        m, v = f"{scope}/mean/EMA:0", f"{scope}/variance/EMA:0"
        scalar = T[m].shape == (1,)
        if calibrate:
            dims = (0, 1, 2, 3) if scalar else (0, 2, 3)
            T[m] = x.mean(dim=dims).reshape(-1).numpy()
            T[v] = x.var(dim=dims, unbiased=False).reshape(-1).numpy()
        mean, var = _t(T[m]).view(1, -1, 1, 1), _t(T[v]).view(1, -1, 1, 1)
        y = (x - mean) / torch.sqrt(var + 1e-5)
        if f"{scope}/gamma:0" in T:
            y = y * _t(g(f"{scope}/gamma")).view(1, -1, 1, 1) + _t(g(f"{scope}/beta")).view(1, -1, 1, 1)
        return y

    def qa(x, scope):
        return _quant_act(x, g(f"{scope}/quant/ActivationQuantization/basis"))

    x = _t(x_codes) / 255.0
    x = (x - _t(MEAN_BGR).view(1, 3, 1, 1)) / _t(STD_BGR).view(1, 3, 1, 1)
    for kind, scope, a in _scopes(div, size):
        if kind == "conv1":
            x = torch.relu(conv(x, scope, stride=2, quant=False))
        elif kind == "conv":
            x = conv(x, scope)
            if not scope.endswith("_3"):
                x = qa(torch.relu(bn(x, f"{scope}/bn")), scope)
        elif kind == "pool":
            x = F.max_pool2d(x, 2, 2)
        elif kind == "bnq":
            if not scope.startswith("conv"):                 # the conv<s>_<i> ones ran with their conv
                x = qa(torch.relu(bn(x, f"{scope}/bn")), scope)
        elif kind == "fc5":
            x = qa(torch.relu(bn(conv(x, scope, pad="valid", bias=True), "fc5/bn")), "fc5")
        elif kind == "fc6":
            x = torch.relu(bn(conv(x, scope, pad="valid", bias=True), "fc6/bn"))
        else:
            x = x.reshape(len(x), -1) @ _t(g("fc7/W")) + _t(g("fc7/b"))
    return x.numpy()


def make_checkpoint(path, div, size, n_calib=24, seed=5, nchw=True):
    """Write the checkpoint (batchnorms calibrated on ``n_calib`` images); return T, images."""
    T = _ckpt(np.random.default_rng(seed), div, size, nchw)
    x = np.random.default_rng(seed + 1).integers(0, 256, (n_calib, 3, size, size)).astype(np.uint8)
    _reference(T, x, div, size, calibrate=True)
    T = {k: np.asarray(v, np.float32) for k, v in T.items()}
    np.savez(path, **T)
    return T, x


DIV, SIZE = 16, 64                         # fc5 kernel 2 here


@pytest.fixture(scope="module")
def lqvgg(tmp_path_factory):
    d = tmp_path_factory.mktemp("lq-vgg")
    T, x = make_checkpoint(d / "lq-vgg.npz", DIV, SIZE)
    return d, T, x


def _import(d, name, capsys, *extra):
    out = d / f"{name}.yaml"
    assert main(["import", "tensorpack", str(d / "lq-vgg.npz"), "-o", str(out), "--arch", "lq-vgg",
                 "--input-size", str(SIZE), *extra]) == 0
    return load_network(out), capsys.readouterr().err


def test_lq_vgg_golden_float_equals_the_transcription(lqvgg, capsys):
    """--float-last-act: the script's function; the ImageNet normalisation is folded into conv1,
    whose SAME padding holds the per-channel mean (the normalised image's 0)."""
    d, T, x = lqvgg
    net, err = _import(d, "float", capsys, "--float-last-act")
    assert "width multiplier 1/16" in err and "one batchnorm statistic for all channels" in err
    assert "fc5_bn" in err and "pad_value" in err
    c1 = net.layer("conv1")
    assert np.allclose(np.array(c1["pad_value"]) * 255, MEAN_BGR * 255)
    assert net.layer("fc5")["kernel"] == 2
    ref = _reference(T, x, DIV, SIZE)
    got = Golden(net).run_float(x)
    err_max = np.abs(got - ref).max()
    assert err_max <= 1e-5 * np.abs(ref).max(), err_max
    assert np.array_equal(got.argmax(1), ref.argmax(1))
    # zero padding of the raw image (what the fold alone would do) changes the logits
    zero = Golden(net)
    zero.net.layer("conv1").attrs.pop("pad_value")
    assert np.abs(zero.run_float(x) - ref).max() > 1e-3 * np.abs(ref).max()


def _lq_coef_bits(net):
    """The coef_bits of every lq quantizer of the spec (weights and activations)."""
    return {L.name: L[k].get("coef_bits") for L in net.layers for k in ("weight_quant", "quant")
            if isinstance(L.get(k), dict) and L[k]["type"] == "lq"}


def test_lq_vgg_default_import_runs_in_the_integer_path(lqvgg, capsys):
    """No flags but --arch/--input-size: the import measures its integer path (the hardware's) on
    synthetic images and chooses the fixed point of LQ-Nets' bases (coef_bits) and the first/last
    precision; conv1's padding in 8 fractional planes below the input code. Golden int vs float,
    stage by stage (gen.compare), on the test's 24 images: every code of every stage is the float
    path's. The choice is what does it: the quantizer's default 12 bits (``--coef-bits 12``)
    flips codes in every stage, which this random 2-bit net amplifies (1/24 decisions kept)."""
    from bitplane.gen.compare import compare_paths
    d, T, x = lqvgg
    net, err = _import(d, "default", capsys)
    cb = _lq_coef_bits(net)
    q = cb["conv2_1"]
    assert len(cb) == 22 and set(cb.values()) == {q} and q > 12
    note = next(line for line in err.splitlines() if "LQ-Nets bases in fixed point" in line)
    assert f"coef_bits {q} " in note and "12: " in note and "codes differ" in note, note
    pnote = next(line for line in err.splitlines() if "first/last-layer precision chosen" in line)
    assert "argmax agreement of the integer path (hardware)" in pnote and "synthetic images" in pnote
    k = net.layer("conv1")["weight_quant"]["bits"]
    assert net.layer("conv1")["weight_quant"] == {"type": "int", "bits": k} and f"conv1 weights int{k}" in pnote
    assert net.layer("fc6_act")["quant"]["bits"] == 8
    g = Golden(net)
    st = g.lowered.stages[0]
    assert st.name == "conv1" and st.in_act.frac_bits == 8 and st.in_act.planes == 16
    assert list(st.pad_codes) == [26504, 29768, 31661]             # round(255 * mean_BGR * 256)
    ref = _reference(T, x, DIV, SIZE)
    f = g.run_float(x)
    # int16 conv1/fc7 and the 8-bit fc6_act against the script's float function: this random
    # 2-bit net amplifies the smallest change (measured 21/24; the synthetic images' note says BELOW)
    assert (f.argmax(1) == ref.argmax(1)).mean() >= 0.8
    rep = compare_paths(g, x)
    assert rep["stages"][0]["stage"] == "conv1" and rep["stages"][0]["rounding_violations"] == 0
    assert rep["code_mismatches"] == 0 and rep["argmax_agreement"] == 1.0 and rep["unexplained"] == 0
    # the same spec with the quantizer's default 12 bits, all given by hand: codes flip, decisions go
    kl = net.layer("fc7")["weight_quant"]["bits"]
    net12, err12 = _import(d, "cb12", capsys, "--coef-bits", "12", "--first-bits", str(k), "--last-bits", str(kl),
                           "--last-act-bits", "8")
    assert set(_lq_coef_bits(net12).values()) == {12} and "coef_bits 12 for every lq quantizer (given)" in err12
    rep12 = compare_paths(Golden(net12), x)
    assert rep12["code_mismatches"] > 0 and rep12["argmax_agreement"] < 0.5 and rep12["unexplained"] == 0
    print(f"lq-vgg {SIZE}x{SIZE} 1/{DIV}, {len(x)} images: default float = transcription "
          f"{(f.argmax(1) == ref.argmax(1)).mean():.3f}; chose coef_bits {q}, int{k} conv1: int = float "
          f"{rep['argmax_agreement']:.3f}, max |logit diff| {rep['max_abs_logit_error']:.3g}; --coef-bits 12: "
          f"int = float {rep12['argmax_agreement']:.3f}, {rep12['code_mismatches']} codes differ")


def test_lq_vgg_coef_bits_ladder_reaches_the_target(tmp_path, capsys):
    """32x32 at width 1/32 (the RTL test's net): on the 256 synthetic images the ladder finds a
    rung whose integer path keeps every code of the float path (measured: 12 bits 2,125 codes
    and 6 decisions differ, 14: 582 and 2, 16: 2 codes, 18: none), then the cheapest first/last
    precision reaching 99.9 % of the checkpoint's decisions: nothing BELOW the target."""
    import re
    make_checkpoint(tmp_path / "lq-vgg.npz", 32, 32, n_calib=16)
    out = tmp_path / "n.yaml"
    assert main(["import", "tensorpack", str(tmp_path / "lq-vgg.npz"), "-o", str(out), "--arch", "lq-vgg",
                 "--input-size", "32"]) == 0
    err = capsys.readouterr().err
    assert "BELOW" not in err
    note = next(line for line in err.splitlines() if "LQ-Nets bases in fixed point" in line)
    q = int(re.search(r"coef_bits (\d+) chosen", note).group(1))
    rungs = {int(k): int(c) for k, c in re.findall(r"(\d+): [\d.]+% \(\d+/256\), (\d+) codes differ", note)}
    assert rungs[q] == 0 and rungs[12] > 0 and all(rungs[k] > 0 for k in rungs if k < q), rungs
    assert set(_lq_coef_bits(load_network(out)).values()) == {q}
    print(f"lq-vgg 32x32 1/32: chose coef_bits {q}; codes differing per rung {rungs}")


def test_lq_vgg_calib_reports_the_integer_paths_agreement(lqvgg, capsys, tmp_path):
    """--calib: the agreement the note reports is the integer path's (what the hardware computes)
    with the checkpoint's float function, recomputed here independently; with 12-bit coefficients
    given, the float path of the same spec would still make the checkpoint's decisions, the
    integer path does not, and the note says so."""
    d, T, x = lqvgg
    np.save(tmp_path / "calib.npy", x)
    ckpt = Golden(_import(d, "ckpt-float", capsys, "--float-last-act")[0]).run_float(x).argmax(1)
    for extra in ((), ("--coef-bits", "12")):
        net, err = _import(d, "cal", capsys, "--calib", str(tmp_path / "calib.npy"), *extra)
        note = next(line for line in err.splitlines() if "first/last-layer precision" in line)
        g = Golden(net)
        n_int = int((g.dequantize(g.run_int(x)).argmax(1) == ckpt).sum())
        n_float = int((g.run_float(x).argmax(1) == ckpt).sum())
        assert f"integer path (hardware) with the checkpoint's float function {n_int / 24:.2%} ({n_int}/24) on 24 " \
               f"images of" in note, (n_int, note)
        if extra:
            assert n_float >= 22 and n_int <= 12 and "BELOW the 99.9% target" in note, (n_float, n_int)
        else:           # the chosen spec: int16 first/last, 8-bit fc6_act (this random net's decisions are fragile)
            assert n_int >= 22 and ("BELOW" in note) == (n_int < 24)
        print(f"--calib 24 images {' '.join(extra) or '(coef_bits auto)'}: int path {n_int}/24, float path "
              f"{n_float}/24 of the checkpoint's decisions")


def test_lq_coef_bits_bad_values_are_refused(lqvgg, tmp_path, capsys):
    from tests.support.cli import cli_rejects
    d, T, x = lqvgg
    out = tmp_path / "o" / "x.yaml"
    base = ["import", "tensorpack", str(d / "lq-vgg.npz"), "-o", str(out), "--input-size", str(SIZE)]
    cli_rejects(base + ["--arch", "lq-vgg", "--coef-bits", "30"], capsys,
                "--coef-bits must be auto or an integer 2..24", "'30'")
    cli_rejects(base + ["--arch", "lq-vgg", "--coef-bits", "x"], capsys, "--coef-bits", "'x'")
    cli_rejects(base + ["--arch", "svhn", "--coef-bits", "16"], capsys, "--coef-bits applies to the LQ-Nets",
                "not svhn")
    cli_rejects(base + ["--arch", "lq-vgg", "--coef-bits", "auto", "--float-last-act"], capsys,
                "no precision to calibrate")


def test_lq_vgg_nhwc_checkpoint_has_per_channel_fc_batchnorms(tmp_path, capsys):
    """Trained with --data_format NHWC, fc5/fc6's batchnorms have one statistic per channel."""
    T, x = make_checkpoint(tmp_path / "lq-vgg.npz", DIV, SIZE, n_calib=8, nchw=False)
    assert T["fc5/bn/mean/EMA:0"].shape == (4096 // DIV,)
    net, err = _import(tmp_path, "nhwc", capsys, "--float-last-act")
    assert "one batchnorm statistic" not in err
    ref = _reference(T, x, DIV, SIZE)
    assert np.abs(Golden(net).run_float(x) - ref).max() <= 1e-5 * np.abs(ref).max()


def test_lq_resnet18_with_imagenet_norm_equals_its_transcription(tmp_path, capsys):
    """The same padding semantics remove lq-resnet18's refusal: its SAME-padded conv0 with the
    mean/std folded in equals the transcription fed the normalised image (zero-padded)."""
    from tests.gen.test_import_lq_resnet import SIZE as RS, _ckpt as rn_ckpt, _reference as rn_reference
    T = {k: v for k, v in rn_ckpt(np.random.default_rng(5)).items()}
    np.savez(tmp_path / "rn-ckpt.npz", **T)
    x = np.random.default_rng(6).integers(0, 256, (8, 3, RS, RS)).astype(np.uint8)
    out = tmp_path / "rn.yaml"
    assert main(["import", "tensorpack", str(tmp_path / "rn-ckpt.npz"), "-o", str(out), "--arch", "lq-resnet18",
                 "--input-size", str(RS), "--float-last-act"]) == 0
    capsys.readouterr()
    # _reference divides its input by 255: hand it 255 x the normalised image
    xn = (x / 255.0 - MEAN_BGR.reshape(1, 3, 1, 1)) / STD_BGR.reshape(1, 3, 1, 1) * 255.0
    ref = rn_reference(T, xn)
    got = Golden(load_network(out)).run_float(x)
    assert np.abs(got - ref).max() <= 1e-5 * np.abs(ref).max()
    assert np.array_equal(got.argmax(1), ref.argmax(1))


@pytest.mark.parametrize("edit, needles", [
    ("missing", ["layer 'conv3_2'", "missing tensor 'conv3_2/weight_quant/basis'"]),
    ("shape", ["conv2_1/quant/ActivationQuantization/basis:0", "shape [3, 1]", "expected [2, 1]"]),
    ("extra", ["conv5_1/W:0", "unexpected"]),
])
def test_lq_vgg_bad_checkpoint_is_named(lqvgg, tmp_path, capsys, edit, needles):
    d, T, x = lqvgg
    bad = dict(T)
    if edit == "missing":
        del bad["conv3_2/weight_quant/basis:0"]
    elif edit == "shape":
        bad["conv2_1/quant/ActivationQuantization/basis:0"] = np.ones((3, 1), np.float32)
    else:
        bad["conv5_1/W:0"] = np.ones((3, 3, 4, 4), np.float32)
    np.savez(tmp_path / "bad.npz", **bad)
    out = tmp_path / "x.yaml"
    assert main(["import", "tensorpack", str(tmp_path / "bad.npz"), "-o", str(out), "--arch", "lq-vgg",
                 "--input-size", str(SIZE)]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and all(n in err for n in needles), err
    assert not out.exists() and not (tmp_path / "x.npz").exists()


def test_other_archs_checkpoint_is_refused_as_lq_vgg(lqvgg, tmp_path, capsys):
    """An LQ-Nets VGG checkpoint read as lq-alexnet, and the reverse: one line naming a variable."""
    d, T, x = lqvgg
    out = tmp_path / "x.yaml"
    assert main(["import", "tensorpack", str(d / "lq-vgg.npz"), "-o", str(out), "--arch", "lq-alexnet"]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "conv1/W:0" in err and not out.exists()
    assert main(["import", "tensorpack", str(d / "lq-vgg.npz"), "-o", str(out), "--arch", "lq-resnet18"]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "missing tensor 'conv0/W'" in err and not out.exists()


def test_cifar_vgg_small_is_refused_naming_the_mean_image(tmp_path, capsys):
    np.savez(tmp_path / "c.npz", **{"conv0/W:0": np.zeros((3, 3, 3, 128), np.float32)})
    out = tmp_path / "c.yaml"
    assert main(["import", "tensorpack", str(tmp_path / "c.npz"), "-o", str(out), "--arch", "lq-vgg-small"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "per-pixel mean" in err and "get_per_pixel_mean" in err, err
    assert not out.exists()


@pytest.mark.slow
def test_lq_vgg_rtl_equals_golden_int(tmp_path, capsys):
    """32x32 at width 1/32 (fc5 1x1), default import: compile, then the native Verilator
    harness gives exactly the golden integer accumulators on 3 frames, under random input
    gaps and output stalls and back to back (conv1's per-channel padding codes and 8
    fractional planes included)."""
    from tests.support.networks import rtl_check
    div, size = 32, 32
    T, x = make_checkpoint(tmp_path / "lq-vgg.npz", div, size, n_calib=16)
    out = tmp_path / "net.yaml"
    assert main(["import", "tensorpack", str(tmp_path / "lq-vgg.npz"), "-o", str(out), "--arch", "lq-vgg",
                 "--input-size", str(size)]) == 0
    capsys.readouterr()
    r = rtl_check(load_network(out), x[:3], tmp_path / "acc", target_fps=1000)
    assert r["exact"]
    m, st = r["m"], r["st"]
    print(f"lq-vgg 32x32 1/32: planned {m['cycles_per_frame']} cycles/frame, simulated {st['cycles_per_frame']} "
          f"(latency {st['latency_cycles']}); compile {r['compile_s']:.0f} s, build+sim {r['build_sim_s']:.0f} s, "
          f"sim {r['sim_s']:.0f} s")
    assert st["cycles_per_frame"] <= 1.1 * m["cycles_per_frame"]


def test_lq_alexnet_nchw_fc_batchnorms_have_one_statistic(tmp_path, capsys):
    """LQ-Nets AlexNet's fc6/fc7 use the same getfcBNReLU(Quant): an NCHW-trained checkpoint
    has [1] statistics there, read and broadcast to every channel (width 1/16, 227x227)."""
    rng = np.random.default_rng(2)
    T = {}

    def conv(s, k, cin, cout, quant=True, bias=False):
        T[f"{s}/W:0"] = rng.normal(0, 0.1, (k, k, cin, cout))
        if quant:
            T[f"{s}/weight_quant/basis:0"] = np.stack([np.full(cout, 0.05), np.full(cout, 0.1)])
        if bias:
            T[f"{s}/b:0"] = rng.normal(0, 0.1, cout)

    def bn(s, c, n=None):
        if n is None:
            T[f"{s}/gamma:0"], T[f"{s}/beta:0"] = np.ones(c), np.zeros(c)
        T[f"{s}/mean/EMA:0"], T[f"{s}/variance/EMA:0"] = np.full(n or c, 0.25), np.full(n or c, 2.0)

    def act(s):
        T[f"{s}/ActivationQuantization/basis:0"] = np.array([[0.3], [0.6]])
    conv("conv1", 11, 3, 6, quant=False)
    # (conv, kernel, in, out, the scope of the BN + quantizer after it)
    for c, k, cin, cout, q in (("conv2", 5, 6, 16, "bnquant3"), ("conv3", 3, 16, 24, "conv3"),
                               ("conv4", 3, 24, 24, "conv4"), ("conv5", 3, 24, 16, "bnquant6")):
        conv(c, k, cin, cout)
        bn(f"{q}/bn", cout)
        act(f"{q}/quant")
    bn("bnquant2/bn", 6)
    act("bnquant2/quant")
    conv("fc6", 6, 16, 256, bias=True)
    bn("fc6/bn", 256, n=1)
    act("fc6/quant")
    conv("fc7", 1, 256, 256, bias=True)
    bn("fc7/bn", 256, n=1)
    T["fc8/W:0"], T["fc8/b:0"] = rng.normal(0, 0.1, (256, 1000)), np.zeros(1000)
    np.savez(tmp_path / "alex-ckpt.npz", **{k: np.asarray(v, np.float32) for k, v in T.items()})
    out = tmp_path / "alex.yaml"
    assert main(["import", "tensorpack", str(tmp_path / "alex-ckpt.npz"), "-o", str(out), "--arch", "lq-alexnet",
                 "--float-last-act"]) == 0
    assert "one batchnorm statistic for all channels" in capsys.readouterr().err
    with np.load(tmp_path / "alex.npz") as z:
        assert np.all(z["fc6_bn/mean"] == 0.25) and z["fc6_bn/mean"].shape == (256,)
