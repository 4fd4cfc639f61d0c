"""The Python API (bitplane.api) gives what the command gives, from the same code."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import bitplane
from bitplane.core.errors import InputError, SpecError

EX = Path(__file__).resolve().parents[2] / "examples"


def test_import_bitplane_is_light():
    code = ("import sys, bitplane; heavy = [m for m in ('numpy', 'amaranth', 'torch', 'yaml') if m in sys.modules];"
            "print(','.join(heavy))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == ""


def test_api_golden_equals_the_command(tmp_path):
    x = np.load(EX / "data" / "mnist-256.npz")["x"][:6]
    np.save(tmp_path / "x.npy", x)
    spec = EX / "lenet-w2a2.yaml"
    for mode in ("int", "float"):
        r = subprocess.run([sys.executable, "-m", "bitplane", "golden", str(spec), "--input", str(tmp_path / "x.npy"),
                            "--output", str(tmp_path / f"{mode}.npy"), "--mode", mode], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        got = bitplane.golden(bitplane.load(spec), x, mode=mode)
        assert np.array_equal(got, np.load(tmp_path / f"{mode}.npy"))
    # the int path dequantized is the affine map of the accumulators, close to the float logits
    deq = bitplane.golden(spec, x, dequantize=True)
    flt = bitplane.golden(spec, x, mode="float")
    assert (deq.argmax(1) == flt.argmax(1)).mean() >= 5 / 6


def test_api_errors_are_the_commands():
    with pytest.raises(SpecError, match="no-such.yaml"):
        bitplane.load("no-such.yaml")
    with pytest.raises(InputError, match=r"expected an array \[N, 1, 28, 28\]"):
        bitplane.golden(EX / "lenet-w2a2.yaml", np.zeros((2, 3, 28, 28), np.uint8))
    with pytest.raises(InputError, match="mode"):
        bitplane.golden(EX / "lenet-w2a2.yaml", np.zeros((1, 1, 28, 28), np.uint8), mode="fast")


def test_api_plan_compile_simulate(tmp_path):
    """plan -> compile -> simulate from Python: the design runs at the planned rate and its RTL
    output equals the golden integer path on real digits."""
    net = bitplane.load(EX / "tfc-w1a1.yaml")
    p = bitplane.plan(net, target_fps=20000)
    design = bitplane.compile(net, tmp_path / "tfc", target_fps=20000)
    assert design.cycles_per_frame == p["cycles_per_frame"]
    x = np.load(EX / "data" / "mnist-256.npz")["x"][:4]
    y, st = design.simulate(x, gap_pct=20, stall_pct=20)
    assert np.array_equal(y, bitplane.golden(net, x))
    assert st["frames"] == 4
    # `bitplane sim` is one host-driver session on the simulated device; without gaps or stalls its
    # timing is the bulk harness's (bitplane.sim.accel, the fast path for whole test sets)
    from bitplane.sim.accel import simulate
    y0, st0 = design.simulate(x)
    yb, stb = simulate(design.folder, x)
    assert np.array_equal(y0, yb) and np.array_equal(y0, y)
    for k in ("cycles_per_frame", "latency_cycles", "stream_cycles"):
        assert st0[k] == stb[k], k
    assert st0["regs"]["FRAMES_OUT"] == 4 and st0["regs"]["ERROR"] == 0


def test_synthesis_hints_at_the_device_the_popcounts_suit():
    """``bitplane synth`` notes a compiled folder whose popcounts do not suit the target's LUT
    size: compressor trees (--device xc7z020) on ECP5, adder trees (no --device) on Xilinx."""
    from bitplane.api import device_note
    lut6 = {"plan": {"device": "xc7z020"}, "layers": [{"popcount": "lut6"}, {"kind": "pool"}]}
    adder = {"plan": {"device": None}, "layers": [{"popcount": "adder"}]}
    assert "--device ecp5-85k" in device_note(lut6, "ecp5-85k")
    assert device_note(lut6, "xc7z020") is None and device_note(adder, "ecp5-85k") is None
    assert "--device xc7z020" in device_note(adder, "xc7z020")
    assert device_note({"layers": [{"kind": "pool"}]}, "xc7z020") is None       # no engine: nothing to say
