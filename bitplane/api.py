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

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bitplane.core.errors import InputError
from bitplane.core.fileio import load_codes, read_text
from bitplane.core.manifest import check_frames, load_manifest
from bitplane.gen.golden import Golden
from bitplane.gen.lower import lower
from bitplane.gen import importers
from bitplane.gen.spec import Network, load_network
from bitplane.host.driver import Accelerator
from bitplane.sim.accel import READ_NAMES, session_stats, simulate as simulate_rtl
from bitplane.sim.cluster import dask_client, scheduler_address
from bitplane.sim.shard import simulate_sharded
from bitplane.synth import flow
from bitplane.synth.project import write_project


def load(spec) -> Network:
    """A network spec (YAML + NPZ), validated (:func:`bitplane.gen.spec.load_network`)."""
    return spec if isinstance(spec, Network) else load_network(spec)


def import_model(fmt: str, source, output, *, name: str | None = None, **options) -> Network:
    """Import a trained model (``tensorpack``, ``state-dict``, ``qonnx`` or ``auto``) and write it
    as a spec to ``output`` (YAML, weights beside it as NPZ); returns the loaded spec. ``options``
    are those of ``bitplane import`` (``arch``, ``layers``, ``bits``, ``layout``, ``input_scale``,
    ``imagenet_norm``, ``float_last_act``)."""
    imp = importers.import_model(fmt, source, **options)
    info = importers.write_imported(imp, Path(output), name)
    return load_network(info["yaml"])


def golden(net, x, mode: str = "int", dequantize: bool = False, source: str = "x") -> np.ndarray:
    """The golden model on uint8 input codes ``x`` ``[N, C, H, W]``: ``int`` gives the raw
    last-layer accumulators (int64, what the hardware outputs; ``dequantize`` maps them to
    logits), ``float`` the fake-quant logits (float64). Errors about ``x`` name ``source``."""
    g = Golden(load(net))
    g.check_input(x, source)
    if mode == "float":
        if dequantize:
            raise InputError("dequantize only applies to mode 'int' (the float path already gives logits)")
        return g.run_float(x)
    if mode != "int":
        raise InputError(f"mode must be 'int' or 'float', not {mode!r}")
    y = g.run_int(x)
    return g.dequantize(y) if dequantize else y


def inspect(net) -> dict:
    """The integer form of a network (what ``bitplane inspect`` shows): ``name``, ``spec_hash``,
    ``input`` (shape, bits, scale), ``layers`` (spec layers), ``stages`` (one
    :meth:`describe` dict per hardware stage) and ``inputs`` (the stages or ``'input'`` each
    stage reads; graph networks only, chains read the stage before)."""
    net = load(net)
    low = lower(net)
    return {"name": net.name, "spec_hash": net.spec_hash,
            "input": {"shape": list(net.input_shape), "bits": net.input_bits, "scale": net.input_scale},
            "layers": len(net.layers), "stages": [s.describe() for s in low.stages],
            "inputs": {k: list(v) for k, v in low.inputs.items()} if net.is_graph else {}}


def plan(net, target_fps: float | None = None, clock_mhz: float = 100.0, lut_budget: int | None = None,
         fold_file=None, stream_bits: int | None = None, device: str | None = None) -> dict:
    """The folding plan (:func:`bitplane.gen.plan.plan`) of a network for one goal (``device``:
    as for :func:`compile`), with
    ``stages``: the names of the planned stages (folded layers and pools) in pipeline order, and
    ``fit``: the on-chip fit per device (:func:`bitplane.gen.devices.fit`)."""
    from bitplane.gen.devices import fit, plan_for_device  # lazy: Amaranth (hw cycle formulas), off the host path
    low = lower(load(net))
    p = plan_for_device(low, device, target_fps=target_fps, clock_mhz=clock_mhz, lut_budget=lut_budget,
                        fold_file=fold_file, stream_bits=stream_bits)
    p["fit"] = fit(low, p)
    folds = {f.stage for f in p["folds"]}
    p["stages"] = [s.name for s in low.stages if s.name in folds or s.name in p["pools"]]
    return p


