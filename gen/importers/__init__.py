"""Model importers: ``bitplane import FORMAT SRC -o OUT.yaml`` (issue #6).

Each importer turns a trained model into a network spec (YAML + NPZ, docs/design.md section 3)
that :func:`gen.spec.load_network` accepts. Files are only ever *read as data*: tensorpack
archives with ``np.load(..., allow_pickle=False)``, PyTorch checkpoints with
``torch.load(..., map_location="cpu", weights_only=True)``, ONNX with the protobuf parser
(external tensor data is refused, nothing is evaluated). The spec is written to a
temporary folder, validated with ``load_network``, and only then moved into place (YAML
and NPZ each by an atomic rename), so a failed import leaves nothing behind.

tensorpack ``.npz`` (``--arch svhn|alexnet|resnet18|lq-alexnet|lq-vgg|lq-resnet18``, ``--bits W,A``;
docs/import-tensorpack.md)
    The layer list is the published script's, at tensorpack master: ``svhn`` is
    ``svhn-digit-dorefa.py`` (40x40x3: conv0 48@5x5 valid + bias, pool0, act0; conv1/conv2
    64@3x3 same with bn, pool1 after bn2; conv3 128 valid, conv4 128 same, conv5 128 valid,
    conv6 512@5x5 valid, each with bn; fc1 10), ``alexnet`` is ``alexnet-dorefa.py``
    (224x224x3: conv0 96@12x12 stride 4 valid, act0; conv1 256@5x5 groups 2, bn1, pool1 3/2
    same, act1; conv2 384@3x3, bn2, pool2 3/2 same, act2; conv3 384@3x3 groups 2, bn3, act3;
    conv4 256@3x3 groups 2, bn4, pool4 3/2 valid, act4; fc0 4096, bnfc0, actfc0; fc1 4096,
    bnfc1, actfc1; fct 1000), ``lq-alexnet`` is microsoft/LQ-Nets ``alexnet_model.py``
    (227x227x3, LQ-Nets weights/activations with their learned bases), ``lq-vgg`` its
    ``vgg_model.py`` VGG-Variant (224x224x3, conv1 7x7/2 SAME). DoReFa activations
    are ``clip01`` (``--activation cabs`` for svhn scripts before tensorpack f5cf2e14) +
    DoReFa A-bit; weights DoReFa W-bit (``W=t``: TTQ with ``<layer>/Wp``, ``<layer>/Wn``)
    except the first conv and the last dense layer. BatchNorm eps 1e-4 (DoReFa) / 1e-5
    (LQ-Nets, tensorpack's default). Input: ``code/256`` (svhn), ``code/255`` then
    ImageNetModel's BGR mean/std folded into the first conv (ImageNet nets; a padded first
    conv gets the mean as its per-channel ``pad_value``, so the float path is exact;
    ``--no-imagenet-norm``); ``--input-scale`` overrides the scale.

    Layer names are the checkpoint's variable scopes (conv0..., bn1..., fc0, fct); LQ-Nets'
    sub-scopes become ``<scope>_bn``/``<scope>_act`` (``conv3/bn`` -> ``conv3_bn``,
    ``bnquant2/quant`` -> ``bnquant2_act``); parameter-free layers get spec names (pool*,
    act*). Keys (a trailing ``:0`` is optional): ``<conv>/W`` HWIO (for ``split=2`` convs
    I = C/groups) -> ``W`` OIHW; ``<fc>/W`` ``[in, out]`` -> ``W`` ``[out, in]``, rows
    reordered from the flatten order of the feature map before it (the script's layout:
    NHWC svhn, NCHW alexnet/lq-alexnet; ``--layout``) to C,H,W; ``<layer>/b`` -> ``b`` (a
    layer has a bias exactly when the archive has one); ``<bn>/mean/EMA`` -> ``mean``,
    ``<bn>/variance/EMA`` -> ``var``, ``<bn>/gamma``, ``<bn>/beta`` (absent with
    ``use_scale``/``use_bias`` False: 1/0, reported); LQ-Nets ``<conv>/weight_quant/basis``
    ``[bits, out]`` -> ``basis``, ``<scope>/ActivationQuantization/basis`` ``[bits, 1]`` ->
    ``basis`` (a negative activation basis is refused). Training state (``global_step``,
    ``learning_rate``, optimizer slots, moving summaries such as ``cost/EMA``) is ignored
    and reported; any other tensor the architecture does not take is an error.

    The scripts leave the activation before the last layer unquantized (``clip01`` after
    bn6/bnfc1, ReLU after LQ-Nets' fc7); hardware needs a quantizer there. Without
    ``--calib`` it is 8-bit (``dorefa`` after clip01; ``uint`` covering the batchnorm's
    ``beta + 6|gamma|`` after a ReLU) and the first/last layers keep their float weights
    (float path = the checkpoint's; hardware: implicit int8). With ``--calib CODES.npy``
    the cheapest of 4, 6, 8, 10, 12, 16 bits (``int`` weights for the first/last layers, the
    same bits, at most 8, for that activation) whose integer path (the hardware's) makes the
    checkpoint's float function's argmax decisions on >= 99.9 % of the images is written into
    the spec; ``--first-bits``, ``--last-bits``, ``--last-act-bits`` (``auto|K|float``) set
    them by hand. LQ-Nets (``lq-*``) is always measured (on synthetic images without
    ``--calib``) and ``--coef-bits auto`` (default) also chooses the fixed point of the
    learned bases: the cheapest of 12, 14, 16, 18, 20, 24 bits whose integer path keeps the
    float path's decisions and activation codes (a rung the lowering refuses for its
    accumulator width ends the search); ``--coef-bits K`` sets it. The notes say what was
    chosen and the agreement measured at each rung. ``--float-last-act`` keeps the
    script's function exactly (an ``act`` layer: float path only, not runnable in hardware).

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

import argparse
import sys
from pathlib import Path

from bitplane.core.errors import InputError

from .checkpoint import ARCHS, arch_spec, import_checkpoint, load_layer_list, load_state_dict, load_tensorpack_npz, parse_bits  # noqa: F401 (API)
from .common import FORMATS, PARAM_FIELDS, Imported, detect_format, write_imported  # noqa: F401 (API)
from .qonnx import import_qonnx  # noqa: F401 (API)

def import_model(fmt: str, src, *, arch=None, layers=None, bits=None, layout=None, input_scale=None,
                 imagenet_norm=None, float_last_act=False, activation=None, first_bits=None, last_bits=None,
                 last_act_bits=None, calib=None, input_size=None, coef_bits=None) -> Imported:
    if fmt == "auto":
        fmt = detect_format(src)
    if fmt == "qonnx":
        for opt, v in (("--arch", arch), ("--spec", layers), ("--bits", bits), ("--layout", layout),
                       ("--activation", activation), ("--first-bits", first_bits), ("--last-bits", last_bits),
                       ("--last-act-bits", last_act_bits), ("--calib", calib), ("--input-size", input_size),
                       ("--coef-bits", coef_bits)):
            if v is not None:
                raise InputError(f"{opt} does not apply to QONNX (the graph defines the network)")
        if imagenet_norm is not None or float_last_act:
            raise InputError(f"--{'float-last-act' if float_last_act else 'imagenet-norm'} does not apply to QONNX")
        return import_qonnx(src, input_scale)
    if fmt not in FORMATS:
        raise InputError(f"unknown format {fmt!r}; supported: {', '.join(FORMATS)}, auto")
    return import_checkpoint(fmt, src, arch=arch, layers=layers, bits=bits, layout=layout,
                             input_scale=input_scale, imagenet_norm=imagenet_norm, float_last_act=float_last_act,
                             activation=activation, first_bits=first_bits, last_bits=last_bits,
                             last_act_bits=last_act_bits, calib=calib, input_size=input_size,
                             coef_bits=coef_bits)


def add_parser(sub) -> None:
    p = sub.add_parser(
        "import", help="import a trained model (tensorpack DoReFa-Net .npz, PyTorch state_dict, QONNX) as a spec",
        description="Write a network spec (YAML + NPZ) from a trained model. tensorpack and state-dict need "
                    "the architecture (--arch) or a layer list to fill (--spec); QONNX graphs define it.")
    p.add_argument("format", choices=FORMATS + ("auto",), metavar="FORMAT",
                   help="tensorpack | state-dict | qonnx | auto (detect from the file)")
    p.add_argument("source", metavar="SRC", help="the model file (.npz, .pt/.pth, .onnx)")
    p.add_argument("-o", "--output", required=True, metavar="OUT.yaml", help="spec to write (weights: OUT.npz)")
    p.add_argument("--arch", choices=ARCHS, help="the published architecture of the checkpoint: svhn "
                   "(tensorpack svhn-digit-dorefa.py), alexnet (tensorpack alexnet-dorefa.py), resnet18 (tensorpack "
                   "resnet-dorefa.py), lq-resnet18 (microsoft/LQ-Nets resnet_model.py, --mode preact --depth 18), "
                   "lq-alexnet (microsoft/LQ-Nets alexnet_model.py), lq-vgg (microsoft/LQ-Nets vgg_model.py); "
                   "lq-vgg-small (cifar10-vgg-small.py) is refused, saying why")
    p.add_argument("--spec", dest="layers", metavar="LAYERS.yaml", help="a spec whose layer list to fill")
    p.add_argument("--bits", metavar="W,A", help="with --arch: weight,activation bits (W may be 't' for TTQ); "
                                                 "default 1,2 (DoReFa), 2,2 (LQ-Nets)")
    p.add_argument("--name", help="spec name (default: the architecture's, the layer list's, or OUT's stem)")
    p.add_argument("--layout", choices=("nhwc", "nchw"),
                   help="tensorpack: feature-map layout the model was trained in, which sets the row order of "
                        "the first dense layer's weights (default: the script's; nhwc for --spec)")
    p.add_argument("--input-scale", type=float, metavar="S",
                   help="input value = code * S (default: the script's, 1/256 svhn, 1/255 alexnet; or the QONNX "
                        "input quantizer's scale)")
    p.add_argument("--imagenet-norm", action=argparse.BooleanOptionalAction, default=None,
                   help="fold ImageNetModel's mean/std input normalisation into the first conv (default: on for "
                        "alexnet/lq-alexnet/lq-vgg/lq-resnet18 as the current scripts do; --no-imagenet-norm for alexnet-dorefa.py "
                        "before tensorpack 18b19d6d, which only divided by 255)")
    p.add_argument("--activation", choices=("clip01", "cabs"),
                   help="DoReFa nonlinearity (default clip01 = tf.clip_by_value(x, 0, 1), the scripts since "
                        "tensorpack f5cf2e14; cabs = min(1, |x|) for older svhn-digit-dorefa.py checkpoints)")
    p.add_argument("--first-bits", metavar="auto|K|float",
                   help="with --arch: the first layer's weights: int K bits, float (float path = the checkpoint; "
                        "hardware: int8) or auto = the cheapest of 4,6,8,10,12,16 whose integer path (the "
                        "hardware's) keeps 99.9%% argmax agreement with the checkpoint on the calibration images "
                        "(default: auto with --calib and for lq-*, else float)")
    p.add_argument("--last-bits", metavar="auto|K|float", help="the same for the last layer's weights")
    p.add_argument("--last-act-bits", metavar="auto|K",
                   help="bits of the hardware quantizer that replaces the script's unquantized activation "
                        "before the last layer (default: auto, at most 8, with --calib and for lq-*, else 8)")
    p.add_argument("--calib", metavar="CODES.npy",
                   help="calibration images for auto precision: uint8 [N, C, H, W] codes of your data (an "
                        "explicit 'auto', or an lq-* import, without --calib uses synthetic images: pessimistic)")
    p.add_argument("--coef-bits", metavar="auto|K",
                   help="LQ-Nets (--arch lq-*): fixed-point bits of the learned bases of every lq quantizer "
                        "(weights and activations), 2..24; auto (the default) = the cheapest of 12,14,16,18,20,24 "
                        "whose integer path (the hardware's) keeps 99.9%% argmax agreement with the checkpoint's "
                        "float function and changes no activation code on the calibration images (--calib, else "
                        "synthetic ones; the first/last precision is then chosen the same way)")
    p.add_argument("--input-size", type=int, metavar="H",
                   help="with --arch: input height = width (default: the script's, 40 svhn, 224 alexnet/resnet18, "
                        "227 lq-alexnet), for a checkpoint made at a reduced input size (lq-vgg: fc5's kernel "
                        "is the map before it, H/32)")
    p.add_argument("--float-last-act", action="store_true",
                   help="with --arch: keep the script's unquantized activation before the last layer (an 'act' "
                        "layer) and unquantized first/last weights: exact float path, not runnable in hardware")
    p.set_defaults(fn=cmd_import)


def cmd_import(args) -> int:
    imp = import_model(args.format, args.source, arch=args.arch, layers=args.layers, bits=args.bits,
                       layout=args.layout, input_scale=args.input_scale, imagenet_norm=args.imagenet_norm,
                       float_last_act=args.float_last_act, activation=args.activation,
                       first_bits=args.first_bits, last_bits=args.last_bits, last_act_bits=args.last_act_bits,
                       calib=args.calib, input_size=args.input_size, coef_bits=args.coef_bits)
    info = write_imported(imp, Path(args.output), args.name)
    for note in imp.notes:
        print(f"note: {note}", file=sys.stderr)
    print(f"{info['name']}: imported {imp.fmt} {args.source} -> {info['yaml']} + {info['npz'].name}: "
          f"{info['layers']} layers, {info['params']:,} parameters, input {info['input']} -> output {info['output']}")
    return 0

