"""Native (C++ Verilator) bulk-simulation harness, on a small echo accelerator."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from amaranth import Module, Signal
from amaranth.back import verilog
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from bitplane.hw.axil import AXILiteRegisters
from bitplane.core.regmap import ID_MAGIC, by_name
from bitplane.sim.native import build


class EchoTop(wiring.Component):
    """s_axis -> (+1, one register, full backpressure) -> m_axis; counts frames; AXI-Lite regs."""

    def __init__(self):
        self.regs = AXILiteRegisters()
        members = {"s_axis_tdata": In(32), "s_axis_tvalid": In(1), "s_axis_tready": Out(1),
                   "s_axis_tlast": In(1), "m_axis_tdata": Out(32), "m_axis_tvalid": Out(1),
                   "m_axis_tready": In(1), "m_axis_tlast": Out(1)}
        members.update({n: m for n, m in self.regs.signature.members.items() if n.startswith("s_axil_")})
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        m.submodules.regs = regs = self.regs
        for name, member in regs.signature.members.items():
            if name.startswith("s_axil_"):
                if member.flow == In:
                    m.d.comb += getattr(regs, name).eq(getattr(self, name))
                else:
                    m.d.comb += getattr(self, name).eq(getattr(regs, name))
        full = Signal()
        m.d.comb += [self.s_axis_tready.eq(~full | self.m_axis_tready), self.m_axis_tvalid.eq(full)]
        with m.If(self.m_axis_tvalid & self.m_axis_tready):
            m.d.sync += full.eq(0)
        with m.If(self.s_axis_tvalid & self.s_axis_tready):
            m.d.sync += [full.eq(1), self.m_axis_tdata.eq(self.s_axis_tdata + 1),
                         self.m_axis_tlast.eq(self.s_axis_tlast)]
        frames = Signal(32)
        with m.If(self.s_axis_tvalid & self.s_axis_tready & self.s_axis_tlast):
            m.d.sync += frames.eq(frames + 1)
        m.d.comb += [regs.reg_id.eq(ID_MAGIC), regs.reg_frames_in.eq(frames)]
        return m


@pytest.fixture(scope="module")
def echo(tmp_path_factory):
    v = verilog.convert(EchoTop(), name="echo")
    return build(v, "echo", cache_dir=tmp_path_factory.mktemp("native"))


@pytest.mark.parametrize("gap,stall", [(0, 0), (30, 40)])
def test_frames_stream_through_with_backpressure(echo, gap, stall):
    rng = np.random.default_rng(0)
    frames, fw = 200, 7
    x = rng.integers(0, 1 << 31, frames * fw)
    out, st = echo.run(x, fw, fw, frames, regs=[(by_name("SCRATCH").offset, 0x1234)],
                       read_regs=[by_name("ID").offset, by_name("SCRATCH").offset, by_name("FRAMES_IN").offset],
                       gap_pct=gap, stall_pct=stall, seed=3)
    assert np.array_equal(out, (x + 1).astype(np.uint64))
    assert st["ok"] and len(st["frame_done"]) == frames
    assert st["regs"] == {0: ID_MAGIC, by_name("SCRATCH").offset: 0x1234, by_name("FRAMES_IN").offset: frames}
    done = np.asarray(st["frame_done"])
    assert np.all(np.diff(done) > 0) and done[-1] <= st["stream_cycles"]
    if gap == stall == 0:                                   # one word per cycle, 1 cycle latency
        assert st["stream_cycles"] <= frames * fw + 3
    else:                                                   # 40 % stalls: at most ~0.6 words per cycle
        assert st["stream_cycles"] > frames * fw / 0.7
    # simulation speed is a benchmark figure (bench/networks.py), not a pass/fail criterion here


def test_build_is_cached(echo, tmp_path):
    v = verilog.convert(EchoTop(), name="echo")
    again = build(v, "echo", cache_dir=echo.exe.parent.parent)
    assert again.exe == echo.exe


def test_sim_wrapper_registers_reset_and_passes_every_other_port():
    """The harness's top: rst through one flip-flop (Verilator then evaluates the next-state
    logic once per clock edge instead of on every eval), all other ports wired through."""
    from bitplane.sim.native import SIM_TOP, NativeSimError, sim_wrapper
    v = verilog.convert(EchoTop(), name="echo")
    w = sim_wrapper(v, "echo")
    assert w.startswith(f"module {SIM_TOP}(")
    assert "always @(posedge clk) rst_q <= rst;" in w and ".rst(rst_q)" in w
    for port in ("clk", "s_axis_tdata", "m_axis_tready", "s_axil_rdata"):
        assert f".{port}({port})" in w
    assert "  input [31:0] s_axis_tdata;" in w and "  output [31:0] m_axis_tdata;" in w
    assert "  \\echo dut (" in w       # escaped: tops may be called 'rand' (a SystemVerilog keyword)
    with pytest.raises(NativeSimError, match="module nosuch not found"):
        sim_wrapper(v, "nosuch")
    with pytest.raises(NativeSimError, match="could not read the ports of echo"):
        sim_wrapper(v.replace("input rst;", "input rst, extra;"), "echo")


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        out += [int(c) for c in (task / "children").read_text().split()]
    return out


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux /proc")
def test_batch_harness_dies_with_the_process_that_started_it(echo):
    """A batch run whose caller is killed (a Dask worker going down with its client) must not keep
    simulating as an orphan: the harness gets --parent-pid and dies with its parent."""
    code = ("import sys, numpy as np\nfrom pathlib import Path\nfrom bitplane.sim.native import NativeSim\n"
            "NativeSim(Path(sys.argv[1]), 'echo').run(np.zeros(1), 1, 1, 1, stall_pct=100)\n")
    caller = subprocess.Popen([sys.executable, "-c", code, str(echo.exe)])
    harness = []
    try:
        deadline = time.monotonic() + 60
        while not harness and time.monotonic() < deadline:   # the output never drains (100 % stalls)
            harness = [c for c in _children(caller.pid) if Path(f"/proc/{c}/exe").resolve() == echo.exe.resolve()]
            time.sleep(0.05)
        assert harness, "the harness did not start"
        assert _running(harness[0])
        caller.kill()
        caller.wait()
        deadline = time.monotonic() + 10
        while _running(harness[0]) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _running(harness[0]), "the harness outlived the process that started it"
    finally:
        caller.kill()
        caller.wait()
        for c in harness:
            if _running(c):
                os.kill(c, signal.SIGKILL)
