"""Architectures for ``bitplane train``: spec layer lists for 28x28 grey inputs.

Each quantizer family of the seeds maps onto the spec (docs/design.md section 4):

========  ==========================================  ==========================================
quant     hidden-layer weights (W bits)               activations (A bits)
========  ==========================================  ==========================================
dorefa    ``dorefa`` k=W (k=1 is BWN's E*sign)        ``dorefa`` k=A after ``clip01``
bwn       ``dorefa`` k=1 (W must be 1)                as dorefa
bnn       ``sign`` (W must be 1)                      ``sign`` (A must be 1), padding with -1
ttq       ``ttq`` (W is 't' or 2)                     as dorefa
lq        ``lq`` k=W, per output channel              ``lq`` k=A after ``relu``
========  ==========================================  ==========================================

W=32 leaves weights in float; A=32 uses an unquantized ``act`` (``relu``), which runs on the
float path only (the golden integer path and the hardware refuse it with a clear message).
As in the seeds, the first and the last layer stay at higher precision: they train with
``int`` 8-bit weights (per output channel), or float when W=32. The last layer has a bias and
emits the logits (the hardware's raw accumulators plus the manifest's affine map).

``nin`` and ``resnet20`` are the layer structures of the pytorch DoReFa seed
(``models/cifar/nin_dorefanet.py``: NIN with cfg 192-160-96 / 192-192-192 / 192-192-10, 3x3/2
max and average pools, a final 8x8 average = global average, every conv with a bias;
``resnet_cifar_dorefanet.py``: ResNet-20 of ``Basicneck`` blocks, stages of 3 blocks with
16/32/64 mid and 64/128/256 output channels, a quantized 1x1 projection shortcut where the
stride or width changes, ``bn(conv2 + shortcut)`` then ReLU, global average pool, linear), as
graph specs at the seed's 32x32 input (Fashion-MNIST's 28x28 images zero-padded by 2 on each
side: :func:`pad_input`). Layer names are the seed's module paths (``sequential.1.conv``,
``sequential.1.norm``, ``features.4.conv_shortcut``, ``classifier``, ...), so a ``state_dict``
written by the seed's code maps onto them by name (:mod:`train.seed_import`).

The seed's activation quantizer (``quantize/DoReFaNet.py``) is **dynamic**:
``q_k((tanh(x) / m + 1) / 2)`` with ``m = max|tanh(x)|`` over each batch, at every quantized
conv's input, so it has no fixed integer form. With ``--quant dorefa`` these archs use its
**static** variant, the spec's ``tanh`` activation quantizer (docs/design.md section 4.3): the
same formula with ``m`` frozen into the spec's ``range`` (training normalises by each batch's
maximum as the seed does and keeps a moving average of it, as batchnorm keeps its statistics;
eval mode and the export use that average), placed right after each ReLU (``nonlin: relu``).
Its levels are ``n / (2^A - 1)`` (after a ReLU only the upper half is reached, as in the seed),
and its integer form is the usual per-channel thresholds. Where the seed's structure has no
integer form, the graph differs, and the importer says so: an identity shortcut carries the
quantized codes where the seed carries the unquantized ReLU output; NIN's average pool reads
the codes and the next conv consumes the exact average (gen/graph.py reads it as a wider uint
activation), where the seed quantizes the average again; NIN's last conv reads quantized codes
(the seed's reads the unquantized ReLU output) and keeps its batchnorm but drops the ReLU
before the global average (the output must be unquantized integers, which an unquantized ReLU
has no form for). ResNet-20's classifier reads the global average of the last block's ReLU,
unquantized in the seed; here that ReLU is an 8-bit ``uint`` quantizer with a static scale
(the batch's maximum / 255 in training, its moving average frozen), since the 2-level tanh
codes of a 2-bit activation leave the classifier too little range to train in a short run.
The seed pads its 3x3 convs' quantized inputs with 0, while its levels after a ReLU are all at
least 1/2: every 3x3 conv then sees a frame of zeros around a plateau, and a deep stack of them
(ResNet-20 has 19) learns the border pattern rather than the image; here those convs pad with
the quantizer's value at input 0 (``pad_value``: 2/3 at 2 bits, 8/15 at 4), what a conv on the
unquantized ReLU output would see. The importer keeps the seed's zero padding. The other ``--quant`` families use their own activation quantizer (table
above) at the same places.
"""
from __future__ import annotations

