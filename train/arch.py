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
max and average pools, a final global average; ``resnet_cifar_dorefanet.py``: ResNet-20 of
``Basicneck`` blocks, stages of 3 blocks with 16/32/64 mid and 64/128/256 output channels,
a quantized 1x1 projection shortcut where the stride or width changes, ``bn(conv2 +
shortcut)`` then ReLU, global average pool, linear), as graph specs at the trainer's 28x28
input. The seed's activation quantizer is dynamic (tanh scaled by each batch's maximum, at
every quantized conv's input), so it has no fixed integer form; here the activation is the
spec's **static** quantizer (``clip01`` + k-bit DoReFa, i.e. ReLU clipped at 1) placed right
after each ReLU, so an identity shortcut carries quantized codes where the seed carries the
unquantized ReLU output. NIN's average pool reads those codes and the next conv consumes the
exact average (gen/graph.py reads it as a wider uint activation), where the seed quantizes
the average again; NIN's last layer keeps its batchnorm but drops the ReLU before the global
average (the output must be unquantized integers, which an unquantized ReLU has no form for).
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


def make_spec(arch: str, quant: str, w: int, a: int, name: str) -> dict:
    """The spec mapping (no ``weights`` key) of ``arch`` with ``quant`` at W/A bits."""
    if arch not in ARCHS:
        raise ArchError(f"unknown --arch {arch!r}; choose from {', '.join(ARCHS)}")
    if quant not in QUANTS:
        raise ArchError(f"unknown --quant {quant!r}; choose from {', '.join(QUANTS)}")
    if arch in GRAPH_ARCHS:
        layers = _seed_graph(arch, quant, w, a)
        return {"name": name, "input": {"shape": [1, 28, 28], "bits": 8, "scale": 1.0 / 255.0}, "layers": layers}
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


def _seed_graph(arch: str, quant: str, w: int, a: int) -> list:
    """Layer list of the pytorch DoReFa seed's NIN or ResNet-20 (module docstring)."""
    hid = _weight_quant(quant, w)
    edge = None if w == FLOAT else {"type": "int", "bits": 8}
    pad = {"pad_value": -1.0} if quant == "bnn" and a != FLOAT else {}
    layers: list[dict] = []

    def conv(n, out, k, stride=1, wq=hid, inputs=None, bn=True, act=True, first=False):
        L = {"name": n, "op": "conv", "out_channels": out, "kernel": k, "stride": stride, "padding": k // 2,
             "bias": False}
        if inputs is not None:
            L["inputs"] = inputs
        if k > 1 and not first:
            L.update(pad)
        if wq is not None:
            L["weight_quant"] = dict(wq)
        layers.append(L)
        if bn:
            layers.append({"name": f"{n}_bn", "op": "batchnorm", "eps": 1e-5})
        if act:
            layers.append(_act(f"{n}_act", quant, a))
        return layers[-1]["name"]

    if arch == "nin":
        conv("conv0", 192, 5, wq=edge, first=True)
        conv("conv1", 160, 1)
        conv("conv2", 96, 1)
        layers.append({"name": "pool0", "op": "maxpool", "kernel": 3, "stride": 2, "padding": 1})
        conv("conv3", 192, 3)
        conv("conv4", 192, 1)
        conv("conv5", 192, 1)
        layers.append({"name": "pool1", "op": "avgpool", "kernel": 3, "stride": 2, "padding": 1,
                       "divisor": "include_pad"})
        conv("conv6", 192, 3)
        conv("conv7", 192, 1)
        conv("conv8", 10, 1, wq=edge, act=False)
        layers.append({"name": "gap", "op": "global_avgpool"})
        return layers
    cur, width = conv("conv0", 16, 3, wq=edge, first=True), 16
    for stage, (mid, out) in enumerate([(16, 64), (32, 128), (64, 256)]):
        for blk in range(3):
            p = f"s{stage + 1}b{blk + 1}"
            stride = 2 if stage > 0 and blk == 0 else 1
            conv(f"{p}c1", mid, 3, stride=stride, inputs=cur)
            conv(f"{p}c2", out, 3, bn=False, act=False)
            sc = cur
            if stride != 1 or width != out:
                sc = conv(f"{p}sc", out, 1, stride=stride, inputs=cur, bn=False, act=False)
            layers.append({"name": f"{p}add", "op": "add", "inputs": [f"{p}c2", sc]})
            layers.append({"name": f"{p}bn", "op": "batchnorm", "eps": 1e-5})
            layers.append(_act(f"{p}act", quant, a))
            cur, width = f"{p}act", out
    layers.append({"name": "gap", "op": "global_avgpool", "inputs": cur})
    L = {"name": "fc", "op": "dense", "out_features": 10, "bias": True}
    if edge is not None:
        L["weight_quant"] = dict(edge)
    layers.append(L)
    return layers
