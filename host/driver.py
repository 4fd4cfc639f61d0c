"""The host driver: one compiled accelerator behind any transport.

::

    from bitplane.host.driver import Accelerator
    with Accelerator.open("build/lenet", "sim") as acc:        # or "xdma", "xdma:/dev/xdma1", "zynq"
        acc.load_weights()
        r = acc.infer(x, top_k=5)                               # x: uint8 [N, C, H, W]
        r.acc, r.logits, r.top_k, r.fps

Everything device-specific comes from the folder's ``manifest.json`` (register map, stream
formats, checksums) and from :mod:`bitplane.core.packing` (how frames become beats); nothing is
written twice. Opening checks the ``ID``, ``VERSION`` and ``BUILD_ID`` registers before
anything else, so a driver never talks to a bitstream from another build.

Inference is pipelined: a receiver thread collects result frames while the caller's thread
keeps sending input frames, so the device never idles between frames (the transports'
``send``/``recv`` block independently). Failures raise :class:`DeviceError` (or
:class:`host.transport.TransportError`) with a clear message, after putting the device in a
known state (:meth:`Accelerator.recover`): queued input dropped, ``SOFT_RESET`` (which keeps
the weights), sticky errors cleared, results nobody received discarded.

No result is ever returned out of step: before a batch the driver checks that the device is
idle, error-free and that ``FRAMES_IN``/``FRAMES_OUT`` equal what this driver sent and received
(stray or malformed frames, unread results and resets from elsewhere are recovered from first);
after it, both counters must read the batch size, and transports that see ``tlast`` check it
ends each result frame. The batch after any failure, timeout or Ctrl-C starts on a clean device.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bitplane.core.errors import BitplaneError, InputError, format_error
from bitplane.core.fileio import load_npz

from bitplane.core.manifest import (check_frames, error_flags, identity_problem, load_manifest, read_manifest,
                                    read_weight_image, weights_problem)
from bitplane.core.packing import pack_frames, unpack_results, word_layout
from bitplane.core.progress import progress_bar
from .transport import RegisterWindow, Transport, TransportError, XdmaTransport, ZynqTransport


class DeviceError(BitplaneError):
    """The device is not the compiled design, or it reported an error."""


@dataclass
class InferenceResult:
    acc: np.ndarray                         # int64 last-layer accumulators [N, ...] (= golden --mode int)
    logits: np.ndarray | None = None        # float64, the manifest's affine map (when asked)
    top_k: np.ndarray | None = None         # int64 [N, k] class indices, best first (when asked)
    frames: int = 0
    seconds: float = 0.0                    # wall time of the batch on the host
    fps: float = 0.0                        # frames per wall-clock second (host view)
    latency_s: float | None = None          # first frame: send start -> last result byte
    device_cycles: int | None = None        # CYCLES counter over the batch
    device_fps: float | None = None         # frames/s at the manifest's clock from device_cycles
    extra: dict = field(default_factory=dict)


def parse_device(device: str) -> tuple[str, str | None]:
    kind, _, arg = device.partition(":")
    if kind not in ("sim", "xdma", "zynq"):
        raise InputError(f"unknown device '{device}': use sim, xdma[:/dev/xdmaN] or zynq[:REGS_UIO,DMA_UIO]")
    return kind, arg or None


def open_transport(folder, device: str, progress=None, **sim_options) -> Transport:
    """A transport for ``device``: ``sim`` (the folder's RTL under Verilator),
    ``xdma[:/dev/xdma0]`` (PCIe) or ``zynq[:/dev/uio0,/dev/uio1]`` (accelerator registers UIO,
    AXI DMA UIO)."""
    kind, arg = parse_device(device)
    m = load_manifest(folder)
    if kind == "sim":
        from bitplane.host.sim_transport import SimTransport  # lazy: the simulator only for --device sim
        return SimTransport(folder, progress=progress, **sim_options)
    if kind == "xdma":
        return XdmaTransport(arg or "/dev/xdma0")
    regs, _, dma = (arg or "/dev/uio0,/dev/uio1").partition(",")
    if not dma:
        raise InputError(f"zynq device '{device}': give both UIO devices, e.g. zynq:/dev/uio0,/dev/uio1")
    sin, sout = m["streams"]["input"], m["streams"]["output"]
    need = max(word_layout(int(m["weights"]["words"]), int(sin["tdata_bits"])).frame_bytes,
               int(sin["bytes_per_beat"]) * int(sin["beats_per_frame"]),
               int(sout["bytes_per_beat"]) * int(sout["beats_per_frame"]))
    return ZynqTransport(regs, dma, span=int(m["regmap"]["span"]), buffer_bytes=max(1 << 22, need))


class Accelerator:
    """A compiled accelerator (``folder``) on a :class:`~host.transport.Transport`."""

    def __init__(self, folder, transport: Transport, timeout: float | None = None, check: bool = True):
        self.folder = Path(folder)
        self.manifest = mf = read_manifest(self.folder)     # checked: register map and streams are this version's
        self.m = mf.raw                                     # the whole manifest, as written
        self.t = transport
        self.regs = RegisterWindow(transport, mf.regmap)
        self.in_shape = mf.input.shape
        self.in_bits, self.in_lanes = mf.input.bits, mf.input.lanes
        self.tdata_bits = mf.input.layout.tdata_bits
        self.frame_bytes = mf.input.layout.frame_bytes
        self.result_bytes = mf.output.layout.frame_bytes
        self.out_shape = mf.output.shape
        self.words_per_value = mf.output.words_per_value
        self.clock_mhz = mf.clock_mhz
        if timeout is None:       # per transfer; the simulation runs ~1e5 cycles/s, hardware ~1e8
            sim = transport.simulated
            frame_s = mf.cycles_per_frame / (2e4 if sim else self.clock_mhz * 1e6)
            timeout = (60.0 if sim else 5.0) + 20 * frame_s
        self.timeout = timeout
        self.weights_loaded = mf.embedded_weights
        self._expect: tuple[int, int] | None = None        # (FRAMES_IN, FRAMES_OUT) this driver left
        if check:
            self.check_device()

    # ------------------------------------------------------------------ opening / closing
    @classmethod
    def open(cls, folder, device: str = "sim", timeout: float | None = None, progress=None,
             **sim_options) -> "Accelerator":
        t = open_transport(folder, device, progress=progress, **sim_options)
        try:
            return cls(folder, t, timeout=timeout)
        except BaseException:
            t.close()
            raise

    def close(self) -> None:
        self.t.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ------------------------------------------------------------------ identity and state
    def check_device(self) -> None:
        """``ID``, ``VERSION`` and ``BUILD_ID`` must match the manifest."""
        problem = identity_problem(self.m, self.regs.read, self._where(), self.folder)
        if problem:
            raise DeviceError(problem)

    def _where(self) -> str:
        return getattr(self.t, "name", None) or type(self.t).__name__

    def errors(self) -> list[str]:
        """Names of the sticky ERROR flags currently set."""
        return error_flags(self.m, self.regs.read("ERROR"))

    def recover(self) -> None:
        """Known state, ready for the very next batch: stop feeding the device (queued input
        dropped), flush the datapath (``SOFT_RESET``, weights kept; it also zeroes the frame
        counters), clear the sticky errors, and discard every result the device emitted that
        no call received, so no later batch can read a stale frame."""
        self.t.drain()
        self.regs.write("CTRL", self.regs.bit("CTRL", "SOFT_RESET"))
        self.regs.write("ERROR", self._error_mask())
        self.t.drain()
        self._expect = (0, 0)

    def _in_sync(self) -> bool:
        """True when the device holds exactly what this driver left: no error, idle, frame
        counters equal to the frames this driver sent and received since it last cleared them
        (a frame sent by someone else, or a result nobody read, shows up here)."""
        err, status = self.regs.read("ERROR"), self.regs.read("STATUS")
        fin, fout = self.regs.read("FRAMES_IN"), self.regs.read("FRAMES_OUT")
        return not err and not status & self.regs.bit("STATUS", "BUSY") and (fin, fout) == self._expect

    def _error_fields(self) -> list[str]:
        return [f["name"] for f in self.regs.regs["ERROR"]["fields"]]

    def _error_mask(self) -> int:
        return sum(self.regs.bit("ERROR", n) for n in self._error_fields())

    def _recover_quietly(self) -> None:
        try:
            self.recover()
        except BitplaneError:
            pass

    # ------------------------------------------------------------------ weights
    def load_weights(self, path=None) -> dict:
        """Stream the weight image and verify the device's checksum and word count."""
        data = read_weight_image(self.folder, self.m, path)
        words = len(data) // 4
        data = word_layout(words, self.tdata_bits).pack(np.frombuffer(data, "<u4")).tobytes()
        self.weights_loaded = False
        self.recover()
        t0 = time.perf_counter()
        self.regs.write("CTRL", self.regs.bit("CTRL", "CLEAR_CHECKSUM") | self.regs.bit("CTRL", "LOAD_WEIGHTS"))
        try:
            self.t.send(data, timeout=self.timeout)
            deadline = time.perf_counter() + self.timeout
            loading = self.regs.bit("STATUS", "WEIGHTS_LOADING")
            while True:
                if self.regs.read("WEIGHT_WORDS") >= words and not self.regs.read("STATUS") & loading:
                    break
                if time.perf_counter() > deadline:
                    raise TransportError(f"weight loading timed out after {self.timeout:g} s "
                                         f"({self.regs.read('WEIGHT_WORDS')} of {words} words accepted)")
                self.t.idle(min(4096, words))
        except BaseException:
            self._recover_quietly()
            raise
        got_sum, got_words, errs = self.regs.read("WEIGHT_CHECKSUM"), self.regs.read("WEIGHT_WORDS"), self.errors()
        problem = weights_problem(self.m, got_sum, got_words, words, errs)
        if problem:
            self._recover_quietly()
            raise DeviceError(f"{problem}; the device keeps running but its weights are not the network's: reload")
        self.weights_loaded = True
        return {"words": words, "checksum": got_sum, "seconds": time.perf_counter() - t0}

    # ------------------------------------------------------------------ inference
    def check_input(self, x) -> np.ndarray:
        return check_frames(self.m, x, single_ok=True)

    def infer(self, x, top_k: int | None = None, dequantize: bool = False, progress: bool | None = None,
              stream=None) -> InferenceResult:
        """Run a uint8 ``[N, C, H, W]`` batch; returns accumulators (and logits/top-k)."""
        x = self.check_input(x)
        if not self.weights_loaded:
            raise DeviceError("the design was compiled without embedded weights and none are loaded: call "
                              "load_weights() first")
        n = len(x)
        if n == 0:
            raise InputError("the input batch is empty")
        if top_k is not None and not 1 <= top_k <= int(np.prod(self.out_shape)):
            raise InputError(f"top-k must lie in 1..{int(np.prod(self.out_shape))}")
        beats = pack_frames(x, self.in_bits, self.in_lanes, self.tdata_bits)
        frames = [beats[k].tobytes() for k in range(n)]
        results: list[bytes] = [b""] * n
        arrived = [0.0] * n
        sim = self.t.simulated          # time passes only while the transport is used: count clock cycles
        done_cycles = [0] * n
        failure: list[BaseException] = []
        stop = threading.Event()
        bar = progress_bar(n, "frames", stream) if progress is not False else None
        recovered = None
        if self._expect is None:         # first batch of this session, or after a failed one
            self.recover()
        elif not self._in_sync():        # stray frames, unread results or errors from outside this driver
            errs = self.errors()
            recovered = "ERROR flags " + ", ".join(errs) if errs else "stray frames or unread results"
            self.recover()
        self.regs.write("CTRL", self.regs.bit("CTRL", "CLEAR_COUNTERS"))
        start_cycle = self.t.cycles if sim else None
        self._expect = None                                     # unknown until the batch is checked
        self.t.interrupted.clear()

        def receiver():
            try:
                for k in range(n):
                    if stop.is_set():
                        return
                    results[k] = self.t.recv(self.result_bytes, timeout=self.timeout, frames=1)
                    arrived[k] = time.perf_counter()
                    if sim:
                        done_cycles[k] = self.t.cycles - start_cycle
                    if bar:
                        bar(k + 1)
            except BaseException as e:          # reported by the caller's thread
                failure.append(e)

        t0 = time.perf_counter()
        rx = threading.Thread(target=receiver, name="bitplane-recv", daemon=True)
        if not sim:
            rx.start()
        try:
            try:
                for k in range(n):
                    if failure:
                        break
                    self.t.send(frames[k], timeout=self.timeout)
            except BaseException as e:
                failure.append(e)
                stop.set()
                self.t.interrupted.set()
            if sim and not failure:
                # a simulated send only queues (no time passes): the whole batch is handed over before
                # the receiver runs the clock, as a DMA engine streams it, so frames go back to back
                rx.start()
            if rx.ident is not None:
                rx.join()
        except KeyboardInterrupt as e:           # Ctrl-C while waiting for results
            failure.insert(0, e)
            stop.set()
            self.t.interrupted.set()
            if rx.ident is not None:
                rx.join(timeout=5)
        t1 = time.perf_counter()
        if bar and not failure:
            bar(n, final=True)
        if failure:
            e = failure[0]
            self._recover_quietly()
            if isinstance(e, KeyboardInterrupt):
                raise KeyboardInterrupt("inference interrupted; device reset, results discarded") from None
            if isinstance(e, BitplaneError):        # device reset and pending data discarded by now
                raise e
            raise DeviceError(f"inference failed: {format_error(e, with_type=True)}") from e
        cycles = self._check_batch(n)
        acc = unpack_results(b"".join(results), self.out_shape, self.words_per_value, self.tdata_bits)
        r = InferenceResult(acc=acc, frames=n, seconds=t1 - t0, fps=n / (t1 - t0) if t1 > t0 else 0.0,
                            latency_s=(arrived[0] - t0) if n else None, device_cycles=cycles,
                            device_fps=n * self.clock_mhz * 1e6 / cycles if cycles and n else None)
        if recovered:
            r.extra["recovered_before_batch"] = recovered
        if sim:
            r.extra["frame_done_cycles"] = done_cycles     # cycle each result frame completed, from the first beat
        if dequantize or top_k:
            r.logits = self.dequantize(acc)
        if top_k:
            flat = r.logits.reshape(n, -1)
            r.top_k = np.argsort(-flat, axis=1, kind="stable")[:, :top_k].astype(np.int64)
        return r

    def _check_batch(self, n: int) -> int:
        """After a batch of ``n`` frames: no ERROR flag and both frame counters at ``n`` (else the
        device is reset and the results discarded); returns the CYCLES counter over the batch."""
        errs = self.errors()
        if errs:
            self._recover_quietly()
            raise DeviceError(f"the accelerator raised ERROR flags {', '.join(errs)} during the batch "
                              f"(device reset, errors cleared; results discarded)")
        fin, fout = self.regs.read("FRAMES_IN"), self.regs.read("FRAMES_OUT")
        if (fin, fout) != (n, n):
            self._recover_quietly()
            raise DeviceError(f"frame counters read {fin} in / {fout} out for a batch of {n}: frames from another "
                              f"source or lost results; device reset, results discarded: run the batch again")
        self._expect = (n, n)
        lo, hi = self.regs.read("CYCLES_LO"), self.regs.read("CYCLES_HI")
        return (hi << 32) | lo

    def dequantize(self, acc) -> np.ndarray:
        """Float logits from accumulators (the manifest's ``output_affine``, per channel)."""
        acc = np.asarray(acc, dtype=np.float64)
        shape = [1] * acc.ndim
        shape[1] = -1
        scale = np.asarray(self.manifest.output_scale, dtype=np.float64)
        bias = np.asarray(self.manifest.output_bias, dtype=np.float64)
        if scale.size == 1:
            return scale.item() * acc + bias.item()
        return scale.reshape(shape) * acc + bias.reshape(shape)

    # ------------------------------------------------------------------ self-test
    def selftest(self) -> dict:
        """Load the weights, run the manifest's test vectors, compare with their golden outputs."""
        lw = self.load_weights()
        tv = self.folder / self.m["testvectors"]["file"]
        z = load_npz(tv, "test vectors", keys={"x", "y"})
        if set(z) != {"x", "y"}:
            raise InputError(f"{tv}: test vectors need arrays 'x' and 'y' (recompile the folder)")
        x, y = z["x"], z["y"]
        try:
            x = self.check_input(x)
        except InputError as e:
            raise InputError(f"{tv}: {e}") from None
        if y.shape[0] != len(x) or y.dtype.kind not in "iu":
            raise InputError(f"{tv}: 'y' must hold one integer result per frame of 'x'")
        r = self.infer(x, progress=False)
        bad = [int(k) for k in range(len(x)) if not np.array_equal(r.acc[k], y[k])]
        return {"pass": not bad, "frames": len(x), "mismatched_frames": bad, "fps": r.fps,
                "device_fps": r.device_fps, "weights": lw}
