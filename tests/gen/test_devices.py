"""Per-device fit (gen/devices.py): primitive tiling and the budget table against a plan."""
from pathlib import Path

import numpy as np
import pytest

from bitplane.gen import devices
from bitplane.gen.devices import DEVICES, RAMB36_SHAPES, DP16KD_SHAPES, fit, fit_text, plan_for_device, tiles
from bitplane.gen.lower import lower
from bitplane.gen.plan import plan
from bitplane.gen.spec import load_network
from bitplane.hw.bitserial import BitSerialMVTU, EngineConfig
from bitplane.synth.flow import synthesize, xilinx_summary
from tests.support.graphnets import DQ2, write_net
from tests.support.mvtu_ref import make_case
from tests.support.verilog import component_verilog

ROOT = Path(__file__).resolve().parents[2]


def test_tiles_pick_the_best_aspect_ratio():
    assert tiles(72, 512, RAMB36_SHAPES) == 1
    assert tiles(1, 32768, RAMB36_SHAPES) == 1
    assert tiles(73, 512, RAMB36_SHAPES) == 2
    assert tiles(8, 4096, RAMB36_SHAPES) == 1            # 9 x 4K
    assert tiles(10, 4096, RAMB36_SHAPES) == 2
    assert tiles(36, 512, DP16KD_SHAPES) == 1 and tiles(36, 1024, DP16KD_SHAPES) == 2


def _net(tmp_path, width):
    spec = {"name": "fitnet", "input": {"shape": [16, 8, 8], "bits": 2, "scale": 1.0 / 3},
            "layers": [{"name": "c1", "op": "conv", "out_channels": width, "kernel": 3, "padding": 1,
                        "weight_quant": dict(DQ2)},
                       {"name": "a1", "op": "quant_act", "nonlin": "clip01", "quant": dict(DQ2)},
                       {"name": "fc", "op": "dense", "out_features": 10, "weight_quant": dict(DQ2)}]}
    return load_network(write_net(tmp_path, spec))


def test_fit_rows_against_the_plan(tmp_path):
    low = lower(_net(tmp_path, 64))
    p = plan(low)
    rows = {r["device"]: r for r in fit(low, p)}
    assert set(rows) == set(DEVICES)
    mems = devices.block_memories(low, p["folds"])
    assert sum(m[1] * m[2] for m in mems) == rows["xc7z020"]["memory_bits"]
    # the planner's total memory bits are the memories tiled here
    assert rows["xc7z020"]["memory_bits"] == p["memory_bits"]
    assert rows["ecp5-85k"]["luts"] >= devices.LUT4_PER_LUT6 * p["luts"]
    assert rows["xc7z020"]["luts"] >= p["luts"]
    assert all(r["fits"] for r in rows.values())
    assert "xcu250" in fit_text(p, low)


def test_block_ram_over_budget_moves_to_ultraram_or_does_not_fit(tmp_path, monkeypatch):
    low = lower(_net(tmp_path, 64))
    p = plan(low)
    need = {r["device"]: r for r in fit(low, p)}["xczu7ev"]["bram"]
    assert need > 0
    small = dict(DEVICES)
    d = DEVICES["xczu7ev"]
    small["tiny-uram"] = devices.Device("tiny-uram", "test", d.luts, 6, 0, "RAMB36", 1000, "test")
    small["tiny"] = devices.Device("tiny", "test", d.luts, 6, need - 1, "RAMB36", 0, "test")
    monkeypatch.setattr(devices, "DEVICES", small)
    rows = {r["device"]: r for r in fit(low, p, ["tiny-uram", "tiny"])}
    assert rows["tiny-uram"]["bram"] == 0 and rows["tiny-uram"]["uram"] > 0 and rows["tiny-uram"]["fits"]
    assert not rows["tiny"]["fits"] and rows["tiny"]["bram"] == need
    assert np.isfinite(rows["tiny"]["luts"])


