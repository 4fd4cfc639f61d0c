"""The host driver (host/driver.py): on the RTL simulation (sim transport) and on stand-in
XDMA / Zynq devices that record the exact traffic and answer with the golden model."""
from __future__ import annotations

import json
import os
import re
import shutil
import struct
import threading

import numpy as np
import pytest

from bitplane.cli.main import main as cli
from bitplane.gen.compile import compile_network
from bitplane.core.errors import InputError
from bitplane.gen.golden import Golden
from bitplane.gen.spec import load_network
from bitplane.host.driver import Accelerator, DeviceError
from bitplane.core.packing import from_stream_order
from bitplane.host.transport import (DMASR_IDLE, DMASR_IOC, MM2S_DMASR, MM2S_LENGTH, S2MM_DMASR, S2MM_LENGTH,
                            TransportError, XdmaTransport, ZynqTransport)
from bitplane.core import regmap
from bitplane.core.regmap import mask as _bit, offset as _r
from bitplane.core import weightimage as wimg
from bitplane.host.sim_transport import SimTransport
from bitplane.hw.framing import LOADER_CYCLES_PER_WORD
from tests.support.networks import EXAMPLES, ROOT, inputs as _inputs



@pytest.fixture
def tiny(tiny_loadable):
    net, out, _ = tiny_loadable
    return net, out


# ---------------------------------------------------------------------------- sim transport

@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_example_networks_through_the_driver_on_sim(name, tmp_path):
    net = load_network(ROOT / "examples" / f"{name}.yaml")
    compile_network(net, tmp_path / "out", target_fps=EXAMPLES[name], progress=lambda s: None)
    x = _inputs(net, 10, seed=5)
    with Accelerator.open(tmp_path / "out", "sim", gap_pct=10, stall_pct=20) as acc:
        lw = acc.load_weights()
        assert lw["checksum"] == acc.m["weights"]["checksum"]
        r = acc.infer(x, top_k=3, dequantize=True)
    g = Golden(net)
    want = g.run_int(x)
    assert r.acc.dtype == np.int64 and np.array_equal(r.acc, want)
    assert np.allclose(r.logits, g.dequantize(want))
    assert np.array_equal(r.top_k[:, 0], np.argmax(r.logits.reshape(len(x), -1), axis=1))
    assert r.fps > 0 and r.device_cycles > 0


def test_cli_run_and_selftest_on_sim(tiny, tmp_path, capsys):
    net, out = tiny
    x = _inputs(net, 6, seed=2)
    np.save(tmp_path / "x.npy", x)
    assert cli(["run", str(out), "--device", "sim", "--selftest"]) == 0
    line = capsys.readouterr().out
    assert "selftest PASS: 8/8" in line
    assert float(re.search(r"; ([\d.,e+-]+) frames/s", line).group(1).replace(",", "")) > 0   # host rate, never "0.0"
    assert cli(["run", str(out), "--input", str(tmp_path / "x.npy"), "--output", str(tmp_path / "y.npy"),
                "--top-k", "2"]) == 0
    assert np.array_equal(np.load(tmp_path / "y.npy"), Golden(net).run_int(x))
    assert np.load(tmp_path / "y.topk.npy").shape == (6, 2)


def test_bad_input_shape_dtype_and_missing_weights(tiny):
    net, out = tiny
    with Accelerator.open(out, "sim") as acc:
        with pytest.raises(DeviceError, match="load_weights"):          # compiled without weights
            acc.infer(_inputs(net, 1))
        acc.load_weights()
        with pytest.raises(InputError, match=r"\[N, 2, 5, 5\]"):
            acc.infer(np.zeros((1, 3, 5, 5), np.uint8))
        with pytest.raises(InputError, match="uint8"):
            acc.infer(np.zeros((1, 2, 5, 5), np.int32))
        with pytest.raises(InputError, match="< 16"):
            acc.infer(np.full((1, 2, 5, 5), 16, np.uint8))
        # still usable afterwards
        x = _inputs(net, 2, seed=9)
        assert np.array_equal(acc.infer(x).acc, Golden(net).run_int(x))


