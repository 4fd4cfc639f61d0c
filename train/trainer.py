"""``bitplane train``: quantization-aware training on real data, exported to the spec format.

    bitplane train --arch lenet --quant dorefa --bits 1,2,6 --dataset fashion-mnist --epochs 5 \\
                   -o examples/fmnist-lenet-w1a2.yaml

Trains :class:`train.nn.QNet` built from :func:`train.arch.make_spec` with Adam (cosine
learning-rate decay) and cross-entropy, shows a progress bar and the per-epoch train loss,
train accuracy and test accuracy (eval mode), then writes, each atomically:

* ``NAME.yaml`` + ``NAME.npz``: the spec (``bitplane compile`` input);
* ``NAME.train.json``: command, seed, epochs, wall time, per-epoch curve, final accuracies of
  the torch model, the golden float path and (when the network has an integer form) the golden
  integer path, and the export check (torch eval logits vs golden float, relative);
* ``NAME.curve.png``: loss and accuracy per epoch.

The export check must pass (1e-4 relative, float64), otherwise the command fails: a network
whose spec does not reproduce the trained model is never left behind.
"""
from __future__ import annotations

import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bitplane.core.errors import BitplaneError, InputError, NotSupportedError
from bitplane.core.progress import progress_bar
from bitplane.gen.golden import Golden
from bitplane.gen.spec import load_network

from .arch import ARCHS, GRAPH_ARCHS, QUANTS, ArchError, input_size, make_spec, pad_input, parse_bits
from .data import DATASETS, fetch, load

EXPORT_RTOL = 1e-4


