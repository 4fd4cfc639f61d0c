"""The weight image: how weights and thresholds travel to the accelerator at run time.

One definition, shared by the compiler (writes ``weights.bin``), the host driver (streams
it and checks the checksum register) and the gateware loader (parses it). Pure Python.

Layout: a sequence of little-endian 32-bit words.

* word 0: ``IMAGE_MAGIC``;
* then sections, each a header word followed by ``count`` payload words::

      header[31:24] = layer index (0..254)       header[23:20] = memory kind (MEM_*)
      header[19:0]  = count of 32-bit payload words

  The payload carries the memory's entries in address order, each entry split into
  ``ceil(width/32)`` 32-bit words, least-significant word first. A memory of more than
  ``MAX_COUNT`` words travels as several sections (:func:`chunks`: whole entries, at most
  ``MAX_COUNT`` words each); every section after its first has ``MEM_CONTINUE`` set in the
  kind and carries the entries that follow the previous section's, so it must come right
  after it;
* last word: ``END_WORD`` (layer index 255).

The checksum (register ``WEIGHT_CHECKSUM``) covers every word the loader accepts, magic and
end word included: CRC-32 exactly as ``zlib.crc32`` computes it over the image's bytes (each
word little-endian). The gateware folds one word per clock with :func:`crc32_word_taps` (a
linear map of state and word bits); the host uses :mod:`zlib`. Unlike a rotate-xor sum it
detects every burst of up to 32 flipped bits and every pair of flipped bits in an image.
"""
from __future__ import annotations

import zlib

IMAGE_MAGIC = 0xB17C_0DE5
END_LAYER = 0xFF
END_WORD = END_LAYER << 24
MEM_WEIGHTS, MEM_THRESHOLDS, MEM_CONSTANTS = 0, 1, 2
MEM_CONTINUE = 0x8                # kind flag: the section continues the previous section's memory
MAX_KIND = MEM_CONTINUE - 1
MAX_COUNT = (1 << 20) - 1         # payload words of one section (the header's count field)
MASK32 = 0xFFFF_FFFF


def header(layer: int, mem: int, count: int) -> int:
    if not 0 <= layer < END_LAYER:
        raise ValueError(f"layer index {layer} out of range 0..{END_LAYER - 1}")
    if not 0 <= mem < 16:
        raise ValueError(f"memory kind {mem} out of range 0..15")
    if not 0 <= count <= MAX_COUNT:
        raise ValueError(f"section of {count} words exceeds {MAX_COUNT}")
    return (layer << 24) | (mem << 20) | count


def parse_header(word: int) -> tuple[int, int, int]:
    return (word >> 24) & 0xFF, (word >> 20) & 0xF, word & MAX_COUNT


