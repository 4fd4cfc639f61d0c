"""Transports: how the host driver reaches an accelerator.

One small interface (:class:`Transport`): 32-bit register read/write at a byte offset of the
accelerator's AXI4-Lite window, a blocking stream to the device (AXI4-Stream ``s_axis``)
and from it (``m_axis``), each with a timeout. Implementations:

* :class:`XdmaTransport` — PCIe through the Xilinx XDMA Linux driver's character devices:
  ``<dev>_user`` (AXI4-Lite BAR, ``pread``/``pwrite`` at ``base + offset``),
  ``<dev>_h2c_<n>`` / ``<dev>_c2h_<n>`` (AXI4-Stream, ``write``/``read``).
* :class:`ZynqTransport` — registers through a UIO map (or ``/dev/mem`` restricted to the
  window), data through an AXI DMA in direct-register mode with physically contiguous
  buffers from ``pynq.allocate`` when PYNQ is installed, else a u-dma-buf device.
* the RTL simulation (``sim`` transport) lives in ``host/sim_transport.py`` (on ``sim/native.py``'s harness) and implements the same class.

Every register access goes through :class:`RegisterWindow`, which only allows the offsets
of the register map exported in the manifest: nothing outside the window can be touched.
"""
from __future__ import annotations

import mmap
import os
import struct
import threading
from abc import ABC, abstractmethod
from pathlib import Path

from bitplane.core.errors import BitplaneError


class TransportError(BitplaneError):
    """A device could not be reached, timed out or reported an error."""


def _open(path: str, flags: int, what: str) -> int:
    try:
        return os.open(path, flags)
    except FileNotFoundError:
        raise TransportError(f"{path}: device node missing ({what}); is the driver loaded and the "
                             f"bitstream programmed?") from None
    except PermissionError:
        raise TransportError(f"{path}: permission denied ({what}); add a udev rule granting your user "
                             f"access or run with sufficient rights") from None
    except OSError as e:
        raise TransportError(f"{path}: cannot open ({what}): {e.strerror}") from None


