#!/usr/bin/env python3
"""Checkpoints written by tensorpack's own code for the DoReFa-Net ImageNet scripts
(``examples/DoReFa-Net/resnet-dorefa.py`` (W,A,G = 1,4,32) and ``alexnet-dorefa.py``
(1,2,6)), at a reduced input size and width, with TensorFlow's reference logits.

    CUDA_VISIBLE_DEVICES= TF_USE_LEGACY_KERAS=1 /work/tfvenv/bin/python make_refs.py \
        --src /work/tp-src/examples/DoReFa-Net --arch resnet18 --out .

ImageNet is not available and the real networks are 47 MB (ResNet-18) and 240 MB
(AlexNet) of float32, so the scripts' models are built unmodified (imported as modules with
``tensorflow`` bound to ``tf.compat.v1``, as in ../tensorpack-svhn/train_svhn_dorefa.py) and
driven from outside only:

* **width multiplier 1/8** (``--width-div 8``): every ``Conv2D``/``FullyConnected`` the
  script calls gets ``filters // 8`` / ``units // 8`` except the classifier ``fct`` (1000
  units kept). For resnet-dorefa.py, whose ``resblock`` compares its ``channel`` argument
  with the input's channel count, the ``channel`` of each ``group`` call is divided instead
  (``LinearWrap.apply`` on the script's own ``group``) and only ``conv1`` (64) is divided at
  the layer, so every block takes the same branch as at full width.
* **input size**: resnet 64x64 (its ``inputs()`` says 224; the subclass below only changes
  that number); alexnet 96x96 (``ImageNetModel.image_shape``), which keeps a 2x2 map at
  ``pool4`` so the NCHW flatten order of ``fc0`` matters.
* resnet-dorefa.py's ``build_graph`` returns no cost and the Model has no ``optimizer``
  (the script only evaluates a pretrained model): the subclass returns the script's own
  ``xentropy-loss`` tensor and uses Adam(1e-3). alexnet-dorefa.py trains as it is (its
  Adam(2e-4)).
* training: ``--steps`` steps of tensorpack's ``SimpleTrainer`` (batch 16) on synthetic
  images (smooth random colour fields, uint8) labelled by a learnable 9-class task
  (:func:`task_labels`), so that the batchnorm moving averages are real statistics of those
  images and the decisions have margins (the reference accuracy on the task is recorded).
* dump: ``tensorpack.tfutils.varmanip.dump_session_params`` (TRAINABLE + MODEL variables,
  the names ``scope/W:0`` as ``scripts/dump-model-params.py`` writes them) at the end of
  training, after adding the batchnorm ``mean/EMA``/``variance/EMA`` variables to
  MODEL_VARIABLES (tensorpack's ``isinstance(v, tf.Variable)`` misses them under TF 2.x; see
  ../tensorpack-svhn/NOTES.md "Caveat").
* reference: the script's ``Model`` in ``PredictConfig`` + ``OfflinePredictor`` with
  ``SmartInit(npz)``: ``fct/output`` (logits) on 24 other synthetic images, saved with the
  images exactly as fed (NHWC uint8; alexnet BGR as its ImageNetModel expects).
"""
import argparse
import functools
import importlib.util
import json
import os
import tempfile
import sys

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # noqa: E402
import tensorflow  # noqa: E402  (the real TF2 module)
import tensorpack  # noqa: E402
from tensorpack import (Callback, DataFromList, BatchData, OfflinePredictor, PredictConfig,  # noqa: E402
                        SimpleTrainer, SmartInit, TrainConfig, launch_train_with_config, logger)
from tensorpack.models import registry  # noqa: E402
from tensorpack.models.linearwrap import LinearWrap  # noqa: E402
from tensorpack.tfutils.varmanip import dump_session_params  # noqa: E402

tf1 = tensorflow.compat.v1
SCRIPTS = {"resnet18": ("resnet-dorefa.py", "1,4,32", 64), "alexnet": ("alexnet-dorefa.py", "1,2,6", 96)}


def import_tf1_script(path, modname):
    path = os.path.abspath(path)
    sys.path.insert(0, os.path.dirname(path))
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


