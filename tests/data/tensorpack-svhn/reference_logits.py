#!/usr/bin/env python3
"""Reference outputs from TensorFlow for the dumped DoReFa (1,2,4) SVHN model.

Builds the example script's OWN ``Model`` (tensorpack's unmodified
examples/DoReFa-Net/svhn-digit-dorefa.py, imported the same way as in
train_svhn_dorefa.py) in inference mode with tensorpack's ``PredictConfig`` +
``OfflinePredictor``, loads the npz with ``SmartInit``, and

  * runs it on the first 48 images of the test split and saves
      inputs.npy      uint8  [48, 40, 40, 3]  exactly the tensor fed to 'input'
      inputs_raw32.npy uint8 [48, 32, 32, 3]  the same images before Resize
      labels.npy      int64  [48]             digit labels 0..9
      logits.npy      float32 [48, 10]        tensor 'fc1/output' (pre-softmax)
  * measures TF's accuracy on the whole test split (1000 images here).
  * saves intermediates.npz: per-layer tensors from the same TF session for
    the first N_INTER=2 reference images, for debugging an importer layer by
    layer.  They are found robustly from the graph: for every convN/Conv2D op,
    its input 0 (the activation actually convolved: after the script's
    pool/clip/quantize) and input 1 (the effective weight, i.e. the binarized
    sign(W)*E for conv1..6); plus convN/output, bnN/output, pool0/1/output,
    fc1/MatMul input 0 (the clipped, un-quantized input of the last layer) and
    fc1/output.  Keys: "<layer>/in", "<layer>/out", "bnN/out", "poolN/out";
    "convN/E" holds the scalar E of the binarized weight (max |W_eff|; W_eff
    takes only the values +E and -E, checked).

Input pipeline = the script's test pipeline (get_config(), lines 140/151-153):
``dataset.SVHNDigit('test')`` -> ``AugmentImageComponent(imgaug.Resize((40, 40)))``
(cv2 bilinear, uint8 in -> uint8 out), fed as float32 to the 'input'
placeholder [None, 40, 40, 3]; the model divides by 256 itself.  Only
difference: shuffle=False, so the 48 images are the first 48 of test_32x32.mat.

Usage:
    CUDA_VISIBLE_DEVICES= TF_USE_LEGACY_KERAS=1 TENSORPACK_DATASET=/work/tp-data \
      python reference_logits.py --script /work/tp-run/svhn-digit-dorefa.py \
          --model svhn-dorefa-1-2-4.npz --out .
"""
import argparse
import json
import os
import sys

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # noqa: E402

from train_svhn_dorefa import import_tf1_script  # noqa: E402

from tensorpack import (OfflinePredictor, PredictConfig, SmartInit,  # noqa: E402
                        AugmentImageComponent, BatchData, imgaug)
from tensorpack.dataflow import dataset  # noqa: E402

N_REF = 48
N_INTER = 2


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--script", default="/work/tp-run/svhn-digit-dorefa.py")
    p.add_argument("--model", default="svhn-dorefa-1-2-4.npz")
    p.add_argument("--dorefa", default="1,2,4")
    p.add_argument("--out", default=".")
    a = p.parse_args()

    mod = import_tf1_script(a.script)
    mod.BITW, mod.BITA, mod.BITG = map(int, a.dorefa.split(","))

    pred = OfflinePredictor(PredictConfig(
        model=mod.Model(),
        session_init=SmartInit(a.model),
        input_names=["input"],
        output_names=["fc1/output", "output"]))   # logits of the last FC, softmax

    # the script's test pipeline (without shuffling)
    raw = dataset.SVHNDigit("test", shuffle=False)
    df = AugmentImageComponent(raw, [imgaug.Resize((40, 40))])
    df = BatchData(df, 128, remainder=True)
    df.reset_state()

    imgs, labels, logits = [], [], []
    for img, lab in df:
        assert img.dtype == np.uint8 and img.shape[1:] == (40, 40, 3), (img.dtype, img.shape)
        lg, prob = pred(img.astype(np.float32))
        imgs.append(img)
        labels.append(lab)
        logits.append(lg)
    imgs, labels, logits = np.concatenate(imgs), np.concatenate(labels), np.concatenate(logits)
    acc = float((logits.argmax(1) == labels).mean())

    # re-run the 48 reference images as one batch, exactly as saved
    x = np.ascontiguousarray(imgs[:N_REF])
    ref_logits = pred(x.astype(np.float32))[0].astype(np.float32)
    assert np.allclose(ref_logits, logits[:N_REF], atol=1e-4)

    # per-layer tensors of the same session for the first N_INTER images
    g = pred.sess.graph
    names = {}
    for i in range(7):
        op = g.get_operation_by_name("conv%d/Conv2D" % i)
        names["conv%d/in" % i] = op.inputs[0]
        names["conv%d/W_eff" % i] = op.inputs[1]
        names["conv%d/out" % i] = g.get_tensor_by_name("conv%d/output:0" % i)
        if i > 0:
            names["bn%d/out" % i] = g.get_tensor_by_name("bn%d/output:0" % i)
    for i in range(2):
        names["pool%d/out" % i] = g.get_tensor_by_name("pool%d/output:0" % i)
    names["fc1/in"] = g.get_operation_by_name("fc1/MatMul").inputs[0]
    names["fc1/out"] = g.get_tensor_by_name("fc1/output:0")
    keys = sorted(names)
    vals = pred.sess.run([names[k] for k in keys],
                         feed_dict={g.get_tensor_by_name("input:0"): x[:N_INTER].astype(np.float32)})
    inter = {}
    for k, v in zip(keys, vals):
        if k.endswith("/W_eff"):
            if k.startswith("conv0"):
                continue                     # conv0 is not quantized: W_eff == conv0/W
            E = np.abs(v).max()
            assert np.all(np.abs(v) == E), k  # binarized: only +E / -E
            inter[k.replace("W_eff", "E")] = np.float32(E)
        else:
            inter[k] = v.astype(np.float32)
    assert np.allclose(inter["fc1/out"], ref_logits[:N_INTER], atol=1e-4)

    os.makedirs(a.out, exist_ok=True)
    np.savez_compressed(os.path.join(a.out, "intermediates.npz"), **inter)
    np.save(os.path.join(a.out, "inputs.npy"), x)
    np.save(os.path.join(a.out, "inputs_raw32.npy"), np.ascontiguousarray(raw.X[:N_REF]))
    np.save(os.path.join(a.out, "labels.npy"), labels[:N_REF].astype(np.int64))
    np.save(os.path.join(a.out, "logits.npy"), ref_logits)
    res = {"test_images": int(len(labels)),
           "test_accuracy": acc,
           "test_error": 1.0 - acc,
           "ref_images": N_REF,
           "ref_accuracy": float((ref_logits.argmax(1) == labels[:N_REF]).mean())}
    with open(os.path.join(a.out, "tf_accuracy.json"), "w") as f:
        json.dump(res, f, indent=1)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
