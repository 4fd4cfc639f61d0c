"""Hypothesis-driven bad inputs (issue #14): mutations of specs, weight archives and weight
images — field deletions, type swaps, extreme numbers, truncation, bit flips. Every case ends
either in success or in one bounded error line naming the file (exit 1/2, never a stack), with
nothing left on disk and the user's files unchanged."""
from __future__ import annotations

import copy
import io
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings, strategies as st

from bitplane.core import weightimage as wimg
from bitplane.core.errors import BitplaneError

from .helpers import assert_clean_error, cli, key_paths, snapshot

EXTREMES = st.sampled_from([0, -1, 1, 2 ** 31, 2 ** 63, -2 ** 63, 10 ** 30, 1e-300, 1e300, float("inf"),
                            float("-inf"), float("nan"), 0.5, True, None, "", "x" * 300, [], {}, [1, 2, 3],
                            {"type": "x"}, [[1]], "1e-4"])
CASES = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _run_inspect(capsys, folder: Path, spec: Path) -> tuple[int, str]:
    before = snapshot(folder)
    rc, _, err = cli(capsys, "inspect", spec)
    assert snapshot(folder) == before                       # nothing written, nothing changed
    return rc, err


@pytest.fixture(scope="module")
def spec_doc(tiny_spec):
    return yaml.safe_load(Path(tiny_spec).read_text())


@CASES
@given(data=st.data())
def test_spec_mutations(tiny_spec, spec_doc, capsys, data):
    doc = copy.deepcopy(spec_doc)
    path = data.draw(st.sampled_from(list(key_paths(doc))))
    d = doc
    for k in path[:-1]:
        d = d[k]
    if data.draw(st.booleans()):
        del d[path[-1]]
    else:
        d[path[-1]] = data.draw(EXTREMES)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        shutil.copy(Path(tiny_spec).with_suffix(".npz"), tmp)
        spec = tmp / Path(tiny_spec).name
        spec.write_text(yaml.safe_dump(doc))
        rc, err = _run_inspect(capsys, tmp, spec)
        if rc != 0:
            last = assert_clean_error(rc, err, status=(1, 2))
            assert spec.name in last or Path(tiny_spec).with_suffix(".npz").name in last, last


@CASES
@given(data=st.data())
def test_weight_archive_mutations(tiny_spec, capsys, data):
    with np.load(Path(tiny_spec).with_suffix(".npz")) as z:
        tensors = {k: z[k] for k in z.files}
    key = data.draw(st.sampled_from(sorted(tensors)))
    how = data.draw(st.sampled_from(["delete", "dtype", "shape", "value", "extra"]))
    if how == "delete":
        del tensors[key]
    elif how == "dtype":
        tensors[key] = tensors[key].astype(data.draw(st.sampled_from(["complex128", "bool", "U3", "float16"])))
    elif how == "shape":
        tensors[key] = np.resize(tensors[key], data.draw(st.sampled_from([(0,), (1,), (3, 3, 3), (10 ** 5,)])))
    elif how == "value":
        t = tensors[key].astype(np.float64)
        t.reshape(-1)[0] = data.draw(st.sampled_from([np.nan, np.inf, -np.inf, 1e300, -1e13, 0.0]))
        tensors[key] = t
    else:
        tensors["stray/W"] = np.zeros(3)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        spec = tmp / Path(tiny_spec).name
        shutil.copy(tiny_spec, spec)
        np.savez(spec.with_suffix(".npz"), **tensors)
        rc, err = _run_inspect(capsys, tmp, spec)
        if rc != 0:
            last = assert_clean_error(rc, err, spec.with_suffix(".npz").name, status=(1, 2))
            assert key.split("/")[0] in last or "stray" in last or "NaN" in last or "beyond" in last, last


@CASES
@given(data=st.data())
def test_weight_archive_bytes_truncated_or_flipped(tiny_spec, capsys, data):
    raw = bytearray(Path(tiny_spec).with_suffix(".npz").read_bytes())
    if data.draw(st.booleans()):
        raw = raw[:data.draw(st.integers(0, len(raw) - 1))]
    else:
        for i in data.draw(st.lists(st.integers(0, len(raw) - 1), min_size=1, max_size=8)):
            raw[i] ^= 1 << data.draw(st.integers(0, 7))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        spec = tmp / Path(tiny_spec).name
        shutil.copy(tiny_spec, spec)
        spec.with_suffix(".npz").write_bytes(bytes(raw))
        rc, err = _run_inspect(capsys, tmp, spec)
        if rc != 0:
            assert_clean_error(rc, err, spec.with_suffix(".npz").name, status=(1, 2))


