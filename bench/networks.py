"""Network table: whole accelerators compiled, simulated and synthesized.

    python bench/networks.py [--nets tfc-w1a1:20000,cnv-w1a1:1000,cnv-w1a1:9000:xc7] [--frames 8]
                             [--cocotb-frames 2] [--no-ecp5] [--no-xilinx]

For each example network at a planner target (frames/s at 100 MHz):

* ``bitplane compile --no-embed-weights`` (time), planned cycles/frame and bottleneck (the
  weights go in through the host path, as on a board);
* simulated steady-state cycles/frame (native Verilator harness, frames back to back) and
  frames/s at 100 MHz;
* simulation speed in cycles per wall-clock second of both paths: the native C++ harness and
  the cocotb testbench (Python drives each clock), on the same design and frames;
* yosys ``synth_xilinx`` (xc7) LUT6 sites (logic LUTs + the LUT6s distributed RAM occupies),
  FF, BRAM36 (no timing): by default the out-of-context estimate (``synth/ooc.py``: each
  distinct block synthesized once, cached, plus the top's glue), ``--flat`` for one flat
  synthesis of the whole design; and ECP5-85k (grade 8) LUT4 + Fmax from nextpnr when it
  fits, with frames/s at that Fmax.

A ``:xc7`` suffix on an entry skips ECP5 for it (the CNV networks at FINN's frame rates take
hours of wasm place and route; their LUT count is what the FINN comparison needs) and compiles
it for the xc7z020 (``--device xc7z020``: compressor-tree popcounts, ``hw.popcount``); the
other entries are compiled generic (adder-tree popcounts), the same Verilog for both targets. Builds go
to ``build/bench/NAME-TARGET``; synthesis results are cached under ``build/synth``.
``--no-sim`` skips the simulations (frames/s then from the planned cycles, which the RTL
suite checks equal to the simulated ones) for designs too large to simulate here quickly.
"""
from __future__ import annotations

import argparse
import json
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
from bitplane.synth.flow import SynthError, critical_path_text, synthesize, tool_versions  # noqa: E402
from bitplane.synth.ooc import ooc_synthesize  # noqa: E402
from bitplane.sim.accel import simulate  # noqa: E402

# the CNVs at a small folding. FINN BNN-PYNQ's frame rates (cnv-w1a1:9000:xc7, cnv-w2a2:2600:xc7) give
# the equal-throughput comparison but take more than an hour each in wasm yosys here (not in the default yet)
DEFAULT_NETS = "tfc-w1a1:20000,tfc-w2a2:10000,cnv-w1a1:1000,cnv-w2a2:500"


