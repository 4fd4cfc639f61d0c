"""Model importers: ``bitplane import FORMAT SRC -o OUT.yaml`` (issue #6).

Each importer turns a trained model into a network spec (YAML + NPZ, DESIGN.md section 2)
that :func:`gen.spec.load_network` accepts. Files are only ever *read as data*: tensorpack
archives with ``np.load(..., allow_pickle=False)``, PyTorch checkpoints with
``torch.load(..., map_location="cpu", weights_only=True)``, ONNX with the protobuf parser
(external tensor data is refused, nothing is evaluated). The spec is written to a
temporary folder, validated with ``load_network``, and only then moved into place (YAML
and NPZ each by an atomic rename), so a failed import leaves nothing behind.

tensorpack DoReFa-Net ``.npz`` (``--arch svhn|alexnet``, ``--bits W,A``)
    The layer list is the seed's: ``svhn`` is ``examples/svhn-dorefa-w1a2.yaml`` (40x40x3,
    ``svhn-digit-dorefa.py``), ``alexnet`` is ``alexnet-dorefa.py`` (224x224x3): conv0 96@12x12
    stride 4 valid, act0; conv1 256@5x5 groups 2, bn1, pool1 3/2 same, act1; conv2 384@3x3,
    bn2, pool2 3/2 same, act2; conv3 384@3x3 groups 2, bn3, act3; conv4 256@3x3 groups 2,
    bn4, pool4 3/2 valid, act4; fc0 4096, bnfc0, actfc0; fc1 4096, bnfc1, actfc1; fct 1000.
    Activations are ``clip01`` (AlexNet) / ``cabs`` (SVHN) + DoReFa A-bit; weights are
    DoReFa W-bit (``W=t``: TTQ with ``<layer>/Wp``, ``<layer>/Wn``) except the first conv and
    the last dense layer (unquantized, as in the seeds: int8 in hardware). BatchNorm eps 1e-4.

    Layer names are tensorpack's variable scopes unchanged (conv0..., bn1..., bnfc0, fc0,
    fct); the parameter-free layers get spec names (pool*, act*). Keys (a trailing ``:0`` is
    optional): ``<conv>/W`` HWIO (for ``split=2`` convs I = C/groups) -> ``W`` OIHW;
    ``<fc>/W`` ``[in, out]`` -> ``W`` ``[out, in]``, rows reordered from the NHWC flatten
    order of the preceding feature map to C,H,W (``--layout nchw`` for checkpoints of the
    channels_first version of ``alexnet-dorefa.py``, whose rows are already C,H,W);
    ``<layer>/b`` -> ``b`` (a layer has a bias exactly when the archive has one: tensorpack
    versions differ for conv0/fc0/fc1); ``<bn>/mean/EMA`` -> ``mean``,
    ``<bn>/variance/EMA`` -> ``var``, ``<bn>/gamma`` -> ``gamma``, ``<bn>/beta`` -> ``beta``.
    gamma/beta are absent when the BatchNorm had ``use_scale``/``use_bias`` False; they
    are then 1/0 (the import says so). Training state (``global_step``, ``learning_rate``,
    optimizer slots, moving summaries such as ``cost/EMA``) is ignored and reported; any
    other tensor the architecture does not take is an error.

    Two seed details need a choice: the seeds apply the last nonlinearity (``cabs`` after
    bn6, ``clip01`` after bnfc1) *without* quantizing it; hardware needs quantized
    activations, so by default act6/actfc1 quantize it with A bits like the other
    activations (logits differ slightly from tensorpack's); ``--float-last-act`` keeps it
    as an unquantized ``act`` layer instead (exact float path, not runnable in hardware).
    Input preprocessing is not in the archive: the input is ``code * --input-scale``
    (default 1/255; old SVHN scripts divide by 256). ``--imagenet-norm`` folds
    ``ImageNetModel``'s per-channel mean/std normalisation (BGR order) into conv0's weights
    and bias, exact because conv0 pads nothing.

PyTorch ``state_dict`` (``--arch`` or ``--spec LAYERS.yaml``)
    A bare state dict or one under ``'state_dict'``/``'model'``; a common ``module.``
    prefix is dropped. Conventional names: ``<conv>.weight`` OIHW, ``<layer>.bias``,
    ``<dense>.weight`` ``[out, in]`` (C,H,W order), ``<bn>.weight/bias/running_mean/
    running_var`` (``num_batches_tracked`` ignored; weight/bias absent = affine False),
    ``<layer>.Wp/.Wn`` (TTQ), ``<layer>.basis`` (LQ-Nets). bitplane's own
    :class:`train.nn.QNet` names are recognised too: ``params_.<layer>__W|b|Wp|Wn``,
    ``bns.<bn>.*``, ``basis__<layer>``. With ``--arch`` biases follow the checkpoint; with
    ``--spec`` they follow the spec. Every tensor must be used.

QONNX (Brevitas ``export_qonnx``), a sequential graph of this subset:
    ====================  =========================================================
    Quant on the input    unsigned, zero point 0 -> ``input: {bits, scale}``
    Quant on weights      -> ``int`` k-bit weights; the dequantized values become ``W``,
                          accepted only if the spec's rule (per output channel
                          ``s = max|W|/(2^(k-1)-1)``) reproduces them, i.e. every channel's
                          largest code is +-(2^(k-1)-1): per-channel max-abs scaling
                          (Brevitas ``Int*WeightPerChannelFloat``). Otherwise rejected.
    BipolarQuant weights  scale 1 -> ``sign``; one positive scale s -> DoReFa 1-bit
                          (BWN, ``W = s*sign``, whose mean|W| is s); per-channel: rejected
    Quant on activations  unsigned, zero point 0, not narrow, ROUND, per tensor ->
                          ``uint`` (scale, k); after ``Clip(0,1)`` with scale 1/(2^k-1)
                          -> ``dorefa`` k-bit ``clip01``
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
    Identity, Transpose   only when trivial (identity permutation)
    ====================  =========================================================
    Anything else (another op, a branch, a per-channel activation scale, signed
    activations, ...) is rejected with an error naming the node and its op type. Spec
    layers are named by kind and order: conv0.., fc0.., bn0.., act0.., pool0...
"""
from __future__ import annotations

