"""Sliding-window addressing (issue #17, "timing everywhere"): the line-buffer addresses are
registers advanced by adds, never a multiplier in front of the block RAM, and the window stays
bit-exact against the NumPy reference on random geometries under random backpressure."""
import re

import numpy as np
import pytest
from amaranth.back import rtlil
from hypothesis import given, settings
from hypothesis import strategies as st

from bitplane.core.intmath import window_out
from bitplane.hw.stream_blocks import Pool, SlidingWindow, mirror_fits, window_cycles
from tests.support.stream_ref import feature_words, window_words

from tests.support.streams import run_stream


def _cells(component):
    """RTLIL cell types of an elaborated component (all its submodules)."""
    return re.findall(r"^\s*cell \\?\$(\w+)", rtlil.convert(component), flags=re.M)


@pytest.mark.parametrize("make", [
    lambda: SlidingWindow(4, 7, 5, 3, 2, (1, 1, 1, 1), 2, 2),
    lambda: SlidingWindow(6, 28, 28, 5, 1, (2, 2, 2, 2), 1, 3),          # W*C/lanes = 56: not a power of 2
    lambda: SlidingWindow(6, 9, 9, 3, 1, (1, 1, 1, 1), 2, 3, pad_mode="reflect"),
    lambda: SlidingWindow(2, 6, 5, 3, 2, (1, 1, 1, 1), 3, 1, pad_mode="symmetric"),
    lambda: Pool(6, 24, 24, 2, 2, (0, 0, 0, 0), 4, 3),
], ids=["constant", "lenet-conv", "reflect", "symmetric", "pool"])
def test_window_has_no_multiplier(make):
    cells = _cells(make())
    assert "memrd_v2" in cells and "memwr_v2" in cells          # the line buffer is there
    assert "mul" not in cells, "a $mul cell in the sliding window (address arithmetic must be adds)"


@st.composite
def geometries(draw):
    k = draw(st.integers(1, 5))
    s = draw(st.integers(1, 3))
    lanes = draw(st.integers(1, 3))
    cw = draw(st.integers(1, 3))
    h = draw(st.integers(1, 8))
    w = draw(st.integers(1, 8))
    pads = tuple(draw(st.integers(0, k - 1)) for _ in range(4))
    mode = draw(st.sampled_from(["constant", "reflect", "symmetric"]))
    t, b, l, r = pads
    ok = window_out(h, t, b, k, s) >= 1 and window_out(w, l, r, k, s) >= 1
    if mode != "constant":
        ok = ok and mirror_fits(k, pads, h, w, mode)
    if not ok:
        mode, pads = "constant", (k - 1, k - 1, k - 1, k - 1)        # always fits (OH, OW >= 1)
    return lanes * cw, h, w, k, s, pads, lanes, mode


@settings(max_examples=40)
@given(geometries(), st.integers(0, 2**16), st.sampled_from([0.0, 0.3, 0.6]), st.sampled_from([0.0, 0.3, 0.6]))
def test_random_window_bit_exact(geom, seed, gap, stall):
    C, H, W, K, s, pads, lanes, mode = geom
    rng = np.random.default_rng(seed)
    frames = [rng.integers(0, 8, (C, H, W)) for _ in range(2)]          # back to back
    words = sum((feature_words(f, 3, lanes) for f in frames), [])
    want = sum((window_words(f, K, s, pads, 5, 3, lanes, mode) for f in frames), [])
    assert len(want) == 2 * window_cycles(H, W, C // lanes, K, s, pads)
    dut = SlidingWindow(C, H, W, K, s, pads, 3, lanes, pad_code=5, pad_mode=mode)
    got, _ = run_stream(dut, words, len(want), seed=seed, gap=gap, stall=stall, field="data")
    assert got == want
