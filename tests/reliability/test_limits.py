"""Issue #14 reproducers 6 and 10 (weight-image sections), 8 (overflowing constants) and
11 (numbers accepted where an error is expected): limits are enforced before memory or disk
is spent."""
from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from bitplane.gen.lower import lower
from bitplane.gen.plan import PlanError, plan
from bitplane.gen.spec import load_network
from tests.support.netgen import write_network

from .helpers import assert_clean_error, cli

ROOT = Path(__file__).resolve().parents[2]

LFC_LIKE = {"name": "lfcish", "input": {"shape": [1, 32, 32], "bits": 1, "scale": 1.0}, "layers": [
    {"name": "fc0", "op": "dense", "out_features": 1024, "bias": False, "weight_quant": {"type": "sign"}},
    {"name": "bn0", "op": "batchnorm", "eps": 1e-4},
    {"name": "a0", "op": "quant_act", "nonlin": "none", "quant": {"type": "sign"}},
    {"name": "fc1", "op": "dense", "out_features": 10, "bias": False, "weight_quant": {"type": "sign"}}]}


def _tfc_variant(tmp_path, edit) -> Path:
    shutil.copy(ROOT / "examples" / "tfc-w1a1.npz", tmp_path)
    p = tmp_path / "tfc-w1a1.yaml"
    p.write_text(edit((ROOT / "examples" / "tfc-w1a1.yaml").read_text()))
    return p


def _int16(t: str) -> str:
    return (t.replace("weight_quant: &id001 {type: sign}", "weight_quant: {type: int, bits: 16}")
            .replace("quant: *id001", "quant: {type: sign}")
            .replace("weight_quant: *id001", "weight_quant: {type: int, bits: 16}"))


def _input16(t: str) -> str:         # 16-bit input codes into int8 weights: 2**16 x 2**8 products per channel
    return (t.replace("bits: 8\n", "bits: 16\n", 1)
            .replace("weight_quant: &id001 {type: sign}", "weight_quant: {type: int, bits: 8}", 1)
            .replace("quant: *id001", "quant: &id001 {type: sign}", 1))


@pytest.mark.parametrize("edit", [_int16, _input16], ids=["int16-weights", "16-bit-input"])
def test_16_bit_specs_lower_in_bounded_memory(tmp_path, edit):
    """Reproducer 6: `_acc_range` tabulated every code pair (8 GiB for 16-bit weights)."""
    import resource
    spec = _tfc_variant(tmp_path, edit)
    assert spec.read_text() != (ROOT / "examples" / "tfc-w1a1.yaml").read_text()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    low = lower(load_network(spec))
    assert time.perf_counter() - t0 < 30
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 1_000_000      # KB: < 1 GB more
    assert all(s.acc_lo < 0 < s.acc_hi for s in low.stages if hasattr(s, "acc_lo"))


def test_acc_range_equals_the_exhaustive_product():
    from bitplane.gen.lower import _acc_range
    for name in ("lenet-lq-w2a2", "lenet-ttq-a2", "tfc-w2a2"):
        for st in lower(load_network(ROOT / "examples" / f"{name}.yaml")).stages:
            if not hasattr(st, "wq"):
                continue
            codes = np.arange(1 << st.wq.planes)
            C = np.asarray(st.wq.int_basis.coefs).shape[1]
            wv = st.wq.int_basis.int_values(np.tile(codes, (C, 1)))
            prods = wv[:, :, None] * st.in_act.level_ints[None, None, :]
            assert _acc_range(st.wq.int_basis, st.wq.planes, st.in_act, st.n_dot) == \
                (int(st.n_dot * prods.min()), int(st.n_dot * prods.max()))


