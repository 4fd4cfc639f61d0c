"""Lowering a network spec to its integer bit-plane form (docs/design.md section 5).

The network is cut into *stages*:

* :class:`MatmulStage` — a conv or dense layer with everything up to and including its
  ``quant_act`` (bias, any batchnorms, at most one maxpool). It computes the exact
  integer dot product ``acc = sum W_int * A_int`` of the bit-plane basis (offsets
  included), optionally pools, then maps ``acc`` to the next layer's *level index* with
  per-channel integer thresholds (``count = #{t: acc >= T_t (up) or acc <= T_t (down)}``),
  or — for the last layer — emits ``acc`` raw with an affine map to logits.
* :class:`CodePoolStage` — a maxpool on level indices (after a ``quant_act`` or on the
  input image).

Thresholds are the exact discontinuities of ``f(acc) = index(nonlin(bn(... s*acc +
bias)))`` evaluated in float64 with the same operations as the float path, found by a
vectorized binary search over the proven accumulator range, so the int path equals the
float path evaluated on the exact accumulator, always.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from bitplane.gen import nn
from bitplane.core.errors import NotSupportedError, SpecError
from bitplane.core.intmath import signed_bits
from .quant import ActQuant, Basis, IntBasis, QWeights, apply_nonlin, quantize_weights
from .spec import Layer, Network

#: unquantized activations that may sit inside a stage (monotone non-decreasing: they fold
#: into the thresholds of the stage's quant_act and commute with its maxpool)
MONOTONE_ACTS = ("relu", "clip01", "none")

HW_DEFAULT_WEIGHT_QUANT = {"type": "int", "bits": 8}
MAX_ACC_BITS = 48    # float64 BLAS stays exact well below 2^53
#: fractional planes below the input code for a first-conv padding value between two codes
#: (the ImageNet mean: 123.675 = 31661/256 - 0.2/256, i.e. within 2^-9 of an input code step)
PAD_FRAC_BITS = 8


@dataclass
class PoolSpec:
    """A pooling step inside a stage. ``where`` is ``'acc'`` (signed accumulators, before
    thresholds) or ``'codes'`` (level indices, after thresholds); ``maximize[c]`` False
    means min-pool for channel ``c``. Padding positions never win."""
    layer: str
    kernel: int
    stride: int
    pads: tuple
    where: str
    maximize: np.ndarray
    pad_mode: str = "constant"    # 'reflect'/'symmetric': padding holds mirrored values (graph nets)

    def apply(self, x):
        """The pool on an integer tensor ``[N, C, H, W]`` (accumulators, level indices, ``fixed``)."""
        return nn.pool2d(x, self.kernel, self.stride, self.pads, self.maximize, self.pad_mode).astype(np.int64)


def describe_stage(stage, kind: str, layers=None, **fields) -> dict:
    """A stage's ``describe()``: its name, kind, spec layers (default: the stage's own name)
    and shapes, then ``fields``."""
    return {"stage": stage.name, "kind": kind, "layers": list(layers or [stage.name]),
            "in_shape": list(stage.in_shape), "out_shape": list(stage.out_shape), **fields}


def describe_thresholds(stage) -> dict:
    """The ``output`` entry of a stage ending in thresholds (its ``out_act``, ``thresholds``,
    ``up`` and accumulator range ``acc_lo..acc_hi``)."""
    return {"act": stage.out_act.describe(), "thresholds_per_channel": int(stage.thresholds.shape[1]),
            "down_channels": int((~stage.up).any(axis=1).sum()), "two_sided": not stage.out_act.monotone,
            "threshold_bits": signed_bits(stage.acc_lo - 1, stage.acc_hi + 1)}


@dataclass
class MatmulStage:
    """A conv or dense layer with what folds into it (batchnorm, activation, pool)."""
    name: str                     # the conv/dense layer
    kind: str                     # 'conv' | 'dense'
    layers: list                  # names of the spec layers folded into this stage
    in_shape: tuple
    mm_shape: tuple               # shape of the accumulator tensor (before pooling)
    out_shape: tuple
    kernel: int
    stride: int
    pads: tuple
    groups: int
    n_dot: int                    # dot-product length N
    wq: QWeights
    w_int: np.ndarray             # integer weight values, same shape as W
    in_act: ActQuant
    pad_index: int | None         # level index inserted by conv padding
    acc_lo: int
    acc_hi: int
    acc_bits: int
    scale: np.ndarray             # [C] float: y = scale*acc + bias
    bias: np.ndarray              # [C]
    post: list                    # [('bn', Layer) | ('pool', Layer)] in spec order
    pool: PoolSpec | None = None
    out_act: ActQuant | None = None
    thresholds: np.ndarray | None = None    # [C, T] int64
    up: np.ndarray | None = None            # [C, T] bool: True counts acc >= T, False acc <= T
    weight_quant_implicit: bool = False
    pad_mode: str = "constant"              # conv padding: 'constant' (pad_index) or a mirror mode
    identity: bool = False                  # the input stage: identity 1x1 weights (see _input_stage)
    pad_codes: tuple | None = None          # per-channel padding plane codes (see _conv_padding)

    @property
    def folds(self) -> bool:
        """Folded onto PE x SIMD by the planner; the input stage is not: its hardware is a
        threshold unit on the input codes, as many per word as the input stream carries
        (``gen.hwmap.input_threshold_params``)."""
        return not self.identity

    def pad_ints(self):
        """Integer value(s) the padding holds: a number, or one per input channel."""
        if self.pad_codes is not None:
            return np.asarray(self.in_act.int_basis.int_values(np.asarray(self.pad_codes)), np.float64)
        return 0.0 if self.pad_index is None else float(self.in_act.level_ints[self.pad_index])

    def pad_values(self):
        """Float value(s) the integer padding stands for (``pad_ints * scale``)."""
        if self.pad_codes is not None:
            return self.pad_ints() * float(self.in_act.int_basis.scale)
        return 0.0 if self.pad_index is None else float(self.in_act.levels[self.pad_index])

    @property
    def raw(self) -> bool:
        return self.out_act is None

    @property
    def out_channels(self) -> int:
        return int(self.mm_shape[0])

    @property
    def out_elems(self) -> int:
        return int(np.prod(self.mm_shape))

    @property
    def macs(self) -> int:
        return self.out_elems * self.n_dot

    @property
    def binary_ops(self) -> int:
        """AND+popcount bit operations of the bit-serial form: MACs x P_w x P_a (none for the
        input stage: its hardware compares codes with thresholds, it multiplies nothing)."""
        return 0 if self.identity else self.macs * self.wq.planes * self.in_act.planes

    def pre_act(self, acc, ndim: int):
        """Float value fed to the activation, from accumulators (channel axis 1)."""
        y = nn.channel_view(self.scale, ndim) * acc + nn.channel_view(self.bias, ndim)
        for kind, layer in self.post:
            if kind == "bn":
                y = nn.batchnorm(y, layer.params, layer["eps"], ndim)
            elif kind == "act":          # monotone non-decreasing: the pool before it commutes
                y = apply_nonlin(layer["nonlin"], y)
        return y

    def f(self, acc, ndim: int):
        """Level index (or pre-activation for raw stages) of accumulators."""
        z = self.pre_act(acc, ndim)
        return z if self.raw else self.out_act.index(z)

    def affine(self):
        """``logits = A * acc + B`` per channel (composition of scale, bias and batchnorms)."""
        A = np.asarray(self.scale, dtype=np.float64).copy()
        B = np.asarray(self.bias, dtype=np.float64).copy()
        for kind, layer in self.post:
            if kind == "bn":
                p = layer.params
                g = p["gamma"] / np.sqrt(p["var"] + layer["eps"])
                A, B = g * A, g * (B - p["mean"]) + p["beta"]
        return A, B

    def acc(self, idx):
        """Exact integer accumulators from input level indices (the golden integer path)."""
        vals = self.in_act.level_ints[idx].astype(np.float64)
        if self.kind == "conv":
            acc = nn.conv2d(vals, self.w_int, self.stride, self.pads, self.groups, self.pad_ints(), self.pad_mode)
        else:
            acc = nn.dense(vals, self.w_int)
        return acc.astype(np.int64)

    def run(self, idx):
        """Integer path: output level indices (raw accumulators for the last stage) from input
        level indices: accumulators, pool on accumulators, thresholds, pool on codes."""
        acc = self.acc(idx)
        p = self.pool
        if p is not None and p.where == "acc":
            acc = p.apply(acc)
        if self.raw:
            return acc
        out = apply_thresholds(acc, self.thresholds, self.up)
        if p is not None and p.where == "codes":
            out = p.apply(out)
        return out

    def describe(self) -> dict:
        ib = self.wq.int_basis
        coefs = np.asarray(ib.coefs)
        uniq = np.unique(coefs.T, axis=0)
        d = describe_stage(
            self, self.kind, self.layers,
            dot_length=self.n_dot,
            weights={"type": self.wq.qtype, "bits": self.wq.bits, "planes": self.wq.planes,
                     "coefs": uniq[0].tolist() if len(uniq) == 1 else f"per channel ({len(uniq)} distinct)",
                     "offset": (int(ib.offset[0]) if np.all(ib.offset == ib.offset[0])
                                else "per channel"),
                     "exact": ib.exact, "implicit_int8": self.weight_quant_implicit},
            activations=self.in_act.describe(),
            acc_range=[self.acc_lo, self.acc_hi], acc_bits=self.acc_bits,
            macs=self.macs, binary_ops=self.binary_ops)
        if self.kind == "conv":
            d.update(kernel=self.kernel, stride=self.stride, pads=list(self.pads), groups=self.groups)
            if self.pad_codes is not None:
                d["pad_codes"] = list(self.pad_codes)
                d["pad_frac_bits"] = int(self.in_act.frac_bits)
        if self.pool is not None:
            d["pool"] = {"layer": self.pool.layer, "on": self.pool.where, "kernel": self.pool.kernel,
                         "stride": self.pool.stride,
                         "min_channels": int((~self.pool.maximize).sum())}
        d["output"] = "raw accumulators" if self.raw else describe_thresholds(self)
        return d


@dataclass
class CodePoolStage:
    """A max/min pool on activation codes (between an activation quantizer and the next layer)."""
    folds = False             # no PE/SIMD: it runs at one word per cycle
    kind = "pool"
    name: str
    in_shape: tuple
    out_shape: tuple
    act: ActQuant
    pool: PoolSpec

    def run(self, idx):
        """Integer path: the pooled level indices."""
        return self.pool.apply(idx)

    def describe(self) -> dict:
        return describe_stage(self, "maxpool", kernel=self.pool.kernel, stride=self.pool.stride,
                              pads=list(self.pool.pads), on="codes", levels=self.act.L)


@dataclass
class Lowered:
    net: Network
    input_act: ActQuant
    stages: list = field(default_factory=list)

    @property
    def last(self) -> MatmulStage:
        return self.stages[-1]


# ------------------------------------------------------------------- thresholds

def _first_true(pred, lo, hi):
    """Smallest x in [lo, hi] with pred(x) (pred monotone False->True), else hi+1."""
    a, b = lo.copy(), hi + 1
    while True:
        act = a < b
        if not act.any():
            return a
        mid = (a + b) // 2
        p = pred(np.where(act, mid, a))
        b = np.where(act & p, mid, b)
        a = np.where(act & ~p, mid + 1, a)


def _last_true(pred, lo, hi):
    """Largest x in [lo, hi] with pred(x) (pred monotone True->False), else lo-1."""
    a, b = lo - 1, hi.copy()
    while True:
        act = a < b
        if not act.any():
            return b
        mid = (a + b + 1) // 2
        p = pred(np.where(act, mid, b))
        a = np.where(act & p, mid, a)
        b = np.where(act & ~p, mid - 1, b)


def compute_thresholds(stage: MatmulStage):
    """Per-channel thresholds and directions reproducing ``stage.f`` on ``[lo, hi]``."""
    act = stage.out_act
    C, J = stage.out_channels, act.L - 1
    lo, hi = stage.acc_lo, stage.acc_hi
    j = np.tile(np.arange(1, J + 1), (C, 1))
    LO, HI = np.full((C, J), lo, np.int64), np.full((C, J), hi, np.int64)

    def level(acc):
        return stage.f(acc.astype(np.float64)[None], 3)[0]

    # direction of z in acc: sign of scale x product of batchnorm gammas (0 = constant)
    sgn = np.sign(stage.scale)
    for kind, layer in stage.post:
        if kind == "bn":
            sgn = sgn * np.sign(layer.params["gamma"])
    sg = np.tile(sgn[:, None], (1, J))
    T = np.empty((C, J), np.int64)
    up = np.ones((C, J), bool)
    if act.monotone:
        inc, dec, const = sg > 0, sg < 0, sg == 0
        T[inc] = _first_true(lambda a: level(a) >= j, LO, HI)[inc]
        T[dec] = _last_true(lambda a: level(a) >= j, LO, HI)[dec]
        up[dec] = False
        f0 = level(np.zeros((C, J), np.int64))
        T[const] = np.where(f0 >= j, lo, hi + 1)[const]
        return T, up
    # V-shaped (cabs): f non-increasing below the vertex v, non-decreasing from v on
    z = lambda a: stage.pre_act(a.astype(np.float64)[None], 3)[0]
    V = _first_true(lambda a: sg * z(a) >= 0, LO, HI)
    Tu = _first_true(lambda a: level(a) >= j, np.minimum(V, HI + 1), HI)
    Td = _last_true(lambda a: level(a) >= j, LO, V - 1)
    const = sg == 0
    f0 = level(np.zeros((C, J), np.int64))
    Tu[const] = np.where(f0 >= j, lo, hi + 1)[const]
    Td[const] = lo - 1
    return np.concatenate([Tu, Td], 1), np.concatenate([np.ones((C, J), bool), np.zeros((C, J), bool)], 1)


def apply_thresholds(acc, T, up):
    """Level indices from accumulators ``[N, C, ...]`` (int64) and thresholds ``[C, T]``."""
    acc = np.asarray(acc, dtype=np.int64)
    out = np.zeros(acc.shape, np.int64)
    for c in range(acc.shape[1]):
        a = acc[:, c]
        tu = np.sort(T[c][up[c]])
        td = np.sort(T[c][~up[c]])
        n = np.searchsorted(tu, a, side="right")
        if td.size:
            n = n + (td.size - np.searchsorted(td, a, side="left"))
        out[:, c] = n
    return out


# --------------------------------------------------------------------- lowering

def _conv_padding(net: Network, layer: Layer, act: ActQuant) -> tuple:
    """``(input act, pad_index, pad_codes)`` of a constant-padded conv.

    The padding value (``pad_value``, default 0) is normally a level of the input activation
    (``pad_index``). On the network input a value between two input codes, or one value per
    channel (``pad_value: [..]``, e.g. the ImageNet mean a normalised image pads with: the
    first conv then takes raw pixel codes), is held by ``f`` fractional planes below the input
    code (:meth:`ActQuant.with_frac_bits`): the smallest ``f`` <= :data:`PAD_FRAC_BITS` at which
    every channel's value is a whole multiple of ``scale / 2^f``, else ``f =``
    :data:`PAD_FRAC_BITS` with the value rounded to the nearest multiple (error at most
    ``2^-(f+1)`` of an input code step, reported by :meth:`MatmulStage.describe`).
    ``pad_codes`` are then the per-channel plane codes the window inserts."""
    pv = layer.get("pad_value")
    C = layer.in_shape[0]
    vals = np.broadcast_to(np.asarray(0.0 if pv is None else pv, np.float64), (C,))
    if not isinstance(pv, list) or np.all(vals == vals[0]):
        if np.flatnonzero(act.levels == vals[0]).size or not act.is_input or act.qtype != "uint":
            return act, _pad_index(net, layer, act, float(vals[0])), None
    if not act.is_input or act.qtype != "uint" or act.frac_bits:
        raise SpecError(net.path, f"a pad_value per channel or between two codes needs the network input (uint "
                                  f"codes) as the conv's input; here the input is a {act.qtype} activation "
                                  f"(levels {act.levels.tolist()[:8]}{' ...' if act.L > 8 else ''})",
                        layer.name, layer.index, "pad_value")
    u = vals / act.scale                                  # in input code steps
    top = float((1 << act.bits) - 1)
    if np.any(u < -1e-9) or np.any(u > top + 1e-9):
        raise SpecError(net.path, f"pad_value {vals.tolist()} lies outside the input's range 0..{top * act.scale:g} "
                                  f"(codes 0..{int(top)})", layer.name, layer.index, "pad_value")
    for f in range(PAD_FRAC_BITS + 1):
        P = u * float(1 << f)
        if np.all(np.abs(P - np.rint(P)) <= 1e-9 * np.maximum(1.0, np.abs(P))):
            break
    codes = tuple(int(v) for v in np.rint(P))
    return (act.with_frac_bits(f) if f else act), None, codes


def _pad_index(net: Network, layer: Layer, act: ActQuant, value: float) -> int:
    pv = layer.get("pad_value")
    hit = np.flatnonzero(act.levels == value)
    if hit.size == 0:
        if pv is None:
            raise SpecError(net.path, f"zero padding needs the value 0, which {act.qtype} activations "
                                      f"cannot represent (levels {act.levels.tolist()}); declare the pad "
                                      f"value, e.g. pad_value: -1", layer.name, layer.index, "pad_value")
        raise SpecError(net.path, f"{value} is not a level of the input activation "
                                  f"(levels {act.levels.tolist()})", layer.name, layer.index, "pad_value")
    return int(hit[0])


def _acc_range(w_int_basis, planes_w: int, act: ActQuant, n: int):
    """Smallest and largest accumulator over every weight code, activation level and ``n``
    terms. A weight value is linear in its code bits (``offset + sum coef_p * bit_p``) and all
    ``2**planes_w`` codes occur, so its extremes per channel are the offset plus the negative /
    positive coefficients; a product's extremes over two intervals sit at their corners. Exact
    Python integers, no table of every code (16-bit weights would need gigabytes)."""
    c = np.asarray(w_int_basis.coefs, dtype=object).reshape(planes_w, -1)
    off = np.broadcast_to(np.asarray(w_int_basis.offset, dtype=object).reshape(-1), (c.shape[1],))
    wmax = [int(o) + sum(max(int(v), 0) for v in col) for o, col in zip(off, c.T)]
    wmin = [int(o) + sum(min(int(v), 0) for v in col) for o, col in zip(off, c.T)]
    av = np.asarray(act.level_ints)
    amin, amax = int(av.min()), int(av.max())
    corners = [w * a for w in (min(wmin), max(wmax)) for a in (amin, amax)]
    return n * min(corners), n * max(corners)


def lower(net: Network, input_act: ActQuant | None = None, codes_out: bool = False) -> Lowered:
    """Integer bit-plane form of a network; raises SpecError for sequences hardware cannot run
    and for parameters so large that the integer form would overflow (never a silent inf/NaN).

    ``input_act``/``codes_out`` serve the graph lowering (gen/graph.py), which lowers each
    conv/dense chain as a one-path network: its input quantizer, and whether the chain may
    end in a ``quant_act`` (codes) instead of raw accumulators."""
    with np.errstate(over="raise", invalid="raise"):
        try:
            if net.is_graph:        # named inputs, add/concat/average pools, mirror padding
                from .graph import lower_graph  # lazy: graph.py builds on this module (import cycle)
                return lower_graph(net)
            return _lower(net, input_act, codes_out)
        except (FloatingPointError, OverflowError) as e:
            raise SpecError(net.path, f"parameters too large: the integer form overflows ({e}); "
                                      f"check the weights file for extreme values") from None


def _lower(net: Network, input_act: ActQuant | None, codes_out: bool) -> Lowered:
    err = lambda msg, layer, fld=None: SpecError(net.path, msg, layer.name, layer.index, fld)
    out = Lowered(net, input_act or ActQuant.input(net.input_bits, net.input_scale))
    act = out.input_act
    layers = net.layers
    i, n = 0, len(layers)
    quantized = True                     # is the current tensor quantized level indices?

    def float_only(L):
        return NotSupportedError(f"{net.path}: layer '{L.name}' (#{L.index}), field 'op': 'act' is an "
                                 f"unquantized (full-precision) activation; it runs on the float path only. "
                                 f"Use a quant_act to run the network in hardware (a monotone act ({', '.join(MONOTONE_ACTS)}) "
                                 f"between a conv/dense and its quant_act folds into the thresholds)")
    if layers[0].op == "act":
        raise float_only(layers[0])
    if layers[0].op in ("batchnorm", "quant_act"):
        stage, i = _input_stage(net, act)
        out.stages.append(stage)
        act = stage.out_act
    while i < n:
        L = layers[i]
        if L.op == "maxpool":
            if not quantized:
                raise err("maxpool here acts on unquantized values that no quant_act follows", L)
            out.stages.append(CodePoolStage(L.name, L.in_shape, L.out_shape, act,
                                            PoolSpec(L.name, L["kernel"], L["stride"], L.pads, "codes",
                                                     np.ones(L.in_shape[0], bool))))
            i += 1
            continue
        if L.op == "act":
            raise float_only(L)
        if L.op == "batchnorm":
            raise err("batchnorm must directly follow a conv or dense layer (before its quant_act); "
                      "here it would act on quantized activations", L, "op")
        if L.op == "quant_act":
            raise err("quant_act must follow a conv or dense layer (optionally with batchnorm/maxpool "
                      "in between)", L, "op")
        # conv / dense
        j = i + 1
        post, pool_layer = [], None
        while j < n and layers[j].op in ("batchnorm", "maxpool", "act"):
            if layers[j].op == "act":
                # a monotone unquantized activation inside the stage (LQ-Nets VGG: ReLU -> pool ->
                # BN -> ReLU -> quantize) is part of the function the thresholds reproduce
                if layers[j]["nonlin"] not in MONOTONE_ACTS:
                    raise float_only(layers[j])
                post.append(("act", layers[j]))
            elif layers[j].op == "maxpool":
                if pool_layer is not None:
                    raise err("at most one maxpool may sit between a conv/dense and its quant_act",
                              layers[j], "op")
                if len(layers[j].in_shape) != 3:
                    raise err("maxpool needs a feature map", layers[j], "op")
                pool_layer = layers[j]
                post.append(("pool", layers[j]))
            else:
                post.append(("bn", layers[j]))
            j += 1
        out_act = None
        if any(k == "act" for k, _ in post) and (j == n or layers[j].op != "quant_act"):
            raise float_only(next(x for k, x in post if k == "act"))    # no thresholds to fold it into
        if j < n:
            if layers[j].op != "quant_act":
                raise err(f"the input of '{layers[j].name}' is not quantized: '{layers[j - 1].name}' "
                          f"produces float values; insert a quant_act before it", layers[j], "op")
            A = layers[j]
            out_act = ActQuant(A["quant"], A["nonlin"], A.params)
        wqs = L.get("weight_quant")
        implicit = wqs is None
        wq = quantize_weights(HW_DEFAULT_WEIGHT_QUANT if implicit else wqs, L.params["W"], L.params)
        w_int = wq.int_values()
        C_out = L.params["W"].shape[0]
        if L.op == "conv":
            k, s, g, pads = L["kernel"], L["stride"], L["groups"], L.pads
            n_dot = L.in_shape[0] // g * k * k
            pad_index, pad_codes, in_act = None, None, act
            if any(pads) and L.get("pad_mode", "constant") == "constant":
                in_act, pad_index, pad_codes = _conv_padding(net, L, act)
        else:
            k, s, g, pads, n_dot, pad_index = 1, 1, 1, (0, 0, 0, 0), int(np.prod(L.in_shape)), None
            pad_codes, in_act = None, act
        lo, hi = _acc_range(wq.int_basis, wq.planes, in_act, n_dot)
        bits = signed_bits(lo - 1, hi + 1)
        if bits > MAX_ACC_BITS:
            raise NotSupportedError(f"{net.path}: layer '{L.name}': accumulator needs {bits} bits "
                                    f"(> {MAX_ACC_BITS}); reduce coef_bits or bit widths")
        scale = np.asarray(wq.int_basis.scale, dtype=np.float64) * float(in_act.int_basis.scale)
        bias = L.params.get("b", np.zeros(C_out))
        stage = MatmulStage(
            name=L.name, kind=L.op, layers=[x.name for x in layers[i:j + (out_act is not None)]],
            in_shape=L.in_shape, mm_shape=L.out_shape, out_shape=layers[j - 1 + (out_act is not None)].out_shape,
            kernel=k, stride=s, pads=pads, groups=g, n_dot=n_dot, wq=wq, w_int=w_int, in_act=in_act,
            pad_index=pad_index, pad_codes=pad_codes, acc_lo=lo, acc_hi=hi, acc_bits=signed_bits(lo, hi), scale=scale,
            bias=np.asarray(bias, np.float64), post=post, out_act=out_act, weight_quant_implicit=implicit)
        if pool_layer is not None:
            stage.pool = _place_pool(stage, pool_layer)
        if out_act is not None:
            stage.thresholds, stage.up = compute_thresholds(stage)
            act = out_act
            i = j + 1
        else:
            if j != n:      # pragma: no cover - guarded above
                raise err("internal: raw stage not last", L)
            i = j
        out.stages.append(stage)
    if not codes_out and (not isinstance(out.stages[-1], MatmulStage) or not out.stages[-1].raw):
        last = layers[-1]
        raise err("the network must end with a conv or dense layer (optionally followed by batchnorm/"
                  "maxpool) whose raw accumulators are the output; a trailing quant_act or maxpool on "
                  "codes is not supported", last, "op")
    return out


def _input_stage(net: Network, act: ActQuant) -> tuple[MatmulStage, int]:
    """The stage of a spec that starts with ``batchnorm... quant_act`` on the input codes.

    Input preprocessing (a per-channel affine, e.g. FINN's ``2x - 1``) and a quantizer of
    the input (signed ``int``, ``sign``, ...) become an *input stage*: a 1x1 convolution with
    identity weights (one {0, 1} plane: coefficient 1, offset 0), so its
    accumulator is the uint input code itself, followed by the thresholds of
    ``quant_act(batchnorm(code * scale))``. Exact: the host still streams the same input
    codes. In the golden model it is an ordinary stage; in hardware it is no engine but a
    threshold unit on the codes (``gen.hwmap.input_threshold_params``). Returns the stage and
    the index of the first layer after it."""
    layers = net.layers
    j = 0
    while j < len(layers) and layers[j].op == "batchnorm":
        j += 1
    if j == len(layers) or layers[j].op != "quant_act":
        bad = layers[min(j, len(layers) - 1)]
        raise SpecError(net.path, "a batchnorm on the network input (input preprocessing) must be followed by "
                                  "a quant_act, which quantizes the input for the first conv/dense layer",
                        bad.name, bad.index, "op")
    A = layers[j]
    C = net.input_shape[0]
    W = np.eye(C).reshape(C, C, 1, 1)
    # one weight plane with values {0, 1} (coefficient 1, offset 0): the bit is the weight
    ones, zeros = np.ones(C), np.zeros(C)
    wq = QWeights("identity", 1, W.astype(np.int64), None, Basis(ones[None], zeros, ones.copy()),
                  IntBasis(np.ones((1, C), np.int64), np.zeros(C, np.int64), ones.copy(), True),
                  np.tile([0.0, 1.0], (C, 1)))
    wq.fq = wq.decode(wq.codes)
    w_int = wq.int_values()
    lo, hi = _acc_range(wq.int_basis, wq.planes, act, C)
    stage = MatmulStage(
        name=layers[0].name, kind="conv", layers=[x.name for x in layers[:j + 1]], in_shape=net.input_shape,
        mm_shape=net.input_shape, out_shape=A.out_shape, kernel=1, stride=1, pads=(0, 0, 0, 0), groups=1,
        n_dot=C, wq=wq, w_int=w_int, in_act=act, pad_index=None, acc_lo=lo, acc_hi=hi,
        acc_bits=signed_bits(lo, hi), scale=np.full(C, float(act.int_basis.scale)), bias=np.zeros(C),
        post=[("bn", x) for x in layers[:j]], out_act=ActQuant(A["quant"], A["nonlin"], A.params),
        identity=True)
    stage.thresholds, stage.up = compute_thresholds(stage)
    return stage, j + 1


def _place_pool(stage: MatmulStage, P: Layer) -> PoolSpec:
    """Where a maxpool between a matmul and its activation runs, and in which direction.

    The pool acts on some value ``u`` (after the batchnorms before it), which is affine in
    ``acc`` with slope sign ``s_u`` per channel. If ``u -> code`` is monotone (all
    activations but ``cabs``), pool on codes: max where ``u -> code`` is non-decreasing
    (product of later gammas >= 0), min otherwise. Otherwise (``cabs``, or the raw last
    layer) pool on accumulators: max where ``s_u >= 0``, min otherwise.
    """
    before, after = np.sign(stage.scale), np.ones(stage.out_channels)
    seen = False
    for kind, layer in stage.post:
        if kind == "pool":
            seen = True
        elif kind == "bn":
            g = np.sign(layer.params["gamma"])
            if seen:
                after = after * g
            else:
                before = before * g
    if stage.out_act is not None and stage.out_act.monotone:
        return PoolSpec(P.name, P["kernel"], P["stride"], P.pads, "codes", after >= 0)
    return PoolSpec(P.name, P["kernel"], P["stride"], P.pads, "acc", before >= 0)
