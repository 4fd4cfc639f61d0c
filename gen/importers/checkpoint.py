"""tensorpack DoReFa-Net archives and PyTorch state_dicts into the seeds' layer lists (see the package doc)."""
from __future__ import annotations

import math
import re
import zipfile
from pathlib import Path

import numpy as np

from bitplane.core.errors import InputError, SpecError
from bitplane.gen.spec import window_geometry


from .common import DEFAULT_INPUT_SCALE, Imported, _input_file, _optional_module

ARCHS = ("svhn", "alexnet")
DEFAULT_ARCH_BITS = {"svhn": (1, 2), "alexnet": (1, 2)}
BN_EPS = 1e-4                                   # argscope(BatchNorm, epsilon=1e-4) in both seeds
IMAGENET_MEAN_RGB = (0.485, 0.456, 0.406)       # tensorpack ImageNetModel.image_preprocess
IMAGENET_STD_RGB = (0.229, 0.224, 0.225)

def parse_bits(text: str) -> tuple:
    """``"W,A"`` -> ``(W, A)``; W is 1..16 or ``'t'`` (TTQ), A is 1..16."""
    parts = [p.strip() for p in str(text).split(",")]
    if len(parts) != 2:
        raise InputError(f"--bits must be W,A (e.g. 1,2 or t,2), got {text!r}")
    w, a = parts
    try:
        wb = "t" if w.lower() == "t" else int(w)
        ab = int(a)
    except ValueError:
        raise InputError(f"--bits must be W,A with integers (W may be 't' for TTQ), got {text!r}") from None
    if wb != "t" and not 1 <= wb <= 16:
        raise InputError(f"--bits: weight bits {wb} out of range 1..16 (32-bit float weights have no "
                         f"bit-plane form; the first/last layers are unquantized already)")
    if not 1 <= ab <= 16:
        raise InputError(f"--bits: activation bits {ab} out of range 1..16 (bitplane needs quantized "
                         f"activations)")
    return wb, ab


def arch_spec(arch: str, wbits, abits: int, float_last_act: bool = False) -> dict:
    """The seed's layer list. ``bias: None`` = "exactly when the checkpoint has one".

    ``float_last_act``: the activation before the last layer is the seed's unquantized
    nonlinearity (an ``act`` layer: float path only) instead of an A-bit ``quant_act``."""
    wq = {"type": "ttq"} if wbits == "t" else {"type": "dorefa", "bits": wbits}
    aq = {"type": "dorefa", "bits": abits}

    def conv(n, O, k, pad, stride=1, groups=1, quant=True):
        d = {"name": n, "op": "conv", "out_channels": O, "kernel": k, "stride": stride, "padding": pad}
        if groups != 1:
            d["groups"] = groups
        d["bias"] = None
        if quant:
            d["weight_quant"] = dict(wq)
        return d

    def dense(n, F, quant=True):
        d = {"name": n, "op": "dense", "out_features": F, "bias": None}
        if quant:
            d["weight_quant"] = dict(wq)
        return d

    bn = lambda n: {"name": n, "op": "batchnorm", "eps": BN_EPS}                        # noqa: E731
    pool = lambda n, k, s, pad: {"name": n, "op": "maxpool", "kernel": k, "stride": s, "padding": pad}  # noqa: E731
    if arch == "svhn":
        act = lambda n: {"name": n, "op": "quant_act", "nonlin": "cabs", "quant": dict(aq)}  # noqa: E731
        layers = [conv("conv0", 48, 5, "valid", quant=False), pool("pool0", 2, 2, "same"), act("act0"),
                  conv("conv1", 64, 3, "same"), bn("bn1"), act("act1"),
                  conv("conv2", 64, 3, "same"), bn("bn2"), pool("pool1", 2, 2, "same"), act("act2"),
                  conv("conv3", 128, 3, "valid"), bn("bn3"), act("act3"),
                  conv("conv4", 128, 3, "same"), bn("bn4"), act("act4"),
                  conv("conv5", 128, 3, "valid"), bn("bn5"), act("act5"),
                  conv("conv6", 512, 5, "valid"), bn("bn6"), act("act6"),
                  dense("fc1", 10, quant=False)]
        shape = [3, 40, 40]
    elif arch == "alexnet":
        act = lambda n: {"name": n, "op": "quant_act", "nonlin": "clip01", "quant": dict(aq)}  # noqa: E731
        layers = [conv("conv0", 96, 12, "valid", stride=4, quant=False), act("act0"),
                  conv("conv1", 256, 5, "same", groups=2), bn("bn1"), pool("pool1", 3, 2, "same"), act("act1"),
                  conv("conv2", 384, 3, "same"), bn("bn2"), pool("pool2", 3, 2, "same"), act("act2"),
                  conv("conv3", 384, 3, "same", groups=2), bn("bn3"), act("act3"),
                  conv("conv4", 256, 3, "same", groups=2), bn("bn4"), pool("pool4", 3, 2, "valid"), act("act4"),
                  dense("fc0", 4096), bn("bnfc0"), act("actfc0"),
                  dense("fc1", 4096), bn("bnfc1"), act("actfc1"),
                  dense("fct", 1000, quant=False)]
        shape = [3, 224, 224]
    else:
        raise InputError(f"--arch must be one of {', '.join(ARCHS)}, got {arch!r}")
    if float_last_act:
        last = layers[-2]
        layers[-2] = {"name": last["name"], "op": "act", "nonlin": last["nonlin"]}
    w = "t" if wbits == "t" else wbits
    return {"name": f"{arch}-dorefa-w{w}a{abits}",
            "input": {"shape": shape, "bits": 8, "scale": DEFAULT_INPUT_SCALE}, "layers": layers}


