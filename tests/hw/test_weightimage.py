"""Weight image format and checksum (the one definition)."""
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bitplane.core import weightimage as wi

sections = st.lists(st.tuples(st.integers(0, 254), st.integers(0, wi.MAX_KIND), st.integers(1, 80)).flatmap(
    lambda t: st.tuples(st.just(t[0]), st.just(t[1]), st.lists(st.integers(0, (1 << t[2]) - 1), max_size=20),
                        st.just(t[2]))), max_size=5)


@given(sections, st.sampled_from([wi.MAX_COUNT, 3, 7]))
def test_pack_unpack_round_trip(secs, max_count):
    words = wi.pack_image(secs, max_count)
    assert all(0 <= w < 1 << 32 for w in words)
    parsed = wi.unpack_image(words)
    assert len(parsed) == len(secs)
    for (layer, mem, entries, width), (pl, pm, payload) in zip(secs, parsed):
        assert (pl, pm) == (layer, mem)
        assert wi.join_entries(payload, width) == entries
    assert wi.from_bytes(wi.to_bytes(words)) == words


def test_checksum_is_zlib_crc32_and_the_gateware_taps_compute_it():
    import zlib
    rng = random.Random(0)
    words = [rng.getrandbits(32) for _ in range(100)]
    c = wi.checksum(words)
    assert c == zlib.crc32(b"".join(w.to_bytes(4, "little") for w in words))
    state = wi.CRC32_INIT                         # the per-word update the loader folds each clock
    for w in words:
        state = wi.crc32_step(state, w)
    assert state ^ 0xFFFFFFFF == c
    swapped = words[:]
    swapped[3], swapped[4] = swapped[4], swapped[3]
    assert wi.checksum(swapped) != c
    assert wi.checksum([]) == 0


def test_checksum_catches_the_bit_pair_rotate_xor_missed():
    """Issue #14 reproducer 2: the same bit flipped in two words 32 apart cancelled in the
    old rotl-xor sum; CRC-32 detects every pair of flipped bits in an image this size."""
    rng = random.Random(1)
    words = [rng.getrandbits(32) for _ in range(11287)]
    bad = words[:]
    bad[10635] ^= 1
    bad[10667] ^= 1
    rotl = lambda ws: __import__("functools").reduce(lambda c, w: ((c << 1 | c >> 31) & 0xFFFFFFFF) ^ w, ws, 0)
    assert rotl(bad) == rotl(words)               # the old checksum was blind to it
    assert wi.checksum(bad) != wi.checksum(words)


@pytest.mark.parametrize("bad,msg", [
    ([1, 2, 3], "not a weight image"),
    ([wi.IMAGE_MAGIC, wi.header(0, 0, 5), 1], "claims 5 words"),
    ([wi.IMAGE_MAGIC, wi.header(0, 0, 0)], "without the end word"),
    ([wi.IMAGE_MAGIC, wi.END_WORD, 7], "after the end word"),
    ([wi.IMAGE_MAGIC, wi.header(0, wi.MEM_CONTINUE, 1), 5, wi.END_WORD], "not the section before it"),
    ([wi.IMAGE_MAGIC, wi.header(0, 0, 1), 5, wi.header(1, wi.MEM_CONTINUE, 1), 5, wi.END_WORD], "not the section"),
])
def test_malformed_images_are_rejected(bad, msg):
    with pytest.raises(ValueError, match=msg):
        wi.unpack_image(bad)


def test_chunks_split_whole_entries():
    assert wi.chunks(10, 40, 5) == [(0, 2), (2, 2), (4, 2), (6, 2), (8, 2)]
    assert wi.chunks(3, 20, 5) == [(0, 3)] and wi.chunks(0, 8) == [(0, 0)]
    assert wi.chunks(2 ** 20, 1) == [(0, wi.MAX_COUNT), (wi.MAX_COUNT, 1)]
    with pytest.raises(ValueError, match="does not fit"):
        wi.chunks(4, 200, 5)
    with pytest.raises(ValueError, match="kind 8"):
        wi.pack_image([(0, wi.MEM_CONTINUE, [1], 8)])


def test_entry_range_checks():
    with pytest.raises(ValueError):
        wi.split_entries([1 << 8], 8)
    with pytest.raises(ValueError):
        wi.header(255, 0, 1)
    assert wi.split_entries([(1 << 40) + 5], 41) == [5, 1 << 8]
