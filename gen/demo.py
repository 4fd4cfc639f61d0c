"""``make demo``: the most end-to-end job the project can do today, on the shipped example.

Current pipeline: spec -> integer lowering (``bitplane inspect``) -> golden model, both
paths, on 256 real MNIST digits -> agreement report (every disagreement explained) ->
``build/demo/report.md``. The example's weights are random-but-fixed, so its accuracy
is chance level by construction; the point is the flow and the bit-exact integer path.
"""
from __future__ import annotations

import io
import sys
import time
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np

from .cli import atomic_write, main as cli_main
from .compare import compare_paths
from .golden import Golden
from .spec import load_network

ROOT = Path(__file__).resolve().parents[1]


def run(out_dir: Path = ROOT / "build" / "demo") -> int:
    spec = ROOT / "examples" / "lenet-w2a2.yaml"
    data = ROOT / "examples" / "data" / "mnist-256.npz"
    out_dir.mkdir(parents=True, exist_ok=True)
    print(f"[1/3] bitplane inspect {spec.relative_to(ROOT)}")
    buf = io.StringIO()
    with redirect_stdout(buf):
        cli_main(["inspect", str(spec)])
    table = buf.getvalue()
    print(table)

    with np.load(data, allow_pickle=False) as z:
        x, y = z["x"], z["y"]
    net = load_network(spec)
    g = Golden(net)
    print(f"[2/3] golden model on {len(x)} real MNIST digits ({data.relative_to(ROOT)})")
    t0 = time.perf_counter()
    acc = g.run_int(x)
    t_int = time.perf_counter() - t0
    t0 = time.perf_counter()
    logits_f = g.run_float(x)
    t_float = time.perf_counter() - t0
    np.save(out_dir / "int_acc.npy", acc)
    np.save(out_dir / "float_logits.npy", logits_f)

    print("[3/3] int vs float paths, every disagreement explained")
    r = compare_paths(g, x)
    lines = [
        f"# bitplane demo: {net.name}", "",
        f"{time.strftime('%Y-%m-%d %H:%M')}; spec {spec.relative_to(ROOT)} (sha256 {net.spec_hash[:12]})", "",
        "## Integer form", "", "```", table.rstrip(), "```", "",
        f"## Golden model on {len(x)} real MNIST digits", "",
        f"* int path: {len(x) / t_int:,.0f} frames/s; float path: {len(x) / t_float:,.0f} frames/s",
        f"* argmax agreement int vs float: {r['argmax_agreement'] * 100:.2f}% "
        f"({r['argmax_disagreements']} disagreement(s))",
        f"* max relative logit difference: {r['max_rel_logit_error']:.2e}",
        f"* activation codes that differ: {r['code_mismatches']}, unexplained: {r['unexplained']}",
        f"* accuracy vs labels (random weights, chance level expected): "
        f"float {np.mean(logits_f.argmax(1) == y) * 100:.1f}%, "
        f"int {np.mean(g.dequantize(acc).argmax(1) == y) * 100:.1f}%", "",
        "| stage | output elements | code mismatches | cause if any | max abs dy |", "|---|---|---|---|---|",
    ]
    for s in r["stages"]:
        lines.append(f"| {s['stage']} | {s['elements']} | {s['code_mismatches']} | "
                     f"{s['cause'] if s['code_mismatches'] else '-'} | "
                     f"{s['max_abs_dy']:.2e} |")
    lines += ["", "Next steps of the flow (compile, RTL simulation, synthesis, host driver) are listed "
              "in README.md under Status.", ""]
    report = "\n".join(lines)
    atomic_write(out_dir / "report.md", lambda f: f.write(report.encode()))
    print("\n".join(lines[lines.index(f"## Golden model on {len(x)} real MNIST digits"):]))
    print(f"report: {(out_dir / 'report.md').relative_to(ROOT)}")
    return 0 if r["unexplained"] == 0 else 1


if __name__ == "__main__":
    sys.exit(run())
