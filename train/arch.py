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
"""
from __future__ import annotations

ARCHS = ("lenet", "tfc", "cnv-small")
QUANTS = ("dorefa", "bwn", "bnn", "ttq", "lq")
FLOAT = 32


class ArchError(ValueError):
    pass


def parse_bits(text: str, quant: str) -> tuple[int, int, int]:
    """``'W,A,G'`` (or ``'W,A'``, G=32) -> ints; ``t`` means ternary (TTQ), 32 means float."""
    parts = [p.strip() for p in str(text).split(",")]
    if len(parts) == 2:
        parts.append("32")
    if len(parts) != 3:
        raise ArchError(f"--bits {text!r}: expected W,A,G (e.g. 1,2,6; 32 = float; t = ternary)")
    vals = []
    for what, p in zip("WAG", parts):
        if what == "W" and p.lower() == "t":
            vals.append(2)
            continue
        try:
            v = int(p)
        except ValueError:
            raise ArchError(f"--bits {text!r}: {what}={p!r} is not an integer (or 't' for W)") from None
        if not (1 <= v <= 16 or v == FLOAT):
            raise ArchError(f"--bits {text!r}: {what}={v} must be 1..16 or 32 (float)")
        vals.append(v)
    w, a, g = vals
    rules = {
        "bwn": (w == 1, "BWN has 1-bit weights (W=1)"),
        "bnn": (w == 1 and a == 1, "BNN is sign weights and sign activations (W=1, A=1)"),
        "ttq": (w == 2, "TTQ weights are ternary (W=t)"),
        "lq": (w <= 8 and (a <= 8 or a == FLOAT), "LQ-Nets bases have 1..8 bits"),
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
