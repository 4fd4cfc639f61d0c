"""Wide AXI4-Stream ports (32..512 bits): several codes / result words per beat, the width a
compile parameter recorded in the manifest, and the host, both simulators and the driver
packing by the one layout (core.packing.BeatLayout)."""
from __future__ import annotations

import numpy as np
import pytest

from bitplane.cli.main import main as cli
from bitplane.gen.compile import compile_network
from bitplane.gen.golden import Golden
from bitplane.gen.plan import PlanError, plan
from bitplane.gen.spec import load_network
from bitplane.host.driver import Accelerator
from bitplane.sim.accel import simulate
from tests.support.netgen import write_network
from tests.support.networks import ROOT, TINY, inputs as _inputs

# a dense-first network: its first block takes any divisor of all 36 inputs per word
FC = {"name": "fcwide", "input": {"shape": [1, 6, 6], "bits": 8, "scale": 1 / 255}, "layers": [
    {"name": "fc0", "op": "dense", "out_features": 8, "bias": True, "weight_quant": {"type": "dorefa", "bits": 2}},
    {"name": "bn0", "op": "batchnorm", "eps": 1e-4},
    {"name": "a0", "op": "quant_act", "nonlin": "clip01", "quant": {"type": "dorefa", "bits": 2}},
    {"name": "fc1", "op": "dense", "out_features": 5, "bias": True, "weight_quant": {"type": "int", "bits": 8}}]}


# (the 128-bit case is the longest simulation of the suite: `make test-slow`)
@pytest.mark.parametrize("spec,bits,codes_per_beat,words_per_beat", [
    (TINY, 32, 8, 1), pytest.param(TINY, 128, 32, 4, marks=pytest.mark.slow), (FC, 72, 9, 2)])
def test_rtl_is_golden_int_at_several_widths_under_backpressure(spec, bits, codes_per_beat, words_per_beat,
                                                                 tmp_path):
    net = load_network(write_network(spec, tmp_path, seed=4))
    m = compile_network(net, tmp_path / "out", target_fps=100000, embed_weights=False, progress=lambda s: None,
                        stream_bits=bits)
    si, so = m["streams"]["input"], m["streams"]["output"]
    assert (si["tdata_bits"], so["tdata_bits"], si["bytes_per_beat"]) == (bits, bits, bits // 8)
    assert (si["codes_per_beat"], so["words_per_beat"]) == (codes_per_beat, words_per_beat)
    codes = int(np.prod(si["shape"]))
    assert si["beats_per_frame"] == -(-codes // codes_per_beat)
    assert so["beats_per_frame"] == -(-so["words_per_frame"] // words_per_beat)
    x = _inputs(net, 6, seed=2)
    want = Golden(net).run_int(x)
    y, st = simulate(tmp_path / "out", x, gap_pct=30, stall_pct=40, seed=5)   # weights loaded over s_axis
    assert np.array_equal(y, want)
    y2, st2 = simulate(tmp_path / "out", x)
    assert np.array_equal(y2, want)
    assert abs(st2["cycles_per_frame"] - m["cycles_per_frame"]) <= 0.05 * m["cycles_per_frame"], st2
    if bits != 32:
        # the host driver over the simulation transport (serve mode), and cocotb as a second driver
        with Accelerator.open(tmp_path / "out", "sim", stall_pct=30, gap_pct=20, seed=2) as acc:
            acc.load_weights()
            assert np.array_equal(acc.infer(x, progress=False).acc, want)
        y3, _ = simulate(tmp_path / "out", x[:2], gap_pct=20, stall_pct=20, engine="cocotb")
        assert np.array_equal(y3, want[:2])


@pytest.mark.slow
def test_fc_net_on_28x28_is_not_capped_by_the_input_stream(tmp_path):
    """TFC (784 8-bit pixels): one pixel per 32-bit beat capped it at 784 cycles/frame; at
    1,000,000 frames/s (100 cycles at 100 MHz) the planner picks a 128-bit stream and the
    simulation runs at the planned 80 cycles/frame, bit-exact."""
    net = load_network(ROOT / "examples" / "tfc-w1a1.yaml")
    with pytest.raises(PlanError, match="4 codes per word over the 32-bit input stream"):
        plan(Golden(net).lowered, target_fps=1e6, stream_bits=32)
    m = compile_network(net, tmp_path / "out", target_fps=1e6, progress=lambda s: None)
    assert m["streams"]["input"]["tdata_bits"] == 128 and m["cycles_per_frame"] < 784 / 4
    x = _inputs(net, 8)
    y, st = simulate(tmp_path / "out", x, gap_pct=10, stall_pct=10)
    assert np.array_equal(y, Golden(net).run_int(x))
    y2, st2 = simulate(tmp_path / "out", x)
    assert np.array_equal(y2, y)
    print(f"TFC-W1A1 at 1e6 frames/s: {m['streams']['input']['tdata_bits']}-bit stream, planned "
          f"{m['cycles_per_frame']} cycles/frame, simulated {st2['cycles_per_frame']:.1f}")
    assert abs(st2["cycles_per_frame"] - m["cycles_per_frame"]) <= 0.05 * m["cycles_per_frame"], st2


@pytest.mark.parametrize("bits", ["36", "16", "520"])
def test_illegal_stream_width_is_one_line_and_writes_nothing(bits, tmp_path, capsys):
    out = tmp_path / "out"
    assert cli(["compile", str(ROOT / "examples" / "tfc-w1a1.yaml"), "-o", str(out), "--stream-bits", bits]) != 0
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "stream width must be 32..512 bits in multiples of 8" in err, err
    assert "Traceback" not in err and not out.exists()
