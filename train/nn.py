"""A trainable PyTorch model interpreted from a network spec, and its export.

:class:`QNet` reads the same layer list as the golden model (docs/design.md section 3): conv and
dense layers with their ``weight_quant``, batch norms, ``quant_act`` layers and max-pools,
sequentially, and graph specs (named ``inputs``, ``add``, ``concat``, ``avgpool``,
``global_avgpool``, ``reflect`` padding). Its eval-mode forward on ``code * input.scale`` is the golden model's float
path; :func:`export` writes the YAML + NPZ that ``bitplane golden --mode float`` reproduces
(the tests check 1e-4 relative, in float64). Layers without ``weight_quant`` are trained in
float (the seeds' first and last layers) and become int8 in hardware.

DoReFa's gradient quantization (``grad_bits``) is applied, as in the seed, to the gradient
of every conv/dense output.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import yaml

from bitplane.gen.spec import window_geometry

from bitplane.train import quant as tq


def _key(key: str) -> str:
    """``layer/param`` as a torch parameter name: ``/`` -> ``__``, ``.`` -> ``:`` (torch forbids dots;
    spec names never contain ``:``, so the export reverses it)."""
    return key.replace("/", "__").replace(".", ":")


def _attr(kind: str, layer: str) -> str:
    """Buffer name of a layer's ``basis`` or ``range``."""
    return f"{kind}__{layer.replace('.', ':')}"


