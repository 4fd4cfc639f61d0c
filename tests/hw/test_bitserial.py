"""Bit-serial MVTU against its NumPy reference (amaranth.sim, random gaps and backpressure)."""
import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from hw.bitserial import (BitSerialMVTU, EngineConfig, engine_cycles, pack_constants, pack_thresholds,
                          pack_weights, row_constants)


def int_values(codes, coefs, offset):
    P = len(coefs)
    bits = (np.asarray(codes)[..., None] >> np.arange(P)) & 1
    return bits @ np.asarray(coefs) + offset


def reference(cfg, wcodes, thr, dirs, vectors):
    """Exact integer reference: W_int @ A_int, then thresholds + LUT (or raw)."""
    R, N = cfg.rows, cfg.cols
    W = np.stack([int_values(wcodes[r], [cfg.w_coefs[i][r] for i in range(cfg.w_planes)], cfg.w_offset[r])
                  for r in range(R)])
    out = []
    for a in vectors:
        A = int_values(a, cfg.a_coefs, cfg.a_offset)
        acc = W @ A
        if cfg.raw or thr is None:
            out.append(acc)
        else:
            lvl = np.array([sum((acc[r] >= thr[r][t]) if dirs[r][t] else (acc[r] <= thr[r][t])
                                for t in range(cfg.n_thresholds)) for r in range(R)])
            lut = np.array(cfg.out_lut or range(cfg.n_levels))
            out.append(lut[lvl])
    return np.array(out)


def make_case(rng, R, N, pe, simd, wkind, akind, T, xnor=False):
    pw = {"dorefa2": 2, "bwn": 1, "ttq": 2, "int4": 4, "lq2": 2, "sign": 1, "int8": 8}[wkind]
    if wkind == "dorefa2":
        wc, wo = [[2] * R, [4] * R], [-3] * R
    elif wkind in ("bwn", "sign"):
        wc, wo = [[2] * R], [-1] * R
    elif wkind == "ttq":
        wc, wo = [[37] * R, [-52] * R], [0] * R
    elif wkind in ("int4", "int8"):
        k = pw
        wc, wo = [[1 << i] * R for i in range(k - 1)] + [[-(1 << (k - 1))] * R], [0] * R
    else:  # lq2: per-row basis
        v = rng.integers(1, 60, (2, R))
        wc, wo = [list(2 * v[0]), list(2 * v[1])], list(-(v[0] + v[1]))
    if akind == "sign":
        ac, ao = (2,), -1
    elif akind.startswith("u"):
        k = int(akind[1:])
        ac, ao = tuple(1 << j for j in range(k)), 0
    else:  # lq activations
        ac, ao = tuple(int(x) for x in rng.integers(1, 40, 2)), 0
    levels = T + 1 if T else 0
    lut = tuple(int(x) for x in rng.permutation(levels)) if T else ()
    cfg = EngineConfig(R, N, pe, simd, tuple(tuple(int(x) for x in col) for col in wc), tuple(int(x) for x in wo),
                       ac, ao, n_thresholds=T, out_lut=lut, xnor=xnor)
    wcodes = rng.integers(0, 1 << pw, (R, N))
    wcodes[0] = (1 << pw) - 1                         # extremes: all-ones / all-zero rows
    if R > 1:
        wcodes[1] = 0
    return cfg, wcodes


def run_mvtu(cfg, wcodes, thr, dirs, vectors, seed=0, gap=0.3, stall=0.3, load=True):
    rng = random.Random(seed)
    consts = row_constants(cfg, wcodes)
    init = {} if load else dict(init_weights=tuple(map(tuple, wcodes.tolist())),
                                init_thresholds=tuple(map(tuple, thr)), init_dirs=tuple(map(tuple, dirs)),
                                init_consts=tuple(consts))
    if init:
        cfg = EngineConfig(**{**cfg.__dict__, **init})
    dut = BitSerialMVTU(cfg)
    Pa, SIMD, PE = cfg.a_planes, cfg.simd, cfg.pe
    words = []
    for a in vectors:
        for sf in range(cfg.sf):
            w = 0
            for l in range(SIMD):
                w |= int(a[sf * SIMD + l]) << (l * Pa)
            words.append(w)
    got = []
    n_out = len(vectors) * cfg.nf
    done = {"loaded": not load}
    stamps = []

    async def loader(ctx):
        if load:
            for port, entries in ((dut.w_wr, pack_weights(cfg, wcodes)),
                                  (dut.k_wr, pack_constants(cfg, consts)),
                                  *(((dut.t_wr, pack_thresholds(cfg, thr, dirs)),) if cfg.n_thresholds else ())):
                for addr, d in entries:
                    ctx.set(port.payload, {"addr": addr, "data": d})
                    ctx.set(port.valid, 1)
                    await ctx.tick()
                ctx.set(port.valid, 0)
        done["loaded"] = True

    async def source(ctx):
        while not done["loaded"]:
            await ctx.tick()
        for w in words:
            while rng.random() < gap:
                await ctx.tick()
            ctx.set(dut.act.payload, w)
            ctx.set(dut.act.valid, 1)
            await ctx.tick().until(dut.act.ready)
            ctx.set(dut.act.valid, 0)

    async def sink(ctx):
        ow = cfg.out_bits
        cyc = 0
        while len(got) < n_out:
            r = rng.random() >= stall
            ctx.set(dut.out.ready, r)
            _, _, valid, payload = await ctx.tick().sample(dut.out.valid, dut.out.payload)
            cyc += 1
            if r and valid:
                lanes = [(payload >> (p * ow)) & ((1 << ow) - 1) for p in range(PE)]
                if cfg.raw:
                    lanes = [v - (1 << ow) if v >> (ow - 1) else v for v in lanes]
                got.append(lanes)
                stamps.append(cyc)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(loader)
    sim.add_testbench(source)
    sim.add_testbench(sink)
    sim.run_until(1e-8 * (200 + 20 * len(words) * (1 + cfg.w_planes * cfg.a_planes * cfg.nf) * 4))
    out = np.array(got).reshape(len(vectors), cfg.nf, PE).reshape(len(vectors), -1)
    return out, stamps