def _last_act_note(arch: str, float_last_act: bool) -> str:
    last = {"svhn": ("cabs", "bn6", "act6"), "alexnet": ("clip01", "bnfc1", "actfc1")}[arch]
    if float_last_act:
        return (f"'{last[2]}' keeps the seed's unquantized {last[0]} (an 'act' layer): the float path equals "
                f"the seed's, but hardware cannot run an unquantized activation")
    return (f"the seed applies {last[0]} after {last[1]} without quantizing it; the spec quantizes it in "
            f"'{last[2]}' with the activation bits (hardware needs quantized activations), so logits differ "
            f"slightly from the seed's (--float-last-act keeps it unquantized)")


def load_layer_list(path) -> dict:
    """A ``--spec`` file: a spec YAML whose layers are to be filled (``weights`` ignored)."""
    path = Path(path)
    from bitplane.core.yamlio import load_yaml
    doc, _ = load_yaml(path, lambda msg: SpecError(path, msg), "layer list")
    if not isinstance(doc, dict) or not isinstance(doc.get("layers"), list) or not doc["layers"]:
        raise SpecError(path, "a layer list to fill must be a spec mapping with a non-empty 'layers' list",
                        field="layers")
    inp = doc.get("input")
    if not isinstance(inp, dict) or not isinstance(inp.get("shape"), list):
        raise SpecError(path, "missing input: {shape: [C, H, W], bits: 8, scale: ...}", field="input")
    for i, L in enumerate(doc["layers"]):
        if not isinstance(L, dict) or not isinstance(L.get("name"), str):
            raise SpecError(path, f"layer #{i} must be a mapping with a 'name'", index=i, field="name")
    return {"name": doc.get("name"), "input": dict(inp), "layers": [dict(L) for L in doc["layers"]]}


def _walk(spec: dict, src) -> list:
    """``[(index, layer, in_shape), ...]`` with shapes inferred as the loader does."""
    def err(msg, i, L, fld):
        return SpecError(src, msg, L.get("name"), i, fld)

    def intf(i, L, key, default=None, lo=1):
        v = L.get(key, default)
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise err(f"must be an integer >= {lo}, got {v!r}", i, L, key)
        return v

    shape = spec["input"]["shape"]
    if (not isinstance(shape, list) or len(shape) != 3
            or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in shape)):
        raise SpecError(src, f"must be [C, H, W] positive integers, got {shape!r}", field="input.shape")
    cur, out = tuple(shape), []
    for i, L in enumerate(spec["layers"]):
        out.append((i, L, cur))
        op = L.get("op")
        if op in ("conv", "maxpool"):
            if len(cur) != 3:
                raise err(f"{op} needs a [C,H,W] input but gets {list(cur)}", i, L, "op")
            C, H, W = cur
            k = intf(i, L, "kernel")
            s = intf(i, L, "stride", 1 if op == "conv" else k)
            pad = L.get("padding", "valid")
            if pad not in ("same", "valid") and (isinstance(pad, bool) or not isinstance(pad, int) or pad < 0):
                raise err(f"must be 'same', 'valid' or a non-negative integer, got {pad!r}", i, L, "padding")
            oh, ow, _ = window_geometry(H, W, k, s, pad)
            if oh < 1 or ow < 1:
                raise err(f"kernel {k} does not fit the {H}x{W} input", i, L, "kernel")
            if op == "conv":
                O, g = intf(i, L, "out_channels"), intf(i, L, "groups", 1)
                if C % g or O % g:
                    raise err(f"groups={g} must divide input channels ({C}) and out_channels ({O})", i, L, "groups")
                cur = (O, oh, ow)
            else:
                cur = (C, oh, ow)
        elif op == "dense":
            cur = (intf(i, L, "out_features"),)
    return out