def parse_nets(text: str) -> list[tuple[str, float, bool, str | None]]:
    """``NAME:TARGET_FPS[:xc7][:fold=FILE],...`` -> [(name, target fps, run ECP5, fold file or None)]
    (``fold=FILE``: a fold file, relative to the repository, e.g. per-layer ``ram_style``)."""
    out = []
    for item in text.split(","):
        parts = item.strip().split(":")
        fold = None
        if len(parts) > 2 and parts[-1].startswith("fold="):
            fold = parts.pop()[len("fold="):]
            if not (ROOT / fold).is_file():
                raise ValueError(f"--nets entry {item!r}: no fold file {fold}")
        if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] != "xc7"):
            raise ValueError(f"--nets entry {item!r}: expected NAME:TARGET_FPS[:xc7][:fold=FILE]")
        if not (ROOT / "examples" / f"{parts[0]}.yaml").exists():
            raise ValueError(f"--nets entry {item!r}: no examples/{parts[0]}.yaml")
        try:
            fps = float(parts[1])
        except ValueError:
            raise ValueError(f"--nets entry {item!r}: target {parts[1]!r} is not a number") from None
        if fps <= 0:
            raise ValueError(f"--nets entry {item!r}: target must be > 0 frames/s")
        out.append((parts[0], fps, len(parts) == 2, fold))
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nets", default=DEFAULT_NETS,
                    help="NAME:TARGET_FPS[:xc7][:fold=FILE],... (:xc7 = no ECP5 for that one; fold=FILE: a fold "
                         "file, e.g. ram_style per layer; default: %(default)s)")
    ap.add_argument("--frames", type=int, default=8, help="frames for the native simulation")
    ap.add_argument("--cocotb-frames", type=int, default=2, help="frames for the cocotb simulation (0: skip)")
    ap.add_argument("--no-ecp5", action="store_true", help="skip ECP5 place and route (slow)")
    ap.add_argument("--no-xilinx", action="store_true", help="skip synth_xilinx")
    ap.add_argument("--flat", action="store_true",
                    help="xc7 figures from one flat synth_xilinx of the whole design (slow) instead of the "
                         "out-of-context estimate")
    ap.add_argument("--jobs", type=int, default=1, help="out-of-context synthesis runs at a time (default 1)")
    ap.add_argument("--no-sim", action="store_true",
                    help="no simulation: frames/s from the planned cycles/frame")
    ap.add_argument("--json", help="also write the rows as JSON")
    args = ap.parse_args(argv)
    if args.frames < 3:
        ap.error("--frames must be >= 3: the steady-state period is measured between back-to-back frames")
    try:
        nets = parse_nets(args.nets)
    except ValueError as e:
        ap.error(str(e))
    quiet = lambda msg: None  # noqa: E731
    print(f"# network table, {time.strftime('%Y-%m-%d')}, {machine()}")
    print(f"# tools: {tool_versions()}")
    print(f"# command: python bench/networks.py --nets {args.nets} --frames {args.frames} "
          f"--cocotb-frames {args.cocotb_frames}" + (" --no-ecp5" if args.no_ecp5 else "")
          + (" --no-xilinx" if args.no_xilinx else "") + (" --flat" if args.flat else "")
          + (" --no-sim" if args.no_sim else ""))
    print("# cycles/frame: planned / simulated steady state (native harness, frames back to back); "
          f"fps at 100 MHz from the {'planned' if args.no_sim else 'simulated'} period; sim speed in simulated "
          "cycles per wall second; xc7 from yosys synth_xilinx (LUT6 sites: logic + LUTRAM, no timing; "
          f"{'flat' if args.flat else 'out-of-context: sum of distinct blocks + glue'}); ECP5-85k grade 8 nextpnr")
    hdr = (f"{'network':<10} {'target':>6} {'compile s':>9} {'planned':>9} {'simulated':>9} {'bottleneck':>10} "
           f"{'fps@100':>8} {'native c/s':>10} {'cocotb c/s':>10} {'xc7 LUT6':>8} {'FF':>7} {'BRAM36':>6} "
           f"{'fps/kLUT':>8} {'ECP5 LUT4':>9} {'Fmax':>6} {'fps@Fmax':>8}")
    print(hdr, flush=True)
    rows = []
    build = ROOT / "build" / "bench"
    build.mkdir(parents=True, exist_ok=True)
    for name, fps, want_ecp5, fold in nets:
        net = load_network(ROOT / "examples" / f"{name}.yaml")
        out = build / (f"{name}-{fps:g}" + (f"-{Path(fold).stem}" if fold else ""))
        t0 = time.perf_counter()
        # weights loaded at run time, as deployed (same logic and BRAM as embedded weights)
        m = compile_network(net, out, target_fps=fps, embed_weights=False, progress=quiet,
                            fold_file=ROOT / fold if fold else None, device=None if want_ecp5 else "xc7z020")
        t_compile = time.perf_counter() - t0
        rng = np.random.default_rng(0)
        x = rng.integers(0, 1 << net.input_bits, (args.frames, *net.input_shape)).astype(np.uint8)
        row = {"network": name, "target_fps": float(fps), "compile_s": round(t_compile, 1),
               "planned_cycles": m["cycles_per_frame"], "bottleneck": m["bottleneck"], "fold_file": fold}
        if args.no_sim:
            cpf = m["cycles_per_frame"]
            row.update(simulated_cycles=None, fps_100mhz=100e6 / cpf)
        else:
            y, st = simulate(out, x)
            if not np.array_equal(y, Golden(net).run_int(x)):
                raise SystemExit(f"{name}: RTL output differs from the golden model")
            cpf = st["cycles_per_frame"]
            row.update(simulated_cycles=cpf, fps_100mhz=100e6 / cpf, native_cycles_per_s=st["sim_cycles_per_second"])
        if args.cocotb_frames and not args.no_sim:
            yc, sc = simulate(out, x[:args.cocotb_frames], engine="cocotb")
            if not np.array_equal(yc, y[:args.cocotb_frames]):
                raise SystemExit(f"{name}: cocotb and native simulations differ")
            row["cocotb_cycles_per_s"] = sc["sim_cycles_per_second"]
        v = (out / "accelerator.v").read_text()
        if not args.no_xilinx:
            t1 = time.perf_counter()
            if args.flat:
                xr = synthesize(v, m["top"], "xc7z020", progress=quiet, cache_dir=ROOT / "build" / "synth",
                                bitstream=False)["resources"]
            else:
                xr = ooc_synthesize(v, m["top"], "xc7z020", cache_dir=ROOT / "build" / "synth",
                                    jobs=args.jobs)["resources"]
            row.update(xc7_lut6=xr["LUT_SITES"], xc7_ff=xr["FF"], xc7_bram36=xr["BRAM36"],
                       xc7_mode="flat" if args.flat else "ooc", xc7_synth_s=round(time.perf_counter() - t1, 1))
            row["fps_per_klut_100mhz"] = row["fps_100mhz"] / (row["xc7_lut6"] / 1000)
        if not want_ecp5:
            row["ecp5_skipped"] = True
        if not args.no_ecp5 and want_ecp5:
            try:
                e = synthesize(v, m["top"], "ecp5-85k", clock_mhz=100.0, progress=quiet,
                               cache_dir=ROOT / "build" / "synth", bitstream=False, speed_grade=8)
                row.update(ecp5_lut4=e["utilisation"].get("TRELLIS_COMB", {}).get("used"),
                           fmax_mhz=e["fmax_mhz"], fps_fmax=e["fmax_mhz"] * 1e6 / cpf,
                           ecp5_critical_path=e.get("critical_path"))
            except SynthError as err:
                row["ecp5_error"] = [ln for ln in str(err).splitlines() if ln.strip()][-1].strip()
        rows.append(row)

        def f(k, fmt):
            return format(row[k], fmt) if row.get(k) is not None else "-"
        print(f"{name + ('*' if fold else ''):<10} {fps:>6g} {row['compile_s']:>9.1f} {m['cycles_per_frame']:>9,} "
              f"{f('simulated_cycles', '>9,.0f')} "
              f"{m['bottleneck']:>10} {row['fps_100mhz']:>8,.0f} {f('native_cycles_per_s', '>10,.0f')} "
              f"{f('cocotb_cycles_per_s', '>10,.0f')} {f('xc7_lut6', '>8,')} {f('xc7_ff', '>7,')} "
              f"{f('xc7_bram36', '>6')} {f('fps_per_klut_100mhz', '>8.1f')} {f('ecp5_lut4', '>9,')} "
              f"{f('fmax_mhz', '>6.1f')} {f('fps_fmax', '>8,.0f')}"
              + (f"  ECP5: {row['ecp5_error']}" if row.get("ecp5_error") else "")
              + (f"  critical path {critical_path_text(row['ecp5_critical_path'])}"
                 if row.get("ecp5_critical_path") else ""), flush=True)
    if any(fold for *_, fold in nets):
        print("# *: with its fold file (" + ", ".join(f"{n}: {fo}" for n, _, _, fo in nets if fo) + ")")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return rows


if __name__ == "__main__":
    main()
