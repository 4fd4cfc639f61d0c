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

Accelerator top level (``hw/top.py``): beats
--------------------------------------------
Both AXI4-Stream ports are ``tdata_bits`` wide (a compile parameter, :func:`check_stream_bits`:
32..512 bits in multiples of 8; the manifest records it). Every stream is a frame of
*elements* packed by :class:`BeatLayout`: as many elements as fit in a beat, element ``k`` of
the frame in beat ``k // per_beat`` at bits ``[(k % per_beat) * elem_bits, ...)``, unused high
bits and the rest of the frame's last beat zero, ``tlast`` on the last beat.

* ``s_axis``: the input codes ``[C, H, W]`` in stream order (:func:`input_layout`): the first
  block takes words of ``lanes`` codes (:func:`input_lanes`), a beat carries
  :func:`words_per_beat` such words (:func:`pack_frames`).
* ``m_axis``: 32-bit result words (:func:`word_layout`), one signed last-layer accumulator
  each (or two, low word first, for accumulators wider than 32 bits: ``words_per_value``), in
  the golden model's output order (stream order for a conv output) (:func:`unpack_results`).
* Weight images travel on ``s_axis`` as 32-bit words, :func:`word_layout` too.
* Host side: a beat is ``tdata_bits / 8`` little-endian bytes (the DMA word).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "stream_order",
    "from_stream_order",
    "pack_words",
    "unpack_words",
    "words_to_bytes",
    "bytes_to_words",
    "AXIS_IN_BITS", "RESULT_BITS", "STREAM_BITS_MIN", "STREAM_BITS_MAX", "check_stream_bits", "BeatLayout",
    "input_layout", "word_layout", "beat_ints", "input_lanes", "words_per_beat", "pack_frames", "unpack_results",
]

AXIS_IN_BITS = 32        # the default tdata width of both streams
RESULT_BITS = 32         # result words: one int32 accumulator (or half of an int64) each
STREAM_BITS_MIN, STREAM_BITS_MAX = 32, 512


def check_stream_bits(bits) -> int:
    """A legal AXI4-Stream ``tdata`` width, or ValueError (one line)."""
    if isinstance(bits, bool) or not isinstance(bits, int) or not (
            STREAM_BITS_MIN <= bits <= STREAM_BITS_MAX and bits % 8 == 0):
        raise ValueError(f"stream width must be {STREAM_BITS_MIN}..{STREAM_BITS_MAX} bits in multiples of 8, "
                         f"got {bits!r}")
    return bits


def words_per_beat(beat_bits: int, word_bits: int) -> int:
    """Words of ``word_bits`` packed into one beat of ``beat_bits``: as many as fit."""
    if not 0 < word_bits <= beat_bits:
        raise ValueError(f"a {word_bits}-bit word does not fit a {beat_bits}-bit beat")
    return beat_bits // word_bits


