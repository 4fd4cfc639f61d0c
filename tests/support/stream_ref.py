"""NumPy references of the stream blocks (sliding window, pooling) in stream word order."""
from __future__ import annotations

import numpy as np

from bitplane.core.packing import pack_words, stream_order


def window_elements(x_chw, k: int, s: int, pads, pad_value):
    """``[OH*OW, K*K*C]``: per output pixel, its window in (kh, kw, c) order."""
    x = np.asarray(x_chw)
    t, b, l, r = pads
    xp = np.pad(x, ((0, 0), (t, b), (l, r)), constant_values=pad_value)
    C, H, W = xp.shape
    oh, ow = (H - k) // s + 1, (W - k) // s + 1
    out = np.empty((oh * ow, k * k * C), dtype=np.int64)
    for i in range(oh):
        for j in range(ow):
            out[i * ow + j] = xp[:, i * s:i * s + k, j * s:j * s + k].transpose(1, 2, 0).reshape(-1)
    return out


def window_words(x_chw, k, s, pads, pad_code, bits, lanes):
    return pack_words(window_elements(x_chw, k, s, pads, pad_code).reshape(-1), bits, lanes)


def feature_words(x_chw, bits, lanes, signed=False):
    """Input stream words of one frame ``[C, H, W]`` (HWC order, ``lanes`` per word)."""
    return pack_words(stream_order(np.asarray(x_chw)), bits, lanes, signed)
