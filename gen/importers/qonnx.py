"""QONNX graphs as Brevitas 0.13.4 exports them (both exporters) and FINN takes them.

The graph first goes through qonnx's passes (``InferShapes``, ``FoldConstants`` keeping the
quantizers, ``FoldTransposeIntoQuantInit``), so everything that only computes constants is
folded (weight ``Transpose``, ``Reshape`` of constants, ``Pow`` of running statistics). Before
that, every node that does not only compute constants must be in the subset below, else the
import stops naming it. Then the activation path is walked as a chain:

====================  =========================================================
Quant on the input    unsigned, zero point 0, nothing before it -> ``input: {bits, scale}``
Mul/Div/Add/Sub       by a constant (scalar or one value per channel): a run of them is one
                      ``batchnorm`` (gamma = A, beta = B for y = A*x + B; mean 0, var 1,
                      eps 0). Before the input quantizer: input preprocessing (FINN's
                      ``2x - 1``); after a conv/dense: TensorNorm (``Sub/Div/Mul/Add``) or
                      an affine before an activation quantizer. On quantized activations:
                      refused
input quantizer       after preprocessing, or signed, or BipolarQuant -> a ``quant_act``
                      (``int``/``uint``/``sign``); with the preprocessing it is the spec's
                      input stage (``gen.lower``), the input is uint8 codes * 1/255
                      (``--input-scale``)
Quant on weights      -> ``int`` k-bit weights; the dequantized values become ``W``,
                      accepted only if the spec's rule (per output channel
                      ``s = max|W|/(2^(k-1)-1)``) reproduces them, i.e. every channel's
                      largest code is +-(2^(k-1)-1): per-channel max-abs scaling
                      (Brevitas ``Int*WeightPerChannelFloat``). Otherwise rejected.
BipolarQuant weights  scale 1 -> ``sign``; one positive scale s -> DoReFa 1-bit
                      (BWN, ``W = s*sign``, whose mean|W| is s); per-channel: rejected
Quant on activations  zero point 0, per tensor, ROUND. Unsigned, not narrow -> ``uint``
                      (scale, k), after ``Clip(0,1)`` with scale 1/(2^k-1) -> ``dorefa``;
                      signed -> ``int`` (k >= 2, ``narrow`` as exported, scale)
BipolarQuant acts     scale 1 -> ``sign`` (nonlin none)
Relu / Clip(0,1)      the ``nonlin`` of the next activation quantizer (``relu`` /
                      ``clip01``; a MaxPool may sit between, they commute)
MultiThreshold        T = 2^k-1 equally spaced thresholds per channel, out_bias 0
                      -> batchnorm + ``uint`` (scale = out_scale); 1 threshold with
                      out_scale 2, out_bias -1 -> batchnorm + ``sign``. Equal to the
                      node except exactly on a threshold (``>=`` vs round-half-even)
Conv                  square kernel, equal strides, no dilation, groups; pads that
                      are ``valid``, symmetric or TensorFlow ``same``; bias
Gemm / MatMul         constant weights (``transB`` either way), alpha = beta = 1
BatchNormalization    inference mode -> ``batchnorm`` (eps kept)
MaxPool               square, ``valid``/symmetric/``same`` (ceil_mode when it equals one)
Flatten / Reshape     to ``[N, features]`` before a dense layer
Identity, Dropout     passed through (Dropout in inference mode)
Transpose             only the identity permutation (weight transposes are folded)
====================  =========================================================

Anything else (another op, a branch, a per-channel activation scale, a zero point, ...) is
rejected with an error naming the node and its op type. Spec layers are named by kind and
order: conv0.., fc0.., bn0.., act0.., pool0...
"""
from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

import numpy as np

from bitplane.core.errors import InputError, SpecError
from bitplane.core.intmath import window_out
from bitplane.gen.quant import fake_quant_weights
from bitplane.gen.spec import window_geometry


from .common import DEFAULT_INPUT_SCALE, Imported, _input_file, _optional_module

_STD_DOMAINS = ("", "ai.onnx")
_QONNX_DOMAINS = ("qonnx.custom_op.general", "finn.custom_op.general", "onnx.brevitas", "finn")
_ROUND = {"ROUND": np.rint, "CEIL": np.ceil, "FLOOR": np.floor}
# the supported subset: op types walked on the activation path (everything else, unless it only
# computes constants that qonnx's constant folding removes, is refused naming the node)
_CUSTOM_OPS = ("Quant", "BipolarQuant", "MultiThreshold")
_STD_OPS = ("Conv", "Gemm", "MatMul", "BatchNormalization", "MaxPool", "Relu", "Clip", "Flatten", "Reshape",
            "Transpose", "Identity", "Dropout", "Mul", "Div", "Add", "Sub")
_AFFINE_OPS = ("Mul", "Div", "Add", "Sub")
_SUBSET = ("Quant, BipolarQuant, MultiThreshold, Conv, Gemm, MatMul, BatchNormalization, MaxPool, Relu, "
           "Clip(0,1), Flatten, Reshape, Mul/Div/Add/Sub by a constant, Identity, Dropout, trivial Transpose")


