"""Whole-accelerator RTL simulation of a compiled folder in bulk: the fast path for whole test
sets from Python, each shard of ``bitplane sim --workers`` and ``bitplane sim --engine cocotb``
(plain ``bitplane sim`` runs the host driver on the simulated device, :mod:`host.sim_transport`).

Two engines run the same Verilator model of ``accelerator.v``:

* ``native`` (default): the C++ harness (:mod:`sim.native`) streams whole files of frames
  without Python in the loop; for test sets of thousands of frames.
* ``cocotb``: the cocotb testbench ``sim.tb_top`` with cocotbext-axi's AXI4-Lite master
  drives every clock from Python; slower by orders of magnitude, useful for a few frames,
  waveform debugging and as an independent second driver.

In both, the weights go in through
the path the host driver uses: ``CTRL.CLEAR_CHECKSUM``, ``CTRL.LOAD_WEIGHTS``, the image
as one ``s_axis`` frame, then ``WEIGHT_CHECKSUM``/``WEIGHT_WORDS``/``ERROR`` are read back
and checked against the manifest.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from bitplane.core.manifest import (check_frames, error_flags, identity_problem, load_manifest, read_weight_image,
                                    weights_problem)
from bitplane.core.errors import BitplaneError, InputError
from bitplane.core.packing import beat_ints, pack_frames, unpack_results, word_layout
from bitplane.core.regmap import mask as _bit, offset as _reg
from bitplane.core import weightimage as wimg

from .native import build, from_limbs, to_limbs


class SimError(BitplaneError):
    pass



ENGINES = ("native", "cocotb")
READ_NAMES = ("ID", "VERSION", "BUILD_ID", "ERROR", "WEIGHT_CHECKSUM", "WEIGHT_WORDS", "FRAMES_IN",
              "FRAMES_OUT", "STATUS")


def simulate(folder, x: np.ndarray, gap_pct: int = 0, stall_pct: int = 0, seed: int = 1, waves: str | None = None,
             load_weights: bool = True, progress=None, engine: str = "native") -> tuple[np.ndarray, dict]:
    """Run frames ``x`` through the RTL; returns ``(int64 accumulators, stats)``."""
    folder = Path(folder)
    m = load_manifest(folder)
    x = check_frames(m, x)
    if engine not in ENGINES:
        raise InputError(f"unknown simulation engine '{engine}' (choose from {', '.join(ENGINES)})")
    image = wimg.from_bytes(read_weight_image(folder, m)) if load_weights else None
    s = session(m, x, image)
    if engine == "native":
        sim = build((folder / "accelerator.v").read_text(), m["top"], trace=bool(waves), progress=progress)
        out, st, r = run_native(sim, m, s, seed=seed, gap_pct=gap_pct, stall_pct=stall_pct, fst=waves)
    else:
        out, st, r = _run_cocotb(folder, m, s["beats"], s["frames"], s["regs"], s["image_beats"], seed, gap_pct,
                                 stall_pct, s["budget"], waves, progress)
    return finish(m, x, out, st, r, s)


def session(m: dict, x: np.ndarray, image=None) -> dict:
    """What one simulation session streams for frames ``x`` (already checked against ``m``): the
    packed input beats, the register writes before them, the weight image ``image`` (through
    ``s_axis``, as the host driver loads it; ``None``: weights already in the memories) and the
    cycle budget. Needs only ``m["streams"]`` and ``m["cycles_per_frame"]``."""
    sin = m["streams"]["input"]
    beats = pack_frames(x, sin["bits"], sin["lanes"], sin["tdata_bits"])
    image_beats = word_layout(len(image), sin["tdata_bits"]).pack(image)[0] if image is not None else None
    ctrl = _reg("CTRL")
    regs = [(ctrl, _bit("CTRL", "CLEAR_COUNTERS") | _bit("CTRL", "CLEAR_CHECKSUM"))]
    if image is not None:
        regs.append((ctrl, _bit("CTRL", "LOAD_WEIGHTS")))
    n = len(x)
    budget = 20 * m["cycles_per_frame"] * max(n, 1) + 200 * sin["beats_per_frame"] + 100_000 \
        + 4 * (len(image) if image else 0)
    return {"beats": beats.reshape(-1, beats.shape[-1]), "frames": n, "regs": regs, "image": image,
            "image_beats": image_beats, "budget": budget}


def run_native(sim, m: dict, s: dict, seed: int = 1, gap_pct: int = 0, stall_pct: int = 0, fst=None):
    """One session (:func:`session`) on a built native harness; ``(out beats uint8 [beats, bytes],
    stats, registers)``."""
    sin, sout = m["streams"]["input"], m["streams"]["output"]
    w = s["image_beats"]
    out, st = sim.run(to_limbs(s["beats"]), sin["beats_per_frame"], sout["beats_per_frame"],
                      s["frames"], regs=s["regs"], weights=None if w is None else to_limbs(w),
                      read_regs=[_reg(k) for k in READ_NAMES],
                      seed=seed, gap_pct=gap_pct, stall_pct=stall_pct, max_cycles=s["budget"], fst=fst)
    return from_limbs(out, sout["bytes_per_beat"]), st, {name: st["regs"][_reg(name)] for name in READ_NAMES}


def _run_cocotb(folder, m, beats, n, regs, image, seed, gap_pct, stall_pct, budget, waves, progress):
    """The same session as the native harness, driven by ``sim.tb_top`` (cocotb); ``beats``
    and ``image`` are uint8 beats (:func:`session`)."""
    import time

    from .cocotb_run import run  # lazy: cocotb, only for --engine cocotb
    sin = m["streams"]["input"]
    B = sin["beats_per_frame"]
    steps = [{"op": "write", "reg": o, "value": v} for o, v in regs]
    if image is not None:
        steps.append({"op": "send", "beats": beat_ints(image), "last": [len(image) - 1]})
    steps.append({"op": "wait", "cycles": 1})
    steps.append({"op": "send", "beats": beat_ints(beats), "last": [k * B + B - 1 for k in range(n)]})
    steps.append({"op": "frames", "n": n})
    steps += [{"op": "read", "reg": _reg(k), "key": k} for k in READ_NAMES]
    if progress:
        progress(f"cocotb simulation of {m['top']} ({n} frames; builds are cached under build/cocotb)")
    t0 = time.perf_counter()
    res = run((folder / "accelerator.v").read_text(), m["top"], "bitplane.sim.tb_top",
              {"seed": seed, "idle": gap_pct / 100, "stall": stall_pct / 100, "timeout": budget, "steps": steps},
              name="accel", waves=bool(waves))
    frames = res["frames"]
    bpb = m["streams"]["output"]["bytes_per_beat"]
    out = np.frombuffer(b"".join(int(w).to_bytes(bpb, "little") for f in frames for w in f),
                        np.uint8).reshape(-1, bpb)
    start = res["send_at"][-1]                        # the frames' send step
    done = [c - start for c in res["done_at"]]
    st = {"ok": len(frames) == n, "weight_cycles": start, "stream_cycles": res["cycles"] - start,
          "frame_done": done, "wall_s": res["wall_s"],
          "cycles_per_second": res["cycles"] / res["wall_s"] if res["wall_s"] > 0 else float("inf"),
          "total_wall_s": time.perf_counter() - t0}
    if waves and res.get("waves_dir"):
        st["waves_dir"] = res["waves_dir"]
    r = {k: v[-1] for k, v in res["reads"].items()}
    return out, st, r


def finish(m, x, out, st, r, s):
    """Check the registers read back and the result count of a session; ``(accumulators, stats)``."""
    load_weights, image, budget = s["image"] is not None, s["image"], s["budget"]
    sout = m["streams"]["output"]
    n = len(x)
    problem = identity_problem(m, r.__getitem__, "the simulated device", "the compiled folder")
    if not problem and load_weights:
        problem = weights_problem(m, r["WEIGHT_CHECKSUM"], r["WEIGHT_WORDS"], len(image))
    if problem:
        raise SimError(problem)
    if r["ERROR"]:
        raise SimError(f"the accelerator raised ERROR = 0x{r['ERROR']:X} ({', '.join(error_flags(m, r['ERROR']))})")
    if not st["ok"] or len(out) != n * sout["beats_per_frame"]:
        raise SimError(f"simulation stopped after {st['stream_cycles']:,} cycles with {len(out)} of "
                       f"{n * sout['beats_per_frame']} result beats (cycle budget {budget:,})")
    y = unpack_results(out, tuple(sout["shape"]), sout["words_per_value"], sout["tdata_bits"])
    stats = session_stats(m, n, st["weight_cycles"], st["stream_cycles"], st["frame_done"], st["wall_s"],
                          st["cycles_per_second"], r)
    if "waves_dir" in st:
        stats["waves_dir"] = st["waves_dir"]
    return y, stats


def session_stats(m, n: int, weight_cycles: int, stream_cycles: int, frame_done, wall_s: float,
                  cycles_per_second: float, regs: dict) -> dict:
    """The statistics of one simulated session of ``n`` frames (``bitplane sim`` prints them):
    ``frame_done`` is the cycle each result frame completed, counted from the first input beat."""
    done = np.asarray(frame_done, dtype=np.int64)
    # steady-state period: completions after the first frame (its latency excluded)
    steady = float((done[-1] - done[0]) / (len(done) - 1)) if len(done) > 2 else None
    clock = m["clock_mhz"]
    return {
        "frames": n, "weight_cycles": weight_cycles, "stream_cycles": stream_cycles,
        "latency_cycles": int(done[0]) if len(done) else None,
        "cycles_per_frame": steady, "planned_cycles_per_frame": m["cycles_per_frame"],
        "fps_at_clock": clock * 1e6 / steady if steady else None, "clock_mhz": clock,
        "wall_s": wall_s, "sim_cycles_per_second": cycles_per_second, "regs": regs,
    }
