"""Graph network specs for tests: random parameters for a layer list, a residual net, and a
hypothesis strategy of random graph networks (residual blocks with identity and projection
shortcuts, forks, pools, concat, grouped convs)."""
from __future__ import annotations

import numpy as np
import yaml
from hypothesis import strategies as st

from bitplane.gen.spec import window_geometry

DQ2 = {"type": "dorefa", "bits": 2}


def shapes_of(spec):
    """Input and output shape of every layer (the loader's rules for the ops used here)."""
    out = {"input": tuple(spec["input"]["shape"])}
    ins_of = {}
    prev = "input"
    for l in spec["layers"]:
        ins = l.get("inputs", prev)
        ins = [ins] if isinstance(ins, str) else ins
        cur = out[ins[0]]
        ins_of[l["name"]] = cur
        op = l["op"]
        if op in ("conv", "maxpool", "avgpool"):
            k = l["kernel"]
            s = l.get("stride", 1 if op == "conv" else k)
            oh, ow, _ = window_geometry(cur[1], cur[2], k, s, l.get("padding", "valid"))
            cur = (l["out_channels"] if op == "conv" else cur[0], oh, ow)
        elif op == "dense":
            cur = (l["out_features"],)
        elif op == "global_avgpool":
            cur = (cur[0], 1, 1)
        elif op == "concat":
            cur = (sum(out[v][0] for v in ins),) + cur[1:]
        out[l["name"]] = cur
        prev = l["name"]
    return ins_of, out


