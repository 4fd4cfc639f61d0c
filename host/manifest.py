"""The compiled folder's manifest as the host reads it (written by ``gen.compile``).

One definition of the manifest's format name and version and of the checks a reader makes;
the compiler writes with these constants and the driver and ``bitplane sim`` read with
:func:`load_manifest`. Kept free of the compiler's dependencies so a board with only the
host side installed can load it.
"""
from __future__ import annotations

import json
from pathlib import Path

from gen.errors import InputError

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
