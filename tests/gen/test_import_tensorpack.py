"""``bitplane import tensorpack``: checkpoints as the published scripts write them (issue #15).

* A real checkpoint of tensorpack's own ``examples/DoReFa-Net/svhn-digit-dorefa.py``
  (unmodified, trained by tensorpack's trainer, dumped like ``dump-model-params.py``) with
  TensorFlow's logits on 48 inputs (``tests/data/tensorpack-svhn/``, made by the scripts
  there; CI does not install TensorFlow): the import with no flags but ``--arch svhn
  --bits 1,2`` must make TensorFlow's decisions on the float and the integer path, and the
  compiled accelerator must equal the golden integer path.
* microsoft/LQ-Nets ``alexnet_model.py`` checkpoints: the test writes the variables under
  the names ``learned_quantization.py`` gives them and computes the logits with its own
  PyTorch transcription of that file's forward pass (not the importer's inverse).
* Bad checkpoints: one error line naming the variable, nothing written.
"""
from pathlib import Path

import numpy as np
import pytest

from bitplane.cli.main import main
from bitplane.gen.golden import Golden
from bitplane.gen.spec import load_network

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "tensorpack-svhn"
CKPT = DATA / "svhn-dorefa-1-2-4.npz"


def _cli(argv, capsys=None):
    rc = main(argv)
    err = capsys.readouterr().err if capsys is not None else ""
    assert rc == 0, err
    return err


def _codes():
    """The 48 images exactly as TensorFlow was fed them (uint8 NHWC) as bitplane codes (NCHW)."""
    x = np.load(DATA / "inputs.npy", allow_pickle=False)
    assert x.dtype == np.uint8 and x.shape == (48, 40, 40, 3)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def _tf_logits():
    return np.load(DATA / "logits.npy", allow_pickle=False).astype(np.float64)


# ------------------------------------------------------------------ the real tensorpack checkpoint

@pytest.fixture(scope="module")
def svhn_default(tmp_path_factory):
    """``bitplane import tensorpack svhn-dorefa-1-2-4.npz -o net.yaml --arch svhn --bits 1,2``."""
    out = tmp_path_factory.mktemp("tp-svhn") / "net.yaml"
    assert main(["import", "tensorpack", str(CKPT), "-o", str(out), "--arch", "svhn", "--bits", "1,2"]) == 0
    return load_network(out)


def test_tensorpack_svhn_checkpoint_default_import_makes_tensorflows_decisions(svhn_default):
    net, x, tf = svhn_default, _codes(), _tf_logits()
    want = tf.argmax(1)
    g = Golden(net)
    fl = g.run_float(x)
    assert np.array_equal(fl.argmax(1), want), np.flatnonzero(fl.argmax(1) != want)
    err = np.abs(fl - tf).max()
    print(f"golden float vs TensorFlow: max |logit error| {err:.4g} (logits span {np.ptp(tf):.3g})")
    assert err < 0.02                    # only the script's unquantized last clip is now 8-bit (step 1/255)
    il = g.dequantize(g.run_int(x))      # hardware arithmetic: conv0/fc1 with int8 weights
    assert np.array_equal(il.argmax(1), want), np.flatnonzero(il.argmax(1) != want)
    print(f"golden int vs TensorFlow: max |logit error| {np.abs(il - tf).max():.4g}")
    # the script's semantics, read from the spec: clip01 activations, /256, a quantized last activation
    L = {L.name: L for L in net.layers}
    assert net.input_scale == 1 / 256 and L["act0"]["nonlin"] == "clip01" and L["act5"]["nonlin"] == "clip01"
    assert L["act6"].op == "quant_act" and L["act6"]["quant"] == {"type": "dorefa", "bits": 8}
    assert "weight_quant" not in L["conv0"].attrs and L["conv1"]["weight_quant"] == {"type": "dorefa", "bits": 1}


