"""Folding planner: goals, constraints, errors before anything is written."""
from pathlib import Path

import pytest

from bitplane.cli.main import main
from bitplane.gen import hwmap
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
                      ("conv0: [1, 2]\n", "expected {pe: int, simd: int, ram_style")):
        f.write_text(text)
        with pytest.raises(PlanError, match=msg.replace("{", r"\{").replace("}", r"\}")):
            plan(cnv, fold_file=f)


def test_fold_file_ram_style_builds_the_weight_memory_so(cnv, tmp_path):
    """``ram_style`` in a fold file (FINN's name) keeps the planner's fold for a layer given
    no pe/simd, reaches the engine's weight memory as its ``ram_style`` attribute, moves the
    memory between LUT RAM and block RAM in the device fit, and is validated."""
    from bitplane.gen.devices import fit
    from bitplane.hw.bitserial import BitSerialMVTU
    from bitplane.gen.hwmap import layer_params
    from tests.support.verilog import component_verilog
    f = tmp_path / "fold.yaml"
    auto = plan(cnv, target_fps=9000)
    f.write_text("conv1: {ram_style: block}\n")
    blk = plan(cnv, target_fps=9000, fold_file=f)
    a1, b1 = (next(x for x in p["folds"] if x.stage == "conv1") for p in (auto, blk))
    assert (b1.pe, b1.simd, b1.source, b1.ram_style) == (a1.pe, a1.simd, a1.source, "block")
    assert a1.ram_style == "auto"
    # conv1's weight memory is shallow (auto: LUT RAM); as block RAM it costs RAMB36 and no LUTs
    ra, rb = ({r["device"]: r for r in fit(cnv, p)}["xc7z020"] for p in (auto, blk))
    assert rb["bram"] > ra["bram"] and rb["luts"] < ra["luts"]
    st = next(s for s in cnv.stages if s.name == "conv1")
    eng = layer_params(st, b1.pe, b1.simd, 1, init=False, ram_style="block").engine
    assert eng.weight_ram_style == "block"
    assert 'ram_style = "block"' in component_verilog(BitSerialMVTU(eng), "mvtu")
    for text, msg in (("conv1: {ram_style: bram}\n", "ram_style must be one of auto, block, distributed"),
                      ("conv1: {}\n", "expected {pe: int, simd: int, ram_style")):
        f.write_text(text)
        with pytest.raises(PlanError, match=msg.replace("{", r"\{").replace("}", r"\}")):
            plan(cnv, target_fps=9000, fold_file=f)


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


