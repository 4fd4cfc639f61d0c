"""AXI4-Lite register file generated from :mod:`bitplane.core.regmap`."""
from __future__ import annotations

from amaranth import Cat, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from bitplane.core.regmap import DATA_BITS, REGISTERS, SPAN

OKAY, SLVERR, DECERR = 0b00, 0b10, 0b11


class AXILiteRegisters(wiring.Component):
    """AXI4-Lite slave holding the control/status registers of :data:`bitplane.core.regmap.REGISTERS`.

    Ports (Xilinx names, so Vivado infers the ``s_axil`` interface and cocotbext-axi binds
    by prefix):

    ============================== ===== ==================================================
    ``s_axil_aw{addr,prot,valid}`` In    write address (``addr`` is ``ceil_log2(SPAN)`` bits)
    ``s_axil_awready``             Out
    ``s_axil_w{data,strb,valid}``  In    write data, byte strobes honoured for ``rw``
    ``s_axil_wready``              Out
    ``s_axil_b{resp,valid}``       Out   OKAY, or DECERR outside the map
    ``s_axil_bready``              In
    ``s_axil_ar{addr,prot,valid}`` In    read address
    ``s_axil_arready``             Out
    ``s_axil_r{data,resp,valid}``  Out
    ``s_axil_rready``              In
    ``reg_<name>``                 In    ``ro`` registers: value driven by the hardware
    ``reg_<name>``                 Out   ``rw``/``w1c`` registers: current value;
                                         ``pulse`` registers: one-cycle command pulses
    ``reg_<name>_set``             In    ``w1c`` registers: bits to set this cycle
    ============================== ===== ==================================================

    Behaviour: one write and one read outstanding. AW and W are accepted in either order
    (each held until the other arrives); the write takes effect in the cycle after both are
    held (the register's select registered first), and ``bvalid`` rises with the new value.
    A read returns ``rvalid`` the cycle after the AR handshake (latency 1). Both responses hold under backpressure (``bready``/``rready``
    low) and block further requests of their kind until accepted. Reading ``X_LO``
    captures ``X_HI`` so the pair reads as one consistent 64-bit value. A hardware set and
    a software clear of the same ``w1c`` bit in one cycle leave the bit set.
    """

    def __init__(self, registers=REGISTERS, span: int = SPAN):
        self.registers = tuple(registers)
        self.span = span
        aw = ceil_log2(span)
        members = {
            "s_axil_awaddr": In(aw), "s_axil_awprot": In(3), "s_axil_awvalid": In(1), "s_axil_awready": Out(1),
            "s_axil_wdata": In(DATA_BITS), "s_axil_wstrb": In(DATA_BITS // 8), "s_axil_wvalid": In(1),
            "s_axil_wready": Out(1),
            "s_axil_bresp": Out(2), "s_axil_bvalid": Out(1), "s_axil_bready": In(1),
            "s_axil_araddr": In(aw), "s_axil_arprot": In(3), "s_axil_arvalid": In(1), "s_axil_arready": Out(1),
            "s_axil_rdata": Out(DATA_BITS), "s_axil_rresp": Out(2), "s_axil_rvalid": Out(1),
            "s_axil_rready": In(1),
        }
        for r in self.registers:
            n = f"reg_{r.name.lower()}"
            if r.access == "ro":
                members[n] = In(DATA_BITS)
            else:
                members[n] = Out(DATA_BITS)
            if r.access == "w1c":
                members[n + "_set"] = In(DATA_BITS)
        super().__init__(members)

    def port(self, name: str, suffix: str = ""):
        return getattr(self, f"reg_{name.lower()}{suffix}")

    def elaborate(self, platform):
        m = Module()
        regs = self.registers
        names = {r.name for r in regs}

        # ---------------------------------------------------------------- write channel
        aw_held, w_held = Signal(), Signal()
        w_data = Signal(DATA_BITS)                     # the data under its strobes
        m.d.comb += [
            self.s_axil_awready.eq(~aw_held & ~self.s_axil_bvalid),
            self.s_axil_wready.eq(~w_held & ~self.s_axil_bvalid),
        ]
        # the address decoded and the strobes expanded as they arrive, into registers held with
        # the address and data: the write then enables each register through one AND of
        # registers (decoding the held address in the write's cycle put 5 levels before the
        # w1c ERROR register, the demo's ECP5 path at one placement, 7.0 ns)
        aw_hit = {r.name: Signal(name=f"aw_hit_{r.name.lower()}") for r in regs}
        with m.If(self.s_axil_awvalid & self.s_axil_awready):
            m.d.sync += aw_held.eq(1)
            m.d.sync += [aw_hit[r.name].eq(self.s_axil_awaddr[2:] == r.offset >> 2) for r in regs]
        mask = Signal(DATA_BITS)
        strobes = Cat(*[self.s_axil_wstrb[i].replicate(8) for i in range(DATA_BITS // 8)])
        with m.If(self.s_axil_wvalid & self.s_axil_wready):
            m.d.sync += [w_held.eq(1), w_data.eq(self.s_axil_wdata & strobes), mask.eq(strobes)]
        with m.If(self.s_axil_bvalid & self.s_axil_bready):
            m.d.sync += self.s_axil_bvalid.eq(0)

        # the write in two cycles: `do_write` (both held, no response pending) registers each
        # register's select (`go_<name>`, its address hit) and blocks itself; in the next the
        # registers take the data and `bvalid` rises, so a read issued on the response sees the
        # new value. Each bit's enable is then one register of its own, not the held flags and the
        # address hit ANDed in the write's cycle (regs.w_held -> the w1c ERROR register, 5 levels,
        # the demo's ECP5 path at grade 8 at one placement)
        go = Signal()
        do_write = Signal()
        m.d.comb += do_write.eq(aw_held & w_held & ~self.s_axil_bvalid & ~go)
        go_r = {r.name: Signal(name=f"go_{r.name.lower()}") for r in regs}
        m.d.sync += [go.eq(do_write)] + [go_r[r.name].eq(do_write & aw_hit[r.name]) for r in regs]
        with m.If(go):
            m.d.sync += [aw_held.eq(0), w_held.eq(0), self.s_axil_bvalid.eq(1),
                         self.s_axil_bresp.eq(Mux(Cat(*go_r.values()).any(), OKAY, DECERR))]

        for r in regs:
            if r.access == "ro":
                continue
            sel = go_r[r.name]
            port = self.port(r.name)
            if r.access == "rw":
                with m.If(sel):
                    m.d.sync += port.eq((port & ~mask) | w_data)
            elif r.access == "w1c":
                clr = Mux(sel, w_data, 0)
                m.d.sync += port.eq((port & ~clr) | self.port(r.name, "_set"))
            elif r.access == "pulse":
                m.d.sync += port.eq(Mux(sel, w_data, 0))

        # ---------------------------------------------------------------- read channel
        m.d.comb += self.s_axil_arready.eq(~self.s_axil_rvalid)
        with m.If(self.s_axil_rvalid & self.s_axil_rready):
            m.d.sync += self.s_axil_rvalid.eq(0)
        shadows = {}
        for r in regs:
            if r.name.endswith("_LO") and r.name[:-3] + "_HI" in names:
                shadows[r.name[:-3] + "_HI"] = (r, Signal(DATA_BITS, name=f"shadow_{r.name[:-3].lower()}_hi"))
        with m.If(self.s_axil_arvalid & self.s_axil_arready):
            m.d.sync += [self.s_axil_rvalid.eq(1), self.s_axil_rdata.eq(0), self.s_axil_rresp.eq(DECERR)]
            with m.Switch(self.s_axil_araddr[2:]):
                for r in regs:
                    with m.Case(r.offset >> 2):
                        m.d.sync += self.s_axil_rresp.eq(OKAY)
                        if r.access == "pulse":
                            pass
                        elif r.name in shadows:
                            m.d.sync += self.s_axil_rdata.eq(shadows[r.name][1])
                        else:
                            m.d.sync += self.s_axil_rdata.eq(self.port(r.name))
                        if r.name.endswith("_LO") and r.name[:-3] + "_HI" in shadows:
                            hi = r.name[:-3] + "_HI"
                            m.d.sync += shadows[hi][1].eq(self.port(hi))
        return m