def test_tensorpack_svhn_checkpoint_calibrated_precision(tmp_path, capsys):
    """With --calib the first/last precision is the cheapest rung keeping 99.9 % agreement with
    the checkpoint, written into the spec (float path = integer path)."""
    np.save(tmp_path / "calib.npy", _codes()[::2])
    out = tmp_path / "cal.yaml"
    err = _cli(["import", "tensorpack", str(CKPT), "-o", str(out), "--arch", "svhn", "--calib",
                str(tmp_path / "calib.npy")], capsys)
    note = next(line for line in err.splitlines() if "first/last-layer precision chosen" in line)
    print(note)
    assert "(24/24)" in note
    net = load_network(out)
    k = net.layer("conv0")["weight_quant"]["bits"]
    assert net.layer("fc1")["weight_quant"] == {"type": "int", "bits": k} and f"int{k}" in note
    g, x, tf = Golden(net), _codes(), _tf_logits()
    fl = g.run_float(x)
    assert np.allclose(g.dequantize(g.run_int(x)), fl, rtol=1e-9, atol=1e-9 * np.abs(fl).max())
    print(f"--calib (24 images) chose int{k}: decisions agree with TensorFlow on "
          f"{np.mean(fl.argmax(1) == tf.argmax(1)):.1%} of all 48")


def test_tensorpack_svhn_checkpoint_float_exact_variant_equals_tensorflow(tmp_path, capsys):
    """``--float-last-act``: the script's function itself (float first/last weights, unquantized
    last clip) equals TensorFlow to float32 rounding; the old ``cabs`` reading of the same
    checkpoint does not make its decisions."""
    out = tmp_path / "exact.yaml"
    err = _cli(["import", "tensorpack", str(CKPT), "-o", str(out), "--arch", "svhn", "--float-last-act"], capsys)
    assert "'act6' keeps the script's unquantized activation" in err
    x, tf = _codes(), _tf_logits()
    fl = Golden(load_network(out)).run_float(x)
    print(f"float-exact variant vs TensorFlow: max |logit error| {np.abs(fl - tf).max():.3g}")
    assert np.allclose(fl, tf, rtol=1e-4, atol=1e-4 * np.abs(tf).max())
    _cli(["import", "tensorpack", str(CKPT), "-o", str(out), "--arch", "svhn", "--float-last-act",
          "--activation", "cabs"], capsys)
    assert np.mean(Golden(load_network(out)).run_float(x).argmax(1) == tf.argmax(1)) < 0.5


@pytest.mark.slow
def test_tensorpack_svhn_checkpoint_rtl_equals_golden_int(svhn_default, tmp_path):
    """Compile the default import (planned for 1000 frames/s at 100 MHz: ~93k cycles/frame) and
    run two frames through the native Verilator harness."""
    from bitplane.gen.compile import compile_network
    out = tmp_path / "acc"
    m = compile_network(svhn_default, out, target_fps=1000, clock_mhz=100, progress=lambda s: None)
    print(f"planned {m['cycles_per_frame']} cycles/frame")
    x = _codes()[:2]
    np.save(tmp_path / "x.npy", x)
    assert main(["sim", str(out), "--input", str(tmp_path / "x.npy"), "--output", str(tmp_path / "y.npy")]) == 0
    got = np.load(tmp_path / "y.npy")
    g = Golden(svhn_default)
    assert np.array_equal(got, g.run_int(x))
    assert np.array_equal(g.dequantize(got).argmax(1), _tf_logits()[:2].argmax(1))


# ------------------------------------------------------------------ microsoft/LQ-Nets AlexNet

def _lq_levels(basis, signed):
    """learned_quantization.py: level of code i = sum_j bit_j(i) * basis[j] (bit 0 -> -1 for
    weights), sorted ascending per column (its top_k + reverse), thresholds at the midpoints."""
    nbit = basis.shape[0]
    codes = np.array([[(i >> j) & 1 for j in range(nbit)] for i in range(1 << nbit)], np.float64)
    if signed:
        codes = 2 * codes - 1
    levels = np.sort(codes @ basis, axis=0)                       # [2^nbit, channels]
    return levels, (levels[:-1] + levels[1:]) / 2