def input_lanes(group: int, bits: int, tdata_bits: int = AXIS_IN_BITS, max_lanes: int | None = None) -> int:
    """Input codes per first-block word: the largest divisor of ``group`` (the first block's
    channels, or all its inputs for a dense block) whose codes fit ``tdata_bits``, at most
    ``max_lanes`` (a limit of the first block)."""
    best = 1
    for d in range(1, min(group, tdata_bits // bits, max_lanes or group) + 1):
        if group % d == 0:
            best = d
    return best


@dataclass(frozen=True)
class BeatLayout:
    """A frame of ``elems`` elements of ``elem_bits`` on a ``tdata_bits`` stream, ``per_beat``
    elements a beat (module docstring); the one definition host, simulators and tests pack by."""
    tdata_bits: int
    elem_bits: int
    per_beat: int
    elems: int

    @property
    def beats(self) -> int:
        """Beats per frame."""
        return -(-self.elems // self.per_beat)

    @property
    def bytes_per_beat(self) -> int:
        return self.tdata_bits // 8

    @property
    def frame_bytes(self) -> int:
        return self.beats * self.bytes_per_beat

    def pack(self, values) -> np.ndarray:
        """``[N, elems]`` (or flat) unsigned elements -> uint8 ``[N, beats, bytes_per_beat]``."""
        v = np.asarray(values).astype(np.uint64).reshape(-1, self.elems)
        n, eb, per = len(v), self.elem_bits, self.per_beat
        v = np.concatenate([v, np.zeros((n, self.beats * per - self.elems), np.uint64)], axis=1)
        v = v.reshape(n, self.beats, per)
        if eb % 8 == 0:
            b = v.astype("<u8").view(np.uint8).reshape(n, self.beats, per, 8)[..., :eb // 8]
            b = b.reshape(n, self.beats, per * eb // 8)
        else:
            bits = ((v[..., None] >> np.arange(eb, dtype=np.uint64)) & np.uint64(1)).astype(np.uint8)
            b = np.packbits(bits.reshape(n, self.beats, per * eb), axis=-1, bitorder="little")
        out = np.zeros((n, self.beats, self.bytes_per_beat), np.uint8)
        out[..., :b.shape[-1]] = b
        return out

    def unpack(self, data) -> np.ndarray:
        """Whole frames of beats (bytes, or uint8 ``[..., bytes_per_beat]``) -> uint64 ``[N, elems]``."""
        raw = np.frombuffer(data, np.uint8) if isinstance(data, (bytes, bytearray, memoryview)) else np.asarray(data)
        raw = raw.astype(np.uint8, copy=False).reshape(-1)
        if raw.size % self.frame_bytes:
            raise ValueError(f"{raw.size} bytes are not whole frames of {self.beats} beats of "
                             f"{self.bytes_per_beat} bytes")
        n, eb, per = raw.size // self.frame_bytes, self.elem_bits, self.per_beat
        b = raw.reshape(n, self.beats, self.bytes_per_beat)
        if eb % 8 == 0:
            e = b[..., :per * eb // 8].reshape(n, self.beats, per, eb // 8)
            e = np.concatenate([e, np.zeros((*e.shape[:3], 8 - eb // 8), np.uint8)], axis=-1)
            v = np.ascontiguousarray(e).view("<u8").reshape(n, self.beats * per)
        else:
            bits = np.unpackbits(b, axis=-1, bitorder="little")[..., :per * eb].reshape(n, self.beats, per, eb)
            v = (bits.astype(np.uint64) << np.arange(eb, dtype=np.uint64)).sum(axis=-1).reshape(n, -1)
        return v[:, :self.elems].astype(np.uint64)


def input_layout(shape, bits: int, lanes: int, tdata_bits: int = AXIS_IN_BITS) -> BeatLayout:
    """The ``s_axis`` layout of a ``[C, H, W]`` frame of ``bits``-bit codes, ``lanes`` a word."""
    return BeatLayout(tdata_bits, bits, lanes * words_per_beat(tdata_bits, lanes * bits), int(np.prod(shape)))


def word_layout(words: int, tdata_bits: int = AXIS_IN_BITS) -> BeatLayout:
    """The layout of a frame of ``words`` 32-bit words (results, weight images)."""
    return BeatLayout(tdata_bits, RESULT_BITS, words_per_beat(tdata_bits, RESULT_BITS), words)


def pack_frames(x: np.ndarray, bits: int, lanes: int, tdata_bits: int = AXIS_IN_BITS) -> np.ndarray:
    """``[N, C, H, W]`` codes -> uint8 ``[N, beats, tdata_bits / 8]`` ``s_axis`` beats (vectorized)."""
    x = np.asarray(x)
    if x.ndim != 4:
        raise ValueError(f"expected [N, C, H, W] codes, got shape {x.shape}")
    if x.size and (x.min() < 0 or x.max() >= (1 << bits)):
        raise ValueError(f"input codes must lie in [0, {(1 << bits) - 1}] for {bits}-bit inputs")
    lay = input_layout(x.shape[1:], bits, lanes, tdata_bits)
    if lay.elems % lanes:
        raise ValueError(f"{lay.elems} codes per frame do not fill words of {lanes} lanes")
    return lay.pack(stream_order(x))


def unpack_results(data, out_shape: tuple, words_per_value: int = 1, tdata_bits: int = AXIS_IN_BITS) -> np.ndarray:
    """``m_axis`` beats of whole frames (bytes or uint8) -> int64 ``[N, *out_shape]`` accumulators.

    ``words_per_value`` 2: each accumulator is two words, low word first (64-bit results)."""
    if words_per_value not in (1, 2):
        raise ValueError(f"words_per_value must be 1 or 2, got {words_per_value}")
    per = int(np.prod(out_shape))
    raw = word_layout(per * words_per_value, tdata_bits).unpack(data).astype(np.uint32)
    if words_per_value == 1:
        b = raw.view(np.int32).astype(np.int64)
    else:
        b = raw.reshape(-1, 2).astype(np.uint64)
        b = (b[:, 0] | (b[:, 1] << np.uint64(32))).view(np.int64)
    b = b.reshape(-1, per)
    if len(out_shape) == 3:
        return from_stream_order(b, tuple(out_shape))
    return b.reshape(-1, *out_shape)


def beat_ints(beats) -> list[int]:
    """uint8 ``[..., bytes_per_beat]`` beats -> one Python int per beat (testbenches)."""
    b = np.asarray(beats, np.uint8)
    return [int.from_bytes(r.tobytes(), "little") for r in b.reshape(-1, b.shape[-1])]


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
