"""cocotb 2.x drivers for Amaranth ``lib.stream`` ports (``<name>__payload/__valid/__ready``).

Sources insert random idle cycles, sinks deassert ``ready`` at random, both from a seeded
generator, so every testbench exercises arbitrary backpressure. (The accelerator top's
AXI4-Stream ports are driven by cocotbext-axi in ``sim/tb_top.py``.)
"""
from __future__ import annotations

import random

from cocotb.triggers import RisingEdge


class _StreamPort:
    """The valid/ready/payload signals of stream port ``name``, its clock and random generator."""

    def __init__(self, dut, name: str, clk, rng: random.Random):
        self.valid = getattr(dut, f"{name}__valid")
        self.ready = getattr(dut, f"{name}__ready")
        self.payload = getattr(dut, f"{name}__payload")
        self.clk, self.rng = clk, rng


class StreamSource(_StreamPort):
    def __init__(self, dut, name: str, clk, rng: random.Random, idle: float = 0.0):
        super().__init__(dut, name, clk, rng)
        self.idle = idle
        self.valid.value = 0

    async def send(self, words):
        for w in words:
            while self.rng.random() < self.idle:
                await RisingEdge(self.clk)
            self.payload.value = int(w)
            self.valid.value = 1
            while True:
                await RisingEdge(self.clk)          # values read here are those of the edge
                if self.ready.value:
                    break
            self.valid.value = 0


class StreamSink(_StreamPort):
    def __init__(self, dut, name: str, clk, rng: random.Random, stall: float = 0.0):
        super().__init__(dut, name, clk, rng)
        self.stall = stall
        self.ready.value = 0
        self.words, self.cycles = [], []

    async def collect(self, n: int):
        cycle = 0
        while len(self.words) < n:
            self.ready.value = int(self.rng.random() >= self.stall)
            await RisingEdge(self.clk)
            cycle += 1
            if self.valid.value and self.ready.value:
                v = self.payload.value      # LogicArray, or Logic for a 1-bit payload; X/Z raise
                self.words.append(v.to_unsigned() if hasattr(v, "to_unsigned") else int(v))
                self.cycles.append(cycle)
        self.ready.value = 0
