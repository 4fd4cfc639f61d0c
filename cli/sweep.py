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
      synth: [xc7z020, ecp5-85k]               # synthesis targets (synth/flow.py)
    clock_mhz: 100
    measures: [plan, sim, synth, accuracy]     # default: all four
    validation: {data: ../data/fashion-mnist-test-500.npz, frames: 500}   # .npz with x, y
    sim_frames: 4                              # frames per RTL simulation (>= 3)

A point is (network, bits) x folding goal x synthesis target. Measures: ``plan`` (planned
cycles/frame, frames/s at the clock, planner LUT estimate), ``sim`` (cycles/frame measured by
the native Verilator harness on the first ``sim_frames`` validation frames, outputs checked
identical to the golden int path), ``synth`` (LUT/FF/BRAM from synth/flow.py, BRAM in
36-kbit block equivalents; Fmax from nextpnr on ECP5/iCE40, none for the Xilinx estimates),
``accuracy`` (the golden int path on the validation frames against their labels).

Every step is a Dask task on the cluster of :mod:`sim.cluster` (``--workers``, ``--scheduler``):
training once per (network, bits), accuracy once per network, compile + simulation once per
design, synthesis once per (design, target). Results are cached in ``DIR/cache`` by a hash of
their inputs (the design hash for compile/sim/synth), so a rerun computes only what is missing;
a failed step fails the points that need it, each reported with its error, and the others go
on. Trained specs land in ``DIR/nets``, compiled designs in ``DIR/designs``. Outputs:
``DIR/points.csv``, ``DIR/points.json``, ``DIR/report.md`` and ``DIR/pareto.png``.

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
           "fmax_mhz", "accuracy", "error")


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
    synth = lst("synth")
    for j, s in enumerate(synth):
        if s not in TARGETS:
            raise bad(f"axes.synth[{j}]", f"unknown synthesis target {s!r} (choose from {', '.join(TARGETS)})")

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
            "synth": synth, "measures": list(measures), "data": data, "sim_frames": sim_frames, "clock_mhz": clock}


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
    """Compile one design; with ``sim_x`` also simulate it (native harness) against the golden int path."""
    from bitplane.gen.compile import compile_network  # lazy: Amaranth, off the start-up path of every command
    with tempfile.TemporaryDirectory(prefix="bp-sweep-design-") as tmp:
        net = _materialize(blob, Path(tmp))
        kw = {goal: value} if goal != "smallest" else {}
        m = compile_network(net, Path(tmp) / "hw", clock_mhz=clock_mhz, progress=lambda s: None, **kw)
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