from bitplane.core.errors import InputError
from bitplane.gen.quant import FLOAT_BITS, TERNARY, parse_bits as quant_parse_bits

ARCHS = ("lenet", "tfc", "cnv-small", "nin", "resnet20")
GRAPH_ARCHS = ("nin", "resnet20")          # graph specs (add / average pools)
QUANTS = ("dorefa", "bwn", "bnn", "ttq", "lq")
FLOAT = FLOAT_BITS


class ArchError(ValueError):
    pass


def parse_bits(text: str, quant: str) -> tuple:
    """``'W,A,G'`` (or ``'W,A'``, G=32) -> bits (:func:`bitplane.gen.quant.parse_bits`): ints,
    32 = float, W = ``'t'`` (:data:`~bitplane.gen.quant.TERNARY`) for ternary weights (TTQ)."""
    try:
        w, a, g = quant_parse_bits(text, "WAG", defaults={"G": FLOAT}, float_ok="WAG")
    except InputError as e:
        raise ArchError(str(e)) from None
    if (w == TERNARY) != (quant == "ttq"):
        why = "TTQ weights are ternary (W=t)" if quant == "ttq" else "ternary weights (W=t) are --quant ttq"
        raise ArchError(f"--bits {text!r} does not fit --quant {quant}: {why}")
    rules = {
        "bwn": (w == 1, "BWN has 1-bit weights (W=1)"),
        "bnn": (w == 1 and a == 1, "BNN is sign weights and sign activations (W=1, A=1)"),
        "ttq": (True, ""),
        "lq": (w != TERNARY and w <= 8 and (a <= 8 or a == FLOAT), "LQ-Nets bases have 1..8 bits"),
        "dorefa": (True, ""),
    }
    ok, why = rules[quant]
    if not ok:
        raise ArchError(f"--bits {text!r} does not fit --quant {quant}: {why}")
    if quant in ("ttq", "bnn", "bwn", "lq") and w == FLOAT:
        raise ArchError(f"--bits {text!r}: --quant {quant} quantizes weights; W=32 is --quant dorefa")
    if g != FLOAT and quant != "dorefa":
        raise ArchError(f"--bits {text!r}: gradient quantization (G) is DoReFa's; use G=32 with --quant {quant}")
    return w, a, g


def _weight_quant(quant, w):
    if w == FLOAT:
        return None
    if quant in ("dorefa", "bwn"):
        return {"type": "dorefa", "bits": w}
    if quant == "bnn":
        return {"type": "sign"}
    if quant == "ttq":
        return {"type": "ttq"}
    return {"type": "lq", "bits": w}


def _act(name, quant, a):
    if a == FLOAT:
        return {"name": name, "op": "act", "nonlin": "relu"}
    if quant == "bnn":
        return {"name": name, "op": "quant_act", "nonlin": "none", "quant": {"type": "sign"}}
    if quant == "lq":
        return {"name": name, "op": "quant_act", "nonlin": "relu", "quant": {"type": "lq", "bits": a}}
    return {"name": name, "op": "quant_act", "nonlin": "clip01", "quant": {"type": "dorefa", "bits": a}}


