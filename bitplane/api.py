"""The Python API that the ``bitplane`` command wraps (same defaults, same errors).

Work from a notebook the way the command line does::

    import bitplane

    net = bitplane.load("examples/lenet-w2a2.yaml")                # or bitplane.import_model(...)
    logits = bitplane.golden(net, x, mode="float")                 # fake-quant float path
    acc = bitplane.golden(net, x)                                  # integer path = what the RTL computes
    p = bitplane.plan(net, target_fps=1500)                        # PE/SIMD per layer, cycles, LUTs
    design = bitplane.compile(net, "build/lenet", target_fps=1500)
    y, stats = design.simulate(x)                                  # Verilator, bit-exact vs acc
    report = design.synthesize("ecp5-85k")                         # yosys + nextpnr
    with design.open("sim") as dev:                                # the host driver (sim|xdma|zynq)
        dev.load_weights()
        r = dev.infer(x, top_k=1)

Every function raises a :class:`bitplane.core.errors.BitplaneError` subclass with the same
one-line message the command prints. Heavy parts (Amaranth, Verilator, torch, onnx) are
imported only by the call that needs them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bitplane.core.errors import InputError
from bitplane.core.manifest import load_manifest
from bitplane.gen.golden import Golden
from bitplane.gen.lower import lower
from bitplane.gen.spec import Network, load_network


def load(spec) -> Network:
    """A network spec (YAML + NPZ), validated (:func:`bitplane.gen.spec.load_network`)."""
    return spec if isinstance(spec, Network) else load_network(spec)


def import_model(fmt: str, source, output, *, name: str | None = None, **options) -> Network:
    """Import a trained model (``tensorpack``, ``state-dict``, ``qonnx`` or ``auto``) and write it
    as a spec to ``output`` (YAML, weights beside it as NPZ); returns the loaded spec. ``options``
    are those of ``bitplane import`` (``arch``, ``layers``, ``bits``, ``layout``, ``input_scale``,
    ``imagenet_norm``, ``float_last_act``)."""
    from bitplane.gen.importers import import_model as _import, write_imported  # lazy: torch/onnx per format
    imp = _import(fmt, source, **options)
    info = write_imported(imp, Path(output), name)
    return load_network(info["yaml"])


def golden(net, x, mode: str = "int", dequantize: bool = False) -> np.ndarray:
    """The golden model on uint8 input codes ``x`` ``[N, C, H, W]``: ``int`` gives the raw
    last-layer accumulators (int64, what the hardware outputs; ``dequantize`` maps them to
    logits), ``float`` the fake-quant logits (float64)."""
    g = Golden(load(net))
    g.check_input(x, "x")
    if mode == "float":
        if dequantize:
            raise InputError("dequantize only applies to mode 'int' (the float path already gives logits)")
        return g.run_float(x)
    if mode != "int":
        raise InputError(f"mode must be 'int' or 'float', not {mode!r}")
    y = g.run_int(x)
    return g.dequantize(y) if dequantize else y


def plan(net, target_fps: float | None = None, clock_mhz: float = 100.0, lut_budget: int | None = None,
         fold_file=None, stream_bits: int | None = None) -> dict:
    """The folding plan (:func:`bitplane.gen.plan.plan`) of a network for one goal."""
    from bitplane.gen.plan import plan as _plan  # lazy: the planner loads Amaranth (hw cycle formulas)
    return _plan(lower(load(net)), target_fps=target_fps, clock_mhz=clock_mhz, lut_budget=lut_budget,
                 fold_file=fold_file, stream_bits=stream_bits)


def compile(net, output, target_fps: float | None = None, clock_mhz: float = 100.0,  # noqa: A001 (the verb)
            lut_budget: int | None = None, fold_file=None, embed_weights: bool = True,
            progress=None, stream_bits: int | None = None) -> Design:
    """Compile a network into the folder ``output`` (Verilog, weight image, manifest, test
    vectors); nothing is written unless everything checks out."""
    from bitplane.gen.compile import compile_network  # lazy: Amaranth
    compile_network(load(net), Path(output), target_fps=target_fps, clock_mhz=clock_mhz,
                    lut_budget=lut_budget, fold_file=fold_file, embed_weights=embed_weights,
                    progress=progress or (lambda msg: None), stream_bits=stream_bits)
    return Design(output)


@dataclass
class Design:
    """A compiled accelerator folder (``bitplane compile -o FOLDER``)."""
    folder: Path
    manifest: dict = field(init=False, repr=False)

    def __post_init__(self):
        self.folder = Path(self.folder)
        self.manifest = load_manifest(self.folder)

    @property
    def cycles_per_frame(self) -> int:
        return int(self.manifest["cycles_per_frame"])

    def simulate(self, x, gap_pct: int = 0, stall_pct: int = 0, seed: int = 1, engine: str = "native",
                 waves: str | None = None, progress=None):
        """RTL simulation of the whole accelerator on ``x``: ``(int64 accumulators, statistics)``."""
        from bitplane.sim.accel import simulate  # lazy: Verilator build machinery
        return simulate(self.folder, np.asarray(x), gap_pct=gap_pct, stall_pct=stall_pct, seed=seed, waves=waves,
                        progress=progress or (lambda msg: None), engine=engine)

    def synthesize(self, target: str, clock_mhz: float = 100.0, progress=None) -> dict:
        """Open synthesis for ``target`` (``bitplane synth``'s targets): resources and Fmax."""
        from bitplane.synth.flow import synthesize  # lazy: yowasp tools
        return synthesize((self.folder / "accelerator.v").read_text(), self.manifest["top"], target, clock_mhz,
                          progress=progress or (lambda msg: None), stream_bits=stream_bits)

    def project(self, board: str, output) -> dict:
        """A Vivado project (Tcl + constraints) around the design for ``board``."""
        from bitplane.synth.project import write_project  # lazy: only for Vivado users
        return write_project(self.folder, board, output)

    def open(self, device: str = "sim", timeout: float | None = None, progress=None, **sim_options):
        """The host driver (:class:`bitplane.host.driver.Accelerator`) on ``device``: ``sim``,
        ``xdma[:/dev/xdma0]`` or ``zynq[:regs,dma]``; use it as a context manager."""
        from bitplane.host.driver import Accelerator  # lazy: transports (mmap, subprocess)
        return Accelerator.open(self.folder, device, timeout=timeout, progress=progress, **sim_options)
