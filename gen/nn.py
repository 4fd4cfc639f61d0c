"""Vectorized NumPy kernels shared by the float and int golden paths.

All arithmetic is float64. The int path feeds integer-valued arrays whose every partial
sum is bounded by the layer's proven accumulator width (< 2^53, checked at lowering), so
float64 BLAS matrix products are exact and identical to an int64 dot product.
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def pad_nchw(x, pads, value, mode: str = "constant"):
    """Pad ``(top, bottom, left, right)`` with ``value`` (a number or one per channel);
    ``mode`` 'reflect' mirrors without the edge (PyTorch 'reflect', TF 'REFLECT'),
    'symmetric' with it (TF 'SYMMETRIC')."""
    t, b, l, r = pads
    if not any(pads):
        return x
    if mode != "constant":
        return np.pad(x, ((0, 0), (0, 0), (t, b), (l, r)), mode=mode)
    if np.ndim(value):              # one value per channel
        v = np.asarray(value, dtype=x.dtype).reshape(1, -1, 1, 1)
        out = np.empty(x.shape[:2] + (x.shape[2] + t + b, x.shape[3] + l + r), x.dtype)
        out[...] = v
        out[:, :, t:t + x.shape[2], l:l + x.shape[3]] = x
        return out
    return np.pad(x, ((0, 0), (0, 0), (t, b), (l, r)), mode="constant", constant_values=value)


def conv2d(x, w, stride: int, pads, groups: int = 1, pad_value=0.0, pad_mode: str = "constant"):
    """``x [N,C,H,W]`` (float64), ``w [O, C/groups, K, K]`` -> ``[N, O, OH, OW]``."""
    x = pad_nchw(np.asarray(x, dtype=np.float64), pads, pad_value, pad_mode)
    N, C, H, W = x.shape
    O, Cg, K, _ = w.shape
    win = sliding_window_view(x, (K, K), axis=(2, 3))[:, :, ::stride, ::stride]   # N,C,OH,OW,K,K
    OH, OW = win.shape[2], win.shape[3]
    G, Og = groups, O // groups
    win = win.reshape(N, G, Cg, OH, OW, K, K).transpose(1, 0, 3, 4, 2, 5, 6).reshape(G, N * OH * OW, Cg * K * K)
    wg = np.asarray(w, dtype=np.float64).reshape(G, Og, Cg * K * K)
    out = np.matmul(win, wg.transpose(0, 2, 1))                                      # G, N*OH*OW, Og
    return out.reshape(G, N, OH, OW, Og).transpose(1, 0, 4, 2, 3).reshape(N, O, OH, OW)


def dense(x, w):
    """``x [N, ...]`` flattened in C,H,W order, ``w [out, in]`` -> ``[N, out]``."""
    x = np.asarray(x, dtype=np.float64)
    x = x.reshape(x.shape[0], int(np.prod(x.shape[1:])))
    return x @ np.asarray(w, dtype=np.float64).T


def pool2d(x, k: int, stride: int, pads, maximize=True, pad_mode: str = "constant"):
    """Max-pool (or per-channel min-pool where ``maximize[c]`` is False).

    Padding positions never win (they are -inf for max, +inf for min) with ``pad_mode``
    'constant'; 'reflect'/'symmetric' pad with mirrored values (see :func:`pad_nchw`).
    """
    x = np.asarray(x, dtype=np.float64)
    C = x.shape[1]
    mx = np.broadcast_to(np.asarray(maximize, dtype=bool), (C,))
    out = None
    for want_max in (True, False):
        sel = mx if want_max else ~mx
        if not sel.any():
            continue
        xp = pad_nchw(x[:, sel], pads, -np.inf if want_max else np.inf, pad_mode)
        win = sliding_window_view(xp, (k, k), axis=(2, 3))[:, :, ::stride, ::stride]
        red = win.max(axis=(4, 5)) if want_max else win.min(axis=(4, 5))
        if out is None:
            out = np.empty((x.shape[0], C) + red.shape[2:])
        out[:, sel] = red
    return out


def channel_view(v, ndim: int):
    """Reshape a per-channel vector to broadcast against ``[N, C, ...]`` of ``ndim`` dims."""
    return np.asarray(v, dtype=np.float64).reshape((1, -1) + (1,) * (ndim - 2))


def batchnorm(x, params: dict, eps: float, ndim: int | None = None):
    """``gamma * (x - mean) / sqrt(var + eps) + beta`` per channel (axis 1)."""
    nd = x.ndim if ndim is None else ndim
    g, b, m, v = (channel_view(params[k], nd) for k in ("gamma", "beta", "mean", "var"))
    return g * (x - m) / np.sqrt(v + eps) + b


def sum_pool2d(x, k: int, stride: int, pads, pad_value=0.0, pad_mode: str = "constant"):
    """Window sums ``[N, C, OH, OW]`` of a K x K window (padding positions hold ``pad_value``
    per channel, a scalar or one value per channel, with ``pad_mode`` 'constant')."""
    x = np.asarray(x, dtype=np.float64)
    if pad_mode == "constant" and any(pads):
        pv = np.broadcast_to(np.asarray(pad_value, dtype=np.float64), (x.shape[1],))
        t, b, l, r = pads
        xp = np.empty(x.shape[:2] + (x.shape[2] + t + b, x.shape[3] + l + r))
        xp[:] = pv[None, :, None, None]
        xp[:, :, t:t + x.shape[2], l:l + x.shape[3]] = x
        x = xp
    else:
        x = pad_nchw(x, pads, 0.0, pad_mode)
    win = sliding_window_view(x, (k, k), axis=(2, 3))[:, :, ::stride, ::stride]
    return win.sum(axis=(4, 5))


def valid_counts(h: int, w: int, k: int, stride: int, pads):
    """``[OH, OW]`` number of window positions inside the ``h x w`` input (TF's divisor)."""
    ones = np.ones((1, 1, h, w))
    return sum_pool2d(ones, k, stride, pads, 0.0)[0, 0].astype(np.int64)


def avgpool2d(x, k: int, stride: int, pads, divisor: str = "include_pad", pad_mode: str = "constant"):
    """Average pool. ``divisor`` 'include_pad': K*K everywhere, zero padding (PyTorch's
    ``avg_pool2d(count_include_pad=True)``); 'valid': the window positions inside the input
    (TensorFlow). With a mirror ``pad_mode`` every position holds a value: K*K."""
    x = np.asarray(x, dtype=np.float64)
    s = sum_pool2d(x, k, stride, pads, 0.0, pad_mode)
    if divisor == "valid" and pad_mode == "constant":
        return s / valid_counts(x.shape[2], x.shape[3], k, stride, pads)
    return s / (k * k)


def global_avgpool(x):
    """Mean over height and width, ``[N, C, H, W] -> [N, C, 1, 1]``."""
    return np.asarray(x, dtype=np.float64).mean(axis=(2, 3), keepdims=True)
