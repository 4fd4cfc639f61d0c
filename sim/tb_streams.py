"""cocotb 2.x drivers for Amaranth ``lib.stream`` ports (``<name>__payload/__valid/__ready``).

Sources insert random idle cycles, sinks deassert ``ready`` at random, both from a seeded
generator, so every testbench exercises arbitrary backpressure.
"""
from __future__ import annotations

import json
import os
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge


def tb_data() -> dict:
    with open(os.environ["BP_TB_DATA"]) as f:
        return json.load(f)


def tb_result(result: dict) -> None:
    with open(os.environ["BP_TB_RESULT"], "w") as f:
        json.dump(result, f)


class StreamSource:
    def __init__(self, dut, name: str, clk, rng: random.Random, idle: float = 0.0):
        self.valid = getattr(dut, f"{name}__valid")
        self.ready = getattr(dut, f"{name}__ready")
        self.payload = getattr(dut, f"{name}__payload")
        self.clk, self.rng, self.idle = clk, rng, idle
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


class StreamSink:
    def __init__(self, dut, name: str, clk, rng: random.Random, stall: float = 0.0):
        self.valid = getattr(dut, f"{name}__valid")
        self.ready = getattr(dut, f"{name}__ready")
        self.payload = getattr(dut, f"{name}__payload")
        self.clk, self.rng, self.stall = clk, rng, stall
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


class TB:
    """Clock, reset and seeded randomness for an Amaranth component (ports ``clk``, ``rst``)."""

    def __init__(self, dut, seed: int = 0):
        self.dut = dut
        self.rng = random.Random(seed)
        cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())

    async def reset(self):
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, 3)
        self.dut.rst.value = 0
        await RisingEdge(self.dut.clk)
