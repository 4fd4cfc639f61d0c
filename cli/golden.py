"""``bitplane golden SPEC --input X --output Y``: the NumPy golden model (float or integer path)."""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from bitplane import api
from bitplane.core.errors import InputError
from bitplane.core.fileio import load_codes, output_target, write_file


def add_parser(sub) -> None:
    p = sub.add_parser("golden", help="run the NumPy golden model (float or integer path)")
    p.add_argument("spec", help="network spec (YAML)")
    p.add_argument("--input", required=True, help="uint8 input codes [N,C,H,W] (.npy, or .npz with 'x')")
    p.add_argument("--output", required=True, help="output .npy")
    p.add_argument("--mode", choices=("float", "int"), default="int",
                   help="float: fake-quant logits (float64); int: raw last-layer accumulators (int64)")
    p.add_argument("--dequantize", action="store_true", help="int mode: apply the affine map to logits")
    p.set_defaults(fn=run)


def run(args) -> int:
    net = api.load(args.spec)
    output_target(args.output)
    x = load_codes(args.input)
    if args.mode == "float" and args.dequantize:
        raise InputError("--dequantize only applies to --mode int (the float path already gives logits)")
    t0 = time.perf_counter()
    y = api.golden(net, x, mode=args.mode, dequantize=args.dequantize, source=args.input)
    dt = time.perf_counter() - t0
    write_file(Path(args.output), lambda f: np.save(f, y, allow_pickle=False))
    n = len(x)
    print(f"{net.name}: {n} frame(s), mode {args.mode}{' (dequantized)' if args.dequantize else ''}, "
          f"{dt:.3f} s ({n / dt if dt > 0 else float('inf'):.1f} frames/s) -> {args.output} "
          f"{list(y.shape)} {y.dtype}", file=sys.stderr)
    return 0
