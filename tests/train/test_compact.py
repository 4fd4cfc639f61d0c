"""python -m bitplane.train.compact: quantized weights stored in place of the latent ones, compressed,
with the golden float and integer outputs unchanged (checked before anything is written)."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from bitplane.gen.golden import Golden  # noqa: E402
from bitplane.gen.spec import load_network  # noqa: E402
from bitplane.train.compact import compact, main  # noqa: E402
from bitplane.train.nn import QNet, export  # noqa: E402


def test_compact_keeps_both_golden_paths_and_shrinks_the_npz(tmp_path, capsys):
    spec = {"name": "c", "input": {"shape": [1, 10, 10], "bits": 8, "scale": 1 / 255}, "layers": [
        {"name": "conv0", "op": "conv", "out_channels": 64, "kernel": 3, "padding": 1, "bias": False,
         "weight_quant": {"type": "int", "bits": 8}},
        {"name": "bn0", "op": "batchnorm", "eps": 1e-5},
        {"name": "act0", "op": "quant_act", "nonlin": "relu", "quant": {"type": "tanh", "bits": 2, "range": 1.0}},
        {"name": "conv1", "op": "conv", "out_channels": 64, "kernel": 3, "padding": 1, "bias": False,
         "pad_value": 2 / 3, "weight_quant": {"type": "dorefa", "bits": 2}},
        {"name": "bn1", "op": "batchnorm", "eps": 1e-5},
        {"name": "act1", "op": "quant_act", "nonlin": "relu", "quant": {"type": "tanh", "bits": 2, "range": 1.0}},
        {"name": "fc", "op": "dense", "out_features": 10, "bias": True, "weight_quant": {"type": "int", "bits": 8}}]}
    src = export(QNet(spec, seed=3).double(), tmp_path / "src.yaml")
    x = np.random.default_rng(0).integers(0, 256, (24, 1, 10, 10)).astype(np.uint8)
    np.savez(tmp_path / "frames.npz", x=x)
    out = tmp_path / "small" / "c.yaml"
    assert main([str(src), str(out), "--check", str(tmp_path / "frames.npz")]) == 0
    assert "3 of 3 quantized layers stored quantized" in capsys.readouterr().out
    a, b = Golden(load_network(src)), Golden(load_network(out))
    assert np.array_equal(a.run_int(x), b.run_int(x)) and np.array_equal(a.run_float(x), b.run_float(x))
    assert out.with_suffix(".npz").stat().st_size < 0.6 * src.with_suffix(".npz").stat().st_size
    with np.load(out.with_suffix(".npz")) as z:
        assert len(np.unique(z["conv1/W"])) == 4                       # 2-bit DoReFa: +-1/3, +-1
    # frames the network cannot take: refused, nothing written
    with pytest.raises(Exception, match="8"):
        compact(src, tmp_path / "bad.yaml", x[:, :, :8, :8])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frames.npz", "small", "src.npz", "src.yaml"]