def compile(net, output, target_fps: float | None = None, clock_mhz: float = 100.0,  # noqa: A001 (the verb)
            lut_budget: int | None = None, fold_file=None, embed_weights: bool = True,
            progress=None, stream_bits: int | None = None, device: str | None = None) -> Design:
    """Compile a network into the folder ``output`` (Verilog, weight image, manifest, test
    vectors); nothing is written unless everything checks out. ``device`` (``bitplane plan``'s
    fit table names it, e.g. ``xc7z020``): build the logic for that device's LUT size."""
    from bitplane.gen.compile import compile_network  # lazy: Amaranth, off the host-only path (bitplane run)
    compile_network(load(net), Path(output), target_fps=target_fps, clock_mhz=clock_mhz,
                    lut_budget=lut_budget, fold_file=fold_file, embed_weights=embed_weights,
                    progress=progress or (lambda msg: None), stream_bits=stream_bits, device=device)
    return Design(output)


def synthesize(design, target: str, clock_mhz: float = 100.0, top: str | None = None, progress=None,
               ooc: bool = False, cache_dir=None, jobs: int = 1, speed_grade: int | None = None,
               seed: int = 1) -> dict:
    """Open synthesis (``bitplane synth``) of a compiled folder or of a Verilog file (then ``top``
    names its top module): resources and Fmax for ``target``, and the ``top`` synthesised.
    ``speed_grade`` (ECP5: 6, 7, 8) and ``seed`` (nextpnr's) shape place and route.
    ``ooc``: the out-of-context resource estimate instead (:mod:`bitplane.synth.ooc`: each
    distinct block once, ``jobs`` runs at a time; no timing). Results are cached in ``cache_dir``
    (default: ``synth.flow``'s, or the out-of-context estimate's)."""
    if ooc and (speed_grade is not None or seed != 1):
        raise InputError("a speed grade or a nextpnr seed shapes place and route; --ooc runs synthesis only")
    path = Path(design)
    if path.is_dir():
        vfile = path / "accelerator.v"
        man = load_manifest(path)
        top = top or man["top"]
        if note := device_note(man, target):
            (progress or (lambda msg: None))(note)
    elif path.suffix == ".v" and path.exists():
        vfile = path
        if not top:
            raise InputError(f"{path}: give the top module with --top")
    else:
        raise InputError(f"{path}: no such compiled folder or Verilog file")
    text = read_text(vfile, "Verilog file", 2 << 30)
    if ooc:
        from bitplane.synth.ooc import ooc_synthesize  # lazy: imports amaranth (hw.top)
        rep = ooc_synthesize(text, top, target, cache_dir=cache_dir, progress=progress, jobs=jobs)
    else:
        rep = flow.synthesize(text, top, target, clock_mhz, progress=progress or (lambda msg: None),
                              cache_dir=cache_dir, speed_grade=speed_grade, seed=seed)
    return dict(rep, top=top)