def _with_timeout(fn, timeout: float | None, what: str):
    """Run a blocking I/O call with a timeout (the call keeps running in its thread)."""
    if timeout is None:
        return fn()
    box = {}

    def run():
        try:
            box["value"] = fn()
        except BaseException as e:                     # re-raised in the caller
            box["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        raise TransportError(f"{what} timed out after {timeout:g} s")
    if "error" in box:
        e = box["error"]
        if isinstance(e, OSError):
            raise TransportError(f"{what} failed: {e.strerror or e}") from None
        raise e
    return box["value"]


class Transport(ABC):
    """Register and stream access to one accelerator."""

    span: int = 0          # size of the register window in bytes (set by the driver from the manifest)
    simulated: bool = False   # time passes only while the transport is used (RTL simulation)

    def check_offset(self, offset: int) -> None:
        """Refuse a register offset outside the window (or not word aligned)."""
        if self.span and not (0 <= offset < self.span and offset % 4 == 0):
            raise TransportError(f"register offset 0x{offset:X} outside the window of {self.span} bytes")

    def idle(self, cycles: int) -> None:
        """Let the device run while the host waits (a busy poll on hardware: nothing to do)."""

    def drain(self) -> tuple[int, int]:
        """Discard data queued towards the device and results it emitted that nobody received
        (buffers outside the accelerator, which ``SOFT_RESET`` does not reach); returns the
        beats dropped (in, out). Hardware DMA engines move data only for posted transfers,
        so their default has nothing to drop."""
        return 0, 0

    @property
    def interrupted(self) -> threading.Event:
        """Set to make a blocked ``recv`` give up (the driver's receiver on Ctrl-C or failure)."""
        ev = self.__dict__.get("_interrupted")
        if ev is None:
            ev = self.__dict__["_interrupted"] = threading.Event()
        return ev

    @abstractmethod
    def read_reg(self, offset: int) -> int: ...

    @abstractmethod
    def write_reg(self, offset: int, value: int) -> None: ...

    @abstractmethod
    def send(self, data: bytes, timeout: float | None = None) -> None:
        """Stream ``data`` to ``s_axis`` as one frame (``tlast`` on the last beat)."""

    @abstractmethod
    def recv(self, nbytes: int, timeout: float | None = None, frames: int | None = None) -> bytes:
        """Receive exactly ``nbytes`` from ``m_axis``: ``frames`` whole result frames when given
        (a transport that sees ``tlast`` checks it falls on each frame's last beat only)."""

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class RegisterWindow:
    """Named, range-checked access to the registers of a manifest's register map.

    ``regmap`` is the manifest's ``register_map`` (``bitplane.core.regmap.regmap_dict()``). Only the
    listed offsets can be accessed, with their access kind respected (no reads of
    write-only ``pulse`` registers, no writes to ``ro`` ones).
    """

    def __init__(self, transport: Transport, regmap: dict):
        self.t = transport
        self.span = int(regmap["span"])
        self.regs = {r["name"]: r for r in regmap["registers"]}
        self.by_offset = {r["offset"]: r for r in regmap["registers"]}
        transport.span = self.span

    def _check(self, name: str, write: bool) -> int:
        r = self.regs.get(name)
        if r is None:
            raise TransportError(f"no register named {name!r} in the manifest's register map")
        off = int(r["offset"])
        if not (0 <= off < self.span and off % 4 == 0):       # defence in depth
            raise TransportError(f"register {name} at 0x{off:X} lies outside the window of {self.span} bytes")
        if write and r["access"] == "ro":
            raise TransportError(f"register {name} is read-only")
        if not write and r["access"] == "pulse":
            raise TransportError(f"register {name} is a write-only command register")
        return off

    def read(self, name: str) -> int:
        return self.t.read_reg(self._check(name, False)) & 0xFFFF_FFFF

    def write(self, name: str, value: int) -> None:
        if not 0 <= int(value) < 1 << 32:
            raise TransportError(f"value {value} does not fit register {name} (32 bits)")
        self.t.write_reg(self._check(name, True), int(value))

    def field(self, name: str, field: str) -> tuple[int, int]:
        for f in self.regs[name]["fields"]:
            if f["name"] == field:
                return int(f["lsb"]), int(f["width"])
        raise TransportError(f"register {name} has no field {field}")

    def bit(self, name: str, field: str) -> int:
        lsb, width = self.field(name, field)
        return ((1 << width) - 1) << lsb


class XdmaTransport(Transport):
    """PCIe via the XDMA driver: ``<device>_user``, ``<device>_h2c_<ch>``, ``<device>_c2h_<ch>``."""

    def __init__(self, device: str = "/dev/xdma0", channel: int = 0, base: int = 0):
        self.device, self.base = device, base
        self.paths = {"user": f"{device}_user", "h2c": f"{device}_h2c_{channel}", "c2h": f"{device}_c2h_{channel}"}
        self.fds = {}
        try:
            self.fds["user"] = _open(self.paths["user"], os.O_RDWR, "AXI4-Lite registers")
            self.fds["h2c"] = _open(self.paths["h2c"], os.O_WRONLY, "host-to-card stream")
            self.fds["c2h"] = _open(self.paths["c2h"], os.O_RDONLY, "card-to-host stream")
        except TransportError:
            self.close()
            raise

    def read_reg(self, offset: int) -> int:
        self.check_offset(offset)
        try:
            data = os.pread(self.fds["user"], 4, self.base + offset)
        except OSError as e:
            raise TransportError(f"{self.paths['user']}: register read at 0x{offset:X} failed: {e.strerror}") from None
        if len(data) != 4:
            raise TransportError(f"{self.paths['user']}: short register read at 0x{offset:X}")
        return struct.unpack("<I", data)[0]

    def write_reg(self, offset: int, value: int) -> None:
        self.check_offset(offset)
        try:
            n = os.pwrite(self.fds["user"], struct.pack("<I", value), self.base + offset)
        except OSError as e:
            raise TransportError(f"{self.paths['user']}: register write at 0x{offset:X} failed: {e.strerror}") from None
        if n != 4:
            raise TransportError(f"{self.paths['user']}: short register write at 0x{offset:X}")

    def send(self, data: bytes, timeout: float | None = None) -> None:
        fd, mv = self.fds["h2c"], memoryview(data)

        def write_all():
            done = 0
            while done < len(mv):
                done += os.write(fd, mv[done:])
        _with_timeout(write_all, timeout, f"{self.paths['h2c']}: stream of {len(data)} bytes")

    def recv(self, nbytes: int, timeout: float | None = None, frames: int | None = None) -> bytes:
        fd = self.fds["c2h"]

        def read_all():
            chunks, got = [], 0
            while got < nbytes:
                c = os.read(fd, nbytes - got)
                if not c:
                    raise TransportError(f"{self.paths['c2h']}: stream closed after {got} of {nbytes} bytes")
                chunks.append(c)
                got += len(c)
            return b"".join(chunks)
        return _with_timeout(read_all, timeout, f"{self.paths['c2h']}: receive of {nbytes} bytes")

    def close(self) -> None:
        for fd in self.fds.values():
            try:
                os.close(fd)
            except OSError:
                pass
        self.fds = {}


# AXI DMA (PG021) direct-register-mode offsets and bits
MM2S_DMACR, MM2S_DMASR, MM2S_SA, MM2S_SA_MSB, MM2S_LENGTH = 0x00, 0x04, 0x18, 0x1C, 0x28
S2MM_DMACR, S2MM_DMASR, S2MM_DA, S2MM_DA_MSB, S2MM_LENGTH = 0x30, 0x34, 0x48, 0x4C, 0x58
DMACR_RS, DMACR_RESET = 1 << 0, 1 << 2
DMASR_HALTED, DMASR_IDLE, DMASR_ERR = 1 << 0, 1 << 1, (1 << 4) | (1 << 5) | (1 << 6)
DMASR_IOC = 1 << 12


class _Map:
    """A memory-mapped register window from a UIO device or /dev/mem, bounds-checked."""

    def __init__(self, path: str, size: int, offset: int = 0, what: str = "registers"):
        self.path, self.size = path, size
        fd = _open(path, os.O_RDWR | getattr(os, "O_SYNC", 0), what)
        try:
            self.mm = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE, offset=offset)
        except (OSError, ValueError) as e:
            raise TransportError(f"{path}: cannot map {size} bytes at 0x{offset:X}: "
                                 f"{getattr(e, 'strerror', None) or e}") from None
        finally:
            os.close(fd)

    def read(self, off: int) -> int:
        if not (0 <= off <= self.size - 4 and off % 4 == 0):
            raise TransportError(f"{self.path}: offset 0x{off:X} outside the {self.size}-byte map")
        return struct.unpack_from("<I", self.mm, off)[0]

    def write(self, off: int, value: int) -> None:
        if not (0 <= off <= self.size - 4 and off % 4 == 0):
            raise TransportError(f"{self.path}: offset 0x{off:X} outside the {self.size}-byte map")
        struct.pack_into("<I", self.mm, off, value & 0xFFFF_FFFF)

    def close(self):
        self.mm.close()