@settings(max_examples=80, deadline=None)
@given(data=st.data())
def test_weight_image_mutations_never_parse_silently_wrong(tiny_build, data):
    """The image parser (gateware's rules in Python) and the CRC: a truncated or bit-flipped
    image is either refused or, when it still parses, has another CRC-32."""
    words = wimg.from_bytes((tiny_build / "weights.bin").read_bytes())
    bad = list(words)
    if data.draw(st.booleans()):
        bad = bad[:data.draw(st.integers(0, len(bad) - 1))]
    else:
        for _ in range(data.draw(st.integers(1, 4))):
            i = data.draw(st.integers(0, len(bad) - 1))
            bad[i] ^= 1 << data.draw(st.integers(0, 31))
    if bad == words:
        return
    assert wimg.checksum(bad) != wimg.checksum(words)
    try:
        wimg.unpack_image(bad)
    except ValueError as e:
        assert "\n" not in str(e)


@settings(max_examples=6, deadline=None)
@given(data=st.data())
def test_weight_image_faults_on_the_device(tiny_spec, tiny_build, data):
    """Truncated / bit-flipped images streamed to the simulated device are refused (CRC, word
    count or WEIGHT_FORMAT) and the reloaded network then computes exactly."""
    from bitplane.gen.golden import Golden
    from bitplane.gen.spec import load_network
    from bitplane.host.driver import Accelerator
    words = wimg.from_bytes((tiny_build / "weights.bin").read_bytes())
    bad = list(words)
    if data.draw(st.booleans()):
        bad = bad[:data.draw(st.integers(1, len(bad) - 1))]
    else:
        i = data.draw(st.integers(0, len(bad) - 1))
        bad[i] ^= 1 << data.draw(st.integers(0, 31))
    x = np.random.default_rng(0).integers(0, 16, (3, 2, 5, 5)).astype(np.uint8)
    with tempfile.TemporaryDirectory() as tmp, Accelerator.open(tiny_build, "sim") as acc:
        p = Path(tmp) / "w.bin"
        p.write_bytes(wimg.to_bytes(bad))
        with pytest.raises(BitplaneError):
            acc.load_weights(p)
        assert not acc.weights_loaded
        acc.load_weights()
        assert np.array_equal(acc.infer(x, progress=False).acc, Golden(load_network(tiny_spec)).run_int(x))


@CASES
@given(data=st.data())
def test_input_array_mutations(tiny_build, capsys, data):
    """`run`/`sim` inputs: wrong shapes, dtypes, values, truncated or flipped files."""
    x = np.zeros((2, 2, 5, 5), np.uint8)
    how = data.draw(st.sampled_from(["shape", "dtype", "value", "bytes", "empty", "object"]))
    buf = io.BytesIO()
    if how == "shape":
        np.save(buf, np.zeros(data.draw(st.sampled_from([(2, 5, 5, 2), (0, 2, 5, 5), (2,), (), (1, 2, 5)])), np.uint8))
    elif how == "dtype":
        np.save(buf, x.astype(data.draw(st.sampled_from(["int64", "float32", "bool", "U1"]))))
    elif how == "value":
        np.save(buf, x + np.uint8(data.draw(st.sampled_from([16, 255]))))
    elif how == "empty":
        buf.write(b"")
    elif how == "object":
        np.save(buf, np.array([None, 1], dtype=object), allow_pickle=True)
    else:
        np.save(buf, x)
        raw = bytearray(buf.getvalue())
        i = data.draw(st.integers(0, len(raw) - 1))
        raw = raw[:i] if data.draw(st.booleans()) else raw[:i] + bytes([raw[i] ^ 0xFF]) + raw[i + 1:]
        buf = io.BytesIO(bytes(raw))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "x.npy").write_bytes(buf.getvalue())
        before = snapshot(tmp)
        rc, _, err = cli(capsys, "sim", tiny_build, "--input", tmp / "x.npy", "--output", tmp / "y.npy")
        if rc != 0:
            assert_clean_error(rc, err, "x.npy")
            assert snapshot(tmp) == before
