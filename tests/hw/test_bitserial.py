"""Bit-serial MVTU against its NumPy reference (amaranth.sim, random gaps and backpressure)."""
import re

import numpy as np
import pytest

from bitplane.hw.bitserial import (BitSerialMVTU, EngineConfig, engine_cycles, pack_constants, pack_thresholds,
                          pack_weights, row_constants)
from bitplane.hw.memory import LUTRAM_DEPTH, block_tiles
from tests.support.mvtu_ref import act_words, make_case, mvtu_reference, out_lanes
from tests.support.verilog import component_verilog
from tests.support.streams import run_stream


def run_mvtu(cfg, wcodes, thr, dirs, vectors, seed=0, gap=0.3, stall=0.3, load=True):
    consts = row_constants(cfg, wcodes)
    init = {} if load else dict(init_weights=tuple(map(tuple, wcodes.tolist())),
                                init_thresholds=tuple(map(tuple, thr)), init_dirs=tuple(map(tuple, dirs)),
                                init_consts=tuple(consts))
    if init:
        cfg = EngineConfig(**{**cfg.__dict__, **init})
    dut = BitSerialMVTU(cfg)
    words = act_words(cfg, vectors)

    async def loader(ctx):
        for port, entries in ((dut.w_wr, pack_weights(cfg, wcodes)),
                              *(((dut.k_wr, pack_constants(cfg, consts)),) if cfg.raw else ()),
                              *(((dut.t_wr, pack_thresholds(cfg, thr, dirs, consts)),) if cfg.n_thresholds else ())):
            for addr, d in entries:
                ctx.set(port.payload, {"addr": addr, "data": d})
                ctx.set(port.valid, 1)
                await ctx.tick()
            ctx.set(port.valid, 0)

    got, stamps = run_stream(dut, words, len(vectors) * cfg.nf, seed, gap, stall, setup=loader if load else None,
                             limit=200 + 80 * len(words) * (1 + cfg.w_planes * cfg.a_planes * cfg.nf),
                             ports=("act", "out"))
    return out_lanes(cfg, got), stamps


CASES = [
    # R, N, PE, SIMD, (weights, bits), (acts, bits), T
    (4, 12, 2, 4, ("dorefa", 2), ("uact", 2), 3),
    # Horner with the two weight planes inside the activation planes (EngineConfig.weights_inner)
    (4, 12, 2, 4, ("dorefa", 2), ("uact", 3), 7),
    (4, 8, 4, 8, ("dorefa", 2), ("uact", 5), 0),
    (6, 9, 3, 3, ("bwn", 1), ("uact", 1), 1),
    (4, 8, 4, 8, ("ttq", 2), ("uact", 2), 3),          # PE = R, SIMD = N
    (4, 10, 1, 2, ("lq", 2), ("lqact", 2), 3),
    (3, 6, 1, 3, ("int", 4), ("uact", 3), 0),          # raw output
    (2, 5, 2, 5, ("int", 8), ("uact", 8), 0),
    (4, 16, 2, 8, ("sign", 1), ("signact", 1), 1),     # +-1 both sides, general path
    # Horner mode with negative planes (EngineConfig.horner_levels): two levels (an inner sum
    # per weight plane, then the weight planes, the top one subtracted), with thresholds, with
    # signed activations, one level with signed activations, weights inside signed activations
    (4, 12, 2, 4, ("int", 3), ("uact", 3), 3),
    (4, 8, 2, 4, ("int", 4), ("sintact", 3), 0),
    (4, 8, 2, 4, ("dorefa", 3), ("sintact", 2), 3),
    (4, 12, 2, 4, ("int", 2), ("sintact", 4), 0),
    # one cycle per row fold (SF = Pw = Pa = 1, NF > 1): the fold changes every cycle, so the
    # threshold read must follow the dot product stage by stage (regression: CNV at 9,000 fps)
    (4, 16, 2, 16, ("bwn", 1), ("uact", 1), 1),
    (6, 12, 2, 12, ("sign", 1), ("signact", 1), 1),
    # more PEs than one register of the selected activation plane feeds (ACT_FANOUT): copies
    (9, 8, 9, 4, ("dorefa", 2), ("uact", 2), 3),
    (10, 16, 10, 8, ("sign", 1), ("signact", 1), 1),
    # and of the weight plane's sign for the outer sums of two-level Horner (outer_neg copies)
    (6, 8, 6, 4, ("int", 3), ("uact", 3), 3),
    # and of the terms' signs (signed activations' top plane; a ternary table's negative entries)
    (6, 8, 6, 4, ("dorefa", 3), ("sintact", 2), 3),
    (6, 8, 6, 8, ("ttq", 2), ("uact", 2), 3),
    # more lanes than one register of the activation plane index drives (SEL_FANOUT): copies
    (2, 40, 2, 20, ("bwn", 1), ("uact", 3), 1),
    # one column fold and 8 activation planes under 1-bit weights (CNV's conv0): the Horner
    # accumulator doubles at every issue but the first (EngineConfig.horner_doubles_always)
    (4, 9, 2, 9, ("bwn", 1), ("uact", 8), 1),
    # weights with an asymmetric zero point per row: the o_w x S_a term (EngineConfig.needs_sa;
    # the symmetric ones above take the bipolar path): thresholds, raw, Horner over 8 planes
    (4, 12, 2, 4, ("zp", 2), ("uact", 2), 3),
    (3, 6, 1, 3, ("zp", 3), ("uact", 3), 0),
    (4, 9, 2, 9, ("zp", 1), ("uact", 8), 1),
    (4, 12, 2, 4, ("dorefa", 3), ("uact", 3), 3),      # two-level Horner, bipolar
]