def test_checksum_mismatch_and_malformed_image_are_reported_and_recoverable(tiny, tmp_path):
    net, out = tiny
    words = wimg.from_bytes((out / "weights.bin").read_bytes())
    flipped = list(words)
    flipped[5] ^= 1                                    # a payload bit: a valid image, other weights
    (tmp_path / "flipped.bin").write_bytes(wimg.to_bytes(flipped))
    (tmp_path / "bad.bin").write_bytes(wimg.to_bytes([0x12345678] + list(words[1:])))
    x = _inputs(net, 3, seed=1)
    with Accelerator.open(out, "sim") as acc:
        with pytest.raises(DeviceError, match="checksum 0x.* expected"):
            acc.load_weights(tmp_path / "flipped.bin")
        assert not acc.weights_loaded and acc.errors() == []
        with pytest.raises(DeviceError, match="WEIGHT_FORMAT"):
            acc.load_weights(tmp_path / "bad.bin")
        assert acc.errors() == []                      # known state: errors cleared
        acc.load_weights()
        assert np.array_equal(acc.infer(x).acc, Golden(net).run_int(x))
    # the folder's own weights.bin is checked against the manifest before anything is sent
    shutil.copytree(out, tmp_path / "copy")
    (tmp_path / "copy" / "weights.bin").write_bytes(wimg.to_bytes(flipped))
    with Accelerator.open(tmp_path / "copy", "sim") as acc:
        with pytest.raises(InputError, match="SHA-256"):
            acc.load_weights()


def test_build_id_mismatch_is_refused_before_anything_else(tiny, tmp_path):
    net, out = tiny
    shutil.copytree(out, tmp_path / "other")
    mf = tmp_path / "other" / "manifest.json"
    m = json.loads(mf.read_text())
    m["build_id"] ^= 0x55
    mf.write_text(json.dumps(m))
    with pytest.raises(DeviceError, match="BUILD_ID .* another build"):
        Accelerator.open(tmp_path / "other", "sim")
    assert cli(["run", str(tmp_path / "other"), "--selftest"]) == 1


def test_hardware_error_flag_fails_the_batch_and_recovers(tiny):
    """A frame with a wrong length sent behind the driver's back raises FRAMING: the next batch
    sees it before sending anything, resets the device and runs correctly."""
    net, out = tiny
    x = _inputs(net, 2, seed=3)
    with Accelerator.open(out, "sim") as acc:
        acc.load_weights()
        acc.t.send(b"\0" * (acc.frame_bytes - acc.manifest.input.layout.bytes_per_beat))    # early tlast
        acc.t.recv(acc.result_bytes, timeout=30)
        r = acc.infer(x)
        assert r.extra["recovered_before_batch"] == "ERROR flags FRAMING"
        assert np.array_equal(r.acc, Golden(net).run_int(x))
        assert acc.errors() == []


def test_sim_transport_timeout(tiny):
    net, out = tiny
    with Accelerator.open(out, "sim") as acc:
        acc.load_weights()
        with pytest.raises(TransportError, match="timed out"):
            acc.t.recv(4 * acc.result_bytes, timeout=0.2)              # results that never come


# ---------------------------------------------------------------------------- stand-in devices

class GoldenCard:
    """A stand-in accelerator behind XDMA/Zynq stand-ins: register file with the ID/VERSION/
    BUILD_ID of a manifest, a weight loader that checksums what it receives, and frames
    answered by the golden model. Records every register access and every byte received."""

    def __init__(self, folder, net, raise_error: int = 0):
        self.m = json.loads((folder / "manifest.json").read_text())
        self.golden = Golden(net)
        self.regs = {r.offset: 0 for r in regmap.REGISTERS}
        self.regs[_r("ID")] = regmap.ID_MAGIC
        self.regs[_r("VERSION")] = regmap.REGMAP_VERSION | (regmap.STREAM_VERSION << 16)
        self.regs[_r("BUILD_ID")] = self.m["build_id"]
        self.log: list[tuple] = []
        self.h2c = bytearray()
        self.loading = False
        self.raise_error = raise_error

    def read(self, off):
        self.log.append(("r", off))
        return self.regs[off]

    def write(self, off, val):
        self.log.append(("w", off, val))
        if off == _r("CTRL"):
            if val & _bit("CTRL", "CLEAR_CHECKSUM"):
                self.regs[_r("WEIGHT_CHECKSUM")] = self.regs[_r("WEIGHT_WORDS")] = 0
            if val & _bit("CTRL", "LOAD_WEIGHTS"):
                self.loading = True
            if val & (_bit("CTRL", "SOFT_RESET") | _bit("CTRL", "CLEAR_COUNTERS")):
                for r in ("FRAMES_IN", "FRAMES_OUT", "CYCLES_LO", "CYCLES_HI"):
                    self.regs[_r(r)] = 0
        elif off == _r("ERROR"):
            self.regs[off] &= ~val
        else:
            self.regs[off] = val

    def transfer(self, data: bytes) -> bytes:
        """One h2c transfer (tlast at its end) -> the c2h bytes it produces."""
        self.h2c += data
        if self.loading:
            words = wimg.from_bytes(data)
            self.regs[_r("WEIGHT_CHECKSUM")] = wimg.checksum(words)
            self.regs[_r("WEIGHT_WORDS")] = len(words)
            self.loading = False
            return b""
        sin = self.m["streams"]["input"]
        x = from_stream_order(_unbeat(data, sin["bytes_per_beat"], sin["bits"], sin["codes_per_beat"],
                                      int(np.prod(sin["shape"]))), tuple(sin["shape"]))[None].astype(np.uint8)
        self.regs[_r("FRAMES_IN")] += 1
        self.regs[_r("CYCLES_LO")] += self.m["cycles_per_frame"]
        if self.raise_error:
            self.regs[_r("ERROR")] |= self.raise_error
        y = self.golden.run_int(x).reshape(-1)
        self.regs[_r("FRAMES_OUT")] += 1
        so = self.m["streams"]["output"]
        assert so["words_per_value"] == 1
        return _beat(y.astype(np.int64) & 0xFFFF_FFFF, so["bytes_per_beat"], 32, so["words_per_beat"])


