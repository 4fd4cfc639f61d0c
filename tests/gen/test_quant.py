"""Quantizers: basis form reproduces fake-quant exactly; integer dot products are exact."""
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from bitplane.gen.quant import (ActQuant, WEIGHT_TYPES, bitplane_dot, code_bits, fake_quant_weights,
                       quantize_weights)

SETTINGS = settings(max_examples=40)
floats = st.floats(-4, 4, allow_nan=False, allow_infinity=False, width=64)


def weight_cases():
    for t, (lo, hi) in WEIGHT_TYPES.items():
        for k in range(lo, min(hi, 8) + 1):
            yield t, k


@st.composite
def weight_tensors(draw, t, k):
    C = draw(st.integers(1, 4))
    n = draw(st.integers(1, 12))
    W = draw(arrays(np.float64, (C, n), elements=floats))
    params = {}
    if t == "ttq":
        params = {"Wp": draw(st.floats(0.01, 3)), "Wn": draw(st.floats(0.01, 3))}
    if t == "lq":
        params = {"basis": draw(arrays(np.float64, (k, C), elements=st.floats(0.01, 2)))}
    return W, params


@pytest.mark.parametrize("t,k", list(weight_cases()))
def test_weight_basis_reproduces_fake_quant(t, k):
    @SETTINGS
    @given(weight_tensors(t, k))
    def check(case):
        W, params = case
        qs = {"type": t, "bits": k}
        q = quantize_weights(qs, W, params)
        fq = fake_quant_weights(qs, W, params)
        # decode(encode(x)) == fake_quant(x), bit for bit
        assert np.array_equal(q.decode(q.codes), fq)
        assert np.array_equal(q.fq, fq)
        assert q.codes.min() >= 0 and q.codes.max() < (1 << q.planes)
        # float basis: s * (sum_p c_p beta_p + o)
        b = code_bits(q.codes, q.planes)                                   # [C, n, P]
        val = q.basis.scale[:, None] * ((b * q.basis.coefs.T[:, None, :]).sum(-1) + q.basis.offset[:, None])
        tol = 1e-12 * (1 + np.abs(q.table).max())
        np.testing.assert_allclose(val, fq, rtol=1e-12, atol=tol)
        # integer basis
        iv = q.int_values()
        assert iv.dtype == np.int64
        deq = q.int_basis.scale[:, None] * iv
        if q.int_basis.exact:
            np.testing.assert_allclose(deq, fq, rtol=1e-12, atol=tol)
            live = q.int_basis.scale > 0         # BWN of an all-zero tensor has E = 0
            ratio = fq[live] / q.int_basis.scale[live, None]
            assert np.array_equal(np.rint(ratio).astype(np.int64), iv[live])
        else:   # fixed-point: error bounded by half an LSB per coefficient
            lsb = q.int_basis.scale[:, None]
            assert np.all(np.abs(deq - fq) <= lsb * (q.planes + 1) / 2 + 1e-12)
    check()


def test_weight_formulas_against_seed_definitions():
    rng = np.random.default_rng(0)
    W = rng.normal(0, 1, (3, 50))
    # BWN: E * sign(W), E = mean|W| over the tensor
    fq = fake_quant_weights({"type": "dorefa", "bits": 1}, W)
    assert np.allclose(np.abs(fq), np.abs(W).mean()) and np.all(np.sign(fq) == np.where(W >= 0, 1, -1))
    # DoReFa k=2: levels {-1, -1/3, 1/3, 1}
    fq = fake_quant_weights({"type": "dorefa", "bits": 2}, W)
    assert set(np.round(np.unique(fq), 12)) <= {-1.0, round(-1 / 3, 12), round(1 / 3, 12), 1.0}
    t = np.tanh(W) / np.abs(np.tanh(W)).max() * 0.5 + 0.5
    assert np.array_equal(fq, 2 * (np.round(t * 3) / 3) - 1)
    # TTQ: threshold 0.05 max|W|
    fq = fake_quant_weights({"type": "ttq"}, W, {"Wp": 0.7, "Wn": 1.3})
    th = 0.05 * np.abs(W).max()
    assert np.array_equal(fq, np.select([W > th, W < -th], [0.7, -1.3], 0.0))
    # int-k: symmetric per channel
    fq = fake_quant_weights({"type": "int", "bits": 4}, W)
    s = np.abs(W).max(1, keepdims=True) / 7
    assert np.allclose(fq, s * np.clip(np.round(W / s), -7, 7))
    # sign(0) = +1
    assert fake_quant_weights({"type": "sign"}, np.zeros((1, 2)))[0, 0] == 1.0