def device_note(manifest: dict, target: str) -> str | None:
    """A hint when a compiled folder's popcounts do not suit the synthesis ``target``'s LUT size
    (``bitplane compile --device``), else None."""
    pops = {r["popcount"] for r in manifest.get("layers", []) if "popcount" in r}
    if not pops or target not in flow.TARGETS:
        return None
    six = flow.TARGETS[target].family == "xilinx"
    dev = (manifest.get("plan") or {}).get("device")
    if "lut6" in pops and not six:
        return (f"note: compiled for {dev or 'a 6-input-LUT device'} (compressor-tree popcounts, larger on "
                f"4-input LUTs); for {target} compile with --device ecp5-85k or without --device")
    if six and pops == {"adder"}:
        return ("note: compiled without --device (adder-tree popcounts); compile with --device xc7z020 (or the "
                "part's family) for compressor-tree popcounts, about a third fewer LUTs per lane on 6-input LUTs")
    return None


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

    def frames(self, path, single_ok: bool = False) -> np.ndarray:
        """Input codes from the file ``path`` (.npy, or .npz with ``x``) checked against this
        design's input (errors name the file; ``single_ok``: one ``[C, H, W]`` frame)."""
        x = load_codes(path)
        try:
            return check_frames(self.manifest, x, single_ok=single_ok)
        except InputError as e:
            raise InputError(f"{path}: {e}") from None

    def simulate(self, x, gap_pct: int = 0, stall_pct: int = 0, seed: int = 1, engine: str = "native",
                 waves: str | None = None, progress=None, workers: int | None = None,
                 scheduler: str | None = None):
        """RTL simulation of the whole accelerator on ``x``: ``(int64 accumulators, statistics)``.
        The native engine runs one session of the host driver on the simulated device (the same
        checks as on a board); ``cocotb`` drives every clock from Python (sim/tb_top.py).
        With ``workers`` or ``scheduler`` the frames are sharded over a Dask cluster (native engine,
        no waves): ``workers`` local processes, or the scheduler at ``scheduler`` (default
        ``$DASK_SCHEDULER_ADDRESS``) with ``workers`` shards."""
        progress = progress or (lambda msg: None)
        if not (0 <= gap_pct < 100 and 0 <= stall_pct < 100):
            raise InputError("gap_pct and stall_pct must lie in 0..99")
        if workers is None and not scheduler:
            if engine == "native":
                return self._session(x, gap_pct, stall_pct, seed, waves, progress)
            return simulate_rtl(self.folder, np.asarray(x), gap_pct=gap_pct, stall_pct=stall_pct, seed=seed,
                                waves=waves, progress=progress, engine=engine)
        if waves or engine != "native":
            raise InputError("sharded simulation (workers/scheduler) runs the native engine without waves")
        remote = scheduler_address(scheduler)
        with dask_client(remote, None if remote else workers, progress=progress) as client:
            return simulate_sharded(self.folder, np.asarray(x), client, shards=workers, gap_pct=gap_pct,
                                    stall_pct=stall_pct, seed=seed, progress=progress)

    def _session(self, x, gap_pct, stall_pct, seed, waves, progress):
        """One session of the host driver on the simulated device (:mod:`bitplane.host.sim_transport`,
        the native harness): the driver checks the device's identity, the weight load (CRC-32, word
        count), the ERROR flags and the frame counters; the frames go back to back. Statistics as
        :func:`bitplane.sim.accel.session_stats` (cycles counted by the simulation)."""
        x = check_frames(self.manifest, x)
        with self.open("sim", progress=progress, gap_pct=gap_pct, stall_pct=stall_pct, seed=seed, waves=waves) as dev:
            t0 = time.perf_counter()
            c0 = dev.t.cycles
            dev.load_weights()
            c1 = dev.t.cycles
            r = dev.infer(x, progress=False)
            regs = {k: dev.regs.read(k) for k in READ_NAMES}
            wall, total = time.perf_counter() - t0, dev.t.cycles
        done = r.extra["frame_done_cycles"]
        return r.acc, session_stats(self.manifest, len(x), c1 - c0, done[-1], done, wall,
                                    total / wall if wall > 0 else float("inf"), regs)

    def synthesize(self, target: str, clock_mhz: float = 100.0, progress=None) -> dict:
        """Open synthesis for ``target`` (``bitplane synth``'s targets): resources and Fmax."""
        return synthesize(self.folder, target, clock_mhz, progress=progress)

    def project(self, board: str, output) -> dict:
        """A Vivado project (Tcl + constraints) around the design for ``board``."""
        return write_project(self.folder, board, output)

    def open(self, device: str = "sim", timeout: float | None = None, progress=None, **sim_options):
        """The host driver (:class:`bitplane.host.driver.Accelerator`) on ``device``: ``sim``,
        ``xdma[:/dev/xdma0]`` or ``zynq[:regs,dma]``; use it as a context manager."""
        return Accelerator.open(self.folder, device, timeout=timeout, progress=progress, **sim_options)
