"""Golden model: two paths over the same spec (docs/design.md section 5).

* ``float``: fake-quant training semantics, op by op in float64.
* ``int``: the integer bit-plane form — integer dot products, thresholds, pooling on
  level indices or accumulators — exactly what the RTL computes. The last layer emits
  raw signed accumulators; :meth:`Golden.dequantize` applies the affine map to logits.

Inputs are uint8 (or uint16 for >8-bit inputs) codes ``[N, C, H, W]``; value = code * scale.
"""
from __future__ import annotations

import numpy as np

from bitplane.gen import nn
from bitplane.core.errors import InputError
from .graph import run_float_graph, run_int_graph
from .lower import Lowered, MatmulStage, lower
from .quant import ActQuant, apply_nonlin, fake_quant_weights
from .spec import Network

BATCH = 128


class Golden:
    def __init__(self, net: Network, lowered: Lowered | None = None):
        self.net = net
        self._lowered = lowered
        self._fq = {}

    @property
    def lowered(self) -> Lowered:
        if self._lowered is None:
            self._lowered = lower(self.net)
        return self._lowered

    # ------------------------------------------------------------------ inputs
    def check_input(self, x, source: str = "input"):
        x = np.asarray(x)
        want = self.net.input_shape
        if x.ndim != 4 or tuple(x.shape[1:]) != want:
            raise InputError(f"{source}: expected an array [N, {', '.join(map(str, want))}] of input codes, "
                             f"got shape {list(x.shape)}")
        if x.dtype.kind not in "ui":
            raise InputError(f"{source}: expected unsigned integer codes (uint8), got dtype {x.dtype}")
        top = (1 << self.net.input_bits) - 1
        if x.size and (x.min() < 0 or x.max() > top):
            raise InputError(f"{source}: codes must lie in 0..{top} for {self.net.input_bits}-bit input")
        return x.astype(np.int64)

    def _batches(self, x, fn):
        outs = [fn(x[i:i + BATCH]) for i in range(0, len(x), BATCH)]
        if not outs:
            return fn(x[:0])
        return np.concatenate(outs)

    # ------------------------------------------------------------------ float path
    def fq_weights(self, layer):
        if layer.name not in self._fq:
            wq = layer.get("weight_quant")
            W = layer.params["W"]
            self._fq[layer.name] = W if wq is None else fake_quant_weights(wq, W, layer.params)
        return self._fq[layer.name]

    def float_layer(self, layer, x):
        """Apply one spec layer on the float path."""
        op = layer.op
        if op == "conv":
            pv = layer.get("pad_value")
            y = nn.conv2d(x, self.fq_weights(layer), layer["stride"], layer.pads, layer["groups"],
                          0.0 if pv is None else np.asarray(pv, np.float64), layer.get("pad_mode", "constant"))
        elif op == "dense":
            y = nn.dense(x, self.fq_weights(layer))
        elif op == "batchnorm":
            return nn.batchnorm(x, layer.params, layer["eps"])
        elif op == "quant_act":
            return ActQuant(layer["quant"], layer["nonlin"], layer.params).apply(x)
        elif op == "act":
            return apply_nonlin(layer["nonlin"], x)
        elif op == "maxpool":
            return nn.pool2d(x, layer["kernel"], layer["stride"], layer.pads, True, layer.get("pad_mode", "constant"))
        elif op == "avgpool":
            return nn.avgpool2d(x, layer["kernel"], layer["stride"], layer.pads, layer["divisor"], layer["pad_mode"])
        elif op == "global_avgpool":
            return nn.global_avgpool(x)
        else:  # pragma: no cover - the loader rejects unknown ops
            raise ValueError(op)
        if "b" in layer.params:
            y = y + nn.channel_view(layer.params["b"], y.ndim)
        return y

    def run_float(self, x, trace: bool = False):
        """Float64 logits (fake-quant semantics). With ``trace``, also every layer's output."""
        x = self.check_input(x)
        if self.net.is_graph:
            return run_float_graph(self, x, trace)

        def one(xb):
            v = xb.astype(np.float64) * self.net.input_scale
            for layer in self.net.layers:
                v = self.float_layer(layer, v)
            return v

        if not trace:
            return self._batches(x, one)
        v = x.astype(np.float64) * self.net.input_scale
        outs = {}
        for layer in self.net.layers:
            v = self.float_layer(layer, v)
            outs[layer.name] = v
        return v, outs

    # ------------------------------------------------------------------ int path
    @staticmethod
    def stage_acc(stage: MatmulStage, idx):
        """Exact integer accumulators of a matmul stage from input level indices."""
        return stage.acc(idx)

    @staticmethod
    def run_stage(stage, idx):
        """Level indices (or raw accumulators for the last stage) out of one stage."""
        return stage.run(idx)

    def run_int(self, x, trace: bool = False):
        """int64 raw last-layer accumulators. With ``trace``, also every stage's output."""
        x = self.check_input(x)
        if self.net.is_graph:
            return run_int_graph(self.lowered, x, trace)
        stages = self.lowered.stages
        if not trace:
            def one(xb):
                for st in stages:
                    xb = self.run_stage(st, xb)
                return xb
            return self._batches(x, one)
        outs = {}
        v = x
        for st in stages:
            v = self.run_stage(st, v)
            outs[st.name] = v
        return v, outs

    def dequantize(self, acc):
        """Float logits from raw last-layer accumulators (the manifest's affine map)."""
        if self.net.is_graph:
            return self.lowered.dequantize(acc)
        last = self.lowered.last
        acc = np.asarray(acc, dtype=np.int64)
        return last.pre_act(acc.astype(np.float64), acc.ndim)
