"""``bitplane`` command line: builds the parser from the command modules (``cli/<command>.py``,
thin wrappers over :mod:`bitplane.api`) and runs one.

Every user error (bad spec, bad input file, unsupported feature) prints one clear line
``bitplane: error: ...`` and exits non-zero without a traceback. Outputs are written
atomically (temporary file + rename), so nothing partial is left behind.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys

from bitplane.core.errors import BitplaneError, NotSupportedError, format_error


from bitplane.cli import compile as compile_, golden, inspect, plan, project, run, sim, sweep, synth
from bitplane.gen import importers
from bitplane.train import trainer

# one module per command, in the order `bitplane --help` lists them; each registers its parser
# (train and import next to their code: train/trainer.py, gen/importers)
COMMANDS = (golden, inspect, plan, synth, compile_, sim, project, run, trainer, importers, sweep)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="bitplane", description="FPGA accelerator generator for "
                                 "low-bitwidth quantized CNNs.")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        command.add_parser(sub)
    return ap


def _terminate(signum, frame):
    raise SystemExit(128 + signum)


def main(argv=None) -> int:
    """Run the ``bitplane`` command. Errors meant for users print one bounded line (exit 1; 2 for
    unsupported features); SIGTERM and Ctrl-C remove what was being written (exit 143/130); any
    other exception is a bug, reported as one line too (exit 3; ``BITPLANE_DEBUG=1`` re-raises)."""
    args = build_parser().parse_args(argv)
    try:
        previous = signal.signal(signal.SIGTERM, _terminate)
    except ValueError:                       # not the main thread (an embedding program)
        previous = None
    try:
        return args.fn(args)
    except BitplaneError as e:
        print(f"bitplane: error: {format_error(e)}", file=sys.stderr)
        return 2 if isinstance(e, NotSupportedError) else 1
    except BrokenPipeError:
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("bitplane: interrupted (Ctrl-C); nothing partial was written", file=sys.stderr)
        return 130
    except SystemExit as e:
        if e.code == 128 + signal.SIGTERM:
            print("bitplane: terminated (SIGTERM); nothing partial was written", file=sys.stderr)
        raise
    except MemoryError:
        print("bitplane: error: out of memory (the input is larger than this machine can hold)", file=sys.stderr)
        return 1
    except Exception as e:                   # a bug: one line, not a stack
        if os.environ.get("BITPLANE_DEBUG"):
            raise
        print(f"bitplane: internal error (please report; BITPLANE_DEBUG=1 shows the stack): "
              f"{format_error(e, with_type=True)}", file=sys.stderr)
        return 3
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
