"""``bitplane plan SPEC``: the folding planner (PE/SIMD per layer, cycles, LUT estimate, bottleneck)."""
from __future__ import annotations

import json

from bitplane import api
from bitplane.gen.devices import fit_text
from bitplane.gen.plan import weight_memory_text

from .args import add_folding


def add_parser(sub) -> None:
    p = sub.add_parser("plan", help="folding planner: PE/SIMD per layer, cycles, LUT estimate, bottleneck")
    p.add_argument("spec")
    add_folding(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=run)


def run(args) -> int:
    net = api.load(args.spec)
    p = api.plan(net, target_fps=args.target_fps, clock_mhz=args.clock_mhz, lut_budget=args.lut_budget,
                 fold_file=args.fold, device=args.device)
    order = p.pop("stages")
    if args.json:
        print(json.dumps(dict(p, folds=[f.__dict__ for f in p["folds"]]), indent=2))
        return 0
    goal = (f"target {args.target_fps:g} frames/s" if args.target_fps else
            f"LUT budget {args.lut_budget:,}" if args.lut_budget else "smallest folding")
    print(f"{net.name}: plan for {goal} at {args.clock_mhz:g} MHz"
          + (f", fold file {args.fold}" if args.fold else "")
          + (f", logic for {args.device} ({p['folds'][0].popcount} popcounts)" if args.device and p["folds"] else ""))
    hdr = f"{'layer':<10} {'PE':>5} {'SIMD':>5} {'engine cyc':>11} {'cycles/frame':>13} {'est. LUTs':>10} " \
          f"{'weight bits':>12} {'thr bits':>9}  source"
    print(hdr)
    print("-" * len(hdr))
    folds = {f.stage: f for f in p["folds"]}
    for name in order:
        mark = "  <- bottleneck" if name == p["bottleneck"] else ""
        if name in p["pools"]:
            print(f"{name:<10} {'':>5} {'':>5} {'':>11} {p['pools'][name]:>13,} {'':>10} {'':>12} {'':>9}  "
                  f"pool on codes{mark}")
            continue
        f = folds[name]
        print(f"{f.stage:<10} {f.pe:>5} {f.simd:>5} {f.cycles:>11,} {f.block_cycles:>13,} {f.luts:>10,} "
              f"{f.weight_bits:>12,} {f.threshold_bits:>9,}  {f.source}"
              f"{', ' + weight_memory_text(f) if weight_memory_text(f) else ''}{mark}")
    print("(cycles/frame: the whole block, with its sliding window / input stream at the producer's PE lanes)")
    print(f"pipeline: {p['cycles_per_frame']:,} cycles/frame -> {p['fps']:,.1f} frames/s at "
          f"{args.clock_mhz:g} MHz; about {p['luts']:,} LUTs, {p['memory_bits']:,} memory bits")
    print(fit_text(p))
    return 0
