"""Stream packing: the one definition of how codes travel on every stream.

Used by the testbenches (``sim/``), the host driver (``host/``) and anything that
writes or reads stream files. Nothing else may re-implement these rules.

Conventions
-----------
* A *feature map* ``[C, H, W]`` travels in raster order, pixel by pixel (row ``h``
  outer, column ``w`` inner), and within a pixel the channels go in increasing order
  in chunks of ``simd`` channels: stream order is ``(h, w, c)`` (HWC, channels
  innermost). A flat vector (dense layer input/output) is the special case
  ``H = W = 1``.
* A *word* carries ``lanes`` elements of ``elem_bits`` bits each, little-endian:
  lane ``i`` occupies bits ``[i*elem_bits, (i+1)*elem_bits)``. Signed elements are
  stored in two's complement within their lane.
* A code's bit ``p`` is its bit-plane ``p`` (DESIGN.md section 4).
"""
from __future__ import annotations

import numpy as np

__all__ = [
    "stream_order",
    "from_stream_order",
    "pack_words",
    "unpack_words",
    "words_to_bytes",
    "bytes_to_words",
]


def stream_order(x: np.ndarray) -> np.ndarray:
    """Flatten a ``[C, H, W]`` (or ``[N, C, H, W]``) array into stream order (HWC).

    Returns a 1-D array (or ``[N, H*W*C]`` for a batch).
    """
    x = np.asarray(x)
    if x.ndim == 3:
        return np.ascontiguousarray(x.transpose(1, 2, 0)).reshape(-1)
    if x.ndim == 4:
        n = x.shape[0]
        return np.ascontiguousarray(x.transpose(0, 2, 3, 1)).reshape(n, -1)
    raise ValueError(f"stream_order expects [C,H,W] or [N,C,H,W], got shape {x.shape}")


def from_stream_order(flat: np.ndarray, chw: tuple[int, int, int]) -> np.ndarray:
    """Inverse of :func:`stream_order` for one frame (1-D) or a batch (2-D)."""
    c, h, w = chw
    flat = np.asarray(flat)
    if flat.ndim == 1:
        return np.ascontiguousarray(flat.reshape(h, w, c).transpose(2, 0, 1))
    return np.ascontiguousarray(flat.reshape(-1, h, w, c).transpose(0, 3, 1, 2))


def pack_words(values, elem_bits: int, lanes: int, signed: bool = False) -> list[int]:
    """Pack a flat sequence of integers into words of ``lanes`` elements.

    ``len(values)`` must be a multiple of ``lanes``. Values are range-checked:
    ``[0, 2**elem_bits)`` unsigned or ``[-2**(elem_bits-1), 2**(elem_bits-1))`` signed.
    """
    v = np.asarray(values, dtype=np.int64).reshape(-1)
    if v.size % lanes:
        raise ValueError(f"{v.size} elements do not fill words of {lanes} lanes")
    lo, hi = (-(1 << (elem_bits - 1)), (1 << (elem_bits - 1)) - 1) if signed else (0, (1 << elem_bits) - 1)
    if v.size and (v.min() < lo or v.max() > hi):
        raise ValueError(f"value out of range [{lo}, {hi}] for {elem_bits}-bit "
                         f"{'signed' if signed else 'unsigned'} lanes")
    mask = (1 << elem_bits) - 1
    out = []
    for row in v.reshape(-1, lanes).tolist():
        word = 0
        for i, e in enumerate(row):
            word |= (e & mask) << (i * elem_bits)
        out.append(word)
    return out


def unpack_words(words, elem_bits: int, lanes: int, signed: bool = False) -> np.ndarray:
    """Inverse of :func:`pack_words`: returns an int64 array of ``len(words)*lanes``."""
    mask = (1 << elem_bits) - 1
    half = 1 << (elem_bits - 1)
    out = np.empty(len(words) * lanes, dtype=np.int64)
    k = 0
    for word in words:
        word = int(word)
        for i in range(lanes):
            e = (word >> (i * elem_bits)) & mask
            if signed and e >= half:
                e -= 1 << elem_bits
            out[k] = e
            k += 1
    return out


def words_to_bytes(words, word_bytes: int) -> bytes:
    """Serialise words little-endian, ``word_bytes`` bytes each (AXI4-Stream ``tdata`` order)."""
    return b"".join(int(w).to_bytes(word_bytes, "little") for w in words)


def bytes_to_words(data: bytes, word_bytes: int) -> list[int]:
    """Inverse of :func:`words_to_bytes`."""
    if len(data) % word_bytes:
        raise ValueError(f"{len(data)} bytes is not a whole number of {word_bytes}-byte words")
    return [int.from_bytes(data[i:i + word_bytes], "little") for i in range(0, len(data), word_bytes)]
