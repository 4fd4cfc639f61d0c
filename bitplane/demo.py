"""``make demo`` / ``make demo-resnet20``: the main job on a shipped trained network and real images.

``python -m bitplane.demo [--net lenet|resnet20|nin] [--frames N] [--workers W]``. ``lenet``
(``make demo``, the default): ``examples/fmnist-lenet-w1a2.yaml`` (a DoReFa-Net W1/A2 LeNet trained here with
``bitplane train`` on Fashion-MNIST) -> integer lowering (``bitplane inspect``) -> golden
model, both paths, on the shipped 500 Fashion-MNIST test images -> agreement report (every
disagreement explained) -> ``bitplane compile`` (folded for 1,500 frames/s at 100 MHz) -> RTL
simulation of the whole accelerator (Verilator, native harness, weights loaded through the
host path) on the same images, checked identical to the golden int path -> the host driver
on the simulated device -> ``build/demo/report.md`` with the accuracy of the float model, the
golden integer path and the RTL, cycles/frame and frames/s, and ``confusion.png`` /
``samples.png`` next to it.

``resnet20`` (``make demo-resnet20``): the graph network ``examples/fmnist-resnet20-w2a2.yaml``
(the pytorch DoReFa seed's ResNet-20, W2/A2, trained here; residual adds, projection
shortcuts, global average pool) on the shipped images zero-padded to 32x32, compiled for
1,000 frames/s; the golden paths are compared end to end (argmax agreement and logit
difference; the stage-by-stage comparison covers sequential networks), the RTL runs on 256
frames sharded over two Dask workers (``bitplane sim --workers 2``), the report goes to
``build/demo-resnet20/report.md``. ``nin`` (``make demo-nin``): the same for the seed's NIN
(``examples/fmnist-nin-w2a2.yaml``, W2/A2, trained here; 1x1 convolutions and a global
average pool), report in ``build/demo-nin/report.md``.

``--spec FILE`` runs another network of the same kind through the chosen ``--net`` settings
(target rate, image size, frames, workers), e.g. one written by ``bitplane train --arch nin
--bits 4,4``; its report goes to ``--out DIR`` (default ``build/demo-<spec name>``);
``--target-fps F`` changes the rate the accelerator is folded for. Errors meant for users
(a rate the planner cannot reach, a bad spec) print one line and exit 1 (2: not supported).
"""
from __future__ import annotations

import io
import sys
import time
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np

from bitplane.cli.main import main as cli_main
from bitplane.core.errors import BitplaneError, NotSupportedError, format_error
from bitplane.core.fileio import write_file as atomic_write
from bitplane.gen.compare import compare_paths
from bitplane.gen.compile import compile_network
from bitplane.gen.golden import Golden
from bitplane.gen.plan import plan
from bitplane.gen.spec import load_network
from bitplane.host.driver import Accelerator
from bitplane.sim.accel import simulate
from bitplane.train.arch import pad_input
from bitplane.train.data import CLASSES

ROOT = Path(__file__).resolve().parents[1]


SPEC = ROOT / "examples" / "fmnist-lenet-w1a2.yaml"
DATA = ROOT / "examples" / "data" / "fashion-mnist-test-500.npz"
TARGET_FPS = 1500
# the demo networks: spec, target frames/s at 100 MHz, image size (zero-padded), RTL frames, Dask workers
NETS = {
    "lenet": {"spec": SPEC, "fps": TARGET_FPS, "size": None, "frames": 500, "workers": None,
              "golden_all": True, "out": ROOT / "build" / "demo"},
    "resnet20": {"spec": ROOT / "examples" / "fmnist-resnet20-w2a2.yaml", "fps": 1000, "size": 32, "frames": 256,
                 "workers": 2, "golden_all": False, "out": ROOT / "build" / "demo-resnet20"},
    "nin": {"spec": ROOT / "examples" / "fmnist-nin-w2a2.yaml", "fps": 1000, "size": 32, "frames": 256,
            "workers": 2, "golden_all": False, "out": ROOT / "build" / "demo-nin"},
}


