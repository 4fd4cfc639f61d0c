"""Graph networks (named ``inputs``, ``add``, ``concat``, ``avgpool``, ``global_avgpool``,
mirror padding): lowering to integer stages and both golden paths.

Every tensor of the integer path has one of two *forms*:

* **codes** (an :class:`~bitplane.gen.quant.ActQuant`): level indices, as today; the value
  of index ``n`` is ``levels[n]``, whose integer form is ``act.int_basis.scale *
  level_ints[n]``;
* **fixed** (:class:`Fixed`): an integer tensor ``q`` with per-channel ``scale``, ``offset``
  and a chain of batchnorms: ``value = bn_k(...bn_1(scale[c] * q + offset[c]))``. A conv or
  dense layer whose accumulators are not thresholded (its output goes to an ``add``, a pool,
  a concat or is the network output) gives ``q = acc`` with the layer's affine map.

Stages (besides :class:`~bitplane.gen.lower.MatmulStage` and
:class:`~bitplane.gen.lower.CodePoolStage`, which keep their sequential meaning), with the
exact integer semantics of each:

* :class:`AddStage` — ``q = sum_i M_i[c] * q_i`` (an exact integer sum, no rounding shift),
  ``offset = sum_i o_i``. Each input has a *resolution* ``r_i = |s_i| * 2^guard_i`` (its
  step without guard bits: an accumulator's or a code's step); ``r = min_i r_i`` per
  channel. **Exact** (``guard = 0``, ``scale = r``, ``M_i = s_i / r``) when every ``s_i``
  is an integer multiple of ``r`` (identity shortcuts of one quantizer, equal accumulator
  scales). Otherwise a **fixed-point rescale** with ``G = ADD_FRAC_BITS = 16`` guard bits:
  ``scale = r * 2^-G``, ``M_i = round(s_i / scale)`` (so ``|M_i| >= 2^G`` and each input's
  scale is off by a relative ``<= 2^-(G+1)`` = 7.6e-6); the sum carries ``G`` extra bits,
  which do not grow along a residual stream (the stream's resolution stays that of its
  finest accumulator). An input that already carries guard bits ``g`` (the output of an
  earlier rescaled add) has ``s_i`` close to the new scale, so ``round(s_i / scale)`` alone
  would be off by up to half of it (1.03 -> 1 on tensorpack's ResNet-18); such an add
  computes with ``shift = max g`` more bits, ``M_i = round(s_i * 2^g_i / scale) * 2^(shift-g_i)``
  (an input without guard bits keeps its multiplier, shifted), and rounds the sum back:
  ``q = (sum + 2^(shift-1)) >> shift`` (``AddStage.shift``; the hardware's ``AddBlock`` does
  the same), so every input keeps the ``2^-(G+1)`` bound. Where that sum would exceed
  ``MAX_FIXED_BITS`` (wide accumulators: LQ-Nets' 2-bit ResNet-18 spans 31-37 bits), a guarded
  input carries only ``c < g_i`` of its guard bits: it is first rounded right by ``p_i = g_i - c``
  (``AddStage.pre_shifts``, half up; the multiplier keeps its ``2^-(G+1)`` precision), an
  absolute error ``<= 2^-(c+1)`` of that input's resolution, with the largest ``c`` that fits
  (the LQ-Nets test net: ``c`` = 9..11); only if even ``c = 0`` is too wide does ``G`` shrink
  (to ``MIN_ADD_FRAC_BITS = 8`` at most; ``frac`` is the ``G`` used). A later threshold decision differs from the float path only where
  the float value lies within that relative error of a level boundary (measured by
  ``tests/gen/test_graph.py``).
* :class:`AvgPoolStage` — ``include_pad`` divisor (and mirror padding, and
  ``global_avgpool``: ``D = H*W``): **exact** sum pool, ``q = sum over the window`` (padding
  positions hold ``q0 = -offset/scale``, the integer whose value is 0: a code's zero level,
  an accumulator's zero when the offset is a multiple of the scale; otherwise every ``q``
  is first scaled by ``2^AVG_FRAC_BITS`` and ``q0`` rounded), ``scale = s / D``: the
  division by ``D = K*K`` goes into the scale, so no decision changes. ``valid`` divisor
  with zero padding (TensorFlow): ``n`` inside positions, **fixed-point rescale** ``q =
  sum_inside q * R[n]`` with ``R[n] = round(2^F * D / n)``, ``F = AVG_FRAC_BITS = 16``
  guard bits, ``scale = s / (D * 2^F)`` (exact wherever ``n = D``, i.e. away from the
  border, and wherever ``D/n`` is a dyadic fraction; elsewhere relative error
  ``<= 2^-(F+1) * n/D``).
* :class:`ConcatStage` — exact: codes of one quantizer stay codes; otherwise every input
  becomes ``fixed`` and the per-channel scales and offsets are concatenated.
* :class:`FixedPoolStage` — max-pool on a ``fixed`` tensor: max where ``scale >= 0``, min
  where it is negative (the batchnorms after it are applied later). Exact.
* :class:`ThresholdStage` — ``quant_act`` (after optional batchnorms) on a ``fixed``
  tensor: per-channel thresholds on ``q``, computed like a matmul stage's from the float
  formula, hence exact for the integer value.

A ``batchnorm`` on a ``fixed`` tensor adds to its chain (no stage). So does a **monotone
unquantized activation** (``act`` relu / clip01 / none; e.g. a pre-activation ResNet's
unquantized ReLU stream, which is both the next block's quantizer input and its identity
shortcut): ``q`` stays the integer it was (no rounding, no guard bits), and the chain
composes to ``value = A * clip(q, zlo, zhi) + B`` (:meth:`Fixed.clip_affine`; ``z`` = the
``q`` where the activation bends, real-valued). Its consumers:

* a threshold stage folds it into its thresholds (**exact**, as inside a matmul stage);
* a max-pool runs on ``q`` before it (max where the chain's slope ``A >= 0``): **exact**,
  a monotone map commutes with max;
* an ``add`` clips the input's product, ``t_i = min(max(M_i * q_i, L_i), U_i)`` with
  ``L_i, U_i = round(M_i * z)`` per channel (:attr:`AddStage.clips`, the hardware ``AddBlock``
  likewise): **exact** where ``q`` is not clipped (``M_i * q_i`` as for any input) and for
  clipped elements whose ``M_i * z`` is an integer (the add stays exact if every bound is
  one); otherwise the clipped element (the ReLU's 0) is a **rescale**: ``M_i * z`` rounded to
  the sum's unit, ``step * 2^-shift``, with the ``G = ADD_FRAC_BITS`` guard bits of the
  rescaled add (so its error, ``<= 2^-(G+1)`` of the finest input resolution, is below that of
  the multipliers: a decision differs from the float path only within it of a boundary);
* an average pool, a concat, a conv/dense or the network output would need the clipped
  values themselves: refused, naming the layer (insert a quant_act).

A conv/dense needs codes at its input (a sum pool of non-negative codes counts: it is read
as a wider ``uint`` activation whose scale holds the 1/D, exactly); a non-monotone ``act``
(cabs) or an ``act`` on codes has no integer form: both are refused with the layer named.
The network output must be an unclipped ``fixed`` (raw integers with the affine map of
:meth:`LoweredGraph.dequantize`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from bitplane.core.errors import NotSupportedError, SpecError
from bitplane.gen import nn
from .lower import (MONOTONE_ACTS, CodePoolStage, Lowered, MatmulStage, PoolSpec, apply_thresholds,
                    compute_thresholds, describe_stage, describe_thresholds, lower as lower_seq, signed_bits)
from .quant import ActQuant, apply_nonlin
from .spec import INPUT_NAME, Layer, Network

ADD_FRAC_BITS = 16
MIN_ADD_FRAC_BITS = 8        # fewest guard bits a rescaled add takes to keep its sum within MAX_FIXED_BITS
AVG_FRAC_BITS = 16
UINT_VIEW_BITS = 24          # widest sum pool a conv/dense reads as uint activation planes
MAX_FIXED_BITS = 62          # int64 with headroom for the rescale products


# ------------------------------------------------------------------------ forms

#: value range each monotone unquantized activation clips to (gen/lower.MONOTONE_ACTS)
ACT_RANGE = {"relu": (0.0, np.inf), "clip01": (0.0, 1.0), "none": (-np.inf, np.inf)}


@dataclass
class Fixed:
    """Integer form of an unquantized tensor: ``value = post(scale[c] * q + offset[c])``.

    ``post`` holds batchnorms (``('bn', layer)``) and monotone unquantized activations
    (``('act', layer)``: relu, clip01, none) in spec order. ``clip`` is set only on the
    composed view of :func:`as_fixed`: ``(zlo, zhi)`` per channel in units of ``q``
    (``+-inf`` where unbounded), ``value = scale * clip(q, zlo, zhi) + offset``."""
    scale: np.ndarray
    offset: np.ndarray
    lo: int
    hi: int
    post: list = field(default_factory=list)      # [('bn' | 'act', Layer)] applied after the affine map
    guard: int = 0                                # fractional guard bits: resolution = |scale| * 2^guard
    clip: tuple | None = None                     # composed view only: (zlo [C], zhi [C]) on q

    @property
    def bits(self) -> int:
        return signed_bits(self.lo, self.hi)

    @property
    def clipped(self) -> bool:
        """Does an activation in the chain (or the composed ``clip``) clip the values?"""
        return self.clip is not None or any(k == "act" and L["nonlin"] != "none" for k, L in self.post)

    def clip_affine(self):
        """``value = A * clip(q, zlo, zhi) + B`` per channel: the chain composed. A monotone
        activation clipping values to ``[vlo, vhi]`` after ``A * x + B`` clips ``x`` to
        ``[(vlo - B)/A, (vhi - B)/A]`` (bounds swapped where ``A < 0``; nothing where ``A = 0``,
        whose constant value is clipped instead); successive clips intersect."""
        A, B = np.asarray(self.scale, np.float64).copy(), np.asarray(self.offset, np.float64).copy()
        if self.clip is None:
            zlo, zhi = np.full(A.shape, -np.inf), np.full(A.shape, np.inf)
        else:
            zlo, zhi = (np.asarray(z, np.float64).copy() for z in self.clip)
        for kind, layer in self.post:
            if kind == "bn":
                p = layer.params
                g = p["gamma"] / np.sqrt(p["var"] + layer["eps"])
                A, B = g * A, g * (B - p["mean"]) + p["beta"]
                continue
            vlo, vhi = ACT_RANGE[layer["nonlin"]]
            with np.errstate(divide="ignore", invalid="ignore"):
                a = np.where(A > 0, (vlo - B) / A, np.where(A < 0, (vhi - B) / A, -np.inf))
                b = np.where(A > 0, (vhi - B) / A, np.where(A < 0, (vlo - B) / A, np.inf))
            zlo, zhi = np.clip(zlo, a, b), np.clip(zhi, a, b)
            B = np.where(A == 0, np.clip(B, vlo, vhi), B)
        return A, B, zlo, zhi

    def affine(self):
        """``value = A * q + B`` per channel (the batchnorms composed in); only for an unclipped chain."""
        if self.clipped:
            raise ValueError("a clipped fixed-point form has no affine map (use clip_affine)")
        A, B, _, _ = self.clip_affine()
        return A, B

    def value(self, q):
        """Float value of integer ``q [N, C, ...]`` evaluated as the float path does."""
        q = np.asarray(q, np.float64)
        if self.clip is not None:
            q = np.clip(q, nn.channel_view(self.clip[0], q.ndim), nn.channel_view(self.clip[1], q.ndim))
        y = nn.channel_view(self.scale, q.ndim) * q + nn.channel_view(self.offset, q.ndim)
        for kind, layer in self.post:
            y = (nn.batchnorm(y, layer.params, layer["eps"], q.ndim) if kind == "bn"
                 else apply_nonlin(layer["nonlin"], y))
        return y

    def describe(self) -> dict:
        d = {"form": "fixed", "bits": self.bits, "range": [self.lo, self.hi],
             "batchnorms": [layer.name for k, layer in self.post if k == "bn"]}
        acts = [layer.name for k, layer in self.post if k == "act"]
        if acts:
            d["activations"] = acts
        return d


def as_fixed(form, channels: int) -> Fixed:
    """The ``fixed`` view of codes (``q = level_ints[idx]``) or a fixed form (composed; a
    clipping activation in its chain becomes the view's ``clip``)."""
    if isinstance(form, ActQuant):
        li = form.level_ints
        return Fixed(np.full(channels, float(form.int_basis.scale)), np.zeros(channels),
                     int(li.min()), int(li.max()))
    A, B, zlo, zhi = form.clip_affine()
    clip = (zlo, zhi) if form.clipped else None
    return Fixed(A, B, form.lo, form.hi, guard=form.guard, clip=clip)


def round_shift(v, shift: int):
    """``v / 2^shift`` rounded half up (``(v + 2^(shift-1)) >> shift``; ``v`` unchanged at 0)."""
    if not shift:
        return v
    return (np.asarray(v, np.int64) + (1 << (shift - 1))) >> shift


def to_q(form, x):
    """Integer ``q`` of a tensor held in ``form`` (codes -> their integer level values)."""
    if isinstance(form, ActQuant):
        return form.level_ints[np.asarray(x, np.int64)]
    return np.asarray(x, np.int64)


def _same_act(a: ActQuant, b: ActQuant) -> bool:
    return (a.qtype == b.qtype and a.bits == b.bits and a.nonlin_name == b.nonlin_name
            and np.array_equal(a.levels, b.levels) and np.array_equal(a.level_codes, b.level_codes)
            and np.array_equal(a.level_ints, b.level_ints) and a.int_basis.scale == b.int_basis.scale)


# ------------------------------------------------------------------------ stages

@dataclass
class AddStage:
    """Element-wise sum of ``fixed``/codes tensors with the rescale of the module docstring.

    ``mult [n_inputs, C]`` int64 ``M_i``, ``frac`` G guard bits (0: exact), ``shift``: the
    sum's extra bits rounded away (half up) after the products are summed, ``sum_bits`` the
    signed width of the sum before that shift, ``mult_shifts`` each input's alignment
    (``shift - g_i``; ``mult[i]`` is a multiplier shifted left by it), ``clips`` the product
    bounds of an input that is an unquantized ReLU/clip stream, ``pre_shifts`` the guard bits
    an input drops before its product (``round_shift``; only where the sum would be too wide)."""
    folds = False             # no PE/SIMD fold
    kind = "add"
    name: str
    in_shape: tuple
    out_shape: tuple
    in_forms: list
    mult: np.ndarray
    frac: int
    out: Fixed
    shift: int = 0
    sum_bits: int = 0
    mult_shifts: tuple = ()   # per input, the left shift aligning it to the sum: mult[i] = M_i << it
    clips: tuple = ()         # per input None or (L [C], U [C]) int64: the product clipped to [L, U]
    pre_shifts: tuple = ()    # per input, guard bits rounded away (half up) before the product

    @property
    def exact(self) -> bool:
        return self.frac == 0

    def run(self, *xs):
        tot = 0
        for i, (form, x) in enumerate(zip(self.in_forms, xs)):
            q = round_shift(to_q(form, x), self.pre_shifts[i] if self.pre_shifts else 0)
            t = nn.channel_view(self.mult[i], q.ndim).astype(np.int64) * q
            if self.clips and self.clips[i] is not None:
                lo, hi = (nn.channel_view(b, q.ndim) for b in self.clips[i])
                t = np.minimum(np.maximum(t, lo), hi)
            tot = tot + t
        return round_shift(tot, self.shift)

    def describe(self) -> dict:
        return describe_stage(self, "add", inputs=len(self.in_forms),
                              rescale="exact" if self.exact else f"fixed-point, {self.frac} guard bits"
                              + (f", sum rounded right by {self.shift} bits" if self.shift else "")
                              + (f", inputs pre-rounded by {list(self.pre_shifts)} bits" if any(self.pre_shifts) else ""),
                              max_multiplier=int(np.abs(self.mult).max()), out=self.out.describe(),
                              **({"clipped_inputs": [i for i, c in enumerate(self.clips) if c is not None]}
                                 if any(c is not None for c in self.clips) else {}))


@dataclass
class AvgPoolStage:
    """Average pool (``kernel=None``: global) as a sum pool with the division in the scale,
    or (``valid`` divisor with zero padding) with the rescale table ``recip[n]``."""
    folds = False             # no PE/SIMD fold
    kind = "avgpool"
    name: str
    in_shape: tuple
    out_shape: tuple
    in_form: object
    kernel: int
    stride: int
    pads: tuple
    pad_mode: str
    divisor: str                   # 'include_pad' | 'valid' | 'global'
    pre_shift: int                 # q scaled by 2^pre_shift before summing (non-integer zero)
    pad_q: np.ndarray              # [C] integer padding value (include_pad, constant mode)
    recip: np.ndarray | None       # [D+1] int64 R[n] for the 'valid' divisor
    frac: int                      # F of the 'valid' rescale (0 otherwise)
    out: Fixed

    @property
    def exact(self) -> bool:
        return self.recip is None and self.pre_shift == 0

    def run(self, x):
        q = to_q(self.in_form, x) << self.pre_shift
        if self.divisor == "global":
            return q.sum(axis=(2, 3), keepdims=True)
        k, s = self.kernel, self.stride
        if self.recip is None:
            return nn.sum_pool2d(q, k, s, self.pads, self.pad_q, self.pad_mode).astype(np.int64)
        tot = nn.sum_pool2d(q, k, s, self.pads, 0.0).astype(np.int64)
        n = nn.valid_counts(q.shape[2], q.shape[3], k, s, self.pads)
        return tot * self.recip[n][None, None]

    def describe(self) -> dict:
        d = describe_stage(self, "avgpool", on="codes" if isinstance(self.in_form, ActQuant) else "fixed",
                           divisor=self.divisor, rescale="exact (sum pool, 1/D in the scale)" if self.exact else
                           (f"fixed-point 1/n table, {self.frac} guard bits" if self.recip is not None
                            else f"input scaled by 2^{self.pre_shift} (padding zero not an integer)"),
                           out=self.out.describe())
        if self.divisor != "global":
            d.update(kernel=self.kernel, stride=self.stride, pads=list(self.pads), pad_mode=self.pad_mode)
        return d


@dataclass
class ConcatStage:
    """Channel concatenation; ``out`` is an ActQuant (codes of one quantizer) or Fixed."""
    folds = False             # no PE/SIMD fold
    kind = "concat"
    name: str
    in_shape: tuple
    out_shape: tuple
    in_forms: list
    out: object

    def run(self, *xs):
        if isinstance(self.out, ActQuant):
            return np.concatenate([np.asarray(x, np.int64) for x in xs], axis=1)
        return np.concatenate([to_q(f, x) for f, x in zip(self.in_forms, xs)], axis=1)

    def describe(self) -> dict:
        return describe_stage(self, "concat", inputs=len(self.in_forms),
                              on="codes" if isinstance(self.out, ActQuant) else "fixed")


@dataclass
class FixedPoolStage:
    """Max-pool on a ``fixed`` tensor (min-pool on channels with a negative scale)."""
    folds = False             # no PE/SIMD fold
    kind = "maxpool"
    name: str
    in_shape: tuple
    out_shape: tuple
    pool: PoolSpec
    out: Fixed

    def run(self, x):
        return self.pool.apply(x)

    def describe(self) -> dict:
        p = self.pool
        return describe_stage(self, "maxpool", kernel=p.kernel, stride=p.stride, pads=list(p.pads), on="fixed",
                              min_channels=int((~p.maximize).sum()))


@dataclass
class ThresholdStage:
    """``quant_act`` on a ``fixed`` tensor: ``count = #{t: q >= T_t (up) or q <= T_t (down)}``."""
    folds = False             # no PE/SIMD fold
    kind = "threshold"
    name: str                      # the quant_act layer
    layers: list
    in_shape: tuple
    out_shape: tuple
    scale: np.ndarray
    bias: np.ndarray
    post: list
    acc_lo: int
    acc_hi: int
    out_act: ActQuant
    thresholds: np.ndarray | None = None
    up: np.ndarray | None = None

    raw = False
    pre_act = MatmulStage.pre_act
    f = MatmulStage.f

    @property
    def out_channels(self) -> int:
        return int(self.in_shape[0])

    def run(self, q):
        return apply_thresholds(q, self.thresholds, self.up)

    def describe(self) -> dict:
        return describe_stage(self, "threshold", self.layers, in_bits=signed_bits(self.acc_lo, self.acc_hi),
                              output=describe_thresholds(self))


@dataclass
class LoweredGraph(Lowered):
    """Stages in a topological order; ``inputs[stage]`` names the stages (or ``'input'``) it
    reads, in order; ``output`` the stage whose ``fixed`` result is the network output."""
    inputs: dict = field(default_factory=dict)
    output: str = ""
    out_form: Fixed | None = None

    @property
    def last(self):
        return next(s for s in self.stages if s.name == self.output)

    def dequantize(self, q):
        return self.out_form.value(np.asarray(q, np.int64))


# ------------------------------------------------------------------------ lowering

def _check_bits(net, layer, lo, hi):
    b = signed_bits(lo, hi)
    if b > MAX_FIXED_BITS:
        raise NotSupportedError(f"{net.path}: layer '{layer.name}' (#{layer.index}): the integer form needs "
                                f"{b} bits (> {MAX_FIXED_BITS})")


def _product_clip(m, f: Fixed):
    """``None``, or integer bounds ``(L, U)`` per channel of the product ``m * clip(q, zlo, zhi)``
    of a clipped input: ``m * q`` clipped to them equals it wherever ``q`` is not clipped; a
    clipped product is ``m * z`` rounded to the nearest integer (the sum's unit; computed
    exactly, as fractions). Each bound lies within the product's range ``m * [lo, hi]`` (an
    unbounded side is that range's end: no clip)."""
    if f.clip is None:
        return None
    bounds = ([], [])
    for c, mc in enumerate(int(v) for v in m):
        ends = sorted((mc * f.lo, mc * f.hi))
        zs = []
        for z in (f.clip[0][c], f.clip[1][c]):
            if mc == 0 or not np.isfinite(z):
                zs.append(None if mc else 0)
            else:
                zs.append(min(max(round(Fraction(mc) * Fraction(float(z))), ends[0]), ends[1]))
        if mc < 0:                          # the product's order is q's reversed
            zs = zs[::-1]
        bounds[0].append(ends[0] if zs[0] is None else zs[0])
        bounds[1].append(ends[1] if zs[1] is None else zs[1])
    return tuple(np.array(b, np.int64) for b in bounds)


def _pre_rounded(f: Fixed, p: int) -> Fixed:
    """The composed view of ``round_shift(q, p)``: ``p`` of ``f``'s guard bits rounded away."""
    if not p:
        return f
    clip = None if f.clip is None else tuple(np.asarray(z) / (1 << p) for z in f.clip)
    return Fixed(f.scale * (1 << p), f.offset, int(round_shift(f.lo, p)), int(round_shift(f.hi, p)),
                 guard=f.guard - p, clip=clip)


def _add_stage(net, L: Layer, forms) -> AddStage:
    C = L.out_shape[0]
    fx = [as_fixed(f, C) for f in forms]
    S = np.stack([f.scale for f in fx])                             # [n, C]
    res = np.stack([np.abs(f.scale) * 2.0 ** f.guard for f in fx])
    ref = np.where(res == 0, np.inf, res).min(axis=0)
    ref = np.where(np.isfinite(ref), ref, 1.0)
    ratio = S / ref
    shift, align = 0, (0,) * len(fx)

    def whole_clips(mult):           # every finite clip bound of the products an integer
        for m, f in zip(mult, fx):
            if f.clip is not None:
                for z in f.clip:
                    p = m * np.where(np.isfinite(z), z, 0.0)
                    if not np.all(p == np.round(p)):
                        return False
        return True

    def products(mult, pre):         # range of the sum (Python integers: no int64 overflow)
        lo = hi = np.zeros(C, object)
        for m, f, p in zip(mult, fx, pre):
            f = _pre_rounded(f, p)
            a, b = m.astype(object) * f.lo, m.astype(object) * f.hi
            lo, hi = lo + np.minimum(a, b), hi + np.maximum(a, b)
        return int(lo.min()), int(hi.max())

    pre = (0,) * len(fx)
    if (np.all(ratio == np.round(ratio)) and np.all(np.abs(ratio) < 2 ** 20)
            and whole_clips(np.round(ratio).astype(np.int64))):
        frac, step, mult = 0, ref, np.round(ratio).astype(np.int64)
    else:
        # an input already at ~step carries its guard bits g_i into the sum (rounded away after
        # it); the others keep their multiplier and are aligned by a left shift (no wider product).
        # Where that sum would exceed MAX_FIXED_BITS, guarded inputs first carry only c < g_i of
        # their guard bits (the rest rounded away before the product: pre_shifts), then G shrinks
        top = max(f.guard for f in fx)
        tries = [(G, c) for G in range(ADD_FRAC_BITS, MIN_ADD_FRAC_BITS - 1, -1) for c in range(top, -1, -1)]
        for frac, carry in tries:
            step = ref / (1 << frac)
            pre = tuple(max(0, f.guard - carry) for f in fx)
            shift = max(f.guard - p for f, p in zip(fx, pre))
            align = tuple(shift - (f.guard - p) for f, p in zip(fx, pre))
            mult = np.stack([np.round(S[i] * (1 << f.guard) / step).astype(np.int64) << k
                             for i, (f, k) in enumerate(zip(fx, align))])
            if signed_bits(*products(mult, pre)) <= MAX_FIXED_BITS:
                break
    lo, hi = products(mult, pre)
    _check_bits(net, L, lo, hi)
    clips = [_product_clip(m, _pre_rounded(f, p)) for m, f, p in zip(mult, fx, pre)]
    sum_bits = signed_bits(lo, hi + (1 << shift >> 1))
    lo, hi = int(round_shift(lo, shift)), int(round_shift(hi, shift))
    out = Fixed(step, sum(f.offset for f in fx), lo, hi, guard=frac)
    return AddStage(L.name, L.in_shape, L.out_shape, list(forms), mult, frac, out, shift, sum_bits, align,
                    tuple(clips), pre)


def _refuse_clipped(net, L: Layer, fx, what: str):
    if any(f.clip is not None for f in fx):
        raise NotSupportedError(f"{net.path}: layer '{L.name}' (#{L.index}), field 'inputs': the {what} of an "
                                f"unquantized activation (relu/clip01 on unquantized values) has no integer form; "
                                f"insert a quant_act before it")


def _avgpool_stage(net, L: Layer, form) -> AvgPoolStage:
    C = L.in_shape[0]
    fx = as_fixed(form, C)
    _refuse_clipped(net, L, [fx], "average pool")
    if L.op == "global_avgpool":
        D = L.in_shape[1] * L.in_shape[2]
        out = Fixed(fx.scale / D, fx.offset, D * fx.lo, D * fx.hi, guard=fx.guard)
        _check_bits(net, L, out.lo, out.hi)
        return AvgPoolStage(L.name, L.in_shape, L.out_shape, form, None, None, (0, 0, 0, 0), "constant", "global",
                            0, np.zeros(C, np.int64), None, 0, out)
    k, s, pads, mode, div = L["kernel"], L["stride"], L.pads, L["pad_mode"], L["divisor"]
    D = k * k
    padded = any(pads) and mode == "constant"
    if padded and div == "valid":
        F = AVG_FRAC_BITS
        recip = np.array([0] + [round((1 << F) * D / n) for n in range(1, D + 1)], np.int64)
        big = max(abs(fx.lo), abs(fx.hi))
        _check_bits(net, L, -big * int(recip.max()) * D, big * int(recip.max()) * D)
        lo = min(n * fx.lo * int(recip[n]) for n in range(1, D + 1))
        hi = max(n * fx.hi * int(recip[n]) for n in range(1, D + 1))
        out = Fixed(fx.scale / (D << F), fx.offset, lo, hi, guard=fx.guard + F)
        return AvgPoolStage(L.name, L.in_shape, L.out_shape, form, k, s, pads, mode, div, 0,
                            np.zeros(C, np.int64), recip, F, out)
    shift = 0
    pad_q = np.zeros(C, np.int64)
    if padded:
        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.where(fx.scale != 0, -fx.offset / fx.scale, 0.0)
        if np.any(fx.scale == 0) and np.any(fx.offset[fx.scale == 0] != 0):
            raise NotSupportedError(f"{net.path}: layer '{L.name}' (#{L.index}): zero padding of a channel "
                                    f"with a constant non-zero value has no integer form")
        if not np.all(z == np.round(z)):
            shift = AVG_FRAC_BITS
            z = z * (1 << shift)
        pad_q = np.round(z).astype(np.int64)
    qlo, qhi = fx.lo << shift, fx.hi << shift
    if padded:
        qlo, qhi = min(qlo, int(pad_q.min())), max(qhi, int(pad_q.max()))
    out = Fixed(fx.scale / (D * (1 << shift)), fx.offset, D * qlo, D * qhi, guard=fx.guard + shift)
    _check_bits(net, L, out.lo, out.hi)
    return AvgPoolStage(L.name, L.in_shape, L.out_shape, form, k, s, pads, mode, div, shift, pad_q, None, 0, out)


def _concat_stage(net, L: Layer, forms) -> ConcatStage:
    if all(isinstance(f, ActQuant) for f in forms) and all(_same_act(forms[0], f) for f in forms[1:]):
        return ConcatStage(L.name, L.in_shape, L.out_shape, list(forms), forms[0])
    fx = [as_fixed(f, shp[0]) for f, shp in zip(forms, L.in_shapes)]
    _refuse_clipped(net, L, fx, "concat")
    if len({f.guard for f in fx}) > 1:
        raise NotSupportedError(f"{net.path}: layer '{L.name}' (#{L.index}): concat of unquantized inputs "
                                f"with different fixed-point guard bits {[f.guard for f in fx]}")
    out = Fixed(np.concatenate([f.scale for f in fx]), np.concatenate([f.offset for f in fx]),
                min(f.lo for f in fx), max(f.hi for f in fx), guard=fx[0].guard)
    return ConcatStage(L.name, L.in_shape, L.out_shape, list(forms), out)


def _uint_view(form: Fixed) -> ActQuant | None:
    """A ``fixed`` tensor that is a non-negative integer times one positive scale (a sum pool
    of non-negative codes: ``avgpool``/``global_avgpool`` of a ``quant_act``) read as the codes
    of a wider ``uint`` activation, so a conv/dense consumes it exactly (1/D in its scale)."""
    sc = np.asarray(form.scale, np.float64)
    if (form.post or np.any(form.offset != 0) or form.lo < 0 or not np.all(sc == sc.flat[0])
            or not sc.flat[0] > 0):
        return None
    bits = max(1, int(form.hi).bit_length())
    if bits > UINT_VIEW_BITS:
        return None
    return ActQuant({"type": "uint", "bits": bits, "scale": float(sc.flat[0])}, "none")


def _matmul_stage(net, L: Layer, chain: list, act: ActQuant) -> MatmulStage:
    """A conv/dense with its folded chain (batchnorms, at most one maxpool, optionally a final
    quant_act), lowered by the sequential lowering as a one-path network with input ``act``."""
    sub = Network(net.name, net.path, L.in_shape, net.input_bits, net.input_scale, [L] + chain, net.spec_hash)
    st = lower_seq(sub, input_act=act, codes_out=True).stages[0]
    st.pad_mode = L.get("pad_mode", "constant")
    if st.pool is not None:
        st.pool.pad_mode = next(x for x in chain if x.op == "maxpool").get("pad_mode", "constant")
    return st


def lower_graph(net: Network) -> LoweredGraph:
    """Integer stages of a graph network (see the module docstring for each stage's semantics)."""
    err = lambda msg, layer, fld="op": SpecError(net.path, msg, layer.name, layer.index, fld)
    out = LoweredGraph(net, ActQuant.input(net.input_bits, net.input_scale))
    consumers: dict = {}
    for layer in net.layers:
        for v in layer.inputs:
            consumers.setdefault(v, []).append(layer)

    def float_only(layer, why):
        return NotSupportedError(f"{net.path}: layer '{layer.name}' (#{layer.index}), field 'op': 'act' is an "
                                 f"unquantized (full-precision) activation {why}; it runs on the float path only. "
                                 f"Use a quant_act to run the network in hardware")
    for layer in net.layers:
        if layer.op == "act" and layer["nonlin"] not in MONOTONE_ACTS:
            raise float_only(layer, f"({layer['nonlin']!r} is not monotone)")
    # tensor name -> (producing stage or 'input', form)
    tensors = {INPUT_NAME: (INPUT_NAME, out.input_act)}
    done: set = set()

    def add(stage, srcs, names):
        out.stages.append(stage)
        out.inputs[stage.name] = tuple(srcs)
        form = getattr(stage, "out", None)
        if isinstance(stage, MatmulStage):
            form = (Fixed(stage.scale, stage.bias, stage.acc_lo, stage.acc_hi,
                          [p for p in stage.post if p[0] == "bn"]) if stage.raw else stage.out_act)
        elif isinstance(stage, CodePoolStage):
            form = stage.act
        elif isinstance(stage, ThresholdStage):
            form = stage.out_act
        for n in names:
            tensors[n] = (stage.name, form)
            done.add(n)

    for L in net.layers:
        if L.name in done:
            continue
        srcs = [tensors[v][0] for v in L.inputs]
        forms = [tensors[v][1] for v in L.inputs]
        form = forms[0]
        codes = isinstance(form, ActQuant)
        if L.op in ("conv", "dense"):
            if not codes and _uint_view(form) is not None:
                form, codes = _uint_view(form), True
            src_stage = next((s for s in out.stages if s.name == srcs[0]), None)
            if (not codes and isinstance(src_stage, AvgPoolStage) and isinstance(src_stage.in_form, ActQuant)
                    and not form.post):
                raise NotSupportedError(
                    f"{net.path}: layer '{L.name}' (#{L.index}), field 'op': it reads the average pool "
                    f"'{L.inputs[0]}' of codes whose sums are negative, per-channel scaled or wider than "
                    f"{UINT_VIEW_BITS} bits ({form.lo}..{form.hi}), which no unsigned activation holds; "
                    f"insert a quant_act after the pool")
            if not codes:
                raise err(f"the input of '{L.name}' is not quantized: '{L.inputs[0]}' produces unquantized "
                          f"values; insert a quant_act before it", L)
            chain, cur, pools = [], L, 0
            while len(consumers.get(cur.name, [])) == 1:
                nxt = consumers[cur.name][0]
                if nxt.op not in ("batchnorm", "maxpool", "quant_act"):
                    break
                if nxt.op == "maxpool":
                    if pools:
                        break
                    pools += 1
                chain.append(nxt)
                cur = nxt
                if nxt.op == "quant_act":
                    break
            st = _matmul_stage(net, L, chain, form)
            add(st, srcs, [L.name] + [x.name for x in chain])
        elif L.op == "maxpool":
            if codes:
                st = CodePoolStage(L.name, L.in_shape, L.out_shape, form,
                                   PoolSpec(L.name, L["kernel"], L["stride"], L.pads, "codes",
                                            np.ones(L.in_shape[0], bool), L.get("pad_mode", "constant")))
            else:
                A = form.clip_affine()[0]        # slope of the whole monotone chain
                st = FixedPoolStage(L.name, L.in_shape, L.out_shape,
                                    PoolSpec(L.name, L["kernel"], L["stride"], L.pads, "acc", A >= 0,
                                             L.get("pad_mode", "constant")),
                                    Fixed(form.scale, form.offset, form.lo, form.hi, list(form.post), form.guard))
            add(st, srcs, [L.name])
        elif L.op == "batchnorm":
            if codes:
                raise err("batchnorm must act on unquantized values (after a conv/dense, add or pool); "
                          "here it would act on quantized activations", L)
            tensors[L.name] = (srcs[0], Fixed(form.scale, form.offset, form.lo, form.hi,
                                              list(form.post) + [("bn", L)], form.guard))
            done.add(L.name)
        elif L.op == "act":
            if codes:
                raise float_only(L, "on quantized values")
            # a monotone activation on a fixed tensor joins its chain: thresholds fold it in, a
            # max-pool commutes with it, an add clips the input's product (AddStage.clips)
            tensors[L.name] = (srcs[0], Fixed(form.scale, form.offset, form.lo, form.hi,
                                              list(form.post) + [("act", L)], form.guard))
            done.add(L.name)
        elif L.op == "quant_act":
            if codes:
                raise err("quant_act must act on unquantized values (after a conv/dense, add, pool or "
                          "batchnorm); its input is already quantized", L)
            act = ActQuant(L["quant"], L["nonlin"], L.params)
            st = ThresholdStage(L.name, [L.name], L.in_shape, L.out_shape, np.asarray(form.scale, np.float64),
                                np.asarray(form.offset, np.float64), list(form.post), form.lo, form.hi, act)
            st.thresholds, st.up = compute_thresholds(st)
            add(st, srcs, [L.name])
        elif L.op == "add":
            add(_add_stage(net, L, forms), srcs, [L.name])
        elif L.op in ("avgpool", "global_avgpool"):
            add(_avgpool_stage(net, L, form), srcs, [L.name])
        elif L.op == "concat":
            add(_concat_stage(net, L, forms), srcs, [L.name])
        else:  # pragma: no cover - the loader rejects unknown ops
            raise err(f"unknown op {L.op!r}", L)
    last = net.layers[-1]
    src, form = tensors[last.name]
    if isinstance(form, ActQuant):
        raise err("the network must end with unquantized values (a conv/dense, add, pool or batchnorm) whose "
                  "integers are the output; a trailing quant_act or maxpool on codes is not supported", last)
    if form.clipped:
        raise err("the network output is an unquantized activation (relu/clip01), which has no affine map "
                  "from the output integers; end with a conv/dense, add, pool or batchnorm", last)
    out.output, out.out_form = src, form
    return out


# ------------------------------------------------------------------------ golden paths

def run_int_graph(low: LoweredGraph, x, trace: bool = False):
    """Output integers ``q`` of the graph (``low.dequantize`` maps them to values)."""
    vals = {INPUT_NAME: x}
    for st in low.stages:
        vals[st.name] = st.run(*[vals[v] for v in low.inputs[st.name]])
    res = vals[low.output]
    if trace:
        return res, {st.name: vals[st.name] for st in low.stages}
    return res


def run_float_graph(golden, x, trace: bool = False):
    """Float path of a graph network, layer by layer in spec order (framework semantics)."""
    net = golden.net
    vals = {INPUT_NAME: x.astype(np.float64) * net.input_scale}
    for layer in net.layers:
        ins = [vals[v] for v in layer.inputs]
        if layer.op == "add":
            v = ins[0]
            for y in ins[1:]:
                v = v + y
        elif layer.op == "concat":
            v = np.concatenate(ins, axis=1)
        else:
            v = golden.float_layer(layer, ins[0])
        vals[layer.name] = v
    res = vals[net.layers[-1].name]
    if trace:
        return res, {l.name: vals[l.name] for l in net.layers}
    return res
