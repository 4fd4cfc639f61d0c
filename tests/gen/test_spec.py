"""Spec loader: every malformed spec gets one clear error naming file, layer and field."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from bitplane.cli.main import main
from bitplane.core.errors import SpecError
from bitplane.gen.spec import load_network, same_pads, window_geometry

ROOT = Path(__file__).resolve().parents[2]

BASE = {
    "name": "tiny",
    "weights": "tiny.npz",
    "input": {"shape": [1, 6, 6], "bits": 8, "scale": 1 / 255},
    "layers": [
        {"name": "conv0", "op": "conv", "out_channels": 2, "kernel": 3, "padding": "same",
         "weight_quant": {"type": "dorefa", "bits": 2}},
        {"name": "bn0", "op": "batchnorm"},
        {"name": "act0", "op": "quant_act", "nonlin": "clip01", "quant": {"type": "dorefa", "bits": 2}},
        {"name": "fc", "op": "dense", "out_features": 3, "bias": True, "weight_quant": {"type": "int", "bits": 8}},
    ],
}


def base_params():
    rng = np.random.default_rng(0)
    return {"conv0/W": rng.normal(size=(2, 1, 3, 3)), "bn0/gamma": np.ones(2), "bn0/beta": np.zeros(2),
            "bn0/mean": np.zeros(2), "bn0/var": np.ones(2), "fc/W": rng.normal(size=(3, 72)),
            "fc/b": np.zeros(3)}


def write(tmp_path, spec=None, params=None):
    spec = BASE if spec is None else spec
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    np.savez(tmp_path / "tiny.npz", **(base_params() if params is None else params))
    return tmp_path / "tiny.yaml"


def mutate(fn):
    import copy
    s = copy.deepcopy(BASE)
    fn(s)
    return s


def test_base_spec_loads(tmp_path):
    net = load_network(write(tmp_path))
    assert [l.out_shape for l in net.layers] == [(2, 6, 6), (2, 6, 6), (2, 6, 6), (3,)]
    assert net.layers[0].pads == (1, 1, 1, 1)


def test_padding_rules():
    assert same_pads(5, 3, 2) == (1, 1)
    assert same_pads(6, 3, 2) == (0, 1)            # TensorFlow: extra pixel bottom/right
    assert same_pads(7, 1, 1) == (0, 0)
    assert window_geometry(7, 6, 3, 2, "same")[:2] == (4, 3)
    assert window_geometry(7, 6, 3, 2, "valid")[:2] == (3, 2)
    assert window_geometry(7, 6, 3, 1, 2)[:2] == (9, 8)


def _sign_then_padded_conv(s):
    s["layers"][2].update(nonlin="none", quant={"type": "sign"})
    s["layers"][3:3] = [
        {"name": "c1", "op": "conv", "out_channels": 2, "kernel": 3, "padding": "same",
         "weight_quant": {"type": "sign"}},
        {"name": "act1", "op": "quant_act", "nonlin": "clip01", "quant": {"type": "dorefa", "bits": 2}}]


# (mutation of the spec, mutation of the params, expected fragments of the message)
CASES = {
    "unknown op": (mutate(lambda s: s["layers"][1].update(op="dropout")), None,
                   ["layer 'bn0' (#1)", "field 'op'", "unknown op 'dropout'"]),
    "missing tensor": (None, {k: v for k, v in base_params().items() if k != "bn0/var"},
                       ["tiny.npz", "layer 'bn0'", "field 'var'", "missing tensor 'bn0/var'"]),
    "wrong shape": (None, dict(base_params(), **{"conv0/W": np.zeros((2, 1, 5, 5))}),
                    ["tiny.npz", "layer 'conv0'", "field 'W'", "shape [2, 1, 5, 5], expected [2, 1, 3, 3]"]),
    "bits out of range": (mutate(lambda s: s["layers"][0]["weight_quant"].update(bits=17)), None,
                          ["layer 'conv0'", "field 'weight_quant.bits'",
                           "17 is out of range 1..16 for dorefa weights"]),
    "int weights 1 bit": (mutate(lambda s: s["layers"][3]["weight_quant"].update(bits=1)), None,
                          ["layer 'fc'", "field 'weight_quant.bits'", "1 is out of range 2..16"]),
    "ttq as activation": (mutate(lambda s: s["layers"][2]["quant"].update(type="ttq")), None,
                          ["layer 'act0'", "field 'quant.type'", "not supported for activations",
                           "is a weight quantizer"]),
    "uint as weights": (mutate(lambda s: s["layers"][0]["weight_quant"].update(type="uint")), None,
                        ["layer 'conv0'", "field 'weight_quant.type'", "not supported for weights"]),
    "unknown field": (mutate(lambda s: s["layers"][0].update(kernal=3)), None,
                      ["layer 'conv0'", "field 'kernal'", "unknown field"]),
    "missing field": (mutate(lambda s: s["layers"][0].pop("kernel")), None,
                      ["layer 'conv0'", "field 'kernel'", "missing"]),
    "bad nonlin": (mutate(lambda s: s["layers"][2].update(nonlin="relu")), None,
                   ["layer 'act0'", "field 'nonlin'", "not valid for dorefa activations"]),
    "bad padding": (mutate(lambda s: s["layers"][0].update(padding="full")), None,
                    ["layer 'conv0'", "field 'padding'"]),
    "groups": (mutate(lambda s: s["layers"][0].update(groups=2)), None,
               ["layer 'conv0'", "field 'groups'", "must divide input channels (1)"]),
    "duplicate name": (mutate(lambda s: s["layers"][1].update(name="conv0")), None,
                       ["layer 'conv0' (#1)", "duplicate layer name"]),
    "conv after dense": (mutate(lambda s: s["layers"].append(
        {"name": "c2", "op": "conv", "out_channels": 1, "kernel": 1})), None,
        ["layer 'c2'", "conv needs a [C,H,W] input"]),
    "extra tensor": (None, dict(base_params(), **{"conv9/W": np.zeros(3)}),
                     ["tiny.npz", "unexpected tensor(s) ['conv9/W']"]),
    "nan tensor": (None, dict(base_params(), **{"fc/b": np.array([0, np.nan, 0])}),
                   ["layer 'fc'", "field 'b'", "NaN"]),
    "negative variance": (None, dict(base_params(), **{"bn0/var": np.array([1.0, -1.0])}),
                          ["layer 'bn0'", "field 'var'", "non-negative"]),
    "input shape": (mutate(lambda s: s["input"].update(shape=[1, 6])), None,
                    ["field 'input.shape'", "[C, H, W]"]),
    "kernel too big": (mutate(lambda s: s["layers"][0].update(kernel=7, padding="valid")), None,
                       ["layer 'conv0'", "field 'kernel'", "does not fit"]),
    "unquantized input": (mutate(lambda s: s["layers"].pop(2)), None,
                          ["layer 'fc'", "input of 'fc' is not quantized", "insert a quant_act"]),
    "trailing act": (mutate(lambda s: s["layers"].append(
        {"name": "act9", "op": "quant_act", "nonlin": "clip01", "quant": {"type": "dorefa", "bits": 2}})), None,
        ["layer 'act9'", "must end with a conv or dense"]),
    "sign padding": (mutate(_sign_then_padded_conv),
                     dict(base_params(), **{"c1/W": np.ones((2, 2, 3, 3))}),
                     ["layer 'c1'", "field 'pad_value'", "cannot represent", "pad_value: -1"]),
    "narrow on uint": (mutate(lambda s: s["layers"][2].update(quant={"type": "uint", "bits": 2, "scale": 1.0,
                                                                     "narrow": True}, nonlin="relu")), None,
                       ["layer 'act0'", "field 'quant.narrow'", "only applies to int activations"]),
    "int act without scale": (mutate(lambda s: s["layers"][2].update(quant={"type": "int", "bits": 2},
                                                                     nonlin="none")), None,
                              ["layer 'act0'", "field 'quant.scale'", "int activations need a positive"]),
    "input bn without quantizer": (mutate(lambda s: s["layers"].insert(0, {"name": "pre", "op": "batchnorm"})),
                                   dict(base_params(), **{f"pre/{k}": np.ones(1) for k in
                                                          ("gamma", "beta", "mean", "var")}),
                                   ["layer 'conv0'", "on the network input", "must be followed by a quant_act"]),
    "bn on codes": (mutate(lambda s: s["layers"].insert(3, {"name": "bnx", "op": "batchnorm"})),
                    dict(base_params(), **{f"bnx/{k}": np.ones(2) for k in ("gamma", "beta", "mean", "var")}),
                    ["layer 'bnx'", "batchnorm must directly follow a conv or dense"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_spec_is_reported_clearly(case, tmp_path, capsys):
    spec, params, fragments = CASES[case]
    path = write(tmp_path, spec, params)
    rc = main(["inspect", str(path)])
    err = capsys.readouterr().err
    assert rc == 1, err
    assert err.startswith("bitplane: error: "), err
    assert "Traceback" not in err
    for frag in fragments:
        assert frag in err, f"{frag!r} not in {err!r}"
    assert err.count("\n") == 1                      # one line


def test_invalid_yaml_and_missing_files(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("name: x\nlayers: [\n")
    with pytest.raises(SpecError, match=r"bad.yaml: invalid YAML at line"):
        load_network(p)
    with pytest.raises(SpecError, match="file not found"):
        load_network(tmp_path / "nope.yaml")
    s = dict(BASE, weights="other.npz")
    (tmp_path / "t.yaml").write_text(yaml.safe_dump(s))
    with pytest.raises(SpecError, match=r"other.npz: weights file not found"):
        load_network(tmp_path / "t.yaml")


def test_yaml_is_never_executed(tmp_path):
    p = tmp_path / "evil.yaml"
    p.write_text("name: !!python/object/apply:os.system ['touch pwned']\n")
    with pytest.raises(SpecError, match="invalid YAML"):
        load_network(p)
    assert not Path("pwned").exists()


def test_pickled_npz_is_rejected(tmp_path):
    path = write(tmp_path)
    params = base_params()
    params["fc/b"] = np.array([object(), 1, 2], dtype=object)
    np.savez(tmp_path / "tiny.npz", **params)
    with pytest.raises(SpecError, match="never unpickled"):
        load_network(path)
    (tmp_path / "tiny.npz").write_bytes(b"not a zip")
    with pytest.raises(SpecError, match="not a valid .npz"):
        load_network(path)


def test_cli_exit_without_traceback(tmp_path):
    """The real console entry point: non-zero exit, one line, no traceback."""
    spec = mutate(lambda s: s["layers"][0]["weight_quant"].update(bits=0))
    path = write(tmp_path, spec)
    r = subprocess.run([sys.executable, "-m", "bitplane.cli.main", "inspect", str(path)], capture_output=True,
                       text=True, cwd=ROOT)
    assert r.returncode == 1
    assert "Traceback" not in r.stderr
    assert "field 'weight_quant.bits'" in r.stderr


def test_golden_input_errors(tmp_path, capsys):
    path = write(tmp_path)
    bad = {"float": np.zeros((2, 1, 6, 6), np.float32), "shape": np.zeros((2, 6, 6), np.uint8)}
    for name, arr in bad.items():
        np.save(tmp_path / f"{name}.npy", arr)
        rc = main(["golden", str(path), "--input", str(tmp_path / f"{name}.npy"),
                   "--output", str(tmp_path / "out.npy")])
        err = capsys.readouterr().err
        assert rc == 1 and f"{name}.npy" in err and "Traceback" not in err
    assert not (tmp_path / "out.npy").exists()       # nothing partial left behind
    rc = main(["golden", str(path), "--input", str(tmp_path / "missing.npy"), "--output", str(tmp_path / "o.npy")])
    assert rc == 1 and "missing.npy: file not found" in capsys.readouterr().err

