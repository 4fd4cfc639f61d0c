"""tensorpack DoReFa-Net ImageNet scripts (issue #16 item 4): ``resnet-dorefa.py`` (W,A,G =
1,4,32) and ``alexnet-dorefa.py`` (1,2,6), checkpoints written by tensorpack's own code
(``tests/data/tensorpack-imagenet/``: the scripts' models at width 1/8 and a reduced input
size, trained a few hundred steps by tensorpack's trainer, dumped by
``dump_session_params``; TensorFlow's logits on 24 inputs; made by ``make_refs.py`` there).

Import -> golden float == TensorFlow to float tolerance; golden int decisions measured
against the float path; plan + per-device fit; compile and RTL == golden int (slow)."""
from pathlib import Path

import numpy as np
import pytest

from bitplane.cli.main import main
from bitplane.gen.devices import DEVICES, fit
from bitplane.gen.golden import Golden
from bitplane.gen.lower import lower
from bitplane.gen.plan import plan
from bitplane.gen.spec import load_network

DATA = Path(__file__).resolve().parents[2] / "tests" / "data" / "tensorpack-imagenet"
NETS = {"resnet18": ("resnet18-dorefa-1-4-32-w8.npz", 64), "alexnet": ("alexnet-dorefa-1-2-6-w8.npz", 96)}


def _codes(arch):
    x = np.load(DATA / f"{arch}-inputs.npy", allow_pickle=False)      # uint8 NHWC, exactly as fed to TF
    assert x.dtype == np.uint8 and x.shape[1:] == (NETS[arch][1], NETS[arch][1], 3)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def _tf(arch):
    return np.load(DATA / f"{arch}-logits.npy", allow_pickle=False).astype(np.float64)


def _import(tmp_path, arch, *extra):
    ckpt, size = NETS[arch]
    out = tmp_path / f"{arch}.yaml"
    assert main(["import", "tensorpack", str(DATA / ckpt), "-o", str(out), "--arch", arch,
                 "--input-size", str(size), *extra]) == 0
    return load_network(out)


@pytest.mark.parametrize("arch", sorted(NETS))
def test_float_exact_import_equals_tensorflow(arch, tmp_path, capsys):
    """--float-last-act (the script's function exactly): golden float == TF's logits."""
    net = _import(tmp_path, arch, "--float-last-act")
    err = capsys.readouterr().err
    assert "width multiplier 1/8" in err
    tf = _tf(arch)
    got = Golden(net).run_float(_codes(arch))
    assert np.abs(got - tf).max() <= 1e-6 * np.abs(tf).max() + 1e-5
    assert np.array_equal(got.argmax(1), tf.argmax(1))


def test_resnet18_structure_mirror_and_asymmetric_padding(tmp_path, capsys):
    net = _import(tmp_path, "resnet18")
    assert net.is_graph
    conv1, pool1 = net.layer("conv1"), net.layer("pool1")
    assert tuple(conv1.pads) == (3, 2, 3, 2) and conv1.out_shape == (8, 32, 32)
    assert pool1["pad_mode"] == "symmetric" and pool1.out_shape == (8, 16, 16)
    # identity shortcut (blk2 adds the residual stream) vs projection (blk1)
    assert net.layer("conv3blk2_add").inputs == ("conv3blk1_add", "conv3blk2_c3x3b")
    assert net.layer("conv3blk1_add").inputs == ("conv3blk1_shortcut", "conv3blk1_c3x3b")
    assert net.layer("conv3blk1_pool").op == "avgpool" and net.layer("conv3blk1_pool").out_shape == (8, 8, 8)
    assert [n for n in ("conv2blk1_pool",) if n in {L.name for L in net.layers}] == []   # 1x1: identity
    assert net.layers[-1].name == "fct" and net.output_shape == (1000,)


@pytest.mark.parametrize("arch,min_agree", [("resnet18", 23), ("alexnet", 24)])
def test_default_import_hardware_quantizer_keeps_decisions(arch, min_agree, tmp_path, capsys):
    """No flags but --arch/--input-size: an 8-bit quantizer replaces the unquantized activation
    before the classifier; the float path keeps TF's decisions (measured 23/24, 24/24)."""
    net = _import(tmp_path, arch)
    tf = _tf(arch)
    got = Golden(net).run_float(_codes(arch))
    assert int((got.argmax(1) == tf.argmax(1)).sum()) >= min_agree
    assert np.abs(got - tf).max() < 0.01 * np.abs(tf).max()


