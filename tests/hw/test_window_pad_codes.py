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


def test_pad_codes_are_checked():
    with pytest.raises(ValueError, match="pad_codes"):
        SlidingWindow(3, 4, 4, 3, 1, (1, 1, 1, 1), 3, 1, pad_codes=(1, 2))
    with pytest.raises(ValueError, match="pad_codes"):
        SlidingWindow(2, 4, 4, 3, 1, (1, 1, 1, 1), 3, 1, pad_codes=(1, 64), out_shift=2)


def test_conv_block_with_per_channel_padding_matches_golden(tmp_path):
    """A first conv padding each channel with its own value between two input codes: the
    block takes the 4-bit input codes, its window adds 2 fractional planes and the pad codes,
    and its output codes are the golden integer path's (random gaps and backpressure)."""
    from bitplane.core.packing import pack_words, stream_order, unpack_words
    from bitplane.gen import hwmap
    from bitplane.hw.layers import ConvBlock
    from tests.support.layers import conv_net, stage_and_input
    spec = conv_net(3, 6, 5, 3, 2, "same", 4, {"type": "int", "bits": 4},
                    ("relu", {"type": "uint", "bits": 2, "scale": 0.5}))
    spec["layers"][0]["pad_value"] = [0.1, 0.5, 0.95]                  # codes 1.5, 7.5, 14.25 at 1/15
    g, idx = stage_and_input(spec, tmp_path)
    st = g.lowered.stages[0]
    assert st.in_act.frac_bits == 2 and list(st.pad_codes) == [6, 30, 57]
    lanes = 3
    params = hwmap.layer_params(st, 2, 9, lanes)
    assert params.in_shift == 2 and params.in_bits == lanes * 4 and params.engine.a_planes == 6
    codes_in, out = hwmap.stage_io(st, idx)
    words = sum((pack_words(stream_order(f), 4, lanes) for f in codes_in), [])
    flat = np.concatenate([stream_order(o) for o in out])
    blk = ConvBlock(params)
    got, _ = run_stream(blk, words, len(flat) // 2, seed=7, gap=0.2, stall=0.3)
    assert np.array_equal(unpack_words(got, blk.out_bits, 2), flat)
