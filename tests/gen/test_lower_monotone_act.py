"""A monotone unquantized activation inside a stage (LQ-Nets ``vgg_model.py``: ``conv1``
with ``nl=tf.nn.relu`` -> ``pool1`` -> ``BNReLUQuant``: ReLU -> maxpool -> BN -> ReLU ->
quantize) folds into the stage's thresholds: the integer path equals the float path, where
before it was refused; an act with no quant_act after it (or a non-monotone one) still is."""
import numpy as np
import pytest

from bitplane.core.errors import NotSupportedError
from bitplane.gen.golden import Golden
from bitplane.gen.lower import lower
from bitplane.gen.plan import plan
from bitplane.gen.spec import load_network
from tests.support.graphnets import DQ2, write_net

LQ2 = {"type": "lq", "bits": 2}


def _spec(nonlin="relu", act_after_pool=False, q=LQ2):
    act = {"name": "conv1_relu", "op": "act", "nonlin": nonlin}
    pool = {"name": "pool1", "op": "maxpool", "kernel": 2, "stride": 2}
    mid = [pool, act] if act_after_pool else [act, pool]
    return {"name": "vggish", "input": {"shape": [3, 12, 12], "bits": 8, "scale": 1 / 255},
            "layers": [{"name": "conv1", "op": "conv", "out_channels": 8, "kernel": 3, "padding": 1,
                        "weight_quant": {"type": "int", "bits": 8}}, *mid,
                       {"name": "bnquant2_bn", "op": "batchnorm", "eps": 1e-5},
                       {"name": "bnquant2_act", "op": "quant_act", "nonlin": "relu", "quant": dict(q)},
                       {"name": "conv2", "op": "conv", "out_channels": 6, "kernel": 3, "padding": 1,
                        "weight_quant": dict(DQ2)},
                       {"name": "bn2", "op": "batchnorm"},
                       {"name": "act2", "op": "quant_act", "nonlin": "clip01", "quant": dict(DQ2)},
                       {"name": "fc", "op": "dense", "out_features": 10}]}


def _params(spec, rng):
    from tests.support.graphnets import random_params
    P = random_params(spec, rng)
    if next(L for L in spec["layers"] if L["name"] == "bnquant2_act")["quant"]["type"] == "lq":
        P["bnquant2_act/basis"] = np.array([0.4, 0.8])
    P["bnquant2_bn/mean"] = np.abs(P["bnquant2_bn/mean"])      # ReLU'd inputs are >= 0
    return P


@pytest.mark.parametrize("q", [LQ2, {"type": "uint", "bits": 3, "scale": 0.25}])
@pytest.mark.parametrize("after_pool", [False, True])
def test_monotone_act_in_a_stage_is_exact_in_the_integer_path(tmp_path, q, after_pool):
    spec = _spec(act_after_pool=after_pool, q=q)
    net = load_network(write_net(tmp_path, spec, params=_params(spec, np.random.default_rng(3))))
    low = lower(net)
    st = low.stages[0]
    assert [k for k, _ in st.post] == (["pool", "act", "bn"] if after_pool else ["act", "pool", "bn"])
    assert st.layers == ["conv1", *(["pool1", "conv1_relu"] if after_pool else ["conv1_relu", "pool1"]),
                         "bnquant2_bn", "bnquant2_act"]
    x = np.random.default_rng(4).integers(0, 256, (40, 3, 12, 12)).astype(np.uint8)
    g = Golden(net)
    _, ft = g.run_float(x, trace=True)
    _, it = g.run_int(x, trace=True)
    # the stage's codes are exactly the float path's quantized activation
    act = st.out_act
    assert np.array_equal(act.levels[it["conv1"]], ft["bnquant2_act"])
    # the relu is not a no-op on these inputs
    assert np.any(ft["conv1"] < 0)
    assert plan(low)["folds"][0].stage == "conv1"


def test_act_without_quant_act_or_non_monotone_is_refused(tmp_path):
    spec = _spec(nonlin="cabs")
    net = load_network(write_net(tmp_path, spec, params=_params(spec, np.random.default_rng(3)), name="c"))
    with pytest.raises(NotSupportedError, match="conv1_relu"):
        lower(net)
    spec = _spec()                                       # a raw last stage has no thresholds to fold into
    spec["layers"] = spec["layers"][:5] + [{"name": "fc", "op": "dense", "out_features": 10},
                                           {"name": "fc_relu", "op": "act", "nonlin": "relu"}]
    net = load_network(write_net(tmp_path, spec, params=_params(spec, np.random.default_rng(3)), name="r"))
    with pytest.raises(NotSupportedError, match="fc_relu"):
        lower(net)
