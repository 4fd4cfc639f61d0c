"""The pytorch DoReFa seed's state_dict layouts (tests/data/pytorch-dorefa-seed) filled with fixed values.

``layout.json`` lists, for each model, every ``state_dict`` key with its shape and dtype in the
order the seed's own code writes them (recorded by ``make_reference.py`` from the seed's
``nin_dorefanet``/``resnet20_dorefanet``). :func:`seed_state_dict` fills such a layout with values
from one seeded generator, so the state dict the reference script loaded into the seed's model
is rebuilt here without the seed's code (and without shipping megabytes of weights).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[1] / "data" / "pytorch-dorefa-seed"


def layouts() -> dict:
    return json.loads((DATA / "layout.json").read_text())["models"]


def seed_state_dict(layout: list, seed: int = 0) -> dict:
    """``{key: torch tensor}`` for ``layout`` (``[[key, shape, dtype], ...]``): He-normal conv/linear
    weights, batchnorm scales in [0.6, 1.4], shifts and means ~ N(0, 0.1..0.2), variances in
    [0.5, 1.5], biases ~ N(0, 0.1), ``num_batches_tracked`` 0."""
    import torch
    rng = np.random.default_rng(seed)
    out = {}
    for key, shape, dtype in layout:
        module, _, param = key.rpartition(".")
        is_norm = module.rsplit(".", 1)[-1].startswith("norm")
        if param == "num_batches_tracked":
            v = np.zeros(shape, np.int64)
        elif param == "running_var":
            v = rng.uniform(0.5, 1.5, shape)
        elif param == "running_mean":
            v = rng.normal(0.0, 0.2, shape)
        elif is_norm and param == "weight":
            v = rng.uniform(0.6, 1.4, shape)
        elif param == "bias":
            v = rng.normal(0.0, 0.1, shape)
        else:
            v = rng.normal(0.0, np.sqrt(2.0 / np.prod(shape[1:])), shape)
        out[key] = torch.from_numpy(np.asarray(v).astype(dtype))
    return out