def _expected_block_cycles(low, folds):
    """Each block's cycles/frame written out independently of hw/ (docs/design.md section 6 and the
    sliding-window/pool word counts): a conv is the slowest of its engine (V*(R/PE)*(N/SIMD)*Pw*Pa),
    its window (OH*OW*K*K words of C/lanes), its input (H*W*C/lanes words) and its pool (one word
    per cycle over the pooled window); a dense layer of engine and input; a code pool of its window.
    ``lanes`` is the producer's PE (the input stream's lanes for the first block)."""
    import math
    lanes = max(d for d in range(1, low.net.input_shape[0] + 1)
                if low.net.input_shape[0] % d == 0 and d * low.net.input_bits <= 32)
    out = {}

    def win_words(h, w, c_words, k, s, pads):
        t, b, left, r = pads
        return ((h + t + b - k) // s + 1) * ((w + left + r - k) // s + 1) * k * k * c_words
    for st in low.stages:
        if st.name in folds:
            f = folds[st.name]
            eng = (st.out_channels // f.pe) * (st.n_dot // f.simd) * st.wq.planes * st.in_act.planes
            if st.kind == "dense":
                out[st.name] = max(eng, st.n_dot // lanes)
            else:
                C, H, W = st.in_shape
                vec = int(math.prod(st.mm_shape[1:]))
                parts = [vec * eng, win_words(H, W, C // lanes, st.kernel, st.stride, st.pads), H * W * C // lanes]
                if st.pool is not None:
                    _, OH, OW = st.mm_shape
                    parts.append(win_words(OH, OW, st.out_channels // f.pe, st.pool.kernel, st.pool.stride,
                                           st.pool.pads))
                out[st.name] = max(parts)
            lanes = f.pe
        else:
            C, H, W = st.in_shape
            out[st.name] = win_words(H, W, C // lanes, st.pool.kernel, st.pool.stride, st.pool.pads)
    return out


@pytest.mark.parametrize("name,fps", [("cnv-w1a1", 1000), ("cnv-w1a1", 9000), ("cnv-w2a2", 2600),
                                      ("lenet-w2a2", 1500), ("tfc-w1a1", 20000)])
def test_plan_cycles_match_an_independent_count(name, fps):
    """The plan's per-block cycles/frame equal the word counts written out in the test (windows
    fed at the producer's PE): at 9,000 frames/s CNV-W1A1's conv3 window needs conv2 to emit more
    than 2 channels per word (regression: the planner counted engines only and compile silently
    gave 1,736 frames/s). That the plan is also what the RTL runs at is checked by the simulation
    tests (tests/accel, planned == measured period)."""
    low = lower(load_network(EX / f"{name}.yaml"))
    p = plan(low, target_fps=fps)
    folds = {f.stage: f for f in p["folds"]}
    want = _expected_block_cycles(low, folds)
    assert {**{f.stage: f.block_cycles for f in p["folds"]}, **p["pools"]} == want
    assert max(want.values()) == p["cycles_per_frame"] <= 100e6 / fps
    assert p["bottleneck"] == max(want, key=want.get)


def test_fold_file_slower_than_the_target_is_refused(cnv, tmp_path):
    f = tmp_path / "fold.yaml"
    f.write_text("conv1: {pe: 1, simd: 1}\n")
    with pytest.raises(PlanError, match="conv1.*fold file.*PE=1, SIMD=1"):
        plan(cnv, target_fps=1000, fold_file=f)


def _built_memories(top):
    """``{(block index, name): (width, depth)}`` of every memory in the elaborated design."""
    from amaranth.hdl import Fragment, Shape
    from amaranth.hdl._mem import MemoryInstance
    out = {}

    def walk(frag, path):
        if isinstance(frag, MemoryInstance):
            parts = path.split("/")
            if parts[0] == "dag":                      # the blocks sit in the DAG wiring (hw/dag.py)
                parts = parts[1:]
            if parts[0].startswith("block"):
                out[(int(parts[0][5:]), "/".join(parts[1:]))] = (Shape.cast(frag._data.shape).width, frag._data.depth)
        for sub, name, _ in frag.subfragments:
            walk(sub, f"{path}/{name}" if path else str(name))
    walk(Fragment.get(top, None), "")
    # a tiled weight memory (hw.memory.block_tiles: wmem_b<bank>_c<column>) counts as the one it builds
    tiles = {}
    for (k, name), wd in list(out.items()):
        head, _, tile = name.rpartition("/")
        if tile.startswith("wmem_b"):
            b, c = (int(v) for v in tile[6:].split("_c"))
            tiles.setdefault((k, f"{head}/wmem"), {})[(b, c)] = out.pop((k, name))
    for key, t in tiles.items():
        out[key] = (sum(w for (b, _), (w, _) in t.items() if b == 0), sum(d for (_, c), (_, d) in t.items() if c == 0))
    return out


@pytest.mark.parametrize("name,fps", [("lenet-w2a2", 1500), ("lenet-lq-w2a2", 800), ("lenet-ttq-a2", 800),
                                      ("tfc-w2a2", 10000), ("fmnist-lenet-w1a2", 1500),
                                      ("svhn-dorefa-w1a2", 1000)])
def test_planned_memory_is_the_built_memory(name, fps):
    """The planner's memory bits are the elaborated design's weight, threshold and constant
    memories (word width x loadable entries; a memory of one entry is built two deep)."""
    from bitplane.gen.compile import build_top
    from bitplane.gen.golden import Golden
    from bitplane.hw.top import Core
    g = Golden(load_network(EX / f"{name}.yaml"))
    p = plan(g.lowered, target_fps=fps)
    tp, stages, _ = build_top(g, p, embed_weights=False)
    built = _built_memories(Core(tp))
    folds = {f.stage: f for f in p["folds"]}
    total = 0
    for k, st in enumerate(stages):
        if st.name not in folds:
            assert not [key for key in built if key[0] == k and key[1].endswith(("wmem", "kmem"))]
            continue
        mems = {key[1]: v for key, v in built.items() if key[0] == k and key[1].endswith(("wmem", "tmem", "kmem"))}
        thr = mems.pop("thresholds/tmem", None) or mems.pop("engine/tmem")
        if "engine/tmem" in mems:                       # a threshold unit's block: the engine's is unused
            assert mems.pop("engine/tmem")[0] == 1
        got = {"weight_bits": mems["engine/wmem"], "threshold_bits": thr}
        f = folds[st.name]
        if "engine/kmem" in mems:                       # raw engines only: K is folded into thresholds
            got["constant_bits"] = mems["engine/kmem"]
        else:
            assert f.constant_bits == 0, st.name
        for key, (width, depth) in got.items():
            planned = getattr(f, key)
            if key == "threshold_bits" and planned == 0:
                assert width == 1                       # raw output: a 1-bit placeholder, never loaded
                continue
            assert planned % width == 0 and depth == max(2, planned // width), (st.name, key, planned, width, depth)
            total += planned
    assert total == p["memory_bits"]


def test_graph_network_plans_and_an_unmappable_one_is_refused_before_writing(tmp_path, capsys):
    """A residual network plans through the command line (the DAG's slowest block sets the
    rate); a graph the hardware cannot map (a three-input add) is refused by plan and compile
    with the layer and what is missing (exit 2, NotSupportedError), and nothing is written."""
    from tests.support.graphnets import bn, conv, qact, resnet_spec, write_net
    spec = write_net(tmp_path, resnet_spec())
    assert main(["plan", str(spec), "--target-fps", "1000"]) == 0
    out = capsys.readouterr().out
    assert "b1add" in out and "xczu7ev" in out     # the per-device fit follows the folds
    bad = {"name": "bad3", "input": {"shape": [2, 6, 6], "bits": 8, "scale": 1 / 255}, "layers": [
        conv("c0", 2), bn("n0"), qact("a0"),
        conv("c1", 2, inputs="a0"), conv("c2", 2, inputs="a0"), conv("c3", 2, inputs="a0"),
        {"name": "s", "op": "add", "inputs": ["c1", "c2", "c3"]}]}
    spec = write_net(tmp_path, bad, name="bad3")
    assert main(["plan", str(spec), "--target-fps", "1000"]) == 2
    assert main(["compile", str(spec), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "layer 's': an add of 3 inputs; the hardware adds two" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_finn_lfc_plans_at_finns_frame_rate():
    """FINN's LFC-W1A1 binarizes its input (2x - 1, then sign: the spec's input stage) and runs at
    356,633 frames/s at 100 MHz (280 cycles/frame). The input stage is a threshold unit fed
    several codes per word, so bitplane plans the same rate: the input stage at 4 codes per
    32-bit word (196 cycles), the engines at 256."""
    low = lower(load_network(EX / "lfc-w1a1.yaml"))
    assert low.stages[0].identity
    p = plan(low, target_fps=356633)
    assert p["cycles_per_frame"] <= 100e6 / 356633
    assert [f.stage for f in p["folds"]] == ["fc0", "fc1", "fc2", "fc3"]
    assert p["pools"]["pre"] == 784 // 4 and p["stream_bits"] == 32


def test_device_chooses_popcounts_and_a_fold_file_overrides_per_layer(cnv, tmp_path, capsys):
    """``--device``: compressor-tree popcounts on 6-input-LUT parts, adder trees on ECP5 and by
    default; a fold file's ``popcount`` wins for its layer; an unknown device or style is a
    one-line error before anything is written."""
    from bitplane.gen.devices import popcount_style
    assert [popcount_style(d) for d in (None, "xc7z020", "xcu250", "ecp5-85k")] == ["adder", "lut6", "lut6", "adder"]
    f = tmp_path / "fold.yaml"
    f.write_text("conv1: {popcount: adder}\n")
    p = plan(cnv, target_fps=2000, fold_file=f, popcount="lut6")
    assert {x.stage: x.popcount for x in p["folds"]}["conv1"] == "adder"
    assert {x.popcount for x in p["folds"] if x.stage != "conv1"} == {"lut6"}
    assert {x.popcount for x in plan(cnv, target_fps=2000)["folds"]} == {"adder"}
    f.write_text("conv1: {popcount: lut4}\n")
    with pytest.raises(PlanError, match="popcount must be one of adder, lut6"):
        plan(cnv, target_fps=2000, fold_file=f)
    out = tmp_path / "out"
    assert main(["compile", str(EX / "tfc-w1a1.yaml"), "-o", str(out), "--device", "xc7z7"]) == 1
    err = capsys.readouterr().err
    assert "unknown device 'xc7z7'" in err and "Traceback" not in err and not out.exists()


def test_device_moves_lut_ram_weights_into_spare_block_ram(cnv, tmp_path):
    """With a device, shallow weight memories (LUT RAM under ``auto``) go to spare block RAM,
    most LUTs saved per block RAM first, within AUTO_BRAM_SHARE of the device; a fold file's
    own ``ram_style`` is kept; a device whose block RAM is already short gets nothing moved."""
    from bitplane.gen.devices import AUTO_BRAM_SHARE, DEVICES, fit, plan_for_device
    base = plan(cnv, target_fps=9000)
    p = plan_for_device(cnv, "xc7z020", target_fps=9000)
    assert p["block_ram_moved"] == ["conv1"]               # 12 x 3,072 bits: LUT RAM under auto
    assert {f.stage: f.ram_style for f in p["folds"]}["conv1"] == "block"
    before, after = (fit(cnv, q, ["xc7z020"])[0] for q in (base, p))
    assert after["luts"] < before["luts"] and before["bram"] < after["bram"] <= AUTO_BRAM_SHARE * DEVICES["xc7z020"].bram
    f = tmp_path / "fold.yaml"
    f.write_text("conv1: {ram_style: distributed}\n")
    kept = plan_for_device(cnv, "xc7z020", target_fps=9000, fold_file=f)
    assert kept["block_ram_moved"] == [] and {x.stage: x.ram_style for x in kept["folds"]}["conv1"] == "distributed"
    assert plan_for_device(cnv, "ecp5-85k", target_fps=9000)["block_ram_moved"] == []   # DP16KD already short
    assert plan_for_device(cnv, None, target_fps=9000)["block_ram_moved"] == []


def test_device_moves_block_ram_weights_to_lut_ram_when_block_ram_is_short(tmp_path):
    """FINN's LFC-W1A1 at its published rate: three 784/1024-bit x 256-word weight memories per
    layer use 72-bit block RAM ports at half depth, 162 RAMB36 of an xc7z020's 140. With the
    device the layer freeing the most block RAM per LUT goes to LUT RAM (fc0: 44 RAMB36 for
    784 x 4 x 256 / 64 LUT6) and the plan fits; a layer moved first but not needed after
    (fc3) is moved back; the moved layer's words are then split, as many 36-bit columns back in
    block RAM as fit under AUTO_BRAM_SHARE (16 columns = 8 RAMB36; the top 2,560 bits of each
    word in LUT RAM); a fold file's ram_style is kept, and when the rest cannot bring the
    block RAM under the device's, nothing is moved."""
    from bitplane.gen.devices import AUTO_BRAM_SHARE, DEVICES, fit, plan_for_device
    low = lower(load_network(EX / "lfc-w1a1.yaml"))
    base = plan(low, target_fps=356633)
    assert fit(low, base, ["xc7z020"])[0]["bram"] == 162
    p = plan_for_device(low, "xc7z020", target_fps=356633)
    assert p["lut_ram_moved"] == ["fc0"] and p["block_ram_moved"] == []
    assert [f.ram_style for f in p["folds"]] == ["block", "auto", "auto", "auto"]
    assert [f.lutram_bits for f in p["folds"]] == [3136 - 16 * 36, 0, 0, 0]
    row = fit(low, p, ["xc7z020"])[0]
    assert row["fits"] and row["bram"] == 162 - 4 * 11 + 8 == AUTO_BRAM_SHARE * DEVICES["xc7z020"].bram
    assert row["luts"] == fit(low, base, ["xc7z020"])[0]["luts"] + 2560 * 256 // 64
    # the split hardware: fc0's engine with its weight word split so
    eng = hwmap.block_params(low.stages[1], 4, p["folds"][0]).engine
    assert eng.split_weights == (576, 2560) and eng.weight_ram_style == "block"
    f = tmp_path / "fold.yaml"
    f.write_text("fc0: {ram_style: block}\nfc1: {ram_style: block}\nfc2: {ram_style: block}\n")
    kept = plan_for_device(low, "xc7z020", target_fps=356633, fold_file=f)
    assert kept["lut_ram_moved"] == [] and not fit(low, kept, ["xc7z020"])[0]["fits"]
    assert plan_for_device(low, None, target_fps=356633)["lut_ram_moved"] == []
