"""`bitplane project`: the Vivado Tcl runs in tclsh with every Vivado command recorded; the
block design it builds is checked against the manifest, the Verilog ports and each board."""
from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

from bitplane.cli.main import main as cli
from bitplane.synth.project import AXIL_SIGNALS, AXIS_SIGNALS, BOARDS, ProjectError, check_interfaces
from bitplane.synth.flow import top_ports

TCLSH = shutil.which("tclsh")

# Stand-ins for Vivado's commands: each call is appended to a log as a Tcl list; get_* return
# their pattern so the recorded arguments read naturally.
RECORDER = r"""
set ::log [open [lindex $argv 0] w]
proc unknown {args} {
    puts $::log [list {*}$args]
    set cmd [lindex $args 0]
    if {[string match get_ipdefs $cmd]} { return [list "[lindex $args end]0"] }
    if {$cmd eq "get_property" && [lindex $args 1] eq "PROGRESS"} { return "100%" }
    if {[string match get_* $cmd]} { return [lindex $args end] }
    if {$cmd eq "glob"} { return [list [lindex $args end]] }
    return ""
}
rename glob _glob
rename file _file
proc file {sub args} {
    if {$sub in {mkdir copy}} { puts $::log [list file $sub {*}$args]; return "" }
    return [_file $sub {*}$args]
}
proc glob {args} { return [list [lindex $args end]] }
set argv [lrange $argv 1 end]
source [lindex $argv 0]
close $::log
"""


@pytest.fixture
def compiled(tiny):
    _, out, m = tiny
    return out, m


