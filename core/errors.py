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


#: Longest error line the CLI prints (a message quoting a huge user value is cut).
MAX_ERROR_CHARS = 600


def short_repr(value, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters, for quoting user values in messages.

    Large containers are not formatted whole first (an expanded YAML alias may hold millions
    of items): only their first items are."""
    if isinstance(value, (list, tuple, dict, set)) and len(value) > 20:
        items = list(value.items())[:20] if isinstance(value, dict) else list(value)[:20]
        head = short_repr(type(value)(items) if not isinstance(value, dict) else dict(items), limit)
        return f"{head[:limit]}... ({len(value):,} items)"
    try:
        r = repr(value)
    except RecursionError:
        return f"<{type(value).__name__} nested too deeply>"
    return r if len(r) <= limit else r[:limit] + f"... ({len(r):,} characters)"


def format_error(e: BaseException, limit: int = MAX_ERROR_CHARS, with_type: bool = False) -> str:
    """One line for ``e``: line breaks folded, at most ``limit`` characters."""
    try:
        text = str(e)
    except Exception:                          # pragma: no cover - a broken __str__
        text = ""
    text = " ".join(text[:4 * limit].split()) + (" " if len(text) > 4 * limit else "") or type(e).__name__
    full = len(text) if len(text) < 4 * limit else len(str(e))
    if with_type and not text.startswith(type(e).__name__):
        text = f"{type(e).__name__}: {text}"
    if len(text) > limit:
        text = text[:limit] + f"... ({full - limit:,} more characters)"
    return text
