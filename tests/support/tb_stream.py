"""Generic cocotb testbench for a component with one stream in (``i``) and one out (``o``):
streams the given words with random idle cycles, collects with random backpressure."""
import cocotb

from bitplane.sim.tb_streams import TB, tb_data, tb_result
from tests.support.stream_drivers import StreamSink, StreamSource


@cocotb.test()
async def stream_through(dut):
    d = tb_data()
    tb = TB(dut, d["seed"])
    dut.i__valid.value = 0
    dut.o__ready.value = 0
    for n in d.get("idle_inputs", []):
        getattr(dut, n).value = 0
    await tb.reset()
    src = StreamSource(dut, "i", dut.clk, tb.rng, d["idle"])
    sink = StreamSink(dut, "o", dut.clk, tb.rng, d["stall"])
    cocotb.start_soon(src.send([int(w) for w in d["words"]]))
    await sink.collect(d["n_out"])
    tb_result({"out": [str(w) for w in sink.words], "cycles": sink.cycles})