def _record(tcl_path, tmp_path) -> list[list[str]]:
    (tmp_path / "recorder.tcl").write_text(RECORDER)
    log = tmp_path / "vivado.log"
    r = subprocess.run([TCLSH, str(tmp_path / "recorder.tcl"), str(log), str(tcl_path)], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    out = subprocess.run([TCLSH], input=f"set f [open {log}]\nwhile {{[gets $f line] >= 0}} "
                         "{ puts [join $line \"\\x1f\"] }\n", capture_output=True, text=True, timeout=60)
    return [ln.split("\x1f") for ln in out.stdout.splitlines() if ln]


@pytest.mark.skipif(TCLSH is None, reason="tclsh not installed")
@pytest.mark.parametrize("board", sorted(BOARDS))
def test_project_tcl_builds_a_consistent_block_design(board, compiled, tmp_path):
    out, m = compiled
    assert cli(["project", str(out), "--board", board, "-o", str(tmp_path / "proj")]) == 0
    proj = tmp_path / "proj"
    info = json.loads((proj / "project.json").read_text())
    assert info["verified_on_hardware"] is False and info["build_id"] == m["build_id"]
    calls = _record(proj / "build.tcl", tmp_path)
    cmds = [c[0] for c in calls]
    b = BOARDS[board]
    # project on the board's part, the accelerator as an RTL module named after the manifest's top
    cp = calls[cmds.index("create_project")]
    assert cp[cp.index("-part") + 1] == b.part
    assert ["create_bd_cell", "-type", "module", "-reference", m["top"], "accel"] in calls
    cells = {c[-1] for c in calls if c[0] == "create_bd_cell"}
    # every interface connection names existing cells; the accelerator's are its three AXI interfaces
    intf = [c for c in calls if c[0] == "connect_bd_intf_net"]
    pins = [re.fullmatch(r"(\w+)/(\w+)", c[k]) for c in intf for k in (1, 2)]
    assert all(p and p.group(1) in cells for p in pins)
    assert {p.group(2) for p in pins if p.group(1) == "accel"} == {"s_axis", "m_axis", "s_axil"}
    # accel/clk and accel/rst driven, associated with all three interfaces
    nets = [c for c in calls if c[0] == "connect_bd_net"]
    assert any("accel/clk" in c for c in nets) and any("accel/rst" in c for c in nets)
    assert any(c[:3] == ["set_property", "CONFIG.ASSOCIATED_BUSIF", "s_axis:m_axis:s_axil"] for c in calls)
    freq = [c for c in calls if c[:2] == ["set_property", "CONFIG.FREQ_HZ"]][0]
    assert int(freq[2]) == int(m["clock_mhz"] * 1e6)
    # address of the register window agrees with project.json and covers the manifest's span
    addr = [c for c in calls if c[0] == "assign_bd_address" and "accel/s_axil/reg0" in c][0]
    assert int(addr[addr.index("-offset") + 1], 16) == info["addresses"]["accelerator"]["base"] == b.accel_base
    assert int(addr[addr.index("-range") + 1], 16) >= m["regmap"]["span"]
    # platform per board kind
    if b.kind == "xdma":
        assert {"pcie", "h2c_cdc", "c2h_cdc", "lite_cdc", "accel_clk"} <= cells
        assert ["connect_bd_intf_net", "h2c_cdc/M_AXIS", "accel/s_axis"] in intf
    else:
        assert {"ps", "dma", "ctrl_ic", "mem_ic"} <= cells
        assert ["connect_bd_intf_net", "dma/M_AXIS_MM2S", "accel/s_axis"] in intf
        assert ["connect_bd_intf_net", "accel/m_axis", "dma/S_AXIS_S2MM"] in intf
        dma = [c for c in calls if c[0] == "assign_bd_address" and "dma/S_AXI_LITE/Reg" in c][0]
        assert int(dma[dma.index("-offset") + 1], 16) == info["addresses"]["dma"]["base"]
    # ends with a bitstream
    assert "launch_runs" in cmds and cmds.index("validate_bd_design") < cmds.index("launch_runs")
    # the copied design is the compiled one, so the driver can run from the project folder
    assert (proj / "accelerator.v").read_text() == (out / "accelerator.v").read_text()
    assert (proj / "constraints.xdc").exists() and "Unverified" in (proj / "README.md").read_text()


def test_ports_follow_xilinx_interface_inference(compiled):
    out, m = compiled
    v = (out / "accelerator.v").read_text()
    ports = {n: (d, w) for d, n, w in top_ports(v, m["top"])}
    for p, sigs in (("s_axis", AXIS_SIGNALS), ("m_axis", AXIS_SIGNALS), ("s_axil", AXIL_SIGNALS)):
        for s in sigs:
            assert f"{p}_{s}" in ports, f"{p}_{s}"
    assert ports["s_axis_tready"][0] == "output" and ports["m_axis_tready"][0] == "input"
    assert ports["s_axis_tdata"][1] == m["streams"]["input"]["tdata_bits"]
    assert ports["m_axis_tdata"][1] == m["streams"]["output"]["tdata_bits"]
    assert ports["s_axil_wdata"][1] == 32
    assert 1 << ports["s_axil_awaddr"][1] >= m["regmap"]["span"]
    check_interfaces(v, m["top"])
    with pytest.raises(ProjectError, match="s_axis_tlast"):
        check_interfaces(v.replace("s_axis_tlast", "s_axis_tend"), m["top"])


def test_project_errors(compiled, tmp_path, capsys):
    out, m = compiled
    with pytest.raises(SystemExit):
        cli(["project", str(out), "--board", "arty", "-o", str(tmp_path / "p")])
    assert cli(["project", str(tmp_path / "nothing"), "--board", "zcu104", "-o", str(tmp_path / "p")]) == 1
    assert "no manifest.json" in capsys.readouterr().err
    assert not (tmp_path / "p").exists()
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "mine.txt").write_text("x")
    assert cli(["project", str(out), "--board", "zcu104", "-o", str(tmp_path / "busy")]) == 1
    assert (tmp_path / "busy" / "mine.txt").exists()
    # a manifest whose clock is not a positive number is refused for every board kind
    import shutil
    bad = tmp_path / "badclock"
    shutil.copytree(out, bad)
    mm = json.loads((bad / "manifest.json").read_text())
    for board in ("zcu104", "kcu105-xdma"):
        for clock in ("fast", 0, None):
            mm["clock_mhz"] = clock
            (bad / "manifest.json").write_text(json.dumps(mm))
            assert cli(["project", str(bad), "--board", board, "-o", str(tmp_path / "p2")]) == 1
            assert "clock_mhz" in capsys.readouterr().err and not (tmp_path / "p2").exists()