import math
import os
import re
import shutil
import sys
import tempfile
import zipfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from .errors import BitplaneError, InputError, SpecError
from .quant import fake_quant_weights
from .spec import load_network, window_geometry

FORMATS = ("tensorpack", "state-dict", "qonnx")
ARCHS = ("svhn", "alexnet")
DEFAULT_ARCH_BITS = {"svhn": (1, 2), "alexnet": (1, 2)}
DEFAULT_INPUT_SCALE = 1 / 255
BN_EPS = 1e-4                                   # argscope(BatchNorm, epsilon=1e-4) in both seeds
IMAGENET_MEAN_RGB = (0.485, 0.456, 0.406)       # tensorpack ImageNetModel.image_preprocess
IMAGENET_STD_RGB = (0.229, 0.224, 0.225)
PARAM_FIELDS = ("W", "b", "gamma", "beta", "mean", "var", "Wp", "Wn", "basis")


@dataclass
class Imported:
    """A spec (without ``weights``) and its arrays, before writing."""
    source: Path
    fmt: str
    spec: dict
    arrays: dict
    notes: list = field(default_factory=list)
    layer_source: Path | None = None        # --spec file, for errors in the layer list


# =========================================================================== architectures

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
    try:
        doc = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise SpecError(path, "file not found") from None
    except OSError as e:
        raise SpecError(path, f"cannot read: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise SpecError(path, f"invalid YAML: {getattr(e, 'problem', e)}") from None
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


def _input_file(path) -> Path:
    """``path`` as a Path, or a clear error when it is not an existing file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    return path


def _optional_module(name: str, what: str):
    """Import an optional dependency (installed by ``make install-train``) or say how to get it."""
    import importlib
    try:
        return importlib.import_module(name)
    except ImportError:
        raise BitplaneError(f"{what} needs the '{name}' package: `make install-train` "
                            f"(pip install {'torch==2.13.0' if name == 'torch' else name})") from None


def load_tensorpack_npz(path) -> tuple:
    """``{normalized key: array}`` and ``{normalized: original}`` of a tensorpack ``.npz``."""
    path = _input_file(path)
    if not zipfile.is_zipfile(path):
        with open(path, "rb") as f:
            head = f.read(6)
        what = ("a single .npy array" if head.startswith(b"\x93NUMPY") else
                "a pickled Python object, which is never loaded" if head[:1] == b"\x80" else "not a zip archive")
        raise SpecError(path, f"not a tensorpack .npz archive ({what}); expected named tensors like 'conv1/W:0'")
    try:
        z = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        raise SpecError(path, f"not a tensorpack .npz archive: {e}") from None
    if not isinstance(z, np.lib.npyio.NpzFile):
        raise SpecError(path, "not a tensorpack .npz archive; expected named tensors like 'conv1/W:0'")
    tensors, display = {}, {}
    with z:
        for k in z.files:
            try:
                a = z[k]
            except ValueError as e:
                raise SpecError(path, f"tensor '{k}' holds pickled Python objects, which are never loaded ({e})",
                                field=k) from None
            except (OSError, zipfile.BadZipFile, EOFError) as e:
                raise SpecError(path, f"tensor '{k}' is unreadable: {e}", field=k) from None
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

_STD_DOMAINS = ("", "ai.onnx")
_QONNX_DOMAINS = ("qonnx.custom_op.general", "finn.custom_op.general", "onnx.brevitas", "finn")
_ROUND = {"ROUND": np.rint, "CEIL": np.ceil, "FLOOR": np.floor}


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
        if signed:
            raise self.err(node, "signed activation quantization has no spec quantizer (activations are "
                                 "unsigned uint/dorefa, bipolar sign or LQ-Nets)")
        if narrow:
            raise self.err(node, "narrow-range unsigned activations (0..2^k-2) have no spec quantizer")
        if mode != "ROUND":
            raise self.err(node, f"activation rounding_mode {mode}: only ROUND (half to even) matches the spec")
        if not 1 <= bits <= 16:
            raise self.err(node, f"{bits}-bit activations are out of range 1..16")
        return float(np.asarray(scale).reshape(-1)[0]), bits

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
            oh, ow = (H - k) // s + 1, (W - k) // s + 1
        elif auto in ("NOTSET", ""):
            pads = list(attrs.get("pads", [0, 0, 0, 0]))
            if len(pads) != 4:
                raise self.err(node, f"pads {pads}: only 2-D pads are supported")
            t, l, b, r = pads
            rnd = (lambda v: -(-v // s)) if ceil_mode else (lambda v: v // s)
            oh, ow = rnd(H + t + b - k) + 1, rnd(W + l + r - k) + 1
            if ceil_mode:                      # the last window must start inside the input or its left pad
                oh -= int((oh - 1) * s >= H + t)
                ow -= int((ow - 1) * s >= W + l)
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
        while cur not in self.outputs:
            users = [n for n in self.consumers.get(cur, []) if id(n) not in self.done]
            if not users:
                raise SpecError(self.path, f"tensor '{cur}' is not the graph output but nothing consumes it")
            if len(users) > 1:
                raise self.err(users[1], f"tensor '{cur}' feeds {len(users)} nodes "
                                         f"({', '.join(_label(u) for u in users)}); only sequential graphs map "
                                         f"to a spec")
            node = users[0]
            if node.input[0] != cur:
                raise self.err(node, f"the activation '{cur}' must be its first input")
            op = node.op_type
            std = node.domain in _STD_DOMAINS
            custom = node.domain in _QONNX_DOMAINS
            if not (std or custom) or (custom and op not in ("Quant", "BipolarQuant", "MultiThreshold")) or (
                    std and op not in ("Conv", "Gemm", "MatMul", "BatchNormalization", "MaxPool", "Relu", "Clip",
                                       "Flatten", "Reshape", "Transpose", "Identity")):
                raise self.err(node, f"op '{op}' (domain '{node.domain}') is outside the supported QONNX subset "
                                     f"(Quant, BipolarQuant, MultiThreshold, Conv, Gemm, MatMul, "
                                     f"BatchNormalization, MaxPool, Relu, Clip(0,1), Flatten, Reshape, trivial "
                                     f"Transpose/Identity)")
            if len([o for o in node.output if o]) != 1:
                raise self.err(node, "only single-output nodes are supported")
            a = self.attrs(node)
            C = cur_shape[0]
            spatial = len(cur_shape) == 3 and cur_shape[1] * cur_shape[2] > 1
            if pending is not None and op not in ("Quant", "BipolarQuant", "MultiThreshold", "MaxPool"):
                raise self.err(pending[1], f"{pending[0]} must be followed by an activation quantizer (Quant, "
                                           f"MultiThreshold), found {_label(node)}; unquantized activations have "
                                           f"no spec form")
            if op in ("Conv", "MaxPool") and (len(cur_shape) != 3 or flat):
                raise self.err(node, f"needs a feature map, got shape {list(cur_shape)}")
            if op in ("BatchNormalization", "MultiThreshold") and flat and spatial:
                raise self.err(node, "acts per feature on a flattened feature map; the spec's per-channel form "
                                     "cannot express it")

            if op == "Quant" and not self.layers and pending is None:
                scale, bits = self.act_quant_params(node)
                in_bits, in_scale = bits, scale
            elif op == "Quant":
                scale, bits = self.act_quant_params(node)
                nonlin = pending[0] if pending else "none"
                m = float((1 << bits) - 1)
                if nonlin == "clip01" and math.isclose(scale * m, 1.0, rel_tol=1e-6):
                    q = {"type": "dorefa", "bits": bits}
                else:
                    q = {"type": "uint", "bits": bits, "scale": scale}
                self.layers.append({"name": self.new_name("act"), "op": "quant_act", "nonlin": nonlin, "quant": q})
                pending = None
            elif op == "BipolarQuant":
                s = self.need_const(node, node.input[1], "scale")
                if np.size(s) != 1 or float(np.reshape(s, -1)[0]) != 1.0:
                    raise self.err(node, f"bipolar activations with scale {np.reshape(s, -1)[:4].tolist()}: only "
                                         f"scale 1 maps to the spec's sign activations")
                if pending is not None:
                    raise self.err(pending[1], f"{pending[0]} before a BipolarQuant makes every value +1")
                if not self.layers:
                    raise self.err(node, "the network input must be unsigned codes, not bipolar")
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
                if wq:
                    L["weight_quant"] = wq
                self.layers.append(L)
                self.arrays[f"{n}/W"] = W
                if b is not None:
                    self.arrays[f"{n}/b"] = b
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
                if wq:
                    L["weight_quant"] = wq
                self.layers.append(L)
                self.arrays[f"{n}/W"] = W
                if b is not None:
                    self.arrays[f"{n}/b"] = b
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
        if in_scale is None:
            in_scale = self.input_scale_opt if self.input_scale_opt is not None else DEFAULT_INPUT_SCALE
            self.notes.append(f"no input quantizer in the graph: the input is uint8 codes * {in_scale:g} "
                              f"(--input-scale)")
        elif self.input_scale_opt is not None and not math.isclose(self.input_scale_opt, in_scale, rel_tol=1e-6):
            raise InputError(f"{self.path}: --input-scale {self.input_scale_opt:g} contradicts the graph's input "
                             f"quantizer (scale {in_scale:g})")
        spec = {"name": None, "input": {"shape": [int(v) for v in shape], "bits": in_bits, "scale": in_scale},
                "layers": self.layers}
        return Imported(self.path, "qonnx", spec, self.arrays, self.notes)

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
        return _QonnxGraph(path, model, input_scale).run()
    except (TypeError, ValueError, KeyError, IndexError) as e:
        # attribute or tensor of an unexpected type/shape somewhere in a hand-made graph
        raise SpecError(path, f"malformed graph for the supported QONNX subset ({type(e).__name__}: {e})") from None


# =========================================================================== writing

def _store(a):
    a = np.asarray(a)
    return a if a.dtype in (np.float32, np.float64) else a.astype(np.float64)


def _valid_name(name: str) -> bool:
    return bool(name) and name.replace("-", "_").replace(".", "_").isidentifier()


def write_imported(imp: Imported, out_yaml, name: str | None = None) -> dict:
    """Validate with :func:`load_network` in a temporary folder, then move YAML + NPZ into place."""
    out_yaml = Path(out_yaml)
    npz = out_yaml.with_suffix(".npz")
    if npz == out_yaml:
        raise InputError(f"{out_yaml}: the output must be a .yaml file (the weights go to a .npz beside it)")
    for p in (out_yaml, npz):
        if p.exists() and p.resolve() == imp.source.resolve():
            raise InputError(f"{p}: writing there would overwrite the model being imported; choose another -o")
    if name is not None and not _valid_name(name):
        raise InputError(f"--name {name!r}: a spec name is letters, digits, '-', '_' and '.', not starting "
                         f"with a digit")
    spec_name = name or imp.spec.get("name")
    if not spec_name:
        spec_name = re.sub(r"[^A-Za-z0-9_.-]+", "-", out_yaml.stem).strip("-.")
        spec_name = spec_name if _valid_name(spec_name) else f"net-{spec_name}".rstrip("-")
    spec = {"name": spec_name, "weights": npz.name, "input": imp.spec["input"], "layers": imp.spec["layers"]}
    header = f"# imported from {imp.source.name} ({imp.fmt}) by `bitplane import`\n"
    text = header + yaml.safe_dump(spec, sort_keys=False, default_flow_style=None, width=110)
    arrays = {k: _store(v) for k, v in imp.arrays.items()}
    with tempfile.TemporaryDirectory(prefix="bitplane-import-") as td:
        ty, tn = Path(td) / out_yaml.name, Path(td) / npz.name
        ty.write_text(text)
        with open(tn, "wb") as f:
            np.savez(f, **arrays)
        try:
            net = load_network(ty)
        except SpecError as e:
            tensor_field = e.field in PARAM_FIELDS
            src = imp.source if tensor_field or imp.layer_source is None else imp.layer_source
            raise SpecError(src, f"the imported spec is invalid: {e.detail}", e.layer, e.index, e.field) from None
        out_yaml.parent.mkdir(parents=True, exist_ok=True)
        for src, dst in ((tn, npz), (ty, out_yaml)):
            tmp = dst.parent / f".{dst.name}.{os.getpid()}.tmp"
            try:
                shutil.copyfile(src, tmp)
                os.replace(tmp, dst)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
    return {"name": net.name, "yaml": out_yaml, "npz": npz, "layers": len(net.layers),
            "params": int(sum(np.asarray(a).size for a in arrays.values())),
            "input": list(net.input_shape), "output": list(net.output_shape)}


# =========================================================================== CLI

def detect_format(path) -> str:
    """``tensorpack`` (an .npz), ``state-dict`` (a torch.save file) or ``qonnx`` (anything else)."""
    path = _input_file(path)
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
        except (zipfile.BadZipFile, OSError) as e:
            raise SpecError(path, f"unreadable zip archive: {e}") from None
        if any(n == "data.pkl" or n.endswith("/data.pkl") for n in names):
            return "state-dict"
        if names and all(n.endswith(".npy") for n in names):
            return "tensorpack"
        raise SpecError(path, "a zip archive that is neither an .npz nor a PyTorch checkpoint")
    with open(path, "rb") as f:
        head = f.read(2)
    return "state-dict" if head[:1] == b"\x80" else "qonnx"


def import_model(fmt: str, src, *, arch=None, layers=None, bits=None, layout=None, input_scale=None,
                 imagenet_norm=False, float_last_act=False) -> Imported:
    if fmt == "auto":
        fmt = detect_format(src)
    if fmt == "qonnx":
        for opt, v in (("--arch", arch), ("--spec", layers), ("--bits", bits), ("--layout", layout)):
            if v is not None:
                raise InputError(f"{opt} does not apply to QONNX (the graph defines the network)")
        if imagenet_norm or float_last_act:
            raise InputError(f"--{'imagenet-norm' if imagenet_norm else 'float-last-act'} does not apply to QONNX")
        return import_qonnx(src, input_scale)
    if fmt not in FORMATS:
        raise InputError(f"unknown format {fmt!r}; supported: {', '.join(FORMATS)}, auto")
    return import_checkpoint(fmt, src, arch=arch, layers=layers, bits=bits, layout=layout,
                             input_scale=input_scale, imagenet_norm=imagenet_norm, float_last_act=float_last_act)


def add_parser(sub) -> None:
    p = sub.add_parser(
        "import", help="import a trained model (tensorpack DoReFa-Net .npz, PyTorch state_dict, QONNX) as a spec",
        description="Write a network spec (YAML + NPZ) from a trained model. tensorpack and state-dict need "
                    "the architecture (--arch) or a layer list to fill (--spec); QONNX graphs define it.")
    p.add_argument("format", choices=FORMATS + ("auto",), metavar="FORMAT",
                   help="tensorpack | state-dict | qonnx | auto (detect from the file)")
    p.add_argument("source", metavar="SRC", help="the model file (.npz, .pt/.pth, .onnx)")
    p.add_argument("-o", "--output", required=True, metavar="OUT.yaml", help="spec to write (weights: OUT.npz)")
    p.add_argument("--arch", choices=ARCHS, help="the DoReFa-Net seed architecture of the checkpoint")
    p.add_argument("--spec", dest="layers", metavar="LAYERS.yaml", help="a spec whose layer list to fill")
    p.add_argument("--bits", metavar="W,A", help="with --arch: weight,activation bits (W may be 't' for TTQ); "
                                                 "default 1,2")
    p.add_argument("--name", help="spec name (default: the architecture's, the layer list's, or OUT's stem)")
    p.add_argument("--layout", choices=("nhwc", "nchw"),
                   help="tensorpack: feature-map layout the model was trained in, which sets the row order of "
                        "the first dense layer's weights (default nhwc)")
    p.add_argument("--input-scale", type=float, metavar="S",
                   help="input value = code * S (default 1/255, or the QONNX input quantizer's scale)")
    p.add_argument("--imagenet-norm", action="store_true",
                   help="fold tensorpack ImageNetModel's mean/std input normalisation into the first conv")
    p.add_argument("--float-last-act", action="store_true",
                   help="with --arch: keep the seed's unquantized activation before the last layer (an 'act' "
                        "layer: exact float path, not runnable in hardware) instead of quantizing it")
    p.set_defaults(fn=cmd_import)


def cmd_import(args) -> int:
    imp = import_model(args.format, args.source, arch=args.arch, layers=args.layers, bits=args.bits,
                       layout=args.layout, input_scale=args.input_scale, imagenet_norm=args.imagenet_norm,
                       float_last_act=args.float_last_act)
    info = write_imported(imp, Path(args.output), args.name)
    for note in imp.notes:
        print(f"note: {note}", file=sys.stderr)
    print(f"{info['name']}: imported {imp.fmt} {args.source} -> {info['yaml']} + {info['npz'].name}: "
          f"{info['layers']} layers, {info['params']:,} parameters, input {info['input']} -> output {info['output']}")
    return 0
