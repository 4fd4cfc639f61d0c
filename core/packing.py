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
* A code's bit ``p`` is its bit-plane ``p`` (docs/design.md section 5).

Accelerator top level (``hw/top.py``)
-------------------------------------
* ``s_axis``: ``AXIS_IN_BITS``-bit beats; a frame ``[C, H, W]`` of input codes in stream
  order, ``in_lanes`` codes per beat (:func:`input_lanes`), ``tlast`` on its last beat
  (:func:`pack_frames`). Weight images use the same stream, one 32-bit word per beat.
* ``m_axis``: ``RESULT_BITS``-bit beats, one signed last-layer accumulator each (or two,
  low word first, for accumulators wider than 32 bits: ``words_per_value``), in the
  golden model's output order (stream order for a conv output), ``tlast`` per frame
  (:func:`unpack_results`).
* Host-side byte order: every beat is ``AXIS_BYTES`` little-endian bytes (the DMA word).
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
    "AXIS_IN_BITS", "RESULT_BITS", "AXIS_BYTES",
    "input_lanes", "words_per_beat", "pack_frames", "unpack_results",
]

AXIS_IN_BITS = 32        # s_axis tdata width
RESULT_BITS = 32         # m_axis tdata width: one int32 accumulator per beat
AXIS_BYTES = 4           # bytes per beat on the host side, both directions


def words_per_beat(beat_bits: int, word_bits: int) -> int:
    """Words of ``word_bits`` packed into one beat of ``beat_bits``: as many as fit."""
    if not 0 < word_bits <= beat_bits:
        raise ValueError(f"a {word_bits}-bit word does not fit a {beat_bits}-bit beat")
    return beat_bits // word_bits


def input_lanes(channels: int, bits: int) -> int:
    """Input codes per ``s_axis`` beat: the largest divisor of ``channels`` that fits."""
    best = 1
    for d in range(1, channels + 1):
        if channels % d == 0 and d * bits <= AXIS_IN_BITS:
            best = d
    return best


def pack_frames(x: np.ndarray, bits: int, lanes: int) -> np.ndarray:
    """``[N, C, H, W]`` codes -> ``[N, beats]`` uint32 ``s_axis`` beats (vectorized)."""
    x = np.asarray(x)
    if x.ndim != 4:
        raise ValueError(f"expected [N, C, H, W] codes, got shape {x.shape}")
    if x.size and (x.min() < 0 or x.max() >= (1 << bits)):
        raise ValueError(f"input codes must lie in [0, {(1 << bits) - 1}] for {bits}-bit inputs")
    flat = stream_order(x).astype(np.uint64)
    n, total = flat.shape
    if total % lanes:
        raise ValueError(f"{total} codes per frame do not fill beats of {lanes} lanes")
    lanes_v = flat.reshape(n, total // lanes, lanes)
    shifts = (np.arange(lanes, dtype=np.uint64) * np.uint64(bits))
    return (lanes_v << shifts).sum(axis=2).astype(np.uint32)


def unpack_results(beats, out_shape: tuple, words_per_value: int = 1) -> np.ndarray:
    """``m_axis`` beats of whole frames -> int64 ``[N, *out_shape]`` accumulators.

    ``words_per_value`` 2: each accumulator is two beats, low word first (64-bit results)."""
    raw = np.asarray(beats, dtype=np.uint64).astype(np.uint32)
    if words_per_value == 1:
        b = raw.view(np.int32).astype(np.int64)
    elif words_per_value == 2:
        if raw.size % 2:
            raise ValueError("64-bit results need an even number of beats")
        b = raw.reshape(-1, 2).astype(np.uint64)
        b = (b[:, 0] | (b[:, 1] << np.uint64(32))).view(np.int64)
    else:
        raise ValueError(f"words_per_value must be 1 or 2, got {words_per_value}")
    per = int(np.prod(out_shape))
    if b.size % per:
        raise ValueError(f"{b.size} result beats are not whole frames of {per}")
    b = b.reshape(-1, per)
    if len(out_shape) == 3:
        return from_stream_order(b, tuple(out_shape))
    return b.reshape(-1, *out_shape)


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
