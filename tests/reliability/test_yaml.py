"""Issue #14 reproducers 5, 10 and 11 for YAML: the one loader (core/yamlio) used by specs,
fold files and layer lists."""
from __future__ import annotations

import time

import numpy as np
import pytest
import yaml

from bitplane.core.errors import InputError
from bitplane.core.yamlio import parse_yaml

from .helpers import assert_clean_error, cli


def _err(msg):
    return InputError(msg)


def bomb(levels: int, width: int = 9) -> str:
    """Nested anchors: ``levels`` levels of ``width`` aliases each (width**levels values)."""
    lines = ["a0: &a0 [1]"]
    for k in range(1, levels + 1):
        lines.append(f"a{k}: &a{k} [" + ", ".join([f"*a{k - 1}"] * width) + "]")
    return "\n".join(lines)


def test_alias_bomb_in_a_spec_is_refused_quickly_with_a_short_line(tmp_path, capsys):
    """Reproducer 5: 9 nested anchors in input.shape made `inspect` allocate 6 GB."""
    anchors = "\n".join(f"x{k}: &x{k} [" + ", ".join([f"*x{k - 1}"] * 9) + "]" for k in range(1, 10))
    text = f"x0: &x0 [1]\n{anchors}\nname: bomb\ninput: {{shape: *x9, bits: 8}}\nlayers: []\n"
    assert len(text.encode()) < 1200
    p = tmp_path / "bomb.yaml"
    p.write_text(text)
    t0 = time.perf_counter()
    rc, _, err = cli(capsys, "inspect", p)
    assert time.perf_counter() - t0 < 10
    assert_clean_error(rc, err, "bomb.yaml", "aliases")


def test_alias_limits_and_ordinary_aliases():
    assert parse_yaml(bomb(3), _err)["a3"][0][0][0] == [1]              # 729 values: fine
    with pytest.raises(InputError, match="expands to more than"):
        parse_yaml(bomb(8), _err)
    with pytest.raises(InputError, match="nested more than"):
        parse_yaml("[" * 10_000 + "]" * 10_000, _err)
    with pytest.raises(InputError, match="nested more than"):
        parse_yaml("a:\n" + "".join("  " * k + " b:\n" for k in range(1, 400)) + "  " * 400 + " 1\n", _err)
    merged = parse_yaml("base: &b {pe: 2, simd: 4}\nfc: {<<: *b, simd: 8}\n", _err)
    assert merged["fc"] == {"pe": 2, "simd": 8}                         # merge keys may be overridden


def test_duplicate_keys_are_refused_and_exponents_are_numbers():
    with pytest.raises(InputError, match="line 1, column 9: duplicate key 'pe'"):
        parse_yaml("{pe: 1, pe: 2}", _err)
    with pytest.raises(InputError, match="line 3.*duplicate key 'eps'"):
        parse_yaml("layers:\n- eps: 1.0\n  eps: 2.0\n", _err)
    doc = parse_yaml("a: 1e-4\nb: 1E5\nc: -2.5e+3\nd: 1_000\ne: '1e-4'\nf: 1.0e-4\ng: abc1e4\n", _err)
    assert doc == {"a": 1e-4, "b": 1e5, "c": -2500.0, "d": 1000, "e": "1e-4", "f": 1e-4, "g": "abc1e4"}
    assert yaml.safe_load("a: 1e-4")["a"] == "1e-4"                    # what plain PyYAML does


def _spec_with(tiny_spec, tmp_path, edit):
    import shutil
    from pathlib import Path
    spec = tmp_path / "t.yaml"
    npz = Path(tiny_spec).with_suffix(".npz")
    shutil.copy(npz, tmp_path / npz.name)
    spec.write_text(edit(Path(tiny_spec).read_text()))
    return spec


def test_eps_written_as_1e_4_is_a_number_and_inf_is_refused(tiny_spec, tmp_path, capsys):
    import re
    spec = _spec_with(tiny_spec, tmp_path, lambda t: re.sub(r"eps: [^,}\n]+", "eps: 1e-4", t))
    assert "eps: 1e-4" in spec.read_text()
    rc, _, err = cli(capsys, "inspect", spec)
    assert rc == 0, err
    spec = _spec_with(tiny_spec, tmp_path, lambda t: re.sub(r"eps: [^,}\n]+", "eps: .inf", t))
    rc, _, err = cli(capsys, "inspect", spec)
    assert_clean_error(rc, err, "t.yaml", "'bn0'", "'eps'", "finite")


@pytest.mark.parametrize("kind", ["spec", "fold", "layers"])
def test_non_utf8_and_duplicate_keys_in_every_yaml_file(kind, tiny_spec, tmp_path, capsys):
    bad = tmp_path / f"{kind}.yaml"
    bad.write_bytes(b"name: caf\xe9\n")
    args = {"spec": ["inspect", bad], "fold": ["plan", tiny_spec, "--fold", bad],
            "layers": ["import", "tensorpack", tmp_path / "none.npz", "--spec", bad, "-o", tmp_path / "o.yaml"]}[kind]
    rc, _, err = cli(capsys, *args)
    if kind == "layers" and "none.npz" in err:                 # the checkpoint is checked first
        np.savez(tmp_path / "none.npz", **{"conv1/W:0": np.zeros((3, 3, 1, 2), np.float32)})
        rc, _, err = cli(capsys, *args)
    assert_clean_error(rc, err, f"{kind}.yaml")
    bad.write_text("a: 1\na: 2\n")
    rc, _, err = cli(capsys, *args)
    last = assert_clean_error(rc, err)
    assert f"{kind}.yaml" in last or "none.npz" in last


def test_deeply_nested_spec_is_one_line(tmp_path, capsys):
    p = tmp_path / "deep.yaml"
    p.write_text("name: " + "[" * 10_000 + "]" * 10_000 + "\n")
    rc, _, err = cli(capsys, "inspect", p)
    assert_clean_error(rc, err, "deep.yaml", "nested")
