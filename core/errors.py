"""Errors that the CLI reports as one clear line and a non-zero exit (no traceback)."""
from __future__ import annotations


class BitplaneError(Exception):
    """Base class of every error meant for a user (bad input, unsupported feature)."""


class SpecError(BitplaneError):
    """A network spec (YAML + NPZ) is malformed or not supported.

    The message always names the file, and where known the layer (name and index) and
    the field, e.g. ``net.yaml: layer 'conv1' (#3), field 'weight_quant.bits': 9 is out
    of range 1..8 for dorefa weights``.
    """

    def __init__(self, file, message: str, layer: str | None = None,
                 index: int | None = None, field: str | None = None):
        self.file = str(file)
        self.layer = layer
        self.index = index
        self.field = field
        self.detail = message
        where = []
        if layer is not None:
            where.append(f"layer '{layer}'" + (f" (#{index})" if index is not None else ""))
        if field is not None:
            where.append(f"field '{field}'")
        prefix = self.file + (": " + ", ".join(where) if where else "")
        super().__init__(f"{prefix}: {message}")


class InputError(BitplaneError):
    """An input file (images, outputs) is missing or has the wrong shape/dtype."""


class NotSupportedError(BitplaneError, NotImplementedError):
    """A feature that is not implemented yet; the message says what and where it is tracked."""
