"""The bit-serial MVTU on Verilator (cocotb 2.x): bit-exact vs the NumPy reference under
random input gaps and output backpressure, over every quantizer's bases and (W, A) widths."""
import numpy as np
import pytest

from bitplane.gen.quant import IntBasis, bitplane_dot
from bitplane.hw.bitserial import BitSerialMVTU, engine_cycles, pack_constants, pack_thresholds, pack_weights, row_constants
from bitplane.hw.lint_waivers import lint
from bitplane.sim.cocotb_run import run
from tests.support.mvtu_ref import act_words, make_case, mvtu_reference, out_lanes
from tests.support.verilog import component_verilog

# the default suite takes a cover of the grid (each W and each A, both Horner orders, the 8-bit
# corners); the rest runs with `make test-slow`
WA_DEFAULT = {(1, 2), (2, 1), (2, 2), (3, 4), (4, 3), (1, 8), (8, 1)}
WA_GRID = [(w, a) if (w, a) in WA_DEFAULT else pytest.param(w, a, marks=pytest.mark.slow)
           for w, a in [(w, a) for w in (1, 2, 3, 4) for a in (1, 2, 3, 4)] + [(8, 8), (1, 8), (8, 1)]]


def wkind(w):
    return ("bwn", 1) if w == 1 else ("dorefa", w)


def run_case(cfg, wcodes, thr, dirs, vec, seed=0, idle=0.3, stall=0.3):
    comp = BitSerialMVTU(cfg)
    v = component_verilog(comp, "mvtu")
    consts = row_constants(cfg, wcodes)
    mem = {"w_wr": pack_weights(cfg, wcodes), "t_wr": pack_thresholds(cfg, thr, dirs, consts) if cfg.n_thresholds else []}
    addr_bits = {"w_wr": comp._aw, "t_wr": comp._tw}
    if cfg.raw:                     # with thresholds, K is folded into them (no k_wr port)
        mem["k_wr"], addr_bits["k_wr"] = pack_constants(cfg, consts), comp._tw
    words = act_words(cfg, vec)
    res = run(v, "mvtu", "tests.support.tb_mvtu", {"seed": seed, "idle": idle, "stall": stall, "mem": mem,
                                          "addr_bits": addr_bits, "words": words,
                                          "n_out": len(vec) * cfg.nf}, name="mvtu")
    return out_lanes(cfg, [int(w) for w in res["out"]]), res["cycles"]


@pytest.mark.parametrize("w,a", WA_GRID, ids=lambda x: str(x))
def test_wa_grid_dorefa(w, a):
    """DoReFa/BWN weights x unsigned activations over the (W, A) grid, thresholds (2^A - 1)."""
    rng = np.random.default_rng(w * 10 + a)
    T = min((1 << a) - 1, 15)
    wk, wb = wkind(w)
    cfg, wcodes, thr, dirs, vec = make_case(rng, 6, 12, 3, 4, wk, wb, "uact", a, T)
    out, _ = run_case(cfg, wcodes, thr, dirs, vec, seed=w + a)
    assert np.array_equal(out, mvtu_reference(cfg, wcodes, thr, dirs, vec))


QUANT_CASES = [
    # name, rows, cols, pe, simd, (wkind, wbits), (akind, abits), T, xnor
    ("bnn-xnor", 8, 32, 4, 16, ("sign", 1), ("signact", 1), 1, True),
    ("bnn-general", 8, 32, 8, 32, ("sign", 1), ("signact", 1), 1, False),     # PE = R, SIMD = N
    ("ttq", 6, 18, 2, 6, ("ttq", 2), ("uact", 2), 3, False),
    ("lq-w2a2", 6, 12, 3, 3, ("lq", 2), ("lqact", 2), 3, False),
    ("lq-w3a2-raw", 4, 8, 1, 2, ("lq", 3), ("lqact", 2), 0, False),
    ("int8-u8-raw", 4, 9, 4, 9, ("int", 8), ("uact", 8), 0, False),
    ("int4-sign", 4, 8, 2, 2, ("int", 4), ("signact", 1), 1, False),
    ("bwn-u2-fold1", 4, 8, 1, 1, ("bwn", 1), ("uact", 2), 3, False),            # PE = SIMD = 1
]


@pytest.mark.parametrize("case", QUANT_CASES, ids=lambda c: c[0])
def test_every_quantizer(case):
    name, R, N, pe, simd, (wk, wb), (ak, ab), T, xnor = case
    rng = np.random.default_rng(len(name))
    cfg, wcodes, thr, dirs, vec = make_case(rng, R, N, pe, simd, wk, wb, ak, ab, T, xnor=xnor)
    out, _ = run_case(cfg, wcodes, thr, dirs, vec, seed=3)
    ref = mvtu_reference(cfg, wcodes, thr, dirs, vec)
    assert np.array_equal(out, ref)
    # the reference agrees with the bit-plane formula of the golden model
    raw = mvtu_reference(cfg, wcodes, thr, dirs, vec, raw=True)
    wb_ = IntBasis(np.array(cfg.w_coefs), np.array(cfg.w_offset), np.ones(R), True)
    ab_ = IntBasis(np.array(cfg.a_coefs), cfg.a_offset, 1.0, True)
    for r in range(R):
        assert bitplane_dot(wcodes[r], vec[2], wb_, ab_, r) == raw[2, r]


def test_cycles_and_utilization_on_verilator():
    rng = np.random.default_rng(11)
    cfg, wcodes, thr, dirs, vec = make_case(rng, 8, 32, 2, 8, "dorefa", 2, "uact", 2, 3, vectors=24)
    out, cycles = run_case(cfg, wcodes, thr, dirs, vec, idle=0, stall=0)
    assert np.array_equal(out, mvtu_reference(cfg, wcodes, thr, dirs, vec))
    per_vec = engine_cycles(cfg)                            # (8/2)(32/8)*2*2 = 64
    firsts = np.array(cycles[::cfg.nf])
    steady = np.diff(firsts[4:])
    assert np.all(np.abs(steady - per_vec) <= 2), steady
    util = (len(firsts) - 5) * per_vec / (firsts[-1] - firsts[4])
    assert util >= 0.95, util


def test_generated_verilog_lints_clean():
    rng = np.random.default_rng(0)
    for args in ((6, 12, 3, 4, "dorefa", 2, "uact", 2, 3), (4, 9, 4, 9, "int", 8, "uact", 8, 0),
                 (8, 32, 4, 16, "sign", 1, "signact", 1, 1)):
        cfg = make_case(rng, *args, xnor=args[4] == "sign")[0]
        assert lint(component_verilog(BitSerialMVTU(cfg), "mvtu"), "mvtu") == []
