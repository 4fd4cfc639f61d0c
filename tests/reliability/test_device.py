"""Issue #14 reproducers 1, 2 and 9 and driver fault injection on the simulated device: no
call ever returns a wrong or shifted result, and the batch after any fault succeeds."""
from __future__ import annotations

import threading

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from bitplane.core import weightimage as wimg
from bitplane.core.errors import BitplaneError
from bitplane.gen.golden import Golden
from bitplane.gen.spec import load_network
from bitplane.host.driver import Accelerator, DeviceError
from bitplane.host.transport import TransportError


@pytest.fixture(scope="module")
def dev(tiny_spec, tiny_build):
    golden = Golden(load_network(tiny_spec))
    with Accelerator.open(tiny_build, "sim") as acc:
        acc.load_weights()
        yield acc, golden


def _x(n, seed):
    return np.random.default_rng(seed).integers(0, 16, (n, 2, 5, 5)).astype(np.uint8)


def _fault(acc, kind, rng):
    """Do something to the device behind the driver's back (or make a transfer fail)."""
    fb = acc.frame_bytes
    beat = acc.manifest.input.layout.bytes_per_beat
    if kind == "short":                                     # early tlast
        acc.t.send(bytes(beat * int(rng.integers(1, fb // beat))))
    elif kind == "long":                                    # late tlast
        acc.t.send(bytes(fb + beat * int(rng.integers(1, 40))))
    elif kind == "stray":                                   # a whole frame nobody asked for
        acc.t.send(bytes(fb))
    elif kind == "stray_run":                               # ... and its result emitted before the batch
        acc.t.send(bytes(fb))
        acc.t.run_cycles(3000)
    elif kind == "reset_mid_frame":
        acc.t.send(bytes(fb))
        acc.t.run_cycles(int(rng.integers(1, 30)))
        acc.regs.write("CTRL", acc.regs.bit("CTRL", "SOFT_RESET"))
    elif kind == "recover":                                 # reproducer 1: explicit recover() after a stray
        acc.t.send(bytes(400 if fb > 400 else beat * (fb // beat // 2)))
        acc.t.run_cycles(2000)
        acc.recover()
    elif kind == "timeout":                                 # reproducer 9: a batch that times out
        old = acc.timeout
        acc.timeout = 1e-4
        try:
            acc.infer(_x(6, 99), progress=False)
        except BitplaneError:
            pass
        finally:
            acc.timeout = old
    elif kind == "weights_bit_errors":                      # bit errors on the weight stream
        words = wimg.from_bytes((acc.folder / "weights.bin").read_bytes())
        for i in rng.integers(1, len(words) - 1, 2):
            words[int(i)] ^= 1 << int(rng.integers(0, 32))
        import tempfile
        with tempfile.NamedTemporaryFile(suffix=".bin") as f:
            f.write(wimg.to_bytes(words))
            f.flush()
            try:
                acc.load_weights(f.name)
            except DeviceError:
                pass
        acc.load_weights()


FAULTS = ["short", "long", "stray", "stray_run", "reset_mid_frame", "recover", "timeout", "weights_bit_errors"]


@pytest.mark.parametrize("kind", FAULTS)
def test_fault_then_every_batch_is_exact(dev, kind):
    """Reproducer 1 (short frame, late tlast, recover()) and 9 (timeout): the very next batch
    and the ones after it are exact, none shifted by a frame."""
    acc, golden = dev
    x = _x(5, 1)
    want = golden.run_int(x)
    _fault(acc, kind, np.random.default_rng(0))
    for k in range(2):
        r = acc.infer(x, progress=False)
        assert np.array_equal(r.acc, want), (kind, k)


def test_reproducer_1_exactly_as_reported(dev):
    acc, golden = dev
    x = _x(4, 2)
    good = acc.infer(x, progress=False).acc
    acc.t.send(bytes(400 if acc.frame_bytes > 400 else 8))                 # a short frame
    for _ in range(3):
        r = acc.infer(x, progress=False)
        assert np.array_equal(r.acc, good)
        assert not np.array_equal(r.acc[1:], good[:-1]) or np.array_equal(good[1:], good[:-1])


@settings(max_examples=12, deadline=None)
@given(steps=st.lists(st.tuples(st.sampled_from(FAULTS + ["none"]), st.integers(1, 4), st.integers(0, 2 ** 16)),
                      min_size=1, max_size=4))
def test_random_fault_sequences_never_return_a_wrong_result(dev, steps):
    acc, golden = dev
    for kind, n, seed in steps:
        rng = np.random.default_rng(seed)
        if kind != "none":
            _fault(acc, kind, rng)
        x = _x(n, seed)
        r = acc.infer(x, progress=False)
        assert np.array_equal(r.acc, golden.run_int(x)), steps


def test_a_frame_length_the_device_does_not_produce_is_a_framing_error(tiny_build, tmp_path):
    """A manifest whose output frame length disagrees with the device (consistently edited, so
    the schema cannot tell): results out of step raise instead of being returned."""
    import json
    import shutil
    shutil.copytree(tiny_build, tmp_path / "b")
    mf = tmp_path / "b" / "manifest.json"
    m = json.loads(mf.read_text())
    so = m["streams"]["output"]
    so["shape"] = [so["shape"][0] + 1]
    so["words_per_frame"] = so["beats_per_frame"] = so["shape"][0]
    m["output_affine"]["scale"] = m["output_affine"]["scale"][:1]
    m["output_affine"]["bias"] = m["output_affine"]["bias"][:1]
    mf.write_text(json.dumps(m))
    with Accelerator.open(tmp_path / "b", "sim", timeout=5) as acc:
        acc.load_weights()
        with pytest.raises(TransportError, match="framing error"):
            acc.infer(_x(3, 0), progress=False)


def test_hardware_crc_detects_the_bit_pair_the_old_checksum_missed(dev):
    """Reproducer 2 on the device: the same bit flipped in two words 32 apart."""
    acc, golden = dev
    words = wimg.from_bytes((acc.folder / "weights.bin").read_bytes())
    start, i = None, 1                                  # the first payload of at least 33 words
    for _, _, payload in wimg.unpack_image(words):
        if len(payload) > 32:
            start = i + 1
            break
        i += 1 + len(payload)
    assert start is not None
    words[start] ^= 1                                  # same bit, two payload words 32 apart
    words[start + 32] ^= 1
    def rotl_sum(ws):                                  # the checksum before issue #14
        c = 0
        for w in ws:
            c = ((c << 1 | c >> 31) & 0xFFFFFFFF) ^ w
        return c
    assert rotl_sum(words) == rotl_sum(wimg.from_bytes((acc.folder / "weights.bin").read_bytes()))
    import tempfile
    with tempfile.NamedTemporaryFile(suffix=".bin") as f:
        f.write(wimg.to_bytes(words))
        f.flush()
        with pytest.raises(DeviceError, match="checksum"):
            acc.load_weights(f.name)
    acc.load_weights()
    x = _x(2, 5)
    assert np.array_equal(acc.infer(x, progress=False).acc, golden.run_int(x))


def test_ctrl_c_during_infer_is_reported_and_the_device_recovers(dev):
    acc, golden = dev
    x = _x(40, 3)
    real = acc.t.send
    calls = []

    def send(data, timeout=None):
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return real(data, timeout)
    acc.t.send = send
    try:
        with pytest.raises(KeyboardInterrupt, match="interrupted"):
            acc.infer(x, progress=False)
    finally:
        del acc.t.send
    assert not [t for t in threading.enumerate() if t.name == "bitplane-recv"]
    y = _x(3, 4)
    assert np.array_equal(acc.infer(y, progress=False).acc, golden.run_int(y))