def test_case_paths():
    """CASES cover each arithmetic path: XNOR (none here: the +-1 cases take the general
    config), bipolar (symmetric weights), and the activation sum (asymmetric zero points)."""
    rng = np.random.default_rng(0)
    cfgs = [make_case(rng, R, N, pe, simd, wk, wb, ak, ab, T)[0] for R, N, pe, simd, (wk, wb), (ak, ab), T in CASES]
    bip = [c for c in cfgs if c.bipolar]
    sa = [c for c in cfgs if c.needs_sa]
    assert {c.raw for c in bip} == {True, False} and {c.raw for c in sa} == {True, False}
    assert any(c.horner_levels == 2 for c in bip) and any(c.horner_shift is None for c in bip)
    assert all(not c.bipolar for c in sa) and len(sa) == 3


@pytest.mark.parametrize("case,copies,n", [((6, 8, 6, 4, ("int", 3), ("uact", 3), 3), "outer_neg_b", 6),
                                           ((6, 8, 6, 4, ("dorefa", 3), ("sintact", 2), 3), "term_neg", 6),
                                           ((6, 8, 6, 8, ("ttq", 2), ("uact", 2), 3), "prod_neg", 6),
                                           ((6, 8, 6, 4, ("dorefa", 3), ("sintact", 2), 3), "a_sel", 2),
                                           ((2, 40, 2, 20, ("bwn", 1), ("uact", 3), 1), "j_sel", 2)])
def test_kept_register_copies(case, copies, n):
    """Kept register copies instead of one register driving many loads: six PEs, a sign
    register per PE for each kind of term (hw.bitserial._pe_group_registers) and the selected
    activation plane once per ACT_FANOUT PEs (a_sel itself and a_sel1); 20 lanes, the plane index
    once per SEL_FANOUT lanes."""
    R, N, pe, simd, (wk, wb), (ak, ab), T = case
    cfg = make_case(np.random.default_rng(1), R, N, pe, simd, wk, wb, ak, ab, T)[0]
    v = component_verilog(BitSerialMVTU(cfg), "mvtu")
    first = 1 if copies == "a_sel" else 0
    assert all(re.search(rf"keep = 32'd1 \*\)\s*(\(\*[^)]*\)\s*)*reg (\[\d+:0\] )?{copies}{k} ", v)
               for k in range(first, n))
    assert f"{copies}{n} " not in v and f"{copies}{n};" not in v


def test_horner_doubles_always_cases():
    """Which CASES have an unconditional doubling (no multiplexer before the accumulator)."""
    rng = np.random.default_rng(0)
    got = []
    for R, N, pe, simd, (wk, wb), (ak, ab), T in CASES:
        cfg = make_case(rng, R, N, pe, simd, wk, wb, ak, ab, T)[0]
        got.append(cfg.horner_doubles_always)
    assert got[CASES.index((4, 9, 2, 9, ("bwn", 1), ("uact", 8), 1))]
    assert got[CASES.index((4, 16, 2, 16, ("bwn", 1), ("uact", 1), 1))]
    assert not got[0] and not got[1]          # column folds (SF = 3)
    assert 2 <= sum(got) < len(CASES)


