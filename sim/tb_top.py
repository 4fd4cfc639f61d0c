"""cocotb testbench for a whole accelerator top (``hw/top.py``): scripted scenarios.

The data file (``BP_TB_DATA``) holds ``steps``, run in order:

* ``{"op": "write", "reg": OFFSET, "value": V}``   AXI4-Lite write (cocotbext-axi master)
* ``{"op": "read", "reg": OFFSET, "key": K}``      AXI4-Lite read, stored under ``reads[K]``
  (a list: one entry per read with that key)
* ``{"op": "send", "beats": [...], "last": [i, ...]}``  s_axis beats, ``tlast`` on the listed
  indices, with random idle cycles (``idle``)
* ``{"op": "frames", "n": N}``                     wait until N result frames have arrived
* ``{"op": "wait", "cycles": N}``

cocotbext-axi drives both streams: an ``AxiStreamSource`` on ``s_axis`` with a pause generator
(random idle cycles, probability ``idle``) and an ``AxiStreamSink`` on ``m_axis`` with a pause
generator (random backpressure, probability ``stall``) that collects result frames on ``tlast``
for the whole run. Result: ``{"frames": [[...], ...], "reads": {...},
"done_at": [...], "send_at": [...], "cycles": N, "wall_s": T}`` (``done_at``: cycle of each
result frame's last beat, ``send_at``: cycle each ``send`` step started, both counted from
the end of reset; ``cycles``/``wall_s``: simulated clock cycles and
wall-clock seconds of the scripted part, for the simulation-speed figure).
"""
import itertools
import random
import time

import cocotb
from cocotb.triggers import ClockCycles, RisingEdge
from cocotbext.axi import AxiLiteBus, AxiLiteMaster, AxiStreamBus, AxiStreamFrame, AxiStreamSink, AxiStreamSource

from bitplane.sim.tb_streams import TB, tb_data, tb_result


def _pauses(rng, p):
    """cocotbext-axi pause generator: pause a cycle with probability ``p`` (seeded)."""
    return (rng.random() < p for _ in itertools.count())


async def _send(dut, source, rng, idle, beats, lasts):
    """``beats`` on s_axis: each run up to a listed ``tlast`` index is one cocotbext-axi frame
    (the source closes every frame with ``tlast``); a trailing run with no ``tlast`` (a frame cut
    short on purpose) is driven by hand once the source is idle, with the same idle cycles."""
    start = 0
    for end in sorted(lasts):
        await source.send(AxiStreamFrame([int(b) for b in beats[start:end + 1]]))
        start = end + 1
    await source.wait()
    for b in beats[start:]:
        while rng.random() < idle:
            dut.s_axis_tvalid.value = 0
            await RisingEdge(dut.clk)
        dut.s_axis_tdata.value, dut.s_axis_tlast.value, dut.s_axis_tvalid.value = int(b), 0, 1
        while True:
            await RisingEdge(dut.clk)
            if dut.s_axis_tready.value:
                break
    dut.s_axis_tvalid.value = 0


async def _collect(sink, frames, done_at, clock):
    while True:
        f = await sink.recv()
        frames.append(list(f.tdata))
        done_at.append(clock["n"])


async def _count(dut, clock):
    while True:
        await RisingEdge(dut.clk)
        clock["n"] += 1


@cocotb.test()
async def scenario(dut):
    d = tb_data()
    tb = TB(dut, d["seed"])
    axil = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axil"), dut.clk, dut.rst)
    source = AxiStreamSource(AxiStreamBus.from_prefix(dut, "s_axis"), dut.clk, dut.rst, byte_lanes=1)
    sink = AxiStreamSink(AxiStreamBus.from_prefix(dut, "m_axis"), dut.clk, dut.rst, byte_lanes=1)
    source.set_pause_generator(_pauses(random.Random(tb.rng.random()), d["idle"]))
    sink.set_pause_generator(_pauses(random.Random(tb.rng.random()), d["stall"]))
    await tb.reset()
    frames, done_at, reads, send_at = [], [], {}, []
    clock = {"n": 0}
    cocotb.start_soon(_count(dut, clock))
    cocotb.start_soon(_collect(sink, frames, done_at, clock))
    t0 = time.perf_counter()
    for s in d["steps"]:
        op = s["op"]
        if op == "write":
            await axil.write_dword(s["reg"], s["value"])
        elif op == "read":
            reads.setdefault(s["key"], []).append(await axil.read_dword(s["reg"]))
        elif op == "send":
            send_at.append(clock["n"])
            await _send(dut, source, tb.rng, d["idle"], s["beats"], s["last"])
        elif op == "frames":
            waited = 0
            while len(frames) < s["n"]:
                await RisingEdge(dut.clk)
                waited += 1
                assert waited < d["timeout"], f"timeout waiting for {s['n']} frames (have {len(frames)})"
        elif op == "wait":
            await ClockCycles(dut.clk, s["cycles"])
        else:
            raise ValueError(op)
    tb_result({"frames": [[str(w) for w in f] for f in frames], "reads": reads, "done_at": done_at,
               "send_at": send_at, "cycles": clock["n"], "wall_s": time.perf_counter() - t0})
