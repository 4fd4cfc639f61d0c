"""Block-RAM output registers on ECP5: a pass over yosys' JSON netlist before nextpnr.

An ECP5 DP16KD read without its output register has a clock-to-out of about 5.8 ns at speed
grade 6 (prjtrellis timing database; 0.95 ns with ``REGMODE = OUTREG``), which alone caps a
design near 150 MHz. yosys' ECP5 block-RAM mapping always writes ``REGMODE = "NOREG"``
(YosysHQ/yosys#5814, #3668: no output-register inference), so bitplane's hardware puts a plain
register right after every block-RAM read (no reset, no logic in front; hw/stream_blocks.py,
hw/bitserial.py) and this pass moves such registers into the block RAM:

For each DP16KD read port whose every used data output drives exactly one flip-flop input, the
flip-flops being clocked by the port's clock, without set/reset (``LSR`` constant 0, reset value
0 as the output register's) and sharing one clock enable, the port's ``REGMODE`` becomes
``OUTREG``, its output clock enable ``OCE`` the flip-flops' enable, its outputs drive the
flip-flops' output nets and the flip-flops are removed. The output register is clocked by the
port's clock and loads when ``OCE`` is high, as the flip-flops did, so the design's behaviour
(cycle by cycle) is unchanged. In the 36-bit pseudo-dual-port mode (``DATA_WIDTH_A`` = 36,
yosys' ``PDPW16KD`` mapping) the read data leaves on both ``DOA`` and ``DOB``: both are moved
together, both ``REGMODE`` set, both ``OCE`` driven.

Ports that do not qualify are left as they are (reported in the count only).
"""
from __future__ import annotations

from collections import defaultdict

_ZERO, _ONE = "0", "1"


def _top(netlist: dict) -> dict:
    mods = netlist["modules"]
    tops = [m for m in mods.values() if str(m.get("attributes", {}).get("top", "0")).strip("0")]
    if len(tops) != 1:
        raise ValueError(f"expected one top module in the netlist, found {len(tops)}")
    return tops[0]


def _width36(cell: dict) -> bool:
    w = cell["parameters"].get("DATA_WIDTH_A", "0")
    return (int(w, 2) if set(str(w)) <= {"0", "1"} else int(w)) == 36


def _ff_ok(ff: dict, clk) -> bool:
    """A flip-flop the output register can replace: plain clock, plain (or no) clock enable, no
    set/reset, reset value 0."""
    p, c = ff["parameters"], ff["connections"]
    return (ff["type"] == "TRELLIS_FF" and p.get("CLKMUX", "CLK").strip() == "CLK"
            and p.get("CEMUX", "CE").strip() in ("CE", "1")
            and p.get("REGSET", "RESET").strip() == "RESET" and c.get("CLK") == clk
            and c.get("LSR", [_ZERO]) == [_ZERO] and p.get("LSRMUX", "LSR").strip() == "LSR")


def _ff_enable(ff: dict):
    """The flip-flop's clock enable as a netlist bit (constant "1" when always enabled)."""
    if ff["parameters"].get("CEMUX", "CE").strip() == "1":
        return _ONE
    ce = ff["connections"].get("CE", [_ONE])
    return ce[0]


def _flip_flops(used, sinks, cells, clk, port_nets):
    """``[(output pin, flip-flop)]`` when every used data output (``(pin, net)``) drives exactly
    one flip-flop input the output register can replace (:func:`_ff_ok`) and nothing else; else None."""
    plan = []
    for pin, b in used:
        s = sinks[b]
        if len(s) != 1 or s[0][1] != "DI" or b in port_nets or not _ff_ok(cells[s[0][0]], clk):
            return None
        plan.append((pin, s[0][0]))
    return plan


def absorb_output_registers(netlist: dict) -> dict:
    """Move qualifying flip-flops into DP16KD output registers (module docstring), in place.
    Returns ``{"ports": moved read ports, "flip_flops": removed, "skipped": read ports left}``."""
    top = _top(netlist)
    cells = top["cells"]
    sinks = defaultdict(list)                   # net bit -> [(cell, port)]
    for name, cell in cells.items():
        for port, bits in cell["connections"].items():
            if cell["port_directions"].get(port) != "output":
                for b in bits:
                    if isinstance(b, int):
                        sinks[b].append((name, port))
    port_nets = {b for p in top.get("ports", {}).values() for b in p["bits"] if isinstance(b, int)}
    moved = removed = skipped = 0
    for cell in list(cells.values()):
        if cell["type"] != "DP16KD" or cell["parameters"].get("REGMODE_A", "NOREG") != "NOREG" \
                or cell["parameters"].get("REGMODE_B", "NOREG") != "NOREG":
            continue
        con = cell["connections"]
        pdp = _width36(cell)
        groups = [("A", "B")] if pdp else [("A",), ("B",)]
        for group in groups:
            clk = con.get(f"CLK{group[-1]}")        # PDP: the read side is port B
            if pdp and con.get("CLKA") != clk:
                skipped += 1
                continue
            outs = [(f"DO{p}{k}", con[f"DO{p}{k}"][0]) for p in group for k in range(18)
                    if isinstance(con.get(f"DO{p}{k}", [None])[0], int)]
            used = [(pin, b) for pin, b in outs if sinks.get(b)]
            if not used:
                continue
            plan = _flip_flops(used, sinks, cells, clk, port_nets)
            enables = {_ff_enable(cells[ff]) for _, ff in plan or ()}
            if plan is None or len(enables) != 1:
                skipped += 1
                continue
            ce = enables.pop()
            for p in group:
                cell["parameters"][f"REGMODE_{p}"] = "OUTREG"
                con[f"OCE{p}"] = [ce]
            for pin, ffname in plan:
                con[pin] = list(cells[ffname]["connections"]["Q"])
                del cells[ffname]
            moved += 1
            removed += len(plan)
    return {"ports": moved, "flip_flops": removed, "skipped": skipped}