# =========================================================================== checkpoints

class _Tensors:
    """Named arrays of a checkpoint, the key convention of its format, and which were used."""

    def __init__(self, path: Path, fmt: str, tensors: dict, display: dict | None = None):
        self.path, self.fmt, self.t = path, fmt, tensors
        self.display = display or {k: k for k in tensors}
        self.layer_source: Path | None = None      # a --spec file, for errors in the layer list
        self.used: set = set()
        self.qnet = fmt == "state-dict" and any(k.startswith(("params_.", "bns.")) for k in tensors)

    def key(self, L: dict, param: str, op: str) -> str:
        n = L["name"]
        if self.fmt == "tensorpack":
            return {"mean": f"{n}/mean/EMA", "var": f"{n}/variance/EMA"}.get(param, f"{n}/{param}")
        if self.qnet:
            if op == "batchnorm":
                bn = n.replace(".", "_")
                return {"gamma": f"bns.{bn}.weight", "beta": f"bns.{bn}.bias", "mean": f"bns.{bn}.running_mean",
                        "var": f"bns.{bn}.running_var"}[param]
            return f"basis__{n}" if param == "basis" else f"params_.{n}__{param}"
        if op == "batchnorm":
            return {"gamma": f"{n}.weight", "beta": f"{n}.bias", "mean": f"{n}.running_mean",
                    "var": f"{n}.running_var"}[param]
        return {"W": f"{n}.weight", "b": f"{n}.bias"}.get(param, f"{n}.{param}")

    def has(self, L, param, op) -> bool:
        return self.key(L, param, op) in self.t

    def get(self, i: int, L: dict, param: str, op: str, shape: tuple, what: str, optional=False):
        """The tensor of ``param`` with exactly ``shape`` (scalars: () or (1,)), float."""
        k = self.key(L, param, op)
        shown = self.display.get(k, k)
        if k not in self.t:
            if optional:
                return None
            raise SpecError(self.path, f"missing tensor '{shown}' ({what}, shape {list(shape)})", L["name"], i, shown)
        a = self.t[k]
        self.used.add(k)
        if a.dtype.kind not in "fiu":
            raise SpecError(self.path, f"tensor '{shown}' has dtype {a.dtype}, expected a float array",
                            L["name"], i, shown)
        if tuple(a.shape) != tuple(shape) and not (shape == () and a.shape == (1,)):
            raise SpecError(self.path, f"tensor '{shown}' has shape {list(a.shape)}, expected {list(shape)} "
                                       f"({what})", L["name"], i, shown)
        return a.reshape(shape) if a.dtype.kind == "f" else a.astype(np.float64).reshape(shape)