def images(n, size, seed):
    """uint8 [n, size, size, 3]: smooth random colour fields with strokes."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    out = np.empty((n, size, size, 3), np.uint8)
    for i in range(n):
        img = np.zeros((size, size, 3))
        for _ in range(4):
            fy, fx, ph = rng.uniform(0, 4), rng.uniform(0, 4), rng.uniform(0, 2 * np.pi)
            img += rng.normal(0, 1, 3) * np.cos(2 * np.pi * (fy * yy + fx * xx) + ph)[..., None]
        for _ in range(rng.integers(1, 4)):
            cy, cx, r, ang = rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8), rng.uniform(0.03, 0.12), rng.uniform(0, np.pi)
            d = np.abs((yy - cy) * np.cos(ang) - (xx - cx) * np.sin(ang))
            img += rng.normal(0, 2, 3) * ((d < r) & (np.hypot(yy - cy, xx - cx) < 0.35))[..., None]
        img = (img - img.min()) / (img.max() - img.min() + 1e-12)
        a, b = sorted(rng.uniform(0, 255, 2))
        out[i] = np.clip(np.rint(a + (b - a + 40) * img), 0, 255).astype(np.uint8)
    return out


def task_labels(x):
    """A learnable 9-class task on the synthetic images: dominant colour channel x brightness
    tercile (classes 0..8 of the 1000 outputs), so the checkpoint makes confident decisions."""
    m = x.reshape(len(x), -1, 3).astype(np.float64).mean(1)
    return (m.argmax(1) * 3 + np.digitize(m.mean(1), [85, 170])).astype(np.int32)


def scale_layers(mod, div, keep, only=None):
    """Divide the channels/units argument of the script's Conv2D/FullyConnected by ``div``
    (layers named in ``keep`` untouched; with ``only``, just those layers)."""
    for lname in ("Conv2D", "FullyConnected"):
        orig = registry._LAYER_REGISTRY[lname]

        def make(orig):
            @functools.wraps(orig)
            def wrapped(*args, **kw):
                name = args[0]
                if name not in keep and (only is None or name in only):
                    args = list(args)
                    assert args[2] % div == 0, (name, args[2])
                    args[2] = args[2] // div
                return orig(*args, **kw)
            return wrapped
        w = make(orig)
        registry._LAYER_REGISTRY[lname] = w
        setattr(mod, lname, w)


class DumpParams(Callback):
    def __init__(self, path):
        self.path = path

    def _setup_graph(self):            # before the graph is finalized
        have = set(tf1.get_collection(tf1.GraphKeys.MODEL_VARIABLES))
        trainable = set(tf1.trainable_variables())
        for v in tf1.global_variables():
            if v not in trainable and v not in have and v.op.name.endswith(("/mean/EMA", "/variance/EMA")):
                tf1.add_to_collection(tf1.GraphKeys.MODEL_VARIABLES, v)

    def _after_train(self):
        with self.trainer.sess.as_default():
            dump_session_params(self.path)


def build(arch, src, div, size):
    script, bits, _ = SCRIPTS[arch]
    mod = import_tf1_script(os.path.join(src, script), arch.replace("-", "_") + "_dorefa")
    mod.BITW, mod.BITA, mod.BITG = map(int, bits.split(","))
    if arch == "resnet18":
        scale_layers(mod, div, keep=(), only=("conv1",))
        orig_apply = LinearWrap.apply

        def apply(self, func, *args, **kw):
            if getattr(func, "__name__", "") == "group":
                args = (args[0], args[1] // div) + tuple(args[2:])
            return orig_apply(self, func, *args, **kw)
        LinearWrap.apply = apply
        tf = tf1

        class Model(mod.Model):
            def inputs(self):
                return [tf.TensorSpec([None, size, size, 3], tf.float32, "input"),
                        tf.TensorSpec([None], tf.int32, "label")]

            def build_graph(self, image, label):
                super().build_graph(image, label)
                return tf.get_default_graph().get_tensor_by_name("xentropy-loss:0")

            def optimizer(self):
                return tf.train.AdamOptimizer(1e-3)
        return Model, tensorflow.float32
    scale_layers(mod, div, keep=("fct",))
    mod.Model.image_shape = size
    mod.BATCH_SIZE = 16
    return mod.Model, tensorflow.uint8


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--src", default="/work/tp-src/examples/DoReFa-Net")
    p.add_argument("--arch", choices=sorted(SCRIPTS), required=True)
    p.add_argument("--width-div", type=int, default=8)
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--out", default=".")
    a = p.parse_args()
    script, bits, size = SCRIPTS[a.arch]
    Model, dtype = build(a.arch, a.src, a.width_div, size)
    out = os.path.abspath(a.out)
    npz = os.path.join(out, f"{a.arch}-dorefa-{bits.replace(',', '-')}-w{a.width_div}.npz")
    logdir = tempfile.mkdtemp(prefix=f"tp-train-{a.arch}-")        # tensorpack's log + checkpoints
    logger.set_logger_dir(logdir, action="d")

    train = images(16 * 32, size, seed=1)
    labels = task_labels(train)
    df = BatchData(DataFromList([[im.astype(np.float32) if dtype == tensorflow.float32 else im, lab]
                                 for im, lab in zip(train, labels)], shuffle=True), 16)
    launch_train_with_config(TrainConfig(model=Model(), dataflow=df, callbacks=[DumpParams(npz)],
                                         steps_per_epoch=a.steps, max_epoch=1), SimpleTrainer())

    tf1.reset_default_graph()
    pred = OfflinePredictor(PredictConfig(model=Model(), session_init=SmartInit(npz),
                                          input_names=["input"], output_names=["fct/output"]))
    x = images(24, size, seed=3)
    logits = pred(x if dtype == tensorflow.uint8 else x.astype(np.float32))[0].astype(np.float32)
    np.save(os.path.join(out, f"{a.arch}-inputs.npy"), x)
    np.save(os.path.join(out, f"{a.arch}-logits.npy"), logits)
    info = {"script": script, "dorefa": bits, "input_size": size, "width_div": a.width_div, "steps": a.steps,
            "tensorflow": tensorflow.__version__, "tensorpack": tensorpack.__version__,
            "npz": os.path.basename(npz), "logit_span": float(logits.max() - logits.min()),
            "ref_accuracy_on_task": float((logits.argmax(1) == task_labels(x)).mean())}
    with open(os.path.join(out, f"{a.arch}-info.json"), "w") as f:
        json.dump(info, f, indent=1)
    print(json.dumps(info))


if __name__ == "__main__":
    main()
