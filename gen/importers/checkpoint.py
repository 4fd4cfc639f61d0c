"""tensorpack DoReFa-Net archives and PyTorch state_dicts into the seeds' layer lists (see the package doc)."""
from __future__ import annotations

import math
import re
import warnings
import zipfile
from pathlib import Path

import numpy as np
import yaml

from bitplane.core.errors import InputError, NotSupportedError, SpecError
from bitplane.core.fileio import load_npz
from bitplane.core.yamlio import load_yaml
from bitplane.gen.golden import Golden
from bitplane.gen.quant import TERNARY, ActQuant, parse_bits as quant_parse_bits
from bitplane.gen.spec import load_network, window_geometry


from .common import Imported, _input_file, _optional_module

ARCHS = ("svhn", "alexnet", "resnet18", "lq-alexnet", "lq-vgg", "lq-resnet18", "lq-vgg-small")
# Published models that are named (so a user learns why) but not imported.
REFUSED_ARCHS = {
    "lq-vgg-small": "microsoft/LQ-Nets cifar10-vgg-small.py feeds conv0 (image - per-pixel mean image) / 128, "
                    "with the CIFAR-10 training set's per-pixel mean (tensorpack dataset.Cifar10."
                    "get_per_pixel_mean()), which the checkpoint does not hold, and zero-pads conv0's input "
                    "after that subtraction: folded into conv0 it is a bias per output position, which a spec "
                    "(per-channel bias, input = code * scale) cannot express; with its default --qa 0 every "
                    "activation is also unquantized (float only)",
}
ACTIVATIONS = ("clip01", "cabs")
DEFAULT_ARCH_BITS = {"svhn": (1, 2), "alexnet": (1, 2), "resnet18": (1, 4), "lq-alexnet": (2, 2),
                     "lq-vgg": (2, 2), "lq-resnet18": (2, 2)}
BN_EPS = 1e-4                                   # argscope(BatchNorm, epsilon=1e-4) in both seeds
TP_BN_EPS = 1e-5                                # tensorpack BatchNorm's default (LQ-Nets keeps it)
IMAGENET_MEAN_RGB = (0.485, 0.456, 0.406)       # tensorpack ImageNetModel.image_preprocess
IMAGENET_STD_RGB = (0.229, 0.224, 0.225)
# What each architecture's published script feeds its first layer (value = code * scale, then
# ImageNet mean/std normalisation where ``norm``), and its feature-map layout (the row order of the
# first dense layer's weights): svhn-digit-dorefa.py divides by 256 in NHWC; alexnet-dorefa.py
# (tensorpack >= 18b19d6d, 2018-05) is an ImageNetModel, channels_first; LQ-Nets' imagenet.py
# is an ImageNetModel (image/255, then mean/std), NCHW.
# resnet-dorefa.py divides by 256 (a plain ModelDesc, NHWC; its global average pool leaves a
# 1x1 map, so the layout does not matter). ``size``: the script's input height = width.
ARCH_INPUT = {"svhn": {"scale": 1 / 256, "norm": False, "layout": "nhwc", "size": 40},
              "alexnet": {"scale": 1 / 255, "norm": True, "layout": "nchw", "size": 224},
              "resnet18": {"scale": 1 / 256, "norm": False, "layout": "nhwc", "size": 224},
              "lq-alexnet": {"scale": 1 / 255, "norm": True, "layout": "nchw", "size": 227},
              "lq-vgg": {"scale": 1 / 255, "norm": True, "layout": "nchw", "size": 224},
              "lq-resnet18": {"scale": 1 / 255, "norm": True, "layout": "nchw", "size": 224}}
# The first conv and its output channels in the script: a checkpoint with 1/k of them is the
# script's model at width multiplier 1/k (every layer but the classifier divided by k).
# (name, output channels, kernel size) of the first conv
ARCH_WIDTH = {"svhn": ("conv0", 48, 5), "alexnet": ("conv0", 96, 12), "resnet18": ("conv1", 64, 7),
              "lq-alexnet": ("conv1", 96, 11), "lq-vgg": ("conv1", 96, 7), "lq-resnet18": ("conv0", 64, 7)}
# resnet-dorefa.py multiplies the global average pool's output by 49 ("a bug in our model
# design": the sum over its 7x7 map at 224x224) before fct: folded into fct's weights.
RESNET18_GAP_MULT = 49
# The layers around the unquantized activation that feeds the last layer: (first layer, the
# activation, last layer) per architecture.
ARCH_ENDS = {"svhn": ("conv0", "act6", "fc1"), "alexnet": ("conv0", "actfc1", "fct"),
             "resnet18": ("conv1", "lastact", "fct"),
             "lq-alexnet": ("conv1", "fc7_act", "fc8"), "lq-vgg": ("conv1", "fc6_act", "fc7"),
             "lq-resnet18": ("conv0", "group3_bnlast_act", "linear")}
PRECISION_LADDER = (4, 6, 8, 10, 12, 16)        # candidate bits of the first/last layers, cheapest first
# candidate fixed-point widths of LQ-Nets' learned bases (the `lq` quantizers' coef_bits, at most
# 24: gen/spec.py), cheapest first; a wider one also widens the accumulators (gen/lower.py refuses
# above MAX_ACC_BITS), so the first rung the lowering refuses ends the search
COEF_LADDER = (12, 14, 16, 18, 20, 24)
DEFAULT_LAST_ACT_BITS = 8                       # without --calib: the last activation's hardware quantizer
# an auto last activation takes the rung's bits up to this: more levels than 2^8 would be a threshold
# unit of 2^k - 1 thresholds per channel (and cost the lowering minutes per candidate)
MAX_AUTO_LAST_ACT_BITS = 8
AGREEMENT_TARGET = 0.999
CALIB_PIXELS = 256 * 40 * 40                    # default synthetic calibration set: 256 SVHN-sized images


def parse_bits(text: str, arch: str = "svhn") -> tuple:
    """``"W,A"`` -> ``(W, A)`` (:func:`bitplane.gen.quant.parse_bits`): W 1..16 or ``'t'``
    (ternary, TTQ), A 1..16; LQ-Nets: both 1..8, no ternary."""
    lq = arch.startswith("lq")
    wb, ab = quant_parse_bits(text, "WA", top=8 if lq else 16)
    if wb == TERNARY and lq:
        raise InputError("--bits: TTQ weights ('t') are a DoReFa-Net option, not LQ-Nets'")
    return wb, ab


def _auto_or_int(text, top: int, allow_float: bool):
    """``None`` -> None, ``auto`` -> 'auto', ``float`` (if allowed) -> 'float', ``K`` in 2..top
    -> int K; anything else -> ``False`` (the caller names its option in the error)."""
    if text is None:
        return None
    t = str(text).strip().lower()
    if t == "auto" or (t == "float" and allow_float):
        return t
    try:
        k = int(t)
    except ValueError:
        return False
    return k if 2 <= k <= top else False


def parse_precision(text, opt: str, allow_float: bool = True):
    """``None`` (not given) -> None, ``auto`` -> 'auto', ``float`` -> 'float', ``K`` -> int K
    (2..16) for --first-bits & co."""
    v = _auto_or_int(text, 16, allow_float)
    if v is False:
        raise InputError(f"{opt} must be auto, {'float or ' if allow_float else ''}an integer 2..16, got {text!r}")
    return v


def parse_coef_bits(text):
    """``--coef-bits``: ``None`` (not given) -> None, ``auto`` -> 'auto', ``K`` -> int K (2..24,
    the spec's range of ``coef_bits``)."""
    v = _auto_or_int(text, 24, allow_float=False)
    if v is False:
        raise InputError(f"--coef-bits must be auto or an integer 2..24, got {text!r}")
    return v


