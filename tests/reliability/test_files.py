"""Issue #14 reproducers 3, 4, 7, 10 (paths, arrays) and 11 (partial outputs): the one output
writer, folder replacement and bounded readers of core/fileio."""
from __future__ import annotations

import os
import signal
import stat
import zipfile
from pathlib import Path

import numpy as np
import pytest

from bitplane.core import fileio
from bitplane.core.errors import InputError

from .helpers import assert_clean_error, cli, snapshot


def _x(n=2, seed=0):
    return np.random.default_rng(seed).integers(0, 16, (n, 2, 5, 5)).astype(np.uint8)


# ---------------------------------------------------------------------------- reproducer 3
def test_compile_never_replaces_a_folder_bitplane_did_not_write(tiny_spec, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    p = tmp_path / "P"
    p.mkdir()
    (p / "manifest.json").write_text("{}")
    (p / "main.c").write_text("x\n")
    before = snapshot(tmp_path)
    rc, _, err = cli(capsys, "compile", tiny_spec, "-o", p)
    assert_clean_error(rc, err, str(p), "refusing")
    assert snapshot(tmp_path) == before                          # main.c kept, nothing added
    f = tmp_path / "file"
    f.write_text("mine")
    for target in (f, ".", tmp_path, "/"):
        rc, _, err = cli(capsys, "compile", tiny_spec, "-o", target)
        assert_clean_error(rc, err)
    assert f.read_text() == "mine" and snapshot(tmp_path)["file"] == before.get("file", snapshot(tmp_path)["file"])


def test_compile_replaces_its_own_build_and_leaves_no_temporaries(tiny_spec, tiny_build, tmp_path, capsys):
    import shutil
    out = tmp_path / "b"
    shutil.copytree(tiny_build, out)
    (out / "stale.txt").write_text("from an older build")
    rc, _, err = cli(capsys, "compile", tiny_spec, "-o", out, "--target-fps", "100000")
    assert rc == 0, err
    assert sorted(os.listdir(out)) == ["accelerator.v", "manifest.json", "testvectors.npz", "weights.bin"]
    assert [n for n in os.listdir(tmp_path) if n.startswith(".")] == []


def test_sigterm_during_compile_leaves_nothing(tiny_spec, tmp_path):
    """SIGTERM while the output folder is being written: the temporary folder is removed."""
    import subprocess
    import sys
    code = ("import os, signal, bitplane.gen.compile as c\n"
            "real = c.manifest_json\n"
            "def slow(m):\n    os.kill(os.getpid(), signal.SIGTERM)\n    return real(m)\n"
            "c.manifest_json = slow\n"
            "from bitplane.cli.main import main\n"
            f"raise SystemExit(main(['compile', {str(tiny_spec)!r}, '-o', {str(tmp_path / 'out')!r}]))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 128 + signal.SIGTERM, r.stderr
    assert "terminated" in r.stderr and "Traceback" not in r.stderr
    assert os.listdir(tmp_path) == []


# ---------------------------------------------------------------------------- reproducer 4
def test_output_symlink_is_written_through_and_device_nodes_are_refused(tiny_spec, tmp_path, capsys):
    np.save(tmp_path / "x.npy", _x())
    real = tmp_path / "real.npy"
    real.write_bytes(b"old")
    os.chmod(real, 0o640)
    link = tmp_path / "link.npy"
    link.symlink_to(real)
    rc, _, err = cli(capsys, "golden", tiny_spec, "--input", tmp_path / "x.npy", "--output", link)
    assert rc == 0, err
    assert link.is_symlink() and np.load(real).shape == (2, 3)
    assert stat.S_IMODE(real.stat().st_mode) == 0o640               # an existing file keeps its mode
    null_before = os.stat("/dev/null")
    rc, _, err = cli(capsys, "golden", tiny_spec, "--input", tmp_path / "x.npy", "--output", "/dev/null")
    assert_clean_error(rc, err, "/dev/null", "not a regular file")
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode) and os.stat("/dev/null").st_ino == null_before.st_ino


def test_new_output_gets_the_umask_mode(tiny_spec, tmp_path, capsys):
    np.save(tmp_path / "x.npy", _x())
    old = os.umask(0o022)
    try:
        rc, _, err = cli(capsys, "golden", tiny_spec, "--input", tmp_path / "x.npy", "--output", tmp_path / "y.npy")
    finally:
        os.umask(old)
    assert rc == 0, err
    assert stat.S_IMODE((tmp_path / "y.npy").stat().st_mode) == 0o644


# ---------------------------------------------------------------------------- reproducer 10: output paths
@pytest.mark.parametrize("where", ["dir", "under_file", "proc", "readonly"])
def test_bad_output_paths_are_one_line_errors(tiny_spec, tmp_path, capsys, where):
    np.save(tmp_path / "x.npy", _x())
    (tmp_path / "f").write_text("a file")
    ro = tmp_path / "ro"
    ro.mkdir()
    os.chmod(ro, 0o500)
    target = {"dir": tmp_path, "under_file": tmp_path / "f" / "y.npy", "proc": "/proc/y.npy",
              "readonly": ro / "y.npy"}[where]
    if where == "readonly" and os.geteuid() == 0:
        target = "/proc/sys/y.npy"                      # root ignores permission bits
    before = snapshot(tmp_path)
    rc, _, err = cli(capsys, "golden", tiny_spec, "--input", tmp_path / "x.npy", "--output", target)
    assert_clean_error(rc, err, str(target))
    assert snapshot(tmp_path) == before


def test_run_top_k_checks_both_outputs_before_running(tiny_build, tmp_path, capsys):
    """Reproducer 11: `run --top-k` wrote y.npy and then failed on the top-k file."""
    np.save(tmp_path / "x.npy", _x())
    (tmp_path / "y.topk.npy").mkdir()                      # the second output cannot be written
    before = snapshot(tmp_path)
    rc, _, err = cli(capsys, "run", tiny_build, "--input", tmp_path / "x.npy", "--output", tmp_path / "y.npy",
                     "--top-k", "2")
    assert_clean_error(rc, err, "y.topk.npy")
    assert snapshot(tmp_path) == before


# ---------------------------------------------------------------------------- reproducer 7: lying headers
def _npy_header(shape, dtype="<f8") -> bytes:
    import io
    f = io.BytesIO()
    np.lib.format.write_array_header_1_0(f, {"descr": dtype, "fortran_order": False, "shape": shape})
    return f.getvalue()


def test_npy_header_claiming_huge_shape_is_refused_before_reading(tiny_build, tmp_path, capsys):
    p = tmp_path / "x.npy"
    p.write_bytes(_npy_header((10 ** 13, 2, 5, 5), "|u1") + bytes(64))
    rc, _, err = cli(capsys, "sim", tiny_build, "--input", p, "--output", tmp_path / "y.npy")
    assert_clean_error(rc, err, "x.npy", "header claims")
    p.write_bytes(_npy_header((4, 2, 5, 5), "|u1") + bytes(10))          # truncated data
    rc, _, err = cli(capsys, "sim", tiny_build, "--input", p, "--output", tmp_path / "y.npy")
    assert_clean_error(rc, err, "x.npy", "truncated")
    assert sorted(os.listdir(tmp_path)) == ["x.npy"]


def test_npz_members_are_checked_before_decompression(tmp_path, monkeypatch):
    p = tmp_path / "w.npz"
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("a.npy", _npy_header((10 ** 12,)) + bytes(8))
    with pytest.raises(InputError, match="header claims"):
        fileio.load_npz(p)
    monkeypatch.setattr(fileio, "MAX_ARRAY_BYTES", 1 << 20)            # a 16 MB member, 16 KB on disk
    with zipfile.ZipFile(p, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("a.npy", _npy_header((2 << 20,)) + bytes(16 << 20))
    assert p.stat().st_size < 100_000
    with pytest.raises(InputError, match="exceeds the limit"):
        fileio.load_npz(p)
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("a.npy", b"not an array")
    with pytest.raises(InputError, match="member 'a' is not an .npy array"):
        fileio.load_npz(p)
    np.save(tmp_path / "one.npy", np.zeros(3))
    with pytest.raises(InputError, match="single .npy array, expected an .npz"):
        fileio.load_npz(tmp_path / "one.npy")


def test_npy_given_as_spec_weights_and_member_not_npy(tiny_spec, tmp_path, capsys):
    import shutil
    spec = tmp_path / "t.yaml"
    shutil.copy(tiny_spec, spec)
    weights = tmp_path / Path(tiny_spec).with_suffix(".npz").name
    np.save(tmp_path / "w.npy", np.zeros(3))
    os.replace(tmp_path / "w.npy", weights)
    rc, _, err = cli(capsys, "inspect", spec)
    assert_clean_error(rc, err, weights.name, ".npy")
    with zipfile.ZipFile(weights, "w") as z:
        z.writestr("c0/W.npy", b"junk")
    rc, _, err = cli(capsys, "inspect", spec)
    assert_clean_error(rc, err, weights.name, "not an .npy array")


# ---------------------------------------------------------------------------- reproducer 11: endless inputs
@pytest.mark.parametrize("path", ["/dev/zero", "/dev/urandom"])
def test_endless_inputs_are_refused(path, tiny_build, tmp_path, capsys):
    rc, _, err = cli(capsys, "inspect", path)
    assert_clean_error(rc, err, path, "not a regular file")
    rc, _, err = cli(capsys, "sim", tiny_build, "--input", path, "--output", tmp_path / "y.npy")
    assert_clean_error(rc, err, path)


def test_write_file_unit(tmp_path):
    fileio.write_bytes(tmp_path / "a" / "b.bin", b"x")                  # parents created
    assert (tmp_path / "a" / "b.bin").read_bytes() == b"x"
    (tmp_path / "dangling").symlink_to(tmp_path / "missing" / "f")
    with pytest.raises(InputError, match="symlink to a missing file"):
        fileio.write_bytes(tmp_path / "dangling", b"x")
    with pytest.raises(RuntimeError):
        fileio.write_file(tmp_path / "c.bin", lambda f: (_ for _ in ()).throw(RuntimeError("boom")))
    assert sorted(os.listdir(tmp_path)) == ["a", "dangling"]