def test_lq_weights_nearest_level_ties_to_lower():
    v = np.array([[0.5], [1.0]])            # levels -1.5, -0.5, 0.5, 1.5
    W = np.array([[-2.0, -1.0, 0.0, 0.2, 1.0, 9.0]])
    fq = fake_quant_weights({"type": "lq", "bits": 2}, W, {"basis": v})
    assert fq.tolist() == [[-1.5, -1.5, -0.5, 0.5, 0.5, 1.5]]
    q = quantize_weights({"type": "lq", "bits": 2}, W, {"basis": v})
    assert np.array_equal(q.decode(q.codes), fq)


ACT_CASES = ([("dorefa", k, "clip01") for k in range(1, 9)] + [("dorefa", 2, "cabs")]
             + [("uint", k, "relu") for k in range(1, 9)] + [("sign", 1, "none")]
             + [("lq", k, "relu") for k in range(1, 9)] + [("int", k, "none") for k in range(2, 9)]
             + [("int", 2, "relu")])


@pytest.mark.parametrize("t,k,nonlin", ACT_CASES)
def test_act_basis_reproduces_fake_quant(t, k, nonlin):
    @SETTINGS
    @given(arrays(np.float64, st.integers(1, 40), elements=floats),
           arrays(np.float64, k, elements=st.floats(0.01, 2)), st.floats(0.01, 1))
    def check(z, basis, scale):
        qs = {"type": t, "bits": k}
        if t in ("uint", "int"):
            qs["scale"] = scale
        if t == "int":
            qs["narrow"] = k % 2 == 0
        a = ActQuant(qs, nonlin, {"basis": basis})
        x = a.nonlin(z)
        n = a.encode(x)
        assert np.array_equal(a.decode(n), a.fake_quant(x))
        assert np.array_equal(a.apply(z), a.fake_quant(x))
        assert np.all(np.diff(a.levels) >= 0)                 # level indices sorted by value
        codes = a.level_codes[n]
        b = code_bits(codes, a.planes)
        val = a.basis.scale * ((b * a.basis.coefs).sum(-1) + a.basis.offset)
        np.testing.assert_allclose(val, a.fake_quant(x), rtol=1e-12, atol=1e-12)
        iv = a.level_ints[n]
        if a.int_basis.exact:
            np.testing.assert_allclose(a.int_basis.scale * iv, a.fake_quant(x), rtol=1e-12, atol=1e-12)
        else:
            assert np.all(np.abs(a.int_basis.scale * iv - a.fake_quant(x)) <= a.int_basis.scale * k / 2 + 1e-12)
    check()


def test_act_formulas():
    a = ActQuant({"type": "dorefa", "bits": 2}, "cabs")
    assert a.apply(np.array([-2.0, -0.5, -0.1, 0.2, 0.9])).tolist() == [1.0, 2 / 3, 0.0, 1 / 3, 1.0]
    a = ActQuant({"type": "dorefa", "bits": 1}, "clip01")      # DoReFa's "BNN" row: {0, 1}
    assert a.apply(np.array([-1.0, 0.4, 0.5, 0.6, 3.0])).tolist() == [0.0, 0.0, 0.0, 1.0, 1.0]
    a = ActQuant({"type": "sign"}, "none")
    assert a.apply(np.array([-0.1, 0.0, 2.0])).tolist() == [-1.0, 1.0, 1.0]
    a = ActQuant({"type": "lq", "bits": 2}, "relu", {"basis": np.array([0.3, 0.5])})
    assert a.levels.tolist() == [0.0, 0.3, 0.5, 0.8]
    assert a.level_codes.tolist() == [0, 1, 2, 3]
    # nearest level, ties to the lower one, clipped at the top
    assert a.apply(np.array([0.15, 0.16, 0.4, 0.41, 5.0])).tolist() == [0.0, 0.3, 0.3, 0.5, 0.8]
    a = ActQuant({"type": "lq", "bits": 2}, "relu", {"basis": np.array([0.5, 0.3])})
    assert a.level_codes.tolist() == [0, 2, 1, 3]      # level index -> plane code
    a = ActQuant({"type": "uint", "bits": 3, "scale": 0.5}, "relu")
    assert a.apply(np.array([-1.0, 0.74, 0.76, 100.0])).tolist() == [0.0, 0.5, 1.0, 3.5]
    # signed int, FINN's A2: narrow 2-bit {-1, 0, 1}; code = level index = value + 1 (offset -1)
    a = ActQuant({"type": "int", "bits": 2, "narrow": True, "scale": 1.0}, "none")
    assert a.levels.tolist() == [-1.0, 0.0, 1.0] and a.zero_index == 1
    assert a.apply(np.array([-3.0, -0.6, -0.5, 0.49, 0.5, 1.5, 9.0])).tolist() == [-1, -1, 0, 0, 0, 1, 1]
    assert a.level_ints.tolist() == [-1, 0, 1] and a.int_basis.offset == -1 and a.planes == 2
    a = ActQuant({"type": "int", "bits": 3, "narrow": False, "scale": 0.25}, "none")
    assert a.levels.tolist() == [-1.0, -0.75, -0.5, -0.25, 0.0, 0.25, 0.5, 0.75] and a.zero_index == 4
    assert a.encode(np.array([-5.0, 0.0, 0.8])).tolist() == [0, 4, 7]