def _lq_quantize(x, basis, signed, axis):
    """The forward value of QuantizedWeight / QuantizedActiv: start at levels[0] (weights) or 0
    (activations), then levels[i+1] wherever x > thrs[i]."""
    levels, thrs = _lq_levels(basis, signed)
    shape = [1] * x.ndim
    shape[axis] = -1
    y = np.zeros_like(x) + (levels[0].reshape(shape) if signed else 0.0)
    for i in range(len(thrs)):
        y = np.where(x > thrs[i].reshape(shape), levels[i + 1].reshape(shape), y)
    return y


class _LQAlexNet:
    """alexnet_model.py's forward pass in PyTorch (NCHW), on ImageNetModel's input (BGR
    image/255, then mean/std); writes the checkpoint under LQ-Nets' variable names."""

    def __init__(self, rng, qw=2, qa=2):
        self.rng, self.qw, self.qa, self.v = rng, qw, qa, {}

    def conv_w(self, scope, k, cin, cout, quant, bias=False):
        w = (self.rng.standard_normal((k, k, cin, cout)) * np.sqrt(2.0 / (k * k * cin))).astype(np.float32)
        self.v[f"{scope}/W:0"] = w
        if quant:   # LQ-Nets' initial basis, perturbed per channel as training leaves it
            base = 0.6745 * np.sqrt(2.0 / (k * k * cout)) / 2 ** (self.qw - 1)
            b = np.array([[2 ** j * base] * cout for j in range(self.qw)]) * self.rng.uniform(0.7, 1.3, (self.qw, cout))
            self.v[f"{scope}/weight_quant/basis:0"] = b.astype(np.float32)
        if bias:
            self.v[f"{scope}/b:0"] = self.rng.normal(0, 0.05, cout).astype(np.float32)

    def forward(self, x, calibrate):
        torch = pytest.importorskip("torch")
        F = torch.nn.functional
        t = lambda a: torch.tensor(np.asarray(a, np.float64))          # noqa: E731
        mean = np.array([0.485, 0.456, 0.406])[::-1]
        std = np.array([0.229, 0.224, 0.225])[::-1]
        h = t((x / 255.0 - mean[None, :, None, None]) / std[None, :, None, None])

        def conv(h, scope, stride=1, pad="same"):
            w = self.v[f"{scope}/W:0"].astype(np.float64)
            if f"{scope}/weight_quant/basis:0" in self.v:
                w = _lq_quantize(w, self.v[f"{scope}/weight_quant/basis:0"].astype(np.float64), True, 3)
            k = w.shape[0]
            y = F.conv2d(h, t(w.transpose(3, 2, 0, 1)), stride=stride, padding=(k // 2) if pad == "same" else 0)
            if f"{scope}/b:0" in self.v:
                y = y + t(self.v[f"{scope}/b:0"]).reshape(1, -1, 1, 1)
            return y

        def bn(h, scope, affine=True):
            if calibrate:           # moving statistics = this batch's (a trained net's are the data's)
                self.v[f"{scope}/mean/EMA:0"] = h.mean((0, 2, 3)).numpy().astype(np.float32)
                var = h.var((0, 2, 3), unbiased=False).numpy()       # + a floor: 4 images are no data set
                self.v[f"{scope}/variance/EMA:0"] = (var + var.mean()).astype(np.float32)
                if affine:
                    self.v[f"{scope}/gamma:0"] = self.rng.uniform(0.5, 1.5, h.shape[1]).astype(np.float32)
                    self.v[f"{scope}/beta:0"] = self.rng.normal(0.3, 0.2, h.shape[1]).astype(np.float32)
            m, var = (t(self.v[f"{scope}/{k}/EMA:0"]).reshape(1, -1, 1, 1) for k in ("mean", "variance"))
            y = (h - m) / torch.sqrt(var + 1e-5)                      # tensorpack BatchNorm epsilon 1e-5
            if affine:
                y = y * t(self.v[f"{scope}/gamma:0"]).reshape(1, -1, 1, 1) + t(self.v[f"{scope}/beta:0"]).reshape(1, -1, 1, 1)
            return y

        def quant(h, scope):
            key = f"{scope}/ActivationQuantization/basis:0"
            if calibrate:           # spread the levels over the data (as the basis updates do)
                top = float(torch.quantile(h.flatten()[:200000], 0.95))
                self.v[key] = (np.array([[2.0 ** j] for j in range(self.qa)]) * top / (2 ** self.qa - 1)
                               * self.rng.uniform(0.8, 1.2, (self.qa, 1))).astype(np.float32)
            return t(_lq_quantize(h.numpy(), self.v[key].astype(np.float64), False, 0))

        def bnreluquant(h, scope, affine=True):
            return quant(torch.relu(bn(h, f"{scope}/bn", affine)), f"{scope}/quant")

        pool = lambda h: F.max_pool2d(h, 3, 2)                          # noqa: E731
        h = pool(conv(h, "conv1", 4, "valid"))
        h = bnreluquant(h, "bnquant2")
        h = bnreluquant(pool(conv(h, "conv2")), "bnquant3")
        h = bnreluquant(conv(h, "conv3"), "conv3")
        h = bnreluquant(conv(h, "conv4"), "conv4")
        h = bnreluquant(pool(conv(h, "conv5")), "bnquant6")
        h = bnreluquant(conv(h, "fc6", pad="valid"), "fc6", affine=False)
        h = torch.relu(bn(conv(h, "fc7", pad="valid"), "fc7/bn", affine=False))
        h = h.reshape(h.shape[0], -1)
        return (h @ t(self.v["fc8/W:0"]) + t(self.v["fc8/b:0"])).numpy()

    def build(self, x, div=1):
        """The checkpoint at width multiplier ``1/div`` (every layer but fc8); the script's logits."""
        c, d = self.conv_w, lambda n: n // div      # noqa: E731
        c("conv1", 11, 3, d(96), False)
        c("conv2", 5, d(96), d(256), True)
        c("conv3", 3, d(256), d(384), True)
        c("conv4", 3, d(384), d(384), True)
        c("conv5", 3, d(384), d(256), True)
        c("fc6", 6, d(256), d(4096), True, bias=True)
        c("fc7", 1, d(4096), d(4096), True, bias=True)
        self.v["fc8/W:0"] = (self.rng.standard_normal((d(4096), 1000)) / np.sqrt(d(4096))).astype(np.float32)
        self.v["fc8/b:0"] = self.rng.normal(0, 0.05, 1000).astype(np.float32)
        self.forward(x, calibrate=True)
        return self.forward(x, calibrate=False)


@pytest.mark.slow
def test_lq_nets_alexnet_checkpoint(tmp_path, capsys):
    pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    blocks = rng.integers(0, 256, (4, 3, 8, 8))                     # blocky images: features that differ
    x = np.kron(blocks, np.ones((1, 1, 29, 29)))[:, :, :227, :227].astype(np.uint8)
    lq = _LQAlexNet(rng)
    want = lq.build(x)
    assert "bnquant2/quant/ActivationQuantization/basis:0" in lq.v and "fc6/bn/gamma:0" not in lq.v
    npz = tmp_path / "lq-alexnet.npz"
    np.savez(npz, **lq.v, **{"global_step:0": np.int64(5)})
    out = tmp_path / "o" / "lq.yaml"
    _cli(["import", "tensorpack", str(npz), "-o", str(out), "--arch", "lq-alexnet", "--float-last-act"], capsys)
    got = Golden(load_network(out)).run_float(x)
    assert np.allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max()), np.abs(got - want).max()
    # hardware-runnable: the unquantized fc7 ReLU becomes an 8-bit uint quantizer covering fc7/bn's
    # beta + 6|gamma| (here 0 + 6: use_scale/use_bias False); with float conv1/fc8 weights and
    # 12-bit coefficients given, the float path keeps the script's decisions
    err = _cli(["import", "tensorpack", str(npz), "-o", str(out), "--arch", "lq-alexnet", "--first-bits", "float",
                "--last-bits", "float", "--last-act-bits", "8", "--coef-bits", "12"], capsys)
    assert "fc7_act uint 8-bit scale 0.0235294" in err and "conv1 weights float" in err
    net = load_network(out)
    assert net.layer("fc7_act")["quant"] == {"type": "uint", "bits": 8, "scale": 6 / 255}
    assert net.layer("conv2")["weight_quant"] == {"type": "lq", "bits": 2, "coef_bits": 12}
    fl = Golden(net).run_float(x)
    assert np.array_equal(fl.argmax(1), want.argmax(1)) and np.abs(fl - want).max() < 0.05
    # by default the import measures its integer path (synthetic images) and chooses coef_bits and
    # the first/last precision. This random full-size net is fragile (int16 conv1/fc8 alone change
    # 2 of the 4 float decisions; the 12-bit integer path above keeps none): the notes say so
    err = _cli(["import", "tensorpack", str(npz), "-o", str(out), "--arch", "lq-alexnet"], capsys)
    net = load_network(out)
    q = net.layer("fc7_act")["quant"]
    assert q["type"] == "uint" and q["bits"] <= 8 and np.isclose(q["scale"], 6 / ((1 << q["bits"]) - 1))
    cb = net.layer("conv2")["weight_quant"]["coef_bits"]
    assert net.layer("conv2")["weight_quant"] == {"type": "lq", "bits": 2, "coef_bits": cb}
    notes = [line for line in err.splitlines() if f"coef_bits {cb} " in line or "precision chosen" in line]
    assert len(notes) == 2 and all("BELOW the 99.9% target" in n for n in notes), notes
    g = Golden(net)
    print(f"lq-alexnet 227x227 default: coef_bits {cb}; integer path = the script's decisions on "
          f"{int((g.dequantize(g.run_int(x)).argmax(1) == want.argmax(1)).sum())}/4")


@pytest.mark.slow
def test_lq_nets_alexnet_rtl_equals_golden_int(tmp_path, capsys):
    """LQ-Nets AlexNet in hardware: the script's 227x227 input (fc6 is a 6x6 valid convolution
    of pool5's 6x6 map, so the input size cannot shrink) at width 1/32, default import (the
    import measures its integer path and chooses coef_bits and the first/last precision),
    compiled for 100 frames/s; the native Verilator harness gives exactly the golden integer
    accumulators on 3 frames under random input gaps and output stalls and back to back."""
    pytest.importorskip("torch")
    from tests.support.networks import rtl_check
    rng = np.random.default_rng(7)
    blocks = rng.integers(0, 256, (4, 3, 8, 8))
    x = np.kron(blocks, np.ones((1, 1, 29, 29)))[:, :, :227, :227].astype(np.uint8)
    lq = _LQAlexNet(rng)
    lq.build(x, div=32)
    npz = tmp_path / "lq-alexnet.npz"
    np.savez(npz, **lq.v)
    out = tmp_path / "lq.yaml"
    _cli(["import", "tensorpack", str(npz), "-o", str(out), "--arch", "lq-alexnet"], capsys)
    net = load_network(out)
    assert net.layer("conv2")["out_channels"] == 8 and net.layer("fc7")["out_channels"] == 128
    r = rtl_check(net, x[:3], tmp_path / "acc", target_fps=100)
    assert r["exact"]
    m, st = r["m"], r["st"]
    print(f"lq-alexnet 227x227 1/32 (coef_bits {net.layer('conv2')['weight_quant']['coef_bits']}): planned "
          f"{m['cycles_per_frame']} cycles/frame, simulated {st['cycles_per_frame']} (latency {st['latency_cycles']}); "
          f"compile {r['compile_s']:.0f} s, build+sim {r['build_sim_s']:.0f} s, sim {r['sim_s']:.0f} s")
    assert st["cycles_per_frame"] <= 1.05 * m["cycles_per_frame"]


# ------------------------------------------------------------------ bad checkpoints

def test_tensorpack_bad_checkpoints_name_the_variable(tmp_path, capsys):
    """Missing, extra and mis-shaped variables of the real checkpoint, and checkpoints of another
    architecture: one error line naming the variable, exit 1, nothing written."""
    from tests.support.cli import cli_rejects as _cli_rejects
    with np.load(CKPT, allow_pickle=False) as z:
        base = {k: z[k] for k in z.files}
    out = tmp_path / "out" / "net.yaml"

    def run(arrays, *needles, arch="svhn"):
        npz = tmp_path / "bad.npz"
        np.savez(npz, **arrays)
        return _cli_rejects(["import", "tensorpack", str(npz), "-o", str(out), "--arch", arch], capsys,
                            "bad.npz", *needles)

    run({k: v for k, v in base.items() if k != "bn3/variance/EMA:0"}, "layer 'bn3'",
        "missing tensor 'bn3/variance/EMA'")
    run(dict(base, **{"conv7/W:0": np.zeros((3, 3, 128, 128), np.float32)}), "unexpected tensor", "conv7/W:0")
    run(dict(base, **{"conv2/W:0": base["conv2/W:0"].transpose(3, 2, 0, 1)[:, :, :, :1]}), "layer 'conv2'",
        "'conv2/W:0' has shape [64, 64, 3, 1], expected [3, 3, 64, 64]")
    run(dict(base, **{"fc1/b:0": base["fc1/b:0"][:9]}), "layer 'fc1'", "'fc1/b:0' has shape [9]")
    # a checkpoint of another architecture
    run(base, "layer 'conv0'", "'conv0/W:0' has shape [5, 5, 3, 48], expected [12, 12, 3, 96]", arch="alexnet")
    run(base, "layer 'conv1'", "'conv1/W:0' has shape [3, 3, 48, 64], expected [11, 11, 3, 96]", arch="lq-alexnet")
    lq = {"conv0/W:0": base["conv0/W:0"], "conv1/W:0": base["conv1/W:0"],
          "conv1/weight_quant/basis:0": np.ones((2, 64), np.float32)}
    run(dict(base, **lq), "unexpected tensor", "conv1/weight_quant/basis:0")
    # options that contradict each other or do not apply
    npz = tmp_path / "ok.npz"
    np.savez(npz, **base)
    _cli_rejects(["import", "tensorpack", str(npz), "-o", str(out), "--arch", "svhn", "--imagenet-norm"], capsys,
                 "--imagenet-norm applies to the ImageNet architectures")
    _cli_rejects(["import", "tensorpack", str(npz), "-o", str(out), "--arch", "svhn", "--first-bits", "1"], capsys,
                 "--first-bits must be auto, float or an integer 2..16")
    _cli_rejects(["import", "tensorpack", str(npz), "-o", str(out), "--arch", "svhn", "--float-last-act",
                  "--last-act-bits", "8"], capsys, "contradict")
    _cli_rejects(["import", "tensorpack", str(npz), "-o", str(out), "--arch", "svhn", "--float-last-act",
                  "--first-bits", "auto"], capsys, "no precision to calibrate")
    np.save(tmp_path / "nhwc.npy", np.load(DATA / "inputs.npy"))
    _cli_rejects(["import", "tensorpack", str(npz), "-o", str(out), "--arch", "svhn", "--calib",
                  str(tmp_path / "nhwc.npy")], capsys, "nhwc.npy", "uint8 input codes [N, 3, 40, 40]",
                 "[48, 40, 40, 3]")
