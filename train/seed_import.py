"""Import a ``state_dict`` written by the pytorch DoReFa seed's code (NIN, ResNet-20).

The seed (``models/cifar/nin_dorefanet.py``, ``resnet_cifar_dorefanet.py``) saves plain
``torch.nn`` names, which are the layer names of :func:`train.arch.make_spec`'s graph archs:

=================================================  ===========================================
seed key                                           spec
=================================================  ===========================================
NIN ``sequential.{i}.conv.weight`` / ``.bias``     conv ``sequential.{i}.conv`` ``W`` / ``b``
NIN ``sequential.{i}.norm.*``                      batchnorm ``sequential.{i}.norm``
ResNet ``features.0.conv1.weight``                 conv ``features.0.conv1`` (first conv)
ResNet ``features.{i}.conv1|conv2|conv_shortcut``  the block's convs (no bias, as the seed's)
ResNet ``features.{i}.norm1|norm2.*``              batchnorms (``norm2`` after the add)
ResNet ``classifier.weight`` / ``.bias``           dense ``classifier``
=================================================  ===========================================

Batchnorms: ``weight`` -> ``gamma``, ``bias`` -> ``beta``, ``running_mean``/``running_var`` ->
``mean``/``var`` (eps 1e-5, the seed's nn.BatchNorm2d default); ``num_batches_tracked`` is
training state and ignored. Every other key is an error, as is a missing one; shapes are
checked. The input channels (3 for the seed's CIFAR models), NIN's ``cfg`` widths and the
number of classes come from the tensors' shapes. The checkpoint is read with
``torch.load(weights_only=True)`` (:func:`gen.importers.checkpoint.load_state_dict`).

The seed's ``QuantizedConv2d`` weights are DoReFa's (``2 q_k(tanh(W)/max|tanh W|/2 + 1/2) -
1``), the spec's ``dorefa`` weights for ``W >= 2`` bits; its 1-bit case rounds the same formula
(``W <= 0`` -> -1), which is neither BWN nor ``sign`` at ``W = 0``, and is refused. The first
and last layers are the seed's float ``nn.Conv2d``/``nn.Linear``: they stay unquantized here
(float path exact; the hardware uses int8). The seed's dynamic activation quantizer becomes
the static ``tanh`` quantizer (train/arch.py): :func:`import_seed` freezes each range at the mean
over calibration batches of the maximum the seed's own eval forward computes, so with one
calibration batch the imported network reproduces the seed's eval forward on that batch up to
the structural differences the arch docstring lists (identity shortcuts, NIN's average pool
and last conv read quantized codes; NIN's final ReLU is dropped).
"""
from __future__ import annotations

import numpy as np
import torch

from bitplane.core.errors import InputError, NotSupportedError, SpecError
from bitplane.gen.importers.checkpoint import load_state_dict

from .arch import FLOAT, GRAPH_ARCHS, NIN_CFG, make_spec
from .nn import QNet, _attr, _key, calibrate_ranges

IGNORED = ("num_batches_tracked",)
_NIN_CONVS = (0, 1, 2, 4, 5, 6, 8, 9)          # nn.Sequential indices of the cfg convs; 10 = classes


def _shape(sd, key, path):
    if key not in sd:
        raise SpecError(path, f"missing tensor '{key}' (the seed's model of this --arch has it)", field=key)
    return sd[key].shape


def seed_geometry(sd: dict, arch: str, path) -> dict:
    """``make_spec`` keyword arguments read from the checkpoint's shapes."""
    if arch == "nin":
        w0 = _shape(sd, "sequential.0.conv.weight", path)
        return {"in_channels": int(w0[1]), "cfg": [int(_shape(sd, f"sequential.{i}.conv.weight", path)[0])
                                                   for i in _NIN_CONVS],
                "classes": int(_shape(sd, "sequential.10.conv.weight", path)[0])}
    w0 = _shape(sd, "features.0.conv1.weight", path)
    return {"in_channels": int(w0[1]), "classes": int(_shape(sd, "classifier.weight", path)[0])}