def main(argv=None) -> int:
    import argparse
    ap = argparse.ArgumentParser(prog="python -m bitplane.demo", description=__doc__.splitlines()[0])
    ap.add_argument("--net", choices=sorted(NETS), default="lenet", help="demo network (default: lenet)")
    ap.add_argument("--frames", type=int, help="RTL frames (default: 500 for lenet, 256 for resnet20 and nin)")
    ap.add_argument("--workers", type=int, help="shard the RTL frames over N local Dask workers "
                                                "(default: none for lenet, 2 for resnet20 and nin)")
    ap.add_argument("--spec", type=Path, help="run this spec (e.g. a `bitplane train` output) with the "
                                              "--net settings instead of the shipped network")
    ap.add_argument("--target-fps", type=float, help="frames/s at 100 MHz the accelerator is folded for "
                                                      "(default: 1,500 for lenet, 1,000 for resnet20 and nin)")
    ap.add_argument("--out", type=Path, help="report folder (default: build/demo-<net>, with --spec "
                                             "build/demo-<spec name>)")
    a = ap.parse_args(argv)
    cfg = dict(NETS[a.net])
    if a.spec is not None:
        if not a.spec.is_file():
            ap.error(f"--spec {a.spec}: no such file")
        cfg["spec"] = a.spec.resolve()
        cfg["out"] = ROOT / "build" / f"demo-{a.spec.stem}"
    if a.out is not None:
        cfg["out"] = a.out.resolve()
    if a.target_fps is not None:
        if not a.target_fps > 0:
            ap.error("--target-fps must be positive")
        cfg["fps"] = a.target_fps
    if a.frames is not None and a.frames < 3:
        ap.error("--frames must be at least 3 (the period needs two frames after the first)")
    workers = a.workers if a.workers is not None else cfg["workers"]
    if workers is not None and workers < 1:
        ap.error("--workers must be at least 1")
    try:
        return run(cfg["out"], a.frames or cfg["frames"], name=a.net, workers=workers, cfg=cfg)
    except BitplaneError as e:
        print(f"demo: error: {format_error(e)}", file=sys.stderr)
        return 2 if isinstance(e, NotSupportedError) else 1


