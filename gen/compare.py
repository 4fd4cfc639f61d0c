"""Compare the golden model's float and int paths and explain every disagreement.

For each matmul stage, with the int path's own inputs (teacher forcing):

1. **Replay**: the float-path ops after the matmul (bias, batchnorm, pool, activation),
   applied to the *exact* integer accumulator ``y_i = scale*acc + bias``, must reproduce
   the int path's output exactly. This proves thresholds and pool placement.
2. **Rounding**: the float path's pre-activation ``y_f`` (float conv of fake-quant values)
   differs from ``y_i`` by at most a bound: float rounding (``1e-9 * sum|w||a|``) when the
   plane coefficients are exact, plus the fixed-point coefficient error
   ``sum |w_f - s_w W_int| |a| + |s_w W_int| |a_f - s_a A_int|`` otherwise.

Given 1 and 2, every code where the float path disagrees with the int path is a
*threshold tie* (exact coefficients: ``y_f`` and ``y_i`` straddle a step within float
rounding), *fixed-point rounding* (TTQ/LQ coefficients), or — by design, not a rounding
artefact — the int8 mapping of a layer the spec leaves unquantized (float in the float
path); each is counted as such.

3. **Argmax**: a frame whose argmax differs either carries an (explained) code mismatch
   upstream, or its two classes' float logits are closer than the last layer's rounding
   bound (a *logit tie*). Anything else counts as unexplained.
"""
from __future__ import annotations

import numpy as np

from bitplane.core.errors import NotSupportedError
from bitplane.gen import nn
from .golden import Golden
from .lower import CodePoolStage, MatmulStage

REL_TIE = 1e-9


def _matmul(stage: MatmulStage, a, w, pad):
    if stage.kind == "conv":
        return nn.conv2d(a, w, stage.stride, stage.pads, stage.groups, pad)
    return nn.dense(a, w)


