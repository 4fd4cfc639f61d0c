"""Quantizers of the seeds (docs/design.md section 4) and their bit-plane basis form (section 5).

Every quantizer gives

* the float fake-quant value (``fake_quant``: the training semantics, computed by the
  seed's formula),
* integer codes (``encode``) whose bit ``p`` is bit-plane ``p``, and ``decode`` from codes
  back to the fake-quant value, with ``decode(encode(x)) == fake_quant(x)`` exactly,
* the **basis form** ``x = s * (sum_p c_p * beta_p + o)``: float plane coefficients
  (exact) and an :class:`IntBasis` with integer coefficients (identical for every
  quantizer whose coefficients are integers; fixed-point with ``coef_bits`` bits for
  TTQ's learned scales and LQ-Nets' learned bases).

Weights are quantized per output channel (axis 0) where the quantizer is per channel
(``int``, ``lq``); per-tensor quantizers broadcast their scalars to all channels so the
basis always has shape ``[planes, channels]``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from bitplane.core.errors import InputError

# Type -> (min bits, max bits) for each role.
WEIGHT_TYPES = {"dorefa": (1, 16), "sign": (1, 1), "ttq": (2, 2), "lq": (1, 8), "int": (2, 16)}
ACT_TYPES = {"dorefa": (1, 16), "sign": (1, 1), "lq": (1, 8), "uint": (1, 16), "int": (2, 16), "tanh": (1, 16)}
# Allowed `nonlin` per activation quantizer type.
ACT_NONLINS = {
    "dorefa": ("clip01", "cabs"),
    "sign": ("none",),
    "lq": ("relu", "none", "clip01"),
    "uint": ("relu", "none", "clip01"),
    "int": ("none", "relu"),
    "tanh": ("relu", "none"),
}
NONLINS = ("clip01", "cabs", "relu", "none")
DEFAULT_COEF_BITS = 12
TABLE_PLANES = 8        # weights of at most this many planes get their integer values by table lookup
DEFAULT_BITS = {"sign": 1, "ttq": 2}
TERNARY = "t"           # a --bits weight width: ternary weights (TTQ's {-Wn, 0, +Wp}), no integer width
FLOAT_BITS = 32         # a --bits width: unquantized (float)
_BITS_ROLES = {"W": "weight bits", "A": "activation bits", "G": "gradient bits"}


def parse_bits(text, fields: str = "WA", *, top: int = 16, defaults: dict | None = None, float_ok: str = "",
               ternary_ok: str = "W") -> tuple:
    """The ``--bits`` option of ``bitplane train`` and ``bitplane import``: ``"W,A"`` (one
    comma-separated value per letter of ``fields``) -> a tuple with, per field, an int
    ``1..top``, :data:`FLOAT_BITS` (32, float) for the fields in ``float_ok``, or
    :data:`TERNARY` (``'t'``, ternary weights) for those in ``ternary_ok``. Trailing fields
    with a value in ``defaults`` may be left out. Raises :class:`InputError` quoting ``text``."""
    parts = [p.strip() for p in str(text).split(",")]
    defaults = defaults or {}
    while len(parts) < len(fields) and fields[len(parts)] in defaults:
        parts.append(str(defaults[fields[len(parts)]]))
    if len(parts) != len(fields):
        raise InputError(f"--bits {text!r}: expected {','.join(fields)} (e.g. {','.join('1' * len(fields))}"
                         + (f"; {FLOAT_BITS} = float" if float_ok else "")
                         + (f"; {TERNARY} = ternary {ternary_ok[0]}" if ternary_ok else "") + ")")
    out = []
    for f, p in zip(fields, parts):
        if f in ternary_ok and p.lower() == TERNARY:
            out.append(TERNARY)
            continue
        try:
            v = int(p)
        except ValueError:
            raise InputError(f"--bits {text!r}: {f}={p!r} is not an integer"
                             + (f" (or '{TERNARY}' for ternary {f})" if f in ternary_ok else "")) from None
        if not (1 <= v <= top or (f in float_ok and v == FLOAT_BITS)):
            raise InputError(f"--bits {text!r}: {_BITS_ROLES.get(f, f)} {v} out of range 1..{top}"
                             + (f" or {FLOAT_BITS} (float)" if f in float_ok else ""))
        out.append(v)
    return tuple(out)


def rnd(x):
    """Round half to even (numpy and TensorFlow agree)."""
    return np.rint(x)


def q_k(x, k: int):
    """DoReFa's ``q_k(x) = round(x * (2^k - 1)) / (2^k - 1)``."""
    m = float((1 << k) - 1)
    return rnd(x * m) / m