def _conv_weight(tens: _Tensors, i, L, C, O, k, g):
    if tens.fmt == "tensorpack":
        w = tens.get(i, L, "W", "conv", (k, k, C // g, O),
                     f"HWIO conv weights: kernel {k}, {C} input channels / {g} group(s), {O} outputs")
        return np.ascontiguousarray(w.transpose(3, 2, 0, 1))
    return tens.get(i, L, "W", "conv", (O, C // g, k, k), f"OIHW conv weights, {g} group(s)")


def _dense_weight(tens: _Tensors, i, L, in_shape, F, layout):
    n_in = int(np.prod(in_shape))
    if tens.fmt != "tensorpack":
        return tens.get(i, L, "W", "dense", (F, n_in), "dense weights [out, in], in in C,H,W order")
    w = tens.get(i, L, "W", "dense", (n_in, F), f"dense weights [in, out], in in {layout.upper()} "
                                                f"flatten order of the {list(in_shape)} input")
    if layout == "nhwc" and len(in_shape) == 3:
        C, H, W = in_shape
        return np.ascontiguousarray(w.reshape(H, W, C, F).transpose(3, 2, 0, 1).reshape(F, n_in))
    return np.ascontiguousarray(w.T)


def _fill(spec: dict, tens: _Tensors, layout: str = "nhwc") -> tuple:
    """Spec layers with biases resolved, and the spec-named arrays they need."""
    arrays, notes, defaulted = {}, [], []
    src = tens.layer_source or tens.path
    for i, L, in_shape in _walk(spec, src):
        op, n = L.get("op"), L["name"]
        if op in ("conv", "dense"):
            if op == "conv":
                C = in_shape[0]
                O, k, g = L["out_channels"], L["kernel"], L.get("groups", 1)
                arrays[f"{n}/W"] = _conv_weight(tens, i, L, C, O, k, g)
            else:
                O = L["out_features"]
                arrays[f"{n}/W"] = _dense_weight(tens, i, L, in_shape, O, layout)
            bias = L.get("bias", False)
            if bias is None:                                  # --arch: as the checkpoint says
                bias = tens.has(L, "b", op)
                L["bias"] = bias
            if bias:
                arrays[f"{n}/b"] = tens.get(i, L, "b", op, (O,), "bias")
            elif tens.has(L, "b", op):
                k_ = tens.key(L, "b", op)
                raise SpecError(tens.path, f"unexpected tensor '{tens.display.get(k_, k_)}': the layer list "
                                           f"says bias: false", n, i, tens.display.get(k_, k_))
            wq = L.get("weight_quant") or {}
            if wq.get("type") == "ttq":
                arrays[f"{n}/Wp"] = tens.get(i, L, "Wp", op, (), "TTQ positive scale")
                arrays[f"{n}/Wn"] = tens.get(i, L, "Wn", op, (), "TTQ negative scale")
            elif wq.get("type") == "lq":
                arrays[f"{n}/basis"] = tens.get(i, L, "basis", op, (int(wq["bits"]), O),
                                                "LQ-Nets weight basis [bits, out]")
        elif op == "batchnorm":
            C = in_shape[0]
            arrays[f"{n}/mean"] = tens.get(i, L, "mean", op, (C,), "batchnorm moving mean")
            arrays[f"{n}/var"] = tens.get(i, L, "var", op, (C,), "batchnorm moving variance")
            missing = []
            for p, fill in (("gamma", 1.0), ("beta", 0.0)):
                a = tens.get(i, L, p, op, (C,), f"batchnorm {p}", optional=True)
                if a is None:
                    missing.append(p)
                    a = np.full(C, fill, dtype=arrays[f"{n}/mean"].dtype)
                arrays[f"{n}/{p}"] = a
            if missing:
                defaulted.append(f"{n} ({'/'.join(missing)})")
        elif op == "quant_act" and isinstance(L.get("quant"), dict) and L["quant"].get("type") == "lq":
            arrays[f"{n}/basis"] = tens.get(i, L, "basis", op, (int(L["quant"]["bits"]),),
                                            "LQ-Nets activation basis")
    if defaulted:
        notes.append(f"batchnorm gamma/beta not in the checkpoint (tensorpack use_scale/use_bias False, torch "
                     f"affine=False), set to 1/0: {', '.join(defaulted)}")
    return arrays, notes


_TP_TRAINING = re.compile(r"^(global_step|learning_rate|beta[12]_power)$|/(Adam(_1)?|Momentum|RMSProp(_1)?)$")


def _check_unused(tens: _Tensors, spec: dict) -> list:
    """Error on tensors no layer took; tensorpack training state is ignored (and reported)."""
    unused = [k for k in tens.t if k not in tens.used]
    ignored = []
    if tens.fmt == "tensorpack":
        layer_names = {L["name"] for L in spec["layers"]}
        for k in list(unused):
            head = k.split("/")[0]
            if _TP_TRAINING.search(k) or (k.endswith("/EMA") and head not in layer_names
                                          and not re.search(r"/(mean|variance)/EMA$", k)):
                ignored.append(tens.display[k])
                unused.remove(k)
    else:
        unused = [k for k in unused if not k.endswith(".num_batches_tracked")]
    if unused:
        shown = [tens.display.get(k, k) for k in sorted(unused)]
        raise SpecError(tens.path, f"unexpected tensor(s) {shown[:6]}{' ...' if len(shown) > 6 else ''}: no "
                                   f"layer of the {'architecture' if tens.fmt == 'tensorpack' else 'layer list'} "
                                   f"takes them (wrong --arch/--spec, or names that do not follow the "
                                   f"{tens.fmt} conventions)", field=shown[0])
    if ignored:
        return [f"ignored {len(ignored)} training-state tensor(s): {', '.join(sorted(ignored)[:6])}"
                f"{' ...' if len(ignored) > 6 else ''}"]
    return []


def load_tensorpack_npz(path) -> tuple:
    """``{normalized key: array}`` and ``{normalized: original}`` of a tensorpack ``.npz``."""
    path = _input_file(path)
    if not zipfile.is_zipfile(path):
        with open(path, "rb") as f:
            head = f.read(6)
        what = ("a single .npy array" if head.startswith(b"\x93NUMPY") else
                "a pickled Python object, which is never loaded" if head[:1] == b"\x80" else "not a zip archive")
        raise SpecError(path, f"not a tensorpack .npz archive ({what}); expected named tensors like 'conv1/W:0'")
    from bitplane.core.errors import InputError
    from bitplane.core.fileio import load_npz
    try:
        arrays = load_npz(path, "tensorpack .npz archive")        # headers and sizes checked first
    except InputError as e:
        msg = str(e)
        raise SpecError(path, msg[len(f"{path}: "):] if msg.startswith(f"{path}: ") else msg) from None
    tensors, display = {}, {}
    for k, a in arrays.items():
        n = k[:-2] if k.endswith(":0") else k
        if n in tensors:
            raise SpecError(path, f"tensor '{n}' appears twice (as '{display[n]}' and '{k}')", field=k)
        tensors[n], display[n] = a, k
    return tensors, display


def _torch_load_reason(e: Exception) -> str:
    """The one informative sentence of a torch.load failure (its advice to disable the safe
    loader is deliberately not repeated)."""
    msg = " ".join(str(e).split())
    if "WeightsUnpickler error:" in msg:
        msg = msg.split("WeightsUnpickler error:", 1)[1].strip()
        m = re.match(r"Unsupported global: GLOBAL (\S+)", msg)
        if m:
            return f"UnpicklingError: it pickles a Python object ({m.group(1)}), which is never unpickled"
    msg = re.split(r"\.\s| Check the documentation| Please (?:use|file)", msg)[0].rstrip(".")
    return f"{type(e).__name__}: {msg[:200]}"


def load_state_dict(path) -> dict:
    """``{key: float64 array}`` from a PyTorch checkpoint, loaded with ``weights_only=True``."""
    torch = _optional_module("torch", "importing a PyTorch state_dict")
    path = _input_file(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any failure of the safe loader means "not loadable as data"
        raise SpecError(path, f"not a PyTorch checkpoint of plain tensors (read with torch.load "
                              f"weights_only=True; nothing in it is ever executed): {_torch_load_reason(e)}") from None
    sd = obj
    if isinstance(obj, dict):
        for key in ("state_dict", "model"):
            if isinstance(obj.get(key), dict):
                sd = obj[key]
                break
    if not isinstance(sd, dict) or not sd:
        raise SpecError(path, f"expected a state_dict (a mapping of names to tensors, bare or under "
                              f"'state_dict'/'model'), got {type(obj).__name__}")
    keys = list(sd)
    if all(isinstance(k, str) and k.startswith("module.") for k in keys):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    out = {}
    for k, v in sd.items():
        if not isinstance(k, str):
            raise SpecError(path, f"state_dict key {k!r} is not a string")
        if not isinstance(v, torch.Tensor):
            raise SpecError(path, f"entry '{k}' is a {type(v).__name__}, not a tensor", field=k)
        if v.layout != torch.strided or v.is_quantized or v.is_complex() or v.dtype == torch.bool:
            raise SpecError(path, f"tensor '{k}' ({v.dtype}, {v.layout}) is not a plain real tensor", field=k)
        out[k] = v.detach().to(torch.float64).cpu().numpy()
    return out


def _fold_imagenet_norm(spec: dict, arrays: dict, src) -> str:
    """Fold ``(pixel - 255*mean_c) / (255*std_c)`` (BGR) into the first (valid) conv."""
    L = spec["layers"][0]
    if L.get("op") != "conv" or L.get("padding", "valid") != "valid" or spec["input"]["shape"][0] != 3:
        raise InputError(f"{src}: --imagenet-norm needs a first conv layer without padding on a 3-channel input "
                         f"(folding the normalisation is exact only then)")
    n, scale = L["name"], float(spec["input"].get("scale", 1.0))
    mean = np.array(IMAGENET_MEAN_RGB[::-1]) * 255.0
    std = np.array(IMAGENET_STD_RGB[::-1]) * 255.0
    W = arrays[f"{n}/W"].astype(np.float64)
    # value v = code*scale; the network saw (code - mean_c)/std_c = v/(scale*std_c) - mean_c/std_c
    a, c = 1.0 / (scale * std), mean / std
    b = arrays.get(f"{n}/b", np.zeros(W.shape[0])).astype(np.float64)
    arrays[f"{n}/b"] = b - np.einsum("ochw,c->o", W, c)
    arrays[f"{n}/W"] = W * a[None, :, None, None]
    L["bias"] = True
    return (f"folded ImageNet mean/std normalisation (BGR channel order, as tensorpack's ImageNetModel) into "
            f"{n}'s weights and bias")


def import_checkpoint(fmt: str, path, *, arch: str | None = None, layers: str | None = None, bits=None,
                      layout: str | None = None, input_scale: float | None = None,
                      imagenet_norm: bool = False, float_last_act: bool = False) -> Imported:
    """tensorpack ``.npz`` or PyTorch ``state_dict`` -> :class:`Imported`."""
    path = Path(path)
    if (arch is None) == (layers is None):
        raise InputError(f"{fmt} import needs exactly one of --arch ({'|'.join(ARCHS)}) or --spec LAYERS.yaml")
    if bits is not None and arch is None:
        raise InputError("--bits only applies with --arch (a --spec layer list names its own quantizers)")
    if layout is not None and fmt != "tensorpack":
        raise InputError("--layout only applies to tensorpack archives")
    if float_last_act and arch is None:
        raise InputError("--float-last-act only applies with --arch")
    if imagenet_norm and arch not in (None, "alexnet"):
        raise InputError("--imagenet-norm applies to the alexnet architecture (or a --spec layer list)")
    layout = layout or "nhwc"
    notes = []
    if arch is not None:
        if arch not in ARCHS:
            raise InputError(f"--arch must be one of {', '.join(ARCHS)}, got {arch!r}")
        wb, ab = parse_bits(bits) if bits is not None else DEFAULT_ARCH_BITS[arch]
        spec = arch_spec(arch, wb, ab, float_last_act)
        notes.append(_last_act_note(arch, float_last_act))
        layer_source = None
    else:
        spec = load_layer_list(layers)
        layer_source = Path(layers)
    if input_scale is not None:
        if not (input_scale > 0 and math.isfinite(input_scale)):
            raise InputError(f"--input-scale must be a positive number, got {input_scale}")
        spec["input"]["scale"] = float(input_scale)
    if fmt == "tensorpack":
        tensors, display = load_tensorpack_npz(path)
    else:
        tensors, display = load_state_dict(path), None
    tens = _Tensors(path, fmt, tensors, display)
    tens.layer_source = layer_source
    arrays, more = _fill(spec, tens, layout)
    notes += more
    notes += _check_unused(tens, spec)
    for L in spec["layers"]:
        if L.get("op") in ("conv", "dense") and L.get("bias") is None:
            L["bias"] = False
    if imagenet_norm:
        notes.append(_fold_imagenet_norm(spec, arrays, path))
    if fmt == "state-dict":
        notes.insert(0, f"{'bitplane QNet' if tens.qnet else 'conventional'} state_dict names")
    return Imported(path, fmt, spec, arrays, notes, layer_source)


# =========================================================================== QONNX

