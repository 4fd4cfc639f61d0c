"""``bitplane`` command line.

Every user error (bad spec, bad input file, unsupported feature) prints one clear line
``bitplane: error: ...`` and exits non-zero without a traceback. Outputs are written
atomically (temporary file + rename), so nothing partial is left behind.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from bitplane.core.errors import BitplaneError, InputError, NotSupportedError

from bitplane.core.fileio import load_codes, output_target, write_file as atomic_write  # noqa: F401


def _positive(text: str) -> float:
    """argparse type: a positive finite number."""
    import math
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (v > 0 and math.isfinite(v)):
        raise argparse.ArgumentTypeError(f"{text} must be a positive finite number")
    return v


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"{text} must be at least 1")
    return v


def _input_frames(m, path, single_ok: bool = False):
    """Input codes from ``path`` checked against manifest ``m`` (errors name the file)."""
    from bitplane.core.manifest import check_frames
    x = load_codes(path)
    try:
        return check_frames(m, x, single_ok=single_ok)
    except InputError as e:
        raise InputError(f"{path}: {e}") from None


def _net(path):
    from bitplane.gen.spec import load_network
    return load_network(path)


def cmd_golden(args) -> int:
    from bitplane.gen.golden import Golden
    net = _net(args.spec)
    g = Golden(net)
    output_target(args.output)
    x = load_codes(args.input)
    g.check_input(x, args.input)
    t0 = time.perf_counter()
    if args.mode == "float":
        if args.dequantize:
            raise InputError("--dequantize only applies to --mode int (the float path already gives logits)")
        y = g.run_float(x)
    else:
        y = g.run_int(x)
        if args.dequantize:
            y = g.dequantize(y)
    dt = time.perf_counter() - t0
    atomic_write(Path(args.output), lambda f: np.save(f, y, allow_pickle=False))
    n = len(x)
    print(f"{net.name}: {n} frame(s), mode {args.mode}{' (dequantized)' if args.dequantize else ''}, "
          f"{dt:.3f} s ({n / dt if dt > 0 else float('inf'):.1f} frames/s) -> {args.output} "
          f"{list(y.shape)} {y.dtype}", file=sys.stderr)
    return 0


def _fmt_coefs(c) -> str:
    if isinstance(c, str):
        return c
    c = [int(v) for v in c]
    return "[" + ",".join(map(str, c if len(c) <= 3 else c[:2] + ["…"] + c[-1:])) + "]"


_GRAPH_KINDS = {
    "add": lambda r: f"{r['inputs']} inputs, {r['rescale']}, {r['out']['bits']}-bit sum",
    "avgpool": lambda r: (f"{r['divisor']} on {r['on']}" + (f" k{r['kernel']} s{r['stride']}"
                                                           if 'kernel' in r else "") + f", {r['rescale']}"),
    "concat": lambda r: f"{r['inputs']} inputs on {r['on']}",
    "threshold": lambda r: (f"{r['output']['thresholds_per_channel']} thresholds/ch on "
                            f"{r['in_bits']}-bit values -> {r['output']['act']['type']}{r['output']['act']['bits']}"),
}


def cmd_inspect(args) -> int:
    from bitplane.gen.lower import lower
    net = _net(args.spec)
    low = lower(net)
    rows = [s.describe() for s in low.stages]
    if args.json:
        print(json.dumps({"name": net.name, "spec_hash": net.spec_hash, "input": {
            "shape": list(net.input_shape), "bits": net.input_bits, "scale": net.input_scale},
            "stages": rows}, indent=2))
        return 0
    print(f"{net.name}: input {list(net.input_shape)} uint{net.input_bits} (scale {net.input_scale:g}), "
          f"{len(net.layers)} layers -> {len(rows)} hardware stages")
    hdr = f"{'stage':<10} {'kind':<7} {'in':<13} {'out':<13} {'W basis':<24} {'A basis':<24} " \
          f"{'thr/ch':>6} {'acc':>4} {'MACs':>11} {'binary ops':>13}"
    print(hdr)
    print("-" * len(hdr))
    tot_mac = tot_bop = 0
    for r in rows:
        shp = lambda s: "x".join(map(str, s))
        if r["kind"] == "maxpool":
            print(f"{r['stage']:<10} {'pool':<7} {shp(r['in_shape']):<13} {shp(r['out_shape']):<13} "
                  f"k{r['kernel']} s{r['stride']} on {r.get('on', 'codes')}")
            continue
        if r["kind"] in _GRAPH_KINDS:           # graph stages (gen/graph.py)
            src = low.inputs[r["stage"]]
            print(f"{r['stage']:<10} {r['kind'][:7]:<7} {shp(r['in_shape']):<13} {shp(r['out_shape']):<13} "
                  f"{_GRAPH_KINDS[r['kind']](r)} <- {', '.join(src)}")
            continue
        w, a = r["weights"], r["activations"]
        wb = f"{w['type']}{w['bits']} c={_fmt_coefs(w['coefs'])} o={w['offset']}"
        ab = f"{a['type']}{a['bits']} c={_fmt_coefs(a['coefs'])} o={a['offset']}"
        thr = "raw" if r["output"] == "raw accumulators" else str(r["output"]["thresholds_per_channel"])
        print(f"{r['stage']:<10} {r['kind']:<7} {shp(r['in_shape']):<13} {shp(r['out_shape']):<13} "
              f"{wb:<24.24} {ab:<24.24} {thr:>6} {r['acc_bits']:>4} {r['macs']:>11,} {r['binary_ops']:>13,}")
        extra = []
        if r.get("pool"):
            p = r["pool"]
            extra.append(f"pool {p['layer']} on {p['on']} (k{p['kernel']} s{p['stride']}, "
                         f"{p['min_channels']} min-pool channels)")
        if r["output"] != "raw accumulators" and r["output"]["two_sided"]:
            extra.append("two-sided thresholds (|x| activation)")
        elif r["output"] != "raw accumulators" and r["output"]["down_channels"]:
            extra.append(f"{r['output']['down_channels']} channel(s) with falling thresholds")
        if not w["exact"] or not a["exact"]:
            extra.append("fixed-point plane coefficients")
        if w["implicit_int8"]:
            extra.append("unquantized weights mapped to int8")
        if extra:
            print(f"{'':<10} " + "; ".join(extra))
        tot_mac += r["macs"]
        tot_bop += r["binary_ops"]
    print(f"total: {tot_mac:,} MACs, {tot_bop:,} binary ops per frame")
    return 0


def cmd_plan(args) -> int:
    from bitplane.gen.lower import lower
    from bitplane.gen.plan import plan
    net = _net(args.spec)
    low = lower(net)
    p = plan(low, target_fps=args.target_fps, clock_mhz=args.clock_mhz, lut_budget=args.lut_budget,
             fold_file=args.fold)
    if args.json:
        out = dict(p, folds=[f.__dict__ for f in p["folds"]])
        print(json.dumps(out, indent=2))
        return 0
    goal = (f"target {args.target_fps:g} frames/s" if args.target_fps else
            f"LUT budget {args.lut_budget:,}" if args.lut_budget else "smallest folding")
    print(f"{net.name}: plan for {goal} at {args.clock_mhz:g} MHz"
          + (f", fold file {args.fold}" if args.fold else ""))
    hdr = f"{'layer':<10} {'PE':>5} {'SIMD':>5} {'engine cyc':>11} {'cycles/frame':>13} {'est. LUTs':>10} " \
          f"{'weight bits':>12} {'thr bits':>9}  source"
    print(hdr)
    print("-" * len(hdr))
    folds = {f.stage: f for f in p["folds"]}
    for name in [s.name for s in low.stages if s.name in folds or s.name in p["pools"]]:
        mark = "  <- bottleneck" if name == p["bottleneck"] else ""
        if name in p["pools"]:
            print(f"{name:<10} {'':>5} {'':>5} {'':>11} {p['pools'][name]:>13,} {'':>10} {'':>12} {'':>9}  "
                  f"pool on codes{mark}")
            continue
        f = folds[name]
        print(f"{f.stage:<10} {f.pe:>5} {f.simd:>5} {f.cycles:>11,} {f.block_cycles:>13,} {f.luts:>10,} "
              f"{f.weight_bits:>12,} {f.threshold_bits:>9,}  {f.source}{mark}")
    print("(cycles/frame: the whole block, with its sliding window / input stream at the producer's PE lanes)")
    print(f"pipeline: {p['cycles_per_frame']:,} cycles/frame -> {p['fps']:,.1f} frames/s at "
          f"{args.clock_mhz:g} MHz; about {p['luts']:,} LUTs, {p['memory_bits']:,} memory bits")
    return 0


def cmd_synth(args) -> int:
    from bitplane.synth.flow import TARGETS, synthesize
    path = Path(args.design)
    if path.is_dir():
        from bitplane.core.manifest import load_manifest
        vfile = path / "accelerator.v"
        top = args.top or load_manifest(path)["top"]
    elif path.suffix == ".v" and path.exists():
        vfile, top = path, args.top
        if not top:
            raise InputError(f"{path}: give the top module with --top")
    else:
        raise InputError(f"{path}: no such compiled folder or Verilog file")
    t0 = time.perf_counter()
    from bitplane.core.fileio import read_text
    rep = synthesize(read_text(vfile, "Verilog file", 2 << 30), top, args.target, args.clock_mhz,
                     progress=lambda m: print(f"[{time.perf_counter() - t0:6.1f} s] {m}", file=sys.stderr))
    if args.json:
        atomic_write(Path(args.json), lambda f: f.write(json.dumps(rep, indent=2).encode()))
    print(f"{top} on {args.target} ({TARGETS[args.target].family}), target clock {args.clock_mhz:g} MHz"
          f"{' (cached)' if rep.get('cached') else ''}")
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
        print(f"  Fmax {rep['fmax_mhz']:.1f} MHz (nextpnr; I/O wrapper adds {rep['wrapper']['input_bits']} "
              f"FFs), fits: {'yes' if rep['fits'] else 'NO'}"
              + (f", bitstream {Path(rep['dir']) / rep['bitstream']}" if rep.get("bitstream") else ""))
    return 0


def cmd_compile(args) -> int:
    from bitplane.gen.compile import compile_network
    net = _net(args.spec)
    m = compile_network(net, Path(args.output), target_fps=args.target_fps, clock_mhz=args.clock_mhz,
                        lut_budget=args.lut_budget, fold_file=args.fold, embed_weights=not args.no_embed_weights,
                        progress=lambda msg: print(msg, file=sys.stderr), stream_bits=args.stream_bits)
    print(f"{m['name']}: {m['cycles_per_frame']:,} cycles/frame (bottleneck {m['bottleneck']}) -> "
          f"{m['frames_per_second']:,.1f} frames/s at {m['clock_mhz']:g} MHz; weight image "
          f"{m['weights']['words']:,} words, checksum 0x{m['weights']['checksum']:08X}")
    return 0


def cmd_sim(args) -> int:
    from bitplane.core.manifest import load_manifest
    from bitplane.sim.accel import simulate
    output_target(args.output)
    x = _input_frames(load_manifest(args.design), args.input)
    if args.gap_pct not in range(0, 100) or args.stall_pct not in range(0, 100):
        raise InputError("--gap-pct and --stall-pct must lie in 0..99")
    waves = str(Path(args.output).with_suffix(".fst")) if args.waves else None
    err = lambda msg: print(msg, file=sys.stderr)  # noqa: E731
    if args.workers is not None or args.scheduler:      # sharded over a Dask cluster (sim/shard.py)
        from bitplane.sim.cluster import dask_client, scheduler_address
        from bitplane.sim.shard import simulate_sharded
        if waves or args.engine != "native":
            raise InputError("--workers/--scheduler shard the native engine; they take no --waves or --engine cocotb")
        remote = scheduler_address(args.scheduler)
        with dask_client(remote, None if remote else args.workers, progress=err) as client:
            y, st = simulate_sharded(args.design, x, client, shards=args.workers, gap_pct=args.gap_pct,
                                     stall_pct=args.stall_pct, seed=args.seed, progress=err)
    else:
        y, st = simulate(args.design, x, gap_pct=args.gap_pct, stall_pct=args.stall_pct, seed=args.seed,
                         waves=waves, progress=err, engine=args.engine)
    if st.get("waves_dir"):
        waves = st["waves_dir"]
    atomic_write(Path(args.output), lambda f: np.save(f, y, allow_pickle=False))
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


def cmd_run(args) -> int:
    from bitplane.host.driver import Accelerator
    if not args.selftest and not (args.input and args.output):
        raise InputError("give --input and --output, or --selftest")
    if args.top_k is not None and args.top_k < 1:
        raise InputError("--top-k must be at least 1")
    from bitplane.core.manifest import load_manifest
    if args.output:
        output_target(args.output)
        if args.top_k is not None:
            output_target(Path(args.output).with_suffix(".topk.npy"))
    x = _input_frames(load_manifest(args.design), args.input, single_ok=True) if args.input else None
    err = lambda msg: print(msg, file=sys.stderr)  # noqa: E731
    with Accelerator.open(args.design, args.device, timeout=args.timeout, progress=err) as acc:
        if args.selftest:
            r = acc.selftest()
            dev = f", {r['device_fps']:,.1f} frames/s on the device clock" if r["device_fps"] else ""
            print(f"selftest {'PASS' if r['pass'] else 'FAIL'}: {r['frames'] - len(r['mismatched_frames'])}/"
                  f"{r['frames']} test vectors identical to the golden model; weights {r['weights']['words']:,} "
                  f"words, checksum 0x{r['weights']['checksum']:08X}; {r['fps']:,.1f} frames/s{dev}")
            if not r["pass"]:
                return 1
            if x is None:
                return 0
        elif not args.no_load_weights:
            lw = acc.load_weights()
            err(f"weights loaded: {lw['words']:,} words, checksum 0x{lw['checksum']:08X} verified")
        r = acc.infer(x, top_k=args.top_k, dequantize=args.dequantize)
    y = r.logits if args.dequantize else r.acc
    atomic_write(Path(args.output), lambda f: np.save(f, y, allow_pickle=False))
    dev = f"; device {r.device_fps:,.1f} frames/s at {acc.clock_mhz:g} MHz ({r.device_cycles:,} cycles)" \
        if r.device_fps else ""
    print(f"{r.frames} frames in {r.seconds:.2f} s: {r.fps:,.1f} frames/s, first-frame latency "
          f"{1e3 * r.latency_s:.1f} ms{dev}")
    if r.top_k is not None:
        kpath = Path(args.output).with_suffix(".topk.npy")
        atomic_write(kpath, lambda f: np.save(f, r.top_k, allow_pickle=False))
        for k in range(min(5, r.frames)):
            print(f"frame {k}: top-{args.top_k} {r.top_k[k].tolist()}")
        print(f"wrote {kpath} (int64 [{r.frames}, {args.top_k}])")
    print(f"wrote {args.output} ({'float64 logits' if args.dequantize else 'int64 accumulators'} "
          f"[{', '.join(map(str, y.shape))}])")
    return 0


def cmd_project(args) -> int:
    from bitplane.synth.project import write_project
    info = write_project(args.design, args.board, args.output)
    a = info["addresses"]["accelerator"]
    print(f"wrote {args.output}/ (build.tcl, constraints.xdc, project.json, README.md, accelerator.v, manifest) for "
          f"{info['board']} ({info['part']}); registers at 0x{a['base']:08X}. Run: cd {args.output} && vivado -mode "
          f"batch -source build.tcl  (not verified with Vivado or on hardware)")
    return 0


def _add_train_parser(sub):
    # train/ needs torch; its parser is importable without it (torch loads when training starts)
    from bitplane.train.trainer import add_parser
    add_parser(sub)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="bitplane", description="FPGA accelerator generator for "
                                 "low-bitwidth quantized CNNs.")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("golden", help="run the NumPy golden model (float or integer path)")
    p.add_argument("spec", help="network spec (YAML)")
    p.add_argument("--input", required=True, help="uint8 input codes [N,C,H,W] (.npy, or .npz with 'x')")
    p.add_argument("--output", required=True, help="output .npy")
    p.add_argument("--mode", choices=("float", "int"), default="int",
                   help="float: fake-quant logits (float64); int: raw last-layer accumulators (int64)")
    p.add_argument("--dequantize", action="store_true", help="int mode: apply the affine map to logits")
    p.set_defaults(fn=cmd_golden)

    p = sub.add_parser("inspect", help="per-layer integer form: bases, thresholds, widths, op counts")
    p.add_argument("spec")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(fn=cmd_inspect)

    p = sub.add_parser("plan", help="folding planner: PE/SIMD per layer, cycles, LUT estimate, bottleneck")
    p.add_argument("spec")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--target-fps", type=_positive, help="frames/s to reach at --clock-mhz")
    g.add_argument("--lut-budget", type=_positive_int, help="total LUTs to spend")
    p.add_argument("--clock-mhz", type=_positive, default=100.0)
    p.add_argument("--fold", help="YAML fold file {layer: {pe: P, simd: S}} overriding the planner")
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=cmd_plan)

    p = sub.add_parser("synth", help="open synthesis: LUT/FF/BRAM/Fmax report (ECP5, iCE40; Xilinx estimate)")
    p.add_argument("design", help="compiled folder (bitplane compile -o) or a Verilog file")
    p.add_argument("--target", required=True, choices=["ecp5-85k", "ecp5-45k", "ice40-up5k", "xc7z020", "xcku5p"])
    p.add_argument("--clock-mhz", type=_positive, default=100.0)
    p.add_argument("--top", help="top module (default: from the manifest)")
    p.add_argument("--json", help="also write the full report here")
    p.set_defaults(fn=cmd_synth)

    p = sub.add_parser("compile", help="compile a network into an accelerator (Verilog, weights, manifest)")
    p.add_argument("spec")
    p.add_argument("-o", "--output", required=True, help="output folder (replaced atomically)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--target-fps", type=_positive, help="frames/s to reach at --clock-mhz")
    g.add_argument("--lut-budget", type=_positive_int, help="total LUTs to spend")
    p.add_argument("--clock-mhz", type=_positive, default=100.0)
    p.add_argument("--fold", help="YAML fold file {layer: {pe: P, simd: S}} overriding the planner")
    p.add_argument("--no-embed-weights", action="store_true",
                   help="memories start empty (weights only by run-time loading); default: also in the bitstream")
    p.add_argument("--stream-bits", type=_positive_int,
                   help="AXI4-Stream tdata width, 32..512 in multiples of 8 (default: the narrowest power of two "
                        "that feeds the first layer at the planned rate)")
    p.set_defaults(fn=cmd_compile)

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
    p.set_defaults(fn=cmd_sim)

    from bitplane.synth.project import BOARDS
    p = sub.add_parser("project", help="Vivado project (Tcl + constraints) around a compiled accelerator")
    p.add_argument("design", help="compiled folder (bitplane compile -o)")
    p.add_argument("--board", required=True, choices=sorted(BOARDS))
    p.add_argument("-o", "--output", required=True, help="project folder to write")
    p.set_defaults(fn=cmd_project)

    p = sub.add_parser("run", help="run a compiled accelerator through the host driver (sim, PCIe XDMA, Zynq)")
    p.add_argument("design", help="compiled folder (bitplane compile -o)")
    p.add_argument("--device", default="sim",
                   help="sim (the RTL under Verilator), xdma[:/dev/xdma0] (PCIe), zynq[:/dev/uio0,/dev/uio1] "
                        "(accelerator UIO, AXI DMA UIO); default sim")
    p.add_argument("--input", help="uint8 input codes [N,C,H,W] (.npy, or .npz with 'x')")
    p.add_argument("--output", help="output .npy: int64 accumulators (float64 logits with --dequantize)")
    p.add_argument("--top-k", type=int, help="also write OUTPUT.topk.npy with the k best classes per frame")
    p.add_argument("--dequantize", action="store_true", help="write float logits (the manifest's affine map)")
    p.add_argument("--selftest", action="store_true",
                   help="load the weights, run the manifest's test vectors, report pass/fail and frames/s")
    p.add_argument("--no-load-weights", action="store_true",
                   help="use the weights already on the device (embedded at compile time or loaded before)")
    p.add_argument("--timeout", type=_positive, help="seconds per transfer (default: from the frame time)")
    p.set_defaults(fn=cmd_run)

    _add_train_parser(sub)
    from bitplane.gen import importers
    importers.add_parser(sub)
    from bitplane.cli import sweep
    sweep.add_parser(sub)
    return ap


def _terminate(signum, frame):
    raise SystemExit(128 + signum)


def main(argv=None) -> int:
    """Run the ``bitplane`` command. Errors meant for users print one bounded line (exit 1; 2 for
    unsupported features); SIGTERM and Ctrl-C remove what was being written (exit 143/130); any
    other exception is a bug, reported as one line too (exit 3; ``BITPLANE_DEBUG=1`` re-raises)."""
    import signal
    from bitplane.core.errors import format_error
    args = build_parser().parse_args(argv)
    try:
        previous = signal.signal(signal.SIGTERM, _terminate)
    except ValueError:                       # not the main thread (an embedding program)
        previous = None
    try:
        return args.fn(args)
    except BitplaneError as e:
        print(f"bitplane: error: {format_error(e)}", file=sys.stderr)
        return 2 if isinstance(e, NotSupportedError) else 1
    except BrokenPipeError:
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("bitplane: interrupted (Ctrl-C); nothing partial was written", file=sys.stderr)
        return 130
    except SystemExit as e:
        if e.code == 128 + signal.SIGTERM:
            print("bitplane: terminated (SIGTERM); nothing partial was written", file=sys.stderr)
        raise
    except MemoryError:
        print("bitplane: error: out of memory (the input is larger than this machine can hold)", file=sys.stderr)
        return 1
    except Exception as e:                   # a bug: one line, not a stack
        if os.environ.get("BITPLANE_DEBUG"):
            raise
        print(f"bitplane: internal error (please report; BITPLANE_DEBUG=1 shows the stack): "
              f"{format_error(e, with_type=True)}", file=sys.stderr)
        return 3
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