def test_lq_act_matches_brute_force_nearest():
    rng = np.random.default_rng(3)
    for k in range(1, 6):
        v = rng.uniform(0.05, 1.0, k)
        a = ActQuant({"type": "lq", "bits": k}, "relu", {"basis": v})
        x = rng.uniform(0, v.sum() * 1.2, 2000)
        d = np.abs(x[:, None] - a.levels[None, :])
        srt = np.sort(d, 1)
        clear = srt[:, 1] - srt[:, 0] > 1e-9               # away from ties
        assert np.array_equal(a.fake_quant(x)[clear], a.levels[d.argmin(1)][clear])


@pytest.mark.parametrize("t,k", list(weight_cases()))
def test_integer_dot_products_equal_float(t, k):
    acts = [ActQuant({"type": "dorefa", "bits": 2}, "clip01"), ActQuant({"type": "sign"}, "none"),
            ActQuant({"type": "uint", "bits": 8, "scale": 1 / 255}, "none"),
            ActQuant({"type": "lq", "bits": 2}, "relu", {"basis": np.array([0.25, 0.5])}),
            ActQuant({"type": "lq", "bits": 3}, "relu", {"basis": np.array([0.13, 0.29, 0.61])})]

    @SETTINGS
    @given(weight_tensors(t, k), st.integers(0, len(acts) - 1), st.data())
    def check(case, ai, data):
        W, params = case
        q = quantize_weights({"type": t, "bits": k}, W, params)
        a = acts[ai]
        n = data.draw(arrays(np.int64, W.shape[1], elements=st.integers(0, a.L - 1)))
        a_codes = a.level_codes[n]
        iw = q.int_values()
        ia = a.level_ints[n]
        idot = iw @ ia
        for c in range(W.shape[0]):
            assert bitplane_dot(q.codes[c], a_codes, q.int_basis, a.int_basis, c) == idot[c]
        fdot = q.fq @ a.levels[n]
        s = q.int_basis.scale * a.int_basis.scale
        if q.int_basis.exact and a.int_basis.exact:
            live = s > 0                          # BWN of an all-zero tensor has E = 0
            ratio = fdot[live] / s[live]
            assert np.array_equal(np.rint(ratio).astype(np.int64), idot[live])
            assert np.all(np.abs(ratio - idot[live]) < 1e-6)
            assert np.all(fdot[~live] == 0)
        else:
            bound = (np.abs(q.fq - q.int_basis.scale[:, None] * iw) @ np.abs(a.levels[n])
                     + np.abs(q.int_basis.scale[:, None] * iw) @ np.abs(a.levels[n] - a.int_basis.scale * ia))
            assert np.all(np.abs(fdot - s * idot) <= bound + 1e-9)
    check()


def test_xnor_identity():
    """±1 x ±1: the general formula equals 2*popcount(xnor) - N (the XNOR fast path)."""
    rng = np.random.default_rng(1)
    q = quantize_weights({"type": "sign"}, rng.normal(size=(1, 77)))
    a = ActQuant({"type": "sign"}, "none")
    codes = rng.integers(0, 2, 77)
    xnor = int(np.sum(1 - (q.codes[0] ^ codes)))
    assert bitplane_dot(q.codes[0], codes, q.int_basis, a.int_basis) == 2 * xnor - 77



