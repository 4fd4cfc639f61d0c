"""Random-but-fixed parameters for a network spec, with calibrated batch norms.

Used for the shipped reference networks that have no trained weights yet and for the
random networks of the test suite. Weights are He-style normal; TTQ scales and LQ-Nets
bases are drawn around the weights' spread; each batchnorm gets the mean/variance of its
input over calibration images (real ones where available) and a gamma/beta that spread
its output over the levels of the activation that follows, with a fraction of negative
gammas so falling thresholds and min-pooling are exercised.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

from bitplane.gen.golden import Golden
from bitplane.gen.spec import load_network, window_geometry


def _bn_target(act_layer, basis):
    """(beta, |gamma|) that spread a batchnorm's output over the next activation's levels."""
    if act_layer is None:
        return 0.0, 1.0
    q, nonlin = act_layer["quant"], act_layer["nonlin"]
    if q["type"] == "sign":
        return 0.0, 1.0
    if nonlin == "cabs":
        return 0.0, 0.6
    if q["type"] == "lq":
        top = float(np.sum(basis))
        return top / 2, top / 2.5
    if q["type"] == "uint":
        top = ((1 << q["bits"]) - 1) * q["scale"]
        return top / 2, top / 2.5
    if q["type"] == "int":
        top = ((1 << (q["bits"] - 1)) - 1) * q["scale"]
        return 0.0, top / 1.25
    return 0.5, 0.35


def write_random_network(spec: dict, out_dir, seed: int = 0, calib_x=None, n_calib: int = 64,
                         neg_gamma: float = 0.3, weight_dtype=np.float64, fixed_bn: dict | None = None) -> Path:
    """Write ``<out_dir>/<name>.yaml`` and ``.npz`` for ``spec`` (a spec mapping without
    ``weights``); return the YAML path. ``calib_x``: uint8 calibration images
    ``[N, C, H, W]`` (random codes if None). ``weight_dtype``: storage type of the weight
    tensors (float16 keeps shipped examples small; the values stored are the values used).
    ``fixed_bn``: ``{batchnorm layer: {gamma, beta, mean, var}}`` kept as given instead of
    calibrated (e.g. input preprocessing such as FINN's ``2x - 1``); the later batch norms are
    calibrated on what they produce."""
    rng = np.random.default_rng(seed)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    name = spec["name"]
    yaml_path, npz_path = out_dir / f"{name}.yaml", out_dir / f"{name}.npz"
    doc = dict(spec, weights=f"{name}.npz")
    header = spec.get("_comment")
    doc.pop("_comment", None)
    text = yaml.safe_dump(doc, sort_keys=False, default_flow_style=None, width=110)
    yaml_path.write_text((f"# {header}\n" if header else "") + text)

    # 1. placeholder parameters of the right shapes (identity batch norms), via the loader
    p, shape = {}, tuple(spec["input"]["shape"])
    for l in spec["layers"]:
        n, op = l["name"], l["op"]
        if op == "conv":
            C, H, W = shape
            g, k, O = l.get("groups", 1), l["kernel"], l["out_channels"]
            p[f"{n}/W"] = rng.normal(0, 1 / np.sqrt(C // g * k * k), (O, C // g, k, k)).astype(weight_dtype)
            shape = (O,) + window_geometry(H, W, k, l.get("stride", 1), l.get("padding", "valid"))[:2]
        elif op == "dense":
            fan = int(np.prod(shape))
            p[f"{n}/W"] = rng.normal(0, 1 / np.sqrt(fan), (l["out_features"], fan)).astype(weight_dtype)
            shape = (l["out_features"],)
        elif op == "maxpool":
            C, H, W = shape
            k = l["kernel"]
            shape = (C,) + window_geometry(H, W, k, l.get("stride", k), l.get("padding", "valid"))[:2]
        elif op == "batchnorm":
            C = shape[0]
            p.update({f"{n}/gamma": np.ones(C), f"{n}/beta": np.zeros(C), f"{n}/mean": np.zeros(C),
                      f"{n}/var": np.ones(C)})
        elif op == "quant_act" and l["quant"]["type"] == "lq":
            b = l["quant"]["bits"]
            p[f"{n}/basis"] = (2.0 ** np.arange(b)) * rng.uniform(0.15, 0.3, b)
        if op in ("conv", "dense"):
            wq = l.get("weight_quant") or {}
            std = float(np.std(p[f"{n}/W"].astype(np.float64)))
            O = p[f"{n}/W"].shape[0]
            if l.get("bias"):
                p[f"{n}/b"] = rng.normal(0, 0.1, O)
            if wq.get("type") == "ttq":
                p[f"{n}/Wp"] = np.array(std * rng.uniform(0.5, 1.5))
                p[f"{n}/Wn"] = np.array(std * rng.uniform(0.5, 1.5))
            elif wq.get("type") == "lq":
                b = wq["bits"]
                p[f"{n}/basis"] = (2.0 ** np.arange(b))[:, None] * std * rng.uniform(0.3, 0.6, (b, O))
    np.savez(npz_path, **p)

    # 2. one forward pass on the float path, calibrating each batchnorm on its input
    net = load_network(yaml_path)
    g = Golden(net)
    if calib_x is None:
        calib_x = rng.integers(0, 1 << net.input_bits, (n_calib, *net.input_shape)).astype(np.uint8)
    v = g.check_input(calib_x).astype(np.float64) * net.input_scale
    layers = net.layers
    for i, layer in enumerate(layers):
        if layer.op == "batchnorm" and layer.name in (fixed_bn or {}):
            layer.params.update({k: np.asarray(val, np.float64) for k, val in fixed_bn[layer.name].items()})
        elif layer.op == "batchnorm":
            axes = (0, 2, 3) if v.ndim == 4 else (0,)
            C = v.shape[1]
            nxt = next((m for m in layers[i + 1:] if m.op in ("quant_act", "conv", "dense")), None)
            act = nxt if nxt is not None and nxt.op == "quant_act" else None
            beta, gam = _bn_target(act, act.params.get("basis") if act is not None else None)
            sgn = np.where(rng.random(C) < neg_gamma, -1.0, 1.0)
            layer.params.update(mean=v.mean(axes), var=v.var(axes) + 1e-3,
                                gamma=sgn * gam * rng.uniform(0.8, 1.2, C),
                                beta=beta + rng.normal(0, 0.05, C))
        if layer.op == "batchnorm":
            for k in ("gamma", "beta", "mean", "var"):
                p[f"{layer.name}/{k}"] = layer.params[k]
        v = g.float_layer(layer, v)
    np.savez(npz_path, **p)
    return yaml_path
