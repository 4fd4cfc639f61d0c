#!/usr/bin/env python3
"""Run an unmodified TF1-API tensorpack script (here: tensorpack's own
scripts/dump-model-params.py) under TF 2.x, without editing it.

    python run_tf1_script.py SCRIPT.py [script args...]

The script's ``import tensorflow as tf`` is made to bind ``tf.compat.v1``
(``sys.modules['tensorflow']`` is pointed at it while the script runs), and
eager execution is disabled, because dump-model-params.py calls
``tf.reset_default_graph()`` / ``tf.train.import_meta_graph()`` on the default
graph, which TF1 did in graph mode.  tensorpack itself is imported first,
against the real TF2 module, as usual.

One more external fix, for the BatchNorm moving statistics
-----------------------------------------------------------
tensorpack's BatchNorm (tensorpack/models/batch_norm.py, "Add EMA variables to
the correct collection": ``if isinstance(v, tf.Variable): tf.add_to_collection(
MODEL_VARIABLES, v)`` with ``tf = tf.compat.v1``) means to put each BN layer's
non-trainable variables ``<bn>/mean/EMA`` and ``<bn>/variance/EMA`` into
MODEL_VARIABLES.  Under TF 2.21 those variables are ResourceVariables, which
are NOT instances of ``tf.compat.v1.Variable`` (VariableV1), so the collection
stays empty, the training meta-graph has no MODEL_VARIABLES, and
dump-model-params.py --meta would silently drop the BN moving mean/variance
(they ARE in the checkpoint: ModelSaver saves all global variables).  To get
what tensorpack intends (TRAINABLE + MODEL variables), ``--bn-ema-fix`` wraps
``tf.compat.v1.train.import_meta_graph`` so that right after the meta-graph is
imported, the non-trainable global variables named ``*/mean/EMA`` and
``*/variance/EMA`` are added to MODEL_VARIABLES.  Nothing else changes.

    python run_tf1_script.py [--bn-ema-fix] SCRIPT.py [script args...]
"""
import os
import runpy
import sys

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import tensorflow  # noqa: E402
import tensorpack  # noqa: E402,F401

tensorflow.compat.v1.disable_eager_execution()

args = sys.argv[1:]
if args and args[0] == "--bn-ema-fix":
    args = args[1:]
    v1 = tensorflow.compat.v1
    _orig_import_meta_graph = v1.train.import_meta_graph

    def _import_meta_graph_with_bn_ema(*a, **k):
        ret = _orig_import_meta_graph(*a, **k)
        have = set(v1.get_collection(v1.GraphKeys.MODEL_VARIABLES))
        trainable = set(v1.trainable_variables())
        for v in v1.global_variables():
            if v not in trainable and v not in have and (
                    v.op.name.endswith("/mean/EMA") or v.op.name.endswith("/variance/EMA")):
                v1.add_to_collection(v1.GraphKeys.MODEL_VARIABLES, v)
                print("[bn-ema-fix] added to MODEL_VARIABLES:", v.name)
        return ret

    v1.train.import_meta_graph = _import_meta_graph_with_bn_ema

script = args[0]
sys.argv = [script] + args[1:]
real_tf = sys.modules["tensorflow"]
sys.modules["tensorflow"] = tensorflow.compat.v1
try:
    runpy.run_path(script, run_name="__main__")
finally:
    sys.modules["tensorflow"] = real_tf