def arch_spec(arch: str, wbits, abits: int, float_last_act: bool = False, activation: str = "clip01",
              width_div: int = 1, size: int | None = None) -> dict:
    """The published script's layer list. ``bias: None`` = "exactly when the checkpoint has one".

    ``activation`` is the DoReFa nonlinearity (``clip01`` since tensorpack f5cf2e14, ``cabs``
    in older svhn-digit-dorefa.py). The activation before the last layer is the script's
    unquantized nonlinearity: an ``act`` layer (float path only) here; :func:`import_checkpoint`
    replaces it with a hardware quantizer unless ``float_last_act``. Layers may carry ``_tp``,
    the checkpoint's variable scope when it is not the layer name (dropped before writing).
    ``width_div``: every layer's channels/units but the classifier's divided by it (the
    script's model at width multiplier 1/width_div); ``size``: the input height = width
    (default: the script's)."""
    size = size or ARCH_INPUT.get(arch, {}).get("size")
    if arch == "lq-alexnet":
        spec = _lq_alexnet_spec(wbits, abits)
        spec["input"]["shape"] = [3, size, size]
        return _divide_widths(spec, width_div)
    if arch == "lq-vgg":
        return _divide_widths(_lq_vgg_spec(wbits, abits, size), width_div)
    if arch == "resnet18":
        return _divide_widths(_resnet18_spec(wbits, abits, activation, size), width_div)
    if arch == "lq-resnet18":
        return _divide_widths(_lq_resnet18_spec(wbits, abits, size), width_div)
    if activation not in ACTIVATIONS:
        raise InputError(f"--activation must be one of {', '.join(ACTIVATIONS)}, got {activation!r}")
    wq = {"type": "ttq"} if wbits == TERNARY else {"type": "dorefa", "bits": wbits}
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
    act = lambda n: {"name": n, "op": "quant_act", "nonlin": activation, "quant": dict(aq)}  # noqa: E731
    last = lambda n: {"name": n, "op": "act", "nonlin": activation}                       # noqa: E731
    if arch == "svhn":
        layers = [conv("conv0", 48, 5, "valid", quant=False), pool("pool0", 2, 2, "same"), act("act0"),
                  conv("conv1", 64, 3, "same"), bn("bn1"), act("act1"),
                  conv("conv2", 64, 3, "same"), bn("bn2"), pool("pool1", 2, 2, "same"), act("act2"),
                  conv("conv3", 128, 3, "valid"), bn("bn3"), act("act3"),
                  conv("conv4", 128, 3, "same"), bn("bn4"), act("act4"),
                  conv("conv5", 128, 3, "valid"), bn("bn5"), act("act5"),
                  conv("conv6", 512, 5, "valid"), bn("bn6"), last("act6"),
                  dense("fc1", 10, quant=False)]
        shape = [3, 40, 40]
    elif arch == "alexnet":
        layers = [conv("conv0", 96, 12, "valid", stride=4, quant=False), act("act0"),
                  conv("conv1", 256, 5, "same", groups=2), bn("bn1"), pool("pool1", 3, 2, "same"), act("act1"),
                  conv("conv2", 384, 3, "same"), bn("bn2"), pool("pool2", 3, 2, "same"), act("act2"),
                  conv("conv3", 384, 3, "same", groups=2), bn("bn3"), act("act3"),
                  conv("conv4", 256, 3, "same", groups=2), bn("bn4"), pool("pool4", 3, 2, "valid"), act("act4"),
                  dense("fc0", 4096), bn("bnfc0"), act("actfc0"),
                  dense("fc1", 4096), bn("bnfc1"), last("actfc1"),
                  dense("fct", 1000, quant=False)]
        shape = [3, 224, 224]
    else:
        raise InputError(f"--arch must be one of {', '.join(ARCHS)}, got {arch!r}")
    w = "t" if wbits == "t" else wbits
    shape = [shape[0], size, size]
    return _divide_widths({"name": f"{arch}-dorefa-w{w}a{abits}",
                           "input": {"shape": shape, "bits": 8, "scale": ARCH_INPUT[arch]["scale"]},
                           "layers": layers}, width_div)


def _divide_widths(spec: dict, div: int) -> dict:
    """The spec at width multiplier ``1/div``: out_channels/out_features of every layer but
    the last (the classifier) divided by ``div`` (each must be a multiple of it)."""
    if div == 1:
        return spec
    for L in spec["layers"][:-1]:
        for key in ("out_channels", "out_features"):
            if key in L:
                if L[key] % div:
                    raise InputError(f"width multiplier 1/{div}: layer '{L['name']}' has {L[key]} channels, not "
                                     f"a multiple of {div}")
                L[key] //= div
    spec["name"] += f"-width1_{div}"
    return spec


def _resnet18_spec(wbits, abits: int, activation: str, size: int) -> dict:
    """tensorpack ``examples/DoReFa-Net/resnet-dorefa.py`` (W,A,G = 1,4,32), a graph network.

    ``conv1`` 7x7/2 after ``tf.pad [3, 2]`` (explicit asymmetric padding), float weights with
    bias; ``tf.pad(.., 'SYMMETRIC')`` 1 + ``pool1`` max 3/2 valid (mirror padding with the
    edge); four groups of two ``resblock`` s. A block whose stride is 2 or which follows
    ``pool1`` average-pools by its stride (1x1 after pool1: the identity, left out), then
    ``bn`` + activate, and both its projection ``shortcut`` (1x1) and its stem read that
    activation; the other blocks add their input (the float residual stream) to the stem
    (``bn`` + activate + ``c3x3a`` + ``stembn`` + activate + ``c3x3b``, convs 3x3 SAME,
    stride 1). Then ``lastbn`` + the unquantized clip (``lastact``), ``gap`` and ``fct``
    (float weights, x49 folded in by the importer). All convs but conv1 and fct: DoReFa W-bit."""
    wq = {"type": "ttq"} if wbits == "t" else {"type": "dorefa", "bits": wbits}
    aq = {"type": "dorefa", "bits": abits}

    def conv(n, tp, O, k, inputs=None):
        d = {"name": n, "_tp": tp, "op": "conv", "out_channels": O, "kernel": k, "stride": 1,
             "padding": "same", "bias": None, "weight_quant": dict(wq)}
        if inputs:
            d["inputs"] = inputs
        return d
    bn = lambda n, tp, inputs=None: dict({"name": n, "_tp": tp, "op": "batchnorm", "eps": BN_EPS},  # noqa: E731
                                         **({"inputs": inputs} if inputs else {}))
    act = lambda n: {"name": n, "op": "quant_act", "nonlin": activation, "quant": dict(aq)}  # noqa: E731
    layers = [{"name": "conv1", "op": "conv", "out_channels": 64, "kernel": 7, "stride": 2, "padding": [3, 2, 3, 2],
               "bias": None},
              {"name": "pool1", "op": "maxpool", "kernel": 3, "stride": 2, "padding": [1, 1, 1, 1],
               "pad_mode": "symmetric"}]
    prev = "pool1"
    for g, ch, stride in (("conv2", 64, 1), ("conv3", 128, 2), ("conv4", 256, 2), ("conv5", 512, 2)):
        for b in (1, 2):
            s, tp = f"{g}blk{b}", f"{g}blk{b}"
            project = b == 1                     # stride 2, or after pool1 (the script's 'pool1' in x.name)
            if project and stride != 1:
                layers.append({"name": f"{s}_pool", "inputs": prev, "op": "avgpool", "kernel": stride,
                               "stride": stride, "padding": "valid"})
                layers.append(bn(f"{s}_bn", f"{tp}/bn"))
            else:
                layers.append(bn(f"{s}_bn", f"{tp}/bn", inputs=prev))
            layers.append(act(f"{s}_act"))
            if project:
                layers.append(conv(f"{s}_shortcut", f"{tp}/shortcut", ch, 1))
            layers += [conv(f"{s}_c3x3a", f"{tp}/c3x3a", ch, 3, inputs=f"{s}_act"), bn(f"{s}_stembn", f"{tp}/stembn"),
                       act(f"{s}_stemact"), conv(f"{s}_c3x3b", f"{tp}/c3x3b", ch, 3),
                       {"name": f"{s}_add", "op": "add",
                        "inputs": [f"{s}_shortcut" if project else prev, f"{s}_c3x3b"]}]
            prev = f"{s}_add"
    layers += [bn("lastbn", "lastbn"), {"name": "lastact", "op": "act", "nonlin": activation},
               {"name": "gap", "op": "global_avgpool"},
               {"name": "fct", "op": "dense", "out_features": 1000, "bias": None}]
    w = "t" if wbits == "t" else wbits
    return {"name": f"resnet18-dorefa-w{w}a{abits}",
            "input": {"shape": [3, size, size], "bits": 8, "scale": ARCH_INPUT["resnet18"]["scale"]},
            "layers": layers}


