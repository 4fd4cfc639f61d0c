"""``bitplane train --arch nin|resnet20``: the pytorch DoReFa seed's NIN and ResNet-20
structures as graph specs; the trained model exports to a spec the golden float path
reproduces, and its integer path runs."""
import numpy as np
import pytest

from bitplane.core.errors import NotSupportedError
from bitplane.gen.golden import Golden
from bitplane.gen.lower import lower
from bitplane.gen.spec import load_network
from bitplane.train.arch import make_spec, parse_bits


def test_resnet20_structure_is_the_seeds():
    spec = make_spec("resnet20", "dorefa", 2, 2, "r")
    assert spec["input"]["shape"] == [1, 32, 32]                 # the seed's CIFAR size
    L = {l["name"]: l for l in spec["layers"]}
    adds = [l for l in spec["layers"] if l["op"] == "add"]
    assert len(adds) == 9                                        # 3 stages x 3 Basicneck blocks
    assert [n for n in L if n.endswith("conv_shortcut")] == [
        "features.1.conv_shortcut", "features.4.conv_shortcut", "features.7.conv_shortcut"]  # width/stride change
    assert L["features.2.add"]["inputs"] == ["features.2.conv2", "features.1.relu2"]          # identity shortcut
    assert [L[f"features.{i}.conv1"]["stride"] for i in (1, 4, 7)] == [1, 2, 2]
    assert [L[f"features.{i}.conv1"]["out_channels"] for i in (1, 4, 7)] == [16, 32, 64]
    assert [L[f"features.{i}.conv2"]["out_channels"] for i in (1, 4, 7)] == [64, 128, 256]
    convs = [l for l in spec["layers"] if l["op"] in ("conv", "dense")]
    assert len([c for c in convs if c["name"] != "classifier" and not c["name"].endswith("shortcut")]) == 19
    assert spec["layers"][-2]["op"] == "global_avgpool" and spec["layers"][-1]["op"] == "dense"
    # the seed's quantizer, static: tanh with a range, after each ReLU; the classifier's input
    # (a float ReLU in the seed) is an 8-bit uint with a static scale
    acts = [l for l in spec["layers"] if l["op"] == "quant_act"]
    assert len(acts) == 19 and all(a["nonlin"] == "relu" and a["quant"] == {"type": "tanh", "bits": 2, "range": 1.0}
                                   for a in acts[:-1])
    assert acts[-1]["name"] == "features.9.relu2" and acts[-1]["quant"]["type"] == "uint" and acts[-1]["quant"]["bits"] == 8


def test_nin_structure_is_the_seeds():
    spec = make_spec("nin", "dorefa", 4, 4, "n")
    convs = [l for l in spec["layers"] if l["op"] == "conv"]
    assert [c["out_channels"] for c in convs] == [192, 160, 96, 192, 192, 192, 192, 192, 10]
    assert [c["kernel"] for c in convs] == [5, 1, 1, 3, 1, 1, 3, 1, 1]
    assert all(c["bias"] for c in convs)                           # nn.Conv2d's default, as the seed's
    assert [c.get("weight_quant", {}).get("type") for c in (convs[0], convs[1], convs[-1])] == ["int", "dorefa", "int"]
    assert [l["op"] for l in spec["layers"] if "pool" in l["op"]] == ["maxpool", "avgpool", "global_avgpool"]


@pytest.mark.parametrize("arch,bits", [pytest.param("resnet20", "2,2", marks=pytest.mark.slow), ("nin", "4,4")])
def test_graph_arch_trains_exports_and_runs_both_paths(arch, bits, tmp_path):
    torch = pytest.importorskip("torch")
    from bitplane.train.nn import QNet, export
    w, a, _ = parse_bits(bits, "dorefa")
    model = QNet(make_spec(arch, "dorefa", w, a, arch), seed=1).double()
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (4, 1, 32, 32)).astype(np.uint8)
    xt = torch.from_numpy(x / 255.0)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    loss = torch.nn.functional.cross_entropy(model(xt).flatten(1), torch.from_numpy(rng.integers(0, 10, 4)))
    loss.backward()
    opt.step()
    model.eval()
    with torch.no_grad():
        want = model(xt).numpy().reshape(4, -1)
    export(model, tmp_path / "t.yaml")
    net = load_network(tmp_path / "t.yaml")
    assert net.is_graph
    g = Golden(net)
    got = g.run_float(x).reshape(4, -1)
    assert np.max(np.abs(got - want)) <= 1e-4 * np.max(np.abs(want))
    kinds = {type(s).__name__ for s in g.lowered.stages}
    assert ("AddStage" in kinds) == (arch == "resnet20") and "AvgPoolStage" in kinds
    d = g.dequantize(g.run_int(x)).reshape(4, -1)
    assert np.array_equal(d.argmax(1), got.argmax(1))


def test_average_of_sign_codes_is_refused_with_the_layer_named(tmp_path):
    pytest.importorskip("torch")
    from bitplane.train.nn import QNet, export
    export(QNet(make_spec("resnet20", "bnn", 1, 1, "b"), seed=1), tmp_path / "b.yaml")
    with pytest.raises(NotSupportedError, match=r"layer 'classifier' .*average pool 'avgpool'.*negative"):
        lower(load_network(tmp_path / "b.yaml"))


@pytest.mark.parametrize("arch", ["resnet20", "nin"])
def test_shipped_graph_example_runs_both_paths(arch):
    """examples/fmnist-{resnet20,nin}-w2a2 came from `bitplane train --arch resnet20|nin` (docs/training.md),
    their weights stored quantized (python -m bitplane.train.compact); the integer path agrees with the
    float path on the shipped Fashion-MNIST frames padded to 32x32."""
    import json
    from pathlib import Path
    from bitplane.train.arch import pad_input
    ex = Path(__file__).resolve().parents[2] / "examples"
    net = load_network(ex / f"fmnist-{arch}-w2a2.yaml")
    assert net.is_graph and net.input_shape == (1, 32, 32)
    with np.load(ex / "data" / "fashion-mnist-test-500.npz", allow_pickle=False) as z:
        x, y = pad_input(z["x"][:16], 32), z["y"][:16]
    g = Golden(net)
    f = g.run_float(x).reshape(16, -1)
    d = g.dequantize(g.run_int(x)).reshape(16, -1)
    assert np.array_equal(d.argmax(1), f.argmax(1)) and np.mean(f.argmax(1) == y) > 0.4
    s = json.loads((ex / f"fmnist-{arch}-w2a2.train.json").read_text())
    assert s["arch"] == arch and s["bits"] == {"W": 2, "A": 2, "G": 32}