def run_sweep(sw: dict, out: Path, client, log=print) -> list[dict]:
    """Submit every missing step, wait with a progress bar, write the outputs; returns the rows."""
    d = _distributed()
    cache = out / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    data = sw["data"]
    dkey = _key(hashlib.sha256(data["x"].tobytes() + data["y"].tobytes()).hexdigest()) if data else None
    want = set(sw["measures"])
    jobs = {}                 # cache name -> (future, on_done)

    def cached(name):
        p = cache / f"{name}.json"
        return json.loads(p.read_text()) if p.exists() else None

    def step(name, fn, *args, save=None):
        """A cached result, or a submitted task (its result saved to the cache when it arrives)."""
        hit = cached(name)
        if hit is not None:
            return hit
        if name not in jobs:
            jobs[name] = (client.submit(fn, *args, key=f"bitplane-sweep-{name}", pure=False), save)
        return jobs[name][0]

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
        return {k: v for k, v in r.items() if k != "files"} | {"dir": f"designs/{name}"}   # relative to DIR

    x_f = y_f = sim_f = None
    if data:
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
                    step(f"net-{nname}", task_train, net["train"], bits, label, save=save_net)
            acc = step(f"acc-{nkey}-{dkey}", task_accuracy, net_src, x_f, y_f) if "accuracy" in want else None
            for goal, value in sw["goals"]:
                dname = _key("design", nkey, goal, value, sw["clock_mhz"], dkey if "sim" in want else None,
                             sw["sim_frames"] if "sim" in want else None)
                hit = cached(f"design-{dname}")
                if hit:
                    des = hit
                    verilog = (out / hit["dir"] / "accelerator.v").read_text()
                    syn_src = {"top": hit["top"], "files": {"accelerator.v": verilog}}
                else:
                    des = syn_src = step(f"design-{dname}", task_design, net_src, goal, value, sw["clock_mhz"],
                                         sim_f if "sim" in want else None, save=save_design)
                for target in (sw["synth"] if "synth" in want else [None]):
                    syn = step(f"synth-{_key(dname, target, sw['clock_mhz'])}", task_synth, syn_src, target,
                               sw["clock_mhz"]) if target else None
                    points.append({"network": net["name"], "W": bits[0] if bits else None,
                                   "A": bits[1] if bits else None, "goal": goal, "goal_value": value,
                                   "synth_target": target, "design": dname, "_acc": acc, "_des": des, "_syn": syn})
    futures = {f: (name, save) for name, (f, save) in jobs.items()}
    log(f"{sw['name']}: {len(points)} point(s); {len(jobs)} task(s) to run, the rest from the cache ({cache})")
    errors = {}
    bar = progress_bar(len(futures), unit="tasks", min_total=1, prefix="sweep ") if futures else None
    done = 0
    with client.as_current():
        for f in d.as_completed(list(futures)):
            name, save = futures[f]
            done += 1
            if f.status == "finished":
                res = f.result()
                rec = save(name, res) if save else res
                atomic_write(cache / f"{name}.json", lambda fh, r=rec: fh.write(json.dumps(r, indent=1).encode()))
            else:
                e = f.exception()
                errors[name] = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"
                log(f"\n{name} failed: {errors[name]}")
            if bar:
                bar(done, final=done == len(futures), note=f"  {len(errors)} failed")
    rows = [_row(p, cache, errors) for p in points]
    write_outputs(sw, out, rows)
    return rows


def _row(p, cache, errors) -> dict:
    """One output row: the cached results of the point's steps, or the first error among them."""
    row = {k: p[k] for k in ("network", "W", "A", "goal", "goal_value", "synth_target", "design")}
    err = None
    for part in ("_des", "_acc", "_syn"):
        f = p[part]
        if f is None:
            continue
        if isinstance(f, dict):
            res = f
        else:
            name = f.key.removeprefix("bitplane-sweep-")
            p_cache = cache / f"{name}.json"
            if p_cache.exists():
                res = json.loads(p_cache.read_text())
            else:
                err = err or errors.get(name) or f"{name}: no result"
                continue
        row.update({k: v for k, v in res.items() if k in COLUMNS})
    row["error"] = err
    return row


# ---------------------------------------------------------------------------------------------- outputs

def pareto(rows) -> list[bool]:
    """Points not dominated in (fewer LUTs, more frames/s, higher accuracy); LUTs from synthesis when
    measured, else the planner's estimate; frames/s simulated when measured, else planned."""
    def obj(r):
        lut = r.get("LUT") if r.get("LUT") is not None else r.get("planned_luts")
        fps = r.get("sim_fps") or r.get("planned_fps")
        return None if lut is None or fps is None or r.get("error") else (lut, fps, r.get("accuracy") or 0.0)
    objs = [obj(r) for r in rows]
    out = []
    for i, a in enumerate(objs):
        if a is None:
            out.append(False)
            continue
        dom = any(b is not None and j != i and b[0] <= a[0] and b[1] >= a[1] and b[2] >= a[2] and b != a
                  for j, b in enumerate(objs))
        out.append(not dom)
    return out


