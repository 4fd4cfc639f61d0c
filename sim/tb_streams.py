"""What every cocotb testbench shares: clock/reset with seeded randomness (:class:`TB`) and the
JSON data/result files the runner (``sim/cocotb_run.py``) passes in and reads back."""
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