def _lq_resnet18_spec(wbits: int, abits: int, size: int) -> dict:
    """microsoft/LQ-Nets ``resnet_model.py`` pre-activation ResNet-18 (``imagenet.py --mode
    preact --depth 18``: ``preresnet_group`` + ``preresnet_basicblock``, shortcut type B).

    ``conv0`` 7x7/2 SAME (float, ``nl=BNReLU``: ``conv0/bn``), ReLU, ``pool0`` max 3/2 SAME.
    Group ``g`` (64/128/256/512, stride 1/2/2/2), blocks 0 and 1: block 0 of group0
    (``first``) quantizes its input (``quant1``) and keeps the unquantized input as the
    identity shortcut; block 0 of the others (``no_preact``) reads the previous group's
    ``quant_last`` codes for both the stem and a 1x1 ``convshortcut`` (+ its ``bn``); block 1
    (``bnrelu``) is ``preact`` BN + ReLU + ``quant1`` with the residual stream as shortcut.
    Stem: ``conv1`` (stride) + ``bn`` + ReLU + ``quant2``, ``conv2`` + ``bn``. After each
    group ``bnlast`` BN + ReLU, then ``quant_last`` (not after group3: the unquantized
    activation before the classifier), ``gap``, ``linear`` (float, bias). Weights ``lq``
    W-bit (``<conv>/weight_quant/basis``), activations ``lq`` A-bit
    (``<scope>/ActivationQuantization/basis``); BatchNorm eps 1e-5 (tensorpack's default)."""
    wq = {"type": "lq", "bits": wbits}
    aq = {"type": "lq", "bits": abits}

    def conv(n, tp, O, k, stride=1, inputs=None, quant=True):
        d = {"name": n, "_tp": tp, "op": "conv", "out_channels": O, "kernel": k, "stride": stride,
             "padding": "same", "bias": False}
        if quant:
            d["weight_quant"] = dict(wq)
        if inputs:
            d["inputs"] = inputs
        return d

    def bn(n, tp, inputs=None):
        return dict({"name": n, "_tp": tp, "op": "batchnorm", "eps": TP_BN_EPS}, **({"inputs": inputs} if inputs else {}))

    def qa(n, tp, inputs=None):
        return dict({"name": n, "_tp": tp, "op": "quant_act", "nonlin": "relu", "quant": dict(aq)},
                    **({"inputs": inputs} if inputs else {}))
    layers = [conv("conv0", "conv0", 64, 7, 2, quant=False), bn("conv0_bn", "conv0/bn"),
              {"name": "conv0_relu", "op": "act", "nonlin": "relu"},
              {"name": "pool0", "op": "maxpool", "kernel": 3, "stride": 2, "padding": "same"}]
    prev = "pool0"
    for gi, (ch, stride) in enumerate(((64, 1), (128, 2), (256, 2), (512, 2))):
        g = f"group{gi}"
        for b in (0, 1):
            s, tp = f"{g}_block{b}", f"{g}/block{b}"
            if b == 0 and stride == 1:                       # 'first'
                layers.append(qa(f"{s}_quant1", f"{tp}/quant1", inputs=prev))
                stem_in, short = f"{s}_quant1", prev
            elif b == 0:                                     # 'no_preact': prev are codes
                stem_in, short = prev, None
            else:                                            # 'bnrelu'
                layers += [bn(f"{s}_preact_bn", f"{tp}/preact/bn", inputs=prev), qa(f"{s}_quant1", f"{tp}/quant1")]
                stem_in, short = f"{s}_quant1", prev
            layers += [conv(f"{s}_conv1", f"{tp}/conv1", ch, 3, stride if b == 0 else 1, inputs=stem_in),
                       bn(f"{s}_conv1_bn", f"{tp}/conv1/bn"), qa(f"{s}_quant2", f"{tp}/quant2"),
                       conv(f"{s}_conv2", f"{tp}/conv2", ch, 3), bn(f"{s}_conv2_bn", f"{tp}/conv2/bn")]
            if short is None:
                layers += [conv(f"{s}_convshortcut", f"{tp}/convshortcut", ch, 1, stride, inputs=prev),
                           bn(f"{s}_convshortcut_bn", f"{tp}/convshortcut/bn")]
                short = f"{s}_convshortcut_bn"
            layers.append({"name": f"{s}_add", "op": "add", "inputs": [f"{s}_conv2_bn", short]})
            prev = f"{s}_add"
        layers.append(bn(f"{g}_bnlast_bn", f"{g}/bnlast/bn"))
        if gi < 3:
            layers.append(qa(f"{g}_quant_last", f"{g}/quant_last"))
        else:
            layers.append({"name": f"{g}_bnlast_act", "op": "act", "nonlin": "relu"})
        prev = layers[-1]["name"]
    layers += [{"name": "gap", "op": "global_avgpool"},
               {"name": "linear", "op": "dense", "out_features": 1000, "bias": True}]
    return {"name": f"lq-resnet18-w{wbits}a{abits}",
            "input": {"shape": [3, size, size], "bits": 8, "scale": ARCH_INPUT["lq-resnet18"]["scale"]},
            "layers": layers}


