"""bitplane: an FPGA accelerator generator for low-bitwidth quantized CNNs.

The public API (:mod:`bitplane.api`, what the ``bitplane`` command wraps)::

    import bitplane
    net = bitplane.load("examples/lenet-w2a2.yaml")
    design = bitplane.compile(net, "build/lenet", target_fps=1500)
    y, stats = design.simulate(x)

The installed package mirrors the repository's folders (docs/design.md, "Layout"):
``bitplane.core`` (contract: errors, manifest, packing, register map, weight image),
``bitplane.hw`` (Amaranth gateware), ``bitplane.gen`` (spec, quantizers, lowering, golden model,
planner, compiler, importers), ``bitplane.synth`` and ``bitplane.sim`` (synthesis, simulation),
``bitplane.host`` (driver and transports), ``bitplane.train`` (PyTorch QAT, optional) and
``bitplane.cli`` (the command). ``import bitplane`` loads none of them until an API function is
used.
"""
__version__ = "0.1.0"

__all__ = ["load", "import_model", "golden", "inspect", "plan", "compile", "synthesize", "Design"]


def __getattr__(name):
    if name in __all__:
        from bitplane import api  # lazy: `import bitplane` stays cheap (no numpy/amaranth) until the API is used
        return getattr(api, name)
    raise AttributeError(f"module 'bitplane' has no attribute {name!r}")
