"""The compiled folder's manifest as the host reads it (written by ``gen.compile``).

One definition of the manifest's format name and version and of the checks a reader makes;
the compiler writes with these constants and the driver and ``bitplane sim`` read with
:func:`load_manifest`. Kept free of the compiler's dependencies so a board with only the
host side installed can load it.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from bitplane.core.errors import InputError

MANIFEST_FORMAT = "bitplane-accelerator"
MANIFEST_VERSION = 1


def load_manifest(folder) -> dict:
    """Read and check a compiled folder's manifest (and that its files are present)."""
    folder = Path(folder)
    mf = folder / "manifest.json"
    if not mf.exists():
        raise InputError(f"{folder}: not a compiled accelerator folder (no manifest.json; run `bitplane compile`)")
    try:
        m = json.loads(mf.read_text())
    except json.JSONDecodeError as e:
        raise InputError(f"{mf}: not valid JSON ({e})") from None
    if not isinstance(m, dict) or m.get("format") != MANIFEST_FORMAT or m.get("version") != MANIFEST_VERSION:
        got = (m.get("format"), m.get("version")) if isinstance(m, dict) else (None, None)
        raise InputError(f"{mf}: unsupported manifest (format {got[0]!r} version {got[1]!r}; "
                         f"this bitplane reads {MANIFEST_FORMAT!r} version {MANIFEST_VERSION})")
    for key in ("regmap", "streams", "weights", "build_id", "top"):
        if key not in m:
            raise InputError(f"{mf}: field '{key}' is missing")
    for n in ("accelerator.v", "weights.bin"):
        if not (folder / n).exists():
            raise InputError(f"{folder}: {n} is missing")
    return m


def check_frames(m: dict, x, single_ok: bool = False) -> np.ndarray:
    """Input frames for the design of manifest ``m``: uint8 ``[N, C, H, W]`` codes within the
    input bit width (``single_ok``: a lone ``[C, H, W]`` frame becomes a batch of one)."""
    shape = tuple(m["streams"]["input"]["shape"])
    bits = int(m["streams"]["input"]["bits"])
    x = np.asarray(x)
    if single_ok and x.ndim == 3 and tuple(x.shape) == shape:
        x = x[None]
    if x.ndim != 4 or tuple(x.shape[1:]) != shape:
        raise InputError(f"input must be [N, {', '.join(map(str, shape))}] codes, got shape {list(x.shape)}")
    if x.dtype != np.uint8:
        raise InputError(f"input must be uint8 codes, got dtype {x.dtype}")
    if x.size and int(x.max()) >= (1 << bits):
        raise InputError(f"input codes must be < {1 << bits} ({bits}-bit input), got {int(x.max())}")
    return x
