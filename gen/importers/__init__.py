"""Model importers: ``bitplane import FORMAT SRC -o OUT.yaml`` (issue #6).

Each importer turns a trained model into a network spec (YAML + NPZ, DESIGN.md section 2)
that :func:`gen.spec.load_network` accepts. Files are only ever *read as data*: tensorpack
archives with ``np.load(..., allow_pickle=False)``, PyTorch checkpoints with
``torch.load(..., map_location="cpu", weights_only=True)``, ONNX with the protobuf parser
(external tensor data is refused, nothing is evaluated). The spec is written to a
temporary folder, validated with ``load_network``, and only then moved into place (YAML
and NPZ each by an atomic rename), so a failed import leaves nothing behind.

tensorpack DoReFa-Net ``.npz`` (``--arch svhn|alexnet``, ``--bits W,A``)
    The layer list is the seed's: ``svhn`` is ``examples/svhn-dorefa-w1a2.yaml`` (40x40x3,
    ``svhn-digit-dorefa.py``), ``alexnet`` is ``alexnet-dorefa.py`` (224x224x3): conv0 96@12x12
    stride 4 valid, act0; conv1 256@5x5 groups 2, bn1, pool1 3/2 same, act1; conv2 384@3x3,
    bn2, pool2 3/2 same, act2; conv3 384@3x3 groups 2, bn3, act3; conv4 256@3x3 groups 2,
    bn4, pool4 3/2 valid, act4; fc0 4096, bnfc0, actfc0; fc1 4096, bnfc1, actfc1; fct 1000.
    Activations are ``clip01`` (AlexNet) / ``cabs`` (SVHN) + DoReFa A-bit; weights are
    DoReFa W-bit (``W=t``: TTQ with ``<layer>/Wp``, ``<layer>/Wn``) except the first conv and
    the last dense layer (unquantized, as in the seeds: int8 in hardware). BatchNorm eps 1e-4.

    Layer names are tensorpack's variable scopes unchanged (conv0..., bn1..., bnfc0, fc0,
    fct); the parameter-free layers get spec names (pool*, act*). Keys (a trailing ``:0`` is
    optional): ``<conv>/W`` HWIO (for ``split=2`` convs I = C/groups) -> ``W`` OIHW;
    ``<fc>/W`` ``[in, out]`` -> ``W`` ``[out, in]``, rows reordered from the NHWC flatten
    order of the preceding feature map to C,H,W (``--layout nchw`` for checkpoints of the
    channels_first version of ``alexnet-dorefa.py``, whose rows are already C,H,W);
    ``<layer>/b`` -> ``b`` (a layer has a bias exactly when the archive has one: tensorpack
    versions differ for conv0/fc0/fc1); ``<bn>/mean/EMA`` -> ``mean``,
    ``<bn>/variance/EMA`` -> ``var``, ``<bn>/gamma`` -> ``gamma``, ``<bn>/beta`` -> ``beta``.
    gamma/beta are absent when the BatchNorm had ``use_scale``/``use_bias`` False; they
    are then 1/0 (the import says so). Training state (``global_step``, ``learning_rate``,
    optimizer slots, moving summaries such as ``cost/EMA``) is ignored and reported; any
    other tensor the architecture does not take is an error.

    Two seed details need a choice: the seeds apply the last nonlinearity (``cabs`` after
    bn6, ``clip01`` after bnfc1) *without* quantizing it; hardware needs quantized
    activations, so by default act6/actfc1 quantize it with A bits like the other
    activations (logits differ slightly from tensorpack's); ``--float-last-act`` keeps it
    as an unquantized ``act`` layer instead (exact float path, not runnable in hardware).
    Input preprocessing is not in the archive: the input is ``code * --input-scale``
    (default 1/255; old SVHN scripts divide by 256). ``--imagenet-norm`` folds
    ``ImageNetModel``'s per-channel mean/std normalisation (BGR order) into conv0's weights
    and bias, exact because conv0 pads nothing.

PyTorch ``state_dict`` (``--arch`` or ``--spec LAYERS.yaml``)
    A bare state dict or one under ``'state_dict'``/``'model'``; a common ``module.``
    prefix is dropped. Conventional names: ``<conv>.weight`` OIHW, ``<layer>.bias``,
    ``<dense>.weight`` ``[out, in]`` (C,H,W order), ``<bn>.weight/bias/running_mean/
    running_var`` (``num_batches_tracked`` ignored; weight/bias absent = affine False),
    ``<layer>.Wp/.Wn`` (TTQ), ``<layer>.basis`` (LQ-Nets). bitplane's own
    :class:`train.nn.QNet` names are recognised too: ``params_.<layer>__W|b|Wp|Wn``,
    ``bns.<bn>.*``, ``basis__<layer>``. With ``--arch`` biases follow the checkpoint; with
    ``--spec`` they follow the spec. Every tensor must be used.

QONNX (Brevitas ``export_qonnx``, both exporters; FINN's graphs)
    See :mod:`bitplane.gen.importers.qonnx` for the subset and how each node maps.
"""
from __future__ import annotations

