#!/usr/bin/env python3
"""Train tensorpack's UNMODIFIED examples/DoReFa-Net/svhn-digit-dorefa.py for a
few epochs, CPU only, with (W,A,G) = (1,2,4).

The script file itself is not edited.  It is driven from outside only:

 1. It is written against the TF1 API (``tf.train.exponential_decay``,
    ``tf.train.AdamOptimizer``, and in dorefa.py ``tf.random_uniform`` and
    ``keep_dims=``), which TF 2.x no longer has at top level.  tensorpack's
    README says examples not yet migrated need TF1 compatibility mode; the
    migrated examples do ``from tensorpack import tfv1 as tf``
    (== tf.compat.v1).  We get the same effect without editing the file:
    while (and only while) the script and its ``dorefa.py`` are being imported,
    ``sys.modules['tensorflow']`` points at ``tf.compat.v1``, so their
    ``import tensorflow as tf`` binds the v1 API.  tensorpack itself is imported
    before that, against the real TF2 module, exactly as usual.
 2. The script is imported as a module (not run as __main__), and we do what
    its ``__main__`` block does -- set ``args.dorefa`` and the module globals
    BITW/BITA/BITG from "1,2,4", call its own ``get_config()``, and call
    ``launch_train_with_config(config, SimpleTrainer())`` -- with one change:
    ``config.max_epoch`` (200 in the script, i.e. hours on CPU) is lowered
    to --epochs.

Everything else (model, augmentors, MultiProcessRunnerZMQ(…, 5) prefetch,
QueueInput, ModelSaver, InferenceRunner on the test split, Adam, lr schedule,
logger dir ``train_log/svhn-dorefa-1,2,4`` relative to the cwd) is the
script's own.

Usage (cwd = the folder holding the copied script and dorefa.py):
    CUDA_VISIBLE_DEVICES= TF_USE_LEGACY_KERAS=1 TENSORPACK_DATASET=/work/tp-data \
        python train_svhn_dorefa.py --script ./svhn-digit-dorefa.py --epochs 12
"""
import argparse
import importlib.util
import os
import sys

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import tensorflow  # noqa: E402  (the real TF2 module)
import tensorpack  # noqa: E402,F401


def import_tf1_script(path, modname="svhn_digit_dorefa"):
    """Import an unmodified TF1-style tensorpack example with `tensorflow`
    resolving to tf.compat.v1 during its import only."""
    path = os.path.abspath(path)
    sys.path.insert(0, os.path.dirname(path))          # for `from dorefa import ...`
    real_tf = sys.modules["tensorflow"]
    sys.modules["tensorflow"] = tensorflow.compat.v1
    try:
        spec = importlib.util.spec_from_file_location(modname, path)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[modname] = mod
        spec.loader.exec_module(mod)
    finally:
        sys.modules["tensorflow"] = real_tf
    return mod


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--script", default="./svhn-digit-dorefa.py")
    p.add_argument("--dorefa", default="1,2,4")
    p.add_argument("--epochs", type=int, default=12)
    a = p.parse_args()

    mod = import_tf1_script(a.script)
    # --- what the script's __main__ block does ---
    mod.args = argparse.Namespace(dorefa=a.dorefa)
    mod.BITW, mod.BITA, mod.BITG = map(int, a.dorefa.split(","))
    config = mod.get_config()
    # --- the only change: fewer epochs than the script's max_epoch=200 ---
    config.max_epoch = a.epochs
    mod.launch_train_with_config(config, mod.SimpleTrainer())


if __name__ == "__main__":
    main()
