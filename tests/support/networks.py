"""The example networks the end-to-end tests run, their inputs, and the tiny network compiled
once per session (``tiny`` fixture in tests/conftest.py)."""
from __future__ import annotations

import numpy as np

ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]
DIGITS = np.load(ROOT / "examples" / "data" / "mnist-256.npz", allow_pickle=False)["x"]

# example network -> compile target (frames/s at 100 MHz) that keeps simulation short
EXAMPLES = {"lenet-w2a2": 1500, "lenet-lq-w2a2": 1500, "lenet-ttq-a2": 1500, "tfc-w1a1": 20000,
            "tfc-w2a2": 10000}


def inputs(net, n, seed=0):
    if tuple(net.input_shape) == (1, 28, 28):
        return DIGITS[:n]
    rng = np.random.default_rng(seed)
    return rng.integers(0, 1 << net.input_bits, (n, *net.input_shape)).astype(np.uint8)


TINY = {"name": "tiny", "input": {"shape": [2, 5, 5], "bits": 4, "scale": 1 / 15}, "layers": [
    {"name": "c0", "op": "conv", "out_channels": 4, "kernel": 3, "stride": 1, "padding": "same", "bias": True,
     "weight_quant": {"type": "dorefa", "bits": 2}},
    {"name": "bn0", "op": "batchnorm", "eps": 1e-4},
    {"name": "a0", "op": "quant_act", "nonlin": "clip01", "quant": {"type": "dorefa", "bits": 2}},
    {"name": "p0", "op": "maxpool", "kernel": 2, "stride": 2, "padding": "same"},
    {"name": "fc", "op": "dense", "out_features": 3, "bias": True, "weight_quant": {"type": "int", "bits": 8}}]}


def small_spec(name, wq, aq, nonlin, shape=(1, 12, 12), padding0="same", bias0=False, first_wq=None,
               last_wq=None) -> dict:
    """conv(3x3, ``padding0``) -> bn -> act -> 2x2 pool -> conv(3x3/2) -> bn -> act -> dense(5)
    on ``shape`` with the weight quantizer ``wq`` (the first conv's ``first_wq`` and the dense
    layer's ``last_wq`` when given, else the spec default) and the activation quantizer ``aq``."""
    c0 = {"name": "conv0", "op": "conv", "out_channels": 4, "kernel": 3, "padding": padding0, "bias": bias0}
    if first_wq:
        c0["weight_quant"] = first_wq
    fc = {"name": "fc0", "op": "dense", "out_features": 5, "bias": True}
    if last_wq:
        fc["weight_quant"] = last_wq
    return {"name": name, "input": {"shape": list(shape), "bits": 8, "scale": 1 / 255}, "layers": [
        c0, {"name": "bn0", "op": "batchnorm", "eps": 1e-4},
        {"name": "act0", "op": "quant_act", "nonlin": nonlin, "quant": aq},
        {"name": "pool0", "op": "maxpool", "kernel": 2, "stride": 2, "padding": "same"},
        {"name": "conv1", "op": "conv", "out_channels": 6, "kernel": 3, "stride": 2, "padding": "same",
         "weight_quant": wq},
        {"name": "bn1", "op": "batchnorm", "eps": 1e-4},
        {"name": "act1", "op": "quant_act", "nonlin": nonlin, "quant": aq},
        fc]}


def rtl_check(net, x, out_dir, target_fps: float) -> dict:
    """Compile ``net`` for ``target_fps`` at 100 MHz into ``out_dir`` and run ``x`` through the
    native Verilator harness twice, under random input gaps and output stalls and back to back.
    Returns ``exact`` (both outputs equal the golden integer accumulators), the manifest ``m``,
    the back-to-back run's stats ``st`` and the seconds spent compiling (``compile_s``), building
    + simulating (``build_sim_s``) and simulating (``sim_s``)."""
    import time
    from bitplane.gen.compile import compile_network
    from bitplane.gen.golden import Golden
    from bitplane.sim.accel import simulate
    t0 = time.perf_counter()
    m = compile_network(net, out_dir, target_fps=target_fps, clock_mhz=100, progress=lambda s: None)
    t1 = time.perf_counter()
    want = Golden(net).run_int(x)
    y, _ = simulate(out_dir, x, gap_pct=20, stall_pct=30, seed=3)
    t2 = time.perf_counter()
    y2, st = simulate(out_dir, x)
    t3 = time.perf_counter()
    return {"exact": bool(np.array_equal(y, want) and np.array_equal(y2, want)), "m": m, "st": st,
            "compile_s": t1 - t0, "build_sim_s": t2 - t1, "sim_s": t3 - t2}
