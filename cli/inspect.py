"""``bitplane inspect SPEC``: the integer form per hardware stage (bases, thresholds, widths, op counts)."""
from __future__ import annotations

import json

from bitplane import api


def add_parser(sub) -> None:
    p = sub.add_parser("inspect", help="per-layer integer form: bases, thresholds, widths, op counts")
    p.add_argument("spec")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(fn=run)


def _fmt_coefs(c) -> str:
    if isinstance(c, str):
        return c
    c = [int(v) for v in c]
    return "[" + ",".join(map(str, c if len(c) <= 3 else c[:2] + ["…"] + c[-1:])) + "]"


_GRAPH_KINDS = {
    "add": lambda r: (f"{r['inputs']} inputs, {r['rescale']}, {r['out']['bits']}-bit sum"
                      + "".join(f", input {i + 1} an unquantized relu/clip (product clipped)"
                                for i in r.get("clipped_inputs", []))),
    "avgpool": lambda r: (f"{r['divisor']} on {r['on']}" + (f" k{r['kernel']} s{r['stride']}"
                                                           if 'kernel' in r else "") + f", {r['rescale']}"),
    "concat": lambda r: f"{r['inputs']} inputs on {r['on']}",
    "threshold": lambda r: (f"{r['output']['thresholds_per_channel']} thresholds/ch on "
                            f"{r['in_bits']}-bit values -> {r['output']['act']['type']}{r['output']['act']['bits']}"),
}


def run(args) -> int:
    info = api.inspect(args.spec)
    rows = info["stages"]
    if args.json:
        print(json.dumps({k: info[k] for k in ("name", "spec_hash", "input", "stages")}, indent=2))
        return 0
    inp = info["input"]
    print(f"{info['name']}: input {inp['shape']} uint{inp['bits']} (scale {inp['scale']:g}), "
          f"{info['layers']} layers -> {len(rows)} hardware stages")
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
            src = info["inputs"][r["stage"]]
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
