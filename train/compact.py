"""Ship a trained spec small: its NPZ with the quantized weights in place of the latent ones.

    python -m bitplane.train.compact NAME.yaml OUT.yaml --check FRAMES.npz

``bitplane train`` exports the latent float64 weights (the golden float path re-quantizes
them, as training did). For a layer whose weight quantizer is idempotent on its own output
(``fake_quant(fake_quant(W)) == fake_quant(W)`` exactly: ``int``, and DoReFa k >= 2 when it
holds, which is checked per layer), storing ``fake_quant(W)`` changes no value either golden
path computes, and the few distinct values compress well (``np.savez_compressed``). Other
layers keep their latent weights. The result is checked on ``--check`` frames: golden float
logits and golden integer accumulators must be identical to the original's, otherwise nothing
is written.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import yaml

from bitplane.core.errors import BitplaneError
from bitplane.core.yamlio import load_yaml
from bitplane.gen.golden import Golden
from bitplane.gen.quant import fake_quant_weights
from bitplane.gen.spec import load_network


def compact(src_yaml, out_yaml, frames) -> dict:
    """Write ``out_yaml`` + its compressed NPZ; returns ``{layer: 'quantized'|'latent'}``."""
    src_yaml, out_yaml = Path(src_yaml), Path(out_yaml)
    net = load_network(src_yaml)
    doc, _ = load_yaml(src_yaml, lambda msg: BitplaneError(f"{src_yaml}: {msg}"), "spec file")
    with np.load(src_yaml.with_name(doc["weights"]), allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    done = {}
    for layer in net.layers:
        q = layer.get("weight_quant")
        if layer.op not in ("conv", "dense") or q is None:
            continue
        W = arrays[f"{layer.name}/W"]
        wq = fake_quant_weights(q, W)
        if np.array_equal(fake_quant_weights(q, wq), wq):
            arrays[f"{layer.name}/W"] = wq
            done[layer.name] = "quantized"
        else:
            done[layer.name] = "latent"
    doc["weights"] = out_yaml.with_suffix(".npz").name
    out_yaml.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_yaml.parent, prefix=f".{out_yaml.stem}.") as tmp:
        ty, tn = Path(tmp) / out_yaml.name, Path(tmp) / doc["weights"]
        with open(tn, "wb") as f:
            np.savez_compressed(f, **arrays)
        ty.write_text(yaml.safe_dump(doc, sort_keys=False, default_flow_style=None, width=110))
        new, old = Golden(load_network(ty)), Golden(net)
        if not (np.array_equal(new.run_float(frames), old.run_float(frames))
                and np.array_equal(new.run_int(frames), old.run_int(frames))):
            raise BitplaneError(f"{src_yaml}: the compacted weights change the golden outputs; nothing written")
        os.replace(tn, out_yaml.with_suffix(".npz"))
        os.replace(ty, out_yaml)
    return done


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bitplane.train.compact", description=__doc__.splitlines()[0])
    ap.add_argument("spec")
    ap.add_argument("output")
    ap.add_argument("--check", required=True, help="frames (npz with x uint8 [N, C, H, W]) the outputs must match on")
    args = ap.parse_args(argv)
    try:
        with np.load(args.check, allow_pickle=False) as z:
            frames = z["x"]
        done = compact(args.spec, args.output, frames)
    except BitplaneError as e:
        print(f"bitplane: error: {e}", file=sys.stderr)
        return 1
    q = sum(v == "quantized" for v in done.values())
    print(f"wrote {args.output}: {q} of {len(done)} quantized layers stored quantized; golden float and int "
          f"identical on {len(frames)} frames")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