def sign(x):
    """``+1`` if ``x >= 0`` else ``-1`` (no zero level)."""
    return np.where(np.asarray(x) >= 0, 1.0, -1.0)


def apply_nonlin(name: str, x):
    x = np.asarray(x, dtype=np.float64)
    if name == "clip01":
        return np.clip(x, 0.0, 1.0)
    if name == "cabs":
        return np.minimum(1.0, np.abs(x))
    if name == "relu":
        return np.maximum(x, 0.0)
    if name == "none":
        return x
    raise ValueError(f"unknown nonlin {name!r}")


def code_bits(codes, planes: int):
    """``[..., planes]`` array of the bit-planes of integer codes (plane p = bit p)."""
    codes = np.asarray(codes, dtype=np.int64)
    return (codes[..., None] >> np.arange(planes)) & 1


def fixed_point(values, coef_bits: int, axis=None):
    """Integer fixed-point form of float coefficients: ``values ~= scale * ints``.

    ``scale = max|values| / (2^(coef_bits-1) - 1)`` (over ``axis``), ``ints =
    round(values / scale)``, so the largest coefficient uses the full signed range.
    """
    values = np.asarray(values, dtype=np.float64)
    top = (1 << (coef_bits - 1)) - 1
    scale = np.max(np.abs(values), axis=axis, keepdims=axis is not None) / top
    scale = np.where(scale > 0, scale, 1.0)
    ints = rnd(values / scale).astype(np.int64)
    return ints, (np.squeeze(scale, axis=axis) if axis is not None else float(scale))


@dataclass
class IntBasis:
    """Integer basis: value of a code = ``scale * (sum_p coefs[p] * beta_p + offset)``.

    Shapes: ``coefs [P, C]`` int64, ``offset [C]`` int64, ``scale [C]`` float64 (weights,
    ``C`` output channels) or ``coefs [P]``, scalar ``offset``/``scale`` (activations).
    ``exact`` is True when the coefficients are the quantizer's own (no fixed-point
    rounding), so the integer form reproduces the float one up to float rounding.
    """
    coefs: np.ndarray
    offset: np.ndarray
    scale: np.ndarray
    exact: bool

    @property
    def planes(self) -> int:
        return int(np.shape(self.coefs)[0])

    def int_values(self, codes):
        """Integer values of codes. Weights: ``codes [C, ...]``; activations: any shape."""
        c = np.asarray(self.coefs)
        if c.ndim == 1:
            return (code_bits(codes, self.planes) * c).sum(-1) + int(self.offset)
        codes = np.asarray(codes, dtype=np.int64)
        if self.planes <= TABLE_PLANES and codes.size > (c.shape[1] << self.planes):
            # many weights, few codes: each channel's 2^P values once, then a lookup (same integers)
            table = self.int_values(np.tile(np.arange(1 << self.planes), (c.shape[1], 1)))
            flat = codes.reshape(c.shape[1], -1)
            return np.take_along_axis(table, flat, axis=1).reshape(codes.shape)
        b = code_bits(codes, self.planes)
        shp = (c.shape[1],) + (1,) * (codes.ndim - 1) + (self.planes,)
        return (b * c.T.reshape(shp)).sum(-1) + np.asarray(self.offset).reshape(shp[:-1])


@dataclass
class Basis:
    """Float (exact) basis form; same layout as :class:`IntBasis`."""
    coefs: np.ndarray
    offset: np.ndarray
    scale: np.ndarray

    @property
    def planes(self) -> int:
        return int(np.shape(self.coefs)[0])


# --------------------------------------------------------------------------- weights

@dataclass
class QWeights:
    """A quantized weight tensor: codes, fake-quant values and both basis forms."""
    qtype: str
    bits: int
    codes: np.ndarray           # same shape as W, integer plane codes
    fq: np.ndarray              # float64 fake-quant values
    basis: Basis
    int_basis: IntBasis
    table: np.ndarray = field(repr=False)  # [C, 2^P] float value of each code per channel

    @property
    def planes(self) -> int:
        return self.basis.planes

    def decode(self, codes):
        """Fake-quant value of codes ``[C, ...]`` (exactly :attr:`fq` for :attr:`codes`)."""
        codes = np.asarray(codes, dtype=np.int64)
        c = codes.shape[0]
        flat = codes.reshape(c, -1)
        return np.take_along_axis(self.table, flat, axis=1).reshape(codes.shape)

    def int_values(self, codes=None):
        return self.int_basis.int_values(self.codes if codes is None else codes)