def random_params(spec, rng):
    ins_of, shp = shapes_of(spec)
    P = {}
    for l in spec["layers"]:
        n = l["name"]
        src = ins_of[n]
        if l["op"] == "conv":
            g = l.get("groups", 1)
            P[f"{n}/W"] = rng.normal(size=(l["out_channels"], src[0] // g, l["kernel"], l["kernel"]))
        elif l["op"] == "dense":
            P[f"{n}/W"] = rng.normal(size=(l["out_features"], int(np.prod(src))))
        elif l["op"] == "batchnorm":
            C = src[0]
            P[f"{n}/gamma"] = rng.uniform(0.5, 2.0, C) * rng.choice([1, 1, 1, -1], C)
            P[f"{n}/beta"] = rng.normal(size=C) * 0.5
            P[f"{n}/mean"] = rng.normal(size=C) * 2
            P[f"{n}/var"] = rng.uniform(0.5, 4.0, C)
        if l.get("bias"):
            P[f"{n}/b"] = rng.normal(size=shp[n][0]) * 0.3
    return P


def write_net(tmp_path, spec, seed=0, params=None, name="net"):
    spec = dict(spec, weights=f"{name}.npz")
    (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    np.savez(tmp_path / f"{name}.npz", **(random_params(spec, np.random.default_rng(seed))
                                          if params is None else params))
    return tmp_path / f"{name}.yaml"


def conv(name, out, k=3, pad=1, stride=1, inputs=None, groups=1, **kw):
    d = {"name": name, "op": "conv", "out_channels": out, "kernel": k, "stride": stride, "padding": pad,
         "groups": groups, "weight_quant": dict(DQ2)}
    if inputs is not None:
        d["inputs"] = inputs
    d.update(kw)
    return d


def bn(name, inputs=None):
    d = {"name": name, "op": "batchnorm"}
    if inputs is not None:
        d["inputs"] = inputs
    return d


def qact(name, inputs=None, q=DQ2):
    d = {"name": name, "op": "quant_act", "nonlin": "clip01", "quant": dict(q)}
    if inputs is not None:
        d["inputs"] = inputs
    return d


def resnet_spec(shape=(3, 8, 8), width=4, classes=5):
    """ResNet-style: stem, a block with an identity shortcut, a block with a projection
    (1x1 conv + bn, stride 2) shortcut, global average pool, dense."""
    return {"name": "res", "input": {"shape": list(shape), "bits": 8, "scale": 1 / 255}, "layers": [
        conv("stem", width), bn("stem_bn"), qact("a0"),
        conv("b1c1", width), bn("b1n1"), qact("b1a1"),
        conv("b1c2", width), bn("b1n2"),
        {"name": "b1add", "op": "add", "inputs": ["b1n2", "a0"]}, qact("b1out"),
        conv("b2c1", 2 * width, stride=2), bn("b2n1"), qact("b2a1"),
        conv("b2c2", 2 * width), bn("b2n2"),
        conv("b2sc", 2 * width, k=1, pad=0, stride=2, inputs="b1out"), bn("b2scn"),
        {"name": "b2add", "op": "add", "inputs": ["b2n2", "b2scn"]}, qact("b2out"),
        {"name": "gap", "op": "global_avgpool"},
        {"name": "fc", "op": "dense", "out_features": classes, "bias": True, "weight_quant": {"type": "int", "bits": 8}},
    ]}


def stream_spec(shape=(3, 8, 8), width=4, classes=5):
    """A float residual stream through two adds: the stem's batchnorm output is the stream,
    ``s1 = b1 + stem``, ``s2 = b2 + s1`` (``s1`` carries the 16 guard bits of a rescaled add,
    so ``s2`` rounds its sum back: ``AddStage.shift``), then a quantizer, global pool, dense."""
    return {"name": "stream", "input": {"shape": list(shape), "bits": 8, "scale": 1 / 255}, "layers": [
        conv("stem", width), bn("stem_bn"), qact("a0"),
        conv("b1c1", width), bn("b1n1"), qact("b1a1"),
        conv("b1c2", width), bn("b1n2"),
        {"name": "s1", "op": "add", "inputs": ["b1n2", "stem_bn"]}, qact("s1q"),
        conv("b2c1", width), bn("b2n1"), qact("b2a1"),
        conv("b2c2", width), bn("b2n2"),
        {"name": "s2", "op": "add", "inputs": ["b2n2", "s1"]}, qact("s2q"),
        {"name": "gap", "op": "global_avgpool"},
        {"name": "fc", "op": "dense", "out_features": classes, "bias": True, "weight_quant": {"type": "int", "bits": 8}},
    ]}


def preact_spec(shape=(3, 8, 8), width=4, classes=5, act="relu"):
    """Pre-activation ResNet head (LQ-Nets ``resnet_model.py``'s first block): stem conv +
    bn, an **unquantized** ``act`` (relu) and a max-pool; the pooled float stream is both the
    block's quantizer input and its identity shortcut (``b1add``); after the add a batchnorm,
    another unquantized relu feeding the next block's quantizer and shortcut (``b2add``), then a
    quantizer, global pool, dense."""
    rq = {"type": "uint", "bits": 2, "scale": 0.5}
    relu_q = lambda n, inputs=None: dict(qact(n, inputs, rq), nonlin="relu")       # noqa: E731
    return {"name": "preact", "input": {"shape": list(shape), "bits": 8, "scale": 1 / 255}, "layers": [
        conv("stem", width), bn("stem_bn"), {"name": "stem_act", "op": "act", "nonlin": act},
        {"name": "pool", "op": "maxpool", "kernel": 3, "stride": 2, "padding": [0, 1, 0, 1]},
        relu_q("b1q"), conv("b1c1", width), bn("b1n1"), relu_q("b1a1"),
        conv("b1c2", width), bn("b1n2"),
        {"name": "b1add", "op": "add", "inputs": ["b1n2", "pool"]},
        bn("b2pre"), {"name": "b2act", "op": "act", "nonlin": act}, relu_q("b2q"),
        conv("b2c1", width), bn("b2n1"), relu_q("b2a1"), conv("b2c2", width), bn("b2n2"),
        {"name": "b2add", "op": "add", "inputs": ["b2act", "b2n2"]},
        bn("last_bn"), relu_q("last_q"),
        {"name": "gap", "op": "global_avgpool"},
        {"name": "fc", "op": "dense", "out_features": classes, "bias": True, "weight_quant": {"type": "int", "bits": 8}},
    ]}


@st.composite
def graph_nets(draw):
    """Residual blocks (identity / projection shortcut, float residual stream), forks into a
    concat, average pools (both divisors, include/valid), mirror-padded pools, grouped convs."""
    C = draw(st.sampled_from([2, 4]))
    H = H0 = draw(st.sampled_from([6, 7, 8]))
    abits = draw(st.sampled_from([1, 2, 3]))
    q = {"type": "dorefa", "bits": abits}
    L = [conv("stem", C, weight_quant={"type": "dorefa", "bits": draw(st.sampled_from([1, 2]))}),
         bn("stem_n"), qact("stem_a", q=q)]
    cur, n = "stem_a", 0
    for kind in draw(st.lists(st.sampled_from(["identity", "projection", "stream", "concat", "avg", "mpool"]),
                              min_size=1, max_size=3)):
        n += 1
        p = f"k{n}"
        g = draw(st.sampled_from([1, 2]))
        if kind == "identity":
            L += [conv(f"{p}c1", C, groups=g, inputs=cur), bn(f"{p}n1"), qact(f"{p}a1", q=q),
                  conv(f"{p}c2", C), bn(f"{p}n2"), {"name": f"{p}s", "op": "add", "inputs": [f"{p}n2", cur]},
                  qact(f"{p}o", q=q)]
        elif kind == "projection" and H >= 4:
            L += [conv(f"{p}c1", 2 * C, stride=2, inputs=cur), bn(f"{p}n1"), qact(f"{p}a1", q=q),
                  conv(f"{p}c2", 2 * C, groups=g), bn(f"{p}n2"),
                  conv(f"{p}sc", 2 * C, k=1, pad=0, stride=2, inputs=cur), bn(f"{p}scn"),
                  {"name": f"{p}s", "op": "add", "inputs": [f"{p}n2", f"{p}scn"]}, qact(f"{p}o", q=q)]
            C, H = 2 * C, (H + 1) // 2
        elif kind == "stream":        # pre-activation: a float stream two adds long
            L += [conv(f"{p}c0", C, k=1, pad=0, inputs=cur),
                  bn(f"{p}b1"), qact(f"{p}a1", q=q), conv(f"{p}c1", C, groups=g),
                  {"name": f"{p}s1", "op": "add", "inputs": [f"{p}c1", f"{p}c0"]},
                  bn(f"{p}b2"), qact(f"{p}a2", q=q), conv(f"{p}c2", C),
                  {"name": f"{p}s2", "op": "add", "inputs": [f"{p}c2", f"{p}s1"]},
                  bn(f"{p}b3"), qact(f"{p}o", q=q)]
        elif kind == "concat":
            L += [conv(f"{p}x", C, k=1, pad=0, inputs=cur), bn(f"{p}xn"), qact(f"{p}xa", q=q),
                  conv(f"{p}y", C, k=3, groups=g, inputs=cur, pad_mode="reflect"), bn(f"{p}yn"),
                  qact(f"{p}ya", q=q),
                  {"name": f"{p}o", "op": "concat", "inputs": [f"{p}xa", f"{p}ya"]}]
            C = 2 * C
        elif kind == "avg":
            div = draw(st.sampled_from(["include_pad", "valid"]))
            L += [{"name": f"{p}p", "op": "avgpool", "kernel": 3, "stride": draw(st.sampled_from([1, 2])),
                   "padding": 1, "divisor": div, "inputs": cur}, qact(f"{p}o", q=q)]
            H = (H - 1) // L[-2]["stride"] + 1
        elif kind == "mpool" and H >= 3:         # reflect needs pads below the map size
            L += [{"name": f"{p}o", "op": "maxpool", "kernel": 3, "stride": 1, "padding": [1, 1, 0, 2],
                   "pad_mode": "reflect", "inputs": cur}]           # keeps H x W
        else:
            continue
        cur = f"{p}o"
    if draw(st.booleans()):
        L += [{"name": "gap", "op": "global_avgpool", "inputs": cur},
              {"name": "fc", "op": "dense", "out_features": 5, "bias": True,
               "weight_quant": {"type": "int", "bits": 8}}]
    else:
        L += [conv("head", 5, k=1, pad=0, inputs=cur), {"name": "gap", "op": "global_avgpool"}]
    return ({"name": "rand", "input": {"shape": [3, H0, H0], "bits": 8, "scale": 1 / 255}, "layers": L},
            draw(st.integers(0, 2 ** 16)))


def resnet20_spec(stage_channels=(16, 64, 128, 256), shape=(3, 32, 32), a_bits=2, w_bits=2, classes=10):
    """ResNet-20 with the pytorch DoReFa seed's structure (``models/cifar/resnet_cifar_dorefanet.py``:
    ``ResNet_cifar(Basicneck, [3, 3, 3])``): an unquantized 3x3 first conv with batchnorm and
    activation; three stages of three blocks, each ``conv3x3(stride) -> bn -> act -> conv3x3``
    added to the shortcut (identity, or a quantized 1x1 conv with the stride where the
    channels or the size change), then ``bn -> act`` after the add; middle channels a
    quarter of the stage's; global average pool and a linear classifier. The seed's dynamic
    activation quantizer is replaced by a static DoReFa one (``clip01``, ``a_bits``)."""
    q = {"type": "dorefa", "bits": a_bits}
    wq = {"type": "dorefa", "bits": w_bits}
    L = [conv("stem", stage_channels[0], weight_quant=None), bn("stem_bn"), qact("stem_a", q=q)]
    del L[0]["weight_quant"]
    cur, cin, n = "stem_a", stage_channels[0], 0
    for s, cout in enumerate(stage_channels[1:]):
        for b in range(3):
            n += 1
            p = f"b{n}"
            stride = 2 if (s > 0 and b == 0) else 1
            mid = cout // 4
            L += [conv(f"{p}c1", mid, stride=stride, inputs=cur, weight_quant=dict(wq)), bn(f"{p}n1"),
                  qact(f"{p}a1", q=q), conv(f"{p}c2", cout, weight_quant=dict(wq))]
            short = cur
            if stride != 1 or cin != cout:
                L += [conv(f"{p}sc", cout, k=1, pad=0, stride=stride, inputs=cur, weight_quant=dict(wq))]
                short = f"{p}sc"
            L += [{"name": f"{p}add", "op": "add", "inputs": [f"{p}c2", short]}, bn(f"{p}n2"), qact(f"{p}o", q=q)]
            cur, cin = f"{p}o", cout
    L += [{"name": "gap", "op": "global_avgpool", "inputs": cur},
          {"name": "fc", "op": "dense", "out_features": classes, "bias": True}]
    return {"name": "resnet20", "input": {"shape": list(shape), "bits": 8, "scale": 1 / 255}, "layers": L}
