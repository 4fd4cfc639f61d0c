"""Weight image format and checksum (the one definition)."""
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bitplane.core import weightimage as wi

sections = st.lists(st.tuples(st.integers(0, 254), st.integers(0, 15), st.integers(1, 80)).flatmap(
    lambda t: st.tuples(st.just(t[0]), st.just(t[1]), st.lists(st.integers(0, (1 << t[2]) - 1), max_size=20),
                        st.just(t[2]))), max_size=5)


@given(sections)
def test_pack_unpack_round_trip(secs):
    words = wi.pack_image(secs)
    assert all(0 <= w < 1 << 32 for w in words)
    parsed = wi.unpack_image(words)
    assert len(parsed) == len(secs)
    for (layer, mem, entries, width), (pl, pm, payload) in zip(secs, parsed):
        assert (pl, pm) == (layer, mem)
        assert wi.join_entries(payload, width) == entries
    assert wi.from_bytes(wi.to_bytes(words)) == words


def test_checksum_is_order_sensitive_and_matches_formula():
    rng = random.Random(0)
    words = [rng.getrandbits(32) for _ in range(100)]
    c = 0
    for w in words:
        c = ((c << 1 | c >> 31) & 0xFFFFFFFF) ^ w
    assert wi.checksum(words) == c
    swapped = words[:]
    swapped[3], swapped[4] = swapped[4], swapped[3]
    assert wi.checksum(swapped) != c
    assert wi.checksum([]) == 0


@pytest.mark.parametrize("bad,msg", [
    ([1, 2, 3], "not a weight image"),
    ([wi.IMAGE_MAGIC, wi.header(0, 0, 5), 1], "claims 5 words"),
    ([wi.IMAGE_MAGIC, wi.header(0, 0, 0)], "without the end word"),
    ([wi.IMAGE_MAGIC, wi.END_WORD, 7], "after the end word"),
])
def test_malformed_images_are_rejected(bad, msg):
    with pytest.raises(ValueError, match=msg):
        wi.unpack_image(bad)


def test_entry_range_checks():
    with pytest.raises(ValueError):
        wi.split_entries([1 << 8], 8)
    with pytest.raises(ValueError):
        wi.header(255, 0, 1)
    assert wi.split_entries([(1 << 40) + 5], 41) == [5, 1 << 8]
