"""cocotb testbench of the bit-serial MVTU: run-time memory load, then vectors with random
gaps in and random backpressure out; outputs and cycle counts go back to pytest."""
import cocotb
from cocotb.triggers import RisingEdge

from bitplane.sim.tb_streams import TB, tb_data, tb_result
from tests.support.stream_drivers import StreamSink, StreamSource


async def write_mem(tb, name, entries):
    valid = getattr(tb.dut, f"{name}__valid")
    payload = getattr(tb.dut, f"{name}__payload")
    addr_bits = tb.d["addr_bits"][name]
    for addr, data in entries:
        payload.value = (int(data) << addr_bits) | int(addr)        # StructLayout: addr first
        valid.value = 1
        await RisingEdge(tb.dut.clk)
    valid.value = 0


@cocotb.test()
async def mvtu_vectors(dut):
    d = tb_data()
    tb = TB(dut, d["seed"])
    tb.d = d
    dut.act__valid.value = 0
    dut.out__ready.value = 0
    for n in d["mem"]:
        getattr(dut, f"{n}__valid").value = 0
    await tb.reset()
    for name in ("w_wr", "k_wr", "t_wr"):
        if name in d["mem"]:
            await write_mem(tb, name, d["mem"][name])
    src = StreamSource(dut, "act", dut.clk, tb.rng, d["idle"])
    sink = StreamSink(dut, "out", dut.clk, tb.rng, d["stall"])
    cocotb.start_soon(src.send(d["words"]))
    await sink.collect(d["n_out"])
    tb_result({"out": [str(w) for w in sink.words], "cycles": sink.cycles})
