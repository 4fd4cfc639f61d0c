#!/usr/bin/env python3
"""Independent NumPy re-implementation of the inference forward pass described
in NOTES.md, checked against TensorFlow's reference logits.

It uses only numpy and the files in this folder (no TensorFlow, no tensorpack):
    svhn-dorefa-1-2-4.npz, inputs.npy, logits.npy, labels.npy,
    intermediates.npz (optional: per-layer comparison)

    python verify_numpy.py [folder]

If this passes, NOTES.md's description of the network (scaling, layer order,
padding, BN formula, binarization, activation quantization and rounding) is
sufficient to reproduce TF's logits.
"""
import os
import sys

import numpy as np

D = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
P = {k.replace(":0", ""): v for k, v in np.load(os.path.join(D, "svhn-dorefa-1-2-4.npz")).items()}
BN_EPS = 1e-4


def conv(x, w, padding):
    """x NHWC float, w HWIO, stride 1."""
    kh, kw = w.shape[:2]
    if padding == "SAME":                       # odd kernels only here: symmetric pad
        x = np.pad(x, ((0, 0), (kh // 2, kh // 2), (kw // 2, kw // 2), (0, 0)))
    n, h, wd, c = x.shape
    oh, ow = h - kh + 1, wd - kw + 1
    cols = np.empty((n, oh, ow, kh, kw, c), x.dtype)
    for i in range(kh):
        for j in range(kw):
            cols[:, :, :, i, j, :] = x[:, i:i + oh, j:j + ow, :]
    return np.tensordot(cols, w, axes=([3, 4, 5], [0, 1, 2]))


def maxpool2(x):
    """2x2 stride 2 (padding SAME; all sizes here are even so no padding)."""
    n, h, w, c = x.shape
    assert h % 2 == 0 and w % 2 == 0
    return x.reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


def bn(x, name):
    g, b = P[name + "/gamma"], P[name + "/beta"]
    m, v = P[name + "/mean/EMA"], P[name + "/variance/EMA"]
    return (x - m) / np.sqrt(v + BN_EPS) * g + b


def binarize(w):
    """fw for BITW=1: sign(w) * mean(|w|), with sign(0) := +1."""
    e = np.abs(w).mean()
    return np.where(w == 0, 1.0, np.sign(w)).astype(np.float32) * np.float32(e)


def nonlin(x):
    return np.clip(x, 0.0, 1.0)


def act(x):
    """fa for BITA=2 after clip: round(x*3)/3, np.round = half-to-even like tf.round."""
    return np.round(nonlin(x) * 3.0) / 3.0


def forward(img_u8, taps=None):
    t = {} if taps is None else taps
    x = img_u8.astype(np.float32) / 256.0
    t["conv0/in"] = x
    x = conv(x, P["conv0/W"], "VALID") + P["conv0/b"]            # float conv0 with bias
    t["conv0/out"] = x
    x = maxpool2(x)
    t["pool0/out"] = x
    x = act(x)
    t["conv1/in"] = x
    x = conv(x, binarize(P["conv1/W"]), "SAME")
    t["conv1/out"] = x
    x = bn(x, "bn1")
    t["bn1/out"] = x
    x = act(x)
    t["conv2/in"] = x
    x = conv(x, binarize(P["conv2/W"]), "SAME")
    t["conv2/out"] = x
    x = bn(x, "bn2")
    t["bn2/out"] = x
    x = maxpool2(x)
    t["pool1/out"] = x
    x = act(x)
    for i, pad in ((3, "VALID"), (4, "SAME"), (5, "VALID")):
        t["conv%d/in" % i] = x
        x = conv(x, binarize(P["conv%d/W" % i]), pad)
        t["conv%d/out" % i] = x
        x = bn(x, "bn%d" % i)
        t["bn%d/out" % i] = x
        x = act(x)
    # Dropout: identity at inference
    t["conv6/in"] = x
    x = conv(x, binarize(P["conv6/W"]), "VALID")                 # 5x5 -> 1x1
    t["conv6/out"] = x
    x = bn(x, "bn6")
    t["bn6/out"] = x
    x = nonlin(x)                                                # clip only, NOT quantized
    x = x.reshape(x.shape[0], -1)                                # NHWC flatten (1x1 here)
    t["fc1/in"] = x
    x = x @ P["fc1/W"] + P["fc1/b"]                              # float fc1, W [in, out]
    t["fc1/out"] = x
    return x


def main():
    inputs = np.load(os.path.join(D, "inputs.npy"))
    ref = np.load(os.path.join(D, "logits.npy"))
    labels = np.load(os.path.join(D, "labels.npy"))
    taps = {}
    out = forward(inputs, taps)
    err = np.abs(out - ref).max()
    agree = (out.argmax(1) == ref.argmax(1)).mean()
    print("inputs", inputs.shape, inputs.dtype, "logits max |numpy - TF| = %.3g" % err,
          "argmax agreement %.3f" % agree,
          "numpy acc %.3f, TF acc %.3f" % ((out.argmax(1) == labels).mean(),
                                            (ref.argmax(1) == labels).mean()))
    ip = os.path.join(D, "intermediates.npz")
    if os.path.exists(ip):
        inter = np.load(ip)
        n = inter["fc1/out"].shape[0]
        for k in sorted(inter.files):
            if k.endswith("/E"):
                mine = np.abs(P[k.replace("/E", "/W")]).mean()
                print("  %-10s TF %.8g numpy %.8g" % (k, inter[k], mine))
                continue
            a, b = inter[k], taps[k][:n]
            print("  %-10s %-18s max|diff| %.3g" % (k, a.shape, np.abs(a - b.reshape(a.shape)).max()))
    ok = err < 1e-3 and agree == 1.0
    print("OK" if ok else "MISMATCH")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
