"""bitplane: an FPGA accelerator generator for low-bitwidth quantized CNNs.

The installed package mirrors the repository's folders (docs/design.md, "Layout"):
``bitplane.core`` (contract: errors, manifest, packing, register map, weight image),
``bitplane.hw`` (Amaranth gateware), ``bitplane.gen`` (spec, quantizers, lowering, golden model,
planner, compiler, importers), ``bitplane.synth`` and ``bitplane.sim`` (synthesis, simulation),
``bitplane.host`` (driver and transports), ``bitplane.train`` (PyTorch QAT, optional) and
``bitplane.cli`` (the command).
"""
__version__ = "0.1.0"
