"""Golden-model throughput (images/s, int and float paths) on the shipped example network.

    python bench/golden.py [--spec examples/lenet-w2a2.yaml] [--frames 1024] [--repeat 3]

Prints the machine, the tool versions and the command next to the figures.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bitplane.gen.golden import Golden  # noqa: E402
from bitplane.gen.spec import load_network  # noqa: E402
from bitplane.core.environment import machine  # noqa: E402


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spec", default=str(ROOT / "examples" / "lenet-w2a2.yaml"))
    ap.add_argument("--frames", type=int, default=1024)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    net = load_network(args.spec)
    g = Golden(net)
    digits = ROOT / "examples" / "data" / "mnist-256.npz"
    if net.input_shape == (1, 28, 28) and digits.exists():
        base = np.load(digits, allow_pickle=False)["x"]
        x = np.resize(base, (args.frames, *net.input_shape))
    else:
        x = np.random.default_rng(0).integers(0, 1 << net.input_bits, (args.frames, *net.input_shape),
                                              dtype=np.uint16).astype(np.uint8)
    t0 = time.perf_counter()
    g.lowered                                   # lowering (thresholds) once, timed apart
    t_lower = time.perf_counter() - t0
    print(f"# golden-model throughput, {time.strftime('%Y-%m-%d')}, {machine()}")
    print(f"# command: python bench/golden.py --spec {args.spec} --frames {args.frames} --repeat {args.repeat}")
    print(f"network {net.name}: lowering {t_lower * 1e3:.1f} ms")
    out = {"network": net.name, "frames": args.frames, "lowering_s": t_lower}
    for name, key, fn in (("int path", "int_fps", g.run_int), ("float path", "float_fps", g.run_float)):
        best = min(_timed(fn, x) for _ in range(args.repeat))
        print(f"{name:<11} {args.frames} frames in {best:.3f} s: {args.frames / best:,.0f} frames/s")
        out[key] = args.frames / best
    return out


def _timed(fn, x):
    t = time.perf_counter()
    fn(x)
    return time.perf_counter() - t


if __name__ == "__main__":
    main()
