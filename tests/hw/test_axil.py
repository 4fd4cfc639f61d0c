"""AXI4-Lite register file: protocol under random timing, access kinds, DECERR, lint."""
import random

import pytest
from amaranth.back import verilog
from amaranth.sim import Simulator

from bitplane.hw.axil import DECERR, OKAY, AXILiteRegisters
from bitplane.core.regmap import ID_MAGIC, by_name, regmap_dict


class Master:
    """Minimal AXI4-Lite master for amaranth.sim with random idle cycles."""

    def __init__(self, dut, rng):
        self.d, self.rng = dut, rng

    async def idle(self, ctx):
        for _ in range(self.rng.choice([0, 0, 1, 3])):
            await ctx.tick()

    async def write(self, ctx, addr, data, strb=0xF, aw_first=None):
        d = self.d
        order = self.rng.choice(["aw", "w", "both"]) if aw_first is None else aw_first
        chans = {"aw": [(d.s_axil_awaddr, addr)], "w": [(d.s_axil_wdata, data), (d.s_axil_wstrb, strb)]}
        valid = {"aw": d.s_axil_awvalid, "w": d.s_axil_wvalid}
        ready = {"aw": d.s_axil_awready, "w": d.s_axil_wready}
        seq = [["aw", "w"]] if order == "both" else [[order], ["w" if order == "aw" else "aw"]]
        for group in seq:
            await self.idle(ctx)
            for ch in group:
                for sig, v in chans[ch]:
                    ctx.set(sig, v)
                ctx.set(valid[ch], 1)
            pending = set(group)
            while pending:
                done = {ch for ch in pending if ctx.get(ready[ch])}
                await ctx.tick()
                for ch in done:
                    ctx.set(valid[ch], 0)
                pending -= done
        ctx.set(d.s_axil_bready, 0)
        await self.idle(ctx)
        ctx.set(d.s_axil_bready, 1)
        while not ctx.get(d.s_axil_bvalid):
            await ctx.tick()
        resp = ctx.get(d.s_axil_bresp)
        await ctx.tick()
        ctx.set(d.s_axil_bready, 0)
        return resp

    async def read(self, ctx, addr):
        d = self.d
        await self.idle(ctx)
        ctx.set(d.s_axil_araddr, addr)
        ctx.set(d.s_axil_arvalid, 1)
        while not ctx.get(d.s_axil_arready):
            await ctx.tick()
        await ctx.tick()
        ctx.set(d.s_axil_arvalid, 0)
        await self.idle(ctx)
        ctx.set(d.s_axil_rready, 1)
        while not ctx.get(d.s_axil_rvalid):
            await ctx.tick()
        data, resp = ctx.get(d.s_axil_rdata), ctx.get(d.s_axil_rresp)
        await ctx.tick()
        ctx.set(d.s_axil_rready, 0)
        return data, resp


def run(tb_body, seed=0):
    dut = AXILiteRegisters()
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    rng = random.Random(seed)
    master = Master(dut, rng)

    async def tb(ctx):
        ctx.set(dut.reg_id, ID_MAGIC)
        await tb_body(ctx, dut, master)

    sim.add_testbench(tb)
    sim.run()


@pytest.mark.parametrize("seed", range(3))
def test_rw_ro_w1c_pulse_and_decerr(seed):
    async def body(ctx, dut, m):
        assert await m.read(ctx, by_name("ID").offset) == (ID_MAGIC, OKAY)
        sc = by_name("SCRATCH").offset
        assert await m.write(ctx, sc, 0x12345678) == OKAY
        assert await m.read(ctx, sc) == (0x12345678, OKAY)
        assert await m.write(ctx, sc, 0xAABBCCDD, strb=0b0101) == OKAY        # byte strobes
        assert await m.read(ctx, sc) == (0x12BB56DD, OKAY)
        # writes to a read-only register are ignored
        assert await m.write(ctx, by_name("ID").offset, 0) == OKAY
        assert (await m.read(ctx, by_name("ID").offset))[0] == ID_MAGIC
        # sticky error flags: set by hardware, cleared by writing 1
        ctx.set(dut.reg_error_set, 0b101)
        await ctx.tick()
        ctx.set(dut.reg_error_set, 0)
        assert await m.read(ctx, by_name("ERROR").offset) == (0b101, OKAY)
        assert await m.write(ctx, by_name("ERROR").offset, 0b001) == OKAY
        assert (await m.read(ctx, by_name("ERROR").offset))[0] == 0b100
        # pulse registers read as 0
        assert await m.write(ctx, by_name("CTRL").offset, 0b10, aw_first="both") == OKAY
        assert (await m.read(ctx, by_name("CTRL").offset))[0] == 0
        # outside the map: DECERR both ways
        assert await m.write(ctx, 0x3C, 1) == DECERR
        assert (await m.read(ctx, 0x3C))[1] == DECERR
    run(body, seed)


