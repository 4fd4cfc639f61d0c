"""``bitplane project DESIGN --board B -o DIR``: a Vivado project (Tcl + constraints) around a design."""
from __future__ import annotations

from bitplane import api
from bitplane.synth.project import BOARDS


def add_parser(sub) -> None:
    p = sub.add_parser("project", help="Vivado project (Tcl + constraints) around a compiled accelerator")
    p.add_argument("design", help="compiled folder (bitplane compile -o)")
    p.add_argument("--board", required=True, choices=sorted(BOARDS))
    p.add_argument("-o", "--output", required=True, help="project folder to write")
    p.set_defaults(fn=run)


def run(args) -> int:
    info = api.Design(args.design).project(args.board, args.output)
    a = info["addresses"]["accelerator"]
    print(f"wrote {args.output}/ (build.tcl, constraints.xdc, project.json, README.md, accelerator.v, manifest) for "
          f"{info['board']} ({info['part']}); registers at 0x{a['base']:08X}. Run: cd {args.output} && vivado -mode "
          f"batch -source build.tcl  (not verified with Vivado or on hardware)")
    return 0