def _label(node) -> str:
    return f"node '{node.name or node.output[0]}' ({node.op_type})"


class _QonnxGraph:
    """Walks a sequential QONNX graph and builds the spec layer by layer."""

    def __init__(self, path: Path, model, input_scale: float | None):
        from onnx import helper, numpy_helper
        self.helper, self.nh = helper, numpy_helper
        self.path = path
        self.input_scale_opt = input_scale
        g = model.graph
        self.consts: dict = {}
        for t in g.initializer:
            if t.data_location == 1 or len(t.external_data):   # TensorProto.EXTERNAL
                raise SpecError(path, f"initializer '{t.name}' keeps its data in an external file, which is "
                                      f"not read; save the model with its tensors inside")
            self.consts[t.name] = self._array(t, f"initializer '{t.name}'")
        self.nodes = list(g.node)
        self.done: set = set()
        for n in self.nodes:
            if n.op_type == "Constant" and n.domain in _STD_DOMAINS:
                a = {x.name: x for x in n.attribute}
                if "value" not in a:
                    raise self.err(n, "only Constant nodes with a tensor 'value' are supported")
                self.consts[n.output[0]] = self._array(a["value"].t, _label(n))
                self.done.add(id(n))
        self.producer = {o: n for n in self.nodes for o in n.output}
        self.consumers = defaultdict(list)
        for n in self.nodes:
            for name in n.input:
                if name:
                    self.consumers[name].append(n)
        self.inputs = [i for i in g.input if i.name not in self.consts]
        self.outputs = [o.name for o in g.output]
        self.layers: list = []
        self.arrays: dict = {}
        self.counts: dict = defaultdict(int)
        self.notes: list = []

    # ------------------------------------------------------------------ helpers
    def _array(self, tensor, what):
        try:
            a = self.nh.to_array(tensor)
        except Exception as e:  # noqa: BLE001 - a malformed TensorProto
            raise SpecError(self.path, f"{what}: unreadable tensor ({type(e).__name__}: {e})") from None
        if a.dtype.kind not in "fiub":
            raise SpecError(self.path, f"{what}: dtype {a.dtype} is not numeric")
        return a

    def err(self, node, msg) -> SpecError:
        return SpecError(self.path, f"{_label(node)}: {msg}")

    def attrs(self, node) -> dict:
        out = {}
        for a in node.attribute:
            v = self.helper.get_attribute_value(a)
            out[a.name] = v.decode() if isinstance(v, bytes) else v
        return out

    def const(self, name):
        if not name:
            return None
        if name in self.consts:
            return self.consts[name]
        p = self.producer.get(name)
        if p is not None and p.op_type == "Identity" and p.domain in _STD_DOMAINS:
            v = self.const(p.input[0])
            if v is not None:
                self.done.add(id(p))
            return v
        return None

    def need_const(self, node, name, what):
        v = self.const(name)
        if v is None:
            raise self.err(node, f"{what} ('{name}') must be a constant")
        return np.asarray(v, dtype=np.float64) if np.asarray(v).dtype.kind in "fiu" else v

    def add_weighted(self, L: dict, W, b, wq) -> None:
        """Append a conv/dense layer ``L`` with its weight quantizer, weights and optional bias."""
        if wq:
            L["weight_quant"] = wq
        self.layers.append(L)
        self.arrays[f"{L['name']}/W"] = W
        if b is not None:
            self.arrays[f"{L['name']}/b"] = b

    def new_name(self, kind: str) -> str:
        n = f"{kind}{self.counts[kind]}"
        self.counts[kind] += 1
        return n

    def quant_params(self, node):
        if len(node.input) != 4:
            raise self.err(node, f"Quant takes (x, scale, zero_point, bit_width), got {len(node.input)} inputs")
        scale = self.need_const(node, node.input[1], "scale")
        zp = self.need_const(node, node.input[2], "zero point")
        bw = self.need_const(node, node.input[3], "bit width")
        a = self.attrs(node)
        if np.size(bw) != 1 or float(bw.reshape(-1)[0]) != round(float(bw.reshape(-1)[0])):
            raise self.err(node, f"bit width must be one integer, got {bw.tolist()}")
        bits = int(round(float(bw.reshape(-1)[0])))
        mode = str(a.get("rounding_mode", "ROUND")).upper()
        if mode not in _ROUND:
            raise self.err(node, f"rounding_mode {mode} is not supported (ROUND, CEIL, FLOOR)")
        if not np.all(np.isfinite(scale)) or np.any(scale <= 0):
            raise self.err(node, "scale must be positive and finite")
        return scale, zp, bits, int(a.get("signed", 1)), int(a.get("narrow", 0)), mode

    @staticmethod
    def quant_eval(x, scale, zp, bits, signed, narrow, mode):
        if signed:
            lo, hi = -(1 << (bits - 1)) + narrow, (1 << (bits - 1)) - 1
        else:
            lo, hi = 0, (1 << bits) - 1 - narrow
        q = np.clip(_ROUND[mode](x / scale + zp), lo, hi)
        return (q - zp) * scale

    def act_quant_params(self, node):
        scale, zp, bits, signed, narrow, mode = self.quant_params(node)
        if np.size(scale) != 1:
            raise self.err(node, f"activation scale has shape {list(np.shape(scale))}; only one scale per tensor "
                                 f"maps to a spec activation quantizer")
        if np.any(zp != 0):
            raise self.err(node, "activation zero point must be 0")
        if narrow and not signed:
            raise self.err(node, "narrow-range unsigned activations (0..2^k-2) have no spec quantizer")
        if mode != "ROUND":
            raise self.err(node, f"activation rounding_mode {mode}: only ROUND (half to even) matches the spec")
        if not (2 if signed else 1) <= bits <= 16:
            raise self.err(node, f"{bits}-bit {'signed' if signed else 'unsigned'} activations are out of range "
                                 f"{2 if signed else 1}..16")
        return float(np.asarray(scale).reshape(-1)[0]), bits, bool(signed), bool(narrow)

    # ------------------------------------------------------------------ weights
    def weights(self, node, name, out_axis_first):
        """``(W [out, ...] float64, weight_quant | None)`` of a Conv/Gemm/MatMul weight input.

        ``out_axis_first(array)`` orients a tensor of the graph's layout to ``[out, ...]``."""
        v = self.const(name)
        if v is not None:
            return out_axis_first(np.asarray(v, dtype=np.float64)), None
        p = self.producer.get(name)
        while p is not None and p.op_type == "Identity" and p.domain in _STD_DOMAINS:
            self.done.add(id(p))
            name = p.input[0]
            p = self.producer.get(name)
        if p is None or p.op_type not in ("Quant", "BipolarQuant"):
            what = _label(p) if p is not None else f"graph input '{name}'"
            raise self.err(node, f"weights come from {what}; supported: a constant, or a Quant/BipolarQuant "
                                 f"of a constant")
        x = self.const(p.input[0])
        if x is None:
            raise self.err(p, "quantizes a computed tensor; weight quantizers must act on a constant")
        x = np.asarray(x, dtype=np.float64)
        self.done.add(id(p))
        if p.op_type == "BipolarQuant":
            s = self.need_const(p, p.input[1], "scale")
            vals = np.unique(s)
            if vals.size != 1 or not (vals[0] > 0 and math.isfinite(vals[0])):
                raise self.err(p, f"binary weights with scales {vals[:4].tolist()}: only one positive scale per "
                                  f"tensor maps to a spec quantizer (sign for 1, DoReFa 1-bit/BWN otherwise)")
            w = out_axis_first(np.where(x >= 0, 1.0, -1.0) * float(vals[0]))
            if float(vals[0]) == 1.0:
                return w, {"type": "sign"}
            return w, {"type": "dorefa", "bits": 1}
        scale, zp, bits, signed, narrow, mode = self.quant_params(p)
        if np.any(zp != 0):
            raise self.err(p, "weight zero point must be 0 (the spec's int weights are symmetric)")
        if not 2 <= bits <= 16:
            raise self.err(p, f"{bits}-bit int weights are out of range 2..16")
        w = out_axis_first(self.quant_eval(x, scale, zp, bits, signed, narrow, mode))
        wq = {"type": "int", "bits": bits}
        fq = fake_quant_weights(wq, w)
        flat, fflat = w.reshape(w.shape[0], -1), fq.reshape(w.shape[0], -1)
        top = np.max(np.abs(flat), axis=1)
        bad = np.flatnonzero(np.any(np.abs(flat - fflat) > 1e-9 * np.maximum(top, 1e-300)[:, None], axis=1))
        if bad.size:
            c = int(bad[0])
            M = (1 << (bits - 1)) - 1
            nz = np.abs(flat[c][flat[c] != 0])
            step = float(nz.min()) if nz.size else 0.0
            raise self.err(p, f"these {bits}-bit weights are not reproduced by the spec's int rule (per output "
                              f"channel scale max|W|/{M}): output channel {c} has largest |value| {top[c]:.6g} "
                              f"but smallest non-zero step {step:.6g} (its largest code is not +-{M}; "
                              f"{bad.size} channel(s) affected). Export with per-channel max-abs weight scaling "
                              f"(e.g. Brevitas Int8WeightPerChannelFloat)")
        return w, wq

    def bias(self, node, name, n_out):
        if not name:
            return None
        v = self.const(name)
        if v is None:
            p = self.producer.get(name)
            if p is not None and p.op_type == "Quant" and self.const(p.input[0]) is not None:
                self.done.add(id(p))
                v = self.quant_eval(np.asarray(self.const(p.input[0]), dtype=np.float64),
                                    *self.quant_params(p))
            else:
                raise self.err(node, f"bias '{name}' must be a constant (or a Quant of one)")
        v = np.asarray(v, dtype=np.float64)
        if v.size != n_out:
            raise self.err(node, f"bias has shape {list(v.shape)}, expected [{n_out}]")
        return v.reshape(n_out)

    # ------------------------------------------------------------------ geometry
    def padding(self, node, kind, H, W, k, s, attrs, ceil_mode=False):
        auto = str(attrs.get("auto_pad", "NOTSET"))
        if auto in ("SAME_UPPER", "SAME_LOWER"):
            oh, ow = -(-H // s), -(-W // s)
            th = max((oh - 1) * s + k - H, 0)
            tw = max((ow - 1) * s + k - W, 0)
            lo = (lambda t: t - t // 2) if auto == "SAME_LOWER" else (lambda t: t // 2)
            t, l = lo(th), lo(tw)
        elif auto == "VALID":
            t = l = 0
            oh, ow = window_out(H, 0, 0, k, s), window_out(W, 0, 0, k, s)
        elif auto in ("NOTSET", ""):
            pads = list(attrs.get("pads", [0, 0, 0, 0]))
            if len(pads) != 4:
                raise self.err(node, f"pads {pads}: only 2-D pads are supported")
            t, l, b, r = pads
            if ceil_mode:                      # the last window must start inside the input or its left pad
                oh, ow = -(-(H + t + b - k) // s) + 1, -(-(W + l + r - k) // s) + 1
                oh -= int((oh - 1) * s >= H + t)
                ow -= int((ow - 1) * s >= W + l)
            else:
                oh, ow = window_out(H, t, b, k, s), window_out(W, l, r, k, s)
        else:
            raise self.err(node, f"auto_pad {auto} is not supported")
        cands = ["valid", "same"] + ([t] if auto in ("NOTSET", "") and t == l and t > 0 else [])
        for cand in cands:
            ch, cw, cp = window_geometry(H, W, k, s, cand)
            if (ch, cw, cp[0], cp[2]) == (oh, ow, t, l) and (kind == "conv" or max(cp) < k):
                return cand, (oh, ow)
        raise self.err(node, f"padding (top {t}, left {l}, output {oh}x{ow}{', ceil_mode' if ceil_mode else ''}) "
                             f"is none of the spec's: valid, a symmetric integer, or TensorFlow 'same'")

    @staticmethod
    def square(node_err, attrs, key, default=None):
        v = list(attrs.get(key, default or []))
        if len(v) != 2 or v[0] != v[1]:
            raise node_err(f"{key} {v}: only square 2-D values are supported")
        return int(v[0])

    # ------------------------------------------------------------------ the walk
    def run(self) -> Imported:
        if not self.nodes:
            raise SpecError(self.path, "not an ONNX model (no graph nodes)")
        if len(self.inputs) != 1:
            raise SpecError(self.path, f"expected one graph input, got {[i.name for i in self.inputs]}")
        if len(self.outputs) != 1:
            raise SpecError(self.path, f"expected one graph output, got {self.outputs}")
        inp = self.inputs[0]
        dims = [d.dim_value if d.HasField("dim_value") else None for d in inp.type.tensor_type.shape.dim]
        if len(dims) == 4 and all(isinstance(d, int) and d > 0 for d in dims[1:]):
            shape = tuple(dims[1:])
        elif len(dims) == 2 and isinstance(dims[1], int) and dims[1] > 0:
            shape = (dims[1], 1, 1)
        else:
            raise SpecError(self.path, f"graph input '{inp.name}' has shape {dims}; expected [N, C, H, W] or [N, F] "
                                       f"with fixed C, H, W / F")
        in_bits, in_scale = 8, None
        cur, cur_shape = inp.name, shape
        flat = False           # flattened, with spatial dims > 1 (only elementwise ops and dense may follow)
        pending = None         # (nonlin, node) waiting for its activation quantizer
        started = False        # a conv/dense layer was seen
        quantized = False      # the current tensor is quantized (after the input quantizer or a quant_act)
        affine = None          # [A, B, first node]: a run of Mul/Div/Add/Sub, y = A*x + B per channel
        pre_node = None        # first input-preprocessing node (before the input quantizer)
        while True:
            nxt = [n for n in self.consumers.get(cur, []) if id(n) not in self.done]
            if affine is not None and (cur in self.outputs or not nxt or len(nxt) > 1
                                       or nxt[0].op_type not in _AFFINE_OPS):
                self.flush_affine(affine)
                affine = None
            if cur in self.outputs:
                break
            users = [n for n in self.consumers.get(cur, []) if id(n) not in self.done]
            if not users:
                raise SpecError(self.path, f"tensor '{cur}' is not the graph output but nothing consumes it")
            if len(users) > 1:
                raise self.err(users[1], f"tensor '{cur}' feeds {len(users)} nodes "
                                         f"({', '.join(_label(u) for u in users)}); only sequential graphs map "
                                         f"to a spec")
            node = users[0]
            op = node.op_type
            _check_op(self, node)
            if node.input[0] != cur and not (op in _AFFINE_OPS and len(node.input) == 2 and node.input[1] == cur):
                raise self.err(node, f"the activation '{cur}' must be its first input")
            if len([o for o in node.output if o]) != 1:
                raise self.err(node, "only single-output nodes are supported")
            a = self.attrs(node)
            C = cur_shape[0]
            spatial = len(cur_shape) == 3 and cur_shape[1] * cur_shape[2] > 1
            if pending is not None and op not in ("Quant", "BipolarQuant", "MultiThreshold", "MaxPool", "Identity",
                                                  "Dropout"):
                raise self.err(pending[1], f"{pending[0]} must be followed by an activation quantizer (Quant, "
                                           f"MultiThreshold), found {_label(node)}; unquantized activations have "
                                           f"no spec form")
            if op in ("Conv", "MaxPool") and (len(cur_shape) != 3 or flat):
                raise self.err(node, f"needs a feature map, got shape {list(cur_shape)}")
            if op in ("BatchNormalization", "MultiThreshold") and flat and spatial:
                raise self.err(node, "acts per feature on a flattened feature map; the spec's per-channel form "
                                     "cannot express it")

            if op in ("Conv", "Gemm", "MatMul") and not started and self.layers and not quantized:
                raise self.err(pre_node, f"input preprocessing before {_label(node)} is not followed by an input "
                                         f"quantizer (Quant/BipolarQuant); the hardware needs quantized inputs there")
            if op in ("Quant", "BipolarQuant", "MultiThreshold"):
                quantized = True
            elif op in ("Conv", "Gemm", "MatMul"):
                started, quantized = True, False

            if op == "Quant":
                scale, bits, signed, narrow = self.act_quant_params(node)
                nonlin = pending[0] if pending else "none"
                m = float((1 << bits) - 1)
                if not started and not self.layers and pending is None and not signed:
                    in_bits, in_scale = bits, scale       # unsigned codes straight from the input
                    as_input = True
                elif signed:
                    if nonlin not in ("none", "relu"):
                        raise self.err(pending[1], f"{nonlin} before a signed Quant has no spec form")
                    q, as_input = {"type": "int", "bits": bits, "narrow": narrow, "scale": scale}, False
                elif nonlin == "clip01" and math.isclose(scale * m, 1.0, rel_tol=1e-6):
                    q, as_input = {"type": "dorefa", "bits": bits}, False
                else:
                    q, as_input = {"type": "uint", "bits": bits, "scale": scale}, False
                if not as_input:
                    self.layers.append({"name": self.new_name("act"), "op": "quant_act", "nonlin": nonlin,
                                        "quant": q})
                pending = None
            elif op == "BipolarQuant":
                s = self.need_const(node, node.input[1], "scale")
                if np.size(s) != 1 or float(np.reshape(s, -1)[0]) != 1.0:
                    raise self.err(node, f"bipolar activations with scale {np.reshape(s, -1)[:4].tolist()}: only "
                                         f"scale 1 maps to the spec's sign activations")
                if pending is not None:
                    raise self.err(pending[1], f"{pending[0]} before a BipolarQuant makes every value +1")
                self.layers.append({"name": self.new_name("act"), "op": "quant_act", "nonlin": "none",
                                    "quant": {"type": "sign"}})
            elif op == "MultiThreshold":
                self.multithreshold(node, a, C, pending)
                pending = None
            elif op in ("Relu", "Clip"):
                if op == "Clip":
                    lo = a.get("min") if "min" in a else (self.need_const(node, node.input[1], "min")
                                                          if len(node.input) > 1 and node.input[1] else None)
                    hi = a.get("max") if "max" in a else (self.need_const(node, node.input[2], "max")
                                                          if len(node.input) > 2 and node.input[2] else None)
                    lo = None if lo is None else float(np.reshape(lo, -1)[0])
                    hi = None if hi is None else float(np.reshape(hi, -1)[0])
                    if (lo, hi) == (0.0, 1.0):
                        nonlin = "clip01"
                    elif lo == 0.0 and (hi is None or hi == math.inf):
                        nonlin = "relu"
                    else:
                        raise self.err(node, f"Clip({lo}, {hi}): only Clip(0, 1) (clip01) or Clip(0) (relu) "
                                             f"are spec nonlinearities")
                else:
                    nonlin = "relu"
                if pending is not None:
                    raise self.err(node, f"two nonlinearities in a row ({_label(pending[1])})")
                if not self.layers:
                    raise self.err(node, "a nonlinearity on the network input has no spec form")
                pending = (nonlin, node)
            elif op in _AFFINE_OPS:
                if quantized:
                    raise self.err(node, "an elementwise affine on quantized activations has no spec form (it "
                                         "must sit between a conv/dense and its activation quantizer, before the "
                                         "input quantizer, or after the last layer)")
                if not started and pre_node is None:
                    pre_node = node
                affine = self.affine_step(node, cur, cur_shape, flat and spatial, affine)
            elif op == "Dropout":
                mode = self.const(node.input[2]) if len(node.input) > 2 and node.input[2] else None
                if mode is not None and bool(np.reshape(mode, -1)[0]):
                    raise self.err(node, "training_mode is true: export the model in eval mode")
            elif op == "Conv":
                x_name = node.input[1]
                W, wq = self.weights(node, x_name, lambda w: w)
                if W.ndim != 4:
                    raise self.err(node, f"weights have shape {list(W.shape)}; only 2-D convolutions")
                g = int(a.get("group", 1))
                O, Cg, kh, kw = W.shape
                if kh != kw:
                    raise self.err(node, f"kernel {kh}x{kw}: only square kernels")
                if Cg * g != C:
                    raise self.err(node, f"weights {list(W.shape)} with group {g} do not fit {C} input channels")
                if "kernel_shape" in a and list(a["kernel_shape"]) != [kh, kw]:
                    raise self.err(node, f"kernel_shape {list(a['kernel_shape'])} does not match the weights")
                s = self.square(lambda m: self.err(node, m), a, "strides", [1, 1])
                if list(a.get("dilations", [1, 1])) != [1, 1]:
                    raise self.err(node, f"dilations {list(a['dilations'])} are not supported")
                pad, (oh, ow) = self.padding(node, "conv", cur_shape[1], cur_shape[2], kh, s, a)
                b = self.bias(node, node.input[2] if len(node.input) > 2 else "", O)
                n = self.new_name("conv")
                L = {"name": n, "op": "conv", "out_channels": O, "kernel": kh, "stride": s, "padding": pad}
                if g != 1:
                    L["groups"] = g
                L["bias"] = b is not None
                self.add_weighted(L, W, b, wq)
                cur_shape = (O, oh, ow)
            elif op in ("Gemm", "MatMul"):
                n_in = int(np.prod(cur_shape))
                if op == "Gemm":
                    if int(a.get("transA", 0)) or float(a.get("alpha", 1.0)) != 1.0 or (
                            len(node.input) > 2 and node.input[2] and float(a.get("beta", 1.0)) != 1.0):
                        raise self.err(node, "only Gemm with transA=0, alpha=1, beta=1 maps to a dense layer")
                    orient = (lambda w: w) if int(a.get("transB", 0)) else (lambda w: w.T)
                else:
                    orient = lambda w: w.T          # noqa: E731 - x @ W with W [in, out]
                W, wq = self.weights(node, node.input[1], orient)
                if W.ndim != 2 or W.shape[1] != n_in:
                    raise self.err(node, f"weights oriented [out, in] have shape {list(W.shape)}; the input has "
                                         f"{n_in} features")
                F = W.shape[0]
                b = self.bias(node, node.input[2] if op == "Gemm" and len(node.input) > 2 else "", F)
                n = self.new_name("fc")
                L = {"name": n, "op": "dense", "out_features": F, "bias": b is not None}
                self.add_weighted(L, W, b, wq)
                cur_shape, flat = (F,), False
            elif op == "BatchNormalization":
                if int(a.get("training_mode", 0)):
                    raise self.err(node, "training_mode=1: export the model in eval mode")
                if len(node.input) != 5:
                    raise self.err(node, "expected inputs (x, scale, B, mean, var)")
                n = self.new_name("bn")
                for p, idx in (("gamma", 1), ("beta", 2), ("mean", 3), ("var", 4)):
                    v = self.need_const(node, node.input[idx], p)
                    if v.size != C:
                        raise self.err(node, f"{p} has shape {list(v.shape)}, expected [{C}]")
                    self.arrays[f"{n}/{p}"] = v.reshape(C)
                self.layers.append({"name": n, "op": "batchnorm", "eps": float(a.get("epsilon", 1e-5))})
            elif op == "MaxPool":
                k = self.square(lambda m: self.err(node, m), a, "kernel_shape")
                s = self.square(lambda m: self.err(node, m), a, "strides", [1, 1])
                if list(a.get("dilations", [1, 1])) != [1, 1]:
                    raise self.err(node, f"dilations {list(a['dilations'])} are not supported")
                pad, (oh, ow) = self.padding(node, "maxpool", cur_shape[1], cur_shape[2], k, s, a,
                                             bool(a.get("ceil_mode", 0)))
                self.layers.append({"name": self.new_name("pool"), "op": "maxpool", "kernel": k, "stride": s,
                                    "padding": pad})
                cur_shape = (C, oh, ow)
            elif op == "Flatten":
                if int(a.get("axis", 1)) != 1:
                    raise self.err(node, f"axis {a.get('axis')}: only Flatten(axis=1) before a dense layer")
                flat = spatial
            elif op == "Reshape":
                tgt = self.need_const(node, node.input[1], "shape").astype(np.int64).tolist()
                n_in = int(np.prod(cur_shape))
                if len(tgt) == 2 and tgt in ([-1, n_in], [0, n_in], [1, n_in], [0, -1], [1, -1]):
                    flat = spatial
                else:
                    raise self.err(node, f"reshape to {tgt}: only flattening to [N, {n_in}] maps to the spec")
            elif op == "Transpose":
                perm = list(a.get("perm", []))
                if perm != list(range(len(perm))):
                    raise self.err(node, f"perm {perm} is not the identity; layout changes are not supported")
            # Identity: nothing to do
            self.done.add(id(node))
            cur = node.output[0]
        if pending is not None:
            raise self.err(pending[1], f"{pending[0]} at the end of the graph has no activation quantizer")
        left = [n for n in self.nodes if id(n) not in self.done]
        if left:
            raise self.err(left[0], "is not on the network's sequential path (or is an unused/unsupported "
                                    "weight computation)")
        if not self.layers:
            raise SpecError(self.path, "the graph has no layers")
        if in_scale is None and (pre_node is not None or self.layers[0]["op"] == "quant_act"):
            in_scale = self.input_scale_opt if self.input_scale_opt is not None else DEFAULT_INPUT_SCALE
            self.notes.append(f"the graph's input preprocessing and input quantizer run on the hardware as an "
                              f"input stage; the input is uint8 codes * {in_scale:g} (--input-scale)")
        elif in_scale is None:
            in_scale = self.input_scale_opt if self.input_scale_opt is not None else DEFAULT_INPUT_SCALE
            self.notes.append(f"no input quantizer in the graph: the input is uint8 codes * {in_scale:g} "
                              f"(--input-scale)")
        elif self.input_scale_opt is not None and not math.isclose(self.input_scale_opt, in_scale, rel_tol=1e-6):
            raise InputError(f"{self.path}: --input-scale {self.input_scale_opt:g} contradicts the graph's input "
                             f"quantizer (scale {in_scale:g})")
        spec = {"name": None, "input": {"shape": [int(v) for v in shape], "bits": in_bits, "scale": in_scale},
                "layers": self.layers}
        return Imported(self.path, "qonnx", spec, self.arrays, self.notes)

    def affine_step(self, node, cur, cur_shape, flattened, affine):
        """Compose one Mul/Div/Add/Sub by a constant into ``affine`` = [A, B, first node]."""
        op = node.op_type
        other = node.input[1] if node.input[0] == cur else node.input[0]
        v = self.const(other)
        if v is None:
            raise self.err(node, f"{op} of two computed tensors has no spec form (one operand must be a constant)")
        v = np.asarray(v, dtype=np.float64)
        C = cur_shape[0]
        if v.size == 1:
            v = np.full(C, float(v.reshape(-1)[0]))
        else:
            ok = ((C, 1, 1), (1, C, 1, 1)) if len(cur_shape) == 3 else ((C,), (1, C))
            if flattened or tuple(v.shape) not in ok:
                raise self.err(node, f"constant of shape {list(v.shape)} on a tensor of shape {list(cur_shape)}: only "
                                     f"a scalar or one value per channel maps to the spec")
            v = v.reshape(C)
        A, B, first = affine if affine is not None else (np.ones(C), np.zeros(C), node)
        if op == "Div" and node.input[0] != cur:
            raise self.err(node, "dividing a constant by the activation is not affine")
        if op == "Div" and np.any(v == 0):
            raise self.err(node, "division by zero")
        if op == "Mul":
            A, B = A * v, B * v
        elif op == "Div":
            A, B = A / v, B / v
        elif op == "Add":
            B = B + v
        elif node.input[0] == cur:            # Sub: x - v
            B = B - v
        else:                                 # Sub: v - x
            A, B = -A, v - B
        if not (np.all(np.isfinite(A)) and np.all(np.isfinite(B))):
            raise self.err(node, "the constant makes the values non-finite")
        return [A, B, first]

    def flush_affine(self, affine):
        """A finished Mul/Div/Add/Sub run -> one batchnorm layer (gamma=A, beta=B, mean 0, var 1, eps 0)."""
        A, B, _ = affine
        n = self.new_name("bn")
        self.arrays.update({f"{n}/gamma": A, f"{n}/beta": B, f"{n}/mean": np.zeros(A.size),
                            f"{n}/var": np.ones(A.size)})
        self.layers.append({"name": n, "op": "batchnorm", "eps": 0.0})

    def multithreshold(self, node, a, C, pending):
        if len(node.input) != 2:
            raise self.err(node, "expected inputs (x, thresholds)")
        if str(a.get("data_layout", "NCHW")) != "NCHW":
            raise self.err(node, f"data_layout {a.get('data_layout')}: only NCHW")
        T = np.asarray(self.need_const(node, node.input[1], "thresholds"), dtype=np.float64)
        if T.ndim != 2 or T.shape[0] not in (1, C):
            raise self.err(node, f"thresholds have shape {list(T.shape)}, expected [{C} or 1, T]")
        if not np.all(np.isfinite(T)):
            raise self.err(node, "thresholds must be finite")
        T = np.sort(np.broadcast_to(T, (C, T.shape[1])), axis=1)
        nt = T.shape[1]
        sc, bias = float(a.get("out_scale", 1.0)), float(a.get("out_bias", 0.0))
        if pending is not None:
            if pending[0] == "relu" and T.min() > 0:
                self.notes.append(f"{_label(pending[1])} dropped: every threshold of {_label(node)} is positive, "
                                  f"so it changes nothing")
            else:
                raise self.err(pending[1], f"{pending[0]} before {_label(node)} has no spec form "
                                           f"(thresholds are not all positive)")
        bn = self.new_name("bn")
        if nt == 1 and sc == 2.0 and bias == -1.0:
            # 2*[x >= t] - 1 == sign(x - t): batchnorm (x - t) then sign
            mean, gamma, beta, q, nonlin = T[:, 0], np.ones(C), np.zeros(C), {"type": "sign"}, "none"
        elif bias == 0.0 and sc > 0:
            k = int(round(math.log2(nt + 1)))
            if (1 << k) - 1 != nt or k > 16:
                raise self.err(node, f"{nt} thresholds per channel: a k-bit uint activation needs 2^k-1")
            if nt == 1:
                delta = np.ones(C)
            else:
                delta = (T[:, -1] - T[:, 0]) / (nt - 1)
                ideal = T[:, :1] + delta[:, None] * np.arange(nt)
                tol = 1e-6 * np.maximum(np.abs(T).max(axis=1), delta)
                if np.any(delta <= 0) or np.any(np.abs(T - ideal) > tol[:, None]):
                    c = int(np.flatnonzero((delta <= 0) | np.any(np.abs(T - ideal) > tol[:, None], axis=1))[0])
                    raise self.err(node, f"thresholds of channel {c} ({T[c, :4].tolist()}...) are not equally "
                                         f"spaced, so they are not a uint quantizer after a batchnorm")
            # count = #{j: x >= t0 + j*delta} = round(z/sc) with z = sc*((x - t0)/delta + 1/2)
            mean, gamma, beta = T[:, 0], sc / delta, np.full(C, sc / 2)
            q, nonlin = {"type": "uint", "bits": k, "scale": sc}, "none"
        else:
            raise self.err(node, f"out_scale {sc:g}, out_bias {bias:g}: only out_bias 0 (uint) or a single "
                                 f"threshold with out_scale 2, out_bias -1 (bipolar) map to the spec")
        self.arrays.update({f"{bn}/gamma": gamma, f"{bn}/beta": beta, f"{bn}/mean": mean, f"{bn}/var": np.ones(C)})
        self.layers.append({"name": bn, "op": "batchnorm", "eps": 0.0})
        self.layers.append({"name": self.new_name("act"), "op": "quant_act", "nonlin": nonlin, "quant": q})


def _check_op(g, node):
    """Refuse a node outside the supported subset, naming it and its op type."""
    op = node.op_type
    std, custom = node.domain in _STD_DOMAINS, node.domain in _QONNX_DOMAINS
    if not ((std and op in _STD_OPS) or (custom and op in _CUSTOM_OPS)):
        raise g.err(node, f"op '{op}' (domain '{node.domain}') is outside the supported QONNX subset ({_SUBSET})")


def _cleanup(path, model):
    """qonnx's cleanup (shape inference, constant folding, weight Transposes folded into their
    quantizers) on a graph whose every node is in the subset or only computes constants."""
    probe = _QonnxGraph(path, model, None)        # constants and node labels of the original graph
    const = set(probe.consts) | {""}
    for n in model.graph.node:
        if all(i in const for i in n.input) and n.op_type not in _CUSTOM_OPS:
            const.update(n.output)                # computes a constant: qonnx folds it
            continue
        _check_op(probe, n)
    _optional_module("qonnx", "importing QONNX")
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.transformation.fold_constants import FoldConstants
    from qonnx.transformation.infer_shapes import InferShapes
    from qonnx.transformation.quant_constant_folding import FoldTransposeIntoQuantInit
    for n in model.graph.node:
        if n.domain in _QONNX_DOMAINS:
            n.domain = "qonnx.custom_op.general"
    try:
        w = ModelWrapper(model)
        for t in (InferShapes(), FoldConstants(exclude_op_types=list(_CUSTOM_OPS)), FoldTransposeIntoQuantInit()):
            w = w.transform(t)
    except Exception as e:  # noqa: BLE001 - qonnx/onnxruntime raise many types on malformed graphs
        raise SpecError(path, f"qonnx cleanup (shape inference, constant folding) failed: {type(e).__name__}: "
                              f"{' '.join(str(e).split())[:200]}") from None
    return w.model


def import_qonnx(path, input_scale: float | None = None) -> Imported:
    """A QONNX graph (the subset in the module doc) -> :class:`Imported`."""
    onnx = _optional_module("onnx", "importing QONNX")
    path = _input_file(path)
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # noqa: BLE001 - protobuf raises several types for a non-ONNX file
        raise SpecError(path, f"not an ONNX model: {type(e).__name__}: {' '.join(str(e).split())[:200]}") from None
    if not model.graph.node or not model.graph.input:
        raise SpecError(path, "not an ONNX model (no graph nodes or inputs)")
    try:
        model = _cleanup(path, model)
        return _QonnxGraph(path, model, input_scale).run()
    except (TypeError, ValueError, KeyError, IndexError) as e:
        # attribute or tensor of an unexpected type/shape somewhere in a hand-made graph
        raise SpecError(path, f"malformed graph for the supported QONNX subset ({type(e).__name__}: {e})") from None


