"""``bitplane run DESIGN``: a compiled accelerator through the host driver (sim, PCIe XDMA, Zynq)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from bitplane import api
from bitplane.core.errors import InputError
from bitplane.core.fileio import output_target, write_file

from .args import err, positive


def rate(fps: float) -> str:
    """A frame rate for people: one decimal from 10 frames/s up, else three significant digits
    (an RTL simulation as the device runs well under 0.1 frames/s of host time)."""
    return f"{fps:,.1f}" if fps >= 10 else f"{fps:.3g}"


def add_parser(sub) -> None:
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
    p.add_argument("--timeout", type=positive, help="seconds per transfer (default: from the frame time)")
    p.set_defaults(fn=run)


def run(args) -> int:
    if not args.selftest and not (args.input and args.output):
        raise InputError("give --input and --output, or --selftest")
    if args.top_k is not None and args.top_k < 1:
        raise InputError("--top-k must be at least 1")
    if args.output:
        output_target(args.output)
        if args.top_k is not None:
            output_target(Path(args.output).with_suffix(".topk.npy"))
    design = api.Design(args.design)
    x = design.frames(args.input, single_ok=True) if args.input else None
    with design.open(args.device, timeout=args.timeout, progress=err) as acc:
        if args.selftest:
            r = acc.selftest()
            dev = f", {rate(r['device_fps'])} frames/s on the device clock" if r["device_fps"] else ""
            print(f"selftest {'PASS' if r['pass'] else 'FAIL'}: {r['frames'] - len(r['mismatched_frames'])}/"
                  f"{r['frames']} test vectors identical to the golden model; weights {r['weights']['words']:,} "
                  f"words, checksum 0x{r['weights']['checksum']:08X}; {rate(r['fps'])} frames/s{dev}")
            if not r["pass"]:
                return 1
            if x is None:
                return 0
        elif not args.no_load_weights:
            lw = acc.load_weights()
            err(f"weights loaded: {lw['words']:,} words, checksum 0x{lw['checksum']:08X} verified")
        r = acc.infer(x, top_k=args.top_k, dequantize=args.dequantize)
    y = r.logits if args.dequantize else r.acc
    write_file(Path(args.output), lambda f: np.save(f, y, allow_pickle=False))
    dev = f"; device {rate(r.device_fps)} frames/s at {acc.clock_mhz:g} MHz ({r.device_cycles:,} cycles)" \
        if r.device_fps else ""
    print(f"{r.frames} frames in {r.seconds:.2f} s: {rate(r.fps)} frames/s, first-frame latency "
          f"{1e3 * r.latency_s:.1f} ms{dev}")
    if r.top_k is not None:
        kpath = Path(args.output).with_suffix(".topk.npy")
        write_file(kpath, lambda f: np.save(f, r.top_k, allow_pickle=False))
        for k in range(min(5, r.frames)):
            print(f"frame {k}: top-{args.top_k} {r.top_k[k].tolist()}")
        print(f"wrote {kpath} (int64 [{r.frames}, {args.top_k}])")
    print(f"wrote {args.output} ({'float64 logits' if args.dequantize else 'int64 accumulators'} "
          f"[{', '.join(map(str, y.shape))}])")
    return 0