@pytest.mark.parametrize("t,k", list(weight_cases()))
@pytest.mark.parametrize("act", [({"type": "dorefa", "bits": 3}, "clip01", {}), ({"type": "sign"}, "none", {}),
                                 ({"type": "int", "bits": 4, "scale": 0.25}, "none", {}),
                                 ({"type": "lq", "bits": 2}, "relu", {"basis": np.array([0.3, 0.5])})],
                         ids=["dorefa3", "sign", "int4", "lq2"])
def test_bipolar_identity(t, k, act):
    """Weights symmetric about zero (the engine's bipolar path, hw.bitserial.EngineConfig.bipolar):
    twice the golden formula's dot product equals ``Y + C[r]``, ``Y`` from XNOR counts of the
    planes and ``C`` from ``row_constants``, for every weight quantizer that is symmetric and
    activation bases of several kinds (unsigned, +-1, two's complement, LQ-Nets)."""
    from bitplane.hw.bitserial import EngineConfig, row_constants
    rng = np.random.default_rng(k)
    params = {"Wp": 0.7, "Wn": 1.3} if t == "ttq" else {"basis": rng.uniform(0.01, 2, (k, 3))} if t == "lq" else {}
    q = quantize_weights({"type": t, "bits": k}, rng.normal(size=(3, 29)), params)
    a = ActQuant(*act)
    wb, ab = q.int_basis, a.int_basis
    cw, ow = np.asarray(wb.coefs, dtype=np.int64), np.asarray(wb.offset, dtype=np.int64)
    cfg = EngineConfig(3, 29, 1, 29, tuple(tuple(int(v) for v in r) for r in cw), tuple(int(v) for v in ow),
                       tuple(int(v) for v in ab.coefs), int(ab.offset))
    symmetric = bool(np.all(2 * ow == -cw.sum(0)))
    assert cfg.bipolar == symmetric and cfg.needs_sa == (not symmetric and bool(np.any(ow)))
    assert symmetric == (t in ("sign", "dorefa", "lq")), (t, k)
    if not symmetric:
        return
    C = row_constants(cfg, q.codes.tolist())
    for _ in range(5):
        x = rng.integers(0, 1 << len(ab.coefs), 29)
        for r in range(3):
            Y = sum(int(cw[i][r]) * int(ab.coefs[j]) * int(np.sum(((q.codes[r] >> i) & 1) == ((x >> j) & 1)))
                    for i in range(cw.shape[0]) for j in range(len(ab.coefs)))
            assert 2 * bitplane_dot(q.codes[r], x, wb, ab, channel=r) == Y + C[r]


# --------------------------------------------------------------------------- the --bits option
@pytest.mark.parametrize("text, kw, want", [
    ("1,2", {}, (1, 2)), (" t , 4 ", {}, ("t", 4)), ("T,4", {}, ("t", 4)), ("16,1", {}, (16, 1)),
    ("1,2", {"fields": "WAG", "defaults": {"G": 32}, "float_ok": "G"}, (1, 2, 32)),
    ("32,32,6", {"fields": "WAG", "float_ok": "WAG"}, (32, 32, 6)),
])
def test_parse_bits(text, kw, want):
    from bitplane.gen.quant import parse_bits
    assert parse_bits(text, **kw) == want


@pytest.mark.parametrize("text, kw, msg", [
    ("1", {}, "expected W,A"), ("1,2,3", {}, "expected W,A"), ("1,t", {}, "A='t' is not an integer"),
    ("x,2", {}, "W='x' is not an integer (or 't'"), ("17,2", {}, "weight bits 17 out of range 1..16"),
    ("32,2", {}, "weight bits 32 out of range 1..16"), ("4,2", {"top": 3}, "weight bits 4 out of range 1..3"),
    ("t,2", {"ternary_ok": ""}, "W='t' is not an integer"), ("1,33", {"float_ok": "A"}, "activation bits 33 out of range 1..16 or 32 (float)"),
])
def test_parse_bits_rejects(text, kw, msg):
    from bitplane.core.errors import InputError
    from bitplane.gen.quant import parse_bits
    with pytest.raises(InputError, match=re.escape(msg)):
        parse_bits(text, **kw)