class QNet(torch.nn.Module):
    """A spec (mapping, as loaded from YAML) as a trainable module."""

    def __init__(self, spec: dict, grad_bits: int | None = None, lq_momentum: float = 0.9, seed: int = 0,
                 range_momentum: float = 0.9):
        super().__init__()
        self.spec = spec
        self.range_momentum = range_momentum
        self.calibration = None         # {layer: [batch ranges]} while calibrate_ranges runs
        self.grad_bits = grad_bits
        self.lq_momentum = lq_momentum
        gen = torch.Generator().manual_seed(seed)
        self.layers = []
        self.params_ = torch.nn.ParameterDict()
        self.bns = torch.nn.ModuleDict()
        shape = tuple(spec["input"]["shape"])
        shapes, prev = {"input": shape}, "input"          # graph specs: outputs by name
        for L in spec["layers"]:
            n, op = L["name"], L["op"]
            ins = L.get("inputs", prev)
            ins = [ins] if isinstance(ins, str) else list(ins)
            shape = shapes[ins[0]]
            if L.get("pad_mode", "constant") == "symmetric":
                raise ValueError(f"layer '{n}': pad_mode 'symmetric' cannot be trained (PyTorch pads "
                                 f"'constant' or 'reflect')")
            info = {"layer": L, "in_shape": shape, "inputs": ins}
            if op == "conv":
                C, H, W = shape
                k, s, O, g = L["kernel"], L.get("stride", 1), L["out_channels"], L.get("groups", 1)
                fan = C // g * k * k
                self._param(f"{n}/W", torch.randn(O, C // g, k, k, generator=gen) * math.sqrt(2.0 / fan))
                if L.get("bias", False):
                    self._param(f"{n}/b", torch.zeros(O))
                oh, ow, (t, b, l, r) = window_geometry(H, W, k, s, L.get("padding", "valid"))
                info["pads"] = (l, r, t, b)
                shape = (O, oh, ow)
                self._quant_params(n, L.get("weight_quant"), O)
            elif op == "dense":
                fan = int(np.prod(shape))
                O = L["out_features"]
                self._param(f"{n}/W", torch.randn(O, fan, generator=gen) * math.sqrt(2.0 / fan))
                if L.get("bias", False):
                    self._param(f"{n}/b", torch.zeros(O))
                shape = (O,)
                self._quant_params(n, L.get("weight_quant"), O)
            elif op == "batchnorm":
                C = shape[0]
                bn = (torch.nn.BatchNorm2d if len(shape) == 3 else torch.nn.BatchNorm1d)(C, eps=float(L["eps"]))
                self.bns[n.replace(".", "_")] = bn
            elif op == "quant_act":
                q = L["quant"]
                if q["type"] == "lq":
                    self.register_buffer(_attr("basis", n), tq.lq_init(int(q["bits"]), 1.0 / (1 << int(q["bits"]))))
                elif q["type"] == "tanh":
                    self.register_buffer(_attr("range", n), torch.tensor(float(q.get("range", 1.0))))
                elif q["type"] == "uint":
                    self.register_buffer(_attr("scale", n), torch.tensor(float(q["scale"])))
            elif op == "act":
                pass
            elif op == "maxpool":
                C, H, W = shape
                k = L["kernel"]
                s = L.get("stride", k)
                oh, ow, (t, b, l, r) = window_geometry(H, W, k, s, L.get("padding", "valid"))
                info["pads"] = (l, r, t, b)
                shape = (C, oh, ow)
            elif op == "avgpool":
                C, H, W = shape
                k = L["kernel"]
                oh, ow, (t, b, l, r) = window_geometry(H, W, k, L.get("stride", k), L.get("padding", "valid"))
                info["pads"] = (l, r, t, b)
                shape = (C, oh, ow)
            elif op == "global_avgpool":
                shape = (shape[0], 1, 1)
            elif op == "concat":
                shape = (sum(shapes[v][0] for v in ins),) + tuple(shape[1:])
            elif op == "add":
                pass
            else:
                raise ValueError(f"layer '{n}': op {op!r} cannot be trained")
            info["out_shape"] = shape
            self.layers.append(info)
            shapes[n], prev = shape, n

    # ------------------------------------------------------------------ parameters
    def _param(self, key: str, value):
        self.params_[_key(key)] = torch.nn.Parameter(value)

    def p(self, key: str):
        return self.params_[_key(key)]

    def has(self, key: str) -> bool:
        return _key(key) in self.params_

    def _quant_params(self, n, wq, O):
        if wq is None:
            return
        if wq["type"] == "ttq":
            W = self.p(f"{n}/W").detach()
            th = 0.05 * W.abs().max()
            init = W.abs()[W.abs() > th].mean()
            self._param(f"{n}/Wp", init.clone())
            self._param(f"{n}/Wn", init.clone())
        elif wq["type"] == "lq":
            W = self.p(f"{n}/W").detach()
            self.register_buffer(_attr("basis", n), tq.lq_init(int(wq["bits"]), float(W.abs().mean()) / 2, channels=O))

    # ------------------------------------------------------------------ forward
    def weights(self, L):
        n, wq = L["name"], L.get("weight_quant")
        W = self.p(f"{n}/W")
        if wq is None:
            return W
        t, k = wq["type"], int(wq.get("bits", 1))
        if t == "dorefa":
            return tq.dorefa_weights(W, k)
        if t == "sign":
            return tq.sign_ste(W)
        if t == "ttq":
            return tq.ttq_weights(W, self.p(f"{n}/Wp"), self.p(f"{n}/Wn"))
        if t == "int":
            return tq.int_weights(W, k)
        if t == "lq":
            v = getattr(self, _attr("basis", n))
            w, codes = tq.lq_weights(W, v)
            if self.training:
                setattr(self, _attr("basis", n), tq.lq_qem_update(v, W.detach().reshape(W.shape[0], -1),
                                                              codes.reshape(W.shape[0], -1), True,
                                                              self.lq_momentum))
            return w
        raise ValueError(f"layer '{n}': weight quantizer {t!r} cannot be trained")

    def forward(self, x):
        vals = {"input": x}
        for info in self.layers:
            L = info["layer"]
            n, op = L["name"], L["op"]
            x = vals[info["inputs"][0]]
            mirror = L.get("pad_mode", "constant") == "reflect"
            if op == "conv":
                pv = L.get("pad_value") or 0.0
                if isinstance(pv, list) and not mirror:      # one value per channel: pad x - v with 0
                    v = torch.tensor(pv, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
                    x = F.pad(x - v, info["pads"]) + v
                else:
                    x = (F.pad(x, info["pads"], mode="reflect") if mirror else
                         F.pad(x, info["pads"], value=float(pv)))
                x = F.conv2d(x, self.weights(L), self.p(f"{n}/b") if self.has(f"{n}/b") else None,
                             stride=L.get("stride", 1), groups=L.get("groups", 1))
                x = tq.quantize_grad(x, self.grad_bits)
            elif op == "dense":
                x = F.linear(x.reshape(x.shape[0], -1), self.weights(L),
                             self.p(f"{n}/b") if self.has(f"{n}/b") else None)
                x = tq.quantize_grad(x, self.grad_bits)
            elif op == "batchnorm":
                x = self.bns[n.replace(".", "_")](x)
            elif op == "quant_act":
                q = L["quant"]
                x = tq.nonlin(L["nonlin"], x)
                if q["type"] == "dorefa":
                    x = tq.dorefa_acts(x, int(q["bits"]))
                elif q["type"] == "sign":
                    x = tq.sign_ste(x)
                elif q["type"] == "tanh":
                    r = getattr(self, _attr("range", n))
                    if self.training or self.calibration is not None:       # the seed's dynamic range
                        br = tq.batch_tanh_range(x).to(r.dtype)
                        br = torch.where(br > 0, br, torch.ones_like(br))
                        if self.training:
                            setattr(self, _attr("range", n), tq.tanh_range_update(r, br, self.range_momentum))
                        else:
                            self.calibration.setdefault(n, []).append(float(br))
                        r = br
                    x = tq.tanh_acts(x, int(q["bits"]), r.to(x.dtype))
                elif q["type"] == "uint":          # a static range too: batch max in training, EMA frozen
                    sc = getattr(self, _attr("scale", n))
                    k = int(q["bits"])
                    if self.training or self.calibration is not None:
                        bs = (x.detach().max() / ((1 << k) - 1)).to(sc.dtype)
                        bs = torch.where(bs > 0, bs, sc)
                        if self.training:
                            setattr(self, _attr("scale", n), tq.tanh_range_update(sc, bs, self.range_momentum))
                        else:
                            self.calibration.setdefault(n, []).append(float(bs))
                        sc = bs
                    x = tq.uint_acts(x, k, sc.to(x.dtype))
                elif q["type"] == "lq":
                    v = getattr(self, _attr("basis", n))
                    y, codes = tq.lq_acts(x, v)
                    if self.training:
                        setattr(self, _attr("basis", n), tq.lq_qem_update(v, x.detach(), codes, False, self.lq_momentum))
                    x = y
                else:
                    raise ValueError(f"layer '{n}': activation quantizer {q['type']!r} cannot be trained")
            elif op == "act":
                x = tq.nonlin(L["nonlin"], x)
            elif op == "maxpool":
                x = F.pad(x, info["pads"], mode="reflect") if mirror else F.pad(x, info["pads"], value=-math.inf)
                k = L["kernel"]
                x = F.max_pool2d(x, k, L.get("stride", k))
            elif op == "avgpool":       # include_pad: K*K; valid: inside positions (TF)
                k = L["kernel"]
                s = L.get("stride", k)
                if mirror:
                    x = F.avg_pool2d(F.pad(x, info["pads"], mode="reflect"), k, s)
                else:
                    x = F.avg_pool2d(F.pad(x, info["pads"]), k, s)
                    if L.get("divisor", "include_pad") == "valid":
                        ones = F.pad(x.new_ones((1, 1) + tuple(info["in_shape"][1:])), info["pads"])
                        x = x / F.avg_pool2d(ones, k, s)
            elif op == "global_avgpool":
                x = x.mean(dim=(2, 3), keepdim=True)
            elif op == "add":
                x = sum((vals[v] for v in info["inputs"][1:]), x)
            elif op == "concat":
                x = torch.cat([vals[v] for v in info["inputs"]], dim=1)
            vals[n] = x
        return x


def recalibrate_batchnorms(model: QNet, batches) -> None:
    """Re-estimate every batchnorm's running mean and variance for the final weights.

    The quantized activations (and their frozen ranges) behave as in eval mode; each batchnorm
    normalises by its batch's statistics and accumulates their plain average (momentum None).
    The running statistics gathered during training lag the weights; with the seed's tanh
    quantizer, whose levels sit above 1/2 (a large constant part in every conv output), that lag
    moves eval-mode outputs across the quantizer's steps."""
    model.eval()
    saved = {}
    for name, bn in model.bns.items():
        saved[name] = bn.momentum
        bn.reset_running_stats()
        bn.momentum = None
        bn.train()
    try:
        with torch.no_grad():
            for xb in batches:
                model(xb)
    finally:
        for name, bn in model.bns.items():
            bn.momentum = saved[name]
            bn.eval()


def calibrate_ranges(model: QNet, batches) -> dict:
    """Freeze every ``tanh`` activation's range (and ``uint`` activation's scale) at the mean of the
    seed's per-batch maxima (over 2^k - 1 for a scale).

    ``batches``: float input tensors. The model runs in eval mode (batchnorms use their
    running statistics) with the seed's dynamic normaliser (each batch's ``max|tanh(x)|``,
    computed after the upstream layers' dynamic ranges, as the seed's eval forward does);
    returns ``{layer: range or scale}``. One batch gives exactly the seed's eval forward on that batch."""
    model.eval()
    model.calibration = {}
    try:
        with torch.no_grad():
            for xb in batches:
                model(xb)
        seen = model.calibration
    finally:
        model.calibration = None
    out = {}
    for n, vals in seen.items():
        kind = "range" if hasattr(model, _attr("range", n)) else "scale"
        buf = getattr(model, _attr(kind, n))
        r = float(np.mean(vals))
        setattr(model, _attr(kind, n), torch.tensor(r, dtype=buf.dtype))
        out[n] = r
    return out


def export(model: QNet, out_yaml, comment: str | None = None) -> Path:
    """Write ``out_yaml`` and its ``.npz`` (latent float64 parameters; spec key names)."""
    out_yaml = Path(out_yaml)
    spec = {k: v for k, v in model.spec.items() if not k.startswith("_") and k != "weights"}
    layers = []
    for L in spec["layers"]:            # the frozen ranges of tanh activations go into the spec
        if L["op"] == "quant_act" and L["quant"]["type"] == "tanh":
            L = {**L, "quant": {**L["quant"], "range": float(getattr(model, _attr("range", L["name"])))}}
        elif L["op"] == "quant_act" and L["quant"]["type"] == "uint":
            L = {**L, "quant": {**L["quant"], "scale": float(getattr(model, _attr("scale", L["name"])))}}
        layers.append(L)
    spec["layers"] = layers
    spec["weights"] = out_yaml.with_suffix(".npz").name
    arrays = {}
    for key, p in model.params_.items():
        arrays[key.replace("__", "/").replace(":", ".")] = p.detach().double().cpu().numpy()
    for L in model.spec["layers"]:
        n = L["name"]
        if L["op"] == "batchnorm":
            bn = model.bns[n.replace(".", "_")]
            arrays[f"{n}/gamma"] = bn.weight.detach().double().numpy()
            arrays[f"{n}/beta"] = bn.bias.detach().double().numpy()
            arrays[f"{n}/mean"] = bn.running_mean.detach().double().numpy()
            arrays[f"{n}/var"] = bn.running_var.detach().double().numpy()
        if hasattr(model, _attr("basis", n)):
            arrays[f"{n}/basis"] = getattr(model, _attr("basis", n)).detach().double().numpy()
    for k in [k for k in arrays if k.endswith("/Wp") or k.endswith("/Wn")]:
        arrays[k] = np.asarray(arrays[k]).reshape(())
    out_yaml.parent.mkdir(parents=True, exist_ok=True)
    tmp_y, tmp_n = out_yaml.with_suffix(".yaml.tmp"), out_yaml.with_suffix(".npz.tmp")
    text = yaml.safe_dump(spec, sort_keys=False, default_flow_style=None, width=110)
    tmp_y.write_text((f"# {comment}\n" if comment else "") + text)
    with open(tmp_n, "wb") as f:
        np.savez(f, **arrays)
    tmp_n.replace(out_yaml.with_suffix(".npz"))
    tmp_y.replace(out_yaml)
    return out_yaml
