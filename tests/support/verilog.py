"""Verilog of one component as a top level (for block-level lint and RTL tests)."""
from __future__ import annotations

from amaranth.back import verilog
from amaranth.hdl import Signal, Value


def component_verilog(comp, name: str) -> str:
    """``verilog.convert`` with the component's signal ports only: members that are constants
    (the ``ready`` of an ``always_ready`` stream, such as the memory write ports) are no ports."""
    values = [Value.cast(value) for _, _, value in comp.signature.flatten(comp)]   # views -> their signals
    ports = [v for v in values if isinstance(v, Signal)]
    return verilog.convert(comp, name=name, ports=ports)
