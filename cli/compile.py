"""``bitplane compile SPEC -o DIR``: a network into an accelerator folder (Verilog, weights, manifest)."""
from __future__ import annotations

from bitplane import api

from .args import add_folding, err, positive_int


def add_parser(sub) -> None:
    p = sub.add_parser("compile", help="compile a network into an accelerator (Verilog, weights, manifest)")
    p.add_argument("spec")
    p.add_argument("-o", "--output", required=True, help="output folder (replaced atomically)")
    add_folding(p)
    p.add_argument("--no-embed-weights", action="store_true",
                   help="memories start empty (weights only by run-time loading); default: also in the bitstream")
    p.add_argument("--stream-bits", type=positive_int,
                   help="AXI4-Stream tdata width, 32..512 in multiples of 8 (default: the narrowest power of two "
                        "that feeds the first layer at the planned rate)")
    p.set_defaults(fn=run)


def run(args) -> int:
    m = api.compile(api.load(args.spec), args.output, target_fps=args.target_fps, clock_mhz=args.clock_mhz,
                    lut_budget=args.lut_budget, fold_file=args.fold, embed_weights=not args.no_embed_weights,
                    progress=err, stream_bits=args.stream_bits,
                    device=args.device).manifest
    print(f"{m['name']}: {m['cycles_per_frame']:,} cycles/frame (bottleneck {m['bottleneck']}) -> "
          f"{m['frames_per_second']:,.1f} frames/s at {m['clock_mhz']:g} MHz; weight image "
          f"{m['weights']['words']:,} words, checksum 0x{m['weights']['checksum']:08X}")
    return 0