def weight_planes(qtype: str, bits: int) -> int:
    return 2 if qtype == "ttq" else bits


def _per_channel(W):
    W = np.asarray(W, dtype=np.float64)
    return W.reshape(W.shape[0], -1)


def _dorefa_t(W):
    t = np.tanh(np.asarray(W, dtype=np.float64))
    mx = np.max(np.abs(t))
    return t / mx * 0.5 + 0.5 if mx > 0 else np.full_like(t, 0.5)


def fake_quant_weights(qspec: dict, W, params: dict | None = None):
    """Float fake-quant weights by the seed formulas (docs/design.md section 4)."""
    params = params or {}
    W = np.asarray(W, dtype=np.float64)
    t, k = qspec["type"], int(qspec.get("bits", DEFAULT_BITS.get(qspec["type"], 0)))
    if t == "dorefa" and k == 1:
        return np.mean(np.abs(W)) * sign(W)
    if t == "dorefa":
        return 2 * q_k(_dorefa_t(W), k) - 1
    if t == "sign":
        return sign(W)
    if t == "ttq":
        th = 0.05 * np.max(np.abs(W))
        wp, wn = float(params["Wp"]), float(params["Wn"])
        return np.where(W > th, wp, np.where(W < -th, -wn, 0.0))
    if t == "lq":
        v = np.asarray(params["basis"], dtype=np.float64)          # [bits, C]
        out = np.empty_like(W)
        Wc, oc = _per_channel(W), out.reshape(W.shape[0], -1)
        for c in range(W.shape[0]):
            lv = np.sort(_lq_code_levels(v[:, c], signed=True))
            mids = (lv[:-1] + lv[1:]) / 2
            oc[c] = lv[np.searchsorted(mids, Wc[c], side="left")]
        return out
    if t == "int":
        M = (1 << (k - 1)) - 1
        Wc = _per_channel(W)
        s = np.max(np.abs(Wc), axis=1, keepdims=True) / M
        s = np.where(s > 0, s, 1.0)              # all-zero (or subnormal) channel: codes 0
        return (s * np.clip(rnd(Wc / s), -M, M)).reshape(W.shape)
    raise ValueError(f"unknown weight quantizer {t!r}")


def _lq_code_levels(v, signed: bool):
    """Level of every code (bit j set = +1 for signed/weights, 1 for activations)."""
    v = np.asarray(v, dtype=np.float64)
    P = v.shape[0]
    codes = np.arange(1 << P)
    bits = code_bits(codes, P).astype(np.float64)
    b = 2 * bits - 1 if signed else bits
    out = np.zeros(1 << P)
    for j in range(P):              # fixed summation order: the definition of a level
        out = out + v[j] * b[:, j]
    return out


