"""Golden model: int vs float paths on random networks and the shipped example; CLI."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings

from bitplane.cli.main import main
from bitplane.gen.compare import compare_paths
from bitplane.gen.golden import Golden
from bitplane.gen.spec import load_network
from tests.support.netgen import network_plans, random_inputs, write_network

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "lenet-w2a2.yaml"
DIGITS = ROOT / "examples" / "data" / "mnist-256.npz"


def test_int_and_float_paths_agree_on_random_networks(tmp_path_factory):
    """Random layer lists covering conv (stride 1/2, same/valid/explicit, groups), dense,
    batchnorm with negative gammas, maxpool before/after the activation and every quantizer.

    * every code where the paths disagree is explained (exact replay on the integer
      accumulator + float/fixed-point rounding within its bound): a threshold tie or
      fixed-point coefficient rounding;
    * every argmax disagreement is explained: an (explained) code mismatch upstream, or a
      *logit tie* (the two classes' float logits closer than the last layer's bound);
    * argmax agrees on >= 99% of all frames of exact-coefficient networks, and on >= 99%
      of all frames that are not logit ties over every network;
    * frames without any code mismatch in exact-coefficient networks have logits equal
      within 1e-9 relative.
    """
    reports = []

    @settings(max_examples=80)
    @given(network_plans())
    def run(plan):
        d = tmp_path_factory.mktemp("net")
        net = load_network(write_network(plan, d, seed=len(reports)))
        r = compare_paths(Golden(net), random_inputs(net, 48, seed=len(reports)))
        assert r["unexplained"] == 0, json.dumps(r["stages"], indent=1)
        if r["exact"]:
            assert r["max_rel_logit_error_clean"] <= 1e-9, r
        reports.append(r)

    run()
    tot = lambda key, rs=reports: sum(r[key] for r in rs)
    frames, disagree, ties = tot("frames"), tot("argmax_disagreements"), tot("argmax_disagreements_logit_tie")
    exact = [r for r in reports if r["exact"]]
    mism = tot("code_mismatches")
    elems = sum(s["elements"] for r in reports for s in r["stages"])
    print(f"{len(reports)} networks ({len(exact)} exact), {frames} frames: argmax agreement "
          f"{1 - disagree / frames:.4f} ({ties} logit ties, {tot('argmax_disagreements_upstream_codes')} "
          f"after code mismatches); code mismatches {mism}/{elems}")
    assert len(reports) >= 50 and len(exact) >= 10
    assert tot("argmax_disagreements", exact) <= 0.01 * tot("frames", exact)
    assert disagree - ties <= 0.01 * (frames - ties)


def test_example_network_paths_agree_on_real_digits():
    net = load_network(EXAMPLE)
    x = np.load(DIGITS, allow_pickle=False)["x"]
    r = compare_paths(Golden(net), x)
    assert r["unexplained"] == 0
    assert r["argmax_agreement"] == 1.0
    assert r["exact"]


def test_cli_golden_round_trip(tmp_path, capsys):
    x = np.load(DIGITS, allow_pickle=False)["x"][:16]
    np.save(tmp_path / "x.npy", x)
    out = {}
    for mode, extra in (("int", []), ("int", ["--dequantize"]), ("float", [])):
        p = tmp_path / f"{mode}{len(extra)}.npy"
        assert main(["golden", str(EXAMPLE), "--input", str(tmp_path / "x.npy"), "--output", str(p),
                     "--mode", mode, *extra]) == 0
        out[(mode, bool(extra))] = np.load(p)
    assert out[("int", False)].dtype == np.int64 and out[("int", False)].shape == (16, 10)
    assert out[("float", False)].dtype == np.float64
    g = Golden(load_network(EXAMPLE))
    assert np.array_equal(out[("int", False)], g.run_int(x))
    np.testing.assert_allclose(out[("int", True)], out[("float", False)], rtol=1e-9, atol=1e-9)
    assert "frames/s" in capsys.readouterr().err
    rc = main(["golden", str(EXAMPLE), "--input", str(tmp_path / "x.npy"), "--output", str(tmp_path / "z.npy"),
               "--mode", "float", "--dequantize"])
    assert rc == 1 and not (tmp_path / "z.npy").exists()


def test_cli_inspect_json():
    r = subprocess.run([sys.executable, "-m", "bitplane.cli.main", "inspect", str(EXAMPLE), "--json"],
                       capture_output=True, text=True, cwd=ROOT, check=True)
    d = json.loads(r.stdout)
    names = [s["stage"] for s in d["stages"]]
    assert names == ["conv0", "pool0", "conv1", "fc0"]
    conv1 = d["stages"][2]
    assert conv1["weights"]["coefs"] == [2, 4] and conv1["weights"]["offset"] == -3
    assert conv1["activations"]["coefs"] == [1, 2]
    assert conv1["output"]["thresholds_per_channel"] == 3
    assert conv1["macs"] == 32 * 14 * 14 * 144 and conv1["binary_ops"] == conv1["macs"] * 4
    assert d["stages"][-1]["output"] == "raw accumulators"


def test_batches_are_independent():
    """Chunked evaluation equals frame-by-frame evaluation (no state across frames)."""
    g = Golden(load_network(EXAMPLE))
    x = np.load(DIGITS, allow_pickle=False)["x"][:5]
    whole = g.run_int(x)
    assert np.array_equal(whole, np.concatenate([g.run_int(x[i:i + 1]) for i in range(5)]))
    assert g.run_int(x[:0]).shape == (0, 10)


def test_bench_golden_prints_throughput():
    r = subprocess.run([sys.executable, "bench/golden.py", "--frames", "64", "--repeat", "1"],
                       capture_output=True, text=True, cwd=ROOT, check=True)
    assert "int path" in r.stdout and "float path" in r.stdout and "frames/s" in r.stdout


EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))


def test_reference_networks_are_shipped():
    names = {p.stem for p in EXAMPLES}
    assert {"lenet-w2a2", "tfc-w1a1", "tfc-w2a2", "cnv-w1a1", "cnv-w2a2", "svhn-dorefa-w1a2",
            "lenet-lq-w2a2", "lenet-ttq-a2", "lfc-w1a1"} <= names


GRAPH_EXAMPLES = {"fmnist-resnet20-w2a2", "fmnist-nin-w2a2"}      # graph specs (gen/graph.py): compared end to end


def test_graph_examples_are_graphs_and_compare_paths_refuses_them():
    from bitplane.core.errors import NotSupportedError
    from bitplane.gen.compare import compare_paths
    assert {p.stem for p in EXAMPLES if load_network(p).is_graph} == GRAPH_EXAMPLES
    g = Golden(load_network(ROOT / "examples" / "fmnist-resnet20-w2a2.yaml"))
    with pytest.raises(NotSupportedError, match="graph network"):
        compare_paths(g, random_inputs(g.net, 2))


@pytest.mark.parametrize("spec", [p for p in EXAMPLES if p.stem not in GRAPH_EXAMPLES], ids=lambda p: p.stem)
def test_example_networks_int_path_explained(spec):
    net = load_network(spec)
    g = Golden(net)
    x = (np.load(DIGITS, allow_pickle=False)["x"][:32] if net.input_shape == (1, 28, 28)
         else random_inputs(net, 8))
    r = compare_paths(g, x)
    assert r["unexplained"] == 0
    if r["exact"]:
        assert r["argmax_agreement"] == 1.0 and r["code_mismatches"] == 0
