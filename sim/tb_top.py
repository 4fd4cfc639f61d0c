"""cocotb testbench for a whole accelerator top (``hw/top.py``): scripted scenarios.

The data file (``BP_TB_DATA``) holds ``steps``, run in order:

* ``{"op": "write", "reg": OFFSET, "value": V}``   AXI4-Lite write (cocotbext-axi master)
* ``{"op": "read", "reg": OFFSET, "key": K}``      AXI4-Lite read, stored under ``reads[K]``
  (a list: one entry per read with that key)
* ``{"op": "send", "beats": [...], "last": [i, ...]}``  s_axis beats, ``tlast`` on the listed
  indices, with random idle cycles (``idle``)
* ``{"op": "frames", "n": N}``                     wait until N result frames have arrived
* ``{"op": "wait", "cycles": N}``

A sink with random backpressure (``stall``) collects ``m_axis`` beats into frames on
``tlast`` for the whole run. Result: ``{"frames": [[...], ...], "reads": {...},
"done_at": [...], "send_at": [...], "cycles": N, "wall_s": T}`` (``done_at``: cycle of each
result frame's last beat, ``send_at``: cycle each ``send`` step started, both counted from
the end of reset; ``cycles``/``wall_s``: simulated clock cycles and
wall-clock seconds of the scripted part, for the simulation-speed figure).
"""
import time

import cocotb
from cocotb.triggers import ClockCycles, RisingEdge
from cocotbext.axi import AxiLiteBus, AxiLiteMaster

from bitplane.sim.tb_streams import TB, tb_data, tb_result


async def _send(dut, rng, idle, beats, lasts):
    lasts = set(lasts)
    for k, b in enumerate(beats):
        while rng.random() < idle:
            dut.s_axis_tvalid.value = 0
            await RisingEdge(dut.clk)
        dut.s_axis_tdata.value = int(b)
        dut.s_axis_tlast.value = int(k in lasts)
        dut.s_axis_tvalid.value = 1
        while True:
            await RisingEdge(dut.clk)
            if dut.s_axis_tready.value:
                break
    dut.s_axis_tvalid.value = 0
    dut.s_axis_tlast.value = 0


async def _sink(dut, rng, stall, frames, done_at, clock):
    cur = []
    while True:
        dut.m_axis_tready.value = int(rng.random() >= stall)
        await RisingEdge(dut.clk)
        clock["n"] += 1
        if dut.m_axis_tvalid.value and dut.m_axis_tready.value:
            cur.append(dut.m_axis_tdata.value.to_unsigned())
            if dut.m_axis_tlast.value:
                frames.append(cur)
                done_at.append(clock["n"])
                cur = []


@cocotb.test()
async def scenario(dut):
    d = tb_data()
    tb = TB(dut, d["seed"])
    dut.s_axis_tvalid.value = 0
    dut.s_axis_tlast.value = 0
    dut.m_axis_tready.value = 0
    axil = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axil"), dut.clk, dut.rst)
    await tb.reset()
    frames, done_at, reads, send_at = [], [], {}, []
    clock = {"n": 0}
    cocotb.start_soon(_sink(dut, tb.rng, d["stall"], frames, done_at, clock))
    t0 = time.perf_counter()
    for s in d["steps"]:
        op = s["op"]
        if op == "write":
            await axil.write_dword(s["reg"], s["value"])
        elif op == "read":
            reads.setdefault(s["key"], []).append(await axil.read_dword(s["reg"]))
        elif op == "send":
            send_at.append(clock["n"])
            await _send(dut, tb.rng, d["idle"], s["beats"], s["last"])
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