def quantize_weights(qspec: dict, W, params: dict | None = None) -> QWeights:
    """Codes, fake-quant values and basis forms of a weight tensor (axis 0 = out channel)."""
    params = params or {}
    W = np.asarray(W, dtype=np.float64)
    t = qspec["type"]
    k = int(qspec.get("bits", DEFAULT_BITS.get(t, 0)))
    C = W.shape[0]
    Q = int(qspec.get("coef_bits", DEFAULT_COEF_BITS))
    ones = np.ones(C)
    if t == "dorefa" and k == 1:
        E = float(np.mean(np.abs(W)))
        codes = (W >= 0).astype(np.int64)
        table = np.tile(np.array([E * -1.0, E * 1.0]), (C, 1))
        coefs = np.full((1, C), 2)
        basis = Basis(coefs.astype(np.float64), -ones, E * ones)
        ib = IntBasis(coefs, -np.ones(C, np.int64), E * ones, True)
    elif t == "dorefa":
        m = (1 << k) - 1
        codes = rnd(_dorefa_t(W) * m).astype(np.int64)
        lv = 2 * (np.arange(m + 1) / float(m)) - 1
        table = np.tile(lv, (C, 1))
        coefs = np.tile((2 << np.arange(k))[:, None], (1, C)).astype(np.int64)
        basis = Basis(coefs.astype(np.float64), -m * ones, ones / m)
        ib = IntBasis(coefs, np.full(C, -m, np.int64), ones / m, True)
    elif t == "sign":
        codes = (W >= 0).astype(np.int64)
        table = np.tile(np.array([-1.0, 1.0]), (C, 1))
        coefs = np.full((1, C), 2)
        basis = Basis(coefs.astype(np.float64), -ones, ones.copy())
        ib = IntBasis(coefs, -np.ones(C, np.int64), ones.copy(), True)
    elif t == "ttq":
        th = 0.05 * np.max(np.abs(W))
        wp, wn = float(params["Wp"]), float(params["Wn"])
        codes = (W > th).astype(np.int64) | ((W < -th).astype(np.int64) << 1)
        table = np.tile(np.array([0.0, wp, -wn, wp - wn]), (C, 1))
        basis = Basis(np.tile(np.array([[wp], [-wn]]), (1, C)), 0 * ones, ones.copy())
        ints, s = fixed_point(np.array([wp, -wn]), Q)
        exact = bool(np.all(ints * s == np.array([wp, -wn])))
        ib = IntBasis(np.tile(ints[:, None], (1, C)), np.zeros(C, np.int64), s * ones, exact)
    elif t == "lq":
        v = np.asarray(params["basis"], dtype=np.float64)          # [bits, C]
        Wc = _per_channel(W)
        codes = np.empty(Wc.shape, np.int64)
        table = np.empty((C, 1 << k))
        for c in range(C):
            lv = _lq_code_levels(v[:, c], signed=True)
            order = np.argsort(lv, kind="stable")
            slv = lv[order]
            mids = (slv[:-1] + slv[1:]) / 2
            codes[c] = order[np.searchsorted(mids, Wc[c], side="left")]
            table[c] = lv
        codes = codes.reshape(W.shape)
        basis = Basis(2 * v, -v.sum(0), ones.copy())
        vi, s = fixed_point(v, Q, axis=0)
        exact = bool(np.all(vi * s == v))
        ib = IntBasis(2 * vi, -vi.sum(0), np.asarray(s, np.float64) * ones, exact)
    elif t == "int":
        M = (1 << (k - 1)) - 1
        Wc = _per_channel(W)
        s = np.max(np.abs(Wc), axis=1) / M
        s = np.where(s > 0, s, 1.0)
        q = np.clip(rnd(Wc / s[:, None]), -M, M).astype(np.int64)
        codes = (q & ((1 << k) - 1)).reshape(W.shape)
        allc = np.arange(1 << k)
        qv = np.where(allc >= (1 << (k - 1)), allc - (1 << k), allc)
        table = s[:, None] * qv[None, :].astype(np.float64)
        coefs = (1 << np.arange(k)).astype(np.int64)
        coefs[-1] = -coefs[-1]
        coefs = np.tile(coefs[:, None], (1, C))
        basis = Basis(coefs.astype(np.float64), 0 * ones, s.copy())
        ib = IntBasis(coefs, np.zeros(C, np.int64), s.copy(), True)
    else:
        raise ValueError(f"unknown weight quantizer {t!r}")
    q = QWeights(t, k, codes, None, basis, ib, table)
    q.fq = q.decode(codes)
    return q


# ----------------------------------------------------------------------- activations