def _unbeat(data: bytes, nbytes: int, bits: int, per: int, count: int) -> np.ndarray:
    """The stand-in card's own reading of the documented beat layout: ``per`` elements of
    ``bits`` from bit 0 of each little-endian beat of ``nbytes``; ``count`` elements."""
    out = []
    for k in range(0, len(data), nbytes):
        beat = int.from_bytes(data[k:k + nbytes], "little")
        out += [(beat >> (i * bits)) & ((1 << bits) - 1) for i in range(per)]
    return np.array(out[:count], dtype=np.int64)


def _beat(values, nbytes: int, bits: int, per: int) -> bytes:
    """Inverse of :func:`_unbeat` (zero padding)."""
    v = [int(e) for e in values]
    return b"".join(sum(e << (i * bits) for i, e in enumerate(v[k:k + per])).to_bytes(nbytes, "little")
                    for k in range(0, len(v), per))


def _fake_xdma(tmp_path, card, monkeypatch, respond=True):
    """XDMA character devices: a user file whose pread/pwrite go to ``card``, and two FIFOs
    served by a thread (each h2c frame answered on c2h)."""
    prefix = str(tmp_path / "xdma0")
    with open(prefix + "_user", "wb") as f:
        f.write(bytes(regmap.SPAN))
    os.mkfifo(prefix + "_h2c_0")
    os.mkfifo(prefix + "_c2h_0")
    real_pread, real_pwrite = os.pread, os.pwrite
    user_fds = set()
    real_open = os.open

    def fake_open(path, flags, *a):
        fd = real_open(path, flags, *a)
        if str(path).endswith("_user"):
            user_fds.add(fd)
        return fd

    def pread(fd, n, off):
        if fd in user_fds:
            assert n == 4
            return struct.pack("<I", card.read(off))
        return real_pread(fd, n, off)

    def pwrite(fd, data, off):
        if fd in user_fds:
            card.write(off, struct.unpack("<I", data)[0])
            return len(data)
        return real_pwrite(fd, data, off)

    monkeypatch.setattr(os, "open", fake_open)
    monkeypatch.setattr(os, "pread", pread)
    monkeypatch.setattr(os, "pwrite", pwrite)
    frame = card.m["streams"]["input"]["beats_per_frame"] * card.m["streams"]["input"]["bytes_per_beat"]

    def serve():
        h2c = real_open(prefix + "_h2c_0", os.O_RDONLY)
        c2h = real_open(prefix + "_c2h_0", os.O_WRONLY)
        buf = bytearray()
        while True:
            if not buf:                                 # decide the transfer's kind once data arrives
                chunk = os.read(h2c, 1 << 16)
                if not chunk:
                    os.close(c2h)
                    return
                buf += chunk
            want = 4 * card.m["weights"]["words"] if card.loading else frame
            while len(buf) < want:
                chunk = os.read(h2c, 1 << 16)
                if not chunk:
                    os.close(c2h)
                    return
                buf += chunk
            data, buf = bytes(buf[:want]), buf[want:]
            out = card.transfer(data)
            if out and respond:
                os.write(c2h, out)

    threading.Thread(target=serve, daemon=True).start()
    return prefix


