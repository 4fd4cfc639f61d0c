"""Random quantized networks for tests: hypothesis strategies + a spec writer.

``network_plans()`` draws a layer list (conv with stride 1/2, same/valid/explicit padding
and groups; dense; batchnorm with negative gammas; maxpool before and after the
activation; every quantizer type). ``write_network(plan, dir, seed)`` writes the YAML +
NPZ with random weights and batch-norm statistics calibrated on random inputs so that
every activation level is actually used.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml
from hypothesis import strategies as st

from gen.golden import Golden
from gen.spec import load_network, window_geometry

WEIGHT_QUANTS = [
    {"type": "dorefa", "bits": 1}, {"type": "dorefa", "bits": 2}, {"type": "dorefa", "bits": 3},
    {"type": "sign"}, {"type": "ttq"}, {"type": "lq", "bits": 1}, {"type": "lq", "bits": 2},
    {"type": "lq", "bits": 3}, {"type": "int", "bits": 2}, {"type": "int", "bits": 4}, {"type": "int", "bits": 8},
]
ACT_QUANTS = [
    ("clip01", {"type": "dorefa", "bits": 1}), ("clip01", {"type": "dorefa", "bits": 2}),
    ("clip01", {"type": "dorefa", "bits": 4}), ("cabs", {"type": "dorefa", "bits": 2}),
    ("none", {"type": "sign"}), ("relu", {"type": "lq", "bits": 2}), ("relu", {"type": "lq", "bits": 3}),
    ("relu", {"type": "uint", "bits": 3, "scale": 0.125}),
]


@st.composite
def network_plans(draw, max_convs: int = 3, weight_quants=None, act_quants=None):
    wqs = weight_quants or WEIGHT_QUANTS
    aqs = act_quants or ACT_QUANTS
    C, H, W = draw(st.integers(1, 3)), draw(st.integers(4, 9)), draw(st.integers(4, 9))
    plan = {"name": "rand", "input": {"shape": [C, H, W], "bits": 8, "scale": 1 / 255}, "layers": []}
    L = plan["layers"]
    prev_sign = False
    n = 0
    for i in range(draw(st.integers(0, max_convs))):
        k = draw(st.sampled_from([1, 3, 5]))
        s = draw(st.sampled_from([1, 2]))
        pad = draw(st.sampled_from(["same", "valid", 1]))
        oh, ow, _ = window_geometry(H, W, k, s, pad)
        if oh < 1 or ow < 1:
            pad = "same"
            oh, ow, _ = window_geometry(H, W, k, s, pad)
        g = draw(st.sampled_from([g for g in (1, 2) if C % g == 0]))
        O = g * draw(st.integers(1, 3))
        conv = {"name": f"conv{i}", "op": "conv", "out_channels": O, "kernel": k, "stride": s,
                "padding": pad, "groups": g, "bias": draw(st.booleans()),
                "weight_quant": dict(draw(st.sampled_from(wqs)))}
        if prev_sign and any(window_geometry(H, W, k, s, pad)[2]):
            conv["pad_value"] = draw(st.sampled_from([-1, 1]))
        L.append(conv)
        C, H, W = O, oh, ow
        nonlin, q = draw(st.sampled_from(aqs))
        pool_pos = draw(st.sampled_from(["none", "none", "pre_bn", "post_bn", "post_act"])) \
            if min(H, W) >= 2 else "none"
        pool = {"name": f"pool{i}", "op": "maxpool", "kernel": 2, "stride": 2,
                "padding": draw(st.sampled_from(["valid", "same"]))}
        if pool_pos == "pre_bn":
            L.append(pool)
        if draw(st.integers(0, 9)) > 0:
            L.append({"name": f"bn{i}", "op": "batchnorm", "eps": 1e-4})
        if pool_pos == "post_bn":
            L.append(pool)
        L.append({"name": f"act{i}", "op": "quant_act", "nonlin": nonlin, "quant": dict(q)})
        if pool_pos == "post_act":
            L.append(pool)
        if pool_pos != "none":
            H, W = window_geometry(H, W, 2, 2, pool["padding"])[:2]
        prev_sign = q["type"] == "sign"
        n += 1
    for i in range(draw(st.integers(0, 1))):
        L.append({"name": f"fc{i}", "op": "dense", "out_features": draw(st.integers(2, 8)),
                  "bias": draw(st.booleans()), "weight_quant": dict(draw(st.sampled_from(wqs)))})
        L.append({"name": f"fcbn{i}", "op": "batchnorm", "eps": 1e-4})
        nonlin, q = draw(st.sampled_from(aqs))
        L.append({"name": f"fcact{i}", "op": "quant_act", "nonlin": nonlin, "quant": dict(q)})
    L.append({"name": "out", "op": "dense", "out_features": draw(st.integers(2, 10)), "bias": True,
              "weight_quant": dict(draw(st.sampled_from(wqs + [{"type": "int", "bits": 8}])))})
    if draw(st.booleans()):
        L.append({"name": "outbn", "op": "batchnorm", "eps": 1e-4})
    return plan


def _target(next_act):
    """(beta, |gamma|) putting a batchnorm's output across the next activation's levels."""
    if next_act is None:
        return 0.0, 1.0
    nonlin, q, basis = next_act
    t = q["type"]
    if t == "sign":
        return 0.0, 1.0
    if nonlin == "cabs":
        return 0.0, 0.6
    if t == "lq":
        top = float(np.sum(basis))
        return top / 2, top / 2.5
    if t == "uint":
        top = ((1 << q["bits"]) - 1) * q["scale"]
        return top / 2, top / 2.5
    return 0.5, 0.35


def write_network(plan: dict, out_dir, seed: int = 0, n_calib: int = 64) -> Path:
    """Write ``<out_dir>/<name>.yaml`` + ``.npz`` for a plan; return the YAML path."""
    rng = np.random.default_rng(seed)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    name = plan["name"]
    spec = dict(plan, weights=f"{name}.npz")
    yaml_path, npz_path = out_dir / f"{name}.yaml", out_dir / f"{name}.npz"
    yaml_path.write_text(yaml.safe_dump(spec, sort_keys=False))
    p = {}
    shape = tuple(plan["input"]["shape"])
    acts = {}
    bns = []
    layers = plan["layers"]
    for idx, l in enumerate(layers):
        op = l["op"]
        if op == "conv":
            C, H, W = shape
            g, k, O = l["groups"], l["kernel"], l["out_channels"]
            fan = C // g * k * k
            p[f"{l['name']}/W"] = rng.normal(0, 1 / np.sqrt(fan), (O, C // g, k, k))
            oh, ow, _ = window_geometry(H, W, k, l["stride"], l["padding"])
            shape = (O, oh, ow)
        elif op == "dense":
            fan = int(np.prod(shape))
            O = l["out_features"]
            p[f"{l['name']}/W"] = rng.normal(0, 1 / np.sqrt(fan), (O, fan))
            shape = (O,)
        elif op == "maxpool":
            C, H, W = shape
            shape = (C,) + window_geometry(H, W, l["kernel"], l["stride"], l["padding"])[:2]
        elif op == "batchnorm":
            C = shape[0]
            p.update({f"{l['name']}/gamma": np.ones(C), f"{l['name']}/beta": np.zeros(C),
                      f"{l['name']}/mean": np.zeros(C), f"{l['name']}/var": np.ones(C)})
            nxt = next((m for m in layers[idx + 1:] if m["op"] == "quant_act"), None)
            if nxt is not None and any(m["op"] in ("conv", "dense") for m in
                                       layers[idx + 1:layers.index(nxt)]):
                nxt = None
            bns.append((l["name"], nxt))
        elif op == "quant_act":
            q = l["quant"]
            if q["type"] == "lq":
                b = q["bits"]
                basis = (2.0 ** np.arange(b)) * rng.uniform(0.15, 0.3, b)
                p[f"{l['name']}/basis"] = basis
                acts[l["name"]] = basis
        if op in ("conv", "dense"):
            wq = l.get("weight_quant") or {}
            std = float(np.std(p[f"{l['name']}/W"]))
            O = p[f"{l['name']}/W"].shape[0]
            if l.get("bias"):
                p[f"{l['name']}/b"] = rng.normal(0, 0.1, O)
            if wq.get("type") == "ttq":
                p[f"{l['name']}/Wp"] = np.array(std * rng.uniform(0.5, 1.5))
                p[f"{l['name']}/Wn"] = np.array(std * rng.uniform(0.5, 1.5))
            elif wq.get("type") == "lq":
                b = wq["bits"]
                p[f"{l['name']}/basis"] = (2.0 ** np.arange(b))[:, None] * std * rng.uniform(0.3, 0.6, (b, O))
    np.savez(npz_path, **p)
    c0 = plan["input"]["shape"]
    x = rng.integers(0, 1 << plan["input"]["bits"], (n_calib, *c0)).astype(np.uint8)
    for bn_name, nxt in bns:
        net = load_network(yaml_path)
        layer = net.layer(bn_name)
        prev = net.layers[layer.index - 1]
        _, trace = Golden(net).run_float(x, trace=True)
        y = trace[prev.name]
        axes = (0, 2, 3) if y.ndim == 4 else (0,)
        C = y.shape[1]
        beta, gam = _target(None if nxt is None else
                            (nxt["nonlin"], nxt["quant"], acts.get(nxt["name"])))
        p[f"{bn_name}/mean"] = y.mean(axes)
        p[f"{bn_name}/var"] = y.var(axes) + 1e-3
        p[f"{bn_name}/gamma"] = np.where(rng.random(C) < 0.3, -1.0, 1.0) * gam * rng.uniform(0.8, 1.2, C)
        p[f"{bn_name}/beta"] = beta + rng.normal(0, 0.05, C)
        np.savez(npz_path, **p)
    return yaml_path


def random_inputs(net, n: int, seed: int = 1):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 1 << net.input_bits, (n, *net.input_shape)).astype(np.uint8)