class ActQuant:
    """An activation quantizer (after its ``nonlin``), with *level indices*.

    The output of a quantized activation is a level index ``n`` in ``0..L-1`` with
    levels sorted by value (so max-pool on indices is max-pool on values);
    ``level_codes[n]`` is the plane code the next layer's bit-planes are read from
    (identity for every type but LQ-Nets, whose levels are not monotone in the code).
    """

    def __init__(self, qspec: dict, nonlin: str, params: dict | None = None):
        params = params or {}
        self.qtype = t = qspec["type"]
        self.bits = k = int(qspec.get("bits", DEFAULT_BITS.get(t, 0)))
        self.nonlin_name = nonlin
        Q = int(qspec.get("coef_bits", DEFAULT_COEF_BITS))
        P = k
        if t in ("dorefa", "tanh"):
            # tanh: the pytorch DoReFa seed's activation quantizer with its per-batch maximum
            # frozen into ``range`` (docs/design.md section 4.3); its levels are dorefa's
            self.range = float(qspec["range"]) if t == "tanh" else None
            m = float((1 << k) - 1)
            self.levels = np.arange(1 << k) / m
            self.level_codes = np.arange(1 << k)
            self.basis = Basis((1 << np.arange(P)).astype(np.float64), 0.0, 1.0 / m)
            self.int_basis = IntBasis((1 << np.arange(P)).astype(np.int64), 0, 1.0 / m, True)
            self._m = m
        elif t == "uint":
            self.scale = float(qspec["scale"])
            m = float((1 << k) - 1)
            self.levels = np.arange(1 << k) * self.scale
            self.level_codes = np.arange(1 << k)
            self.basis = Basis((1 << np.arange(P)).astype(np.float64), 0.0, self.scale)
            self.int_basis = IntBasis((1 << np.arange(P)).astype(np.int64), 0, self.scale, True)
            self._m = m
        elif t == "int":
            # signed k-bit: values s*v, v in lo..hi (narrow: -(2^(k-1)-1)..2^(k-1)-1, else from
            # -2^(k-1)); plane code = level index = v - lo (offset binary, basis offset lo)
            self.scale = float(qspec["scale"])
            self.narrow = bool(qspec.get("narrow", False))
            self._lo = -(1 << (k - 1)) + int(self.narrow)
            self._hi = (1 << (k - 1)) - 1
            n = self._hi - self._lo + 1
            self.levels = (np.arange(n) + self._lo) * self.scale
            self.level_codes = np.arange(n)
            self.basis = Basis((1 << np.arange(P)).astype(np.float64), float(self._lo), self.scale)
            self.int_basis = IntBasis((1 << np.arange(P)).astype(np.int64), self._lo, self.scale, True)
        elif t == "sign":
            self.levels = np.array([-1.0, 1.0])
            self.level_codes = np.array([0, 1])
            self.basis = Basis(np.array([2.0]), -1.0, 1.0)
            self.int_basis = IntBasis(np.array([2], np.int64), -1, 1.0, True)
        elif t == "lq":
            v = np.asarray(params["basis"], dtype=np.float64).reshape(-1)
            self.v = v
            lv = _lq_code_levels(v, signed=False)
            order = np.argsort(lv, kind="stable")
            self.levels = lv[order]
            self.level_codes = order
            self._mids = (self.levels[:-1] + self.levels[1:]) / 2
            self.basis = Basis(v.copy(), 0.0, 1.0)
            vi, s = fixed_point(v, Q)
            self.int_basis = IntBasis(vi, 0, s, bool(np.all(vi * s == v)))
        else:
            raise ValueError(f"unknown activation quantizer {t!r}")
        self.L = len(self.levels)
        self.level_ints = np.asarray(self.int_basis.int_values(self.level_codes), dtype=np.int64)
        zero = np.flatnonzero(self.levels == 0.0)
        self.zero_index = int(zero[0]) if zero.size else None

    is_input = False          # the network input's codes (see :meth:`input`)
    frac_bits = 0             # extra low planes below the input code (see :meth:`with_frac_bits`)

    @classmethod
    def input(cls, bits: int, scale: float) -> "ActQuant":
        """The network input: uint codes with ``value = code * scale``."""
        a = cls({"type": "uint", "bits": bits, "scale": scale}, "none")
        a.is_input = True
        return a

    def with_frac_bits(self, f: int) -> "ActQuant":
        """The network input read with ``f`` fractional planes below its code: level index =
        input code ``n`` (value ``n * scale`` as before), plane code ``n << f``, integer value
        ``n * 2^f`` with scale ``scale / 2^f``, ``bits + f`` planes. The extra planes hold a
        padding value between two input codes (a per-channel ``pad_value`` of the first conv,
        e.g. the ImageNet mean); the input stream still carries the ``bits``-bit codes."""
        if not self.is_input or self.qtype != "uint":
            raise ValueError("fractional planes apply to the network input")
        a = ActQuant({"type": "uint", "bits": self.bits, "scale": self.scale}, "none")
        a.is_input, a.frac_bits = True, int(f)
        P = self.bits + f
        a.bits = P
        a.level_codes = np.arange(self.L, dtype=np.int64) << f
        s = self.scale / float(1 << f)
        a.basis = Basis((1 << np.arange(P)).astype(np.float64), 0.0, s)
        a.int_basis = IntBasis((1 << np.arange(P)).astype(np.int64), 0, s, True)
        a.level_ints = np.asarray(a.int_basis.int_values(a.level_codes), dtype=np.int64)
        return a

    @property
    def planes(self) -> int:
        return self.bits

    @property
    def monotone(self) -> bool:
        """True if ``index(z)`` is non-decreasing in ``z`` (all but ``cabs``)."""
        return self.nonlin_name != "cabs"

    def nonlin(self, z):
        return apply_nonlin(self.nonlin_name, z)

    def _tanh_unit(self, x):
        """The tanh quantizer's argument of ``q_k``: ``clip01((tanh(x) / range + 1) / 2)``."""
        return np.clip((np.tanh(x) / self.range + 1.0) / 2.0, 0.0, 1.0)

    def fake_quant(self, x):
        """Float fake-quant of a post-``nonlin`` value by the seed formula."""
        x = np.asarray(x, dtype=np.float64)
        t = self.qtype
        if t == "tanh":
            return rnd(self._tanh_unit(x) * self._m) / self._m
        if t == "dorefa":
            return rnd(x * self._m) / self._m
        if t == "uint":
            return np.clip(rnd(x / self.scale), 0, self._m) * self.scale
        if t == "int":
            return np.clip(rnd(x / self.scale), self._lo, self._hi) * self.scale
        if t == "sign":
            return sign(x)
        # lq: nearest level, ties to the lower one (a value above the midpoint goes up)
        return self.levels[np.searchsorted(self._mids, x, side="left")]

    def encode(self, x):
        """Level index of a post-``nonlin`` value."""
        x = np.asarray(x, dtype=np.float64)
        t = self.qtype
        if t == "tanh":
            return rnd(self._tanh_unit(x) * self._m).astype(np.int64)
        if t == "dorefa":
            return np.clip(rnd(x * self._m), 0, self._m).astype(np.int64)
        if t == "uint":
            return np.clip(rnd(x / self.scale), 0, self._m).astype(np.int64)
        if t == "int":
            return (np.clip(rnd(x / self.scale), self._lo, self._hi) - self._lo).astype(np.int64)
        if t == "sign":
            return (x >= 0).astype(np.int64)
        return np.searchsorted(self._mids, x, side="left").astype(np.int64)

    def decode(self, n):
        return self.levels[np.asarray(n, dtype=np.int64)]

    def apply(self, z):
        """``fake_quant(nonlin(z))``: the float path of a ``quant_act`` layer."""
        return self.fake_quant(self.nonlin(z))

    def index(self, z):
        """``encode(nonlin(z))``: the level index the hardware's thresholds produce."""
        return self.encode(self.nonlin(z))

    def describe(self) -> dict:
        ib = self.int_basis
        return {"type": self.qtype, "bits": self.bits, "nonlin": self.nonlin_name,
                **({"range": self.range} if self.qtype == "tanh" else {}), "levels": self.L, "coefs": np.asarray(ib.coefs).tolist(),
                "offset": int(ib.offset), "scale": float(ib.scale), "exact": ib.exact}