def add_parser(sub):
    p = sub.add_parser("train", help="quantization-aware training (PyTorch) on real data, exported to a spec")
    p.add_argument("--arch", required=True, choices=ARCHS)
    p.add_argument("--quant", required=True, choices=QUANTS)
    p.add_argument("--bits", required=True, help="W,A,G bit widths (32 = float, W=t ternary), e.g. 1,2,6")
    p.add_argument("--dataset", required=True, choices=DATASETS)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("-o", "--output", required=True, help="spec to write (NAME.yaml; NAME.npz next to it)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=2e-3, help="Adam learning rate (cosine decay to 0)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train-subset", type=int, help="train on the first N (shuffled) training images only")
    p.add_argument("--test-subset", type=int,
                   help="evaluate on N test images only (a fixed random pick, numpy default_rng(0))")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: all cores)")
    p.add_argument("--bn-recalib", type=int, metavar="N",
                   help="after training, re-estimate the batchnorm statistics on N training images with the final "
                        "weights (default: 2048 for --arch nin|resnet20, whose tanh activations need it; else 0)")
    p.add_argument("--init-from", metavar="CKPT.pth",
                   help="--arch nin|resnet20: start from a state_dict written by the pytorch DoReFa seed's code "
                        "(train/seed_import.py), its activation ranges calibrated on training images; "
                        "--epochs 0 imports only")
    p.add_argument("--calib-images", type=int, default=512,
                   help="with --init-from: training images that calibrate the static activation ranges "
                        "(in batches of --batch-size)")
    p.add_argument("--fetch", action="store_true", help="fetch the dataset first if it is missing")
    p.add_argument("--name", help="network name in the spec (default: the output file's stem)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(fn=cmd_train)


def _import_torch():
    try:
        import torch
    except ImportError:
        raise NotSupportedError("bitplane train needs PyTorch: run `make install-train` "
                                "(pip install torch==2.13.0, CPU)") from None
    return torch


def evaluate(model, x, batch=1000):
    """Eval-mode logits (float64 numpy) of uint8 codes ``x``."""
    torch = _import_torch()
    model.eval()
    dtype = next(model.parameters()).dtype
    outs = []
    with torch.no_grad():
        for i in range(0, len(x), batch):
            xb = torch.from_numpy(x[i:i + batch].astype(np.float64) / 255.0).to(dtype)
            outs.append(model(xb).double().numpy().reshape(len(xb), -1))     # NIN ends [N, 10, 1, 1]
    return np.concatenate(outs)


def train(arch, quant, bits, dataset, epochs, out_yaml, *, batch_size=128, lr=2e-3, seed=0,
          train_subset=None, test_subset=None, threads=None, name=None, log=print, progress=True,
          command=None, init_from=None, calib_images=512, bn_recalib=None) -> dict:
    """Train, export and check; returns the summary written to ``NAME.train.json``."""
    try:
        w, a, g = parse_bits(bits, quant)
        out_yaml = Path(out_yaml)
        if out_yaml.suffix != ".yaml":
            raise ArchError(f"-o {out_yaml}: the output must be a .yaml path (the .npz goes next to it)")
        name = name or out_yaml.stem
        spec = make_spec(arch, quant, w, a, name)
    except ArchError as e:
        raise InputError(str(e)) from None
    if epochs < (0 if init_from else 1):
        raise InputError(f"--epochs {epochs}: must be >= 1 (0 only with --init-from)")
    if init_from and quant != "dorefa":
        raise InputError(f"--init-from reads the pytorch DoReFa seed's checkpoints: --quant dorefa, not {quant}")
    for opt, v in (("--train-subset", train_subset), ("--test-subset", test_subset)):
        if v is not None and v < 1:
            raise InputError(f"{opt} {v}: must be >= 1")
    xtr, ytr = load(dataset, "train")
    xte, yte = load(dataset, "test")
    if test_subset and test_subset < len(yte):
        idx = np.sort(np.random.default_rng(0).choice(len(yte), test_subset, replace=False))
        xte, yte = xte[idx], yte[idx]
    side = input_size(arch)                     # the seed's graph archs take 32x32: pad 28 -> 32
    xtr, xte = pad_input(xtr, side), pad_input(xte, side)
    if bn_recalib is None:
        bn_recalib = 2048 if arch in GRAPH_ARCHS else 0
    torch = _import_torch()
    from .nn import QNet, export  # lazy: torch (loaded by _import_torch with its install hint)
    if threads:
        torch.set_num_threads(threads)
    rng = np.random.default_rng(seed)
    if train_subset:
        idx = rng.permutation(len(ytr))[:train_subset]
        xtr, ytr = xtr[idx], ytr[idx]
    torch.manual_seed(seed)
    if init_from:
        from .seed_import import import_seed  # lazy: torch, off the CLI start-up path
        model, notes = import_seed(init_from, arch, w, a, xtr[:calib_images], name, batch_size)
        model.grad_bits = None if g == 32 else g
        spec = model.spec
        for note in notes:
            log(f"note: {note}")
    else:
        model = QNet(spec, grad_bits=None if g == 32 else g, seed=seed)
    chans = spec["input"]["shape"][0]
    xtr, xte = _channels(xtr, chans), _channels(xte, chans)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    steps_per_epoch = math.ceil(len(ytr) / batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * steps_per_epoch)
    xt = torch.from_numpy(xtr.astype(np.float32) / 255.0)
    yt = torch.from_numpy(ytr)
    bits_s = f"{'t' if quant == 'ttq' else w}/{a}/{g}"
    log(f"training {name}: {arch}, {quant} W/A/G = {bits_s}, {dataset} ({len(ytr)} train / {len(yte)} test), "
        f"{epochs} epochs, batch {batch_size}, Adam lr {lr} (cosine), seed {seed}, {torch.get_num_threads()} threads")
    curve = []
    t0 = time.perf_counter()
    if epochs == 0:                             # an import: the curve is the imported model's test accuracy
        curve.append({"epoch": 0, "loss": None, "train_acc": None,
                      "test_acc": float((evaluate(model, xte).argmax(1) == yte).mean()), "seconds": 0.0})
    for ep in range(epochs):
        model.train()
        perm = torch.from_numpy(rng.permutation(len(ytr)))
        bar = progress_bar(len(ytr), "images", prefix=f"epoch {ep + 1}/{epochs} ") if progress else None
        tot_loss, correct, seen = 0.0, 0, 0
        for s in range(steps_per_epoch):
            idx = perm[s * batch_size:(s + 1) * batch_size]
            xb, yb = xt[idx], yt[idx]
            logits = model(xb).flatten(1)
            loss = torch.nn.functional.cross_entropy(logits, yb)
            if not torch.isfinite(loss):
                raise BitplaneError(f"training {name}: loss became {loss.item()} at epoch {ep + 1}, step {s}; "
                                    f"lower --lr (now {lr})")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            tot_loss += loss.item() * len(yb)
            correct += int((logits.argmax(1) == yb).sum())
            seen += len(yb)
            if bar:
                bar(seen, note=f"  loss {tot_loss / seen:.3f}")
        if bar:
            bar(seen, final=True, note=f"  loss {tot_loss / seen:.3f}")
        test_acc = float((evaluate(model, xte).argmax(1) == yte).mean())
        row = {"epoch": ep + 1, "loss": tot_loss / seen, "train_acc": correct / seen, "test_acc": test_acc,
               "seconds": time.perf_counter() - t0}
        curve.append(row)
        log(f"epoch {ep + 1}/{epochs}: loss {row['loss']:.4f}  train acc {row['train_acc']:.4f}  "
            f"test acc {test_acc:.4f}  ({row['seconds']:.0f} s)")
    if bn_recalib and epochs > 0:
        from .nn import recalibrate_batchnorms  # lazy: torch, off the CLI start-up path
        n = min(bn_recalib, len(ytr))
        recalibrate_batchnorms(model, [xt[i:i + batch_size] for i in range(0, n, batch_size)])
        acc = float((evaluate(model, xte).argmax(1) == yte).mean())
        log(f"batchnorm statistics re-estimated on {n} training images: test acc {curve[-1]['test_acc']:.4f} "
            f"-> {acc:.4f}")
        curve[-1]["test_acc_before_bn_recalib"] = curve[-1]["test_acc"]
        curve[-1]["test_acc"] = acc
    wall = time.perf_counter() - t0

    # export into a temporary folder, check, then move into place
    out_yaml.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_yaml.parent, prefix=f".{name}.") as tmp:
        tmp_yaml = Path(tmp) / out_yaml.name
        export(model, tmp_yaml, comment=f"trained by bitplane train: {arch} {quant} W/A/G={bits_s} on {dataset}, "
                                        f"{epochs} epochs, seed {seed}")
        net = load_network(tmp_yaml)
        gold = Golden(net)
        torch_logits = evaluate(model.double(), xte)
        model.float()
        gold_float = gold.run_float(xte).reshape(len(xte), -1)
        rel = float(np.max(np.abs(gold_float - torch_logits)) / max(np.max(np.abs(torch_logits)), 1e-12))
        if rel > EXPORT_RTOL:
            raise BitplaneError(f"export check failed for {name}: golden float logits differ from the torch "
                                f"model by {rel:.2e} relative (limit {EXPORT_RTOL:.0e}); nothing written")
        summary = {
            "name": name, "arch": arch, "quant": quant, "bits": {"W": "t" if quant == "ttq" else w, "A": a, "G": g},
            "init_from": str(init_from) if init_from else None, "dataset": dataset, "train_images": int(len(ytr)), "test_images": int(len(yte)),
            "input": list(spec["input"]["shape"]), "epochs": epochs,
            "batch_size": batch_size, "lr": lr, "seed": seed, "threads": torch.get_num_threads(),
            "wall_seconds": round(wall, 1), "command": command, "torch": torch.__version__,
            "curve": curve,
            "test_acc": {"torch": curve[-1]["test_acc"], "golden_float": float((gold_float.argmax(1) == yte).mean())},
            "export_max_rel_diff": rel,
            "params": int(sum(p.numel() for p in model.parameters())),
        }
        try:
            gold_int = gold.dequantize(gold.run_int(xte)).reshape(len(xte), -1)
            summary["test_acc"]["golden_int"] = float((gold_int.argmax(1) == yte).mean())
            summary["int_float_agreement"] = float((gold_int.argmax(1) == gold_float.argmax(1)).mean())
            summary["hardware"] = True
        except NotSupportedError as e:
            summary["hardware"] = False
            summary["no_hardware_reason"] = str(e)
        log(f"test accuracy: torch {summary['test_acc']['torch']:.4f}, golden float "
            f"{summary['test_acc']['golden_float']:.4f}"
            + (f", golden int {summary['test_acc']['golden_int']:.4f} (int/float argmax agreement "
               f"{summary['int_float_agreement']:.4f})" if summary["hardware"] else
               " (float activations: no integer form / hardware)")
            + f"; export check {rel:.1e} relative")
        (Path(tmp) / f"{out_yaml.stem}.train.json").write_text(json.dumps(summary, indent=1) + "\n")
        _plot_curve(curve, summary, Path(tmp) / f"{out_yaml.stem}.curve.png")
        for f in (f"{out_yaml.stem}.npz", f"{out_yaml.stem}.train.json", f"{out_yaml.stem}.curve.png",
                  out_yaml.name):
            os.replace(Path(tmp) / f, out_yaml.parent / f)
    log(f"wrote {out_yaml} (+ .npz, .train.json, .curve.png) in {wall:.0f} s of training")
    return summary