def test_ctrl_pulse_lasts_one_cycle():
    async def body(ctx, dut, m):
        d = dut
        ctx.set(d.s_axil_bready, 1)
        ctx.set(d.s_axil_awaddr, by_name("CTRL").offset)
        ctx.set(d.s_axil_wdata, 0b100)
        ctx.set(d.s_axil_wstrb, 0xF)
        ctx.set(d.s_axil_awvalid, 1)
        ctx.set(d.s_axil_wvalid, 1)
        pulses = []
        for _ in range(6):
            await ctx.tick()
            ctx.set(d.s_axil_awvalid, 0)
            ctx.set(d.s_axil_wvalid, 0)
            pulses.append(ctx.get(d.reg_ctrl))
        assert pulses.count(0b100) == 1 and set(pulses) <= {0, 0b100}
    run(body)


def test_cycle_counter_pair_reads_consistently():
    async def body(ctx, dut, m):
        lo, hi = by_name("CYCLES_LO").offset, by_name("CYCLES_HI").offset
        ctx.set(dut.reg_cycles_lo, 0xFFFFFFFF)
        ctx.set(dut.reg_cycles_hi, 7)
        assert (await m.read(ctx, lo))[0] == 0xFFFFFFFF
        ctx.set(dut.reg_cycles_lo, 0)
        ctx.set(dut.reg_cycles_hi, 8)                 # the counter wrapped after the LO read
        assert (await m.read(ctx, hi))[0] == 7        # HI is the value captured with LO
    run(body)


# The register map as documented (docs/design.md, "Register map"), written out by hand: a change
# of an offset, access kind or field position must be a deliberate edit here and in the docs.
EXPECTED_REGMAP = [
    ("ID", 0x00, "ro", []),
    ("VERSION", 0x04, "ro", []),
    ("BUILD_ID", 0x08, "ro", []),
    ("CTRL", 0x0C, "pulse", [("SOFT_RESET", 0, 1), ("CLEAR_COUNTERS", 1, 1), ("CLEAR_CHECKSUM", 2, 1),
                             ("LOAD_WEIGHTS", 3, 1)]),
    ("STATUS", 0x10, "ro", [("BUSY", 0, 1), ("WEIGHTS_LOADING", 1, 1), ("ERROR", 2, 1)]),
    ("ERROR", 0x14, "w1c", [("FRAMING", 0, 1), ("OVERFLOW", 1, 1), ("WEIGHT_FORMAT", 2, 1), ("ABORTED", 3, 1)]),
    ("FRAMES_IN", 0x18, "ro", []),
    ("FRAMES_OUT", 0x1C, "ro", []),
    ("CYCLES_LO", 0x20, "ro", []),
    ("CYCLES_HI", 0x24, "ro", []),
    ("WEIGHT_CHECKSUM", 0x28, "ro", []),
    ("WEIGHT_WORDS", 0x2C, "ro", []),
    ("SCRATCH", 0x30, "rw", []),
]


def test_regmap_export_is_the_documented_map():
    d = regmap_dict()
    got = [(r["name"], r["offset"], r["access"], [(f["name"], f["lsb"], f["width"]) for f in r["fields"]])
           for r in d["registers"]]
    assert got == EXPECTED_REGMAP
    assert (d["span"], d["data_bits"], d["id_magic"]) == (64, 32, int.from_bytes(b"BPLN", "big"))


def test_verilog_port_names_follow_xilinx_convention():
    v = verilog.convert(AXILiteRegisters(), name="regs")
    for port in ("s_axil_awaddr", "s_axil_awvalid", "s_axil_awready", "s_axil_wdata", "s_axil_wstrb",
                 "s_axil_bresp", "s_axil_bvalid", "s_axil_bready", "s_axil_araddr", "s_axil_rdata",
                 "s_axil_rresp", "s_axil_rvalid", "s_axil_rready"):
        assert f" {port}" in v or f"{port};" in v, port