import sys
from pathlib import Path

from bitplane.core.errors import InputError

from .checkpoint import ARCHS, arch_spec, import_checkpoint, load_layer_list, load_state_dict, load_tensorpack_npz, parse_bits  # noqa: F401 (API)
from .common import FORMATS, PARAM_FIELDS, Imported, detect_format, write_imported  # noqa: F401 (API)
from .qonnx import import_qonnx  # noqa: F401 (API)

def import_model(fmt: str, src, *, arch=None, layers=None, bits=None, layout=None, input_scale=None,
                 imagenet_norm=False, float_last_act=False) -> Imported:
    if fmt == "auto":
        fmt = detect_format(src)
    if fmt == "qonnx":
        for opt, v in (("--arch", arch), ("--spec", layers), ("--bits", bits), ("--layout", layout)):
            if v is not None:
                raise InputError(f"{opt} does not apply to QONNX (the graph defines the network)")
        if imagenet_norm or float_last_act:
            raise InputError(f"--{'imagenet-norm' if imagenet_norm else 'float-last-act'} does not apply to QONNX")
        return import_qonnx(src, input_scale)
    if fmt not in FORMATS:
        raise InputError(f"unknown format {fmt!r}; supported: {', '.join(FORMATS)}, auto")
    return import_checkpoint(fmt, src, arch=arch, layers=layers, bits=bits, layout=layout,
                             input_scale=input_scale, imagenet_norm=imagenet_norm, float_last_act=float_last_act)


def add_parser(sub) -> None:
    p = sub.add_parser(
        "import", help="import a trained model (tensorpack DoReFa-Net .npz, PyTorch state_dict, QONNX) as a spec",
        description="Write a network spec (YAML + NPZ) from a trained model. tensorpack and state-dict need "
                    "the architecture (--arch) or a layer list to fill (--spec); QONNX graphs define it.")
    p.add_argument("format", choices=FORMATS + ("auto",), metavar="FORMAT",
                   help="tensorpack | state-dict | qonnx | auto (detect from the file)")
    p.add_argument("source", metavar="SRC", help="the model file (.npz, .pt/.pth, .onnx)")
    p.add_argument("-o", "--output", required=True, metavar="OUT.yaml", help="spec to write (weights: OUT.npz)")
    p.add_argument("--arch", choices=ARCHS, help="the DoReFa-Net seed architecture of the checkpoint")
    p.add_argument("--spec", dest="layers", metavar="LAYERS.yaml", help="a spec whose layer list to fill")
    p.add_argument("--bits", metavar="W,A", help="with --arch: weight,activation bits (W may be 't' for TTQ); "
                                                 "default 1,2")
    p.add_argument("--name", help="spec name (default: the architecture's, the layer list's, or OUT's stem)")
    p.add_argument("--layout", choices=("nhwc", "nchw"),
                   help="tensorpack: feature-map layout the model was trained in, which sets the row order of "
                        "the first dense layer's weights (default nhwc)")
    p.add_argument("--input-scale", type=float, metavar="S",
                   help="input value = code * S (default 1/255, or the QONNX input quantizer's scale)")
    p.add_argument("--imagenet-norm", action="store_true",
                   help="fold tensorpack ImageNetModel's mean/std input normalisation into the first conv")
    p.add_argument("--float-last-act", action="store_true",
                   help="with --arch: keep the seed's unquantized activation before the last layer (an 'act' "
                        "layer: exact float path, not runnable in hardware) instead of quantizing it")
    p.set_defaults(fn=cmd_import)


def cmd_import(args) -> int:
    imp = import_model(args.format, args.source, arch=args.arch, layers=args.layers, bits=args.bits,
                       layout=args.layout, input_scale=args.input_scale, imagenet_norm=args.imagenet_norm,
                       float_last_act=args.float_last_act)
    info = write_imported(imp, Path(args.output), args.name)
    for note in imp.notes:
        print(f"note: {note}", file=sys.stderr)
    print(f"{info['name']}: imported {imp.fmt} {args.source} -> {info['yaml']} + {info['npz'].name}: "
          f"{info['layers']} layers, {info['params']:,} parameters, input {info['input']} -> output {info['output']}")
    return 0