def write_outputs(sw, out: Path, rows):
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
    atomic_write(out / "points.json", lambda fh: fh.write(json.dumps(
        {"sweep": sw["name"], "file": sw["path"], "clock_mhz": sw["clock_mhz"], "measures": sw["measures"],
         "points": [{k: r.get(k) for k in cols} for r in rows]}, indent=1).encode()))
    _plot(sw, rows, out / "pareto.png")
    fmt = lambda v, f="": "-" if v is None or v == "" else format(v, f)  # noqa: E731
    L = [f"# Sweep {sw['name']}", "", f"{time.strftime('%Y-%m-%d %H:%M')}; `{Path(sw['path']).name}`, "
         f"clock {sw['clock_mhz']:g} MHz, measures {', '.join(sw['measures'])}"
         + (f", accuracy on {len(sw['data']['y'])} frames of {Path(sw['data']['path']).name} (golden int path)"
            if sw["data"] else "") + ".", "",
         f"{sum(front)} Pareto-optimal point(s) (fewer LUTs, more frames/s, higher accuracy) marked *; "
         f"{sum(1 for r in rows if r.get('error'))} failed.", "", "![pareto](pareto.png)", "",
         "| | network | W | A | goal | synth | planned cyc/frame | sim cyc/frame | RTL = golden | fps | LUT | FF | "
         "BRAM36 | Fmax MHz | accuracy | error |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        goal = "smallest" if r["goal"] == "smallest" else f"{r['goal'].replace('_', ' ')} {r['goal_value']:g}"
        L.append(f"| {'*' if r['pareto'] else ''} | {r['network']} | {fmt(r['W'])} | {fmt(r['A'])} | {goal} | "
                 f"{fmt(r['synth_target'])} | {fmt(r.get('planned_cycles_per_frame'), ',')} | "
                 f"{fmt(r.get('sim_cycles_per_frame'), ',.0f')} | {fmt(r.get('rtl_exact'))} | "
                 f"{fmt(r.get('sim_fps') or r.get('planned_fps'), ',.0f')} | {fmt(r.get('LUT'), ',')} | "
                 f"{fmt(r.get('FF'), ',')} | {fmt(r.get('BRAM36'))} | {fmt(r.get('fmax_mhz'), '.1f')} | "
                 f"{fmt(r.get('accuracy'), '.3f')} | {r.get('error') or ''} |")
    atomic_write(out / "report.md", lambda fh: fh.write(("\n".join(L) + "\n").encode()))


def _plot(sw, rows, path: Path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    ok = [r for r in rows if not r.get("error") and (r.get("sim_fps") or r.get("planned_fps"))]
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    markers = {t: m for t, m in zip(dict.fromkeys(r["synth_target"] for r in ok), "osD^v<>")}
    accs = [r.get("accuracy") for r in ok if r.get("accuracy") is not None]
    lo, hi = min(accs, default=0.0), max(accs, default=1.0)
    lo, hi = (lo - 0.005, hi + 0.005) if hi - lo < 0.01 else (lo, hi)
    sc = None
    for r in ok:
        lut = r.get("LUT") if r.get("LUT") is not None else r.get("planned_luts")
        fps = r.get("sim_fps") or r.get("planned_fps")
        sc = ax.scatter(lut, fps, c=[r.get("accuracy") if r.get("accuracy") is not None else 0.0],
                        cmap="viridis", vmin=lo, vmax=hi,
                        marker=markers[r["synth_target"]], s=70 if r["pareto"] else 30,
                        edgecolors="red" if r["pareto"] else "none", linewidths=1.5)
        if r["pareto"]:
            ax.annotate(f"W{r['W']}A{r['A']}" if r["W"] else r["network"], (lut, fps), fontsize=7,
                        xytext=(4, 3), textcoords="offset points")
    if sc is not None and accs:
        fig.colorbar(sc, ax=ax, label="accuracy (golden int path)")
    for t, m in markers.items():
        ax.scatter([], [], marker=m, color="grey", label=t or "planner estimate")
    if markers:
        ax.legend(fontsize=7, title="LUTs from", title_fontsize=7)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("LUTs (synthesis; planner estimate without it)")
    ax.set_ylabel(f"frames/s at {sw['clock_mhz']:g} MHz (simulated)")
    ax.set_title(f"{sw['name']}: red rim = Pareto-optimal (LUTs, frames/s, accuracy)", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    atomic_write(path, lambda fh: fig.savefig(fh, format="png", dpi=100))
    plt.close(fig)


# ---------------------------------------------------------------------------------------------- the command

def cmd_sweep(args) -> int:
    sw = load_sweep(args.sweep)                  # every check before anything is written
    out = Path(args.output)
    if out.exists() and not out.is_dir():
        raise InputError(f"-o {out}: exists and is not a folder")
    err = lambda m: print(m, file=sys.stderr)  # noqa: E731
    t0 = time.perf_counter()
    with dask_client(args.scheduler, args.workers, progress=err) as client:
        rows = run_sweep(sw, out, client, log=err)
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
    p.set_defaults(fn=cmd_sweep)