def uio_map_size(uio: str) -> int:
    name = Path(uio).name
    p = Path(f"/sys/class/uio/{name}/maps/map0/size")
    if not p.exists():
        raise TransportError(f"{uio}: no UIO map size at {p}")
    return int(p.read_text().strip(), 16)


class ZynqTransport(Transport):
    """Zynq/ZynqMP: accelerator registers + AXI DMA (direct register mode).

    ``regs``: ``/dev/uioN`` of the accelerator, or ``("/dev/mem", phys_base)``; only the
    register window (``span`` bytes) is mapped. ``dma``: ``/dev/uioM`` of the AXI DMA (or
    ``("/dev/mem", base)``). Buffers: ``pynq.allocate`` when PYNQ is importable, otherwise
    ``udmabuf`` (a u-dma-buf device name, e.g. ``udmabuf0``).
    """

    DMA_SPAN = 0x10000

    def __init__(self, regs, dma, span: int, buffer_bytes: int = 1 << 22, udmabuf: str = "udmabuf0",
                 poll_s: float = 1e-4, buffers=None):
        self.span = span
        self.poll_s = poll_s
        self.regs = self._map(regs, span, "accelerator registers")
        self.dma = self._map(dma, self.DMA_SPAN, "AXI DMA registers")
        if buffers is not None:            # ((tx_memory, tx_phys), (rx_memory, rx_phys)), e.g. for tests
            self.tx, self.rx, self._pynq = buffers[0], buffers[1], False
        else:
            self.tx, self.rx, self._pynq = self._buffers(buffer_bytes, udmabuf)
        for cr, sr in ((MM2S_DMACR, MM2S_DMASR), (S2MM_DMACR, S2MM_DMASR)):
            self.dma.write(cr, DMACR_RESET)
            self.dma.write(cr, DMACR_RS)

    @staticmethod
    def _map(spec, size, what):
        if isinstance(spec, (tuple, list)):
            path, base = spec
            return _Map(path, size, base, what)
        return _Map(spec, size, 0, what)

    def _buffers(self, nbytes, udmabuf):
        try:
            from pynq import allocate
            tx, rx = allocate(shape=(nbytes,), dtype="u1"), allocate(shape=(nbytes,), dtype="u1")
            return (tx, tx.physical_address), (rx, rx.physical_address), True
        except ImportError:
            pass
        dev = f"/dev/{udmabuf}"
        phys = Path(f"/sys/class/u-dma-buf/{udmabuf}/phys_addr")
        if not phys.exists():
            raise TransportError(f"no DMA buffers: install PYNQ, or load the u-dma-buf driver to get {dev}")
        base = int(phys.read_text().strip(), 16)
        m = _Map(dev, 2 * nbytes, 0, "DMA buffer")
        return (memoryview(m.mm)[:nbytes], base), (memoryview(m.mm)[nbytes:], base + nbytes), False

    def read_reg(self, offset: int) -> int:
        return self.regs.read(offset)

    def write_reg(self, offset: int, value: int) -> None:
        self.regs.write(offset, value)

    def drain(self) -> tuple[int, int]:
        """Reset both DMA channels: transfers in flight are abandoned, nothing stale remains."""
        for cr in (MM2S_DMACR, S2MM_DMACR):
            self.dma.write(cr, DMACR_RESET)
            self.dma.write(cr, DMACR_RS)
        return 0, 0

    def _wait(self, sr: int, what: str, timeout):
        import time
        t0 = time.monotonic()
        while True:
            s = self.dma.read(sr)
            if s & DMASR_ERR:
                raise TransportError(f"AXI DMA {what}: error status 0x{s:08X}")
            if s & (DMASR_IDLE | DMASR_IOC):
                self.dma.write(sr, DMASR_IOC)
                return
            if timeout is not None and time.monotonic() - t0 > timeout:
                raise TransportError(f"AXI DMA {what} timed out after {timeout:g} s (status 0x{s:08X})")
            time.sleep(self.poll_s)

    def send(self, data: bytes, timeout: float | None = None) -> None:
        buf, phys = self.tx
        if len(data) > len(buf):
            raise TransportError(f"frame of {len(data)} bytes exceeds the {len(buf)}-byte DMA buffer")
        buf[:len(data)] = data
        self.dma.write(MM2S_SA, phys & 0xFFFF_FFFF)
        self.dma.write(MM2S_SA_MSB, phys >> 32)
        self.dma.write(MM2S_LENGTH, len(data))
        self._wait(MM2S_DMASR, "send", timeout)

    def recv(self, nbytes: int, timeout: float | None = None, frames: int | None = None) -> bytes:
        buf, phys = self.rx
        if nbytes > len(buf):
            raise TransportError(f"receive of {nbytes} bytes exceeds the {len(buf)}-byte DMA buffer")
        self.dma.write(S2MM_DA, phys & 0xFFFF_FFFF)
        self.dma.write(S2MM_DA_MSB, phys >> 32)
        self.dma.write(S2MM_LENGTH, nbytes)
        self._wait(S2MM_DMASR, "receive", timeout)
        return bytes(buf[:nbytes])

    def close(self) -> None:
        for cr in (MM2S_DMACR, S2MM_DMACR):
            try:
                self.dma.write(cr, 0)
            except (TransportError, ValueError):
                pass
        self.regs.close()
        self.dma.close()
