"""Integer facts that the golden model, the compiler and the gateware share (one definition each):
two's-complement widths and sliding-window geometry."""
from __future__ import annotations


def signed_bits(lo: int, hi: int) -> int:
    """Smallest two's-complement width holding every integer in ``[lo, hi]``."""
    lo, hi = int(lo), int(hi)
    return max(1, (-lo - 1).bit_length() + 1 if lo < 0 else 1, hi.bit_length() + 1 if hi > 0 else 1)


def window_out(size: int, pad_lo: int, pad_hi: int, kernel: int, stride: int) -> int:
    """Output positions of a K-wide window with stride s along one padded axis."""
    return (size + pad_lo + pad_hi - kernel) // stride + 1