def load_into(model: QNet, sd: dict, path) -> list:
    """Copy the seed's tensors into ``model``'s parameters and batchnorms; returns the ignored keys."""
    used = set()
    for L in model.spec["layers"]:
        n, op = L["name"], L["op"]
        if op in ("conv", "dense"):
            pairs = [("weight", "W")] + ([("bias", "b")] if L.get("bias") else [])
            for src, dst in pairs:
                key = f"{n}.{src}"
                _shape(sd, key, path)
                p = model.params_[_key(f"{n}/{dst}")]
                if tuple(sd[key].shape) != tuple(p.shape):
                    raise SpecError(path, f"'{key}' has shape {list(sd[key].shape)}, the seed's {op} here "
                                          f"needs {list(p.shape)}", field=key)
                with torch.no_grad():
                    p.copy_(torch.from_numpy(sd[key]))
                used.add(key)
        elif op == "batchnorm":
            bn = model.bns[n.replace(".", "_")]
            for src, buf in (("weight", bn.weight), ("bias", bn.bias), ("running_mean", bn.running_mean),
                             ("running_var", bn.running_var)):
                key = f"{n}.{src}"
                _shape(sd, key, path)
                if tuple(sd[key].shape) != tuple(buf.shape):
                    raise SpecError(path, f"'{key}' has shape {list(sd[key].shape)}, expected {list(buf.shape)}",
                                    field=key)
                with torch.no_grad():
                    buf.copy_(torch.from_numpy(sd[key]))
                used.add(key)
    ignored = sorted(k for k in sd if k not in used and k.rsplit(".", 1)[-1] in IGNORED)
    extra = sorted(k for k in sd if k not in used and k not in ignored)
    if extra:
        raise SpecError(path, f"{len(extra)} tensor(s) the seed's {model.spec['name']} structure does not take: "
                              f"{', '.join(extra[:6])}{' ...' if len(extra) > 6 else ''}", field=extra[0])
    return ignored


def import_seed(path, arch: str, w: int, a: int, calib: np.ndarray, name: str, batch: int = 128):
    """``(QNet, notes)``: the seed checkpoint at ``path`` as ``arch`` with W/A bits, ranges calibrated.

    ``calib``: uint8 codes ``[N, C, 32, 32]`` (value = code / 255), run in batches of ``batch``
    (the seed normalises by each batch's maximum, so its batch size matters: use the seed's)."""
    if arch not in GRAPH_ARCHS:
        raise InputError(f"--init-from reads the pytorch DoReFa seed's checkpoints: --arch {' or '.join(GRAPH_ARCHS)}, "
                         f"not {arch}")
    if w == 1:
        raise NotSupportedError("the seed's 1-bit weights are 2*round(tanh-normalised W) - 1 (W <= 0 -> -1), "
                                "which no spec weight quantizer reproduces; use W >= 2")
    sd = load_state_dict(path)
    geo = seed_geometry(sd, arch, path)
    spec = make_spec(arch, "dorefa", w, a, name, float_edges=True, seed_padding=True, **geo)
    model = QNet(spec)
    ignored = load_into(model, sd, path)
    notes = [f"{path}: {len(sd) - len(ignored)} tensors imported as the seed's {arch} "
             f"({geo['in_channels']} input channels, {geo['classes']} classes"
             + (f", cfg {geo['cfg']}" if arch == "nin" and list(geo["cfg"]) != list(NIN_CFG) else "") + ")"]
    if ignored:
        notes.append(f"ignored training state: {', '.join(ignored[:3])}{' ...' if len(ignored) > 3 else ''}")
    if a != FLOAT:
        C = spec["input"]["shape"][0]
        if calib.shape[1] == 1 and C > 1:           # grey images for an RGB checkpoint: repeated
            calib = np.repeat(calib, C, axis=1)
        if calib.shape[1:] != tuple(spec["input"]["shape"]):
            raise InputError(f"calibration images are {list(calib.shape[1:])}, the checkpoint takes "
                             f"{spec['input']['shape']}")
        xs = [torch.from_numpy(calib[i:i + batch].astype(np.float32) / 255.0) for i in range(0, len(calib), batch)]
        ranges = calibrate_ranges(model, xs)
        tanh = [r for n, r in ranges.items() if hasattr(model, _attr("range", n))]
        notes.append(f"static activation ranges from {len(calib)} calibration images in batches of {batch}: "
                     f"{min(tanh):.4f}..{max(tanh):.4f}"
                     + ("; the classifier's input (unquantized in the seed): uint8, scale "
                        f"{ranges['features.9.relu2']:.4g}" if "features.9.relu2" in ranges else ""))
    return model, notes
