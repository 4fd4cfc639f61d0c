"""Transports against stand-in device files: exact register/byte traffic, errors, bounds."""
import os
import struct
import threading

import pytest

from bitplane.host.transport import (DMASR_IDLE, MM2S_LENGTH, MM2S_SA, S2MM_DA, S2MM_LENGTH, MM2S_DMASR, S2MM_DMASR,
                            RegisterWindow, TransportError, XdmaTransport, ZynqTransport)
from bitplane.core.regmap import ID_MAGIC, SPAN, by_name, regmap_dict


class FakeXdma:
    """Stand-in for the XDMA character devices: a register file and two FIFOs served by a thread.

    The "card" echoes each frame it receives on h2c back on c2h with every byte + 1, and
    records every byte the driver sent.
    """

    def __init__(self, tmp, frame_bytes=None, respond=True):
        self.prefix = str(tmp / "xdma0")
        regs = bytearray(SPAN)
        struct.pack_into("<I", regs, by_name("ID").offset, ID_MAGIC)
        with open(self.prefix + "_user", "wb") as f:
            f.write(regs)
        os.mkfifo(self.prefix + "_h2c_0")
        os.mkfifo(self.prefix + "_c2h_0")
        self.received = bytearray()
        self.frame_bytes, self.respond = frame_bytes, respond
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        h2c = os.open(self.prefix + "_h2c_0", os.O_RDONLY)
        c2h = os.open(self.prefix + "_c2h_0", os.O_WRONLY)
        self.c2h = c2h
        while True:
            data = os.read(h2c, self.frame_bytes or 65536)
            if not data:
                break
            self.received += data
            if self.respond:
                os.write(c2h, bytes((b + 1) & 0xFF for b in data))
        os.close(h2c)

    def reg(self, offset):
        with open(self.prefix + "_user", "rb") as f:
            f.seek(offset)
            return struct.unpack("<I", f.read(4))[0]


def test_xdma_registers_and_streams(tmp_path):
    dev = FakeXdma(tmp_path, frame_bytes=8)
    with XdmaTransport(dev.prefix) as t:
        regs = RegisterWindow(t, regmap_dict())
        assert regs.read("ID") == ID_MAGIC
        regs.write("SCRATCH", 0xDEADBEEF)
        assert dev.reg(by_name("SCRATCH").offset) == 0xDEADBEEF        # exact offset, little-endian
        assert regs.read("SCRATCH") == 0xDEADBEEF
        t.send(bytes(range(8)), timeout=5)
        assert t.recv(8, timeout=5) == bytes(range(1, 9))
    assert bytes(dev.received) == bytes(range(8))


def test_no_access_outside_the_register_window(tmp_path):
    dev = FakeXdma(tmp_path)
    with XdmaTransport(dev.prefix) as t:
        regs = RegisterWindow(t, regmap_dict())
        for bad in ("NOPE", "id"):
            with pytest.raises(TransportError, match="no register named"):
                regs.read(bad)
        with pytest.raises(TransportError, match="read-only"):
            regs.write("ID", 0)
        with pytest.raises(TransportError, match="write-only"):
            regs.read("CTRL")
        with pytest.raises(TransportError, match="outside the window"):
            t.read_reg(SPAN)
        with pytest.raises(TransportError, match="outside the window"):
            t.write_reg(-4, 0)
        with pytest.raises(TransportError, match="outside the window"):
            t.read_reg(2)
        with pytest.raises(TransportError, match="does not fit"):
            regs.write("SCRATCH", 1 << 32)
        size_before = os.path.getsize(dev.prefix + "_user")
    assert os.path.getsize(dev.prefix + "_user") == size_before == SPAN


def test_stream_timeout(tmp_path):
    dev = FakeXdma(tmp_path, respond=False)
    with XdmaTransport(dev.prefix) as t:
        t.send(b"\x00" * 4, timeout=5)
        with pytest.raises(TransportError, match="timed out after 0.2 s"):
            t.recv(4, timeout=0.2)


def test_missing_device_and_permission_denied(tmp_path, monkeypatch):
    with pytest.raises(TransportError, match=r"xdma9_user: device node missing"):
        XdmaTransport(str(tmp_path / "xdma9"))
    real_open = os.open

    def deny(path, flags, *a):
        if str(path).endswith("_user"):
            raise PermissionError(13, "Permission denied")
        return real_open(path, flags, *a)
    monkeypatch.setattr(os, "open", deny)
    with pytest.raises(TransportError, match="permission denied"):
        XdmaTransport(str(tmp_path / "xdma0"))


def test_zynq_dma_register_sequence(tmp_path):
    regs = tmp_path / "uio0"
    regs.write_bytes(struct.pack("<I", ID_MAGIC) + bytes(SPAN - 4))
    dma = tmp_path / "uio1"
    image = bytearray(ZynqTransport.DMA_SPAN)
    struct.pack_into("<I", image, MM2S_DMASR, DMASR_IDLE)      # the stand-in engine is always done
    struct.pack_into("<I", image, S2MM_DMASR, DMASR_IDLE)
    dma.write_bytes(bytes(image))
    tx, rx = bytearray(64), bytearray(b"\x07" * 64)
    t = ZynqTransport(str(regs), str(dma), SPAN, buffers=((tx, 0x1000_0000), (rx, 0x2000_0040)))
    w = RegisterWindow(t, regmap_dict())
    assert w.read("ID") == ID_MAGIC
    w.write("SCRATCH", 5)
    t.send(b"abcd", timeout=1)
    assert bytes(tx[:4]) == b"abcd"
    assert t.recv(16, timeout=1) == b"\x07" * 16
    t.dma.mm.flush()
    d = dma.read_bytes()
    rd = lambda off: struct.unpack_from("<I", d, off)[0]
    assert (rd(MM2S_SA), rd(MM2S_LENGTH), rd(S2MM_DA), rd(S2MM_LENGTH)) == (0x1000_0000, 4, 0x2000_0040, 16)
    with pytest.raises(TransportError, match="exceeds"):
        t.send(bytes(65), timeout=1)
    with pytest.raises(TransportError, match="outside"):
        t.read_reg(SPAN)
    t.close()
    assert struct.unpack_from("<I", regs.read_bytes(), by_name("SCRATCH").offset)[0] == 5


def test_zynq_dma_timeout_and_error(tmp_path):
    regs = tmp_path / "uio0"
    regs.write_bytes(bytes(SPAN))
    dma = tmp_path / "uio1"
    image = bytearray(ZynqTransport.DMA_SPAN)
    struct.pack_into("<I", image, S2MM_DMASR, 1 << 5)            # DMASlvErr
    dma.write_bytes(bytes(image))
    t = ZynqTransport(str(regs), str(dma), SPAN, buffers=((bytearray(8), 0), (bytearray(8), 0)))
    with pytest.raises(TransportError, match="timed out"):
        t.send(b"x", timeout=0.05)
    with pytest.raises(TransportError, match="error status"):
        t.recv(4, timeout=0.05)
    t.close()
