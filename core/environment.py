"""What machine and which tool versions produced a figure: one definition, used by the manifest,
the synthesis reports, the benchmarks and the training table (every figure carries them)."""
from __future__ import annotations

import os
import platform
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path


def package_versions(packages) -> dict:
    """``{package: installed version or None}`` for each distribution name in ``packages``."""
    out = {}
    for pkg in packages:
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out


def machine() -> str:
    """One line: CPU model, core count, Python and numpy versions."""
    import numpy as np
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, numpy {np.__version__}"