def test_bits_t_means_ternary_for_training_and_import():
    """`t` is ternary weights for both commands: the trainer's TTQ spec and the importer's
    tensorpack spec both get a ``ttq`` weight quantizer from ``--bits t,...``."""
    from bitplane.gen.importers.checkpoint import arch_spec, parse_bits as import_bits
    from bitplane.gen.quant import TERNARY
    from bitplane.train.arch import make_spec, parse_bits as train_bits
    w, a = import_bits("t,2", "svhn")
    assert w == TERNARY
    assert {L["weight_quant"]["type"] for L in arch_spec("svhn", w, a)["layers"]
            if (L.get("weight_quant") or {}).get("type") not in (None, "int")} == {"ttq"}
    w, a, _ = train_bits("t,2", "ttq")
    assert w == TERNARY
    assert {L["weight_quant"]["type"] for L in make_spec("lenet", "ttq", w, a, "n")["layers"]
            if (L.get("weight_quant") or {}).get("type") not in (None, "int")} == {"ttq"}


def test_static_tanh_activation_spec_fields_and_exact_integer_form(tmp_path):
    """The ``tanh`` activation quantizer (the pytorch DoReFa seed's, its range frozen): its
    ``range`` is validated, and the integer path's thresholds reproduce the float decisions."""
    import yaml
    from bitplane.core.errors import SpecError
    from bitplane.gen.golden import Golden
    from bitplane.gen.spec import load_network
    rng = np.random.default_rng(0)

    def write(quant):
        spec = {"name": "t", "input": {"shape": [1, 6, 6], "bits": 8, "scale": 1 / 255}, "weights": "t.npz",
                "layers": [{"name": "c", "op": "conv", "out_channels": 4, "kernel": 3, "padding": 1, "bias": True,
                            "weight_quant": {"type": "dorefa", "bits": 2}},
                           {"name": "a", "op": "quant_act", "nonlin": "relu", "quant": quant},
                           {"name": "d", "op": "dense", "out_features": 3, "bias": True}]}
        (tmp_path / "t.yaml").write_text(yaml.safe_dump(spec))
        np.savez(tmp_path / "t.npz", **{"c/W": rng.normal(0, 1, (4, 1, 3, 3)), "c/b": rng.normal(0, 0.5, 4),
                                        "d/W": rng.normal(0, 1, (3, 144)), "d/b": np.zeros(3)})
        return tmp_path / "t.yaml"

    for bad, msg in (({"type": "tanh", "bits": 2}, "need a 'range' in \\(0, 1\\]"),
                     ({"type": "tanh", "bits": 2, "range": 1.5}, "need a 'range'"),
                     ({"type": "uint", "bits": 2, "scale": 0.1, "range": 0.5}, "'range' only applies to tanh")):
        with pytest.raises(SpecError, match=r"layer 'a'.*" + msg):
            load_network(write(bad))
    net = load_network(write({"type": "tanh", "bits": 3, "range": 0.7}))
    g = Golden(net)
    x = rng.integers(0, 256, (64, 1, 6, 6)).astype(np.uint8)
    _, tr = g.run_float(x, trace=True)
    st = g.lowered.stages[0]
    assert st.out_act.qtype == "tanh" and st.out_act.describe()["range"] == 0.7
    _, outs = g.run_int(x, trace=True)
    assert np.array_equal(st.out_act.levels[outs[st.name]], tr["a"])      # thresholds == float decisions
    assert len(np.unique(outs[st.name])) > 2


@pytest.mark.parametrize("t, k", [("lq", 2), ("lq", 3), ("ttq", 2), ("int", 8), ("dorefa", 4)])
def test_weight_int_values_by_table_equal_the_plane_sum(t, k):
    """Many weights (more than channels x 2^planes): IntBasis.int_values looks each code up in
    a per-channel table; the integers are the planes' sum, computed here directly."""
    rng = np.random.default_rng(3)
    W = rng.normal(0, 1, (5, 40, 3, 3)) * rng.uniform(0.1, 2, (5, 1, 1, 1))
    params = {"basis": np.sort(rng.uniform(0.1, 1, (k, 5)), axis=0), "Wp": 0.7, "Wn": 0.4}
    q = quantize_weights({"type": t, "bits": k, "coef_bits": 13}, W, params)
    ib = q.int_basis
    assert q.codes.size > 5 << ib.planes
    bits = code_bits(q.codes, ib.planes)                              # [C, ..., P]
    coefs = np.asarray(ib.coefs).T.reshape(5, 1, 1, 1, ib.planes)
    want = (bits * coefs).sum(-1) + np.asarray(ib.offset).reshape(5, 1, 1, 1)
    got = q.int_values()
    assert got.dtype == np.int64 and np.array_equal(got, want)