def test_xdma_stand_in_end_to_end_traffic_matches_the_rtl(tiny, tmp_path, monkeypatch):
    net, out = tiny
    card = GoldenCard(out, net)
    prefix = _fake_xdma(tmp_path, card, monkeypatch)
    x = _inputs(net, 4, seed=8)
    with Accelerator(out, XdmaTransport(prefix), timeout=10) as acc:
        acc.load_weights()
        r = acc.infer(x)
    want = Golden(net).run_int(x)
    assert np.array_equal(r.acc, want)
    # exact bytes: the weight image, then the frames, packed as host/packing says
    m = card.m
    from bitplane.core.packing import pack_frames
    image = (out / "weights.bin").read_bytes()
    sin = m["streams"]["input"]
    frames = pack_frames(x, sin["bits"], sin["lanes"], sin["tdata_bits"]).tobytes()
    assert bytes(card.h2c) == image + frames
    # every access inside the window, reads only of readable registers, writes only of writable ones
    by_off = {r.offset: r for r in regmap.REGISTERS}
    for op, off, *val in card.log:
        assert 0 <= off < regmap.SPAN and off in by_off
        assert by_off[off].access in (("ro", "rw", "w1c") if op == "r" else ("rw", "w1c", "pulse"))
    assert card.log[:3] == [("r", _r("ID")), ("r", _r("VERSION")), ("r", _r("BUILD_ID"))]
    writes = [(off, v[0]) for op, off, *v in card.log if op == "w"]
    load = _bit("CTRL", "CLEAR_CHECKSUM") | _bit("CTRL", "LOAD_WEIGHTS")
    assert writes[:3] == [(_r("CTRL"), _bit("CTRL", "SOFT_RESET")), (_r("ERROR"), 0xF), (_r("CTRL"), load)]
    assert writes[-1] == (_r("CTRL"), _bit("CTRL", "CLEAR_COUNTERS"))
    # replay the recorded session into the RTL: same register writes, same transfers -> same results
    with SimTransport(out) as sim:
        for off, val in writes[:3]:
            sim.write_reg(off, val)
        sim.send(image)
        sim.run_cycles(LOADER_CYCLES_PER_WORD * (len(image) // 4) + 100)
        assert sim.read_reg(_r("WEIGHT_CHECKSUM")) == m["weights"]["checksum"]
        for k in range(len(x)):
            sim.send(frames[k * len(frames) // len(x):(k + 1) * len(frames) // len(x)])
        so = m["streams"]["output"]
        got = _unbeat(sim.recv(len(x) * so["beats_per_frame"] * so["bytes_per_beat"], timeout=60, frames=len(x)),
                      so["bytes_per_beat"], 32, so["words_per_beat"], len(x) * so["words_per_frame"])
    assert np.array_equal(got.astype(np.uint32).view(np.int32).reshape(want.shape), want)


def test_xdma_stand_in_failures(tiny, tmp_path, monkeypatch):
    net, out = tiny
    x = _inputs(net, 2, seed=8)
    # error flag raised by the hardware -> DeviceError, device reset and errors cleared
    card = GoldenCard(out, net, raise_error=_bit("ERROR", "OVERFLOW"))
    (tmp_path / "a").mkdir()
    prefix = _fake_xdma(tmp_path / "a", card, monkeypatch)
    with Accelerator(out, XdmaTransport(prefix), timeout=10) as acc:
        acc.load_weights()
        with pytest.raises(DeviceError, match="OVERFLOW"):
            acc.infer(x)
        assert (_r("CTRL"), _bit("CTRL", "SOFT_RESET")) in [(o, v[0]) for op, o, *v in card.log[-4:] if op == "w"]
        assert card.regs[_r("ERROR")] == 0
    # a card that never answers -> stream timeout, clear message
    card2 = GoldenCard(out, net)
    (tmp_path / "b").mkdir()
    prefix2 = _fake_xdma(tmp_path / "b", card2, monkeypatch, respond=False)
    with Accelerator(out, XdmaTransport(prefix2), timeout=10) as acc:
        acc.load_weights()
        acc.timeout = 0.5                                   # per transfer
        with pytest.raises(TransportError, match="timed out"):
            acc.infer(x)
    # a different build on the card
    card3 = GoldenCard(out, net)
    card3.regs[_r("BUILD_ID")] ^= 1
    (tmp_path / "c").mkdir()
    prefix3 = _fake_xdma(tmp_path / "c", card3, monkeypatch)
    t = XdmaTransport(prefix3)
    with pytest.raises(DeviceError, match="another build"):
        Accelerator(out, t)
    t.close()
    assert all(op == "r" for op, *_ in card3.log)                    # nothing written before the check


def test_device_node_missing_and_permission_denied(tiny, tmp_path, monkeypatch, capsys):
    net, out = tiny
    assert cli(["run", str(out), "--device", f"xdma:{tmp_path}/xdma9", "--selftest"]) == 1
    assert "device node missing" in capsys.readouterr().err
    open(tmp_path / "xdma0_user", "wb").close()

    def deny(path, *a, **k):
        raise PermissionError(13, "Permission denied")
    monkeypatch.setattr(os, "open", deny)
    with pytest.raises(TransportError, match="permission denied"):
        Accelerator.open(out, f"xdma:{tmp_path}/xdma0")
    monkeypatch.undo()
    assert cli(["run", str(out), "--device", "pcie", "--selftest"]) == 1
    assert "unknown device" in capsys.readouterr().err


class FakeAxiDma:
    """Stands in for the AXI DMA's register map (direct register mode): a write of
    MM2S_LENGTH moves the TX buffer into the card, a write of S2MM_LENGTH arms a receive
    completed from the card's results; DMASR bits are write-1-to-clear. Records every access."""

    def __init__(self, card, tx, rx, inner):
        self.card, self.tx, self.rx, self.inner = card, tx, rx, inner
        self.sr = {MM2S_DMASR: DMASR_IDLE, S2MM_DMASR: DMASR_IDLE}
        self.results = bytearray()
        self.armed = 0
        self.log = []
        self.lock = threading.Lock()

    def _complete_rx(self):
        if self.armed and len(self.results) >= self.armed:
            self.rx[:self.armed] = self.results[:self.armed]
            del self.results[:self.armed]
            self.armed = 0
            self.sr[S2MM_DMASR] = DMASR_IDLE | DMASR_IOC

    def read(self, off):
        with self.lock:
            self.log.append(("r", off))
            return self.sr.get(off, 0)

    def write(self, off, val):
        with self.lock:
            self.log.append(("w", off, val))
            if off in self.sr:
                self.sr[off] &= ~val
            elif off == MM2S_LENGTH:
                self.sr[MM2S_DMASR] = 0
                self.results += self.card.transfer(bytes(self.tx[:val]))
                self.sr[MM2S_DMASR] = DMASR_IDLE | DMASR_IOC
                self._complete_rx()
            elif off == S2MM_LENGTH:
                self.sr[S2MM_DMASR] = 0
                self.armed = val
                self._complete_rx()

    def close(self):
        self.inner.close()


def test_zynq_stand_in_end_to_end(tiny, tmp_path):
    """Zynq: the UIO maps are files (opened and mapped by the transport); the accelerator's
    registers and the AXI DMA engine are played by the golden card, recording all traffic."""
    net, out = tiny
    card = GoldenCard(out, net)
    regs = tmp_path / "uio0"
    regs.write_bytes(bytes(regmap.SPAN))
    dma = tmp_path / "uio1"
    dma.write_bytes(bytes(ZynqTransport.DMA_SPAN))
    tx, rx = bytearray(1 << 16), bytearray(1 << 16)
    t = ZynqTransport(str(regs), str(dma), regmap.SPAN, buffers=((tx, 0x1000_0000), (rx, 0x2000_0000)),
                      poll_s=1e-4)
    t.regs.read = card.read
    t.regs.write = card.write
    t.dma = fake = FakeAxiDma(card, tx, rx, t.dma)
    x = _inputs(net, 3, seed=4)
    with Accelerator(out, t, timeout=10) as acc:
        acc.load_weights()
        r = acc.infer(x)
    assert np.array_equal(r.acc, Golden(net).run_int(x))
    assert bytes(card.h2c[:len((out / "weights.bin").read_bytes())]) == (out / "weights.bin").read_bytes()
    assert all(0 <= e[1] < regmap.SPAN for e in card.log)
    starts = [v[0] for op, off, *v in fake.log if op == "w" and off == MM2S_LENGTH]
    sin = card.m["streams"]["input"]
    assert starts == [4 * card.m["weights"]["words"]] + [sin["beats_per_frame"] * sin["bytes_per_beat"]] * 3


def test_slow_rates_keep_their_digits():
    """An RTL simulation as the device runs at hundredths of a frame per host second: the CLI prints
    significant digits, not '0.0' (selftest and run lines)."""
    from bitplane.cli.run import rate
    assert float(rate(0.0214)) == pytest.approx(0.0214) and rate(0.0004) != "0.0"
    assert rate(1234.56) == "1,234.6"
