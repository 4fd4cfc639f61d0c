"""Out-of-context synthesis (synth/ooc.py): blocks cut at the DAG's block modules, identical
blocks synthesized once, the estimate = glue + blocks, cached by design hash."""
import json

import pytest

from bitplane.synth.flow import SynthError, synthesize
from bitplane.synth.ooc import BLOCK_TOP, block_design, block_modules, ooc_synthesize, split_modules

# an accelerator-shaped hierarchy (module names are hierarchy paths, as Amaranth writes them):
# blocks 0 and 1 are the same adder-accumulator, block 2 a wider one; the glue registers the input
# and feeds the chain. Every port bit is used, so nothing can be optimised across a boundary.
BLOCK = """module \\{name} (clk, d, q);
  input clk;
  input [15:0] d;
  output [{w1}:0] q;
  wire [{w1}:0] s;
  \\{name}.acc  acc (.clk(clk), .d(d), .q(s));
  assign q = s;
endmodule
(* generator = "Amaranth" *)
module \\{name}.acc (clk, d, q);
  input clk;
  input [15:0] d;
  output reg [{w1}:0] q = 0;
  reg \\$auto$verilog_backend.cc:2355:dump_module${n}  = 0;
  always @(posedge clk) q <= q + d;
endmodule
"""
TOP = """(* top = 1 *)
module t (clk, d, q);
  input clk;
  input [15:0] d;
  output [15:0] q;
  reg [15:0] r = 0;
  wire [15:0] q0, q1;
  wire [23:0] q2;
  always @(posedge clk) r <= d;
  \\t.core.dag.block0  block0 (.clk(clk), .d(r), .q(q0));
  \\t.core.dag.block1  block1 (.clk(clk), .d(q0), .q(q1));
  \\t.core.dag.block2  block2 (.clk(clk), .d(q1), .q(q2));
  assign q = q2[23:8] ^ q2[15:0];
endmodule
"""


def design():
    # (yosys numbers its internal names across the file: the two equal blocks differ in them)
    return (TOP + BLOCK.format(name="t.core.dag.block0", w1=15, n=4)
            + BLOCK.format(name="t.core.dag.block1", w1=15, n=5) + BLOCK.format(name="t.core.dag.block2", w1=23, n=6))


def test_split_and_canonical_blocks():
    mods = split_modules(design())
    assert set(mods) == {"t"} | {f"t.core.dag.block{k}{s}" for k in range(3) for s in ("", ".acc")}
    assert mods["t.core.dag.block0.acc"].startswith('(* generator = "Amaranth" *)\nmodule')
    assert block_modules(mods, "t") == [f"t.core.dag.block{k}" for k in range(3)]
    b0, b1, b2 = (block_design(mods, f"t.core.dag.block{k}") for k in range(3))
    assert b0 == b1 != b2                       # the same block, renamed relative to itself
    assert f"module \\{BLOCK_TOP} " in b0 and f"\\{BLOCK_TOP}.acc  acc" in b0 and "t.core" not in b0
    assert "reg \\$bp$0  = 0;" in b0 and "dump_module" not in b0
    with pytest.raises(SynthError, match="no block modules"):
        block_modules(mods, "other")


def test_block1_is_not_a_prefix_of_block10():
    mods = {f"t.core.dag.block{k}": f"module \\t.core.dag.block{k} (a);\n  input a;\nendmodule\n" for k in (1, 10)}
    assert "block10" not in block_design(mods, "t.core.dag.block1")
    assert block_design(mods, "t.core.dag.block1") == block_design(mods, "t.core.dag.block10")


def test_ooc_sum_equals_flat_and_is_cached(tmp_path):
    v = design()
    quiet = lambda m: None  # noqa: E731
    rep = ooc_synthesize(v, "t", "xc7z020", cache_dir=tmp_path, bar=False)
    assert rep["distinct"] == 2 and rep["synthesized"] == 3            # 2 block designs + the glue
    assert rep["cpu_s"]["synthesized"] > 0
    assert rep["blocks"][0]["design"] == rep["blocks"][1]["design"] != rep["blocks"][2]["design"]
    # accumulators: 16+16+24 FFs in the blocks, 16 input FFs in the glue
    assert rep["glue"]["FF"] == 16 and [b["resources"]["FF"] for b in rep["blocks"]] == [16, 16, 24]
    flat = synthesize(v, "t", "xc7z020", cache_dir=tmp_path / "flat", progress=quiet, bitstream=False)
    for k in ("LUT", "FF", "CARRY", "LUT_SITES", "BRAM36"):
        assert rep["resources"][k] == flat["resources"][k], k
    again = ooc_synthesize(v, "t", "xc7z020", cache_dir=tmp_path, bar=False, jobs=2)
    assert again["synthesized"] == 0 and again["resources"] == rep["resources"]
    reports = sorted(tmp_path.glob("*/report.json"))
    assert len(reports) == 3 and all(json.loads(p.read_text())["cells"] for p in reports)


def test_ooc_ecp5_counts(tmp_path):
    rep = ooc_synthesize(design(), "t", "ecp5-85k", cache_dir=tmp_path, bar=False)
    assert rep["resources"]["FF"] == 16 + 16 + 16 + 24
    assert rep["resources"]["CARRY"] > 0 and rep["resources"]["LUT4_SITES"] >= 2 * rep["resources"]["CARRY"]
    with pytest.raises(SynthError, match="not ice40-up5k"):
        ooc_synthesize(design(), "t", "ice40-up5k", cache_dir=tmp_path, bar=False)


def test_compiled_accelerator_splits_into_its_blocks(tiny_loadable):
    """The block modules of a compiled accelerator are where hw.top names them (one per manifest layer)."""
    net, folder, manifest = tiny_loadable
    mods = split_modules((folder / "accelerator.v").read_text())
    names = block_modules(mods, manifest["top"])
    assert len(names) == len(manifest["layers"])
    for n in names:
        text = block_design(mods, n)
        assert text.startswith("(*") or text.startswith("module")
        assert manifest["top"] + ".core" not in text and f"module \\{BLOCK_TOP} " in text
