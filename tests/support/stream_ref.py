"""NumPy references of the stream blocks (sliding window, pooling) in stream word order."""
from __future__ import annotations

import numpy as np

from bitplane.core.packing import pack_words, stream_order


def window_elements(x_chw, k: int, s: int, pads, pad_value, mode: str = "constant"):
    """``[OH*OW, K*K*C]``: per output pixel, its window in (kh, kw, c) order; ``mode`` is
    NumPy's pad mode (``constant`` with ``pad_value``, ``reflect``, ``symmetric``)."""
    x = np.asarray(x_chw)
    t, b, l, r = pads
    widths = ((0, 0), (t, b), (l, r))
    xp = np.pad(x, widths, constant_values=pad_value) if mode == "constant" else np.pad(x, widths, mode=mode)
    C, H, W = xp.shape
    oh, ow = (H - k) // s + 1, (W - k) // s + 1
    out = np.empty((oh * ow, k * k * C), dtype=np.int64)
    for i in range(oh):
        for j in range(ow):
            out[i * ow + j] = xp[:, i * s:i * s + k, j * s:j * s + k].transpose(1, 2, 0).reshape(-1)
    return out


def window_words(x_chw, k, s, pads, pad_code, bits, lanes, mode="constant"):
    return pack_words(window_elements(x_chw, k, s, pads, pad_code, mode).reshape(-1), bits, lanes)


def feature_words(x_chw, bits, lanes, signed=False):
    """Input stream words of one frame ``[C, H, W]`` (HWC order, ``lanes`` per word)."""
    return pack_words(stream_order(np.asarray(x_chw)), bits, lanes, signed)
