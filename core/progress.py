"""A small text progress bar for long loops (driver batches, training epochs)."""
from __future__ import annotations

import sys
import time


def progress_bar(total: int, unit: str = "frames", stream=None, min_total: int = 64, prefix: str = ""):
    """``update(done, final=False, note="")`` drawing a bar on stderr (``None`` when ``total < min_total``).

    Redraws at most five times a second; ``final=True`` ends the line.
    """
    stream = stream or sys.stderr
    if total < min_total:
        return None
    t0 = time.perf_counter()
    state = {"last": 0.0}

    def update(done: int, final: bool = False, note: str = ""):
        now = time.perf_counter()
        if not final and now - state["last"] < 0.2:
            return
        state["last"] = now
        frac = min(done / total, 1.0)
        rate = done / (now - t0) if now > t0 else 0.0
        bar = "#" * int(30 * frac) + "." * (30 - int(30 * frac))
        stream.write(f"\r{prefix}[{bar}] {done}/{total} {unit} {rate:,.1f} {unit}/s{note}" + ("\n" if final else ""))
        stream.flush()
    return update