def make_spec(arch: str, quant: str, w: int, a: int, name: str, **seed) -> dict:
    """The spec mapping (no ``weights`` key) of ``arch`` with ``quant`` at W/A bits.

    ``seed`` (graph archs only; :mod:`train.seed_import` sets them from a checkpoint):
    ``in_channels`` (1), ``classes`` (10), ``cfg`` (NIN's eight widths), ``float_edges``
    (first/last layer weights unquantized, as the seed's nn.Conv2d/nn.Linear: float path
    exact, hardware int8) instead of trained int8."""
    if arch not in ARCHS:
        raise ArchError(f"unknown --arch {arch!r}; choose from {', '.join(ARCHS)}")
    if quant not in QUANTS:
        raise ArchError(f"unknown --quant {quant!r}; choose from {', '.join(QUANTS)}")
    if arch in GRAPH_ARCHS:
        layers = _seed_graph(arch, quant, w, a, **seed)
        side = input_size(arch)
        return {"name": name, "input": {"shape": [seed.get("in_channels", 1), side, side], "bits": 8,
                                        "scale": 1.0 / 255.0}, "layers": layers}
    if seed:
        raise ArchError(f"--arch {arch}: {sorted(seed)} only apply to {', '.join(GRAPH_ARCHS)}")
    hid = _weight_quant(quant, w)
    edge = None if w == FLOAT else {"type": "int", "bits": 8}       # first and last layer
    pad = {"pad_value": -1.0} if quant == "bnn" and a != FLOAT else {}
    layers: list[dict] = []

    def conv(i, out, first=False):
        L = {"name": f"conv{i}", "op": "conv", "out_channels": out, "kernel": 3, "stride": 1, "padding": "same",
             "bias": False}
        if not first:
            L.update(pad)
        wq = edge if first else hid
        if wq is not None:
            L["weight_quant"] = dict(wq)
        layers.append(L)
        layers.append({"name": f"bn{i}", "op": "batchnorm", "eps": 1e-4})
        layers.append(_act(f"act{i}", quant, a))

    def dense(i, out, first=False, last=False):
        L = {"name": f"fc{i}", "op": "dense", "out_features": out, "bias": last}
        wq = edge if (first or last) else hid
        if wq is not None:
            L["weight_quant"] = dict(wq)
        layers.append(L)
        if not last:
            layers.append({"name": f"bnf{i}", "op": "batchnorm", "eps": 1e-4})
            layers.append(_act(f"actf{i}", quant, a))

    def pool(i):
        layers.append({"name": f"pool{i}", "op": "maxpool", "kernel": 2, "stride": 2, "padding": "valid"})

    if arch == "lenet":
        conv(0, 16, first=True)
        pool(0)
        conv(1, 32)
        pool(1)
        dense(0, 10, last=True)
    elif arch == "tfc":
        dense(0, 64, first=True)
        dense(1, 64)
        dense(2, 64)
        dense(3, 10, last=True)
    else:  # cnv-small: FINN's CNV pattern, scaled to 28x28
        conv(0, 16, first=True)
        conv(1, 16)
        pool(0)
        conv(2, 32)
        conv(3, 32)
        pool(1)
        dense(0, 64)
        dense(1, 10, last=True)
    return {"name": name, "input": {"shape": [1, 28, 28], "bits": 8, "scale": 1.0 / 255.0}, "layers": layers}


SEED_INPUT = 32                             # the seed's CIFAR input size; 28x28 images are padded


def input_size(arch: str) -> int:
    """Side of the square input ``arch`` is built for (28, or 32 for the seed's graph archs)."""
    return SEED_INPUT if arch in GRAPH_ARCHS else 28


def pad_input(x, size: int):
    """Zero-pad uint8 images ``[N, C, 28, 28]`` centred to ``size`` x ``size`` (28 -> 32: 2 each side)."""
    import numpy as np
    h, w = x.shape[-2:]
    if (h, w) == (size, size):
        return x
    if size < max(h, w) or (size - h) % 2 or (size - w) % 2:
        raise ArchError(f"cannot centre {h}x{w} images in {size}x{size}")
    ph, pw = (size - h) // 2, (size - w) // 2
    return np.pad(x, [(0, 0)] * (x.ndim - 2) + [(ph, ph), (pw, pw)])


LAST_ACT_BITS = 8                           # ResNet-20's classifier input (unquantized in the seed)


def _seed_act(name, quant, a, last=False):
    if quant == "dorefa" and a != FLOAT and last:
        return {"name": name, "op": "quant_act", "nonlin": "relu",
                "quant": {"type": "uint", "bits": LAST_ACT_BITS, "scale": 1.0 / ((1 << LAST_ACT_BITS) - 1)}}
    if quant == "dorefa" and a != FLOAT:    # the seed's quantizer, static (module docstring)
        return {"name": name, "op": "quant_act", "nonlin": "relu", "quant": {"type": "tanh", "bits": a, "range": 1.0}}
    return _act(name, quant, a)


NIN_CFG = (192, 160, 96, 192, 192, 192, 192, 192)     # the seed's default widths