def _lq_alexnet_spec(wbits: int, abits: int) -> dict:
    """microsoft/LQ-Nets ``alexnet_model.py`` (``imagenet.py --mode alexnet``, 227x227 input).

    ``Conv2DQuant`` layers keep their scope names; the ``nl``/``BNReLUQuant`` sub-scopes
    become spec layers ``<scope>_bn`` / ``<scope>_act`` whose ``_tp`` is the checkpoint scope
    (``conv3/bn``, ``bnquant2/quant``). fc6/fc7 are ``Conv2DQuant(fc=False)`` convolutions;
    their batchnorms have no gamma/beta (``use_scale=False, use_bias=False``); fc7's ReLU is
    unquantized (the activation before the last layer)."""
    wq = {"type": "lq", "bits": wbits}
    aq = {"type": "lq", "bits": abits}

    def conv(n, O, k, pad, stride=1, quant=True, bias=False):
        d = {"name": n, "op": "conv", "out_channels": O, "kernel": k, "stride": stride, "padding": pad,
             "bias": bias}
        if quant:
            d["weight_quant"] = dict(wq)
        return d

    def bnq(scope, bn_scope, act_scope):
        return [{"name": f"{scope}_bn", "_tp": f"{bn_scope}/bn", "op": "batchnorm", "eps": TP_BN_EPS,
                 **({"_nhwc_bn": True} if scope.startswith("fc") else {})},
                {"name": f"{scope}_act", "_tp": f"{act_scope}/quant", "op": "quant_act", "nonlin": "relu",
                 "quant": dict(aq)}]

    pool = lambda n: {"name": n, "op": "maxpool", "kernel": 3, "stride": 2, "padding": "valid"}  # noqa: E731
    layers = [conv("conv1", 96, 11, "valid", stride=4, quant=False), pool("pool1"), *bnq("bnquant2", "bnquant2", "bnquant2"),
              conv("conv2", 256, 5, "same"), pool("pool2"), *bnq("bnquant3", "bnquant3", "bnquant3"),
              conv("conv3", 384, 3, "same"), *bnq("conv3", "conv3", "conv3"),
              conv("conv4", 384, 3, "same"), *bnq("conv4", "conv4", "conv4"),
              conv("conv5", 256, 3, "same"), pool("pool5"), *bnq("bnquant6", "bnquant6", "bnquant6"),
              conv("fc6", 4096, 6, "valid", bias=True), *bnq("fc6", "fc6", "fc6"),
              conv("fc7", 4096, 1, "valid", bias=True),
              {"name": "fc7_bn", "_tp": "fc7/bn", "op": "batchnorm", "eps": TP_BN_EPS, "_nhwc_bn": True},
              {"name": "fc7_act", "op": "act", "nonlin": "relu"},
              {"name": "fc8", "op": "dense", "out_features": 1000, "bias": True}]
    return {"name": f"lq-alexnet-w{wbits}a{abits}",
            "input": {"shape": [3, 227, 227], "bits": 8, "scale": ARCH_INPUT["lq-alexnet"]["scale"]},
            "layers": layers}


def lq_vgg_fc5_kernel(size: int) -> int:
    """The map size before LQ-Nets VGG's ``fc5`` (conv1 SAME stride 2, four 2x2 valid pools):
    7 at the script's 224x224, which is fc5's kernel there (a 7x7 VALID conv over the whole map)."""
    m = -(-size // 2)
    for _ in range(4):
        m //= 2
    return m


def _lq_vgg_spec(wbits: int, abits: int, size: int) -> dict:
    """microsoft/LQ-Nets ``vgg_model.py`` "VGG-Variant" (``imagenet.py --mode vgg``, 224x224).

    ``conv1`` 96@7x7 stride 2 SAME, float, no bias, ``nl=tf.nn.relu`` (``conv1_relu``),
    ``pool1`` 2/2 valid, ``BNReLUQuant('bnquant2_0')``; per stage ``s`` = 2, 3, 4 three
    ``Conv2DQuant`` 3x3 SAME (256/512/512), the first two with ``nl=getBNReLUQuant``
    (``conv<s>_<i>/bn``, ``conv<s>_<i>/quant``), the third without; ``pool<s>`` 2/2 valid,
    ``BNReLUQuant('bnquant<s+1>_0')`` (after stage 4: ``bnquant5``). ``fc5`` 4096@7x7 VALID +
    bias, ``getfcBNReLUQuant``; ``fc6`` 4096@1x1 + bias, ``getfcBNReLU`` (its ReLU is the
    unquantized activation before the classifier); ``fc7`` FullyConnected 1000. The fc
    batchnorms have no gamma/beta and normalise axis 3 (``data_format='NHWC'``): on the
    script's NCHW ``[N, 4096, 1, 1]`` tensors that is one statistic for all channels (``[1]``
    variables), on NHWC ones per channel; both are read (``_nhwc_bn``). At a reduced
    ``size`` fc5's kernel is the map before it (:func:`lq_vgg_fc5_kernel`, 7 at 224)."""
    wq = {"type": "lq", "bits": wbits}
    aq = {"type": "lq", "bits": abits}
    k5 = lq_vgg_fc5_kernel(size)
    if k5 < 1:
        raise InputError(f"--input-size {size} is too small for lq-vgg: conv1 (stride 2) and four 2x2 pools leave "
                         f"no map for fc5 (at least 32)")

    def conv(n, O, k, pad="same", stride=1, quant=True, bias=False):
        d = {"name": n, "op": "conv", "out_channels": O, "kernel": k, "stride": stride, "padding": pad,
             "bias": bias}
        if quant:
            d["weight_quant"] = dict(wq)
        return d

    def bnq(scope, nhwc=False):
        return [{"name": f"{scope}_bn", "_tp": f"{scope}/bn", "op": "batchnorm", "eps": TP_BN_EPS,
                 **({"_nhwc_bn": True} if nhwc else {})},
                {"name": f"{scope}_act", "_tp": f"{scope}/quant", "op": "quant_act", "nonlin": "relu",
                 "quant": dict(aq)}]

    pool = lambda n: {"name": n, "op": "maxpool", "kernel": 2, "stride": 2, "padding": "valid"}  # noqa: E731
    layers = [conv("conv1", 96, 7, stride=2, quant=False), {"name": "conv1_relu", "op": "act", "nonlin": "relu"},
              pool("pool1"), *bnq("bnquant2_0")]
    for st, ch in ((2, 256), (3, 512), (4, 512)):
        layers += [conv(f"conv{st}_1", ch, 3), *bnq(f"conv{st}_1"), conv(f"conv{st}_2", ch, 3), *bnq(f"conv{st}_2"),
                   conv(f"conv{st}_3", ch, 3), pool(f"pool{st}"), *bnq(f"bnquant{st + 1}" + ("_0" if st < 4 else ""))]
    layers += [conv("fc5", 4096, k5, "valid", bias=True), *bnq("fc5", nhwc=True),
               conv("fc6", 4096, 1, "valid", bias=True),
               {"name": "fc6_bn", "_tp": "fc6/bn", "op": "batchnorm", "eps": TP_BN_EPS, "_nhwc_bn": True},
               {"name": "fc6_act", "op": "act", "nonlin": "relu"},
               {"name": "fc7", "op": "dense", "out_features": 1000, "bias": True}]
    return {"name": f"lq-vgg-w{wbits}a{abits}",
            "input": {"shape": [3, size, size], "bits": 8, "scale": ARCH_INPUT["lq-vgg"]["scale"]},
            "layers": layers}


def load_layer_list(path) -> dict:
    """A ``--spec`` file: a spec YAML whose layers are to be filled (``weights`` ignored)."""
    path = Path(path)
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
    shapes, out, prev = {"input": tuple(shape)}, [], "input"
    for i, L in enumerate(spec["layers"]):
        ins = L.get("inputs", prev)
        ins = [ins] if isinstance(ins, str) else ins
        if not isinstance(ins, list) or not ins or not all(isinstance(v, str) and v in shapes for v in ins):
            raise err(f"must name 'input' or earlier layers, got {ins!r}", i, L, "inputs")
        cur = shapes[ins[0]]
        out.append((i, L, cur))
        op = L.get("op")
        if op in ("conv", "maxpool", "avgpool"):
            if len(cur) != 3:
                raise err(f"{op} needs a [C,H,W] input but gets {list(cur)}", i, L, "op")
            C, H, W = cur
            k = intf(i, L, "kernel")
            s = intf(i, L, "stride", 1 if op == "conv" else k)
            pad = L.get("padding", "valid")
            ok_list = (isinstance(pad, list) and len(pad) == 4
                       and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in pad))
            if pad not in ("same", "valid") and not ok_list and (
                    isinstance(pad, bool) or not isinstance(pad, int) or pad < 0):
                raise err(f"must be 'same', 'valid', a non-negative integer or [top, bottom, left, right], "
                          f"got {pad!r}", i, L, "padding")
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
        elif op == "global_avgpool":
            cur = (cur[0], 1, 1)
        elif op == "concat":
            cur = (sum(shapes[v][0] for v in ins),) + tuple(cur[1:])
        shapes[L["name"]] = cur
        prev = L["name"]
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
            n = L.get("_tp", n)
            if param == "basis":             # microsoft/LQ-Nets learned_quantization.py
                return f"{n}/ActivationQuantization/basis" if op == "quant_act" else f"{n}/weight_quant/basis"
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
    arrays, notes, defaulted, scalar_bns = {}, [], [], []
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
            bc = C
            mk = tens.key(L, "mean", op)
            if L.get("_nhwc_bn") and len(in_shape) == 3 and mk in tens.t and tuple(tens.t[mk].shape) == (1,):
                # BatchNorm(data_format='NHWC') on an NCHW [N, C, 1, 1] tensor: axis 3, one statistic
                bc = 1
                scalar_bns.append(n)
            per = "" if bc == C else " (one for all channels: axis 3 of an NCHW [N, C, 1, 1] tensor)"
            for p, what in (("mean", "batchnorm moving mean"), ("var", "batchnorm moving variance")):
                arrays[f"{n}/{p}"] = np.broadcast_to(tens.get(i, L, p, op, (bc,), what + per), (C,)).copy()
            missing = []
            for p, fill in (("gamma", 1.0), ("beta", 0.0)):
                a = tens.get(i, L, p, op, (bc,), f"batchnorm {p}{per}", optional=True)
                if a is None:
                    missing.append(p)
                    a = np.full(C, fill, dtype=arrays[f"{n}/mean"].dtype)
                arrays[f"{n}/{p}"] = np.broadcast_to(a, (C,)).copy()
            if missing:
                defaulted.append(f"{n} ({'/'.join(missing)})")
        elif op == "quant_act" and isinstance(L.get("quant"), dict) and L["quant"].get("type") == "lq":
            k = int(L["quant"]["bits"])
            if tens.fmt == "tensorpack":      # LQ-Nets stores it [nbit, 1]
                v = tens.get(i, L, "basis", op, (k, 1), "LQ-Nets activation basis [bits, 1]").reshape(k)
                if np.any(v < 0):
                    shown = tens.display.get(tens.key(L, "basis", op))
                    raise NotSupportedError(f"{tens.path}: layer '{n}' (#{i}), field '{shown}': a negative "
                                            f"activation basis {v.tolist()} (LQ-Nets outputs 0, not its lowest "
                                            f"level, below the first threshold; bitplane's lq levels assume "
                                            f"a non-negative basis)")
                arrays[f"{n}/basis"] = v
            else:
                arrays[f"{n}/basis"] = tens.get(i, L, "basis", op, (k,), "LQ-Nets activation basis")
    if scalar_bns:
        notes.append(f"one batchnorm statistic for all channels (tensorpack BatchNorm(data_format='NHWC') on the "
                     f"NCHW [N, C, 1, 1] output, as LQ-Nets trains by default): {', '.join(scalar_bns)}")
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
        with warnings.catch_warnings():     # torch 2.13 warns of pickle protocols its safe loader may not read;
            # the outcome is reported in one line below (the bad-input standard), not as a warning first
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
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
    """Fold ``(pixel - 255*mean_c) / (255*std_c)`` (BGR) into the first conv.

    The conv then reads raw pixel values. A zero-padded conv padded the *normalised* image
    with 0 (``p`` with a ``pad_value``), i.e. the raw image with ``255*mean_c + 255*std_c*p``
    per channel: that becomes its per-channel ``pad_value`` (in the input's value domain), so
    the float path is the source's exactly; the integer path holds it in fractional planes
    below the input code (:func:`bitplane.gen.lower._conv_padding`)."""
    L = spec["layers"][0]
    if L.get("op") != "conv" or spec["input"]["shape"][0] != 3 or L.get("pad_mode", "constant") != "constant":
        raise NotSupportedError(f"{src}: layer '{L.get('name')}': the ImageNet mean/std normalisation folds only into "
                                f"a first conv (constant padding) on a 3-channel input; --no-imagenet-norm for a "
                                f"checkpoint trained on image/255")
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
    padded = L.get("padding", "valid") not in ("valid", 0, [0, 0, 0, 0])
    how = ""
    if padded:
        p = np.broadcast_to(np.asarray(L.get("pad_value") or 0.0, np.float64), (3,))
        L["pad_value"] = [float(v) for v in (mean + std * p) * scale]
        how = (f"; its padding holds the value the normalised image padded with, per channel: pad_value "
               f"{[round(v, 6) for v in L['pad_value']]} (pixels {[round(v, 4) for v in mean + std * p]})")
    return (f"folded ImageNet mean/std normalisation (BGR channel order, as tensorpack's ImageNetModel) into "
            f"{n}'s weights and bias{how}")


