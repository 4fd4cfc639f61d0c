"""Sharded RTL simulation on Dask (``bitplane sim --workers N [--scheduler ADDRESS]``).

The frames are split into contiguous shards; each shard is one session of the native
Verilator harness (:mod:`sim.native`) on a Dask worker: weights loaded through ``s_axis``
as in :func:`sim.accel.simulate`, then the shard's frames back to back. The harness is
built once, here on the client (cached as usual), and its executable is shipped to the
workers (:func:`sim.native.install`), so no worker ever runs Verilator. The results are
gathered in shard order and checked per shard exactly as a single-process run is checked
(ID/BUILD_ID, weight checksum, ERROR, result count), so the output is identical to
:func:`sim.accel.simulate` on the same frames: each frame's accumulators depend only on the
frame and the weights.

Dask reschedules a shard whose worker dies mid-task (up to ``distributed.scheduler.
allowed-failures`` times); a shard's result is its whole output, so a retried shard can
neither drop nor duplicate frames.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from bitplane.core import weightimage as wimg
from bitplane.core.manifest import check_frames, load_manifest, read_weight_image

from .accel import finish, run_native, session
from .cluster import ClusterError, _distributed, total_threads
from .native import build, install


def shard_bounds(n: int, shards: int) -> list[tuple[int, int]]:
    """``shards`` contiguous ``[start, stop)`` ranges covering ``0..n`` (sizes differ by at most one)."""
    k = max(1, min(shards, n))
    edges = [i * n // k for i in range(k + 1)]
    return [(edges[i], edges[i + 1]) for i in range(k)]


def _run_shard(blob: bytes, key: str, m: dict, x: np.ndarray, image, seed: int, gap_pct: int, stall_pct: int):
    """Worker side: one native session of frames ``x`` on the shipped harness."""
    sim = install(blob, key, m["top"])
    out, st, r = run_native(sim, m, session(m, x, image), seed=seed, gap_pct=gap_pct, stall_pct=stall_pct)
    try:
        st["worker"] = _distributed().get_worker().address
    except ValueError:                                  # not inside a worker (direct call)
        st["worker"] = "local"
    st["pid"] = os.getpid()
    return out, st, r


def simulate_sharded(folder, x: np.ndarray, client, shards: int | None = None, gap_pct: int = 0,
                     stall_pct: int = 0, seed: int = 1, progress=None) -> tuple[np.ndarray, dict]:
    """:func:`sim.accel.simulate` (native engine) with the frames spread over ``client``'s workers.

    ``shards`` defaults to the cluster's worker threads. Returns ``(int64 accumulators, stats)``
    with ``stats["shards"]`` one row per shard (frames, measured cycles/frame, worker, wall time).
    """
    d = _distributed()
    folder = Path(folder)
    m = load_manifest(folder)
    x = check_frames(m, x)
    n = len(x)
    t0 = time.perf_counter()
    sim = build((folder / "accelerator.v").read_text(), m["top"], progress=progress)
    build_s = time.perf_counter() - t0
    blob, key = sim.exe.read_bytes(), sim.exe.parent.name
    bounds = shard_bounds(n, shards or total_threads(client))
    image = wimg.from_bytes(read_weight_image(folder, m))
    light = {k: m[k] for k in ("top", "streams", "cycles_per_frame")}
    if progress:
        progress(f"{n} frames in {len(bounds)} shard(s) of {bounds[0][1] - bounds[0][0]}"
                 f"{'' if len(bounds) == 1 else f'..{bounds[-1][1] - bounds[-1][0]}'} frames on "
                 f"{len(client.nthreads())} Dask worker(s); harness {len(blob) / 1e6:.1f} MB shipped once")
    t1 = time.perf_counter()
    # the executable and the weight image go to every worker once; each task carries its own frames
    # (uint8 codes, packed on the worker), so a retried task needs nothing but a live worker
    blob_f, image_f = client.scatter([blob, image], broadcast=True, hash=False)
    tag = os.urandom(4).hex()
    futures = [client.submit(_run_shard, blob_f, key, light, x[a:b], image_f, seed, gap_pct, stall_pct,
                             pure=False, key=f"bitplane-sim-{key}-{tag}-shard{i}")
               for i, (a, b) in enumerate(bounds)]
    done = 0
    try:
        with client.as_current():
            for _f in d.as_completed(futures):
                done += 1
                if progress:
                    progress(f"shard {done}/{len(futures)} done ({time.perf_counter() - t1:.1f} s)")
        results = client.gather(futures)
    except d.KilledWorker as e:
        raise ClusterError(f"a simulation shard was lost with its worker too often ({e})") from None
    finally:
        client.cancel(futures + [blob_f, image_f])
    wall = time.perf_counter() - t1
    ys, rows = [], []
    for i, ((a, b), (out, st, r)) in enumerate(zip(bounds, results)):
        y, stt = finish(m, x[a:b], out, st, r, session(m, x[a:b], image))
        ys.append(y)
        rows.append({"shard": i, "first": a, "frames": b - a, "cycles_per_frame": stt["cycles_per_frame"],
                     "latency_cycles": stt["latency_cycles"], "weight_cycles": stt["weight_cycles"],
                     "stream_cycles": stt["stream_cycles"], "wall_s": stt["wall_s"],
                     "sim_cycles_per_second": stt["sim_cycles_per_second"], "worker": st["worker"],
                     "regs": stt["regs"]})
    y = np.concatenate(ys)
    steady = [(r["cycles_per_frame"], r["frames"]) for r in rows if r["cycles_per_frame"]]
    cpf = sum(c * k for c, k in steady) / sum(k for _, k in steady) if steady else None
    clock = m["clock_mhz"]
    sim_cycles = sum(r["weight_cycles"] + r["stream_cycles"] for r in rows)
    stats = {"frames": n, "shards": rows, "cycles_per_frame": cpf, "planned_cycles_per_frame": m["cycles_per_frame"],
             "fps_at_clock": clock * 1e6 / cpf if cpf else None, "clock_mhz": clock,
             "latency_cycles": rows[0]["latency_cycles"], "weight_cycles": rows[0]["weight_cycles"],
             "stream_cycles": sum(r["stream_cycles"] for r in rows), "build_s": build_s, "wall_s": wall,
             "sim_cycles_per_second": sim_cycles / wall if wall > 0 else float("inf"),
             "workers": len(client.nthreads()), "regs": rows[0]["regs"]}
    return y, stats
