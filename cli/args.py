"""What several commands share: argparse types and the stderr progress printer."""
from __future__ import annotations

import argparse
import math
import sys


def positive(text: str) -> float:
    """argparse type: a positive finite number."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (v > 0 and math.isfinite(v)):
        raise argparse.ArgumentTypeError(f"{text} must be a positive finite number")
    return v


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"{text} must be at least 1")
    return v


def add_folding(p) -> None:
    """The folding goal of ``plan`` and ``compile``."""
    g = p.add_mutually_exclusive_group()
    g.add_argument("--target-fps", type=positive, help="frames/s to reach at --clock-mhz")
    g.add_argument("--lut-budget", type=positive_int, help="total LUTs to spend")
    p.add_argument("--clock-mhz", type=positive, default=100.0)
    p.add_argument("--fold", help="YAML fold file {layer: {pe: P, simd: S}} overriding the planner")
    p.add_argument("--device", help="build the logic for this device's LUT size (a name from the plan's fit table: "
                                    "xc7z020, xczu7ev, xcu250, ecp5-85k; 6-input LUTs get compressor-tree popcounts, "
                                    "about a third fewer LUTs per lane); default: generic adder trees")


def err(msg: str) -> None:
    """Progress and notes go to stderr (stdout carries the command's result)."""
    print(msg, file=sys.stderr)
