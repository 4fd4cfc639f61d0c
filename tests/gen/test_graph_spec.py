"""Graph spec grammar (issue #16): named inputs, add/concat/avgpool/global_avgpool,
explicit asymmetric padding and mirror padding; every malformed graph is one clear line."""
import copy
from pathlib import Path

import numpy as np
import pytest

from bitplane.cli.main import main
from bitplane.gen.spec import load_network
from tests.support.graphnets import bn, conv, qact, random_params, resnet_spec, write_net

ROOT = Path(__file__).resolve().parents[2]


def test_resnet_graph_loads(tmp_path):
    net = load_network(write_net(tmp_path, resnet_spec()))
    assert net.is_graph
    add = net.layer("b1add")
    assert add.inputs == ("b1n2", "a0") and add.in_shapes == ((4, 8, 8), (4, 8, 8))
    assert net.layer("b2sc").inputs == ("b1out",) and net.layer("b2sc").in_shape == (4, 8, 8)
    assert net.layer("b2add").out_shape == (8, 4, 4)
    assert net.layer("gap").out_shape == (8, 1, 1)
    assert net.layer("b1c1").inputs == ("a0",)            # default: the previous layer


def test_sequential_specs_are_not_graphs():
    for p in sorted((ROOT / "examples").glob("*.yaml")):
        if p.stem in ("fmnist-resnet20-w2a2", "fmnist-nin-w2a2"):   # the graph examples (ResNet-20, NIN)
            assert load_network(p).is_graph
            continue
        net = load_network(p)
        assert not net.is_graph, p
        assert net.layers[0].inputs == ("input",)
        assert all(l.inputs == (p.name,) for p, l in zip(net.layers, net.layers[1:]))


def test_valid_graph_with_every_new_field(tmp_path):
    spec = {"name": "g", "input": {"shape": [2, 7, 6], "bits": 8, "scale": 1 / 255}, "layers": [
        conv("c0", 3, pad=[1, 0, 2, 1]), qact("a0"),                         # 7x6 -> 6x7
        conv("c1", 2, k=3, pad=[1, 0, 2, 1], inputs="input", pad_mode="symmetric"), qact("a1"),
        {"name": "cat", "op": "concat", "inputs": ["a0", "a1"]},             # 5 x 6 x 7
        {"name": "mp", "op": "maxpool", "kernel": 3, "stride": 1, "padding": 1, "pad_mode": "reflect"},
        {"name": "s", "op": "add", "inputs": ["mp", "cat"]},
        {"name": "ap", "op": "avgpool", "kernel": 2, "stride": 2, "padding": [0, 1, 0, 1], "divisor": "valid"},
        {"name": "fc", "op": "dense", "out_features": 3},
    ]}
    net = load_network(write_net(tmp_path, spec))
    assert net.layer("c0").pads == (1, 0, 2, 1) and net.layer("c0").out_shape == (3, 6, 7)
    assert net.layer("c1")["pad_mode"] == "symmetric"
    assert net.layer("cat").out_shape == (5, 6, 7)
    assert net.layer("ap").out_shape == (5, 3, 4) and net.layer("ap")["divisor"] == "valid"
    assert net.layer("mp")["pad_mode"] == "reflect"


def _res(fn):
    s = copy.deepcopy(resnet_spec())
    fn(s)
    return s


def _layer(s, name):
    return next(l for l in s["layers"] if l["name"] == name)


CASES = {
    "self input": (lambda s: _layer(s, "b1c1").update(inputs="b1c1"),
                   ["layer 'b1c1' (#3)", "field 'inputs'", "cannot read its own output"]),
    "later input (cycle)": (lambda s: _layer(s, "b1c1").update(inputs="b1out"),
                            ["layer 'b1c1' (#3)", "field 'inputs'", "'b1out' is layer #9, defined later"]),
    "unknown input": (lambda s: _layer(s, "b1add").update(inputs=["b1n2", "nope"]),
                      ["layer 'b1add'", "field 'inputs'", "unknown input 'nope'"]),
    "add shapes": (lambda s: _layer(s, "b2add").update(inputs=["b2n2", "b1out"]),
                   ["layer 'b2add'", "field 'inputs'", "shapes differ", "[8, 4, 4]", "[4, 8, 8]"]),
    "add one input": (lambda s: _layer(s, "b1add").update(inputs=["b1n2"]),
                      ["layer 'b1add'", "field 'inputs'", "at least two inputs"]),
    "add no inputs": (lambda s: _layer(s, "b1add").pop("inputs"),
                      ["layer 'b1add'", "field 'inputs'", "missing"]),
    "conv two inputs": (lambda s: _layer(s, "b1c1").update(inputs=["a0", "stem"]),
                        ["layer 'b1c1'", "field 'inputs'", "exactly one input"]),
    "inputs type": (lambda s: _layer(s, "b1c1").update(inputs=3),
                    ["layer 'b1c1'", "field 'inputs'", "must be a layer name"]),
    "concat sizes": (lambda s: s["layers"].insert(17, {"name": "cat", "op": "concat", "inputs": ["b2n2", "a0"]}),
                     ["layer 'cat'", "field 'inputs'", "one height and width"]),
    "pad mode": (lambda s: _layer(s, "stem").update(pad_mode="wrap"),
                 ["layer 'stem'", "field 'pad_mode'", "constant, reflect, symmetric"]),
    "reflect too wide": (lambda s: _layer(s, "stem").update(pad_mode="reflect", padding=[8, 0, 0, 0], kernel=1),
                         ["layer 'stem'", "field 'padding'", "reflect padding [8, 0, 0, 0]"]),
    "reflect pad value": (lambda s: _layer(s, "stem").update(pad_mode="reflect", pad_value=0),
                          ["layer 'stem'", "field 'pad_value'", "only applies to pad_mode 'constant'"]),
    "padding list": (lambda s: _layer(s, "stem").update(padding=[1, 1, 1]),
                     ["layer 'stem'", "field 'padding'", "[top, bottom, left, right]"]),
    "divisor": (lambda s: s["layers"].insert(19, {"name": "ap", "op": "avgpool", "kernel": 2, "divisor": "tf"}),
                ["layer 'ap'", "field 'divisor'", "'include_pad'"]),
    "dead branch": (lambda s: _layer(s, "b2add").update(inputs=["b2n2", "b2n2x"]) or
                    s["layers"].insert(17, {"name": "b2n2x", "op": "batchnorm", "inputs": "b2n2"}),
                    ["layer 'b2scn'", "never used"]),
    "layer named input": (lambda s: _layer(s, "stem").update(name="input") or
                          _layer(s, "stem_bn").update(inputs="input"),
                          ["field 'inputs'", "ambiguous"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_graph_is_reported_clearly(case, tmp_path, capsys):
    fn, fragments = CASES[case]
    spec = _res(fn)
    try:
        params = random_params(spec, np.random.default_rng(0))
    except (KeyError, ValueError, TypeError, StopIteration):
        params = random_params(resnet_spec(), np.random.default_rng(0))
    path = write_net(tmp_path, spec, params=params)
    rc = main(["inspect", str(path)])
    err = capsys.readouterr().err
    assert rc == 1, err
    assert err.startswith("bitplane: error: ") and "Traceback" not in err, err
    for frag in fragments:
        assert frag in err, f"{frag!r} not in {err!r}"
    assert err.count("\n") == 1
