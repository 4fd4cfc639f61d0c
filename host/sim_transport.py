"""The ``sim`` transport: the compiled RTL under Verilator as a device for the host driver.

:class:`SimTransport` starts the native harness (:mod:`sim.native`) of a compiled folder in
device mode (``--serve``) and speaks :class:`host.transport.Transport`: AXI4-Lite register
reads and writes, ``send`` (one DMA transfer = beats with ``tlast`` on the last) and ``recv``
(result bytes). The harness keeps both streams moving on every simulated clock, including
during register accesses, so the driver's pipelining (sending frame *k+1* while frame *k*'s
results return) happens in the simulation as on a board. ``send`` only queues beats (the
simulated DMA engine feeds them as the accelerator accepts them); the clock runs inside
``recv``, register accesses and :meth:`SimTransport.run_cycles`.

Timeouts are wall-clock seconds, like the board transports; the simulated cycle count is
available as :attr:`SimTransport.cycles`.
"""
from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

import numpy as np

from bitplane.core.manifest import load_manifest
from bitplane.host.transport import Transport, TransportError

from bitplane.sim.native import build, from_limbs, limbs, to_limbs

CHUNK_CYCLES = 50_000        # cycles simulated per request while waiting for results


class SimTransport(Transport):
    """The RTL of ``folder`` as a device (``--device sim``)."""

    simulated = True

    def __init__(self, folder, gap_pct: int = 0, stall_pct: int = 0, seed: int = 1, waves: str | None = None,
                 progress=None):
        folder = Path(folder)
        m = load_manifest(folder)
        self.name = f"sim:{folder}"
        self._in_bytes = int(m["streams"]["input"]["bytes_per_beat"])      # beats as the manifest packs them
        self._out_bytes = int(m["streams"]["output"]["bytes_per_beat"])
        self._out_limbs = limbs(8 * self._out_bytes)
        sim = build((folder / "accelerator.v").read_text(), m["top"], trace=bool(waves), progress=progress)
        args = [str(sim.exe), "--serve", "--seed", str(seed), "--gap-pct", str(gap_pct),
                "--stall-pct", str(stall_pct)] + (["--fst", str(waves)] if waves else [])
        self._lock = threading.Lock()             # one command at a time to the harness
        self._pending: list[tuple[int, bytes]] = []  # sent transfers (beats, limbs) not yet handed over
        self._pending_lock = threading.Lock()
        self._proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.sim_seconds = 0.0           # wall time spent simulating

    # ------------------------------------------------------------------ protocol
    def _flush(self) -> None:
        """Hand queued transfers to the harness (caller holds ``_lock``)."""
        with self._pending_lock:
            pending, self._pending = self._pending, []
        for count, beats in pending:
            self._cmd(f"s {count}", beats, flush=False)

    def _cmd(self, line: str, payload: bytes = b"", flush: bool = True) -> str:
        if flush:
            self._flush()
        p = self._proc
        if p is None or p.poll() is not None:
            raise TransportError(f"{self.name}: the simulator is not running"
                                 + (f" ({self._stderr()})" if p is not None else ""))
        try:
            p.stdin.write(line.encode() + b"\n" + payload)
            p.stdin.flush()
            reply = p.stdout.readline()
        except (BrokenPipeError, OSError):
            reply = b""
        if not reply:
            raise TransportError(f"{self.name}: the simulator stopped ({self._stderr()})")
        return reply.decode().strip()

    def _stderr(self) -> str:
        try:
            self._proc.wait(timeout=2)
            return (self._proc.stderr.read() or b"").decode(errors="replace").strip()[-500:] or \
                f"exit {self._proc.returncode}"
        except subprocess.TimeoutExpired:
            return "no response"

    # ------------------------------------------------------------------ Transport
    def read_reg(self, offset: int) -> int:
        self.check_offset(offset)
        with self._lock:
            return int(self._cmd(f"r {int(offset)}"))

    def write_reg(self, offset: int, value: int) -> None:
        self.check_offset(offset)
        with self._lock:
            self._cmd(f"w {int(offset)} {int(value) & 0xFFFF_FFFF}")

    def send(self, data: bytes, timeout: float | None = None) -> None:
        if len(data) % self._in_bytes:
            raise TransportError(f"{self.name}: a transfer must be whole {self._in_bytes}-byte beats, got "
                                 f"{len(data)} bytes")
        if self._proc is None or self._proc.poll() is not None:
            raise TransportError(f"{self.name}: the simulator is not running")
        beats = to_limbs(np.frombuffer(data, np.uint8).reshape(-1, self._in_bytes))
        # queued without waiting for the simulation lock (a DMA engine takes the transfer and
        # feeds it as the device accepts it); handed over before the clock runs next
        with self._pending_lock:
            self._pending.append((len(beats), beats.tobytes()))

    def drain(self) -> tuple[int, int]:
        """Drop the beats queued for the device and the result beats it emitted but nobody
        received (the simulated DMA engines' buffers); returns their counts (in, out)."""
        with self._pending_lock:
            dropped, self._pending = sum(c for c, _ in self._pending), []
        with self._lock:
            a, b = self._cmd("d", flush=False).split()
        return dropped + int(a), int(b)

    def recv(self, nbytes: int, timeout: float | None = None, frames: int | None = None) -> bytes:
        """``nbytes`` of results ending on a ``tlast``; with ``frames``, exactly that many frames
        of equal length (``tlast`` on each one's last beat and nowhere else)."""
        ob, rec = self._out_bytes, 8 * (self._out_limbs + 1)      # a beat from the harness: limbs, tlast
        if nbytes % ob:
            raise TransportError(f"{self.name}: can only receive whole {ob}-byte beats")
        need = nbytes // ob
        got = []
        t0 = time.perf_counter()
        while need:
            with self._lock:
                ts = time.perf_counter()
                k = int(self._cmd(f"g {need} {CHUNK_CYCLES}"))
                raw = self._proc.stdout.read(rec * k) if k else b""
                self.sim_seconds += time.perf_counter() - ts
            if len(raw) != rec * k:
                raise TransportError(f"{self.name}: short read from the simulator")
            if k:
                got.append(np.frombuffer(raw, dtype="<u8").reshape(k, self._out_limbs + 1))
                need -= k
            elif self.interrupted.is_set():
                raise TransportError(f"{self.name}: receive interrupted")
            elif timeout is not None and time.perf_counter() - t0 > timeout:
                have = sum(len(g) for g in got)
                raise TransportError(f"{self.name}: receive of {nbytes} bytes timed out after {timeout:g} s "
                                     f"({have * ob} bytes arrived)")
        words = np.concatenate(got) if got else np.zeros((0, self._out_limbs + 1), dtype="<u8")
        last = np.flatnonzero(words[:, -1])
        n = frames or max(1, len(last))
        if len(last) != n or len(words) % n or not np.array_equal(last, np.arange(1, n + 1) * (len(words) // n) - 1):
            raise TransportError(f"{self.name}: framing error: a receive of {n} result frame(s) in {len(words)} beats "
                                 f"saw tlast on beat(s) {last[:4].tolist()}: the device's frames do not have the "
                                 f"manifest's length (results out of step are never returned)")
        return from_limbs(words[:, :-1], ob).tobytes()

    def run_cycles(self, n: int) -> None:
        """Let the simulated clock run ``n`` cycles (streams keep moving)."""
        with self._lock:
            self._cmd(f"t {int(n)}")

    idle = run_cycles

    @property
    def cycles(self) -> int:
        with self._lock:
            return int(self._cmd("c").split()[0])

    def close(self) -> None:
        p, self._proc = self._proc, None
        if p is None:
            return
        try:
            if p.poll() is None:
                p.stdin.write(b"q\n")
                p.stdin.flush()
                p.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            p.kill()
            p.wait()
        for f in (p.stdin, p.stdout, p.stderr):
            try:
                f.close()
            except OSError:
                pass

    def __del__(self):          # pragma: no cover - best effort
        try:
            self.close()
        except Exception:
            pass
