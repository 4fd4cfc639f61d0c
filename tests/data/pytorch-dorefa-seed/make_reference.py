#!/usr/bin/env python3
"""Reference tensors from the pytorch DoReFa seed's OWN code, for tests/train/test_seed_import.py.

Run against a checkout of github.com/onion-rain/MCTS at commit 7482e92 (its
``models/cifar/nin_dorefanet.py``, ``models/cifar/resnet_cifar_dorefanet.py`` and
``quantize/DoReFaNet.py`` are imported by path, unmodified; nothing of them is copied here):

    python make_reference.py --seed-repo /path/to/MCTS --out .

For ``nin_dorefanet(a_bits=2, w_bits=2)`` and ``resnet20_dorefanet(a_bits=2, w_bits=2)`` it

* records the state_dict layout the seed's code writes (key, shape, dtype, in order) in
  ``layout.json``;
* fills it with :func:`tests.support.dorefa_seed.seed_state_dict` (seed 0), loads that into the
  seed's model (``strict=True``) and saves nothing else of the weights;
* runs the seed's model in eval mode (its dynamic activation quantizer: each batch's max) on 8
  fixed uint8 images ``[8, 3, 32, 32]`` (value = code / 255) as ONE batch, and stores in
  ``reference.npz``: ``x``; the output of the seed's prefix up to its first structure that
  bitplane quantizes differently (NIN: ``sequential[:7]``, through conv6's ReLU; ResNet-20:
  ``features[:2]``, the first conv and the first block, which has a projection shortcut) at
  4,096 fixed positions (``<arch>_index``, ``<arch>_value``); and the seed's logits
  (``<arch>_logits``, for information).
"""
import argparse
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))
from tests.support.dorefa_seed import seed_state_dict  # noqa: E402

SEED_COMMIT = "7482e9272749959b4653f491947c75a1e9c3b106"


def _load(repo: Path, rel: str, name: str):
    spec = importlib.util.spec_from_file_location(name, repo / rel)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed-repo", required=True, type=Path)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent)
    args = ap.parse_args()
    sys.path.insert(0, str(args.seed_repo))            # the seed's files import quantize.DoReFaNet
    nin_mod = _load(args.seed_repo, "models/cifar/nin_dorefanet.py", "seed_nin")
    res_mod = _load(args.seed_repo, "models/cifar/resnet_cifar_dorefanet.py", "seed_resnet")
    torch.manual_seed(0)
    models = {"nin": nin_mod.nin_dorefanet(a_bits=2, w_bits=2, g_bits=32, num_classes=10),
              "resnet20": res_mod.resnet20_dorefanet(a_bits=2, w_bits=2, g_bits=32, num_classes=10)}
    x = np.random.default_rng(1).integers(0, 256, (8, 3, 32, 32)).astype(np.uint8)
    xt = torch.from_numpy(x.astype(np.float32) / 255.0)
    layout, ref = {}, {"x": x}
    for arch, m in models.items():
        layout[arch] = [[k, list(v.shape), str(v.dtype).replace("torch.", "")] for k, v in m.state_dict().items()]
        m.load_state_dict(seed_state_dict(layout[arch], 0), strict=True)
        m.eval()
        with torch.no_grad():
            if arch == "nin":
                pre = m.sequential[:7](xt)
            else:
                pre = m.features[1](m.features[0](xt))
            logits = m(xt)
        flat = pre.numpy().reshape(len(x), -1)
        idx = np.sort(np.random.default_rng(2).choice(flat.shape[1], 4096, replace=False))
        ref[f"{arch}_index"] = idx
        ref[f"{arch}_value"] = flat[:, idx]
        ref[f"{arch}_shape"] = np.array(pre.shape[1:])
        ref[f"{arch}_logits"] = logits.numpy()
        print(f"{arch}: {len(layout[arch])} state_dict entries, prefix output {list(pre.shape)}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "layout.json").write_text(json.dumps({"source": f"onion-rain/MCTS@{SEED_COMMIT}",
                                                      "models": layout}, indent=0) + "\n")
    np.savez_compressed(args.out / "reference.npz", **ref)


if __name__ == "__main__":
    main()