@pytest.mark.parametrize("name,fps,measured", [("cnv-w1a1", 1000, 63.5), ("cnv-w2a2", 500, 109.0)])
def test_block_ram_estimate_matches_synthesis(name, fps, measured):
    """bench/REPORT.md: yosys synth_xilinx (xc7) of the compiled CNVs used 63.5 / 109 RAMB36."""
    net = load_network(ROOT / "examples" / f"{name}.yaml")
    low = lower(net)
    row = {r["device"]: r for r in fit(low, plan(low, target_fps=fps))}["xc7z020"]
    assert abs(row["bram"] - measured) <= 0.1 * measured, row


def test_shared_address_memories_map_to_single_port_lut_ram(tmp_path):
    """--device xc7z020 gives every engine one read/write address on its loadable memories
    (ECP5 and no device: two), and yosys then builds the weight and threshold memories from
    single-port LUT RAM (RAM64X1S: 1 LUT6 per 64 x 1 bits) instead of RAM64M (4 LUT6 per 64 x 3)."""
    low = lower(load_network(ROOT / "examples" / "tfc-w1a1.yaml"))
    for dev, shared in (("xc7z020", True), ("ecp5-85k", False), (None, False)):
        assert {f.shared_address for f in plan_for_device(low, dev, target_fps=20000)["folds"]} == {shared}
    cfg = make_case(np.random.default_rng(1), 16, 64, 2, 8, "sign", 1, "signact", 1, 1, xnor=True)[0]
    cells = {}
    for shared in (False, True):
        c = EngineConfig(**{**cfg.__dict__, "weight_ram_style": "distributed", "shared_address": shared})
        assert c.weight_entries == 64
        rep = synthesize(component_verilog(BitSerialMVTU(c), "mvtu"), "mvtu", "xc7z020", cache_dir=tmp_path,
                         progress=lambda m: None, bitstream=False)
        cells[shared] = rep["cells"]
    lutram = lambda cs: {k: v for k, v in cs.items() if k.startswith(("RAM32", "RAM64"))}  # noqa: E731
    # the 64 x 16 weight memory: six RAM64M (three columns each) apart, sixteen RAM64X1S shared
    assert lutram(cells[False]).get("RAM64M") == 6 and "RAM64X1S" not in cells[False], lutram(cells[False])
    assert lutram(cells[True]).get("RAM64X1S") == 16 and "RAM64M" not in cells[True], lutram(cells[True])
    assert xilinx_summary(cells[True])["LUTRAM_LUT6"] < xilinx_summary(cells[False])["LUTRAM_LUT6"]



def test_split_weight_memory_maps_to_block_and_lut_ram(tmp_path):
    """A weight memory split by columns (EngineConfig.split_weights, what relieve_block_ram
    chooses for FINN's LFC-W1A1 fc0): yosys builds the low 72 bits of the 64-deep, 128-bit words
    in block RAM and the top 56 in single-port LUT RAM (RAM64X1S, one per bit), as fit() counts
    them."""
    cfg = make_case(np.random.default_rng(1), 128, 64, 2, 64, "sign", 1, "signact", 1, 1, xnor=True)[0]
    c = EngineConfig(**{**cfg.__dict__, "weight_ram_style": "block", "weight_lutram_bits": 56,
                        "shared_address": True})
    assert c.weight_entries == 64 and c.split_weights == (72, 56)
    rep = synthesize(component_verilog(BitSerialMVTU(c), "mvtu"), "mvtu", "xc7z020", cache_dir=tmp_path,
                     progress=lambda m: None, bitstream=False)
    cells = rep["cells"]
    # block RAM: the 72-bit part alone, one RAMB36 in its 72-bit simple-dual-port mode
    assert cells.get("RAMB36E1", 0) == devices.block_rams(72, 64, False) == 1 and "RAMB18E1" not in cells, cells
    # LUT RAM: 56 weight bits plus the 64-deep threshold memory, one RAM64X1S per bit
    assert cells.get("RAM64X1S") == 56 + c.memory_words["thresholds"], cells