def test_a_memory_longer_than_one_weight_image_section_travels_in_continuation_sections(tmp_path):
    """Reproducer 10: a 1024x1024 layer at PE=SIMD=1 needs 2**20 words, one more than a
    section's 20-bit count; `plan` accepted it and `compile` crashed in hw/weightimage.py. The
    fix first refused such folds, which made AlexNet's fc0 (37.7 Mbit) unplannable at any fold;
    now the image splits the memory into sections of whole entries and the planner has no
    image limit."""
    from bitplane.core import weightimage as wimg
    from bitplane.gen.compile import build_top, weight_image
    from bitplane.hw.top import loadable_memories
    from bitplane.gen.golden import Golden
    spec = write_network(LFC_LIKE, tmp_path, seed=1)
    net = load_network(spec)
    low = lower(net)
    (tmp_path / "fold.yaml").write_text("fc0: {pe: 1, simd: 1}\n")
    p = plan(low, fold_file=tmp_path / "fold.yaml")
    assert [(f.pe, f.simd) for f in p["folds"] if f.stage == "fc0"] == [(1, 1)]
    words = weight_image(Golden(net, low), p)
    heads, i = [], 1                       # walk the sections: headers and where they sit
    while words[i] != wimg.END_WORD:
        heads.append(wimg.parse_header(words[i]))
        i += 1 + heads[-1][2]
    fc0 = [h for h in heads if h[0] == 0 and h[1] & wimg.MAX_KIND == wimg.MEM_WEIGHTS]
    assert [(m, n) for _, m, n in fc0] == [(wimg.MEM_WEIGHTS, wimg.MAX_COUNT),
                                           (wimg.MEM_WEIGHTS | wimg.MEM_CONTINUE, 1024 * 1024 - wimg.MAX_COUNT)]
    joined = wimg.unpack_image(words)      # continuation joined: exactly the memory's entries
    tp, _, _ = build_top(Golden(net, low), p, embed_weights=True)
    k, _, mem = [t for t in loadable_memories(tp) if t[1] == 0 and t[2].kind == wimg.MEM_WEIGHTS][0]
    assert [pl for lay, kind, pl in joined if (lay, kind) == (0, wimg.MEM_WEIGHTS)] == \
        [wimg.split_entries(tp.blocks[k].memory_data(mem), mem.width)]


@pytest.mark.parametrize("args", [["--clock-mhz", "0"], ["--clock-mhz", "nan"], ["--target-fps", "-1"],
                                  ["--lut-budget", "0"]])
def test_non_positive_numbers_on_the_command_line(tiny_spec, tmp_path, capsys, args):
    """Reproducer 11: `compile --clock-mhz 0` recorded 0 frames/s."""
    with pytest.raises(SystemExit) as e:
        cli(capsys, "compile", tiny_spec, "-o", tmp_path / "o", *args)
    assert e.value.code == 2 and "Traceback" not in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_huge_parameters_are_refused_not_overflowed(tmp_path, capsys):
    """Reproducer 8: LQ bases x1e200 overflowed into an int disagreement (only a RuntimeWarning)."""
    src = ROOT / "examples" / "lenet-lq-w2a2"
    shutil.copy(src.with_suffix(".yaml"), tmp_path)
    z = dict(np.load(src.with_suffix(".npz")))
    key = [k for k in z if k.endswith("/basis")][0]
    z[key] = z[key] * 1e200
    np.savez(tmp_path / "lenet-lq-w2a2.npz", **z)
    rc, _, err = cli(capsys, "inspect", tmp_path / "lenet-lq-w2a2.yaml")
    assert_clean_error(rc, err, "lenet-lq-w2a2.npz", key.split("/")[0], "basis")


def test_error_lines_are_bounded(tmp_path, capsys):
    """Reproducer 5: a 439-byte spec printed a 351 MB error line."""
    anchors = "\n".join(f"x{k}: &x{k} [" + ", ".join([f"*x{k - 1}"] * 6) + "]" for k in range(1, 8))
    p = tmp_path / "s.yaml"
    p.write_text(f"x0: &x0 [1]\n{anchors}\nname: s\ninput: {{shape: *x7}}\nlayers: [x]\n")
    rc, _, err = cli(capsys, "inspect", p)
    last = assert_clean_error(rc, err, "s.yaml")
    assert len(err) < 1000, len(err)
    assert re.search(r"input|expands", last)
