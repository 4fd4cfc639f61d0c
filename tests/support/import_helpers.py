"""Inverse mappings for the importer tests (tests/gen/test_import.py).

A loaded spec (:class:`gen.spec.Network`) is written back into each import format:

* :func:`to_tensorpack` — tensorpack's ``.npz`` layout: ``<layer>/W:0`` HWIO conv weights,
  ``[in, out]`` dense weights whose rows follow the NHWC (or NCHW) flatten order of the
  feature map before them, ``<bn>/mean/EMA:0``, ``<bn>/variance/EMA:0``, gamma/beta, biases,
  TTQ ``Wp``/``Wn`` (float32, as tensorpack stores them);
* :func:`to_state_dict` — PyTorch tensors under conventional names (``conv0.weight``,
  ``bn1.running_mean``...) or bitplane QNet's (``params_.conv0__W``, ``bns.bn1.*``,
  ``basis__*``);
* :func:`to_qonnx` — a small QONNX writer (onnx.helper): input Quant, Quant/BipolarQuant
  weight quantizers, Conv/Gemm/BatchNormalization/MaxPool/Flatten, Relu/Clip + Quant or
  BipolarQuant activations, or — with ``multithreshold=True`` — FINN-style MultiThreshold
  nodes that absorb a batchnorm and its uint/sign activation.

These writers are independent of ``gen.importers`` (they encode each format's convention
directly) so a round trip checks the importer against them.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

QONNX_DOMAIN = "qonnx.custom_op.general"


def float32_source(spec: dict, out_dir, seed: int):
    """A calibrated random network (non-negative batch-norm gammas) whose parameters are exact in
    float32, written under ``out_dir`` and loaded: a lossless source for float32 formats."""
    from bitplane.randnet import write_random_network
    from bitplane.gen.spec import load_network
    path = write_random_network(spec, out_dir, seed=seed, neg_gamma=0.0, weight_dtype=np.float32)
    float32_exact(path)
    return load_network(path)


def float32_exact(yaml_path) -> None:
    """Round every parameter of a spec's NPZ to float32 (kept float64) in place, so writing
    it in a float32 format and importing it back is lossless."""
    from bitplane.gen.spec import load_network
    net = load_network(yaml_path)
    npz = Path(yaml_path).parent / f"{Path(yaml_path).stem}.npz"
    arrays = {}
    for L in net.layers:
        for k, v in L.params.items():
            arrays[f"{L.name}/{k}"] = np.asarray(v, dtype=np.float32).astype(np.float64)
    np.savez(npz, **arrays)


# ------------------------------------------------------------------------------- tensorpack

def to_tensorpack(net, layout: str = "nhwc", gamma_beta: bool = True) -> dict:
    out = {}
    for L in net.layers:
        n, p = L.name, L.params
        if L.op == "conv":
            out[f"{n}/W:0"] = p["W"].transpose(2, 3, 1, 0)                  # OIHW -> HWIO
        elif L.op == "dense":
            W = p["W"]
            if layout == "nhwc" and len(L.in_shape) == 3:
                C, H, Wd = L.in_shape
                W = W.reshape(W.shape[0], C, H, Wd).transpose(0, 2, 3, 1).reshape(W.shape[0], -1)
            out[f"{n}/W:0"] = W.T                                            # [out, in] -> [in, out]
        elif L.op == "batchnorm":
            out[f"{n}/mean/EMA:0"] = p["mean"]
            out[f"{n}/variance/EMA:0"] = p["var"]
            if gamma_beta:
                out[f"{n}/gamma:0"] = p["gamma"]
                out[f"{n}/beta:0"] = p["beta"]
        for k in ("b", "Wp", "Wn"):
            if k in p and L.op in ("conv", "dense"):
                out[f"{n}/{k}:0"] = np.asarray(p[k])
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in out.items()}


# ------------------------------------------------------------------------------- state dicts

def to_state_dict(net, style: str = "conventional") -> dict:
    import torch
    out = {}
    for L in net.layers:
        n, p = L.name, L.params
        if L.op == "batchnorm":
            names = {"gamma": "weight", "beta": "bias", "mean": "running_mean", "var": "running_var"}
            pre = f"bns.{n.replace('.', '_')}." if style == "qnet" else f"{n}."
            for k, v in names.items():
                out[pre + v] = p[k]
            out[pre + "num_batches_tracked"] = np.array(7)
            continue
        for k, v in p.items():
            if style == "qnet":
                out[f"basis__{n}" if k == "basis" else f"params_.{n}__{k}"] = v
            else:
                out[f"{n}." + {"W": "weight", "b": "bias"}.get(k, k)] = v
    return {k: torch.tensor(np.asarray(v)) for k, v in out.items()}


# ------------------------------------------------------------------------------- QONNX

class _Writer:
    def __init__(self, dtype):
        from onnx import helper, numpy_helper
        self.h, self.nh, self.dtype = helper, numpy_helper, dtype
        self.nodes, self.inits, self.n = [], [], 0

    def const(self, name, value, dtype=None):
        self.inits.append(self.nh.from_array(np.asarray(value, dtype=dtype or self.dtype), name))
        return name

    def node(self, op, inputs, domain="", **attrs):
        self.n += 1
        out = f"t{self.n}_{op}"
        self.nodes.append(self.h.make_node(op, inputs, [out], name=f"{op}_{self.n}", domain=domain, **attrs))
        return out

    def quant(self, x, scale, bits, signed, narrow, tag):
        return self.node("Quant", [x, self.const(f"{tag}_scale", scale), self.const(f"{tag}_zp", 0.0),
                                   self.const(f"{tag}_bits", float(bits))], QONNX_DOMAIN,
                         signed=int(signed), narrow=int(narrow), rounding_mode="ROUND")


def to_qonnx(net, multithreshold: bool = False, dtype=np.float32):
    """A QONNX ModelProto computing ``net``'s float path (the subset bitplane imports)."""
    from onnx import TensorProto, helper
    w = _Writer(dtype)
    C, H, W = net.input_shape
    x = w.quant("input", net.input_scale, net.input_bits, False, False, "input_q")
    flat, shape = False, net.input_shape
    layers = list(net.layers)
    i = 0
    while i < len(layers):
        L = layers[i]
        n, p = L.name, L.params
        if L.op in ("conv", "dense"):
            Wt = p["W"]
            wname = w.const(f"{n}.weight", Wt)
            wq = L.get("weight_quant")
            if wq is None:
                wx = wname
            elif wq["type"] == "int":
                M = (1 << (wq["bits"] - 1)) - 1
                s = np.abs(Wt.reshape(Wt.shape[0], -1)).max(axis=1) / M
                wx = w.quant(wname, s.reshape((-1,) + (1,) * (Wt.ndim - 1)), wq["bits"], True, True, f"{n}_wq")
            elif wq["type"] == "sign":
                wx = w.node("BipolarQuant", [wname, w.const(f"{n}_wq_scale", 1.0)], QONNX_DOMAIN)
            elif wq["type"] == "dorefa" and wq["bits"] == 1:
                wx = w.node("BipolarQuant", [wname, w.const(f"{n}_wq_scale", np.abs(Wt).mean())], QONNX_DOMAIN)
            else:
                raise ValueError(f"{wq} weights have no QONNX form here")
            ins = [x, wx] + ([w.const(f"{n}.bias", p["b"])] if "b" in p else [])
            if L.op == "conv":
                t, b, l, r = L.pads
                k, s = L["kernel"], L["stride"]
                x = w.node("Conv", ins, kernel_shape=[k, k], strides=[s, s], pads=[t, l, b, r],
                           group=L["groups"], dilations=[1, 1])
            else:
                if len(shape) == 3 and not flat:
                    ins[0] = x = w.node("Flatten", [x], axis=1)
                x = w.node("Gemm", ins, transB=1, alpha=1.0, beta=1.0)
            shape = L.out_shape
        elif L.op == "batchnorm":
            nxt = layers[i + 1] if i + 1 < len(layers) else None
            if multithreshold and nxt is not None and nxt.op == "quant_act":
                x = _multithreshold(w, x, L, nxt)
                i += 2
                continue
            x = w.node("BatchNormalization", [x] + [w.const(f"{n}.{k}", p[k]) for k in ("gamma", "beta", "mean",
                                                                                            "var")],
                       epsilon=float(L["eps"]))
        elif L.op == "quant_act":
            q, nl = L["quant"], L["nonlin"]
            if q["type"] == "sign":
                x = w.node("BipolarQuant", [x, w.const(f"{n}_scale", 1.0)], QONNX_DOMAIN)
            else:
                if nl == "relu":
                    x = w.node("Relu", [x])
                elif nl == "clip01":
                    x = w.node("Clip", [x, w.const(f"{n}_lo", 0.0), w.const(f"{n}_hi", 1.0)])
                elif nl != "none":
                    raise ValueError(f"nonlin {nl} has no QONNX form here")
                scale = q["scale"] if q["type"] == "uint" else 1.0 / ((1 << q["bits"]) - 1)
                if q["type"] not in ("uint", "dorefa"):
                    raise ValueError(f"{q} activations have no QONNX form here")
                x = w.quant(x, scale, q["bits"], False, False, f"{n}_q")
        elif L.op == "maxpool":
            t, b, l, r = L.pads
            k, s = L["kernel"], L["stride"]
            x = w.node("MaxPool", [x], kernel_shape=[k, k], strides=[s, s], pads=[t, l, b, r])
            shape = L.out_shape
        i += 1
    out_shape = ["N"] + list(net.output_shape)
    graph = helper.make_graph(
        w.nodes, net.name, [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", C, H, W])],
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, out_shape)], initializer=w.inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid(QONNX_DOMAIN, 1)],
                             producer_name="bitplane-tests")


def _multithreshold(w, x, bn, act):
    """BatchNorm (gamma > 0) + uint/sign activation as one MultiThreshold node (FINN streamlining)."""
    p, q = bn.params, act["quant"]
    sd = np.sqrt(p["var"] + bn["eps"])
    g, b, m = p["gamma"], p["beta"], p["mean"]
    if np.any(g <= 0):
        raise ValueError("MultiThreshold form needs positive batchnorm scales")
    if q["type"] == "sign":
        T = (m - b * sd / g)[:, None]
        attrs = {"out_scale": 2.0, "out_bias": -1.0, "out_dtype": "BIPOLAR"}
    elif q["type"] == "uint" and act["nonlin"] in ("relu", "none"):
        s, L = q["scale"], (1 << q["bits"]) - 1
        j = np.arange(1, L + 1)
        T = m[:, None] + (s * (j[None, :] - 0.5) - b[:, None]) * (sd / g)[:, None]
        attrs = {"out_scale": float(s), "out_bias": 0.0, "out_dtype": f"UINT{q['bits']}"}
    else:
        raise ValueError(f"{q} has no MultiThreshold form here")
    return w.node("MultiThreshold", [x, w.const(f"{bn.name}_thresholds", T)], QONNX_DOMAIN, **attrs)
