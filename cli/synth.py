"""``bitplane synth DESIGN --target T``: open synthesis (LUT/FF/BRAM/Fmax; ECP5, iCE40; Xilinx estimate)."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from bitplane import api
from bitplane.core.fileio import write_file
from bitplane.synth.flow import TARGETS, critical_path_text

from .args import positive, positive_int


def add_parser(sub) -> None:
    p = sub.add_parser("synth", help="open synthesis: LUT/FF/BRAM/Fmax report (ECP5, iCE40; Xilinx estimate)")
    p.add_argument("design", help="compiled folder (bitplane compile -o) or a Verilog file")
    p.add_argument("--target", required=True, choices=list(TARGETS))
    p.add_argument("--clock-mhz", type=positive, default=100.0)
    p.add_argument("--speed-grade", type=int, choices=(6, 7, 8),
                   help="ECP5 speed grade for place and route (default 6, the slowest)")
    p.add_argument("--seed", type=positive_int, default=1,
                   help="nextpnr's placement seed (default %(default)s); Fmax varies with it, so compare designs "
                        "over a few seeds")
    p.add_argument("--top", help="top module (default: from the manifest)")
    p.add_argument("--json", help="also write the full report here")
    p.add_argument("--ooc", action="store_true",
                   help="out-of-context resource estimate: each distinct block synthesized once (cached), plus "
                        "the top's glue; synthesis only (no timing). xilinx parts and ECP5")
    p.add_argument("--cache-dir", help="cache of synthesis results (default: the system temporary folder's "
                                       "bitplane-synth; with --ooc the user cache folder's bitplane/synth)")
    p.add_argument("--jobs", type=positive_int, default=1,
                   help="--ooc: synthesis runs at a time (one core each; default %(default)s)")
    p.set_defaults(fn=run)


def run(args) -> int:
    t0 = time.perf_counter()
    rep = api.synthesize(args.design, args.target, args.clock_mhz, top=args.top, ooc=args.ooc,
                         cache_dir=args.cache_dir, jobs=args.jobs, speed_grade=args.speed_grade, seed=args.seed,
                         progress=lambda m: print(f"[{time.perf_counter() - t0:6.1f} s] {m}", file=sys.stderr))
    if args.json:
        write_file(Path(args.json), lambda f: f.write(json.dumps(rep, indent=2).encode()))
    if args.ooc:
        return _print_ooc(rep)
    pnr = f", speed grade {rep['speed_grade']}" if rep.get("speed_grade") else ""
    pnr += f", nextpnr seed {rep['seed']}" if rep.get("seed") else ""
    print(f"{rep['top']} on {args.target} ({TARGETS[args.target].family}), "
          f"target clock {args.clock_mhz:g} MHz{pnr}{' (cached)' if rep.get('cached') else ''}")
    if "resources" in rep:
        r = rep["resources"]
        pct = rep.get("utilisation_pct", {})
        for k in ("LUT", "LUT6", "FF", "BRAM36", "LUTRAM", "DSP", "CARRY"):
            print(f"  {k:<7} {r[k]:>9,}" + (f"  ({pct[k]:.1f}% of the part)" if k in pct else ""))
        print(f"  {rep['note']}")
    else:
        for k, v in rep["utilisation"].items():
            if v["used"]:
                print(f"  {k:<14} {v['used']:>8,} / {v['available']:,}")
        print(f"  Fmax {rep['fmax_mhz']:.1f} MHz (nextpnr; I/O wrapper adds {rep['wrapper']['input_bits'] + rep['wrapper'].get('fold_ffs', 1)} "
              f"FFs), fits: {'yes' if rep['fits'] else 'NO'}"
              + (f", bitstream {Path(rep['dir']) / rep['bitstream']}" if rep.get("bitstream") else ""))
        if rep.get("critical_path"):
            print(f"  critical path {critical_path_text(rep['critical_path'])}")
    return 0


def _print_ooc(rep: dict) -> int:
    xil = "LUT_SITES" in rep["resources"]
    keys = ("LUT_SITES", "LUT", "LUTRAM_LUT6", "FF", "BRAM36", "DSP") if xil else \
        ("LUT4_SITES", "LUT4", "CARRY", "LUTRAM", "FF", "EBR", "DSP")
    print(f"{rep['top']} on {rep['target']}: out-of-context estimate, {len(rep['blocks'])} blocks, "
          f"{rep['distinct']} distinct, {rep['synthesized']} synthesized now ({rep['times_s']['total']:.0f} s, "
          f"{rep['cpu_s']['synthesized']:.0f} s CPU), "
          f"cache {rep['cache_dir']}")
    print(f"  {'part':<28}" + "".join(f"{k:>12}" for k in keys))
    for b in rep["blocks"]:
        label = f"block {b['index']}" + (f" (x{b['copies']} same)" if b["copies"] > 1 else "")
        print(f"  {label:<28}" + "".join(f"{b['resources'][k]:>12,}" for k in keys))
    print(f"  {'glue (FIFOs, framers, regs)':<28}" + "".join(f"{rep['glue'][k]:>12,}" for k in keys))
    pct = rep.get("utilisation_pct", {})
    print(f"  {'total':<28}" + "".join(f"{rep['resources'][k]:>12,}" for k in keys)
          + (f"   ({pct['LUT']:.1f}% of the part's LUTs)" if "LUT" in pct else ""))
    if xil:
        print("  LUT_SITES = logic LUTs + the LUT6s distributed RAM occupies (what a device's LUT count is "
              "compared with)")
    else:
        print("  LUT4_SITES = LUT4 + 2 per CCU2C + 4 per 16x4 distributed RAM")
    print(f"  {rep['note']}")
    return 0