def compare_paths(g: Golden, x) -> dict:
    """Run both paths on input codes ``x``; return per-stage and end-to-end agreement.
    Sequential networks only: a graph network (adds, concats, pools on fixed-point values,
    gen/graph.py) is refused; compare its ``run_float`` and ``run_int`` outputs directly."""
    net = g.net
    if net.is_graph:
        raise NotSupportedError(f"{net.path}: the stage-by-stage path comparison covers sequential networks; "
                                f"'{net.name}' is a graph network (compare Golden.run_float with the "
                                f"dequantized Golden.run_int instead)")
    layers = {l.name: l for l in net.layers}
    x = g.check_input(x)
    idx = x
    stages = []
    dirty = np.zeros(len(x), bool)           # frames where some code differs between the paths
    exact_all = True
    for st in g.lowered.stages:
        if isinstance(st, CodePoolStage):
            idx = g.run_stage(st, idx)
            continue
        acc = g.stage_acc(st, idx)
        nd = acc.ndim
        y_i = nn.channel_view(st.scale, nd) * acc + nn.channel_view(st.bias, nd)
        a_f = st.in_act.levels[idx]
        if st.pad_codes is not None:     # per-channel padding in fractional planes: the spec's value
            pad_f = np.broadcast_to(np.asarray(layers[st.name].get("pad_value"), np.float64), (st.in_shape[0],))
        else:
            pad_f = 0.0 if st.pad_index is None else float(st.in_act.levels[st.pad_index])
        if st.identity:          # the input stage: its "matmul" is the float input itself
            y_f, w_f = a_f, st.wq.fq
        else:
            mm = layers[st.name]
            y_f = g.float_layer(mm, a_f)
            w_f = g.fq_weights(mm)
        mag = _matmul(st, np.abs(a_f), np.abs(w_f), abs(pad_f))
        bound = REL_TIE * (mag + np.abs(y_f)) + 1e-300
        exact = (st.wq.int_basis.exact and st.in_act.int_basis.exact and not st.weight_quant_implicit
                 and np.array_equal(st.pad_values(), pad_f))
        if not exact:
            s_w = np.asarray(st.wq.int_basis.scale, np.float64)
            w_q = s_w.reshape((-1,) + (1,) * (st.w_int.ndim - 1)) * st.w_int
            a_q = float(st.in_act.int_basis.scale) * st.in_act.level_ints[idx]
            pad_q = st.pad_values()
            bound = bound + _matmul(st, np.abs(a_f), np.abs(w_f - w_q), abs(pad_f)) \
                + _matmul(st, np.abs(a_f - a_q), np.abs(w_q), abs(pad_f - pad_q))
        out_i = g.run_stage(st, idx)

        def replay(y):
            for name in st.layers[0 if st.identity else 1:]:
                layer = layers[name]
                if layer.op == "quant_act":
                    return st.out_act.index(y)
                y = g.float_layer(layer, y)
            return y

        r_i, r_f = replay(y_i), replay(y_f)
        if st.raw:
            gain = np.ones(st.out_channels)        # d logit / d y through the batchnorms
            for kind, layer in st.post:
                if kind == "bn":
                    gain = gain * layer.params["gamma"] / np.sqrt(layer.params["var"] + layer["eps"])
            logit_bound = nn.channel_view(np.abs(gain), nd) * bound
            replay_bad = int((~np.isclose(r_i, g.dequantize(out_i), rtol=1e-12, atol=1e-12)).sum())
            mism = 0
        else:
            replay_bad = int((r_i != out_i).sum())
            diff = r_f != out_i
            mism = int(diff.sum())
            dirty |= diff.reshape(len(x), -1).any(1)
        exact_all &= exact
        rounding_bad = int((np.abs(y_f - y_i) > bound).sum())
        stages.append({"stage": st.name, "elements": int(out_i.size), "replay_mismatches": replay_bad,
                       "rounding_violations": rounding_bad, "code_mismatches": mism,
                       "cause": ("threshold tie" if exact else "int8 mapping of unquantized weights"
                                 if st.weight_quant_implicit else "fixed-point coefficients"),
                       "max_abs_dy": float(np.abs(y_f - y_i).max()) if y_f.size else 0.0})
        idx = out_i
    logits_f = g.run_float(x)
    logits_i = g.dequantize(idx)
    flat_f = logits_f.reshape(len(x), -1)
    flat_i = logits_i.reshape(len(x), -1)
    af, ai = flat_f.argmax(1), flat_i.argmax(1)
    agree = af == ai
    err = np.abs(flat_f - flat_i)
    scale = np.abs(flat_f).max(1, keepdims=True) + 1e-12
    clean = ~dirty
    # an argmax disagreement on a frame without upstream code mismatches must be a near-tie:
    # the float margin between the two classes is within the last layer's rounding bound
    lb = logit_bound.reshape(len(x), -1)
    rows = np.arange(len(x))
    margin = flat_f[rows, af] - flat_f[rows, ai]
    near_tie = margin <= lb[rows, af] + lb[rows, ai] + 1e-12 * scale[:, 0]
    unexplained_argmax = int((~agree & clean & ~near_tie).sum())
    return {
        "frames": int(len(x)), "stages": stages,
        "argmax_agreement": float(agree.mean()) if len(x) else 1.0,
        "argmax_disagreements": int((~agree).sum()),
        "argmax_disagreements_upstream_codes": int((~agree & dirty).sum()),
        "argmax_disagreements_logit_tie": int((~agree & clean & near_tie).sum()),
        "unexplained_argmax": unexplained_argmax,
        "max_abs_logit_error": float(err.max()) if err.size else 0.0,
        "max_rel_logit_error": float((err / scale).max()) if err.size else 0.0,
        "exact": bool(exact_all),
        "frames_with_code_mismatch": int(dirty.sum()),
        "max_rel_logit_error_clean": float((err / scale)[clean].max()) if clean.any() and err.size else 0.0,
        "code_mismatches": int(sum(s["code_mismatches"] for s in stages)),
        "unexplained": int(sum(s["replay_mismatches"] + s["rounding_violations"] for s in stages))
        + unexplained_argmax,
    }
