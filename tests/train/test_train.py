"""``bitplane train`` (train/trainer.py), its architectures (train/arch.py) and the offline
datasets (train/data.py): every (arch, quantizer) exports to a spec the golden model reproduces,
the CLI trains end to end on a small IDX dataset and writes spec + curve + summary atomically,
missing data and bad options fail with one clear line, and the shipped demo network is trained."""
import gzip
import json

import numpy as np
import pytest

from bitplane.cli.main import main as cli_main
from bitplane.core.errors import NotSupportedError
from bitplane.gen.golden import Golden
from bitplane.gen.lower import lower
from bitplane.gen.spec import load_network
from bitplane.train import data
from bitplane.train.arch import ARCHS, GRAPH_ARCHS, ArchError, make_spec, parse_bits

ROOT = data.ROOT


# --------------------------------------------------------------------------- bits / arch (no torch)
@pytest.mark.parametrize("text,quant,want", [
    ("1,2,6", "dorefa", (1, 2, 6)), ("32,32,32", "dorefa", (32, 32, 32)), ("1,2", "dorefa", (1, 2, 32)),
    ("t,32,32", "ttq", ("t", 32, 32)), ("1,1,32", "bnn", (1, 1, 32)), ("2,2", "lq", (2, 2, 32)),
    ("1,32,32", "bwn", (1, 32, 32))])
def test_parse_bits(text, quant, want):
    assert parse_bits(text, quant) == want


@pytest.mark.parametrize("text,quant,msg", [
    ("1,2,6,8", "dorefa", "expected W,A,G"), ("x,2,6", "dorefa", "not an integer"), ("1,2,17", "dorefa", "1..16"),
    ("2,2", "bnn", "sign weights"), ("1,2,32", "ttq", "ternary"), ("2,32", "bwn", "1-bit"),
    ("t,2", "dorefa", "are --quant ttq"),
    ("1,2,6", "lq", "DoReFa's"), ("32,2", "lq", "1..8 bits")])
def test_parse_bits_rejects(text, quant, msg):
    with pytest.raises(ArchError, match=msg):
        parse_bits(text, quant)