def _channels(x, c: int):
    """Grey images ``[N, 1, H, W]`` repeated to ``c`` channels (a seed checkpoint takes RGB)."""
    if x.shape[1] == c:
        return x
    if x.shape[1] != 1:
        raise InputError(f"the images have {x.shape[1]} channels, the network takes {c}")
    return np.repeat(x, c, axis=1)


def _plot_curve(curve, summary, path: Path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise NotSupportedError("the training curve needs matplotlib: run `make install-train`") from None
    ep = [r["epoch"] for r in curve]
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.4))
    nan = float("nan")                          # an import (--epochs 0) has no training loss
    ax[0].plot(ep, [nan if r["loss"] is None else r["loss"] for r in curve], "o-")
    ax[0].set_xlabel("epoch")
    ax[0].set_ylabel("train loss (cross-entropy)")
    ax[1].plot(ep, [nan if r["train_acc"] is None else r["train_acc"] for r in curve], "o-", label="train")
    ax[1].plot(ep, [r["test_acc"] for r in curve], "s-", label="test")
    ax[1].set_xlabel("epoch")
    ax[1].set_ylabel("accuracy")
    ax[1].legend()
    b = summary["bits"]
    fig.suptitle(f"{summary['name']}: {summary['arch']} {summary['quant']} W/A/G={b['W']}/{b['A']}/{b['G']} on "
                 f"{summary['dataset']}")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def cmd_train(args) -> int:
    if args.fetch:
        fetch(args.dataset)
    train(args.arch, args.quant, args.bits, args.dataset, args.epochs, args.output, batch_size=args.batch_size,
          lr=args.lr, seed=args.seed, train_subset=args.train_subset, test_subset=args.test_subset,
          threads=args.threads, name=args.name, init_from=args.init_from, calib_images=args.calib_images,
          bn_recalib=args.bn_recalib,
          progress=not args.quiet, command="bitplane " + " ".join(sys.argv[1:]))
    return 0
