"""``bitplane sim DESIGN --input X --output Y``: RTL simulation (Verilator) of a compiled accelerator."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from bitplane import api
from bitplane.core.errors import InputError
from bitplane.core.fileio import output_target, write_file

from .args import err


def add_parser(sub) -> None:
    p = sub.add_parser("sim", help="RTL simulation (Verilator) of a compiled accelerator on input frames")
    p.add_argument("design", help="compiled folder (bitplane compile -o)")
    p.add_argument("--input", required=True, help="uint8 input codes [N,C,H,W] (.npy, or .npz with 'x')")
    p.add_argument("--output", required=True, help="output .npy: int64 last-layer accumulators")
    p.add_argument("--waves", action="store_true", help="write an FST waveform next to the output")
    p.add_argument("--gap-pct", type=int, default=0, help="random idle cycles on the input stream (percent)")
    p.add_argument("--stall-pct", type=int, default=0, help="random backpressure on the output stream (percent)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--engine", choices=("native", "cocotb"), default="native",
                   help="native: C++ Verilator harness, for whole test sets (default); cocotb: Python drives "
                        "every clock (cocotb + cocotbext-axi), for a few frames and debugging")
    p.add_argument("--workers", type=int, help="shard the frames over N Dask workers (a local cluster of N "
                   "processes; with --scheduler: N shards, default one per worker thread)")
    p.add_argument("--scheduler", help="address of an existing Dask scheduler (default: $DASK_SCHEDULER_ADDRESS "
                   "with --workers, else a local cluster)")
    p.set_defaults(fn=run)


def run(args) -> int:
    output_target(args.output)
    design = api.Design(args.design)
    x = design.frames(args.input)
    if args.gap_pct not in range(0, 100) or args.stall_pct not in range(0, 100):
        raise InputError("--gap-pct and --stall-pct must lie in 0..99")
    waves = str(Path(args.output).with_suffix(".fst")) if args.waves else None
    if (args.workers is not None or args.scheduler) and (waves or args.engine != "native"):
        raise InputError("--workers/--scheduler shard the native engine; they take no --waves or --engine cocotb")
    y, st = design.simulate(x, gap_pct=args.gap_pct, stall_pct=args.stall_pct, seed=args.seed, engine=args.engine,
                            waves=waves, progress=err, workers=args.workers, scheduler=args.scheduler)
    if st.get("waves_dir"):
        waves = st["waves_dir"]
    write_file(Path(args.output), lambda f: np.save(f, y, allow_pickle=False))
    cpf, plan = st["cycles_per_frame"], st["planned_cycles_per_frame"]
    print(f"{st['frames']} frames: {st['stream_cycles']:,} cycles after {st['weight_cycles']:,} for the weights; "
          f"first-frame latency {st['latency_cycles']:,} cycles")
    if cpf:
        print(f"steady state {cpf:,.0f} cycles/frame (planner {plan:,}, {100 * (cpf - plan) / plan:+.1f}%) -> "
              f"{st['fps_at_clock']:,.1f} frames/s at {st['clock_mhz']:g} MHz")
    print(f"simulation: {st['sim_cycles_per_second']:,.0f} cycles/s ({st['wall_s']:.1f} s wall)"
          + (f"; waves in {waves}" if waves else ""))
    for r in st.get("shards", []):
        c = f"{r['cycles_per_frame']:,.0f} cycles/frame" if r["cycles_per_frame"] else "(too few frames for a period)"
        print(f"  shard {r['shard']}: frames {r['first']}..{r['first'] + r['frames'] - 1} on {r['worker']}: {c}, "
              f"{r['sim_cycles_per_second']:,.0f} cycles/s ({r['wall_s']:.1f} s)")
    print(f"wrote {args.output} (int64 [{', '.join(map(str, y.shape))}])")
    return 0
