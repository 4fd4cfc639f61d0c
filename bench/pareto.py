"""LUT vs frames/s per network (FINN's reference networks), and the highest rate that fits a device.

    python bench/pareto.py [--nets cnv-w1a1:9150,cnv-w2a2:2580,lfc-w1a1:356633]
                           [--factors 0.25,0.5,1,2,4] [--device xc7z020] [--jobs 2] [--plot bench/pareto.png]

Each network is compiled for ``--device`` (``bitplane compile --device``: its popcounts and
block-RAM choices) at ``factor x`` its reference rate (FINN's frames/s at 100 MHz) for every
factor, then estimated by the out-of-context ``synth_xilinx`` of :mod:`bench.networks` (LUT6
sites, FF, BRAM36; cached in ``build/synth``). A rate the planner cannot reach (memory word
limit) is listed as such, and the highest rate the planner says it can reach is tried instead. ``fits`` = LUT6 sites and BRAM36 within the device's data-sheet
budget (``gen.devices.DEVICES``); the highest fitting rate of each network is printed, and the
plot has one panel per network: bitplane's points with their Pareto front, FINN's point and the
device's LUT budget.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import networks  # noqa: E402
from bitplane.core.environment import machine  # noqa: E402
from bitplane.gen.devices import DEVICES  # noqa: E402
from bitplane.gen.plan import PlanError  # noqa: E402

#: FINN BNN-PYNQ on PYNQ-Z1 (xc7z020) at 100 MHz: frames/s and Vivado LUTs (bench/report.py FINN)
FINN_POINTS = {"cnv-w1a1": (9150, 26072), "cnv-w2a2": (2580, 37302), "lfc-w1a1": (356633, 28360)}
DEFAULT_NETS = "cnv-w1a1:9150,cnv-w2a2:2580,lfc-w1a1:356633"
DEFAULT_FACTORS = "0.25,0.5,1,2,4"


def pareto_front(points):
    """The points (luts, fps) no other point beats on both (fewer or equal LUTs, more or equal
    frames/s, one strictly), by LUTs."""
    pts = sorted(set(points), key=lambda p: (p[0], -p[1]))     # by LUTs, the fastest first at equal LUTs
    front, best = [], -1.0
    for lut, fps in pts:
        if fps > best:
            front.append((lut, fps))
            best = fps
    return front


def _reachable(message: str) -> float | None:
    """The frames/s at 100 MHz a planner error says the network's slowest layer allows at its widest
    fold ("... it needs N cycles/frame"), slightly below, or None."""
    m = re.search(r"needs ([\d,]+) cycles/frame", message)
    return 0.999 * 100e6 / int(m.group(1).replace(",", "")) if m else None


def sweep(nets, factors, device: str, jobs: int) -> list[dict]:
    """Every network at every factor of its reference rate. A rate the planner cannot reach is
    listed, and replaced once by the highest rate the error says is reachable (the network's
    fastest folding: a point of the curve too)."""
    dev = DEVICES[device]
    rows = []
    for name, ref in nets:
        tried = set()
        for k in factors:
            fps = ref * k
            while fps is not None and fps not in tried:
                tried.add(fps)
                row = {"network": name, "factor": fps / ref, "target_fps": fps, "device": device}
                try:
                    r = networks.main(["--nets", f"{name}:{fps:g}:xc7", "--no-sim", "--no-ecp5", "--cocotb-frames",
                                       "0", "--jobs", str(jobs)])[0]
                except PlanError as e:
                    row["unreachable"] = str(e)
                    rows.append(row)
                    print(f"# {name} at {fps:,.0f} frames/s: {e}", flush=True)
                    fps = _reachable(str(e))
                    continue
                row.update({k2: r[k2] for k2 in ("fps_100mhz", "xc7_lut6", "xc7_ff", "xc7_bram36", "planned_cycles")})
                row["fits"] = r["xc7_lut6"] <= dev.luts and r["xc7_bram36"] <= dev.bram
                rows.append(row)
                break
    return rows


def best_fitting(rows, name: str) -> dict | None:
    """The fastest row of network ``name`` that fits the device, or None."""
    ok = [r for r in rows if r["network"] == name and r.get("fits")]
    return max(ok, key=lambda r: r["fps_100mhz"]) if ok else None


def plot(rows, out: Path, device: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    names = list(dict.fromkeys(r["network"] for r in rows))
    fig, axes = plt.subplots(1, len(names), figsize=(4.4 * len(names), 3.9), squeeze=False)
    for ax, name in zip(axes[0], names):
        pts = [(r["xc7_lut6"], r["fps_100mhz"], r["fits"]) for r in rows if r["network"] == name and "xc7_lut6" in r]
        for lut, fps, ok in pts:
            ax.scatter(lut, fps, color="#3572a5" if ok else "#9bb8d3", zorder=3)
        front = pareto_front([(p[0], p[1]) for p in pts])
        if front:
            ax.plot(*zip(*front), color="#3572a5", lw=1, label="bitplane (yosys LUT6 sites)")
        if name in FINN_POINTS:
            f_fps, f_lut = FINN_POINTS[name]
            ax.scatter(f_lut, f_fps, color="#c0392b", marker="s", zorder=3, label="FINN BNN-PYNQ (Vivado LUTs)")
        ax.axvline(DEVICES[device].luts, color="grey", ls="--", lw=1, label=f"{device} LUTs")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("LUT6")
        ax.set_ylabel("frames/s at 100 MHz")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nets", default=DEFAULT_NETS, help="NAME:REFERENCE_FPS,... (default: %(default)s)")
    ap.add_argument("--factors", default=DEFAULT_FACTORS, help="multiples of the reference rate (default: %(default)s)")
    ap.add_argument("--device", default="xc7z020", choices=[d for d, v in DEVICES.items() if v.lut_inputs == 6])
    ap.add_argument("--jobs", type=int, default=1, help="out-of-context synthesis runs at a time")
    ap.add_argument("--plot", help="write the per-network plot (PNG) here")
    ap.add_argument("--json", help="also write the rows as JSON")
    args = ap.parse_args(argv)
    try:
        nets = [(n, float(f)) for n, f in (item.split(":") for item in args.nets.split(","))]
        factors = [float(x) for x in args.factors.split(",")]
    except ValueError:
        ap.error("--nets NAME:FPS,... and --factors F,... expected")
    print(f"# Pareto sweep, {time.strftime('%Y-%m-%d')}, {machine()}; device {args.device}")
    rows = sweep(nets, factors, args.device, args.jobs)
    print(f"# {'network':<10} {'factor':>6} {'target':>9} {'fps@100':>9} {'LUT6':>7} {'FF':>7} {'BRAM36':>6}  fits")
    for r in rows:
        if "unreachable" in r:
            print(f"  {r['network']:<10} {r['factor']:>6g} {r['target_fps']:>9,.0f}  cannot be planned")
            continue
        print(f"  {r['network']:<10} {r['factor']:>6g} {r['target_fps']:>9,.0f} {r['fps_100mhz']:>9,.0f} "
              f"{r['xc7_lut6']:>7,} {r['xc7_ff']:>7,} {r['xc7_bram36']:>6}  {'yes' if r['fits'] else 'no'}")
    for name, _ in nets:
        best = best_fitting(rows, name)
        print(f"# {name}: highest sampled rate that fits {args.device}: "
              + (f"{best['fps_100mhz']:,.0f} frames/s ({best['xc7_lut6']:,} LUT6, {best['xc7_bram36']} BRAM36)"
                 if best else "none"))
    if args.plot:
        plot(rows, Path(args.plot), args.device)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return rows


if __name__ == "__main__":
    main()
