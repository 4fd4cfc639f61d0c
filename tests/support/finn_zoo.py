"""FINN's reference networks (``brevitas_examples.bnn_pynq``) through ``bitplane import qonnx``.

Shared by ``tests/accel/test_finn_zoo.py`` and the table in ``docs/finn-zoo.md``::

    .venv/bin/python -m tests.support.finn_zoo [--models tfc_1w2a,...] [--frames N] [--rtl-frames N]

Each model is built with ``model_with_cfg(name, pretrained=False)`` (no network access: the
weights are the zoo's own uniform initialisation), its batch-norm and TensorNorm statistics
are calibrated on real images (one forward pass in training mode, dropout off), and it is
exported by Brevitas 0.13.4's ``export_qonnx`` with both exporters (TorchScript,
``dynamo=False``, and the default). The reference is qonnx's own ``execute_onnx`` on the
exported file, fed ``image / 255`` as float32.

Images: the FC nets (MNIST-shaped) calibrate on the 256 shipped MNIST digits and are compared
on the first 500 shipped Fashion-MNIST test images. CIFAR-10 is not available offline, so
the CNVs take the Fashion-MNIST images padded to 32x32 (2 pixels of 0 around) and replicated
to 3 channels: real pictures, not CIFAR.
"""
from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
# every bnn_pynq configuration in Brevitas 0.13.4's cfg/ folder except the ResNet
ZOO = ("tfc_1w1a", "tfc_1w2a", "tfc_2w2a", "sfc_1w1a", "sfc_1w2a", "sfc_2w2a", "lfc_1w1a", "lfc_1w2a",
       "cnv_1w1a", "cnv_1w2a", "cnv_2w2a")
EXPORTERS = ("torchscript", "dynamo")
# FINN BNN-PYNQ published frame rates (PYNQ-Z1, 100 MHz), the anchors of bench/report.py
FINN_FPS = {"cnv_1w1a": 9150, "cnv_2w2a": 2580, "lfc_1w1a": 356633}
# the compile target (frames/s at 100 MHz) used here for RTL simulation
TARGET_FPS = {"tfc": 10000, "sfc": 5000, "lfc": 1000, "cnv": 1000}


def images(name: str, which: str) -> np.ndarray:
    """uint8 ``[N, C, H, W]`` real images for model ``name``: 'calib' or 'test'."""
    f = "mnist-256.npz" if which == "calib" else "fashion-mnist-test-500.npz"
    with np.load(ROOT / "examples" / "data" / f, allow_pickle=False) as z:
        x = z["x"]
    if name.startswith("cnv"):
        if which == "calib":                  # the CNVs calibrate on Fashion-MNIST too (other half)
            with np.load(ROOT / "examples" / "data" / "fashion-mnist-test-500.npz", allow_pickle=False) as z:
                x = z["x"][250:]
        else:
            x = x[:250]
        x = np.repeat(np.pad(x, ((0, 0), (0, 0), (2, 2), (2, 2))), 3, axis=1)
    return np.ascontiguousarray(x)


def build(name: str, seed: int = 0):
    """The zoo model in eval mode, batch-norm/TensorNorm statistics calibrated on real images."""
    import torch
    from brevitas_examples.bnn_pynq.models import model_with_cfg
    torch.manual_seed(seed)
    model, _ = model_with_cfg(name, pretrained=False)
    for m in model.modules():
        if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            m.momentum = None                  # cumulative average: one batch = its statistics
        elif type(m).__name__ == "TensorNorm":
            m.momentum = 1.0
    model.train()
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.eval()
    x = images(name, "calib")
    with torch.no_grad():
        model(torch.from_numpy(x.astype(np.float32) / 255))
    model.eval()
    return model


def export(model, name: str, exporter: str, path: Path) -> Path:
    import torch
    from brevitas.export import export_qonnx
    shape = (1, 3, 32, 32) if name.startswith("cnv") else (1, 1, 28, 28)
    kw = {"dynamo": False} if exporter == "torchscript" else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_qonnx(model, torch.zeros(shape), export_path=str(path), **kw)
    return path


def qonnx_logits(path: Path, x: np.ndarray) -> np.ndarray:
    """qonnx ``execute_onnx`` on each frame ``x[i] / 255`` (the export's batch is 1), after
    qonnx's own ``cleanup_model`` (shape inference, which ``execute_onnx`` needs)."""
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx
    from qonnx.util.cleanup import cleanup_model
    m = cleanup_model(ModelWrapper(str(path)))
    iname, oname = m.graph.input[0].name, m.graph.output[0].name
    outs = []
    for xi in x:
        r = execute_onnx(m, {iname: (xi[None].astype(np.float32) / np.float32(255))})
        outs.append(np.asarray(r[oname], dtype=np.float64).reshape(-1))
    return np.stack(outs)


def compare(yaml_path: Path, onnx_path: Path, x: np.ndarray) -> dict:
    """Golden float and int paths against qonnx on ``x``."""
    from bitplane.gen.golden import Golden
    from bitplane.gen.spec import load_network
    g = Golden(load_network(yaml_path))
    ref = qonnx_logits(onnx_path, x)
    fl = g.run_float(x).reshape(len(x), -1)
    ii = g.dequantize(g.run_int(x)).reshape(len(x), -1)
    scale = np.abs(ref).max(axis=1, keepdims=True)
    return {"frames": len(x), "rel_err": float((np.abs(fl - ref) / np.maximum(scale, 1e-30)).max()),
            "float_agree": float((fl.argmax(1) == ref.argmax(1)).mean()),
            "int_agree": float((ii.argmax(1) == ref.argmax(1)).mean()),
            "int_float_agree": float((ii.argmax(1) == fl.argmax(1)).mean())}