@pytest.mark.parametrize("popcount", ["adder", "lut6"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[4][0]}{c[4][1]}-{c[5][0]}{c[5][1]}-R{c[0]}N{c[1]}P{c[2]}S{c[3]}")
def test_mvtu_matches_reference(case, popcount):
    R, N, pe, simd, (wk, wb), (ak, ab), T = case
    rng = np.random.default_rng(R * 100 + N)
    cfg, wcodes, thr, dirs, vectors = make_case(rng, R, N, pe, simd, wk, wb, ak, ab, T)
    cfg = EngineConfig(**{**cfg.__dict__, "popcount": popcount})
    out, _ = run_mvtu(cfg, wcodes, thr, dirs, vectors, seed=len(case))
    assert np.array_equal(out, mvtu_reference(cfg, wcodes, thr, dirs, vectors))


@pytest.mark.parametrize("case", [CASES[i] for i in (0, 2, 6, 9, 14)],
                         ids=lambda c: f"{c[4][0]}{c[4][1]}-{c[5][0]}{c[5][1]}-R{c[0]}N{c[1]}P{c[2]}S{c[3]}")
def test_shared_address_memories(case):
    """Loadable memories read and written at one address (hw.memory.loadable_ports): loaded
    through w_wr/k_wr/t_wr, then vectors under gaps and backpressure (thresholds, raw mode with
    its K memory, several weight planes, two-level Horner)."""
    R, N, pe, simd, (wk, wb), (ak, ab), T = case
    rng = np.random.default_rng(R * 100 + N + 1)
    cfg, wcodes, thr, dirs, vectors = make_case(rng, R, N, pe, simd, wk, wb, ak, ab, T)
    cfg = EngineConfig(**{**cfg.__dict__, "shared_address": True, "weight_ram_style": "distributed"})
    out, _ = run_mvtu(cfg, wcodes, thr, dirs, vectors, seed=3)
    assert np.array_equal(out, mvtu_reference(cfg, wcodes, thr, dirs, vectors))


@pytest.mark.parametrize("case,lut_bits,shared", [(CASES[0], 3, False), (CASES[8], 5, True), (CASES[6], 1, True)],
                         ids=["dorefa2-uact2", "sign-signact-shared", "raw-int4-shared"])
@pytest.mark.parametrize("load", [True, False])
def test_split_weight_memory(case, lut_bits, shared, load):
    """A weight memory split by columns (EngineConfig.split_weights): the low bits in block RAM,
    the top ``lut_bits`` in LUT RAM (on one read/write address with ``shared``), read at one
    address; loaded through w_wr or initialised at power-on, under gaps and backpressure."""
    R, N, pe, simd, (wk, wb), (ak, ab), T = case
    rng = np.random.default_rng(R * 100 + N + 7)
    cfg, wcodes, thr, dirs, vectors = make_case(rng, R, N, pe, simd, wk, wb, ak, ab, T)
    cfg = EngineConfig(**{**cfg.__dict__, "weight_ram_style": "block", "weight_lutram_bits": lut_bits,
                          "shared_address": shared})
    assert cfg.split_weights == (pe * simd - lut_bits, lut_bits)
    v = component_verilog(BitSerialMVTU(cfg), "mvtu")
    assert "wmem_block" in v and "wmem_lut" in v
    out, _ = run_mvtu(cfg, wcodes, thr, dirs, vectors, seed=9, load=load)
    assert np.array_equal(out, mvtu_reference(cfg, wcodes, thr, dirs, vectors))


def test_split_weight_memory_needs_block_style_and_one_block_ram_deep():
    cfg = make_case(np.random.default_rng(0), 4, 12, 2, 4, "dorefa", 2, "uact", 2, 3)[0]
    for bad in ({"weight_lutram_bits": 2}, {"weight_ram_style": "block", "weight_lutram_bits": 8},
                {"weight_ram_style": "distributed", "weight_lutram_bits": 2}):
        with pytest.raises(ValueError, match="weight_lutram_bits"):
            EngineConfig(**{**cfg.__dict__, **bad})
    deep = make_case(np.random.default_rng(0), 8, 2304, 2, 2, "dorefa", 2, "uact", 2, 3)[0]
    with pytest.raises(ValueError, match="weight words"):
        EngineConfig(**{**deep.__dict__, "weight_ram_style": "block", "weight_lutram_bits": 1})


@pytest.mark.parametrize("rows,pe,raw", [(64, 1, False), (130, 2, False), (4, 4, False), (64, 1, True), (130, 2, True)])
def test_threshold_and_constant_memories_carry_the_models_placement(rows, pe, raw):
    """The threshold (and raw mode's row-constant) memory is built where the model puts it
    (hw.memory.in_lut_ram with ``auto``: LUT RAM up to 64 row folds, block RAM deeper, registers
    for one), written as its ram_style so yosys cannot choose otherwise, and the read pipeline
    follows the same placement (EngineConfig.thresholds_in_block_ram)."""
    wq, aq, T = (("int", 4), ("uact", 4), 0) if raw else (("dorefa", 2), ("uact", 2), 3)
    cfg = make_case(np.random.default_rng(rows), rows, 8, pe, 4, *wq, *aq, T)[0]
    nf = rows // pe
    v = component_verilog(BitSerialMVTU(cfg), "mvtu")
    styles = dict((name, style) for style, name in
                  re.findall(r'\(\* ram_style = "(\w+)" \*\)\s*\(\* src = [^)]*\)\s*reg \[[^]]*\] (\w+) \[', v))
    want = "logic" if nf == 1 else "distributed" if nf <= 64 else "block"
    mem = "kmem" if raw else "tmem"
    assert styles.get(mem) == want, styles
    if not raw:
        assert cfg.thresholds_in_block_ram == (want == "block")


@pytest.mark.parametrize("cols,simd", [(8, 4), (64, 2), (130, 2), (512, 4)])
def test_activation_buffer_deeper_than_lut_ram_is_block_ram(cols, simd):
    """The two-bank activation buffer (2 x SF words) is marked block RAM when deeper than
    hw.memory.LUTRAM_DEPTH (a deep LUT RAM's read multiplexer was an ECP5 critical path), and
    left to the tool otherwise; the engine stays exact with it."""
    rng = np.random.default_rng(cols)
    cfg, wcodes, thr, dirs, vectors = make_case(rng, 4, cols, 2, simd, "dorefa", 1, "uact", 2, 1, vectors=2)
    v = component_verilog(BitSerialMVTU(cfg), "mvtu")
    decl = re.search(r'((?:\(\* [^*]*\*\)\s*)*)reg \[[^]]*\] abuf \[(\d+):0\]', v)
    assert decl and int(decl.group(2)) + 1 == 2 * cfg.sf
    assert ('ram_style = "block"' in decl.group(1)) == (2 * cfg.sf > LUTRAM_DEPTH), decl.group(0)
    out, _ = run_mvtu(cfg, wcodes, thr, dirs, vectors, seed=cols)
    assert np.array_equal(out, mvtu_reference(cfg, wcodes, thr, dirs, vectors))


@pytest.mark.parametrize("case", [(4, 9, 2, 9, ("bwn", 1), ("uact", 8), 1), (2, 5, 2, 5, ("int", 8), ("uact", 8), 0),
                                  (4, 12, 2, 4, ("dorefa", 2), ("uact", 2), 3), (6, 12, 2, 12, ("sign", 1), ("signact", 1), 1),
                                  (4, 24, 2, 12, ("dorefa", 2), ("uact", 2), 3, "lut6"),
                                  (6, 24, 2, 24, ("sign", 1), ("signact", 1), 1, "lut6")],
                         ids=["horner", "two-level-raw", "folds", "xnor", "folds-compressors", "xnor-compressors"])
def test_reset_mid_vector_then_exact(case):
    """A reset wrapped around the engine (the top's SOFT_RESET: amaranth ResetInserter) while a
    vector is being accumulated, at every cycle of its issue: the next vectors are exact. The
    accumulators have no reset of their own (they are cleared at a sum's end and in the cycle
    after any reset: BitSerialMVTU._accumulate), nor has any register that carries data beside a
    valid flag (popcount stages, products, sums, compares, the output word)."""
    from amaranth import ResetInserter, Signal
    from amaranth.sim import Simulator
    R, N, pe, simd, (wk, wb), (ak, ab), T, *popcount = case
    rng = np.random.default_rng(R * 10 + N)
    cfg, wcodes, thr, dirs, vectors = make_case(rng, R, N, pe, simd, wk, wb, ak, ab, T, vectors=3)
    consts = row_constants(cfg, wcodes)
    cfg = EngineConfig(**{**cfg.__dict__, "popcount": popcount[0] if popcount else cfg.popcount,
                          "init_weights": tuple(map(tuple, wcodes.tolist())),
                          "init_thresholds": tuple(map(tuple, thr)), "init_dirs": tuple(map(tuple, dirs)),
                          "init_consts": tuple(consts)})
    want = mvtu_reference(cfg, wcodes, thr, dirs, vectors[1:])
    junk = act_words(cfg, vectors[:1])
    words = act_words(cfg, vectors[1:])
    for at in range(1, engine_cycles(cfg) + 2, 3):
        mvtu = BitSerialMVTU(cfg)
        soft = Signal()
        dut = ResetInserter({"sync": soft})(mvtu)
        got = []

        async def bench(ctx):
            ctx.set(mvtu.out.ready, 1)
            for w in junk:                           # a vector, then the reset while it is summed
                ctx.set(mvtu.act.payload, w)
                ctx.set(mvtu.act.valid, 1)
                await ctx.tick().until(mvtu.act.ready)
            ctx.set(mvtu.act.valid, 0)
            for _ in range(at):
                await ctx.tick()
            ctx.set(soft, 1)
            await ctx.tick()
            ctx.set(soft, 0)
            for w in words:
                ctx.set(mvtu.act.payload, w)
                ctx.set(mvtu.act.valid, 1)
                await ctx.tick().until(mvtu.act.ready)
            ctx.set(mvtu.act.valid, 0)
            for _ in range(50 * engine_cycles(cfg) * len(vectors)):
                if len(got) == 2 * cfg.nf:
                    break
                await ctx.tick()

        async def sink(ctx):
            async for clk, _, valid, payload, rst in ctx.tick().sample(mvtu.out.valid, mvtu.out.payload, soft):
                if rst:
                    got.clear()
                elif valid:
                    got.append(int(payload))

        sim = Simulator(dut)
        sim.add_clock(1e-8)
        sim.add_testbench(bench)
        sim.add_process(sink)
        sim.run_until(1e-8 * (200 + 60 * engine_cycles(cfg) * len(vectors)))
        got = [w for w in got]
        assert np.array_equal(out_lanes(cfg, got[-2 * cfg.nf:]), want), at


def test_block_tiles_one_block_ram_each():
    # 4 bits x 31,360 words (the demo's fc0): 1-bit columns in 16,384-word banks, not 4,096 x 4
    # cascaded eight deep; 4 x 7,840: two 8,192 x 2 columns, one bank
    assert block_tiles(4, 31360) == (1, 16384)
    assert block_tiles(4, 7840) == (2, 7840)
    assert block_tiles(20, 1100) == (9, 1100)
    assert block_tiles(36, 4096) == (9, 2048)           # eight block RAMs in every shape: fewest banks
    assert block_tiles(3136, 256) == (3136, 256) and block_tiles(9, 2000) == (9, 2000)


@pytest.mark.parametrize("rows,cols,pe,simd,tiles", [(20, 550, 4, 5, ["b0_c0", "b0_c1", "b0_c2"]),
                                                     (8, 2304, 2, 2, ["b0_c0", "b1_c0", "b2_c0"])])
@pytest.mark.parametrize("load", [True, False])
def test_deep_weight_memory_in_tiles(rows, cols, pe, simd, tiles, load):
    """A weight memory deeper than 512 words as tiles of one block RAM each: 20 bits x 1,100
    words in three column slices; 4 bits x 18,432 words in 4-bit x 8,192 banks (the bank
    multiplexer after registers); loaded through w_wr or initialised at power-on, under gaps and
    backpressure."""
    rng = np.random.default_rng(11)
    cfg, wcodes, thr, dirs, vectors = make_case(rng, rows, cols, pe, simd, "dorefa", 2, "uact", 2, 3, vectors=2)
    v = component_verilog(BitSerialMVTU(cfg), "mvtu")
    assert all(f"wmem_{t}" in v for t in tiles) and "wmem_b3" not in v and "wmem_b0_c3" not in v
    # every tile's write enable is a register of its own (hw.memory.tiled_read), kept apart
    assert all(re.search(rf"keep = 32'd1 \*\)\s*(\(\*[^)]*\)\s*)*(wire|reg) tile_{t}_we\b", v) for t in tiles)
    # and its read address (a copy placed near each tile, not one net from the issue to them all)
    assert all(re.search(rf"keep = 32'd1 \*\)\s*(\(\*[^)]*\)\s*)*(wire|reg) (\[\d+:0\] )?tile_{t}_ra\b", v)
               for t in tiles)
    out, _ = run_mvtu(cfg, wcodes, thr, dirs, vectors, seed=5, gap=0.1, stall=0.1, load=load)
    assert np.array_equal(out, mvtu_reference(cfg, wcodes, thr, dirs, vectors))


@pytest.mark.parametrize("simd,popcount", [(8, "adder"), (16, "adder"), (16, "lut6")])
def test_xnor_path_and_power_on_init(simd, popcount):
    rng = np.random.default_rng(7)
    cfg, wcodes, thr, dirs, vectors = make_case(rng, 4, 16, 2, simd, "sign", 1, "signact", 1, 1, xnor=True)
    cfg = EngineConfig(**{**cfg.__dict__, "popcount": popcount})
    out, _ = run_mvtu(cfg, wcodes, thr, dirs, vectors, load=False)
    assert np.array_equal(out, mvtu_reference(cfg, wcodes, thr, dirs, vectors))


@pytest.mark.parametrize("popcount", ["adder", "lut6"])
def test_cycles_per_vector_without_stalls(popcount):
    rng = np.random.default_rng(3)
    n = 12
    cfg, wcodes, thr, dirs, vectors = make_case(rng, 8, 16, 2, 4, "dorefa", 2, "uact", 2, 3, vectors=n)
    cfg = EngineConfig(**{**cfg.__dict__, "popcount": popcount})
    out, stamps = run_mvtu(cfg, wcodes, thr, dirs, vectors, gap=0, stall=0)
    assert np.array_equal(out, mvtu_reference(cfg, wcodes, thr, dirs, vectors))
    per_vec = engine_cycles(cfg)                       # (8/2)(16/4)*2*2 = 64
    assert per_vec == 64
    # steady state: output words of consecutive vectors are exactly engine_cycles apart
    firsts = stamps[::cfg.nf]
    gaps = np.diff(firsts[2:])
    assert np.all(np.abs(gaps - per_vec) <= 1), gaps
    ideal = n * per_vec
    total = stamps[-1] - stamps[0] + per_vec // cfg.nf
    assert ideal / total >= 0.95 * (n - 1) / n


@pytest.mark.parametrize("rows,sf", [(2, 1), (2, 2), (2, 4), (4, 1), (4, 2), (6, 1)])
def test_short_passes_keep_the_input_rate(rows, sf):
    """One plane each and one to three row folds: the engine's pass over a vector takes NF*SF
    cycles, the vector's words SF to arrive. With one row fold a bank's release must reach the
    input's ``ready`` in the same cycle, or every vector costs a cycle more; it is seen a cycle
    late only where the pass leaves a cycle to spare (NF*SF - SF >= 1)."""
    rng = np.random.default_rng(rows * 10 + sf)
    n = 16
    cfg, wcodes, thr, dirs, vectors = make_case(rng, rows, 4 * sf, 2, 4, "bwn", 1, "uact", 1, 1, vectors=n)
    assert cfg.sf == sf and engine_cycles(cfg) == cfg.nf * sf
    out, stamps = run_mvtu(cfg, wcodes, thr, dirs, vectors, gap=0, stall=0)
    assert np.array_equal(out, mvtu_reference(cfg, wcodes, thr, dirs, vectors))
    last = stamps[cfg.nf - 1::cfg.nf]          # each vector's last output word
    assert last[-1] - last[n // 2] == (n - 1 - n // 2) * engine_cycles(cfg)


@pytest.mark.parametrize("popcount", ["adder", "lut6"])
@pytest.mark.parametrize("case", [CASES[13], CASES[14], (8, 4, 2, 4, ("bwn", 1), ("uact", 1), 0),
                                  (4160, 9, 4, 9, ("bwn", 1), ("uact", 1), 1), (400, 9, 4, 9, ("bwn", 1), ("uact", 1), 1)],
                         ids=["bwn-uact", "xnor", "raw", "tiles", "block"])
def test_one_issue_per_row_fold_gives_one_word_per_cycle(case, popcount):
    """With one issue per row fold (SF = Pw = Pa = 1) and a consumer always ready, the output
    words follow each other every cycle: the output FIFO's credits (output_credits) cover the
    round trip from an issue to its word leaving the FIFO, so they never hold the issue back."""
    from bitplane.hw.bitserial import output_credits
    R, N, pe, simd, (wk, wb), (ak, ab), T = case
    rng = np.random.default_rng(11)
    cfg, wcodes, thr, dirs, vectors = make_case(rng, R, N, pe, simd, wk, wb, ak, ab, T, vectors=8)
    cfg = EngineConfig(**{**cfg.__dict__, "popcount": popcount})
    assert engine_cycles(cfg) == cfg.nf and output_credits(cfg) > 2
    assert (cfg.weight_tiles is not None) == (R > 512)     # 36 bits x 1,040 words: three 512-word banks
    assert cfg.weights_in_block_ram == (R >= 400)          # 100 words: one block RAM, its read registered twice
    assert cfg.thresholds_in_block_ram == (R >= 400)       # one threshold word per row fold: the same
    out, stamps = run_mvtu(cfg, wcodes, thr, dirs, vectors, gap=0, stall=0)
    assert np.array_equal(out, mvtu_reference(cfg, wcodes, thr, dirs, vectors))
    assert np.all(np.diff(stamps) == 1), np.diff(stamps)


@pytest.mark.parametrize("path", ["xnor", "bipolar", "general"])
def test_folded_thresholds_decide_as_the_dot_product(path):
    """fold_thresholds: every compared value in range decides like its dot product (XNOR path:
    ``2x - N``; bipolar: ``(x + C)/2``; general: ``x + K``), for thresholds inside, at the ends of
    and far outside the dot product's range; and so does the hardware's one comparator per
    threshold on the packed memory (``x >= v``, negated for a ``<=`` threshold, stored as ``t + 1``:
    pack_thresholds)."""
    from bitplane.hw.bitserial import fold_thresholds, pack_thresholds
    rng = np.random.default_rng(5)
    if path == "xnor":
        cfg = make_case(rng, 4, 13, 2, 13, "sign", 1, "signact", 1, 1, xnor=True)[0]
    else:
        cfg = make_case(rng, 4, 6, 2, 3, "dorefa", 2, "uact", 2, 3)[0]
        if path == "general":           # an asymmetric weight offset: not bipolar
            cfg = EngineConfig(**{**cfg.__dict__, "w_offset": (-2,) * cfg.rows})
    assert (cfg.xnor, cfg.bipolar) == (path == "xnor", path == "bipolar")
    assert cfg.compare_shift == (path == "bipolar")     # (DoReFa weights: g = 2; taken out of the compare)
    lo, hi = cfg.compare_bounds
    T = 40
    consts = rng.integers(-3 * hi, 3 * hi, cfg.rows)
    thr = rng.integers(-4 * hi - 4 * cfg.cols, 4 * hi + 4 * cfg.cols, (cfg.rows, T))
    thr[:, :4] = [lo - 1, hi + 1, -cfg.cols, cfg.cols]
    dirs = rng.integers(0, 2, (cfg.rows, T))
    cfg = EngineConfig(**{**cfg.__dict__, "n_thresholds": T})
    folded = np.array(fold_thresholds(cfg, thr, dirs, consts))
    assert folded.min() >= lo - 1 and folded.max() <= hi + 1
    x = np.arange(lo, hi + 1)

    def decides(r, t):          # the dot product's decision (bipolar: 2 dot against 2 t, exact)
        two = 2 if path == "bipolar" else 1
        dot = 2 * x - cfg.cols if path == "xnor" else (x << cfg.compare_shift) + consts[r]
        return dot >= two * thr[r, t] if dirs[r, t] else dot <= two * thr[r, t]
    for r in range(cfg.rows):
        for t in range(T):
            got = x >= folded[r, t] if dirs[r, t] else x <= folded[r, t]
            assert np.array_equal(got, decides(r, t)), (r, t)
    tw = cfg.threshold_width
    words = dict(pack_thresholds(cfg, thr, dirs, consts))
    for r in range(cfg.rows):
        word = words[r // cfg.pe]
        for t in range(T):
            field = word >> (((r % cfg.pe) * T + t) * (tw + 1))
            v = field & ((1 << tw) - 1)
            v -= (v >> (tw - 1)) << tw
            d = (field >> tw) & 1
            assert d == dirs[r, t]
            hw = (x >= v) == bool(d)
            assert np.array_equal(hw, decides(r, t)), (r, t, v, d)
