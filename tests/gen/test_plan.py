"""Folding planner: goals, constraints, errors before anything is written."""
from pathlib import Path

import pytest

from bitplane.cli.main import main
from bitplane.gen.lower import lower
from bitplane.gen.plan import PlanError, plan, simd_options, stage_cycles
from bitplane.gen.spec import load_network

EX = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture(scope="module")
def cnv():
    return lower(load_network(EX / "cnv-w1a1.yaml"))


def test_target_fps_is_met_with_cheapest_folds(cnv):
    p = plan(cnv, target_fps=2000, clock_mhz=100)
    assert p["fps"] >= 2000
    budget = 100e6 / 2000
    for f in p["folds"]:
        assert f.cycles <= budget
    slow = max(p["folds"], key=lambda f: f.block_cycles)
    assert p["bottleneck"] == slow.stage and p["cycles_per_frame"] == slow.block_cycles
    more = plan(cnv, target_fps=8000, clock_mhz=100)
    assert more["luts"] > p["luts"]                           # faster costs more


def test_cycles_formula(cnv):
    st = cnv.stages[0]                                        # conv0: 64 x 27, 30x30 outputs, P_w=1, P_a=8
    assert stage_cycles(st, 1, 1) == 900 * 64 * 27 * 1 * 8
    assert stage_cycles(st, 64, 27) == 900 * 8
    assert simd_options(st) == [1, 3, 9, 27]                 # divisors of C=3, or 3*m with m | 9


def test_lut_budget_balances_the_pipeline(cnv):
    small = plan(cnv, lut_budget=5000)
    big = plan(cnv, lut_budget=20000)
    assert small["luts"] <= 5000 and big["luts"] <= 20000
    assert big["cycles_per_frame"] < small["cycles_per_frame"]
    with pytest.raises(PlanError, match="too small"):
        plan(cnv, lut_budget=100)


def test_fold_file_overrides_and_validation(cnv, tmp_path):
    f = tmp_path / "fold.yaml"
    f.write_text("conv0: {pe: 8, simd: 3}\n")
    p = plan(cnv, fold_file=f)
    c0 = p["folds"][0]
    assert (c0.pe, c0.simd, c0.source) == (8, 3, "fold file")
    for text, msg in (("conv0: {pe: 3, simd: 1}\n", "PE=3 must divide the 64"),
                      ("conv1: {pe: 1, simd: 5}\n", "SIMD=5 must divide the 64 input channels"),
                      ("convX: {pe: 1}\n", "not a conv/dense layer"),
                      ("conv0: [1, 2]\n", "expected {pe: int, simd: int}")):
        f.write_text(text)
        with pytest.raises(PlanError, match=msg.replace("{", r"\{").replace("}", r"\}")):
            plan(cnv, fold_file=f)


def test_unreachable_target_is_a_clear_error(cnv, capsys):
    rc = main(["plan", str(EX / "cnv-w1a1.yaml"), "--target-fps", "1e9"])
    assert rc == 1 and "cannot reach" in capsys.readouterr().err


def test_cli_table(capsys):
    assert main(["plan", str(EX / "tfc-w2a2.yaml"), "--target-fps", "10000"]) == 0
    out = capsys.readouterr().out
    assert "bottleneck" in out and "frames/s" in out


def test_memory_words_stay_within_the_limit(tmp_path):
    """8-bit activations need 255 thresholds per row: the planner never folds a memory word past
    MAX_WORD_BITS (it would not build), and a fold file asking for one is refused clearly."""
    from bitplane.gen.plan import MAX_WORD_BITS, word_bits
    from bitplane.randnet import write_random_network
    from bitplane.train.arch import make_spec
    spec = make_spec("lenet", "dorefa", 8, 8, "w8a8")
    low = lower(load_network(write_random_network(spec, tmp_path, seed=0)))
    conv0 = low.stages[0]
    assert word_bits(conv0, 16, 9) > MAX_WORD_BITS                   # fully parallel conv0 would be too wide
    p = plan(low, target_fps=400)
    for st, f in zip([s for s in low.stages if hasattr(s, "wq")], p["folds"]):
        assert word_bits(st, f.pe, f.simd) <= MAX_WORD_BITS
    fold = tmp_path / "fold.yaml"
    fold.write_text("conv0: {pe: 16, simd: 9}\n")
    with pytest.raises(PlanError, match=r"conv0.*memory words.*lower PE"):
        plan(low, fold_file=fold)


@pytest.mark.parametrize("name,fps", [("cnv-w1a1", 1000), ("cnv-w1a1", 9000), ("cnv-w2a2", 2600),
                                      ("lenet-w2a2", 1500), ("tfc-w1a1", 20000)])
def test_plan_is_what_the_compiler_builds(name, fps):
    """The plan's cycles/frame is the compiled blocks' (hw formulas, windows fed at the producer's
    PE): at 9,000 frames/s CNV-W1A1's conv3 window needs conv2 to emit more than 2 channels per word
    (regression: the planner counted engines only and compile silently gave 1,736 frames/s)."""
    from bitplane.gen.compile import build_top
    from bitplane.gen.golden import Golden
    from bitplane.hw.top import block_cycles as hw_block_cycles
    g = Golden(load_network(EX / f"{name}.yaml"))
    p = plan(g.lowered, target_fps=fps)
    tp, stages = build_top(g, p, embed_weights=False)
    got = {st.name: hw_block_cycles(b) for b, st in zip(tp.blocks, stages)}
    assert got == {**{f.stage: f.block_cycles for f in p["folds"]}, **p["pools"]}
    assert max(got.values()) == p["cycles_per_frame"] <= 100e6 / fps
    assert p["bottleneck"] == max(got, key=got.get)


def test_fold_file_slower_than_the_target_is_refused(cnv, tmp_path):
    f = tmp_path / "fold.yaml"
    f.write_text("conv1: {pe: 1, simd: 1}\n")
    with pytest.raises(PlanError, match="conv1.*fold file.*PE=1, SIMD=1"):
        plan(cnv, target_fps=1000, fold_file=f)