def _load_calibration(path, shape) -> np.ndarray:
    """``--calib``: uint8 input codes ``[N, C, H, W]`` in a ``.npy`` (read without pickle)."""
    path = _input_file(path)
    try:
        x = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise InputError(f"{path}: --calib needs a .npy array of uint8 input codes [N, C, H, W] ({e})") from None
    if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim != 4 or tuple(x.shape[1:]) != tuple(shape) \
            or len(x) == 0:
        got = f"{x.dtype} {list(x.shape)}" if isinstance(x, np.ndarray) else type(x).__name__
        raise InputError(f"{path}: --calib needs uint8 input codes [N, {', '.join(map(str, shape))}] (NCHW, as "
                         f"`bitplane sim --input` takes them), got {got}")
    return x


def synthetic_calibration(shape, n: int, seed: int = 0) -> np.ndarray:
    """``n`` deterministic uint8 images ``[n, C, H, W]``: smooth random colour fields with
    random contrast and a few sharp strokes, spanning the full code range (no data set needed)."""
    rng = np.random.default_rng(seed)
    C, H, W = shape
    out = np.empty((n, C, H, W), np.uint8)
    yy, xx = np.mgrid[0:H, 0:W] / max(H, W)
    for i in range(n):
        img = np.zeros((C, H, W))
        for _ in range(4):                                   # low-frequency cosine fields
            fy, fx, ph = rng.uniform(0, 4), rng.uniform(0, 4), rng.uniform(0, 2 * np.pi)
            img += rng.normal(0, 1, (C, 1, 1)) * np.cos(2 * np.pi * (fy * yy + fx * xx) + ph)
        for _ in range(rng.integers(1, 4)):                  # strokes: bright or dark bars
            cy, cx, r = rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8), rng.uniform(0.03, 0.12)
            ang = rng.uniform(0, np.pi)
            d = np.abs((yy - cy) * np.cos(ang) - (xx - cx) * np.sin(ang))
            inside = (d < r) & (np.hypot(yy - cy, xx - cx) < 0.35)
            img += rng.normal(0, 2, (C, 1, 1)) * inside
        lo, hi = img.min(), img.max()
        img = (img - lo) / (hi - lo + 1e-12)
        a, b = sorted(rng.uniform(0, 255, 2))
        out[i] = np.clip(np.rint(a + (b - a + 40) * img), 0, 255).astype(np.uint8)
    return out