def words_per_entry(width: int) -> int:
    return max(1, -(-width // 32))


def chunks(entries: int, width: int, max_count: int = MAX_COUNT) -> list[tuple[int, int]]:
    """The sections a memory of ``entries`` x ``width`` bits travels in: ``(first entry,
    entries)`` each, whole entries of at most ``max_count`` words (one section when it fits)."""
    per = max_count // words_per_entry(width)
    if per < 1:
        raise ValueError(f"a {width}-bit entry does not fit a {max_count}-word section")
    return [(first, min(per, entries - first)) for first in range(0, entries, per)] or [(0, 0)]


def split_entries(entries, width: int) -> list[int]:
    """Memory entries of ``width`` bits -> 32-bit words, least-significant word first."""
    n = words_per_entry(width)
    out = []
    for e in entries:
        e = int(e)
        if e < 0 or e >> width:
            raise ValueError(f"entry {e} does not fit {width} unsigned bits")
        out.extend((e >> (32 * i)) & MASK32 for i in range(n))
    return out


def join_entries(words, width: int) -> list[int]:
    """Inverse of :func:`split_entries`."""
    n = words_per_entry(width)
    if len(words) % n:
        raise ValueError(f"{len(words)} words do not make whole {width}-bit entries")
    return [sum(int(words[i + j]) << (32 * j) for j in range(n)) for i in range(0, len(words), n)]


def pack_image(sections, max_count: int = MAX_COUNT) -> list[int]:
    """``sections``: iterable of ``(layer, mem, entries, width)`` -> the image's 32-bit words
    (a memory longer than ``max_count`` words split by :func:`chunks`)."""
    words = [IMAGE_MAGIC]
    for layer, mem, entries, width in sections:
        if not 0 <= mem <= MAX_KIND:
            raise ValueError(f"memory kind {mem} out of range 0..{MAX_KIND}")
        entries = list(entries)
        for j, (first, n) in enumerate(chunks(len(entries), width, max_count)):
            payload = split_entries(entries[first:first + n], width)
            words.append(header(layer, mem | (MEM_CONTINUE if j else 0), len(payload)))
            words.extend(payload)
    words.append(END_WORD)
    return words


def unpack_image(words) -> list[tuple[int, int, list[int]]]:
    """Parse an image into ``(layer, mem, payload_words)`` per memory (continuation sections
    joined to the memory they continue); raises ValueError."""
    words = [int(w) for w in words]
    if not words or words[0] != IMAGE_MAGIC:
        raise ValueError(f"not a weight image: first word must be 0x{IMAGE_MAGIC:08X}")
    out, i = [], 1
    while True:
        if i >= len(words):
            raise ValueError("weight image ends without the end word")
        layer, mem, count = parse_header(words[i])
        if layer == END_LAYER:
            if i != len(words) - 1:
                raise ValueError(f"{len(words) - 1 - i} word(s) after the end word")
            return out
        if i + 1 + count > len(words):
            raise ValueError(f"section for layer {layer} claims {count} words, only {len(words) - i - 1} left")
        payload = words[i + 1:i + 1 + count]
        if mem & MEM_CONTINUE:
            if not out or out[-1][:2] != (layer, mem & MAX_KIND):
                raise ValueError(f"section for layer {layer} continues memory kind {mem & MAX_KIND}, "
                                 "which is not the section before it")
            out[-1][2].extend(payload)
        else:
            out.append((layer, mem, payload))
        i += 1 + count


CRC32_POLY = 0xEDB8_8320          # reflected CRC-32 polynomial (zlib, Ethernet)
CRC32_INIT = 0xFFFF_FFFF          # state after CLEAR_CHECKSUM; the register reads ~state


def checksum(words) -> int:
    """CRC-32 (``zlib.crc32``) of the words as little-endian bytes (the WEIGHT_CHECKSUM register)."""
    return zlib.crc32(to_bytes(words)) & MASK32


def crc32_word_taps() -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """One 32-bit word folded into the CRC-32 state, as XOR taps: entry ``i`` is
    ``(state bits, word bits)`` whose XOR gives bit ``i`` of the next state (the word's bytes
    enter least significant first, each byte LSB first, as :func:`checksum` reads them)."""
    # each bit of the state as a set of terms ('s', j) / ('w', k), updated bit-serially
    state = [{("s", j)} for j in range(32)]
    for k in range(32):
        fb = state[0] ^ {("w", k)}
        state = [state[j + 1] if j < 31 else set() for j in range(32)]
        for j in range(32):
            if CRC32_POLY >> j & 1:
                state[j] = state[j] ^ fb
    return [(tuple(sorted(j for t, j in b if t == "s")), tuple(sorted(j for t, j in b if t == "w")))
            for b in state]


def crc32_step(state: int, word: int) -> int:
    """The gateware's per-word update (:func:`crc32_word_taps`) in Python, for tests."""
    out = 0
    for i, (ss, ws) in enumerate(_TAPS):
        bit = 0
        for j in ss:
            bit ^= state >> j & 1
        for j in ws:
            bit ^= word >> j & 1
        out |= bit << i
    return out


_TAPS = crc32_word_taps()


def to_bytes(words) -> bytes:
    import numpy as np
    return np.asarray([int(w) for w in words] if not hasattr(words, "dtype") else words, dtype="<u4").tobytes()


def from_bytes(data: bytes) -> list[int]:
    if len(data) % 4:
        raise ValueError(f"weight image of {len(data)} bytes is not a whole number of 32-bit words")
    import numpy as np
    return np.frombuffer(data, dtype="<u4").tolist()