def random_thresholds(rng, cfg, T, wcodes=None, vectors=None):
    """Thresholds at (and next to) accumulator values that really occur, so every
    comparison direction and the >= / <= boundary cases are exercised."""
    if wcodes is None:
        B = cfg.final_width
        thr = np.sort(rng.integers(-(1 << (B - 3)), 1 << (B - 3), (cfg.rows, T)), axis=1)
    else:
        raw = EngineConfig(**{**cfg.__dict__, "n_thresholds": 0, "out_lut": (), "raw_width": 64})
        accs = reference(raw, wcodes, None, None, vectors)                 # [V, R]
        thr = np.stack([np.sort(rng.choice(accs[:, r], T) + rng.integers(-1, 2, T)) for r in range(cfg.rows)])
    dirs = rng.integers(0, 2, (cfg.rows, T))
    return thr.tolist(), dirs.tolist()


CASES = [
    # R, N, PE, SIMD, weights, acts, T
    (4, 12, 2, 4, "dorefa2", "u2", 3),
    (6, 9, 3, 3, "bwn", "u1", 1),
    (4, 8, 4, 8, "ttq", "u2", 3),          # PE = R, SIMD = N
    (4, 10, 1, 2, "lq2", "lq", 3),
    (3, 6, 1, 3, "int4", "u3", 0),         # raw output
    (2, 5, 2, 5, "int8", "u8", 0),
    (4, 16, 2, 8, "sign", "sign", 1),      # +-1 both sides, general path
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[4]}-{c[5]}-R{c[0]}N{c[1]}P{c[2]}S{c[3]}")
def test_mvtu_matches_reference(case):
    R, N, pe, simd, wk, ak, T = case
    rng = np.random.default_rng(R * 100 + N)
    cfg, wcodes = make_case(rng, R, N, pe, simd, wk, ak, T)
    vectors = rng.integers(0, 1 << cfg.a_planes, (6, N))
    vectors[0] = (1 << cfg.a_planes) - 1
    thr, dirs = random_thresholds(rng, cfg, T, wcodes, vectors) if T else ([[]] * R, [[]] * R)
    out, _ = run_mvtu(cfg, wcodes, thr, dirs, vectors, seed=len(case))
    ref = reference(cfg, wcodes, thr, dirs, vectors)
    if T:
        ref_codes = ref
        assert np.array_equal(out, ref_codes)
    else:
        assert np.array_equal(out, ref)


def test_xnor_path_and_power_on_init():
    rng = np.random.default_rng(7)
    cfg, wcodes = make_case(rng, 4, 16, 2, 8, "sign", "sign", 1, xnor=True)
    vectors = rng.integers(0, 2, (6, 16))
    thr, dirs = random_thresholds(rng, cfg, 1, wcodes, vectors)
    out, _ = run_mvtu(cfg, wcodes, thr, dirs, vectors, load=False)
    assert np.array_equal(out, reference(cfg, wcodes, thr, dirs, vectors))


def test_cycles_per_vector_without_stalls():
    rng = np.random.default_rng(3)
    cfg, wcodes = make_case(rng, 8, 16, 2, 4, "dorefa2", "u2", 3)
    n = 12
    vectors = rng.integers(0, 4, (n, 16))
    thr, dirs = random_thresholds(rng, cfg, 3, wcodes, vectors)
    out, stamps = run_mvtu(cfg, wcodes, thr, dirs, vectors, gap=0, stall=0)
    assert np.array_equal(out, reference(cfg, wcodes, thr, dirs, vectors))
    per_vec = engine_cycles(cfg)                       # (8/2)(16/4)*2*2 = 64
    assert per_vec == 64
    # steady state: output words of consecutive vectors are exactly engine_cycles apart
    firsts = stamps[::cfg.nf]
    gaps = np.diff(firsts[2:])
    assert np.all(np.abs(gaps - per_vec) <= 1), gaps
    ideal = n * per_vec
    total = stamps[-1] - stamps[0] + per_vec // cfg.nf
    assert ideal / total >= 0.95 * (n - 1) / n