class _Candidates:
    """Variants of one spec that differ only in some layers' fields: the spec is loaded (and
    validated) once; a variant shares its parameters and replaces the changed layers' fields."""

    def __init__(self, spec: dict, arrays: dict):
        import tempfile
        self.spec = spec
        with tempfile.TemporaryDirectory(prefix="bitplane-calib-") as td:
            y = Path(td) / "net.yaml"
            y.write_text(yaml.safe_dump({"name": "calib", "weights": "net.npz", "input": spec["input"],
                                         "layers": spec["layers"]}, sort_keys=False))
            with open(Path(td) / "net.npz", "wb") as f:
                np.savez(f, **arrays)
            self.net = load_network(y)

    def network(self, spec: dict):
        import dataclasses
        layers = []
        for L, d, d0 in zip(self.net.layers, spec["layers"], self.spec["layers"]):
            if d == d0:
                layers.append(L)
                continue
            attrs = dict(d) if d["op"] != L.op else {k: v for k, v in L.attrs.items()
                                                      if k not in ("weight_quant", "quant")}
            for k in ("weight_quant", "quant"):      # the loader's normalized form: {type, bits[, coef_bits, scale]}
                if k in d:
                    attrs[k] = dict(d[k])
            layers.append(dataclasses.replace(L, op=d["op"], attrs=attrs))
        return dataclasses.replace(self.net, layers=layers)


def _with_coef(spec: dict, coef_bits) -> dict:
    """The spec with every ``lq`` quantizer's (weights and activations) ``coef_bits`` set
    (``None``: unchanged)."""
    if coef_bits is None:
        return spec
    out = dict(spec, layers=[])
    for L in spec["layers"]:
        L = dict(L)
        for k in ("weight_quant", "quant"):
            if isinstance(L.get(k), dict) and L[k]["type"] == "lq":
                L[k] = dict(L[k], coef_bits=int(coef_bits))
        out["layers"].append(L)
    return out


def _code_mismatches(g: Golden, float_trace: dict, int_trace: dict) -> int:
    """Activation codes (level indices of every ``quant_act``) where the integer path differs
    from the float path, end to end (a code changed upstream may change more downstream)."""
    n = 0
    layers = {L.name: L for L in g.net.layers}
    for st in g.lowered.stages:
        L = layers.get((getattr(st, "layers", None) or [st.name])[-1])
        if L is not None and L.op == "quant_act" and st.name in int_trace:
            want = ActQuant(L["quant"], L["nonlin"], L.params).encode(float_trace[L.name])
            n += int(np.count_nonzero(want != int_trace[st.name]))
    return n


def _int_decisions(net, calib, float_trace=None):
    """Argmax decisions of the integer path (what the hardware computes) on ``calib``, and its
    activation-code mismatches against ``float_trace`` (the same network's float path; None:
    not counted). Raises NotSupportedError where the lowering refuses the network."""
    g = Golden(net)
    out, trace = g.run_int(calib, trace=True) if float_trace is not None else (g.run_int(calib), None)
    decisions = g.dequantize(out).reshape(len(calib), -1).argmax(1)
    return decisions, None if trace is None else _code_mismatches(g, float_trace, trace)


def _given_coef_note(q) -> str:
    return f"LQ-Nets bases in fixed point: coef_bits {q} for every lq quantizer (given)"


def _with_precision(spec: dict, arch: str, first, last, last_act, act_scale: float | None) -> dict:
    """The spec with the first/last layers' weights and the last activation set: an int
    (``K``), 'float' (weights unquantized: float path exact, implicit int8 in hardware) or
    None (last activation unquantized: float path only)."""
    f, a, l = ARCH_ENDS[arch]
    out = {"name": spec["name"], "input": dict(spec["input"]), "layers": []}
    for L in spec["layers"]:
        L = dict(L)
        if L["name"] in (f, l):
            k = first if L["name"] == f else last
            L.pop("weight_quant", None)
            if k != "float":
                L["weight_quant"] = {"type": "int", "bits": int(k)}
        elif L["name"] == a and last_act is not None:
            nl = L["nonlin"]
            q = ({"type": "dorefa", "bits": int(last_act)} if nl in ACTIVATIONS else
                 {"type": "uint", "bits": int(last_act), "scale": float(act_scale) / ((1 << int(last_act)) - 1)})
            L = {"name": L["name"], "op": "quant_act", "nonlin": nl, "quant": q}
        out["layers"].append(L)
    return out


