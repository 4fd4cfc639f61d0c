"""Whole accelerators: compile -> RTL simulation, bit-exact vs the golden int path.

Native Verilator harness for bulk frames (gaps on the input, backpressure on the output,
frames back to back); the cocotb top testbench for framing errors, soft reset mid-frame
and malformed weight images.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from bitplane.cli.main import main as cli
from bitplane.gen.compile import compile_network
from bitplane.core.errors import NotSupportedError
from bitplane.gen.golden import Golden
from bitplane.gen.lower import MatmulStage
from bitplane.gen.plan import PlanError, simd_options
from bitplane.gen.spec import load_network
from bitplane.core.packing import beat_ints, pack_frames
from bitplane.core import regmap
from bitplane.core.regmap import mask as _f, offset as _r
from bitplane.core import weightimage as wimg
from bitplane.hw.lint_waivers import lint
from bitplane.sim.accel import simulate
from bitplane.sim.cocotb_run import run
from tests.support.netgen import network_plans, write_network
from tests.support.networks import EXAMPLES, ROOT, TINY, inputs as _inputs

@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_example_network_bit_exact_and_on_plan(name, tmp_path):
    net = load_network(ROOT / "examples" / f"{name}.yaml")
    m = compile_network(net, tmp_path / "out", target_fps=EXAMPLES[name], progress=lambda s: None)
    x = _inputs(net, 12)
    want = Golden(net).run_int(x)
    y, st_ = simulate(tmp_path / "out", x, gap_pct=20, stall_pct=30, seed=3)
    assert np.array_equal(y, want)
    # throughput: no gaps/stalls, frames back to back, within 5 % of the planner
    y2, st2 = simulate(tmp_path / "out", x[:6])
    assert np.array_equal(y2, want[:6])
    assert abs(st2["cycles_per_frame"] - m["cycles_per_frame"]) <= 0.05 * m["cycles_per_frame"], st2
    # the manifest's test vectors, mapped to logits by the manifest's own affine map, are the
    # float (fake-quant, training-semantics) path's logits: an independent computation (float
    # ops, not bit-planes); only LQ-Nets/TTQ fixed-point coefficients leave a small error
    with np.load(tmp_path / "out" / "testvectors.npz", allow_pickle=False) as z:
        tx, ty = z["x"], z["y"]
    aff = m["output_affine"]
    logits = ty.reshape(len(ty), -1, len(aff["scale"])) * np.asarray(aff["scale"]) + np.asarray(aff["bias"])
    ref = Golden(net).run_float(tx).reshape(logits.shape)
    assert np.abs(logits - ref).max() <= 0.05 * np.abs(ref).max()
    assert np.array_equal(logits.reshape(len(ty), -1).argmax(1), ref.reshape(len(ty), -1).argmax(1))


@pytest.mark.parametrize("name,fps", [("tfc-w1a1", 20000), ("lenet-w2a2", 1500),
                                      pytest.param("lenet-lq-w2a2", 1500, marks=pytest.mark.slow)])
def test_compiled_for_a_6_input_lut_device_bit_exact_and_on_plan(name, fps, tmp_path):
    """``--device xc7z020``: every engine's popcounts are compressor trees (``hw.popcount``;
    XNOR path on TFC-W1A1, AND path with Horner accumulation on LeNet W2A2, coefficient tables
    on LQ-Nets) and its loadable memories share one read/write address (``hw.memory.
    loadable_ports``; the weights arrive through s_axis); same outputs and cycles/frame as the
    plan, under gaps and backpressure."""
    net = load_network(ROOT / "examples" / f"{name}.yaml")
    m = compile_network(net, tmp_path / "out", target_fps=fps, progress=lambda s: None, device="xc7z020")
    engines = [r for r in m["layers"] if "popcount" in r]
    assert engines and all(r["popcount"] == "lut6" and r["shared_address"] for r in engines)
    assert m["plan"]["device"] == "xc7z020"
    x = _inputs(net, 8)
    y, _ = simulate(tmp_path / "out", x, gap_pct=20, stall_pct=30, seed=4)
    assert np.array_equal(y, Golden(net).run_int(x))
    y2, st2 = simulate(tmp_path / "out", x[:5])
    assert np.array_equal(y2, y[:5])
    assert abs(st2["cycles_per_frame"] - m["cycles_per_frame"]) <= 0.05 * m["cycles_per_frame"], st2


@pytest.mark.slow
@pytest.mark.parametrize("name,fps", [("cnv-w1a1", 1000), ("cnv-w2a2", 500), ("svhn-dorefa-w1a2", 1000)])
def test_large_example_bit_exact(name, fps, tmp_path):
    net = load_network(ROOT / "examples" / f"{name}.yaml")
    m = compile_network(net, tmp_path / "out", target_fps=fps, progress=lambda s: None)
    x = _inputs(net, 4)
    y, st_ = simulate(tmp_path / "out", x, gap_pct=10, stall_pct=20, seed=1)
    assert np.array_equal(y, Golden(net).run_int(x))
    y2, st2 = simulate(tmp_path / "out", x[:3])
    assert np.array_equal(y2, y[:3])
    assert abs(st2["cycles_per_frame"] - m["cycles_per_frame"]) <= 0.05 * m["cycles_per_frame"]


# A maxpool between a conv and a cabs activation (DoReFa's SVHN net): pooling runs on raw
# accumulators (min-pool where the batchnorm scale is negative), then a threshold unit.
ACCPOOL = {"name": "accpool", "input": {"shape": [3, 8, 8], "bits": 8, "scale": 1 / 255}, "layers": [
    {"name": "c0", "op": "conv", "out_channels": 6, "kernel": 3, "padding": "valid", "bias": True},
    {"name": "p0", "op": "maxpool", "kernel": 2, "stride": 2, "padding": "same"},
    {"name": "a0", "op": "quant_act", "nonlin": "cabs", "quant": {"type": "dorefa", "bits": 2}},
    {"name": "c1", "op": "conv", "out_channels": 8, "kernel": 3, "padding": "same", "bias": False,
     "weight_quant": {"type": "dorefa", "bits": 1}},
    {"name": "bn1", "op": "batchnorm", "eps": 1e-4},
    {"name": "p1", "op": "maxpool", "kernel": 2, "stride": 2, "padding": "same"},
    {"name": "a1", "op": "quant_act", "nonlin": "cabs", "quant": {"type": "dorefa", "bits": 2}},
    {"name": "fc", "op": "dense", "out_features": 4, "bias": True}]}


def test_accumulator_pooling_network_bit_exact(tmp_path):
    net = load_network(write_network(ACCPOOL, tmp_path, seed=7))
    low = Golden(net).lowered
    pools = [s.pool for s in low.stages if isinstance(s, MatmulStage) and s.pool is not None]
    assert [p.where for p in pools] == ["acc", "acc"]
    assert not pools[1].maximize.all()          # negative batchnorm gammas: some channels min-pool
    m = compile_network(net, tmp_path / "out", target_fps=20000, embed_weights=False, progress=lambda s: None)
    assert [r.get("acc_pool") for r in m["layers"][:2]] == [True, True]
    x = _inputs(net, 6, seed=3)
    y, st_ = simulate(tmp_path / "out", x, gap_pct=20, stall_pct=30, seed=2)
    assert np.array_equal(y, Golden(net).run_int(x))
    y2, st2 = simulate(tmp_path / "out", x)
    assert np.array_equal(y2, y)
    assert abs(st2["cycles_per_frame"] - m["cycles_per_frame"]) <= 0.05 * m["cycles_per_frame"], st2


@settings(max_examples=3, deadline=None, suppress_health_check=list(HealthCheck))
@given(plan=network_plans(max_convs=2), data=st.data())
def test_random_networks_random_folds(plan, data, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("rand")
    net = load_network(write_network(plan, tmp, seed=1))
    low = Golden(net).lowered
    assume(all(s.groups == 1 and not (s.raw and s.pool is not None)
               for s in low.stages if isinstance(s, MatmulStage)))
    folds = {}
    for s in low.stages:
        if isinstance(s, MatmulStage):
            pe = data.draw(st.sampled_from([d for d in range(1, s.out_channels + 1) if s.out_channels % d == 0]))
            folds[s.name] = {"pe": pe, "simd": data.draw(st.sampled_from(simd_options(s))),
                             "popcount": data.draw(st.sampled_from(["adder", "lut6"]))}
    (tmp / "fold.yaml").write_text(json.dumps(folds))
    try:
        compile_network(net, tmp / "out", fold_file=tmp / "fold.yaml", progress=lambda s: None)
    except NotSupportedError:
        assume(False)
    x = _inputs(net, 3, seed=2)
    y, _ = simulate(tmp / "out", x, gap_pct=25, stall_pct=40, seed=5)
    assert np.array_equal(y, Golden(net).run_int(x))


# ---------------------------------------------------------------------------- errors before writing

def test_bad_fold_and_budget_fail_before_any_file(tmp_path, capsys):
    spec = ROOT / "examples" / "lenet-w2a2.yaml"
    (tmp_path / "fold.yaml").write_text("conv1: {pe: 3, simd: 5}\n")
    out = tmp_path / "out"
    assert cli(["compile", str(spec), "-o", str(out), "--fold", str(tmp_path / "fold.yaml")]) == 1
    err = capsys.readouterr().err
    assert "conv1" in err and "PE=3" in err and "Traceback" not in err
    assert cli(["compile", str(spec), "-o", str(out), "--lut-budget", "10"]) == 1
    assert "LUT budget 10 is too small" in capsys.readouterr().err
    assert not out.exists()
    with pytest.raises(PlanError):
        compile_network(load_network(spec), out, target_fps=1e9, progress=lambda s: None)
    assert not out.exists()


# ---------------------------------------------------------------------------- cocotb: framing, reset, weights


def test_top_lints_clean(tiny):
    net, out, m = tiny
    assert lint((out / "accelerator.v").read_text(), m["top"]) == []


def test_runtime_weight_loading_is_what_computes(tmp_path):
    net = load_network(write_network(TINY, tmp_path, seed=4))
    compile_network(net, tmp_path / "out", embed_weights=False, progress=lambda s: None)
    x = _inputs(net, 4, seed=1)
    want = Golden(net).run_int(x)
    y, st_ = simulate(tmp_path / "out", x, gap_pct=10, stall_pct=10)
    assert np.array_equal(y, want)
    assert st_["regs"]["WEIGHT_WORDS"] == len(wimg.from_bytes((tmp_path / "out" / "weights.bin").read_bytes()))
    y0, _ = simulate(tmp_path / "out", x, load_weights=False)      # empty memories: not the network
    assert not np.array_equal(y0, want)


def test_framing_errors_soft_reset_and_bad_weights_recover(tiny):
    net, out, m = tiny
    x = _inputs(net, 5, seed=9)
    want = Golden(net).run_int(x)
    beats = [beat_ints(f) for f in pack_frames(x, net.input_bits, m["streams"]["input"]["lanes"],
                                                m["streams"]["input"]["tdata_bits"])]
    B = len(beats[0])
    ERR, CTRL = _r("ERROR"), _r("CTRL")
    clear_all = 0xF
    image = wimg.from_bytes((out / "weights.bin").read_bytes())
    bad_image = [0xDEADBEEF] + image[1:]
    steps = [
        {"op": "read", "reg": _r("ID"), "key": "id"},
        # 1. a good frame
        {"op": "send", "beats": beats[0], "last": [B - 1]}, {"op": "frames", "n": 1},
        # 2. early tlast: completed with zeros, one (meaningless) result, FRAMING
        {"op": "send", "beats": beats[1][:B // 2], "last": [B // 2 - 1]}, {"op": "frames", "n": 2},
        {"op": "read", "reg": ERR, "key": "err_early"}, {"op": "write", "reg": ERR, "value": clear_all},
        # 3. the next good frame is correct
        {"op": "send", "beats": beats[2], "last": [B - 1]}, {"op": "frames", "n": 3},
        # 4. late tlast: cut at its length, extra beats dropped, FRAMING
        {"op": "send", "beats": beats[3] + beats[3][:5], "last": [B + 4]}, {"op": "frames", "n": 4},
        {"op": "read", "reg": ERR, "key": "err_late"}, {"op": "write", "reg": ERR, "value": clear_all},
        {"op": "send", "beats": beats[4], "last": [B - 1]}, {"op": "frames", "n": 5},
        # 5. soft reset mid-frame: ABORTED, no result; the next frame is correct
        {"op": "send", "beats": beats[0][:B // 2], "last": []}, {"op": "wait", "cycles": 10},
        {"op": "read", "reg": _r("STATUS"), "key": "status_mid"},
        {"op": "write", "reg": CTRL, "value": _f("CTRL", "SOFT_RESET")},
        {"op": "read", "reg": ERR, "key": "err_reset"}, {"op": "write", "reg": ERR, "value": clear_all},
        {"op": "send", "beats": beats[2], "last": [B - 1]}, {"op": "frames", "n": 6},
        # 6. a malformed weight image: WEIGHT_FORMAT, rest dropped, then a correct reload
        {"op": "write", "reg": CTRL, "value": _f("CTRL", "CLEAR_CHECKSUM") | _f("CTRL", "LOAD_WEIGHTS")},
        {"op": "send", "beats": bad_image, "last": [len(bad_image) - 1]},
        {"op": "read", "reg": ERR, "key": "err_weights"}, {"op": "write", "reg": ERR, "value": clear_all},
        {"op": "write", "reg": CTRL, "value": _f("CTRL", "CLEAR_CHECKSUM") | _f("CTRL", "LOAD_WEIGHTS")},
        {"op": "send", "beats": image, "last": [len(image) - 1]},
        # the checksum covers a word once the loader has taken it, a few cycles after s_axis did
        # (host/driver.py polls WEIGHT_WORDS and STATUS.WEIGHTS_LOADING first)
        {"op": "wait", "cycles": 20},
        {"op": "read", "reg": _r("WEIGHT_CHECKSUM"), "key": "checksum"},
        {"op": "read", "reg": ERR, "key": "err_final"},
        {"op": "send", "beats": beats[1], "last": [B - 1]}, {"op": "frames", "n": 7},
        {"op": "read", "reg": _r("FRAMES_IN"), "key": "frames_in"},
    ]
    res = run((out / "accelerator.v").read_text(), m["top"], "bitplane.sim.tb_top",
              {"seed": 2, "idle": 0.2, "stall": 0.3, "timeout": 200_000, "steps": steps}, name="top")
    frames = [np.array([int(w) for w in f], dtype=np.uint32).view(np.int32).astype(np.int64) for f in res["frames"]]
    rd = {k: v for k, v in res["reads"].items()}
    assert rd["id"] == [regmap.ID_MAGIC]
    assert len(frames) == 7 and all(len(f) == want.shape[1] for f in frames)
    fr, ab, wf = _f("ERROR", "FRAMING"), _f("ERROR", "ABORTED"), _f("ERROR", "WEIGHT_FORMAT")
    assert rd["err_early"] == [fr] and rd["err_late"] == [fr]
    assert rd["status_mid"][0] & _f("STATUS", "BUSY")
    assert rd["err_reset"] == [ab]
    assert rd["err_weights"] == [wf] and rd["err_final"] == [0]
    assert rd["checksum"] == [wimg.checksum(image)]
    for got, k in zip(frames, [0, None, 2, 3, 4, 2, 1]):
        if k is not None:
            assert np.array_equal(got, want[k]), k


def test_cocotb_engine_matches_native_and_golden(tiny):
    """`bitplane sim --engine cocotb` (Python drives every clock) gives the same accumulators
    and the same steady-state period as the native harness."""
    net, out, m = tiny
    x = _inputs(net, 5, seed=6)
    want = Golden(net).run_int(x)
    yc, sc = simulate(out, x, engine="cocotb", gap_pct=15, stall_pct=25, seed=4)
    assert np.array_equal(yc, want)
    yc2, sc2 = simulate(out, x, engine="cocotb")
    yn, sn = simulate(out, x)
    assert np.array_equal(yc2, want) and np.array_equal(yn, want)
    assert sc2["cycles_per_frame"] == sn["cycles_per_frame"]
    assert sc["regs"]["FRAMES_IN"] == 5 and sc["sim_cycles_per_second"] > 0


def test_sim_cli_rejects_unknown_engine(tiny, tmp_path):
    net, out, m = tiny
    np.save(tmp_path / "x.npy", _inputs(net, 1))
    with pytest.raises(SystemExit):
        cli(["sim", str(out), "--input", str(tmp_path / "x.npy"), "--output", str(tmp_path / "y.npy"),
             "--engine", "icarus"])
    assert not (tmp_path / "y.npy").exists()


@pytest.mark.parametrize("folds,bottleneck,cycles", [
    ({"fc0": (4, 98), "fc1": (1, 4), "fc2": (1, 2), "fc3": (1, 1)}, "fc2", 2048),
    pytest.param({"fc0": (4, 98), "fc1": (1, 2), "fc2": (2, 2), "fc3": (1, 1)}, "fc1", 2048, marks=pytest.mark.slow),
    pytest.param({"fc0": (1, 49), "fc1": (2, 4), "fc2": (2, 4), "fc3": (1, 1)}, "fc0", 8192, marks=pytest.mark.slow)])
def test_planner_bottleneck_is_where_the_simulation_says(folds, bottleneck, cycles, tmp_path):
    """Moving the slow fold moves the planner's bottleneck, and the simulated period follows it."""
    net = load_network(ROOT / "examples" / "tfc-w1a1.yaml")
    (tmp_path / "fold.json").write_text(json.dumps({k: {"pe": p, "simd": s} for k, (p, s) in folds.items()}))
    m = compile_network(net, tmp_path / "out", fold_file=tmp_path / "fold.json", progress=lambda s: None)
    assert m["bottleneck"] == bottleneck and m["cycles_per_frame"] == cycles
    others = [r["cycles_per_frame"] for r in m["layers"] if r["name"] != bottleneck]
    assert max(others) <= cycles // 2                     # a clear bottleneck
    _, st_ = simulate(tmp_path / "out", _inputs(net, 6))
    assert abs(st_["cycles_per_frame"] - cycles) <= 0.05 * cycles, st_