def run(out_dir: Path = ROOT / "build" / "demo", rtl_frames: int = 500, name: str = "lenet", workers=None,
        cfg: dict | None = None) -> int:
    cfg = cfg or NETS[name]
    spec, data, target_fps = cfg["spec"], DATA, cfg["fps"]
    classes = CLASSES["fashion-mnist"]
    out_dir.mkdir(parents=True, exist_ok=True)
    print(f"[1/5] bitplane inspect {_shown(spec)}")
    buf = io.StringIO()
    with redirect_stdout(buf):
        rc = cli_main(["inspect", str(spec)])
    if rc:                                   # the spec is refused: bitplane printed the one line
        return rc
    table = buf.getvalue()
    print(table)

    with np.load(data, allow_pickle=False) as z:
        x, y = z["x"], z["y"]
    if cfg["size"]:
        x = pad_input(x, cfg["size"])
    if not cfg["golden_all"]:                # the golden model on the RTL frames only
        x, y = x[:rtl_frames], y[:rtl_frames]
    net = load_network(spec)
    g = Golden(net)
    plan(g.lowered, target_fps=target_fps, clock_mhz=100)   # an unreachable rate fails now, not after the golden runs
    print(f"[2/5] golden model on {len(x)} Fashion-MNIST test images ({data.relative_to(ROOT)}"
          f"{', zero-padded to %dx%d' % (cfg['size'], cfg['size']) if cfg['size'] else ''})")
    t0 = time.perf_counter()
    acc = g.run_int(x)
    t_int = time.perf_counter() - t0
    t0 = time.perf_counter()
    logits_f = g.run_float(x)
    t_float = time.perf_counter() - t0
    np.save(out_dir / "int_acc.npy", acc)
    np.save(out_dir / "float_logits.npy", logits_f)

    if net.is_graph:
        print("[3/5] int vs float paths, end to end (a graph network)")
        r = _compare_outputs(g, acc, logits_f)
    else:
        print("[3/5] int vs float paths, every disagreement explained")
        r = compare_paths(g, x)
    lines = [
        f"# bitplane demo: {net.name}", "",
        f"{time.strftime('%Y-%m-%d %H:%M')}; spec {_shown(spec)} (sha256 {net.spec_hash[:12]})", "",
        "## Integer form", "", "```", table.rstrip(), "```", "",
        f"## Golden model on {len(x)} Fashion-MNIST test images", "",
        f"* int path: {len(x) / t_int:,.0f} frames/s; float path: {len(x) / t_float:,.0f} frames/s",
        f"* argmax agreement int vs float: {r['argmax_agreement'] * 100:.2f}% "
        f"({r['argmax_disagreements']} disagreement(s))",
        f"* max relative logit difference: {r['max_rel_logit_error']:.2e}",
        f"* activation codes that differ: {r['code_mismatches']}, unexplained: {r['unexplained']}"
        if not net.is_graph else "* (a graph network: the paths are compared end to end, not stage by stage)",
        f"* accuracy vs labels: float {np.mean(_classes(logits_f) == y) * 100:.1f}%, "
        f"golden int {np.mean(_classes(g.dequantize(acc)) == y) * 100:.1f}%", "",
    ]
    if not net.is_graph:
        lines += ["| stage | output elements | code mismatches | cause if any | max abs dy |", "|---|---|---|---|---|"]
    for s in r.get("stages", []):   # sequential networks: per stage
        lines.append(f"| {s['stage']} | {s['elements']} | {s['code_mismatches']} | "
                     f"{s['cause'] if s['code_mismatches'] else '-'} | "
                     f"{s['max_abs_dy']:.2e} |")

    hw_dir = out_dir / "accelerator"
    print(f"[4/5] bitplane compile --target-fps {target_fps:g} --clock-mhz 100")
    m = compile_network(net, hw_dir, target_fps=target_fps, clock_mhz=100)
    n = min(rtl_frames, len(x))
    print(f"[5/5] RTL simulation (Verilator) of the whole accelerator on {n} Fashion-MNIST test images"
          f"{f' ({workers} Dask workers)' if workers else ''}")
    t_rtl = time.perf_counter()
    if workers:
        from bitplane.sim.cluster import dask_client  # lazy: dask starts only for the sharded graph demo
        from bitplane.sim.shard import simulate_sharded  # lazy: dask starts only for the sharded graph demo
        with dask_client(None, workers, progress=print) as client:
            y_rtl, st = simulate_sharded(hw_dir, x[:n], client, progress=print)
    else:
        y_rtl, st = simulate(hw_dir, x[:n], progress=print)
    t_rtl = time.perf_counter() - t_rtl
    exact = bool(np.array_equal(y_rtl, acc[:n]))
    np.save(out_dir / "rtl_acc.npy", y_rtl)
    lines += ["", "## Accelerator (bitplane compile + RTL simulation)", "",
              f"* folded for {target_fps:,g} frames/s at 100 MHz: {m['cycles_per_frame']:,} cycles/frame planned, "
              f"bottleneck {m['bottleneck']}, about {m['plan']['estimated_luts']:,} LUTs (planner estimate)", "",
              "| layer | kind | PE | SIMD | cycles/frame |", "|---|---|---|---|---|"]
    for L in m["layers"]:
        lines.append(f"| {L['name']} | {L['kind']} | {L.get('pe', '-')} | {L.get('simd', '-')} | "
                     f"{L['cycles_per_frame']:,} |")
    pred_rtl = _classes(g.dequantize(y_rtl))            # logits: the manifest's affine map (per-class scales)
    acc_float = float(np.mean(_classes(logits_f[:n]) == y[:n]))
    acc_int = float(np.mean(_classes(g.dequantize(acc[:n])) == y[:n]))
    acc_rtl = float(np.mean(pred_rtl == y[:n]))
    lines += ["",
              f"* RTL outputs on {n} Fashion-MNIST test images identical to the golden int path: "
              f"**{'yes' if exact else 'NO'}**",
              f"* weights loaded at run time through s_axis: {st['regs']['WEIGHT_WORDS']:,} words, checksum "
              f"0x{st['regs']['WEIGHT_CHECKSUM']:08X} (manifest 0x{m['weights']['checksum']:08X}), "
              f"{st['weight_cycles']:,} cycles",
              f"* measured {st['cycles_per_frame']:,.0f} cycles/frame (planner {m['cycles_per_frame']:,}), "
              f"first-frame latency {st['latency_cycles']:,} cycles -> {st['fps_at_clock']:,.0f} frames/s at "
              f"100 MHz",
              f"* simulation speed: {st['sim_cycles_per_second']:,.0f} cycles/s ({t_rtl:.1f} s wall"
              f"{f', {workers} Dask workers' if workers else ''})", "",
              f"## Accuracy on the {n} shipped Fashion-MNIST test images", "",
              "| model | accuracy |", "|---|---|",
              f"| float (fake-quant, the training semantics) | {acc_float * 100:.2f} % |",
              f"| golden integer path | {acc_int * 100:.2f} % |",
              f"| RTL (Verilator) | {acc_rtl * 100:.2f} % |", "",
              "![confusion matrix](confusion.png) ![samples](samples.png)", ""]
    _figures(out_dir, x[:n], y[:n], pred_rtl, classes, acc_rtl)
    # the same accelerator through the host driver, the RTL as the device (bitplane run --device sim)
    print("[+] host driver on the simulated device: bitplane run --device sim --selftest")
    with Accelerator.open(hw_dir, "sim") as dev:
        stt = dev.selftest()
        k = 4 if net.is_graph else 16
        r2 = dev.infer(x[:k], top_k=3, progress=False)
    drv_ok = stt["pass"] and bool(np.array_equal(r2.acc, acc[:k]))
    lines += ["## Host driver (`bitplane run --device sim`)", "",
              f"* selftest (weights + {stt['frames']} manifest test vectors): **{'PASS' if stt['pass'] else 'FAIL'}**",
              f"* {k} images through `Accelerator.infer` identical to the golden int path: "
              f"**{'yes' if drv_ok else 'NO'}**; top-3 classes of the first image {[classes[c] for c in r2.top_k[0]]} (label {classes[y[0]]})", ""]
    exact = exact and drv_ok
    report = "\n".join(lines)
    atomic_write(out_dir / "report.md", lambda f: f.write(report.encode()))
    print("\n".join(lines[lines.index(f"## Golden model on {len(x)} Fashion-MNIST test images"):]))
    print(f"report: {out_dir / 'report.md'} (figures confusion.png, samples.png next to it)")
    return 0 if r["unexplained"] == 0 and exact else 1