def _choose_precision(spec, arrays, arch, first, last, last_act, calib, calib_what, coef_bits=None,
                      act_scale=None) -> tuple:
    """Fill the ``auto`` first/last precisions (and, for LQ-Nets, ``coef_bits``) from measurements
    on the **integer path** (what the hardware computes) against the checkpoint's own float
    function (the spec with unquantized first/last weights and last activation), on the
    calibration images ``calib``. Returns (spec, notes).

    ``coef_bits='auto'`` (LQ-Nets): first the cheapest rung of :data:`COEF_LADDER` for every
    ``lq`` quantizer's fixed-point bases, measured with the ``auto`` precisions at the top of
    :data:`PRECISION_LADDER`, whose integer path makes the float path's (of the same spec)
    argmax decisions on >= :data:`AGREEMENT_TARGET` of the images and all its activation codes;
    a rung the lowering refuses (accumulator width) ends the search, as every wider one needs
    wider accumulators too. Without such a rung: of those reaching the target the one with
    the fewest differing codes, else the best agreement, reported. Then the cheapest rung of
    :data:`PRECISION_LADDER` for the ``auto`` precisions (an auto last activation at most
    :data:`MAX_AUTO_LAST_ACT_BITS`) whose integer path reaches the target against the
    checkpoint's function with those coefficients; skipped (top rung kept, reported) when even
    the top rung, measured in the first step, is below it. ``act_scale``: the range of a
    ``uint`` last activation (None: the calibration maximum)."""
    f, a, l = ARCH_ENDS[arch]
    cands = _Candidates(_with_precision(spec, arch, "float", "float", None, None), arrays)
    ref_net = cands.net
    N = len(calib)
    ref_logits, trace = Golden(ref_net).run_float(calib, trace=True)
    ref = ref_logits.reshape(N, -1).argmax(1)
    if act_scale is None:
        # a relu (LQ-Nets) last activation is unbounded: its uint scale covers the calibration maximum
        names = [L.name for L in ref_net.layers]
        act_scale = float(max(np.max(trace[names[names.index(a) - 1]]), 1e-12))
        range_src = f"calibration max {act_scale:.6g}"
    else:
        range_src = "the batchnorm's max beta + 6|gamma|"
    del trace, ref_logits
    auto = [n for n, v in (("first", first), ("last", last), ("last_act", last_act)) if v == "auto"]
    top = PRECISION_LADDER[-1] if auto else None

    def candidate(k, q):
        cand = dict(first=first, last=last, last_act=last_act)
        for n in auto:
            cand[n] = min(k, MAX_AUTO_LAST_ACT_BITS) if n == "last_act" else k
        return _with_coef(_with_precision(spec, arch, cand["first"], cand["last"], cand["last_act"], act_scale),
                          q), cand

    def pct(agree):
        return f"{agree:.2%} ({int(round(agree * N))}/{N})"

    def refusal(e):
        return str(e).split(": ", 1)[-1]

    notes = []
    measured = {}                                        # (k, coef_bits) -> argmax agreement
    q = None if coef_bits == "auto" else coef_bits
    if coef_bits == "auto":
        # the float path does not depend on coef_bits: one run serves every rung
        cand_logits, ft = Golden(cands.network(candidate(top, None)[0])).run_float(calib, trace=True)
        own = cand_logits.reshape(N, -1).argmax(1)
        tried, rows, q = [], [], None
        for qq in COEF_LADDER:
            try:
                got, mism = _int_decisions(cands.network(candidate(top, qq)[0]), calib, ft)
            except NotSupportedError as e:
                tried.append(f"{qq}: refused by the lowering ({refusal(e)})")
                break
            measured[(top, qq)] = float(np.mean(got == ref))
            agree = float(np.mean(got == own))
            rows.append((qq, agree, mism))
            tried.append(f"{qq}: {pct(agree)}, {mism} codes differ")
            if agree >= AGREEMENT_TARGET and mism == 0:
                q = qq
                break
        del ft, cand_logits
        at = f" (with the auto first/last precisions at {top} bits)" if auto else ""
        how = (f"the cheapest of {list(COEF_LADDER)} whose integer path{at} makes the float path's argmax decisions "
               f"on >= {AGREEMENT_TARGET:.1%} of {calib_what} and all its activation codes; tried {'; '.join(tried)}")
        if q is not None:
            notes.append(f"LQ-Nets bases in fixed point: coef_bits {q} chosen for every lq quantizer ({how})")
        elif rows:
            # the fewest code mismatches (the closest to the float function) among those reaching the
            # target, cheapest first; else the best agreement
            ok = [r for r in rows if r[1] >= AGREEMENT_TARGET]
            q = (min(ok, key=lambda r: (r[2], r[0])) if ok else max(rows, key=lambda r: (r[1], -r[2], -r[0])))[0]
            notes.append(f"LQ-Nets bases in fixed point: coef_bits {q} for every lq quantizer ({how}) -- no rung "
                         + ("changes no code: the one with the fewest mismatches reaching the target kept" if ok else
                            f"reaches the target: the best kept, BELOW the {AGREEMENT_TARGET:.1%} target"))
        else:
            q = COEF_LADDER[0]
            notes.append(f"LQ-Nets bases in fixed point: coef_bits {q} for every lq quantizer, NOT measured: "
                         f"{how} -- the integer path cannot run this network")
    elif arch.startswith("lq"):
        notes.append(_given_coef_note(q))
    skip = coef_bits == "auto" and auto and measured.get((top, q), 1.0) < AGREEMENT_TARGET
    tried, chosen = [], None
    for k in ((top,) if skip else PRECISION_LADDER if auto else (None,)):
        cs, cand = candidate(k, q)
        if (k, q) in measured:
            agree = measured[(k, q)]
        else:
            try:
                agree = float(np.mean(_int_decisions(cands.network(cs), calib)[0] == ref))
            except NotSupportedError as e:
                tried.append(f"{k}: refused by the lowering ({refusal(e)})")
                if chosen is None:
                    chosen = (cs, cand, None)
                break
        tried.append(f"{k}: {agree:.2%}")
        chosen = (cs, cand, agree)
        if agree >= AGREEMENT_TARGET:
            break
    cs, cand, agree = chosen
    cap = f" (the last activation at most {MAX_AUTO_LAST_ACT_BITS})" if "last_act" in auto else ""
    if not auto:
        how = "given"
    elif skip:
        how = (f"chosen ({', '.join(auto)} auto: the top of {list(PRECISION_LADDER)}, not searched: with coef_bits "
               f"{q} even the top is below the {AGREEMENT_TARGET:.1%} target)")
    else:
        how = (f"chosen ({', '.join(auto)} auto: cheapest of {list(PRECISION_LADDER)}{cap} reaching "
               f"{AGREEMENT_TARGET:.1%} on the integer path; tried {', '.join(tried)})")
    note = _precision_note(cs, arch, cand["first"], cand["last"], how, range_src)
    if agree is None:
        note += f"; the integer path cannot run it ({tried[-1]}): agreement not measured"
    else:
        note += (f"; argmax agreement of the integer path (hardware) with the checkpoint's float function "
                 f"{pct(agree)} on {calib_what}")
        if agree < AGREEMENT_TARGET:
            note += f" -- BELOW the {AGREEMENT_TARGET:.1%} target even at the highest precision tried"
    notes.append(note)
    return cs, notes


def _precision_note(spec: dict, arch: str, first, last, how: str, range_src: str = "") -> str:
    f, a, l = ARCH_ENDS[arch]

    def show(v, what):
        return f"{what} {'float (float path = the checkpoint; hardware: implicit int8)' if v == 'float' else f'int{v}'}"
    act_L = [L for L in spec["layers"] if L["name"] == a][0]
    q = act_L["quant"]
    act_txt = (f"{a} {q['type']} {q['bits']}-bit"
               + (f" scale {q['scale']:.6g} ({range_src})" if q["type"] == "uint" else ""))
    return (f"first/last-layer precision {how}: {show(first, f + ' weights')}, {show(last, l + ' weights')}, "
            f"{act_txt} in place of the script's unquantized {act_L['nonlin']}")


def _act_range(spec: dict, arrays: dict, arch: str):
    """Without calibration data, the range a ``uint`` quantizer for an unquantized ReLU must
    cover: the batchnorm before it, ``max_c(beta_c + 6 |gamma_c|)`` (6 standard deviations of
    its output on the data it was trained on). ``None`` for clip01/cabs (range [0, 1])."""
    names = [L["name"] for L in spec["layers"]]
    i = names.index(ARCH_ENDS[arch][1])
    if spec["layers"][i]["nonlin"] in ACTIVATIONS:
        return None
    bn = spec["layers"][i - 1]
    if bn.get("op") != "batchnorm":            # pragma: no cover - every --arch has one there
        raise NotSupportedError(f"{arch}: the range of '{names[i]}' needs --calib")
    n = bn["name"]
    return float(np.max(arrays[f"{n}/beta"] + 6 * np.abs(arrays[f"{n}/gamma"])))