def rtl(yaml_path: Path, out: Path, x: np.ndarray, target_fps: int) -> dict:
    """Compile at ``target_fps`` (100 MHz), simulate ``x`` under backpressure and back to back."""
    from bitplane.gen.spec import load_network
    from tests.support.networks import rtl_check
    r = rtl_check(load_network(yaml_path), x, out, target_fps)
    return {"exact": r["exact"], "planned": int(r["m"]["cycles_per_frame"]), "simulated": r["st"]["cycles_per_frame"]}


def same_spec(a: Path, b: Path) -> bool:
    """Two imports describe the same network: identical layer lists, input and arrays."""
    import yaml
    ya, yb = (yaml.safe_load(p.read_text()) for p in (a, b))
    if ya["layers"] != yb["layers"] or ya["input"] != yb["input"]:
        return False
    with np.load(a.with_suffix(".npz")) as za, np.load(b.with_suffix(".npz")) as zb:
        return sorted(za.files) == sorted(zb.files) and all(np.array_equal(za[k], zb[k]) for k in za.files)


def plan_at_finn_rate(yaml_path: Path, name: str) -> str:
    """Planned cycles/frame at FINN's published frame rate (100 MHz), or why there is none."""
    from bitplane.gen.lower import lower
    from bitplane.gen.plan import PlanError, plan
    from bitplane.gen.spec import load_network
    fps = FINN_FPS.get(name)
    if fps is None:
        return ""
    try:
        p = plan(lower(load_network(yaml_path)), target_fps=fps)
    except PlanError as e:
        return f"not reachable: {str(e).splitlines()[0][:120]}"
    return f"{p['cycles_per_frame']:,}"


def main(argv=None) -> int:
    from bitplane.cli.main import main as cli
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default=",".join(ZOO))
    ap.add_argument("--frames", type=int, default=100, help="images compared with qonnx per model")
    ap.add_argument("--rtl-frames", type=int, default=3, help="frames through the RTL (3 measure the period)")
    ap.add_argument("--work", default=str(ROOT / "build" / "finn-zoo"))
    ap.add_argument("--rtl", default=",".join(ZOO), help="models compiled and simulated (TorchScript export)")
    a = ap.parse_args(argv)
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in a.models.split(","):
        model = build(name)
        x = images(name, "test")[:a.frames]
        for exp in EXPORTERS:
            t0 = time.time()
            onnx_path = export(model, name, exp, work / f"{name}-{exp}.onnx")
            yaml_path = work / f"{name}-{exp}.yaml"
            code = cli(["import", "qonnx", str(onnx_path), "-o", str(yaml_path)])
            row = {"model": name, "exporter": exp, "import": code == 0}
            if code == 0:
                row.update(compare(yaml_path, onnx_path, x))
                row["finn_plan"] = plan_at_finn_rate(yaml_path, name)
                ts = work / f"{name}-torchscript.yaml"
                if exp != "torchscript" and ts.exists():
                    row["same_spec"] = same_spec(ts, yaml_path)
                if exp == "torchscript" and name in a.rtl.split(","):
                    fam = name.split("_")[0]
                    try:
                        row.update(rtl(yaml_path, work / f"{name}-hw", x[:a.rtl_frames], TARGET_FPS[fam]))
                    except Exception as e:  # noqa: BLE001 - reported in the table
                        row["rtl_error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:160]}"
            row["seconds"] = round(time.time() - t0, 1)
            print(row, flush=True)
            with open(work / "rows.jsonl", "a") as f:
                f.write(json.dumps(row) + "\n")
            rows.append(row)
    print(table(rows))
    return 0


def _num(v) -> str:
    return "" if v is None else f"{v:,.0f}"


def table(rows) -> str:
    L = ["| model | exporter | import | golden float vs qonnx (max rel. error) | decisions float / int = qonnx "
         "| RTL == golden int | target fps | planned cycles/frame | simulated cycles/frame | FINN fps "
         "| planned cycles/frame at FINN fps |",
         "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        fam = r["model"].split("_")[0]
        rt = (("yes" if r["exact"] else "**no**") if "exact" in r else
              "same spec as TorchScript" if r.get("same_spec") else r.get("rtl_error", "not run"))
        L.append(f"| {r['model']} | {r['exporter']} | {'yes' if r['import'] else '**no**'} | "
                 f"{r.get('rel_err', float('nan')):.1e} | "
                 f"{100 * r.get('float_agree', 0):.1f} % / {100 * r.get('int_agree', 0):.1f} % "
                 f"({r.get('frames', 0)}) | {rt} | {TARGET_FPS[fam] if 'planned' in r else ''} | "
                 f"{r.get('planned', '')} | {_num(r.get('simulated'))} | {FINN_FPS.get(r['model'], '')} | {r.get('finn_plan', '')} |")
    return "\n".join(L)


if __name__ == "__main__":
    raise SystemExit(main())
