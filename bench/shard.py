"""Sharded RTL simulation on Dask: wall time of the demo network on 1 vs 2 local workers.

    python bench/shard.py [--frames 2000] [--workers 1,2] [--project 10000]

The demo network (``examples/fmnist-lenet-w1a2.yaml`` compiled for 1,500 frames/s at 100 MHz,
as ``make demo`` does) runs ``--frames`` Fashion-MNIST test images (the shipped 500, repeated)
through the native Verilator harness, once per worker count, each on a fresh local Dask
cluster with one shard per worker (:func:`sim.shard.simulate_sharded`). Every run is checked
identical to the golden integer path. Reported: wall time of the sharded run (cluster start
apart), speed-up over one worker, and the projected wall time for ``--project`` frames (linear
in the frame count, the per-frame cost being constant after the weights are loaded).
The machine's load average is recorded with the figures: on a shared machine the speed-up
measures the cores this job actually got.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bitplane.core.environment import machine  # noqa: E402
from bitplane.gen.compile import compile_network  # noqa: E402
from bitplane.gen.golden import Golden  # noqa: E402
from bitplane.gen.spec import load_network  # noqa: E402
from bitplane.sim.cluster import dask_client  # noqa: E402
from bitplane.sim.native import build  # noqa: E402
from bitplane.sim.shard import simulate_sharded  # noqa: E402

SPEC = ROOT / "examples" / "fmnist-lenet-w1a2.yaml"
DATA = ROOT / "examples" / "data" / "fashion-mnist-test-500.npz"
TARGET_FPS = 1500


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=2000)
    ap.add_argument("--workers", default="1,2", help="worker counts to compare (comma separated)")
    ap.add_argument("--project", type=int, default=10000, help="frame count to project the wall time to")
    ap.add_argument("--out", default=str(ROOT / "build" / "bench-shard"))
    args = ap.parse_args(argv)
    net = load_network(SPEC)
    hw = Path(args.out) / "accelerator"
    m = compile_network(net, hw, target_fps=TARGET_FPS, clock_mhz=100, progress=lambda s: None)
    build((hw / "accelerator.v").read_text(), m["top"])            # the Verilator build, apart from the timing
    with np.load(DATA, allow_pickle=False) as z:
        x = np.resize(z["x"], (args.frames, *z["x"].shape[1:]))
    want = Golden(net).run_int(x)
    runs = []
    load_before = os.getloadavg()
    for n in [int(v) for v in args.workers.split(",")]:
        t0 = time.perf_counter()
        with dask_client(workers=n) as client:
            start = time.perf_counter() - t0
            y, st = simulate_sharded(hw, x, client, shards=n)
        if not np.array_equal(y, want):
            raise SystemExit(f"{n} worker(s): RTL output differs from the golden int path")
        runs.append({"workers": n, "wall_s": st["wall_s"], "cluster_start_s": start,
                     "cycles_per_frame": st["cycles_per_frame"],
                     "shards": [{k: r[k] for k in ("first", "frames", "cycles_per_frame", "wall_s",
                                                  "sim_cycles_per_second")} for r in st["shards"]]})
        print(f"{n} worker(s): {args.frames} frames in {st['wall_s']:.1f} s (cluster start {start:.1f} s), "
              f"{st['cycles_per_frame']:,.0f} cycles/frame, identical to the golden int path", flush=True)
    base = runs[0]["wall_s"]
    for r in runs:
        r["speedup"] = base / r["wall_s"]
        r["projected_s"] = r["wall_s"] * args.project / args.frames
        print(f"{r['workers']} worker(s): speed-up {r['speedup']:.2f}x, projected {args.project:,} frames "
              f"{r['projected_s'] / 60:.1f} min")
    return {"network": net.name, "frames": args.frames, "project": args.project, "runs": runs,
            "planned_cycles_per_frame": m["cycles_per_frame"], "machine": machine(),
            "load_before": load_before, "load_after": os.getloadavg(), "date": time.strftime("%Y-%m-%d %H:%M")}


def markdown(r: dict) -> list[str]:
    """The REPORT.md section for :func:`main`'s result."""
    L = ["## Sharded RTL simulation (Dask)", "",
         f"`python bench/shard.py --frames {r['frames']}` ({r['date']}, {r['machine']}): the demo network "
         f"{r['network']} ({r['planned_cycles_per_frame']:,} cycles/frame planned, 1,500 frames/s at 100 MHz) on "
         f"{r['frames']:,} Fashion-MNIST test images, native Verilator harness, one contiguous shard per local Dask "
         "worker, output identical to the golden int path in every run. Wall time of the sharded run (the "
         "Verilator build is made once before, the cluster start is listed apart). The machine is shared: load "
         f"average {r['load_before'][0]:.1f} before, {r['load_after'][0]:.1f} after (2 cores), so the speed-up is "
         "what this job got of the two cores, not the scaling of an idle machine.", "",
         f"| workers | wall s ({r['frames']:,} frames) | cluster start s | speed-up | measured cycles/frame | "
         f"projected {r['project']:,} frames |", "|---|---|---|---|---|---|"]
    for u in r["runs"]:
        L.append(f"| {u['workers']} | {u['wall_s']:.1f} | {u['cluster_start_s']:.1f} | {u['speedup']:.2f}x | "
                 f"{u['cycles_per_frame']:,.0f} | {u['projected_s'] / 60:.1f} min |")
    return L + [""]


if __name__ == "__main__":
    import json
    res = main()
    print("\n".join(markdown(res)))
    print(json.dumps(res, indent=1, default=str))