def tanh_zero_level(a: int) -> float:
    """The tanh quantizer's value at input 0: ``q_a(1/2)`` (2/3 at 2 bits, 8/15 at 4)."""
    m = (1 << a) - 1
    return float(round(0.5 * m)) / m               # Python rounds half to even, as the spec


def _seed_graph(arch: str, quant: str, w: int, a: int, in_channels: int = 1, classes: int = 10,
                cfg=NIN_CFG, float_edges: bool = False, seed_padding: bool = False) -> list:
    """Layer list of the pytorch DoReFa seed's NIN or ResNet-20 (module docstring)."""
    del in_channels                         # the input shape carries it
    hid = _weight_quant(quant, w)
    edge = None if w == FLOAT or float_edges else {"type": "int", "bits": 8}
    pad = {"pad_value": -1.0} if quant == "bnn" and a != FLOAT else {}
    if quant == "dorefa" and a != FLOAT and not seed_padding:
        pad = {"pad_value": tanh_zero_level(a)}
    layers: list[dict] = []

    def conv(n, out, k, stride=1, wq=hid, inputs=None, bn=None, act=None, first=False, bias=False):
        L = {"name": n, "op": "conv", "out_channels": out, "kernel": k, "stride": stride, "padding": k // 2,
             "bias": bias}
        if inputs is not None:
            L["inputs"] = inputs
        if k > 1 and not first:
            L.update(pad)
        if wq is not None:
            L["weight_quant"] = dict(wq)
        layers.append(L)
        if bn:
            layers.append({"name": bn, "op": "batchnorm", "eps": 1e-5})
        if act:
            layers.append(_seed_act(act, quant, a))
        return layers[-1]["name"]

    if arch == "nin":                       # nn.Sequential indices of the seed's NIN
        def block(i, out, k, wq=hid, first=False, act=True):
            conv(f"sequential.{i}.conv", out, k, wq=wq, first=first, bias=True, bn=f"sequential.{i}.norm",
                 act=f"sequential.{i}.relu" if act else None)
        c = list(cfg)
        block(0, c[0], 5, wq=edge, first=True)
        block(1, c[1], 1)
        block(2, c[2], 1)
        layers.append({"name": "sequential.3", "op": "maxpool", "kernel": 3, "stride": 2, "padding": 1})
        block(4, c[3], 3)
        block(5, c[4], 1)
        block(6, c[5], 1)
        layers.append({"name": "sequential.7", "op": "avgpool", "kernel": 3, "stride": 2, "padding": 1,
                       "divisor": "include_pad"})
        block(8, c[6], 3)
        block(9, c[7], 1)
        block(10, classes, 1, wq=edge, act=False)
        layers.append({"name": "sequential.11", "op": "global_avgpool"})
        return layers
    cur = conv("features.0.conv1", 16, 3, wq=edge, first=True, bn="features.0.norm1", act="features.0.relu")
    width, i = 16, 1
    for stage, (mid, out) in enumerate([(16, 64), (32, 128), (64, 256)]):
        for blk in range(3):
            p = f"features.{i}"
            stride = 2 if stage > 0 and blk == 0 else 1
            conv(f"{p}.conv1", mid, 3, stride=stride, inputs=cur, bn=f"{p}.norm1", act=f"{p}.relu1")
            conv(f"{p}.conv2", out, 3)
            sc = cur
            if stride != 1 or width != out:
                sc = conv(f"{p}.conv_shortcut", out, 1, stride=stride, inputs=cur)
            layers.append({"name": f"{p}.add", "op": "add", "inputs": [f"{p}.conv2", sc]})
            layers.append({"name": f"{p}.norm2", "op": "batchnorm", "eps": 1e-5})
            layers.append(_seed_act(f"{p}.relu2", quant, a, last=(stage, blk) == (2, 2)))
            cur, width, i = f"{p}.relu2", out, i + 1
    layers.append({"name": "avgpool", "op": "global_avgpool", "inputs": cur})
    L = {"name": "classifier", "op": "dense", "out_features": classes, "bias": True}
    if edge is not None:
        L["weight_quant"] = dict(edge)
    layers.append(L)
    return layers
