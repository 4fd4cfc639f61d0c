"""NumPy reference of the bit-serial MVTU and test-case builders for every quantizer's bases.

The reference computes each row's exact dot product from plane codes and plane
coefficients as a plain integer matrix product, then the threshold rule and level -> code
table (or the raw accumulator). ``gen.quant.bitplane_dot`` is the bit-plane-formula
reference; tests check both agree.
"""
from __future__ import annotations

import numpy as np

from bitplane.hw.bitserial import EngineConfig


def int_values(codes, coefs, offset):
    P = len(coefs)
    bits = (np.asarray(codes, dtype=np.int64)[..., None] >> np.arange(P)) & 1
    return bits @ np.asarray(coefs, dtype=np.int64) + offset


def weight_ints(cfg: EngineConfig, wcodes):
    return np.stack([int_values(wcodes[r], [cfg.w_coefs[i][r] for i in range(cfg.w_planes)], cfg.w_offset[r])
                     for r in range(cfg.rows)])


def mvtu_reference(cfg: EngineConfig, wcodes, thr, dirs, vectors, raw=False):
    """Outputs ``[V, R]``: codes (threshold mode) or accumulators (raw mode / ``raw=True``)."""
    W = weight_ints(cfg, wcodes)
    A = int_values(np.asarray(vectors), cfg.a_coefs, cfg.a_offset)          # [V, N]
    acc = A @ W.T                                                            # [V, R]
    if cfg.raw or raw:
        return acc
    thr, dirs = np.asarray(thr, dtype=np.int64), np.asarray(dirs, dtype=bool)
    hit = np.where(dirs[None], acc[:, :, None] >= thr[None], acc[:, :, None] <= thr[None])
    lvl = hit.sum(-1)
    lut = np.array(cfg.out_lut or range(cfg.n_levels))
    return lut[lvl]


def quantizer_bases(kind: str, bits: int, rows: int, rng):
    """(coefs [P][rows], offset [rows]) of a weight quantizer, or (coefs [P], offset) of an
    activation quantizer ('u*'), as the lowering produces them (docs/design.md section 5)."""
    k = bits
    if kind == "dorefa":                         # weights, k >= 2
        return [[2 << i] * rows for i in range(k)], [-((1 << k) - 1)] * rows
    if kind in ("bwn", "sign"):
        return [[2] * rows], [-1] * rows
    if kind == "ttq":
        wp, wn = (int(x) for x in rng.integers(20, 2047, 2))
        return [[wp] * rows, [-wn] * rows], [0] * rows
    if kind == "lq":
        v = rng.integers(1, 2047, (k, rows))
        return [list(2 * v[i]) for i in range(k)], list(-v.sum(0))
    if kind == "int":
        return [[1 << i] * rows for i in range(k - 1)] + [[-(1 << (k - 1))] * rows], [0] * rows
    if kind == "zp":                              # unsigned codes minus a zero point per row (asymmetric)
        return [[1 << i] * rows for i in range(k)], [-int(z) for z in rng.integers(1, 1 << k, rows)]
    if kind == "uact":                            # dorefa/uint activations
        return [1 << j for j in range(k)], 0
    if kind == "sintact":                         # two's-complement activation codes
        return [1 << j for j in range(k - 1)] + [-(1 << (k - 1))], 0
    if kind == "signact":
        return [2], -1
    if kind == "lqact":
        return [int(x) for x in rng.integers(1, 2047, k)], 0
    raise ValueError(kind)


def make_case(rng, rows, cols, pe, simd, wkind, wbits, akind, abits, T, xnor=False, vectors=6):
    """A config, weight codes, thresholds/dirs and input vectors, with extreme rows/vectors."""
    wc, wo = quantizer_bases(wkind, wbits, rows, rng)
    ac, ao = quantizer_bases(akind, abits, rows, rng)
    pw, pa = len(wc), len(ac)
    lut = tuple(int(x) for x in rng.permutation(T + 1)) if T else ()
    cfg = EngineConfig(rows, cols, pe, simd, tuple(tuple(int(x) for x in c) for c in wc),
                       tuple(int(x) for x in wo), tuple(int(x) for x in ac), int(ao), n_thresholds=T,
                       out_lut=lut, xnor=xnor)
    wcodes = rng.integers(0, 1 << pw, (rows, cols))
    wcodes[0] = (1 << pw) - 1
    if rows > 1:
        wcodes[1] = 0
    vec = rng.integers(0, 1 << pa, (vectors, cols))
    vec[0] = (1 << pa) - 1
    if vectors > 1:
        vec[1] = 0
    if T:
        accs = mvtu_reference(cfg, wcodes, None, None, vec, raw=True)
        thr = np.stack([np.sort(rng.choice(accs[:, r], T) + rng.integers(-1, 2, T)) for r in range(rows)])
        dirs = rng.integers(0, 2, (rows, T))
    else:
        thr = np.zeros((rows, 0), np.int64)
        dirs = np.zeros((rows, 0), np.int64)
    return cfg, wcodes, thr, dirs, vec


def act_words(cfg: EngineConfig, vectors) -> list[int]:
    """Input stream words (SIMD lanes of P_a-bit codes) for vectors ``[V, N]``."""
    words = []
    for a in np.asarray(vectors):
        for sf in range(cfg.sf):
            w = 0
            for lane in range(cfg.simd):
                w |= int(a[sf * cfg.simd + lane]) << (lane * cfg.a_planes)
            words.append(w)
    return words


def out_lanes(cfg: EngineConfig, words) -> np.ndarray:
    """Output words -> ``[V, R]`` codes or signed accumulators."""
    ob, vals = cfg.out_bits, []
    for w in words:
        for p in range(cfg.pe):
            v = (int(w) >> (p * ob)) & ((1 << ob) - 1)
            if cfg.raw and v >> (ob - 1):
                v -= 1 << ob
            vals.append(v)
    return np.array(vals, dtype=np.int64).reshape(-1, cfg.rows)
