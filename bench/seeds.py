"""The seeds' networks at full size: import, plan and on-chip fit (issue #16's seed table).

    python bench/seeds.py [--arch resnet18,alexnet,...] [--out DIR] [--json FILE]

CI has no full-size checkpoint of these ImageNet networks (the tests use checkpoints written
by tensorpack at width 1/8 and a reduced input size, ``tests/data/tensorpack-imagenet``).
For the plan and the fit only the shapes matter, so this script writes, per architecture, a
checkpoint with exactly the variable names and shapes the importer asks for at the script's
own width and input size (224x224), filled with random values (no biases: they change no
shape), imports it with ``bitplane import tensorpack`` as a user would, and plans it for a
ladder of frame rates at 100 MHz. Reported per network and target: planned cycles/frame and
frames/s, and the fit (LUT6 estimate incl. LUT RAM, block RAM, UltraRAM) on xczu7ev (ZCU104)
and xcu250 (U250), as ``bitplane plan`` prints them.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bitplane.cli.main import main as cli  # noqa: E402
from bitplane.core.errors import NotSupportedError  # noqa: E402
from bitplane.core.environment import machine  # noqa: E402
from bitplane.gen.devices import fit  # noqa: E402
from bitplane.gen.importers.checkpoint import DEFAULT_ARCH_BITS, _fill, _Tensors, arch_spec  # noqa: E402
from bitplane.gen.lower import lower  # noqa: E402
from bitplane.gen.plan import PlanError, plan  # noqa: E402
from bitplane.gen.spec import load_network  # noqa: E402

ARCHS = ("resnet18", "alexnet", "lq-alexnet", "lq-vgg", "lq-resnet18")
TARGETS = (1, 3, 10, 30, 100, 300, 1000)
DEVICES = ("xczu7ev", "xcu250")


class _Random(_Tensors):
    """Answers every tensor the importer asks for with random values of the asked shape and
    records it under its checkpoint name; says no to optional biases."""

    def __init__(self, fmt: str, seed: int):
        super().__init__(Path("random"), fmt, {})
        self.rng = np.random.default_rng(seed)

    def has(self, L, param, op) -> bool:
        return False

    def get(self, i, L, param, op, shape, what, optional=False):
        k = self.key(L, param, op)
        if optional:
            a = self.rng.uniform(0.5, 1.5, shape) if param == "gamma" else self.rng.normal(0, 0.1, shape)
        elif param == "var":
            a = self.rng.uniform(0.5, 2.0, shape)
        elif param == "basis":
            a = np.sort(self.rng.uniform(0.2, 1.0, shape), axis=0)
        elif param in ("Wp", "Wn"):
            a = self.rng.uniform(0.5, 1.5, shape)
        else:
            a = self.rng.normal(0, 1.0, shape)
        self.t[k] = a.astype(np.float32)
        return self.t[k].astype(np.float64)


def write_checkpoint(arch: str, path: Path, seed: int = 0) -> int:
    """A tensorpack ``.npz`` of ``arch`` at the script's width and input size; returns its
    parameter count."""
    wb, ab = DEFAULT_ARCH_BITS[arch]
    spec = arch_spec(arch, wb, ab)
    tens = _Random("tensorpack", seed)
    _fill(spec, tens, "nhwc")
    np.savez(path, **{f"{k}:0": v for k, v in tens.t.items()})
    return int(sum(v.size for v in tens.t.values()))


def run(arch: str, work: Path) -> dict:
    t0 = time.time()
    ckpt = work / f"{arch}-checkpoint.npz"
    params = write_checkpoint(arch, ckpt)
    spec = work / f"{arch}.yaml"
    rc = cli(["import", "tensorpack", str(ckpt), "-o", str(spec), "--arch", arch])
    row = {"arch": arch, "params": params, "import_rc": rc, "targets": []}
    if rc != 0:
        return row
    net = load_network(spec)
    try:
        low = lower(net)
    except NotSupportedError as e:
        row["lower_error"] = str(e)
        return row
    row["input"] = list(net.input_shape)
    for fps in TARGETS:
        try:
            p = plan(low, target_fps=fps)
        except PlanError as e:
            row["targets"].append({"target_fps": fps, "error": str(e)})
            break
        fits = {r["device"]: r for r in fit(low, p, DEVICES)}
        row["targets"].append({"target_fps": fps, "cycles_per_frame": p["cycles_per_frame"],
                               "fps": 100e6 / p["cycles_per_frame"], "luts": p["luts"],
                               "bottleneck": p["bottleneck"],
                               "fit": {d: {k: fits[d][k] for k in ("luts", "bram", "uram", "fits")}
                                       for d in DEVICES}})
    row["seconds"] = round(time.time() - t0, 1)
    return row


def markdown(rows: list[dict]) -> str:
    L = [f"`python bench/seeds.py` ({time.strftime('%Y-%m-%d %H:%M')}, {machine()}): checkpoints with the "
         "scripts' variable names and full-size shapes, random values; import as a user would; plan at 100 MHz.",
         "", "| network | parameters | target fps | planned cycles/frame (fps) | bottleneck | LUT6 est. | "
         + " | ".join(f"{d}: LUT6 / RAMB36 / URAM" for d in DEVICES) + " |",
         "|---|---|---|---|---|---|" + "---|" * len(DEVICES)]
    for r in rows:
        if r["import_rc"]:
            L.append(f"| {r['arch']} | {r['params']:,} | import failed (exit {r['import_rc']}) | | | |"
                     + " |" * len(DEVICES))
            continue
        if "lower_error" in r:
            L.append(f"| {r['arch']} | {r['params']:,} | integer path refused: {r['lower_error']} | | | |"
                     + " |" * len(DEVICES))
        for t in r["targets"]:
            if "error" in t:
                L.append(f"| {r['arch']} | {r['params']:,} | {t['target_fps']} | refused: {t['error']} | | |"
                         + " |" * len(DEVICES))
                continue
            cells = [f"{'**fits**' if f['fits'] else 'no'}: {f['luts']:,} / {f['bram']:g} / {f['uram']:g}"
                     for f in (t["fit"][d] for d in DEVICES)]
            L.append(f"| {r['arch']} | {r['params']:,} | {t['target_fps']} | {t['cycles_per_frame']:,} "
                     f"({t['fps']:,.1f}) | {t['bottleneck']} | {t['luts']:,} | " + " | ".join(cells) + " |")
    return "\n".join(L)


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", default=",".join(ARCHS))
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for arch in args.arch.split(","):
            print(f"{arch} ...", file=sys.stderr, flush=True)
            rows.append(run(arch, Path(d)))
    print(markdown(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    return rows


if __name__ == "__main__":
    main()
