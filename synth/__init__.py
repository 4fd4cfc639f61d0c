"""bitplane.synth: open synthesis (yosys + nextpnr, yosys synth_xilinx estimates) and the Vivado project writer."""