# --------------------------------------------------------------------------- datasets (no torch)
def _write_idx(path, arr):
    arr = np.asarray(arr, np.uint8)
    head = bytes([0, 0, 8, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(head + arr.tobytes())


def _fake_fashion(root, n_train=384, n_test=128, seed=0):
    """A learnable stand-in in the Debian package's layout: class = which image band is bright."""
    rng = np.random.default_rng(seed)
    d = root / "fashion-mnist"
    d.mkdir(parents=True)
    for split, n in (("train", n_train), ("test", n_test)):
        y = rng.integers(0, 10, n)
        x = rng.integers(0, 60, (n, 28, 28))
        for i, c in enumerate(y):
            x[i, 2 * c + 3:2 * c + 7, 4:24] += 180
        fi, fl = data._FASHION_FILES[split]
        _write_idx(d / fi, x)
        _write_idx(d / fl, y)
    return d


def test_loaders_read_idx_and_csv(tmp_path, monkeypatch):
    monkeypatch.setenv("BITPLANE_DATA", str(tmp_path))
    _fake_fashion(tmp_path)
    x, y = data.load("fashion-mnist", "test")
    assert x.shape == (128, 1, 28, 28) and x.dtype == np.uint8 and y.dtype == np.int64 and y.shape == (128,)
    d = tmp_path / "mnist5k"
    d.mkdir()
    rows = np.random.default_rng(1).integers(0, 256, (50, 785))
    rows[:, -1] = np.arange(50) % 10
    with gzip.open(d / "mnist_5k.csv.gz", "wt") as f:
        np.savetxt(f, rows, fmt="%d", delimiter=",")
    monkeypatch.setattr(data, "MNIST5K_TRAIN", 40)
    xtr, ytr = data.load("mnist5k", "train")
    xte, yte = data.load("mnist5k", "test")
    assert xtr.shape == (40, 1, 28, 28) and xte.shape == (10, 1, 28, 28)
    # a fixed shuffle: the two splits partition the file, labels stay with their images
    allx = np.concatenate([xtr, xte]).reshape(50, -1)
    order = [int(np.flatnonzero((rows[:, :-1] == r).all(1))[0]) for r in allx]
    assert sorted(order) == list(range(50))
    assert np.array_equal(np.concatenate([ytr, yte]), rows[order, -1])


def test_loaders_report_missing_and_malformed_data(tmp_path, monkeypatch):
    monkeypatch.setenv("BITPLANE_DATA", str(tmp_path))
    with pytest.raises(data.DataError, match=r"not in .*fashion-mnist.*bitplane train --fetch"):
        data.load("fashion-mnist", "train")
    d = _fake_fashion(tmp_path)
    (d / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(
        b"\0\0\x08\x03" + b"".join(d.to_bytes(4, "big") for d in (5, 28, 28)) + b"\0" * 100))
    with pytest.raises(data.DataError, match="t10k-images.*header says"):
        data.load("fashion-mnist", "test")
    with pytest.raises(data.DataError, match="unknown split"):
        data.load("fashion-mnist", "val")


def test_train_cli_without_data_fails_with_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BITPLANE_DATA", str(tmp_path / "none"))
    rc = cli_main(["train", "--arch", "lenet", "--quant", "dorefa", "--bits", "1,2,6", "--dataset", "mnist5k",
                   "-o", str(tmp_path / "n.yaml")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and "mnist5k" in err[0] and "--fetch" in err[0]
    assert not list(tmp_path.glob("n.*"))


def test_float_act_runs_on_the_float_path_only(tmp_path):
    torch = pytest.importorskip("torch")
    from bitplane.train.nn import QNet, export
    spec = make_spec("tfc", "dorefa", 32, 32, "f")
    export(QNet(spec, seed=1), tmp_path / "f.yaml")
    net = load_network(tmp_path / "f.yaml")
    x = np.random.default_rng(0).integers(0, 256, (3, 1, 28, 28)).astype(np.uint8)
    assert Golden(net).run_float(x).shape == (3, 10)
    with pytest.raises(NotSupportedError, match="'act' is an unquantized"):
        lower(net)
    rc = cli_main(["compile", str(tmp_path / "f.yaml"), "-o", str(tmp_path / "hw")])
    assert rc == 2 and not (tmp_path / "hw").exists()
    del torch


# --------------------------------------------------------------------------- every arch x quantizer exports
@pytest.mark.parametrize("arch", [a for a in ARCHS if a not in GRAPH_ARCHS])
@pytest.mark.parametrize("quant,bits", [("dorefa", "2,2,6"), ("bwn", "1,32"), ("bnn", "1,1"), ("ttq", "t,2"),
                                        ("lq", "2,2")])
def test_every_arch_and_quantizer_exports_to_a_reproducible_spec(arch, quant, bits, tmp_path):
    torch = pytest.importorskip("torch")
    from bitplane.train.nn import QNet, export
    w, a, g = parse_bits(bits, quant)
    spec = make_spec(arch, quant, w, a, "t")
    model = QNet(spec, grad_bits=None if g == 32 else g, seed=2).double()
    rng = np.random.default_rng(3)
    x = rng.integers(0, 256, (16, 1, 28, 28)).astype(np.uint8)
    xt = torch.from_numpy(x / 255.0)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    for _ in range(2):                                   # BN statistics, TTQ scales and LQ bases move
        loss = torch.nn.functional.cross_entropy(model(xt), torch.from_numpy(rng.integers(0, 10, 16)))
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        want = model(xt).numpy()
    export(model, tmp_path / "t.yaml")
    net = load_network(tmp_path / "t.yaml")
    got = Golden(net).run_float(x)
    assert np.max(np.abs(got - want)) <= 1e-4 * np.max(np.abs(want))
    if a != 32:                                          # quantized activations: an integer form exists
        assert lower(net).stages


# --------------------------------------------------------------------------- end to end
def test_train_cli_end_to_end(tmp_path, monkeypatch, capsys):
    pytest.importorskip("torch")
    monkeypatch.setenv("BITPLANE_DATA", str(tmp_path / "data"))
    _fake_fashion(tmp_path / "data")
    out = tmp_path / "out" / "tiny.yaml"
    rc = cli_main(["train", "--arch", "lenet", "--quant", "dorefa", "--bits", "1,2,6", "--dataset", "fashion-mnist",
                   "--epochs", "2", "--threads", "1", "--lr", "0.01", "-o", str(out)])
    io = capsys.readouterr()
    assert rc == 0, io.err
    assert "epoch 1/2" in io.out and "epoch 2/2" in io.out and "export check" in io.out
    assert "[" in io.err and "images/s" in io.err                     # progress bar
    files = sorted(p.name for p in out.parent.iterdir())
    assert files == ["tiny.curve.png", "tiny.npz", "tiny.train.json", "tiny.yaml"]
    assert (out.parent / "tiny.curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    s = json.loads((out.parent / "tiny.train.json").read_text())
    assert [r["epoch"] for r in s["curve"]] == [1, 2] and s["export_max_rel_diff"] <= 1e-4
    assert s["hardware"] and s["test_acc"]["golden_int"] > 0.3          # learnt something (chance: 0.1)
    net = load_network(out)
    xte, yte = data.load("fashion-mnist", "test")
    assert np.mean(Golden(net).run_float(xte).argmax(1) == yte) == pytest.approx(s["test_acc"]["golden_float"])


@pytest.mark.slow
def test_train_cli_imports_a_seed_checkpoint(tmp_path, monkeypatch, capsys):
    """--init-from with --epochs 0: a state_dict of the pytorch DoReFa seed's NIN (3 input channels,
    its layout as the seed's code writes it) becomes a spec; grey 28x28 images are padded to 32x32
    and repeated to 3 channels; the export check and the integer path run."""
    torch = pytest.importorskip("torch")
    from tests.support.dorefa_seed import layouts, seed_state_dict
    monkeypatch.setenv("BITPLANE_DATA", str(tmp_path / "data"))
    _fake_fashion(tmp_path / "data", n_train=64, n_test=8)
    torch.save({"state_dict": seed_state_dict(layouts()["nin"], 0)}, tmp_path / "nin.pth")
    out = tmp_path / "out" / "seed.yaml"
    args = ["train", "--arch", "nin", "--quant", "dorefa", "--bits", "2,2", "--dataset", "fashion-mnist",
            "--init-from", str(tmp_path / "nin.pth"), "--calib-images", "32", "--batch-size", "16", "--quiet",
            "--threads", "1", "-o", str(out)]
    rc = cli_main(args + ["--epochs", "0"])
    io = capsys.readouterr()
    assert rc == 0, io.err
    assert "static activation ranges from 32 calibration images in batches of 16" in io.out
    s = json.loads((out.parent / "seed.train.json").read_text())
    assert s["epochs"] == 0 and s["input"] == [3, 32, 32] and s["hardware"] and s["export_max_rel_diff"] <= 1e-4
    net = load_network(out)
    ranges = [L.attrs["quant"]["range"] for L in net.layers if L.op == "quant_act"]
    assert len(ranges) == 8 and all(0 < r <= 1 for r in ranges)
    rc = cli_main(args[:-2] + ["--quant", "lq", "--epochs", "0", "-o", str(tmp_path / "x.yaml")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and "--init-from" in err[0] and not (tmp_path / "x.yaml").exists()


def test_train_cli_rejects_bad_options(tmp_path, capsys):
    rc = cli_main(["train", "--arch", "lenet", "--quant", "bnn", "--bits", "2,2", "--dataset", "mnist5k",
                   "-o", str(tmp_path / "b.yaml")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and "--quant bnn" in err[0]


def test_shipped_demo_network_is_trained_on_fashion_mnist():
    """examples/fmnist-lenet-w1a2 came from `bitplane train`; its integer path classifies the shipped subset."""
    net = load_network(ROOT / "examples" / "fmnist-lenet-w1a2.yaml")
    with np.load(ROOT / "examples" / "data" / "fashion-mnist-test-500.npz", allow_pickle=False) as z:
        x, y = z["x"], z["y"]
    assert x.shape == (500, 1, 28, 28) and np.bincount(y, minlength=10).min() > 20
    g = Golden(net)
    acc = np.mean(g.run_int(x).argmax(1) == y)
    summary = json.loads((ROOT / "examples" / "fmnist-lenet-w1a2.train.json").read_text())
    assert acc > 0.8 and summary["test_acc"]["golden_int"] > 0.8 and summary["dataset"] == "fashion-mnist"


def test_results_doc_from_cached_rows(tmp_path):
    """bitplane.train.results writes the table and trend from row records (the training itself is the
    end-to-end test above)."""
    pytest.importorskip("torch")
    from bitplane.train import results

    def row(label, quant, bits, acc, rtl=None):
        w, a, g = bits.split("/")
        r = {"label": label, "dataset": "fashion-mnist", "quant": quant, "bits": {"W": w, "A": a, "G": g},
             "epochs": 3, "seed": 0, "wall_seconds": 12.3, "test_acc": {"torch": acc}}
        if rtl is not None:
            r["test_acc"]["golden_int"] = acc
            r["rtl"] = {"frames": 8, "frames_from": "the first 8 test images", "acc": rtl, "cycles_per_frame": 50176,
                        "target_fps": 1800, "golden_float_acc_same_frames": rtl}
        return r
    rows = [row("32/32/32 (float)", "dorefa", "32/32/32", 0.9), row("1/2/32", "dorefa", "1/2/32", 0.88, 0.875)]
    doc = tmp_path / "t.md"
    results.write_doc(rows, doc, {"machine": "m", "torch": "t", "date": "d", "datasets": ["fashion-mnist"]})
    text = doc.read_text()
    assert "| 1/2/32 | dorefa | 3 | 0 | 12 | 88.00 % | 88.00 % | 87.50 % (float 87.50 %, 8 frames) | 50,176 (1,800) | yes |" \
        in text
    assert "* binary weights, 2-bit activations vs float: -2.00 points" in text
    assert "| 32/32/32 (float) | dorefa | 3 | 0 | 12 | 90.00 % | — (float acts) | not in hardware |" in text
    doc.write_text(text + results.KEEP_MARKER + "\n\n## by hand\n\nrow\n")       # regenerating keeps it
    results.write_doc(rows[:1], doc, {"machine": "m", "torch": "t", "date": "d", "datasets": ["fashion-mnist"]})
    text = doc.read_text()
    assert "| 1/2/32 |" not in text and text.endswith(results.KEEP_MARKER + "\n\n## by hand\n\nrow\n")
