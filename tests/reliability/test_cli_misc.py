"""Issue #14 reproducers 10 and 11 that remain: self-test vectors, device strings, empty
batches, input file names in shape errors, Ctrl-C, the error formatter."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from bitplane.core.errors import InputError, format_error, short_repr

from .helpers import assert_clean_error, cli, snapshot


@pytest.fixture
def folder(tiny_build, tmp_path):
    shutil.copytree(tiny_build, tmp_path / "b")
    return tmp_path / "b"


@pytest.mark.parametrize("damage", ["missing", "pickled", "npy", "no_y"])
def test_selftest_with_damaged_test_vectors(folder, capsys, damage):
    tv = folder / "testvectors.npz"
    if damage == "missing":
        tv.unlink()
    elif damage == "pickled":
        import pickle
        tv.write_bytes(pickle.dumps({"x": 1}))
    elif damage == "npy":
        np.save(tv.with_suffix(".tmp.npy"), np.zeros(3))
        tv.with_suffix(".tmp.npy").replace(tv)
    else:
        with np.load(tv) as z:
            x = z["x"]
        np.savez(tv, x=x)
    rc, _, err = cli(capsys, "run", folder, "--selftest")
    assert_clean_error(rc, err, "testvectors.npz")


def test_zynq_device_on_regular_files(folder, tmp_path, capsys):
    (tmp_path / "ua").write_bytes(b"")
    (tmp_path / "ub").write_bytes(b"xx")
    rc, _, err = cli(capsys, "run", folder, "--device", f"zynq:{tmp_path / 'ua'},{tmp_path / 'ub'}", "--selftest")
    assert_clean_error(rc, err, str(tmp_path / "ua"))


@pytest.mark.parametrize("cmd", ["sim", "run"])
def test_empty_batch_and_shape_errors_name_the_input_file(folder, tmp_path, capsys, cmd):
    np.save(tmp_path / "empty.npy", np.zeros((0, 2, 5, 5), np.uint8))
    np.save(tmp_path / "shape.npy", np.zeros((2, 5, 5, 2), np.uint8))
    np.save(tmp_path / "dtype.npy", np.zeros((2, 2, 5, 5), np.int64))
    before = snapshot(tmp_path)
    for name, what in (("empty", "empty"), ("shape", "[N, 2, 5, 5]"), ("dtype", "uint8")):
        rc, _, err = cli(capsys, cmd, folder, "--input", tmp_path / f"{name}.npy", "--output", tmp_path / "y.npy")
        assert_clean_error(rc, err, f"{name}.npy", what)
    assert snapshot(tmp_path) == before


def test_ctrl_c_in_the_cli_is_one_line(folder, tmp_path, capsys, monkeypatch):
    from bitplane.host import driver
    np.save(tmp_path / "x.npy", np.zeros((2, 2, 5, 5), np.uint8))

    def interrupted(self, *a, **k):
        raise KeyboardInterrupt("inference interrupted; device reset, results discarded")
    monkeypatch.setattr(driver.Accelerator, "infer", interrupted)
    rc, _, err = cli(capsys, "run", folder, "--input", tmp_path / "x.npy", "--output", tmp_path / "y.npy")
    assert rc == 130 and "interrupted" in err and "Traceback" not in err
    assert not (tmp_path / "y.npy").exists()


def test_error_formatter_bounds_lines():
    huge = list(range(10 ** 6))
    e = InputError(f"spec.yaml: field 'input.shape': got {huge!r}")
    line = format_error(e)
    assert len(line) < 700 and "\n" not in line and line.startswith("spec.yaml: field 'input.shape'")
    assert "more characters" in line
    assert format_error(InputError("a\nb\n  c")) == "a b c"
    assert len(short_repr(huge)) < 200 and "1,000,000 items" in short_repr(huge)
    assert format_error(KeyError("k"), with_type=True) == "KeyError: 'k'"