def _classes(logits) -> np.ndarray:
    """Predicted class per frame of ``[n, classes]`` or ``[n, classes, 1, 1]`` logits (NIN ends
    in a global pool: its outputs keep the 1x1 map)."""
    a = np.asarray(logits)
    return a.reshape(len(a), -1).argmax(1)


def _shown(path: Path) -> str:
    """``path`` relative to the repository when inside it (the report names shipped files so)."""
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def _compare_outputs(g: Golden, acc, logits_f) -> dict:
    """End-to-end agreement of the golden paths of a graph network (what ``compare_paths``
    reports for sequential ones): argmax agreement and the largest logit difference relative
    to the largest logit; no code is compared stage by stage, so none is left unexplained."""
    n = len(acc)
    d = np.asarray(g.dequantize(acc), np.float64).reshape(n, -1)
    f = np.asarray(logits_f, np.float64).reshape(n, -1)
    same = d.argmax(1) == f.argmax(1)
    return {"argmax_agreement": float(same.mean()), "argmax_disagreements": int((~same).sum()),
            "max_rel_logit_error": float(np.max(np.abs(d - f)) / max(np.max(np.abs(f)), 1e-30)),
            "code_mismatches": None, "unexplained": 0}


def _figures(out_dir: Path, x, y, pred, classes, acc):
    """``confusion.png`` (RTL predictions vs labels) and ``samples.png`` (16 images, RTL class)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    k = len(classes)
    cm = np.zeros((k, k), int)
    np.add.at(cm, (y, pred), 1)
    fig, ax = plt.subplots(figsize=(6.4, 5.6))
    ax.imshow(cm, cmap="Blues")
    for i in range(k):
        for j in range(k):
            if cm[i, j]:
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if cm[i, j] > cm.max() / 2 else "black")
    ax.set_xticks(range(k), classes, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(k), classes, fontsize=7)
    ax.set_xlabel("RTL prediction")
    ax.set_ylabel("label")
    ax.set_title(f"RTL on {len(y)} Fashion-MNIST test images: {acc * 100:.1f} %", fontsize=9)
    fig.tight_layout()
    _save(fig, out_dir / "confusion.png")
    fig, axs = plt.subplots(2, 8, figsize=(10, 3))
    for i, ax in enumerate(axs.flat):
        ax.imshow(x[i, 0], cmap="gray_r")
        ok = pred[i] == y[i]
        ax.set_title(classes[pred[i]], fontsize=7, color="green" if ok else "red")
        ax.axis("off")
    fig.suptitle("RTL predictions (green: correct, red: wrong)", fontsize=9)
    fig.tight_layout()
    _save(fig, out_dir / "samples.png")


def _save(fig, path: Path):
    import matplotlib.pyplot as plt
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=90))
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