def _width_divisor(arch: str, fmt: str, tensors: dict, display, path) -> int:
    """``k`` when the checkpoint is the script's model at width multiplier ``1/k``: its first
    conv is the script's (kernel, 3 input channels) with ``1/k`` of the output channels and
    every layer's width is a multiple of ``k``. Otherwise 1, and the layer walk reports the
    first tensor that does not fit the script."""
    name, full, k = ARCH_WIDTH[arch]
    key = f"{name}/W" if fmt == "tensorpack" else f"{name}.weight"
    a = tensors.get(key)
    if a is None or a.ndim != 4:
        return 1
    shape = tuple(int(v) for v in a.shape)
    have, kernel = (shape[3], shape[:3]) if fmt == "tensorpack" else (shape[0], (shape[2], shape[3], shape[1]))
    if kernel != (k, k, 3) or have < 1 or have >= full or full % have:
        return 1
    try:
        arch_spec(arch, 1, 2, width_div=full // have)
    except InputError:
        return 1
    return full // have


def import_checkpoint(fmt: str, path, *, arch: str | None = None, layers: str | None = None, bits=None,
                      layout: str | None = None, input_scale: float | None = None,
                      imagenet_norm: bool | None = None, float_last_act: bool = False,
                      activation: str | None = None, first_bits=None, last_bits=None, last_act_bits=None,
                      calib=None, input_size: int | None = None, coef_bits=None) -> Imported:
    """tensorpack ``.npz`` or PyTorch ``state_dict`` -> :class:`Imported`.

    With ``--arch`` the published script's semantics are the default (activation, input
    scaling, layout, ImageNet normalisation); the first/last layers' weights and the
    activation the script leaves unquantized get the precision ``first_bits``/``last_bits``/
    ``last_act_bits`` (``'auto'``: calibrated, see :func:`_choose_precision`; not given: auto
    with ``calib``, else float first/last weights and an 8-bit last activation). LQ-Nets
    (``lq-*``): ``coef_bits`` of every ``lq`` quantizer (``'auto'``, the default: chosen by
    :func:`_choose_precision`, which then also chooses the ``auto`` precisions, on synthetic
    images without ``calib``). ``input_size``: the input height = width (default: the
    script's); the width multiplier is read from the first conv's output channels
    (:data:`ARCH_WIDTH`)."""
    path = Path(path)
    if (arch is None) == (layers is None):
        raise InputError(f"{fmt} import needs exactly one of --arch ({'|'.join(ARCHS)}) or --spec LAYERS.yaml")
    if arch is None:
        for opt, v in (("--bits", bits), ("--float-last-act", float_last_act or None), ("--activation", activation),
                       ("--first-bits", first_bits), ("--last-bits", last_bits),
                       ("--last-act-bits", last_act_bits), ("--calib", calib), ("--coef-bits", coef_bits)):
            if v is not None:
                raise InputError(f"{opt} only applies with --arch (a --spec layer list names its own quantizers)")
    if layout is not None and fmt != "tensorpack":
        raise InputError("--layout only applies to tensorpack archives")
    if arch is not None and arch not in ARCHS:
        raise InputError(f"--arch must be one of {', '.join(ARCHS)}, got {arch!r}")
    if arch in REFUSED_ARCHS:
        raise NotSupportedError(f"{path}: --arch {arch}: not imported: {REFUSED_ARCHS[arch]}")
    if imagenet_norm and arch in ("svhn", "resnet18"):
        raise InputError("--imagenet-norm applies to the ImageNet architectures (alexnet, lq-alexnet, lq-vgg, "
                         "lq-resnet18: tensorpack ImageNetModel) or a --spec layer list")
    if activation is not None and arch.startswith("lq"):
        raise InputError("--activation applies to the DoReFa-Net architectures (LQ-Nets uses ReLU)")
    if float_last_act and last_act_bits is not None:
        raise InputError("--float-last-act and --last-act-bits contradict each other")
    first = parse_precision(first_bits, "--first-bits")
    last = parse_precision(last_bits, "--last-bits")
    last_act = parse_precision(last_act_bits, "--last-act-bits", allow_float=False)
    coef = parse_coef_bits(coef_bits)
    lq = arch is not None and arch.startswith("lq")
    if coef is not None and not lq:
        raise InputError(f"--coef-bits applies to the LQ-Nets architectures (lq-alexnet, lq-vgg, lq-resnet18: the "
                         f"fixed point of their learned bases), not {arch}")
    if float_last_act and ("auto" in (first, last, coef) or calib is not None):
        raise InputError("--float-last-act keeps the script's function: no precision to calibrate (drop --calib "
                         "and 'auto')")
    notes = []
    if input_size is not None and (arch is None or isinstance(input_size, bool) or not isinstance(input_size, int)
                                   or input_size < 1):
        raise InputError("--input-size applies with --arch and must be a positive integer"
                         if arch is None else f"--input-size must be a positive integer, got {input_size!r}")
    if fmt == "tensorpack":
        tensors, display = load_tensorpack_npz(path)
    else:
        tensors, display = load_state_dict(path), None
    if arch is not None:
        wb, ab = parse_bits(bits, arch) if bits is not None else DEFAULT_ARCH_BITS[arch]
        div = _width_divisor(arch, fmt, tensors, display, path)
        spec = arch_spec(arch, wb, ab, activation=activation or "clip01", width_div=div, size=input_size)
        if div != 1:
            notes.append(f"width multiplier 1/{div}: {ARCH_WIDTH[arch][0]} has {ARCH_WIDTH[arch][1] // div} output "
                         f"channels (the script: {ARCH_WIDTH[arch][1]}); every layer but the classifier has 1/{div} "
                         f"of the script's channels")
        layer_source = None
        defaults = ARCH_INPUT[arch]
        layout = layout or defaults["layout"]
        imagenet_norm = defaults["norm"] if imagenet_norm is None else imagenet_norm
    else:
        spec = load_layer_list(layers)
        layer_source = Path(layers)
        layout = layout or "nhwc"
    if input_scale is not None:
        if not (input_scale > 0 and math.isfinite(input_scale)):
            raise InputError(f"--input-scale must be a positive number, got {input_scale}")
        spec["input"]["scale"] = float(input_scale)
    calib_codes = _load_calibration(calib, spec["input"]["shape"]) if calib is not None else None
    tens = _Tensors(path, fmt, tensors, display)
    tens.layer_source = layer_source
    arrays, more = _fill(spec, tens, layout)
    notes += more
    notes += _check_unused(tens, spec)
    for L in spec["layers"]:
        L.pop("_tp", None)
        L.pop("_nhwc_bn", None)
        if L.get("op") in ("conv", "dense") and L.get("bias") is None:
            L["bias"] = False
    if imagenet_norm:
        notes.append(_fold_imagenet_norm(spec, arrays, path))
    if arch == "resnet18":
        arrays["fct/W"] = arrays["fct/W"].astype(np.float64) * RESNET18_GAP_MULT
        notes.append(f"the script's tf.multiply({RESNET18_GAP_MULT}) after the global average pool is folded into "
                     f"fct's weights")
    if arch is not None:
        s = spec["input"]["scale"]
        notes.insert(0, f"{arch}: input value = code * {'1/256' if s == 1 / 256 else '1/255' if s == 1 / 255 else s}"
                        f"{', then ImageNet mean/std (folded)' if imagenet_norm else ''}; layout {layout}"
                        + (f"; activation {activation or 'clip01'}" if not arch.startswith("lq") else ""))
        if float_last_act:
            spec = _with_coef(_with_precision(spec, arch, first or "float", last or "float", None, None), coef)
            a = ARCH_ENDS[arch][1]
            notes.append(f"'{a}' keeps the script's unquantized activation (an 'act' layer): the float path is "
                         f"the checkpoint's, but hardware cannot run it")
        elif calib_codes is None and "auto" not in (first, last, last_act, coef) \
                and not (lq and None in (first, last, last_act, coef)):
            # no data to measure on: the first/last weights stay as the checkpoint has them (float
            # path = the script's; hardware: implicit int8), the last activation gets 8 bits
            given = (first, last, last_act)
            first, last, last_act = first or "float", last or "float", last_act or DEFAULT_LAST_ACT_BITS
            spec = _with_coef(_with_precision(spec, arch, first, last, last_act, _act_range(spec, arrays, arch)),
                              coef)
            if lq:
                notes.append(_given_coef_note(coef))
            how = "given" if None not in given else "default (no --calib: not measured)"
            notes.append(_precision_note(spec, arch, first, last, how, "the batchnorm's max beta + 6|gamma|")
                         + "; pass --calib CODES.npy (images of your data) to choose the cheapest precision "
                           "reaching 99.9% argmax agreement")
        else:
            # measured: --calib, an explicit auto, or an LQ-Nets checkpoint (whose bases' fixed point
            # must be chosen for its integer path to make the float function's decisions)
            first, last, last_act = first or "auto", last or "auto", last_act or "auto"
            coef = coef or ("auto" if lq else None)
            act_scale = None
            if calib_codes is None:
                n = max(8, min(256, CALIB_PIXELS // int(np.prod(spec["input"]["shape"][1:]))))
                calib_codes = synthetic_calibration(spec["input"]["shape"], n)
                what = f"{n} synthetic images (out of distribution: pessimistic; --calib for your data)"
                act_scale = _act_range(spec, arrays, arch)      # they say little about the data's range
            else:
                what = f"{len(calib_codes)} images of {calib}"
            spec, more = _choose_precision(spec, arrays, arch, first, last, last_act, calib_codes, what, coef,
                                           act_scale)
            notes += more
    if fmt == "state-dict":
        notes.insert(0, f"{'bitplane QNet' if tens.qnet else 'conventional'} state_dict names")
    return Imported(path, fmt, spec, arrays, notes, layer_source)


# =========================================================================== QONNX