def test_alexnet_integer_path_equals_float_path(tmp_path, capsys):
    """Sequential AlexNet with int first/last weights: golden int == golden float decisions
    (and logits to float rounding); vs TF the int12 first layer keeps 19/24 of this barely
    trained net's decisions (its 2-bit activations make them fragile)."""
    net = _import(tmp_path, "alexnet", "--first-bits", "12", "--last-bits", "8")
    g, x = Golden(net), _codes("alexnet")
    fl = g.run_float(x)
    it = g.dequantize(g.run_int(x))
    assert np.array_equal(it.argmax(1), fl.argmax(1))
    assert np.abs(it - fl).max() < 1e-6 * np.abs(fl).max() + 1e-9


def test_resnet18_integer_path_equals_float_path(tmp_path, capsys):
    """The residual stream chains rescaled adds (conv2blk2_add reads conv2blk1_add's 16 guard
    bits): with the add's rounding shift (gen/graph.py AddStage.shift) the integer decisions
    are the float path's on all 24 inputs (a plain round(s_i/step) multiplier was 3 % off)."""
    net = _import(tmp_path, "resnet18", "--first-bits", "16", "--last-bits", "8")
    g, x = Golden(net), _codes("resnet18")
    assert np.array_equal(g.dequantize(g.run_int(x)).argmax(1), g.run_float(x).argmax(1))


def test_plan_and_device_fit(tmp_path, capsys):
    """Plan for 1000 frames/s at 100 MHz; the per-device fit names every budgeted part."""
    net = _import(tmp_path, "resnet18")
    low = lower(net)
    p = plan(low, target_fps=1000)
    assert p["cycles_per_frame"] <= 100_000
    assert "fct" in {f.stage for f in p["folds"]}
    rows = {r["device"]: r for r in fit(low, p)}
    assert set(rows) == set(DEVICES) >= {"xc7z020", "xczu7ev", "xcu250", "ecp5-85k"}
    assert rows["xcu250"]["fits"] and rows["xczu7ev"]["fits"]
    assert rows["ecp5-85k"]["lut_kind"] == "LUT4" and rows["ecp5-85k"]["luts"] > rows["xc7z020"]["luts"]
    capsys.readouterr()
    assert main(["plan", str(tmp_path / "resnet18.yaml"), "--target-fps", "1000"]) == 0
    out = capsys.readouterr().out
    assert "xczu7ev" in out and "xcu250" in out and "conv2blk1_add" in out


@pytest.mark.slow
@pytest.mark.parametrize("arch,size", [("resnet18", 32), ("alexnet", 96)])
def test_compiles_and_rtl_equals_golden_int(arch, size, tmp_path, capsys):
    """The whole graph (ResNet-18: [3,2] and mirror padding, projection and identity shortcuts
    on a float residual stream, global pool; AlexNet: grouped convs as per-group engines)
    compiles and runs in RTL (native harness, input gaps and output stalls) == golden int on
    three of the checkpoint's reference images, at a reduced input size for ResNet-18."""
    from bitplane.gen.compile import compile_network
    from bitplane.sim.accel import simulate
    net = _import(tmp_path, arch) if size == NETS[arch][1] else None
    if net is None:
        ckpt, _ = NETS[arch]
        assert main(["import", "tensorpack", str(DATA / ckpt), "-o", str(tmp_path / f"{arch}.yaml"), "--arch", arch,
                     "--input-size", str(size)]) == 0
        net = load_network(tmp_path / f"{arch}.yaml")
    x = _codes(arch)[:3]
    if size != NETS[arch][1]:
        x = x[:, :, :size, :size].copy()
    m = compile_network(net, tmp_path / "out", target_fps=100, progress=lambda s: None)
    want = Golden(net).run_int(x)
    y, _ = simulate(tmp_path / "out", x, gap_pct=10, stall_pct=10, seed=1)
    assert np.array_equal(y, want)
    y, st = simulate(tmp_path / "out", x)          # back to back: the period (frames 2..3) is the plan's
    assert np.array_equal(y, want)
    assert abs(st["cycles_per_frame"] - m["cycles_per_frame"]) <= 0.05 * m["cycles_per_frame"]