def bitplane_dot(w_codes, a_codes, wb: IntBasis, ab: IntBasis, channel: int = 0) -> int:
    """Dot product of one weight row and one activation vector by the bit-plane formula.

    ``sum_i sum_j c^w_i c^a_j popcount(beta^w_i & beta^a_j) + o_w sum_j c^a_j popcount(beta^a_j)
    + o_a sum_i c^w_i popcount(beta^w_i) + N o_w o_a`` (docs/design.md section 5) — the
    arithmetic the bit-serial engine performs, written plainly as the reference.
    """
    w_codes = np.asarray(w_codes, dtype=np.int64).reshape(-1)
    a_codes = np.asarray(a_codes, dtype=np.int64).reshape(-1)
    bw, ba = code_bits(w_codes, wb.planes), code_bits(a_codes, ab.planes)
    cw = np.asarray(wb.coefs)[:, channel]
    ow = int(np.asarray(wb.offset)[channel])
    ca, oa = np.asarray(ab.coefs), int(ab.offset)
    total = 0
    for i in range(wb.planes):
        for j in range(ab.planes):
            total += int(cw[i]) * int(ca[j]) * int(np.sum(bw[:, i] & ba[:, j]))
    total += ow * sum(int(ca[j]) * int(ba[:, j].sum()) for j in range(ab.planes))
    total += oa * sum(int(cw[i]) * int(bw[:, i].sum()) for i in range(wb.planes))
    return total + len(w_codes) * ow * oa
