"""Sliding window with one padding code per channel and fractional planes below the input
code (``pad_codes``, ``out_shift``: a first conv that pads with the ImageNet mean) against a
NumPy reference, with random input gaps and output backpressure."""

import numpy as np
import pytest

from bitplane.gen import nn
from bitplane.gen.spec import window_geometry
from bitplane.hw.stream_blocks import SlidingWindow
from tests.support.stream_ref import feature_words, window_words
from tests.support.streams import run_stream

CASES = [
    # C, H, W, K, s, padding, lanes, shift
    (3, 6, 6, 3, 2, "same", 1, 4),
    (3, 5, 7, 3, 1, "same", 3, 2),
    (4, 6, 5, 5, 2, "same", 2, 3),
    (2, 4, 4, 3, 1, [2, 1, 0, 2], 1, 0),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "C{}H{}W{}K{}s{}-{}L{}f{}".format(*c))
def test_sliding_window_per_channel_pad_codes(case):
    C, H, W, K, s, padding, lanes, f = case
    _, _, pads = window_geometry(H, W, K, s, padding)
    rng = np.random.default_rng(sum(case[:5]) + f)
    bits = 3
    pad_codes = [int(v) for v in rng.integers(0, 1 << (bits + f), C)]
    frames = [rng.integers(0, 1 << bits, (C, H, W)) for _ in range(3)]
    words = sum((feature_words(x, bits, lanes) for x in frames), [])
    want = []
    for x in frames:
        # reference: codes shifted up by f, padded per channel, then the plain window order
        xp = nn.pad_nchw((x << f)[None].astype(np.float64), pads, np.array(pad_codes, np.float64))[0]
        want += window_words(xp.astype(np.int64), K, s, (0, 0, 0, 0), 0, bits + f, lanes)
    dut = SlidingWindow(C, H, W, K, s, pads, bits, lanes, pad_codes=pad_codes, out_shift=f)
    got, _ = run_stream(dut, words, len(want), seed=len(words), field="data")
    assert got == want


@pytest.mark.filterwarnings("ignore:.*created but never used")
def test_pad_codes_are_checked():
    with pytest.raises(ValueError, match="pad_codes"):
        SlidingWindow(3, 4, 4, 3, 1, (1, 1, 1, 1), 3, 1, pad_codes=(1, 2))
    with pytest.raises(ValueError, match="pad_codes"):
        SlidingWindow(2, 4, 4, 3, 1, (1, 1, 1, 1), 3, 1, pad_codes=(1, 64), out_shift=2)
