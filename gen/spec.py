"""Network spec loader: YAML + NPZ exactly as docs/design.md section 3, fully validated.

``load_network(path)`` returns a :class:`Network` whose layers carry their parsed fields,
their float parameters and their inferred input/output shapes. Every problem raises
:class:`~bitplane.core.errors.SpecError` naming the file, the layer and the field. Files are read
with ``yaml.safe_load`` and ``np.load(..., allow_pickle=False)`` only.

Graph networks (issue #16), written from the code below:

* every layer may name ``inputs``: a layer name or a list of them, ``input`` being the
  network input; without it a layer reads the previous layer (the first reads ``input``).
  Names must be earlier layers, so the graph has no cycle; ``add``/``concat`` take two or
  more distinct inputs, every other op exactly one; every layer but the last must feed a
  later one (the last layer is the output); a layer named ``input`` may not coexist with
  ``inputs`` naming ``input``.
* ``add`` (element-wise sum; all inputs of one shape), ``concat`` (channels; ``[C,H,W]``
  inputs of one height and width), ``avgpool`` (``kernel``, ``stride`` = kernel,
  ``padding``, ``divisor``: ``include_pad`` = PyTorch's ``count_include_pad=True``,
  ``valid`` = TensorFlow's inside-positions count), ``global_avgpool`` (``[C,H,W] ->
  [C,1,1]``).
* ``padding`` of conv/maxpool/avgpool may be ``[top, bottom, left, right]``; ``pad_mode``
  (conv/maxpool/avgpool) is ``constant`` (default), ``reflect`` (mirror without the edge,
  pads < the input size) or ``symmetric`` (mirror with the edge, pads <= the input size).
* :attr:`Network.is_graph` is True as soon as a spec uses any of these (apart from list
  padding); each layer's ``inputs``/``in_shapes`` are resolved for every spec.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bitplane.core.errors import InputError, SpecError
from bitplane.core.fileio import load_npz
from bitplane.core.intmath import window_out
from bitplane.core.yamlio import load_yaml
from .quant import ACT_NONLINS, ACT_TYPES, DEFAULT_BITS, NONLINS, WEIGHT_TYPES

#: Largest parameter magnitude accepted from a weights file (beyond it products overflow).
MAX_PARAM_ABS = 1e12

OPS = ("conv", "dense", "batchnorm", "quant_act", "act", "maxpool")

# Allowed fields per op: name -> required?
_FIELDS = {
    "conv": {"name": True, "op": True, "out_channels": True, "kernel": True, "stride": False,
             "padding": False, "groups": False, "bias": False, "weight_quant": False, "pad_value": False},
    "dense": {"name": True, "op": True, "out_features": True, "bias": False, "weight_quant": False},
    "batchnorm": {"name": True, "op": True, "eps": False},
    "quant_act": {"name": True, "op": True, "nonlin": True, "quant": True},
    # unquantized activation (full-precision baselines, A=32); float path only, no integer form
    "act": {"name": True, "op": True, "nonlin": True},
    "maxpool": {"name": True, "op": True, "kernel": True, "stride": False, "padding": False},
}
_QUANT_FIELDS = {"type", "bits", "coef_bits", "scale", "narrow", "range"}

# ---- graph networks (issue #16): named inputs, merges, average pools, padding modes
GRAPH_OPS = ("add", "concat", "avgpool", "global_avgpool")
OPS = OPS + GRAPH_OPS
_FIELDS.update({
    # element-wise sum of two or more tensors of one shape
    "add": {"name": True, "op": True, "inputs": True},
    # channel concatenation of two or more feature maps of one height and width
    "concat": {"name": True, "op": True, "inputs": True},
    # divisor 'include_pad' (PyTorch's count_include_pad=True default: K*K everywhere) or
    # 'valid' (TensorFlow: only the window positions inside the input are counted)
    "avgpool": {"name": True, "op": True, "kernel": True, "stride": False, "padding": False,
                "divisor": False},
    "global_avgpool": {"name": True, "op": True},
})
for _op in ("conv", "maxpool", "avgpool"):
    _FIELDS[_op]["pad_mode"] = False
for _fields in _FIELDS.values():
    _fields.setdefault("inputs", False)
# 'constant': pad_value (conv) / never-winning (maxpool) / zero (avgpool); 'reflect': mirror
# without the edge (PyTorch 'reflect', TF 'REFLECT'); 'symmetric': mirror with the edge
# (TF 'SYMMETRIC', NumPy 'symmetric')
PAD_MODES = ("constant", "reflect", "symmetric")
AVG_DIVISORS = ("include_pad", "valid")
INPUT_NAME = "input"          # the network input, as named in ``inputs``


@dataclass
class Layer:
    """One layer of the spec: parsed fields, float parameters and shapes.

    ``in_shape``/``out_shape`` are ``(C, H, W)`` for feature maps and ``(F,)`` after a
    dense layer. ``pads`` is ``(top, bottom, left, right)`` for conv/maxpool.
    """
    index: int
    name: str
    op: str
    attrs: dict
    params: dict = field(default_factory=dict)
    in_shape: tuple = ()
    out_shape: tuple = ()
    pads: tuple = (0, 0, 0, 0)
    inputs: tuple = ()            # names of the tensors it reads ('input' = network input)
    in_shapes: tuple = ()         # their shapes (``in_shape`` is the first)

    def __getitem__(self, key):
        return self.attrs[key]

    def get(self, key, default=None):
        return self.attrs.get(key, default)


@dataclass
class Network:
    name: str
    path: Path
    input_shape: tuple
    input_bits: int
    input_scale: float
    layers: list
    spec_hash: str
    # True when the spec uses a graph feature (explicit inputs, add/concat/avgpool/
    # global_avgpool, a non-constant pad_mode); such nets lower through gen/graph.py
    is_graph: bool = False

    @property
    def output_shape(self) -> tuple:
        return self.layers[-1].out_shape if self.layers else self.input_shape

    def layer(self, name: str) -> Layer:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(name)


def same_pads(size: int, k: int, s: int) -> tuple[int, int]:
    """TensorFlow 'same' padding: total = max((ceil(H/s)-1)*s + k - H, 0), extra bottom/right."""
    total = max((math.ceil(size / s) - 1) * s + k - size, 0)
    return total // 2, total - total // 2


def window_geometry(h: int, w: int, k: int, s: int, padding) -> tuple[int, int, tuple]:
    """Output size and ``(top, bottom, left, right)`` pads of a K×K window with stride s."""
    if padding == "same":
        t, b = same_pads(h, k, s)
        l, r = same_pads(w, k, s)
    elif padding == "valid":
        t = b = l = r = 0
    elif isinstance(padding, (list, tuple)):
        t, b, l, r = (int(v) for v in padding)
    else:
        t = b = l = r = int(padding)
    return window_out(h, t, b, k, s), window_out(w, l, r, k, s), (t, b, l, r)


class _Ctx:
    def __init__(self, file):
        self.file = file

    def err(self, msg, layer: Layer | None = None, field_: str | None = None):
        return SpecError(self.file, msg, layer.name if layer else None,
                         layer.index if layer else None, field_)


def _int_field(ctx, layer, key, value, lo=None, hi=None):
    if isinstance(value, bool) or not isinstance(value, int):
        raise ctx.err(f"must be an integer, got {value!r}", layer, key)
    if lo is not None and value < lo or hi is not None and value > hi:
        rng = f"{lo}..{hi}" if hi is not None else f">= {lo}"
        raise ctx.err(f"{value} is out of range {rng}", layer, key)
    return value


def _pool_window(ctx, layer, a, cur):
    """The window fields of a pool layer (maxpool, avgpool) on a [C,H,W] input, validated:
    ``(C, kernel, stride, padding, out_h, out_w, pads)``."""
    if len(cur) != 3:
        raise ctx.err(f"{layer.op} needs a [C,H,W] input but gets {list(cur)}", layer, "op")
    C, H, W = cur
    k = _int_field(ctx, layer, "kernel", a["kernel"], 1)
    s = _int_field(ctx, layer, "stride", a.get("stride", k), 1)
    pad = _padding_field(ctx, layer, a.get("padding", "valid"))
    oh, ow, pads = window_geometry(H, W, k, s, pad)
    if oh < 1 or ow < 1:
        raise ctx.err(f"kernel {k} does not fit the {H}x{W} input", layer, "kernel")
    if max(pads) >= k:
        raise ctx.err(f"padding {max(pads)} must be smaller than the kernel {k}", layer, "padding")
    return C, k, s, pad, oh, ow, pads


def _padding_field(ctx, layer, value):
    if value in ("same", "valid"):
        return value
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if (isinstance(value, list) and len(value) == 4
            and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value)):
        return list(value)
    raise ctx.err(f"must be 'same', 'valid', a non-negative integer or [top, bottom, left, right] "
                  f"non-negative integers, got {value!r}", layer, "padding")


def _inputs_field(ctx, layer, value, known: dict, later: dict):
    """Names a layer reads: ``INPUT_NAME`` or earlier layers (so the graph has no cycle)."""
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not names or not all(isinstance(v, str) for v in names):
        raise ctx.err(f"must be a layer name or a list of layer names ('{INPUT_NAME}' is the network "
                      f"input), got {value!r}", layer, "inputs")
    for v in names:
        if v == layer.name:
            raise ctx.err(f"layer '{v}' cannot read its own output (a cycle)", layer, "inputs")
        if v in later:
            raise ctx.err(f"'{v}' is layer #{later[v]}, defined later; inputs must name earlier layers "
                          f"(a graph without cycles, in order)", layer, "inputs")
        if v not in known:
            raise ctx.err(f"unknown input {v!r}; name '{INPUT_NAME}' or an earlier layer", layer, "inputs")
    if len(set(names)) != len(names):
        raise ctx.err(f"names an input twice: {names}", layer, "inputs")
    n = len(names)
    if layer.op in ("add", "concat") and n < 2:
        raise ctx.err(f"'{layer.op}' needs at least two inputs, got {names}", layer, "inputs")
    if layer.op not in ("add", "concat") and n != 1:
        raise ctx.err(f"'{layer.op}' takes exactly one input, got {names}", layer, "inputs")
    return tuple(names)


def _pad_mode_field(ctx, layer):
    mode = layer.attrs.get("pad_mode", "constant")
    if mode not in PAD_MODES:
        raise ctx.err(f"must be one of {', '.join(PAD_MODES)}, got {mode!r}", layer, "pad_mode")
    if mode != "constant":
        if layer.get("pad_value") is not None:
            raise ctx.err(f"pad_value only applies to pad_mode 'constant', not {mode!r}", layer, "pad_value")
        C, H, W = layer.in_shape
        t, b, l, r = layer.pads
        lim_h, lim_w = (H - 1, W - 1) if mode == "reflect" else (H, W)
        if max(t, b) > lim_h or max(l, r) > lim_w:
            raise ctx.err(f"{mode} padding {list(layer.pads)} needs pads of at most {lim_h} rows and "
                          f"{lim_w} columns for the {H}x{W} input", layer, "padding")
    return mode


def _quant_field(ctx, layer, key, q, role):
    types = WEIGHT_TYPES if role == "weight" else ACT_TYPES
    roles = "weights" if role == "weight" else "activations"
    if not isinstance(q, dict):
        raise ctx.err(f"must be a mapping like {{type: dorefa, bits: 2}}, got {q!r}", layer, key)
    unknown = set(q) - _QUANT_FIELDS
    if unknown:
        raise ctx.err(f"unknown field(s) {sorted(unknown)}; allowed: {sorted(_QUANT_FIELDS)}", layer, key)
    t = q.get("type")
    if t is None:
        raise ctx.err("missing 'type'", layer, key)
    if not isinstance(t, str) or t not in types:
        other = ACT_TYPES if role == "weight" else WEIGHT_TYPES
        hint = (f" ('{t}' is {'an activation' if role == 'weight' else 'a weight'} quantizer)"
                if isinstance(t, str) and t in other else "")
        raise ctx.err(f"quantizer type {t!r} is not supported for {roles}{hint}; "
                      f"supported: {sorted(types)}", layer, f"{key}.type")
    lo, hi = types[t]
    if "bits" not in q and t not in DEFAULT_BITS:
        raise ctx.err(f"missing 'bits' for {t} {roles}", layer, key)
    bits = q.get("bits", DEFAULT_BITS.get(t))
    if isinstance(bits, bool) or not isinstance(bits, int) or not lo <= bits <= hi:
        raise ctx.err(f"{bits!r} is out of range {lo}..{hi} for {t} {roles}", layer, f"{key}.bits")
    out = {"type": t, "bits": bits}
    if "coef_bits" in q:
        if t not in ("ttq", "lq"):
            raise ctx.err(f"coef_bits only applies to ttq/lq quantizers, not {t}", layer, f"{key}.coef_bits")
        out["coef_bits"] = _int_field(ctx, layer, f"{key}.coef_bits", q["coef_bits"], 2, 24)
    scaled = t == "uint" or (t == "int" and role == "act")
    if scaled:
        s = q.get("scale")
        if isinstance(s, bool) or not isinstance(s, (int, float)) or not (s > 0 and math.isfinite(s)):
            raise ctx.err(f"{t} activations need a positive finite 'scale', got {s!r}", layer, f"{key}.scale")
        out["scale"] = float(s)
    elif "scale" in q:
        raise ctx.err(f"'scale' only applies to uint and int activations, not {t} {roles}", layer, f"{key}.scale")
    if t == "tanh":
        r = q.get("range")
        if isinstance(r, bool) or not isinstance(r, (int, float)) or not (0 < r <= 1):
            raise ctx.err(f"tanh activations need a 'range' in (0, 1] (the frozen max of tanh), got {r!r}",
                          layer, f"{key}.range")
        out["range"] = float(r)
    elif "range" in q:
        raise ctx.err(f"'range' only applies to tanh activations, not {t} {roles}", layer, f"{key}.range")
    if "narrow" in q:
        if not (t == "int" and role == "act"):
            raise ctx.err(f"'narrow' only applies to int activations, not {t} {roles}", layer, f"{key}.narrow")
        if not isinstance(q["narrow"], bool):
            raise ctx.err(f"must be true or false, got {q['narrow']!r}", layer, f"{key}.narrow")
    if t == "int" and role == "act":
        out["narrow"] = bool(q.get("narrow", False))
    return out


def _load_yaml(path: Path):
    doc, text = load_yaml(path, lambda msg: SpecError(path, msg), "spec file")
    return doc, hashlib.sha256(text.encode()).hexdigest()


def _load_npz(ctx, path: Path):
    if not path.exists():
        raise SpecError(path, "weights file not found (named by the spec's 'weights' field)")
    try:
        return load_npz(path, "weights file")
    except InputError as e:
        msg = str(e)
        raise SpecError(path, msg[len(str(path)) + 2:] if msg.startswith(f"{path}: ") else msg) from None


def load_network(path) -> Network:
    """Load and validate a network spec (YAML + NPZ); see docs/design.md section 3."""
    path = Path(path)
    ctx = _Ctx(path)
    doc, yaml_hash = _load_yaml(path)
    if not isinstance(doc, dict):
        raise ctx.err("the spec must be a mapping with 'name', 'weights', 'input' and 'layers'")
    unknown = set(doc) - {"name", "weights", "input", "layers"}
    if unknown:
        raise SpecError(path, f"unknown top-level field(s) {sorted(unknown)}", field=sorted(unknown)[0])
    for key in ("name", "input", "layers"):
        if key not in doc:
            raise SpecError(path, "missing", field=key)
    name = doc["name"]
    if not isinstance(name, str) or not name or not name.replace("-", "_").replace(".", "_").isidentifier():
        raise SpecError(path, f"must be a non-empty identifier-like string (letters, digits, '-', '_'), "
                              f"got {name!r}", field="name")

    inp = doc["input"]
    if not isinstance(inp, dict):
        raise SpecError(path, "must be a mapping {shape: [C,H,W], bits: 8, scale: ...}", field="input")
    for key in inp:
        if key not in ("shape", "bits", "scale"):
            raise SpecError(path, f"unknown field {key!r}", field=f"input.{key}")
    shape = inp.get("shape")
    if (not isinstance(shape, list) or len(shape) != 3
            or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in shape)):
        raise SpecError(path, f"must be [C, H, W] positive integers, got {shape!r}", field="input.shape")
    bits = inp.get("bits", 8)
    if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= 16:
        raise SpecError(path, f"{bits!r} is out of range 1..16", field="input.bits")
    scale = inp.get("scale", 1.0)
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not (scale > 0 and math.isfinite(scale)):
        raise SpecError(path, f"must be a positive finite number, got {scale!r}", field="input.scale")

    layers_doc = doc["layers"]
    if not isinstance(layers_doc, list) or not layers_doc:
        raise SpecError(path, "must be a non-empty list of layers", field="layers")

    layers: list[Layer] = []
    names = set()
    for i, ld in enumerate(layers_doc):
        if not isinstance(ld, dict):
            raise SpecError(path, f"layer #{i} must be a mapping, got {ld!r}", field="layers")
        lname = ld.get("name")
        if not isinstance(lname, str) or not lname or "/" in lname:
            raise SpecError(path, f"layer #{i} needs a 'name' (a string without '/'), got {lname!r}",
                            index=i, field="name")
        if lname in names:
            raise SpecError(path, "duplicate layer name", lname, i, "name")
        names.add(lname)
        op = ld.get("op")
        layer = Layer(i, lname, op, dict(ld))
        if op not in OPS:
            raise ctx.err(f"unknown op {op!r}; supported: {', '.join(OPS)}", layer, "op")
        allowed = _FIELDS[op]
        for key in ld:
            if key not in allowed:
                raise ctx.err(f"unknown field for op '{op}'; allowed: {', '.join(allowed)}", layer, key)
        for key, req in allowed.items():
            if req and key not in ld:
                raise ctx.err(f"missing (required for op '{op}')", layer, key)
        layers.append(layer)

    weights_rel = doc.get("weights")
    needs_params = any(l.op in ("conv", "dense", "batchnorm") or
                       (l.op == "quant_act" and isinstance(l.get("quant"), dict)
                        and l["quant"].get("type") == "lq") for l in layers)
    tensors: dict = {}
    npz_hash = ""
    if weights_rel is not None:
        if not isinstance(weights_rel, str):
            raise SpecError(path, f"must be a file name relative to the spec, got {weights_rel!r}", field="weights")
        npz_path = path.parent / weights_rel
        tensors = _load_npz(ctx, npz_path)
        npz_hash = hashlib.sha256(npz_path.read_bytes()).hexdigest()
        ctx.npz = npz_path
    elif needs_params:
        raise SpecError(path, "missing: layers with parameters need a weights .npz", field="weights")
    used: set = set()

    def tensor(layer, pname, shape, what):
        key = f"{layer.name}/{pname}"
        f = getattr(ctx, "npz", path)
        if key not in tensors:
            raise SpecError(f, f"missing tensor '{key}' ({what}, shape {list(shape)})",
                            layer.name, layer.index, pname)
        t = tensors[key]
        used.add(key)
        if t.dtype.kind not in "fiu":
            raise SpecError(f, f"tensor '{key}' has dtype {t.dtype}, expected a float or integer array",
                            layer.name, layer.index, pname)
        t = t.astype(np.float64)
        if tuple(t.shape) != tuple(shape) and not (shape == () and t.shape == (1,)):
            raise SpecError(f, f"tensor '{key}' has shape {list(t.shape)}, expected {list(shape)} ({what})",
                            layer.name, layer.index, pname)
        if not np.all(np.isfinite(t)):
            raise SpecError(f, f"tensor '{key}' contains NaN or infinity", layer.name, layer.index, pname)
        if t.size and np.max(np.abs(t)) > MAX_PARAM_ABS:
            raise SpecError(f, f"tensor '{key}' holds {np.max(np.abs(t)):.3g}, beyond the +-{MAX_PARAM_ABS:g} "
                               f"that the integer path represents exactly", layer.name, layer.index, pname)
        return t.reshape(shape)

    cur = tuple(shape)
    out_shapes = {INPUT_NAME: tuple(shape)}
    index_of = {l.name: l.index for l in layers}
    consumed: set = set()
    is_graph = False
    prev = INPUT_NAME
    for layer in layers:
        if "inputs" in layer.attrs:
            if INPUT_NAME in index_of:
                raise ctx.err(f"a layer is named '{INPUT_NAME}', which makes '{INPUT_NAME}' in inputs "
                              f"ambiguous; rename that layer", layer, "inputs")
            known = {INPUT_NAME, *(l.name for l in layers[:layer.index])}
            later = {l.name: l.index for l in layers[layer.index:]}
            layer.inputs = _inputs_field(ctx, layer, layer.attrs["inputs"], known, later)
            is_graph = True
        else:
            layer.inputs = (prev,)
        prev = layer.name
        consumed.update(layer.inputs)
        layer.in_shapes = tuple(out_shapes[v] for v in layer.inputs)
        cur = layer.in_shapes[0]
        is_graph = is_graph or layer.op in GRAPH_OPS or layer.get("pad_mode", "constant") != "constant"
        layer.in_shape = cur
        a = layer.attrs
        op = layer.op
        if op == "conv":
            if len(cur) != 3:
                raise ctx.err(f"conv needs a [C,H,W] input but gets {list(cur)} (after a dense layer)", layer, "op")
            C, H, W = cur
            O = _int_field(ctx, layer, "out_channels", a["out_channels"], 1)
            k = _int_field(ctx, layer, "kernel", a["kernel"], 1)
            s = _int_field(ctx, layer, "stride", a.get("stride", 1), 1)
            g = _int_field(ctx, layer, "groups", a.get("groups", 1), 1)
            pad = _padding_field(ctx, layer, a.get("padding", "valid"))
            if C % g or O % g:
                raise ctx.err(f"groups={g} must divide input channels ({C}) and out_channels ({O})", layer, "groups")
            bias = a.get("bias", False)
            if not isinstance(bias, bool):
                raise ctx.err(f"must be true or false, got {bias!r}", layer, "bias")
            oh, ow, pads = window_geometry(H, W, k, s, pad)
            if oh < 1 or ow < 1:
                raise ctx.err(f"kernel {k} with padding {pad!r} does not fit the {H}x{W} input", layer, "kernel")
            pv = a.get("pad_value")
            num = lambda v: not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v)  # noqa: E731
            if isinstance(pv, list):
                # one value per input channel (e.g. the ImageNet mean a normalised image pads with)
                if len(pv) != C or not all(num(v) for v in pv):
                    raise ctx.err(f"must be a number or a list of {C} numbers (one per input channel), got {pv!r}",
                                  layer, "pad_value")
                a["pad_value"] = [float(v) for v in pv]
            elif pv is not None and not num(pv):
                raise ctx.err(f"must be a number, got {pv!r}", layer, "pad_value")
            layer.attrs.update(out_channels=O, kernel=k, stride=s, groups=g, padding=pad, bias=bias)
            layer.pads = pads
            if "pad_mode" in a:
                layer.attrs["pad_mode"] = _pad_mode_field(ctx, layer)
            layer.params["W"] = tensor(layer, "W", (O, C // g, k, k), "conv weights OIHW")
            if bias:
                layer.params["b"] = tensor(layer, "b", (O,), "bias")
            cur = (O, oh, ow)
        elif op == "dense":
            F = _int_field(ctx, layer, "out_features", a["out_features"], 1)
            bias = a.get("bias", False)
            if not isinstance(bias, bool):
                raise ctx.err(f"must be true or false, got {bias!r}", layer, "bias")
            n_in = int(np.prod(cur))
            layer.params["W"] = tensor(layer, "W", (F, n_in), "dense weights [out, in], in in C,H,W order")
            if bias:
                layer.params["b"] = tensor(layer, "b", (F,), "bias")
            cur = (F,)
        elif op == "batchnorm":
            eps = a.get("eps", 1e-5)
            if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not (eps >= 0 and math.isfinite(eps)):
                raise ctx.err(f"must be a non-negative finite number, got {eps!r}", layer, "eps")
            layer.attrs["eps"] = float(eps)
            C = cur[0]
            for p in ("gamma", "beta", "mean", "var"):
                layer.params[p] = tensor(layer, p, (C,), f"batchnorm {p} per channel")
            if np.any(layer.params["var"] < 0):
                raise SpecError(getattr(ctx, "npz", path), "variance must be non-negative",
                                layer.name, layer.index, "var")
            if np.any(layer.params["var"] + eps <= 0):
                raise ctx.err("var + eps must be positive (set eps > 0)", layer, "eps")
        elif op == "quant_act":
            nl = a["nonlin"]
            if nl not in NONLINS:
                raise ctx.err(f"unknown nonlin {nl!r}; supported: {', '.join(NONLINS)}", layer, "nonlin")
            q = _quant_field(ctx, layer, "quant", a["quant"], "act")
            if nl not in ACT_NONLINS[q["type"]]:
                raise ctx.err(f"nonlin {nl!r} is not valid for {q['type']} activations; use one of "
                              f"{', '.join(ACT_NONLINS[q['type']])}", layer, "nonlin")
            layer.attrs["quant"] = q
            if q["type"] == "lq":
                layer.params["basis"] = tensor(layer, "basis", (q["bits"],), "LQ-Nets activation basis")
        elif op == "act":
            if a["nonlin"] not in NONLINS:
                raise ctx.err(f"unknown nonlin {a['nonlin']!r}; supported: {', '.join(NONLINS)}", layer, "nonlin")
        elif op == "maxpool":
            C, k, s, pad, oh, ow, pads = _pool_window(ctx, layer, a, cur)
            layer.attrs.update(kernel=k, stride=s, padding=pad)
            layer.pads = pads
            if "pad_mode" in a:
                layer.attrs["pad_mode"] = _pad_mode_field(ctx, layer)
            cur = (C, oh, ow)
        elif op == "avgpool":
            C, k, s, pad, oh, ow, pads = _pool_window(ctx, layer, a, cur)
            div = a.get("divisor", "include_pad")
            if div not in AVG_DIVISORS:
                raise ctx.err(f"must be 'include_pad' (PyTorch count_include_pad) or 'valid' (TensorFlow: "
                              f"inside positions only), got {div!r}", layer, "divisor")
            layer.attrs.update(kernel=k, stride=s, padding=pad, divisor=div)
            layer.pads = pads
            layer.attrs["pad_mode"] = _pad_mode_field(ctx, layer)
            cur = (C, oh, ow)
        elif op == "global_avgpool":
            if len(cur) != 3:
                raise ctx.err(f"global_avgpool needs a [C,H,W] input but gets {list(cur)}", layer, "op")
            cur = (cur[0], 1, 1)
        elif op == "add":
            for v, shp in zip(layer.inputs[1:], layer.in_shapes[1:]):
                if shp != cur:
                    raise ctx.err(f"shapes differ: '{layer.inputs[0]}' gives {list(cur)} but '{v}' gives "
                                  f"{list(shp)}", layer, "inputs")
        elif op == "concat":
            for v, shp in zip(layer.inputs, layer.in_shapes):
                if len(shp) != 3 or shp[1:] != cur[1:] or len(cur) != 3:
                    raise ctx.err(f"concat joins [C,H,W] maps of one height and width: '{layer.inputs[0]}' "
                                  f"gives {list(cur)} but '{v}' gives {list(shp)}", layer, "inputs")
            cur = (sum(shp[0] for shp in layer.in_shapes),) + tuple(cur[1:])
        if op in ("conv", "dense"):
            wq = a.get("weight_quant")
            if wq is not None:
                wq = _quant_field(ctx, layer, "weight_quant", wq, "weight")
                layer.attrs["weight_quant"] = wq
                if wq["type"] == "ttq":
                    layer.params["Wp"] = tensor(layer, "Wp", (), "TTQ positive scale")
                    layer.params["Wn"] = tensor(layer, "Wn", (), "TTQ negative scale")
                elif wq["type"] == "lq":
                    layer.params["basis"] = tensor(layer, "basis", (wq["bits"], layer.params["W"].shape[0]),
                                                   "LQ-Nets weight basis [bits, out]")
        layer.out_shape = cur
        out_shapes[layer.name] = cur

    for layer in layers[:-1]:
        if layer.name not in consumed:
            raise ctx.err("its output is never used (the last layer is the network output; every other "
                          "layer must feed a later one)", layer, "name")
    extra = sorted(set(tensors) - used)
    if extra:
        raise SpecError(ctx.npz, f"unexpected tensor(s) {extra[:5]}{' ...' if len(extra) > 5 else ''} "
                                 f"(keys are '<layer>/<param>' of layers that take that parameter)",
                        field=extra[0])
    spec_hash = hashlib.sha256((yaml_hash + npz_hash).encode()).hexdigest()
    return Network(name, path, tuple(shape), bits, float(scale), layers, spec_hash, is_graph)
